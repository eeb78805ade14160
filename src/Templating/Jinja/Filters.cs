using System.Globalization;
using System.Text;

namespace ActorRing.Templating.Jinja;

/// <summary>Jinja's built-in filters and tests that chat templates use, with Jinja's behaviour on
/// Undefined (mostly: treated as an empty string or list) and HF's <c>tojson</c>.</summary>
internal static class Filters
{
    public static object? Apply(string name, object? value, CallArguments args)
    {
        switch (name)
        {
            case "trim": return Methods.Strip(Values.ToText(value), args.Get(0, "chars") as string, true, true);
            case "upper": return Values.ToText(value).ToUpperInvariant();
            case "lower": return Values.ToText(value).ToLowerInvariant();
            case "capitalize": return Capitalize(Values.ToText(value));
            case "title": return Title(Values.ToText(value));
            case "string": return Values.ToText(value);
            case "safe": return value;
            case "e" or "escape" or "forceescape": return Escape(Values.ToText(value));
            case "length" or "count": return (long)Values.Length(value);
            case "tojson": return Json.Serialize(value, args.Get(0, "indent"), args.Get(1, "separators"), Values.IsTruthy(args.Get(2, "sort_keys")));
            case "default" or "d":
                var fallback = args.Get(0, "default_value", "");
                var boolean = Values.IsTruthy(args.Get(1, "boolean", false));
                return value is Undefined || (boolean && !Values.IsTruthy(value)) ? fallback : value;
            case "join":
                {
                    var separator = Values.ToText(args.Get(0, "d", ""));
                    var attribute = args.Get(1, "attribute");
                    var items = Values.Iterate(value);
                    return string.Join(separator, items.Select(i => Values.ToText(attribute is null ? i : Access.Item(i, attribute))));
                }
            case "replace": return Replace(Values.ToText(value), args.Required(0, "old"), args.Required(1, "new"), args.Get(2, "count"));
            case "items":
                return value switch
                {
                    Dictionary<string, object?> dict => dict.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
                    Undefined => new List<object?>(),
                    _ => throw new JinjaError($"can only get item pairs from a mapping, not a {Values.TypeName(value)}"),
                };
            case "dictsort":
                return value is Dictionary<string, object?> sorted
                    ? sorted.OrderBy(kv => kv.Key, StringComparer.OrdinalIgnoreCase).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
                    : throw new JinjaError($"dictsort needs a mapping, not a {Values.TypeName(value)}");
            case "first":
                {
                    var items = Values.Iterate(value);
                    return items.Count > 0 ? items[0] : new Undefined("no first item, sequence was empty");
                }
            case "last":
                {
                    var items = Values.Iterate(value);
                    return items.Count > 0 ? items[^1] : new Undefined("no last item, sequence was empty");
                }
            case "list": return Values.Iterate(value).ToList();
            case "reverse": return value is string s ? string.Concat(Values.CodePoints(s).AsEnumerable().Reverse()) : Values.Iterate(value).AsEnumerable().Reverse().ToList();
            case "sort":
                {
                    var descending = Values.IsTruthy(args.Get(0, "reverse", false));
                    var attribute = args.Get(2, "attribute");
                    var keyed = Values.Iterate(value).Select(i => (Key: attribute is null ? i : Access.Item(i, attribute), Item: i)).ToList();
                    var comparer = Comparer<object?>.Create((a, b) => Values.Compare(a is string x ? x.ToLowerInvariant() : a, b is string y ? y.ToLowerInvariant() : b, "<"));
                    var ordered = keyed.OrderBy(k => k.Key, comparer).Select(k => k.Item);
                    return (descending ? ordered.Reverse() : ordered).ToList();
                }
            case "unique":
                {
                    var unique = new List<object?>();
                    foreach (var item in Values.Iterate(value))
                        if (!unique.Any(u => Values.Equals(u, item))) unique.Add(item);
                    return unique;
                }
            case "int": return ToInt(value, args.Get(0, "default", 0L));
            case "float": return ToFloat(value, args.Get(0, "default", 0.0));
            case "abs":
                return value is double d ? (object)Math.Abs(d) : Math.Abs(Values.ToLong(value));
            case "round":
                {
                    var precision = (int)Values.ToLong(args.Get(0, "precision", 0L));
                    var method = Values.ToText(args.Get(1, "method", "common"));
                    var number = Values.ToDouble(value);
                    var scale = Math.Pow(10, precision);
                    return method switch
                    {
                        "common" => Math.Round(number, precision, MidpointRounding.AwayFromZero),
                        "ceil" => Math.Ceiling(number * scale) / scale,
                        "floor" => Math.Floor(number * scale) / scale,
                        _ => throw new JinjaError("method must be common, ceil or floor"),
                    };
                }
            case "sum":
                {
                    var attribute = args.Get(0, "attribute");
                    object? total = args.Get(1, "start", 0L);
                    foreach (var item in Values.Iterate(value))
                        total = Operators.Binary("+", total, attribute is null ? item : Access.Item(item, attribute));
                    return total;
                }
            case "min" or "max":
                {
                    var items = Values.Iterate(value);
                    if (items.Count == 0) return new Undefined($"no {name} item, sequence was empty");
                    var best = items[0];
                    foreach (var item in items.Skip(1))
                    {
                        var order = Values.Compare(item, best, "<");
                        if (name == "min" ? order < 0 : order > 0) best = item;
                    }
                    return best;
                }
            case "indent": return Indent(Values.ToText(value), args);
            case "attr":
                // Unlike `x.name`, attr() never falls back to a dict's items: only real attributes count.
                var attributeName = Values.ToText(args.Required(0, "name"));
                return value switch
                {
                    Dictionary<string, object?> => new Undefined($"'dict object' has no attribute '{attributeName}'"),
                    _ => Access.Attribute(value, attributeName),
                };
            case "map": return Map(value, args);
            case "select" or "reject": return Select(value, args, name == "select", byAttribute: false);
            case "selectattr" or "rejectattr": return Select(value, args, name == "selectattr", byAttribute: true);
            case "wordcount": return (long)Values.ToText(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            default: throw new JinjaError($"unknown filter '{name}'");
        }
    }

    public static bool Test(string name, object? value, CallArguments args)
    {
        switch (name)
        {
            case "defined": return value is not Undefined;
            case "undefined": return value is Undefined;
            case "none": return value is null;
            case "boolean": return value is bool;
            case "true": return value is true;
            case "false": return value is false;
            case "integer": return value is long;
            case "float": return value is double;
            case "number": return value is long or double or bool;
            case "string": return value is string;
            case "mapping": return value is Dictionary<string, object?>;
            case "iterable": return value is string or List<object?> or Dictionary<string, object?> or Undefined;
            case "sequence": return value is string or List<object?> or Dictionary<string, object?>;
            case "callable": return value is Callable;
            case "sameas": return SameAs(value, args.Required(0, "other"));
            case "eq" or "equalto" or "==": return Values.Equals(value, args.Required(0, "other"));
            case "ne" or "!=": return !Values.Equals(value, args.Required(0, "other"));
            case "lt" or "lessthan" or "<": return Values.Compare(value, args.Required(0, "other"), "<") < 0;
            case "le" or "<=": return Values.Compare(value, args.Required(0, "other"), "<=") <= 0;
            case "gt" or "greaterthan" or ">": return Values.Compare(value, args.Required(0, "other"), ">") > 0;
            case "ge" or ">=": return Values.Compare(value, args.Required(0, "other"), ">=") >= 0;
            case "in": return Values.Contains(args.Required(0, "seq"), value);
            case "odd": return Values.ToLong(value) % 2 != 0;
            case "even": return Values.ToLong(value) % 2 == 0;
            case "divisibleby": return Values.ToLong(value) % Values.ToLong(args.Required(0, "num")) == 0;
            case "lower": return value is string lower && lower == lower.ToLowerInvariant();
            case "upper": return value is string upper && upper == upper.ToUpperInvariant();
            case "filter": return value is string filter && IsFilter(filter);
            case "test": return value is string test && IsTest(test);
            default: throw new JinjaError($"unknown test '{name}'");
        }
    }

    private static readonly HashSet<string> FilterNames =
        ["trim", "upper", "lower", "capitalize", "title", "string", "safe", "e", "escape", "forceescape", "length", "count",
         "tojson", "default", "d", "join", "replace", "items", "dictsort", "first", "last", "list", "reverse", "sort",
         "unique", "int", "float", "abs", "round", "sum", "min", "max", "indent", "attr", "map", "select", "reject",
         "selectattr", "rejectattr", "wordcount"];

    private static readonly HashSet<string> TestNames =
        ["defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string", "mapping",
         "iterable", "sequence", "callable", "sameas", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le",
         "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "odd", "even", "divisibleby", "lower", "upper", "filter", "test"];

    /// <summary>Python's <c>is</c>: None, True and False are singletons, as are the small integers templates compare.</summary>
    private static bool SameAs(object? a, object? b) => a switch
    {
        null => b is null,
        bool x => b is bool y && x == y,
        long x => b is long y && x == y,
        _ => ReferenceEquals(a, b),
    };

    public static bool IsFilter(string name) => FilterNames.Contains(name);
    public static bool IsTest(string name) => TestNames.Contains(name);

    /// <summary><c>map(attribute='x')</c> or <c>map('filter', args...)</c>.</summary>
    private static List<object?> Map(object? value, CallArguments args)
    {
        var items = Values.Iterate(value);
        if (args.Named.TryGetValue("attribute", out var attribute))
        {
            var fallback = args.Named.GetValueOrDefault("default");
            return items.Select(i =>
            {
                var picked = Access.Item(i, attribute);
                return picked is Undefined && args.Named.ContainsKey("default") ? fallback : picked;
            }).ToList();
        }
        if (args.Positional.Count == 0) throw new JinjaError("map needs a filter name or attribute=");
        var filter = Values.ToText(args.Positional[0]);
        var rest = new CallArguments(args.Positional.Skip(1).ToList(), args.Named, filter);
        return items.Select(i => Apply(filter, i, rest)).ToList();
    }

    /// <summary>select/reject (test on the item) and selectattr/rejectattr (test on one of its attributes).</summary>
    private static List<object?> Select(object? value, CallArguments args, bool keep, bool byAttribute)
    {
        var offset = byAttribute ? 1 : 0;
        var attribute = byAttribute ? args.Required(0, "attribute") : null;
        var test = args.Positional.Count > offset ? Values.ToText(args.Positional[offset]) : null;
        var testArgs = new CallArguments(args.Positional.Skip(offset + 1).ToList(), [], test ?? "");
        return Values.Iterate(value).Where(item =>
        {
            var subject = byAttribute ? Access.Item(item, attribute) : item;
            var passed = test is null ? Values.IsTruthy(subject) : Test(test, subject, testArgs);
            return passed == keep;
        }).ToList();
    }

    public static string Replace(string s, object? old, object? replacement, object? count)
    {
        if (old is not string from || replacement is not string to)
            throw new JinjaError("replace() needs string arguments");
        var limit = count is null ? -1 : Values.ToLong(count);
        if (limit < 0) return from.Length == 0 ? InsertBetween(s, to) : s.Replace(from, to, StringComparison.Ordinal);
        var text = new StringBuilder();
        var pos = 0;
        for (var done = 0; done < limit; done++)
        {
            var at = s.IndexOf(from, pos, StringComparison.Ordinal);
            if (at < 0 || from.Length == 0) break;
            text.Append(s, pos, at - pos).Append(to);
            pos = at + from.Length;
        }
        return text.Append(s, pos, s.Length - pos).ToString();
    }

    private static string InsertBetween(string s, string insert) =>
        insert + string.Concat(Values.CodePoints(s).Select(c => c + insert));

    /// <summary>markupsafe's escape: the five HTML-special characters only.</summary>
    private static string Escape(string s) =>
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Python's str.title(): a letter after a non-letter is upper-cased, other letters lower-cased.</summary>
    public static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        var previousIsLetter = false;
        foreach (var c in s)
        {
            text.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }
        return text.ToString();
    }

    private static string Indent(string s, CallArguments args)
    {
        var width = args.Get(0, "width", 4L);
        var prefix = width is string w ? w : new string(' ', (int)Values.ToLong(width));
        var first = Values.IsTruthy(args.Get(1, "first", false));
        var blank = Values.IsTruthy(args.Get(2, "blank", false));
        var lines = s.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            if (i == 0 && !first) continue;
            if (lines[i].Length == 0 && !blank) continue;
            lines[i] = prefix + lines[i];
        }
        return string.Join("\n", lines);
    }

    private static object? ToInt(object? value, object? fallback) => value switch
    {
        long or bool => Values.ToLong(value),
        double d => (long)Math.Truncate(d),
        string s when long.TryParse(s.Trim().Replace("_", ""), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) => n,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => (long)Math.Truncate(d),
        _ => fallback,
    };

    private static object? ToFloat(object? value, object? fallback) => value switch
    {
        long or bool or double => Values.ToDouble(value),
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        _ => fallback,
    };
}
