using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ActorRing.Templating.Jinja;

// Runtime values mirror Python's, because templates are written against Python Jinja:
//   None -> null, bool, int -> long, float -> double, str -> string,
//   list/tuple -> List<object?>, dict -> Dictionary<string, object?> (insertion order kept),
//   plus Undefined, Namespace, Callable and LoopContext below.

/// <summary>Jinja's default Undefined: prints as "", is false, iterates as empty; anything more raises.</summary>
/// <param name="Description">Why it is undefined, e.g. "'foo' is undefined", for the error if it is used.</param>
internal sealed record Undefined(string Description);

/// <summary>A Python tuple: a list in every respect except that it prints as (a, b).</summary>
internal sealed class TupleValue(IEnumerable<object?> items) : List<object?>(items);

/// <summary>The mutable object <c>namespace()</c> makes, so a loop body can carry state out of the loop.</summary>
internal sealed class Namespace(Dictionary<string, object?> attributes)
{
    public Dictionary<string, object?> Attributes { get; } = attributes;
}

/// <summary>A function a template can call: a global, a macro, or a bound method.</summary>
internal sealed class Callable(string name, Func<CallArguments, object?> invoke)
{
    public string Name { get; } = name;
    public object? Invoke(CallArguments arguments) => invoke(arguments);
}

/// <summary>Evaluated call arguments, with Python-style lookup by position or by name.</summary>
internal sealed class CallArguments(List<object?> positional, Dictionary<string, object?> named, string callee)
{
    public static CallArguments Empty(string callee) => new([], [], callee);

    public List<object?> Positional { get; } = positional;
    public Dictionary<string, object?> Named { get; } = named;

    public bool Has(int index, string name) => index < Positional.Count || Named.ContainsKey(name);

    public object? Get(int index, string name, object? fallback = null) =>
        index < Positional.Count ? Positional[index] : Named.TryGetValue(name, out var value) ? value : fallback;

    public object? Required(int index, string name) =>
        Has(index, name) ? Get(index, name) : throw new JinjaError($"{callee}() is missing its argument '{name}'");
}

/// <summary>The <c>loop</c> variable inside a for block.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }

    public object? Attribute(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex0" => (long)(items.Count - Index0 - 1),
        "revindex" => (long)(items.Count - Index0),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new Callable("loop.cycle", args =>
            args.Positional.Count == 0 ? throw new JinjaError("loop.cycle() needs at least one value")
                : args.Positional[Index0 % args.Positional.Count]),
        _ => new Undefined($"'loop' has no attribute '{name}'"),
    };
}

/// <summary>A render error without a position yet; the renderer adds the position of the expression.</summary>
internal sealed class JinjaError(string message) : Exception(message);

/// <summary>A template's own <c>raise_exception(msg)</c>: its message goes to the caller unchanged.</summary>
internal sealed class TemplateRaisedError(string message) : Exception(message);

/// <summary>Python semantics for the operations templates apply to values.</summary>
internal static class Values
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        Dictionary<string, object?> => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        Callable => "function",
        LoopContext => "LoopContext",
        _ => value.GetType().Name,
    };

    public static bool IsTruthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long n => n != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        Dictionary<string, object?> dict => dict.Count > 0,
        _ => true,
    };

    /// <summary>Python's str(): what <c>{{ x }}</c> and <c>~</c> print.</summary>
    public static string ToText(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    /// <summary>Python's repr(), used for items inside a printed list or dict.</summary>
    public static string Repr(object? value)
    {
        switch (value)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long n: return n.ToString(CultureInfo.InvariantCulture);
            case double d: return FormatFloat(d);
            case string s: return QuoteString(s);
            case Undefined: return "";
            case TupleValue tuple: return "(" + string.Join(", ", tuple.Select(Repr)) + (tuple.Count == 1 ? ",)" : ")");
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case Dictionary<string, object?> dict:
                return "{" + string.Join(", ", dict.Select(kv => QuoteString(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case Namespace ns:
                return "<Namespace " + string.Join(", ", ns.Attributes.Select(kv => kv.Key + "=" + Repr(kv.Value))) + ">";
            case Callable c: return $"<function {c.Name}>";
            default: return value.ToString() ?? "";
        }
    }

    private static string QuoteString(string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var text = new StringBuilder().Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c == quote) text.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) text.Append($"\\x{(int)c:x2}");
                    else text.Append(c);
                    break;
            }
        }
        return text.Append(quote).ToString();
    }

    /// <summary>Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16.</summary>
    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // "R" gives the shortest digits that round-trip, as Python's repr does; only the layout differs.
        var r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        var ePos = r.IndexOfAny(['E', 'e']);
        var mantissa = ePos >= 0 ? r[..ePos] : r;
        var exp10 = ePos >= 0 ? int.Parse(r[(ePos + 1)..], CultureInfo.InvariantCulture) : 0;
        var dot = mantissa.IndexOf('.');
        var intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        var fracPart = dot >= 0 ? mantissa[(dot + 1)..] : "";
        var significant = (intPart + fracPart).TrimStart('0');
        var leadingZeros = intPart.Length + fracPart.Length - significant.Length;
        var exponent = intPart.Length - 1 - leadingZeros + exp10;
        var digits = significant.TrimEnd('0');
        var sign = d < 0 ? "-" : "";
        if (exponent < -4 || exponent >= 16)
        {
            var m = digits.Length > 1 ? digits[0] + "." + digits[1..] : digits;
            return $"{sign}{m}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
        }
        if (exponent < 0) return sign + "0." + new string('0', -exponent - 1) + digits;
        if (digits.Length <= exponent + 1) return sign + digits + new string('0', exponent + 1 - digits.Length) + ".0";
        return sign + digits[..(exponent + 1)] + "." + digits[(exponent + 1)..];
    }

    public static new bool Equals(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        switch (a)
        {
            case null: return b is null;
            case string s: return b is string t && s == t;
            case List<object?> x:
                return b is List<object?> y && x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second));
            case Dictionary<string, object?> x:
                return b is Dictionary<string, object?> other && x.Count == other.Count
                    && x.All(kv => other.TryGetValue(kv.Key, out var item) && Equals(kv.Value, item));
            default: return ReferenceEquals(a, b);
        }
    }

    public static bool IsNumber(object? value) => value is long or double or bool;
    public static bool IsInteger(object? value) => value is long or bool;

    public static long ToLong(object? value) => value switch
    {
        long n => n,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new JinjaError($"expected a number, got {TypeName(value)}"),
    };

    public static double ToDouble(object? value) => value switch
    {
        long n => n,
        bool b => b ? 1 : 0,
        double d => d,
        _ => throw new JinjaError($"expected a number, got {TypeName(value)}"),
    };

    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        if (a is string s && b is string t) return string.CompareOrdinal(s, t);
        if (a is List<object?> x && b is List<object?> y)
        {
            for (var i = 0; i < Math.Min(x.Count, y.Count); i++)
                if (!Equals(x[i], y[i])) return Compare(x[i], y[i], op);
            return x.Count.CompareTo(y.Count);
        }
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>Python's iteration: a list's items, a dict's keys, a string's characters; Undefined is empty.</summary>
    public static List<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        Dictionary<string, object?> dict => dict.Keys.Cast<object?>().ToList(),
        string s => CodePoints(s).Select(c => (object?)c).ToList(),
        Undefined => [],
        _ => throw new JinjaError($"'{TypeName(value)}' object is not iterable"),
    };

    /// <summary>A string as Python sees it: one item per code point, so an emoji counts once.</summary>
    public static List<string> CodePoints(string s)
    {
        var result = new List<string>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(s.Substring(i, 2));
                i++;
            }
            else result.Add(s[i].ToString());
        }
        return result;
    }

    public static int Length(object? value) => value switch
    {
        string s => CodePoints(s).Count,
        List<object?> list => list.Count,
        Dictionary<string, object?> dict => dict.Count,
        Undefined => 0,
        _ => throw new JinjaError($"object of type '{TypeName(value)}' has no len()"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string t ? s.Contains(t, StringComparison.Ordinal)
            : throw new JinjaError($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        List<object?> list => list.Any(x => Equals(x, item)),
        Dictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        Undefined => false,
        _ => throw new JinjaError($"argument of type '{TypeName(container)}' is not iterable"),
    };

    /// <summary>Turns a caller's value into the runtime model: JSON, dictionaries, lists, numbers, messages.</summary>
    public static object? FromHost(object? value)
    {
        switch (value)
        {
            case null or string or bool or long or double or Undefined or Namespace or Callable: return value;
            case int or short or byte or uint or sbyte or ushort: return Convert.ToInt64(value, CultureInfo.InvariantCulture);
            case float or decimal: return Convert.ToDouble(value, CultureInfo.InvariantCulture);
            case JsonElement json: return FromJson(json);
            case JsonNode node: return FromJson(JsonSerializer.SerializeToElement(node));
            case ChatMessage message: return FromMessage(message);
            case IDictionary dict:
                var result = new Dictionary<string, object?>();
                foreach (DictionaryEntry entry in dict)
                    result[entry.Key as string ?? throw new JinjaError($"dictionary keys must be strings, got {entry.Key.GetType().Name}")] = FromHost(entry.Value);
                return result;
            case IEnumerable<KeyValuePair<string, object?>> pairs:
                return pairs.ToDictionary(kv => kv.Key, kv => FromHost(kv.Value));
            case IEnumerable items:
                return items.Cast<object?>().Select(FromHost).ToList();
            default:
                throw new ArgumentException($"a template variable cannot be a {value.GetType().Name}; pass strings, numbers, booleans, lists, dictionaries or JSON");
        }
    }

    /// <summary>
    /// A message as Hugging Face's templates read it from an OpenAI request: role and content, and for the turns of a
    /// tool conversation tool_calls ({id, type, function: {name, arguments}}, the arguments as an object, which
    /// templates write with tojson, as vLLM passes them) and tool_call_id. A turn that only called tools has empty
    /// content, as Hugging Face's own examples write it.
    /// </summary>
    private static Dictionary<string, object?> FromMessage(ChatMessage message)
    {
        var result = new Dictionary<string, object?>
        {
            ["role"] = message.Role,
            ["content"] = message.Content,
        };
        if (message.ToolCalls is { Count: > 0 } calls)
        {
            result["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?> { ["name"] = c.Name, ["arguments"] = Arguments(c.Arguments) },
            }).ToList();
        }
        if (message.ToolCallId is not null) result["tool_call_id"] = message.ToolCallId;
        return result;
    }

    /// <summary>A call's arguments as a dictionary when they are a JSON object, else the text as it came.</summary>
    private static object? Arguments(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object ? FromJson(document.RootElement) : json;
        }
        catch (JsonException)
        {
            return json;
        }
    }

    public static object? FromJson(JsonElement json) => json.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => json.GetString(),
        JsonValueKind.Number => json.TryGetInt64(out var n) ? (object)n : json.GetDouble(),
        JsonValueKind.Array => json.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => json.EnumerateObject().Aggregate(new Dictionary<string, object?>(), (d, p) =>
        {
            d[p.Name] = FromJson(p.Value);
            return d;
        }),
        _ => throw new ArgumentException($"unexpected JSON value kind {json.ValueKind}"),
    };
}
