# Feature cases for the Jinja engine, with expected output from Python's Jinja2 configured as Hugging Face
# transformers configures it (see ../ChatTemplateData/make_expected_jinja2.py). Writes engine_cases.json.
#   python3 make_engine_cases.py
import json, os
import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

class Generation(jinja2.ext.Extension):
    """HF's AssistantTracker without the tracking: {% generation %} renders its body unchanged."""
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, Generation])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
V = {"messages": msgs, "name": "World", "n": 7, "f": 2.5, "items": [3, 1, 2], "empty": [], "d": {"b": 1, "a": [1, 2], "c": None},
     "text": "  Hello, World!  ", "none_value": None, "yes": True, "no": False, "unicode": "Zürich 🎉 \"q\" \\ \n\t\u0001"}

cases = [
    # text, output and whitespace control
    ("plain_text", "Hello {{ name }}!"),
    ("trim_blocks_and_lstrip_blocks", "<ul>\n  {% for i in items %}\n    <li>{{ i }}</li>\n  {% endfor %}\n</ul>\n"),
    ("minus_markers", "a  {{- name -}}  b\n  {%- if yes -%}  c  {%- endif -%}  d"),
    ("plus_markers_keep_whitespace", "x\n  {%+ if yes %}y{% endif +%}\nz"),
    ("variable_tags_are_not_lstripped", "a\n    {{ name }}\nb"),
    ("comment_whitespace", "a\n  {# note #}\nb {#- tight -#} c"),
    ("trailing_newline_dropped", "line\n"),
    ("only_one_trailing_newline_dropped", "line\n\n"),
    ("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}!"),
    ("crlf_newlines", "a\r\n{% if yes %}\r\nb\r\n{% endif %}\r\nc"),
    # printing values as Python's str()
    ("print_scalars", "{{ none_value }}|{{ yes }}|{{ no }}|{{ n }}|{{ f }}|{{ 1.0 }}|{{ 1e20 }}|{{ 0.00001 }}|{{ 10 / 4 }}|{{ 10 / 5 }}"),
    ("print_containers", "{{ items }} {{ d }} {{ ['it\\'s', \"x\"] }} {{ (1, 2) }}"),
    ("print_undefined", "[{{ missing }}][{{ d.missing }}]"),
    # expressions
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ n - 10 }} {{ f * 2 }} {{ -n }} {{ true + 1 }}"),
    ("string_ops", "{{ 'a' + 'b' }} {{ 'a' ~ 1 ~ none_value ~ missing }} {{ 'ab' * 3 }} {{ 'x' 'y' }}"),
    ("list_concat", "{{ items + [4] }} {{ [1] * 3 }}"),
    ("comparisons", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ d == {'b': 1, 'a': [1, 2], 'c': none} }} {{ none_value == none }} {{ missing == missing }} {{ 1 != 2 }}"),
    ("in_and_not_in", "{{ 'ell' in 'hello' }} {{ 2 in items }} {{ 'a' in d }} {{ 'z' not in d }} {{ 5 not in items }} {{ 'x' in missing }}"),
    ("logic", "{{ yes and no }} {{ yes or no }} {{ not yes }} {{ none_value or 'fallback' }} {{ 0 and 'x' }} {{ not missing }} {{ '' or [] or 'last' }}"),
    ("ternary", "{{ 'y' if yes else 'n' }} {{ 'y' if no else 'n' }} [{{ 'y' if no }}] {{ 'a' if no else 'b' if yes else 'c' }}"),
    ("literals", "{{ [1, 'two', [3], {'four': 4}] }} {{ {'k': 'v', 'n': none} }} {{ [] }} {{ {} }} {{ True }} {{ False }} {{ None }} {{ [1, 2,] }}"),
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f\\x41\\u00e9' }}"),
    # indexing, attributes, slicing
    ("indexing", "{{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages[1]['content'] }} {{ d['a'][1] }} {{ d.a[0] }} {{ name[0] }} {{ name[-1] }}"),
    ("index_out_of_range_is_undefined", "[{{ items[10] }}] {{ items[10] is defined }}"),
    ("slicing", "{{ items[1:] }} {{ items[:1] }} {{ items[::-1] }} {{ items[-2:] }} {{ items[::2] }} {{ name[1:3] }} {{ name[::-1] }} {{ messages[1:]|length }} {{ items[5:] }} {{ items[:-1] }} {{ items[2:0:-1] }}"),
    ("emoji_length_and_slice", "{{ '🎉ab'|length }} {{ '🎉ab'[1:] }} {{ '🎉ab'[0] }}"),
    # tests
    ("tests", "{{ name is defined }} {{ missing is defined }} {{ missing is undefined }} {{ none_value is none }} {{ name is string }} {{ n is string }} {{ d is mapping }} {{ items is mapping }} {{ items is iterable }} {{ name is iterable }} {{ n is iterable }} {{ n is number }} {{ f is number }} {{ n is integer }} {{ f is float }} {{ yes is boolean }} {{ yes is true }} {{ no is false }} {{ items is sequence }}"),
    ("negated_tests", "{{ name is not defined }} {{ none_value is not none }} {{ n is not string }}"),
    ("tests_with_arguments", "{{ n is divisibleby 7 }} {{ n is divisibleby(2) }} {{ n is odd }} {{ n is even }} {{ n is equalto 7 }} {{ n is eq(8) }} {{ n is gt 3 }} {{ n is lt(3) }} {{ 2 is in items }} {{ none_value is sameas none }} {{ 'abc' is lower }} {{ 'ABC' is upper }}"),
    ("test_binds_tighter_than_not", "{{ not missing is defined }} {{ not name is defined }}"),
    # filters
    ("filter_precedence", "{{ '<' + text | trim + '>' }} {{ items|length - 1 }} {{ -n|abs }}"),
    ("string_filters", "[{{ text|trim }}] {{ name|upper }} {{ name|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }} {{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ n|string + '!' }} {{ 'xxhixx'|trim('x') }}"),
    ("default_filter", "{{ missing|default('dflt') }} {{ none_value|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }} {{ name|d('x') }} {{ missing|default }}"),
    ("length_filters", "{{ items|length }} {{ name|length }} {{ d|length }} {{ missing|length }} {{ items|count }}"),
    ("join_filter", "{{ items|join(', ') }} {{ items|join }} {{ messages|map(attribute='role')|join('/') }} {{ messages|join('|', attribute='content') }}"),
    ("first_last", "{{ items|first }} {{ items|last }} {{ name|first }} {{ name|last }} [{{ empty|first }}]"),
    ("items_filter_and_method", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ d.keys()|list }} {{ d.values()|list }}"),
    ("dictsort", "{% for k, v in d|dictsort %}{{ k }};{% endfor %}"),
    ("conversions", "{{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ f|int }} {{ n|float }} {{ '2.5'|float }} {{ 3.7|round }} {{ 3.14159|round(2) }} {{ 3.2|round(0, 'ceil') }}"),
    ("list_filters", "{{ items|sort }} {{ items|sort(reverse=true) }} {{ items|reverse|list }} {{ [1, 2, 1, 3]|unique|list }} {{ items|sum }} {{ items|min }} {{ items|max }} {{ 'abc'|list }} {{ name|reverse }}"),
    ("select_reject", "{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ messages|rejectattr('role', 'equalto', 'user')|list|length }} {{ [0, 1, 2, none]|select|list }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ messages|selectattr('missing', 'undefined')|list|length }} {{ messages|selectattr('content')|list|length }}"),
    ("map_filter", "{{ ['a', 'b']|map('upper')|list }} {{ messages|map(attribute='missing', default='x')|list }}"),
    ("tojson_compact", "{{ d|tojson }} {{ unicode|tojson }} {{ [1, 2.5, none, true, 'x']|tojson }} {{ {}|tojson }} {{ []|tojson }} {{ '</script>'|tojson }}"),
    ("tojson_indent", "{{ d|tojson(indent=2) }}\n{{ {'x': {'y': [], 'z': {}}}|tojson(indent=4) }}\n{{ [1, [2]]|tojson(indent=1) }}"),
    ("tojson_options", "{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ {'b': 1, 'a': [1, 2]}|tojson(separators=(',', ':')) }} {{ 1.0|tojson }} {{ 1e20|tojson }}"),
    ("indent_filter", "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(width=1, blank=true) }}"),
    ("escape_filter", "{{ '<a href=\"x\">&\\'</a>'|e }}"),
    ("wordcount_and_attr", "{{ 'one two  three'|wordcount }} {{ d|attr('b') }}"),
    # string methods
    ("string_methods", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} [{{ text.strip() }}] [{{ text.lstrip() }}] [{{ text.rstrip() }}] {{ 'xxhixx'.strip('x') }} {{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) }} {{ name.upper() }} {{ name.lower() }} {{ 'the end'.title() }} {{ 'hi'.replace('i', 'o') }} {{ 'banana'.count('a') }} {{ 'banana'.find('n') }} {{ '-'.join(['a', 'b']) }} {{ 'x\\ny\\n'.splitlines() }}"),
    ("qwen3_thinking_split", "{% set c = '<think>\\nR\\n</think>\\n\\nAnswer' %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}"),
    ("dict_get", "{{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }}"),
    # control flow
    ("if_elif_else", "{% for i in [1, 2, 3] %}{% if i == 1 %}one{% elif i == 2 %}two{% else %}many{% endif %} {% endfor %}"),
    ("loop_variables", "{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{% if not loop.first %}<{{ loop.previtem.role }}{% endif %}{% if not loop.last %}>{{ loop.nextitem.role }}{% endif %};{% endfor %}"),
    ("loop_cycle", "{% for i in items %}{{ loop.cycle('a', 'b') }}{% endfor %}"),
    ("for_else", "{% for i in empty %}x{% else %}empty{% endfor %} {% for i in items %}{{ i }}{% else %}none{% endfor %}"),
    ("for_if_clause", "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.content }}{{ ',' if not loop.last }}{% endfor %}"),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in ['x', 'y'] %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}"),
    ("loop_over_dict_and_string", "{% for k in d %}{{ k }}{% endfor %} {% for c in 'abc' %}{{ c }}.{% endfor %}"),
    ("loop_unpacking", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }} {% endfor %}"),
    ("break_continue", "{% for i in [1, 2, 3, 4, 5] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
    ("loop_over_undefined", "[{% for x in missing %}{{ x }}{% endfor %}]"),
    ("set_scoping", "{% set x = 1 %}{% for i in items %}{% set x = i %}{% endfor %}{{ x }} {% if yes %}{% set y = 2 %}{% endif %}{{ y }}"),
    ("namespace", "{% set ns = namespace(count=0, found=false, text='') %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% if m.role == 'assistant' %}{% set ns.found = true %}{% endif %}{% set ns.text = ns.text + m.content %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns.text }} {{ ns.missing is defined }}"),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set block %}inside {{ name }}{% endset %}[{{ block }}]"),
    ("macro", "{% macro greet(who, punct='!') %}Hi {{ who }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(who='C', punct='.') }}"),
    ("macro_sees_outer_and_recursion", "{% macro walk(v) %}{% if v is mapping %}{% for k in v %}{{ k }}({{ walk(v[k]) }}){% endfor %}{% elif v is iterable and v is not string %}{% for x in v %}{{ walk(x) }},{% endfor %}{% else %}{{ v }}{% endif %}{% endmacro %}{{ walk({'a': [1, {'b': 2}], 'c': 'x'}) }} {{ name }}"),
    ("globals", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(3, 0, -1)|list }} {{ dict(a=1, b='x') }} {% set ns = namespace({'k': 1}) %}{{ ns.k }}"),
    ("generation_block", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif %}{% endfor %}"),
    ("filter_on_call_result", "{{ name.upper()|lower }} {{ (items|sort)[0] }}"),
    # scoping and parsing corners
    ("set_in_loop_is_not_seen_by_next_iteration", "{% for i in [1, 2, 3] %}[{{ last }}]{% set last = i %}{% endfor %}({{ last }}) {% for x in [1] %}{% endfor %}[{{ x }}]"),
    ("loop_variable_in_macro_and_namespace", "{% macro count(xs) %}{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}{% endmacro %}{{ count(items) }}/{{ count([]) }}"),
    ("lstrip_only_at_line_start", "abc  {% if yes %}x{% endif %}\n    {% if yes %}y{% endif %}\n\t{% if yes %}z\n{% endif %}"),
    ("tag_ends_inside_strings", "{{ '%}' }}{{ \"}}\" }}{% set x = \"{{ y }}\" %}{{ x }}{{ {'a': {'b': 1}} }}{# {{ not a tag }} #}"),
    ("raw_with_whitespace_control", "a\n{%- raw -%}\n  {{ x }}\n{%- endraw -%}\nb"),
    ("not_binds_looser_than_comparison", "{{ not 1 == 2 }} {{ not yes and no }} {{ -1|abs }} {{ 2 * 3 ** 2 }} {{ 'a' ~ 1 * 2 }}"),
    ("attributes_of_none_and_missing", "{{ none_value.x is defined }} {{ d.c is none }} {{ d.zz is none }} {{ messages[0].nokey is defined }}"),
    ("if_filter_loop_length", "{% for m in messages if m.role == 'user' %}{{ loop.length }}{{ loop.last }} {% endfor %}"),
    ("whitespace_inside_tags", "{%-\n  if\n  yes\n-%}\n  ok\n{%- endif\n%}"),
    ("range_loop_and_loop_index_math", "{% for i in range(4) %}{{ messages[loop.index0].role if loop.index0 < messages|length else '-' }}{{ i * 2 }},{% endfor %}"),
    ("raise_in_loop", "{% for m in messages %}{% if m.role == 'assistant' and loop.index0 == 2 %}{{ raise_exception('Roles must alternate: ' ~ m.role) }}{% endif %}{% endfor %}"),
]

error_cases = [
    ("error_undefined_attribute", "{{ missing.attr }}"),
    ("error_add_str_and_int", "{{ 'a' + 1 }}"),
    ("error_add_undefined", "{{ missing + 'a' }}"),
    ("error_list_append_is_unsafe", "{{ items.append(4) }}"),
    ("error_set_attribute_on_dict", "{% set d.x = 1 %}"),
    ("error_call_undefined", "{{ nothing() }}"),
    ("error_iterate_number", "{% for x in n %}{% endfor %}"),
    ("error_compare_str_int", "{{ 'a' < 1 }}"),
]

out = []
for name, template in cases + error_cases:
    try:
        expected = env.from_string(template).render(**V)
    except jinja2.exceptions.TemplateError as e:
        expected = {"error": str(e)}
    except Exception as e:
        expected = {"error": type(e).__name__ + ": " + str(e)}
    is_error_case = name.startswith("error_")
    assert isinstance(expected, dict) == is_error_case or name == "raise_in_loop", (name, expected)
    out.append({"name": name, "template": template, "expected": expected})
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "engine_cases.json"), "w", encoding="utf-8") as f:
    json.dump({"variables": V, "cases": out}, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(len(out), "cases")
