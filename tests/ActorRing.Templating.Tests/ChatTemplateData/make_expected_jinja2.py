# Cross-check of make_expected.mjs: renders the same conversations with Python's Jinja2 set up the way
# Hugging Face transformers sets it up in chat_template_utils (ImmutableSandboxedEnvironment with
# trim_blocks and lstrip_blocks, the loopcontrols extension, a json.dumps tojson, raise_exception and
# strftime_now globals). Prints every render where it and expected.json (transformers.js) disagree.
#   python3 make_expected_jinja2.py [--write]   (--write replaces those entries in expected.json)
import json, os, sys
from datetime import datetime
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

here = os.path.dirname(os.path.abspath(__file__))

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

def token_text(token):
    return token["content"] if isinstance(token, dict) else token

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
# A fixed clock, as in make_expected.mjs and the tests.
env.globals["strftime_now"] = lambda fmt: datetime(2024, 7, 26, 12, 0, 0).strftime(fmt)

conversations = json.load(open(os.path.join(here, "conversations.json"), encoding="utf-8"))
expected_path = os.path.join(here, "expected.json")
expected = json.load(open(expected_path, encoding="utf-8"))
differences = 0
for model in sorted(os.listdir(os.path.join(here, "models"))):
    config = json.load(open(os.path.join(here, "models", model, "tokenizer_config.json"), encoding="utf-8"))
    jinja_file = os.path.join(here, "models", model, "chat_template.jinja")
    source = open(jinja_file, encoding="utf-8").read() if os.path.exists(jinja_file) else config["chat_template"]
    named = {t["name"]: t["template"] for t in source} if isinstance(source, list) else {"default": source}
    for conversation in conversations:
        for add in (False, True):
            key = "with_generation_prompt" if add else "without_generation_prompt"
            # As HF's get_chat_template picks among named templates: "tool_use" when tools are given, else "default".
            template = env.from_string(named["tool_use"] if conversation.get("tools") is not None and "tool_use" in named else named["default"])
            try:
                got = template.render(messages=conversation["messages"], tools=conversation.get("tools"),
                                      documents=None, add_generation_prompt=add,
                                      bos_token=token_text(config.get("bos_token")), eos_token=token_text(config.get("eos_token")))
            except jinja2.exceptions.TemplateError as e:
                got = {"error": str(e)}
            except Exception as e:
                got = {"error": type(e).__name__ + ": " + str(e)}
            if got != expected[model][conversation["name"]][key]:
                differences += 1
                print(f"== {model} / {conversation['name']} / {key}\n  transformers.js: {json.dumps(expected[model][conversation['name']][key], ensure_ascii=False)}\n  jinja2:          {json.dumps(got, ensure_ascii=False)}")
                if "--write" in sys.argv:
                    expected[model][conversation["name"]][key] = got
print(f"{differences} differences")
if "--write" in sys.argv:
    with open(expected_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
