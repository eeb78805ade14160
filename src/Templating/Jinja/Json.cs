using System.Globalization;
using System.Text;

namespace ActorRing.Templating.Jinja;

/// <summary>
/// <c>tojson</c> as Hugging Face defines it: Python's <c>json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)</c>. So ", " and ": " between items without indent, ","
/// and ": " with it; non-ASCII text unescaped; no HTML escaping (Jinja's own tojson would escape &lt;).
/// </summary>
internal static class Json
{
    public static string Serialize(object? value, object? indent, object? separators, bool sortKeys)
    {
        var indentText = indent switch
        {
            null => null,
            string s => s,
            _ => new string(' ', (int)Math.Max(0, Values.ToLong(indent))),
        };
        string itemSeparator, keySeparator;
        if (separators is List<object?> { Count: 2 } pair && pair[0] is string item && pair[1] is string key)
            (itemSeparator, keySeparator) = (item, key);
        else if (separators is null)
            (itemSeparator, keySeparator) = (indentText is null ? ", " : ",", ": ");
        else throw new JinjaError("tojson separators must be a pair of strings, e.g. (',', ':')");

        var text = new StringBuilder();
        Write(text, value, indentText, itemSeparator, keySeparator, sortKeys, 0);
        return text.ToString();
    }

    private static void Write(StringBuilder text, object? value, string? indent, string itemSeparator, string keySeparator, bool sortKeys, int depth)
    {
        switch (value)
        {
            case null: text.Append("null"); return;
            case bool b: text.Append(b ? "true" : "false"); return;
            case long n: text.Append(n.ToString(CultureInfo.InvariantCulture)); return;
            case double d:
                text.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Values.FormatFloat(d));
                return;
            case string s: WriteString(text, s); return;
            case List<object?> list:
                WriteContainer(text, '[', ']', list, (item) => Write(text, item, indent, itemSeparator, keySeparator, sortKeys, depth + 1), indent, itemSeparator, depth);
                return;
            case Dictionary<string, object?> dict:
                IEnumerable<KeyValuePair<string, object?>> pairs = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict;
                WriteContainer(text, '{', '}', pairs.ToList(), pair =>
                {
                    WriteString(text, pair.Key);
                    text.Append(keySeparator);
                    Write(text, pair.Value, indent, itemSeparator, keySeparator, sortKeys, depth + 1);
                }, indent, itemSeparator, depth);
                return;
            default:
                throw new JinjaError($"Object of type {Values.TypeName(value)} is not JSON serializable");
        }
    }

    private static void WriteContainer<T>(StringBuilder text, char open, char close, IReadOnlyList<T> items, Action<T> writeItem, string? indent, string itemSeparator, int depth)
    {
        text.Append(open);
        if (items.Count == 0)
        {
            text.Append(close);
            return;
        }
        var newline = indent is null ? null : "\n" + string.Concat(Enumerable.Repeat(indent, depth + 1));
        for (var i = 0; i < items.Count; i++)
        {
            if (i > 0) text.Append(itemSeparator);
            if (newline is not null) text.Append(newline);
            writeItem(items[i]);
        }
        if (indent is not null) text.Append('\n').Append(string.Concat(Enumerable.Repeat(indent, depth)));
        text.Append(close);
    }

    private static void WriteString(StringBuilder text, string s)
    {
        text.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20) text.Append($"\\u{(int)c:x4}");
                    else text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }
}
