using System.Globalization;
using System.Text;

namespace ActorRing.Templating.Jinja;

/// <summary>Operators with Python's rules: <c>+</c> joins strings or lists and adds numbers, <c>/</c> is
/// true division, <c>//</c> and <c>%</c> floor, <c>~</c> joins anything as text.</summary>
internal static class Operators
{
    public static object? Unary(string op, object? operand) => op switch
    {
        "not" => !Values.IsTruthy(operand),
        "-" when operand is double d => -d,
        "-" when Values.IsInteger(operand) => -Values.ToLong(operand),
        "+" when Values.IsNumber(operand) => operand is double ? operand : (object)Values.ToLong(operand),
        _ => throw new JinjaError(Undefined(operand) ?? $"bad operand type for unary {op}: '{Values.TypeName(operand)}'"),
    };

    private static string? Undefined(object? value) => value is Undefined u ? u.Description : null;

    public static object? Binary(string op, object? left, object? right)
    {
        if (op == "~") return Values.ToText(left) + Values.ToText(right);
        var undefined = Undefined(left) ?? Undefined(right);
        if (undefined is not null) throw new JinjaError(undefined);

        if (op == "+")
        {
            if (left is string a && right is string b) return a + b;
            if (left is List<object?> x && right is List<object?> y) return x.Concat(y).ToList();
        }
        if (op == "*")
        {
            if (left is string s && Values.IsInteger(right)) return Repeat(s, Values.ToLong(right));
            if (right is string t && Values.IsInteger(left)) return Repeat(t, Values.ToLong(left));
            if (left is List<object?> list && Values.IsInteger(right))
                return Enumerable.Repeat(list, (int)Math.Max(0, Values.ToLong(right))).SelectMany(l => l).ToList();
        }
        if (!Values.IsNumber(left) || !Values.IsNumber(right))
        {
            if (op == "+" && left is string) throw new JinjaError($"can only concatenate str (not \"{Values.TypeName(right)}\") to str");
            throw new JinjaError($"unsupported operand type(s) for {op}: '{Values.TypeName(left)}' and '{Values.TypeName(right)}'");
        }

        var floating = left is double || right is double;
        switch (op)
        {
            case "+": return floating ? (object)(Values.ToDouble(left) + Values.ToDouble(right)) : Values.ToLong(left) + Values.ToLong(right);
            case "-": return floating ? (object)(Values.ToDouble(left) - Values.ToDouble(right)) : Values.ToLong(left) - Values.ToLong(right);
            case "*": return floating ? (object)(Values.ToDouble(left) * Values.ToDouble(right)) : Values.ToLong(left) * Values.ToLong(right);
            case "/":
                if (Values.ToDouble(right) == 0) throw new JinjaError("division by zero");
                return Values.ToDouble(left) / Values.ToDouble(right);
            case "//":
                if (Values.ToDouble(right) == 0) throw new JinjaError("integer division or modulo by zero");
                return floating ? (object)Math.Floor(Values.ToDouble(left) / Values.ToDouble(right))
                    : (object)FloorDiv(Values.ToLong(left), Values.ToLong(right));
            case "%":
                if (Values.ToDouble(right) == 0) throw new JinjaError("integer division or modulo by zero");
                if (floating)
                {
                    var (l, r) = (Values.ToDouble(left), Values.ToDouble(right));
                    return l - r * Math.Floor(l / r);
                }
                var (n, m) = (Values.ToLong(left), Values.ToLong(right));
                return n - m * FloorDiv(n, m);
            case "**":
                return floating || Values.ToLong(right) < 0 ? (object)Math.Pow(Values.ToDouble(left), Values.ToDouble(right))
                    : (object)checked((long)Math.Pow(Values.ToLong(left), Values.ToLong(right)));
            default:
                throw new JinjaError($"unknown operator {op}");
        }
    }

    private static long FloorDiv(long a, long b)
    {
        var q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
    }

    private static string Repeat(string s, long times) =>
        times <= 0 ? "" : new StringBuilder(s.Length * (int)times).Insert(0, s, (int)times).ToString();

    public static bool Compare(string op, object? left, object? right) => op switch
    {
        "==" => Values.Equals(left, right),
        "!=" => !Values.Equals(left, right),
        "in" => Values.Contains(right, left),
        "not in" => !Values.Contains(right, left),
        "<" => Ordered(op, left, right) < 0,
        "<=" => Ordered(op, left, right) <= 0,
        ">" => Ordered(op, left, right) > 0,
        ">=" => Ordered(op, left, right) >= 0,
        _ => throw new JinjaError($"unknown comparison {op}"),
    };

    private static int Ordered(string op, object? left, object? right)
    {
        var undefined = Undefined(left) ?? Undefined(right);
        if (undefined is not null) throw new JinjaError(undefined);
        return Values.Compare(left, right, op);
    }
}

/// <summary><c>x.name</c>, <c>x[key]</c> and <c>x[a:b:c]</c>. A missing key or index gives Undefined, as in
/// Jinja; only touching something on an Undefined is an error.</summary>
internal static class Access
{
    public static object? Attribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined undefined:
                throw new JinjaError(undefined.Description);
            case Dictionary<string, object?> dict:
                if (dict.TryGetValue(name, out var value)) return value;
                break;
            case Namespace ns:
                if (ns.Attributes.TryGetValue(name, out var attribute)) return attribute;
                break;
            case LoopContext loop:
                return loop.Attribute(name);
        }
        if (Methods.Has(target, name))
            return new Callable(name, args => Methods.Call(target, name, args));
        return new Undefined(target is null ? $"'None' has no attribute '{name}'" : $"'{Values.TypeName(target)} object' has no attribute '{name}'");
    }

    public static object? Item(object? target, object? key)
    {
        switch (target)
        {
            case Undefined undefined:
                throw new JinjaError(undefined.Description);
            case Dictionary<string, object?> dict:
                return key is string s && dict.TryGetValue(s, out var value) ? value
                    : new Undefined($"'dict object' has no attribute {Values.Repr(key)}");
            case List<object?> list when Values.IsInteger(key):
                var index = Values.ToLong(key);
                if (index < 0) index += list.Count;
                return index >= 0 && index < list.Count ? list[(int)index]
                    : new Undefined($"list index {Values.ToLong(key)} is out of range");
            case string text when Values.IsInteger(key):
                var chars = Values.CodePoints(text);
                var at = Values.ToLong(key);
                if (at < 0) at += chars.Count;
                return at >= 0 && at < chars.Count ? chars[(int)at] : new Undefined($"string index {Values.ToLong(key)} is out of range");
        }
        if (key is string name) return Attribute(target, name);
        return new Undefined($"'{Values.TypeName(target)} object' has no item {Values.Repr(key)}");
    }

    /// <summary>Python slicing, including negative bounds and steps (<c>[::-1]</c> reverses).</summary>
    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        if (target is Undefined undefined) throw new JinjaError(undefined.Description);
        IReadOnlyList<object?> items = target switch
        {
            List<object?> list => list,
            string s => Values.CodePoints(s),
            _ => throw new JinjaError($"'{Values.TypeName(target)}' object cannot be sliced"),
        };
        var count = items.Count;
        var stride = step is null ? 1 : Values.ToLong(step);
        if (stride == 0) throw new JinjaError("slice step cannot be zero");
        long Bound(object? value, long whenMissing)
        {
            if (value is null) return whenMissing;
            var v = Values.ToLong(value);
            if (v < 0) v += count;
            return stride > 0 ? Math.Clamp(v, 0, count) : Math.Clamp(v, -1, count - 1);
        }
        var from = Bound(start, stride > 0 ? 0 : count - 1);
        var to = Bound(stop, stride > 0 ? count : -1);
        var picked = new List<object?>();
        for (var i = from; stride > 0 ? i < to : i > to; i += stride) picked.Add(items[(int)i]);
        return target is string ? string.Concat(picked.Cast<string>()) : picked;
    }
}

/// <summary>The Python methods templates call on strings and dicts. Lists get none: HF renders in an
/// immutable sandbox, where <c>append</c> and friends are refused.</summary>
internal static class Methods
{
    private static readonly HashSet<string> StringMethods =
        ["startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "upper", "lower",
         "title", "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isalpha", "isspace",
         "islower", "isupper"];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];
    private static readonly HashSet<string> UnsafeListMethods = ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"];

    public static bool Has(object? target, string name) => target switch
    {
        string => StringMethods.Contains(name),
        Dictionary<string, object?> => DictMethods.Contains(name),
        List<object?> => UnsafeListMethods.Contains(name),
        _ => false,
    };

    public static object? Call(object? target, string name, CallArguments args) => target switch
    {
        string s => CallString(s, name, args),
        Dictionary<string, object?> dict => name switch
        {
            "items" => dict.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
            "keys" => dict.Keys.Cast<object?>().ToList(),
            "values" => dict.Values.ToList(),
            "get" => args.Required(0, "key") is string key && dict.TryGetValue(key, out var value) ? value : args.Get(1, "default"),
            _ => throw new JinjaError($"dict has no method '{name}'"),
        },
        List<object?> => throw new JinjaError($"access to attribute '{name}' of 'list' object is unsafe: templates cannot modify lists"),
        _ => throw new JinjaError($"'{Values.TypeName(target)}' has no method '{name}'"),
    };

    private static string? Chars(CallArguments args) => args.Get(0, "chars") switch
    {
        null => null,
        string chars => chars,
        var other => throw new JinjaError($"strip arg must be None or str, not {Values.TypeName(other)}"),
    };

    private static object? CallString(string s, string name, CallArguments args)
    {
        switch (name)
        {
            case "startswith": return Affix(s, args.Required(0, "prefix"), s.StartsWith);
            case "endswith": return Affix(s, args.Required(0, "suffix"), s.EndsWith);
            case "strip": return Strip(s, Chars(args), true, true);
            case "lstrip": return Strip(s, Chars(args), true, false);
            case "rstrip": return Strip(s, Chars(args), false, true);
            case "split": return Split(s, args.Get(0, "sep") as string, (int)Values.ToLong(args.Get(1, "maxsplit", -1L)), fromRight: false);
            case "rsplit": return Split(s, args.Get(0, "sep") as string, (int)Values.ToLong(args.Get(1, "maxsplit", -1L)), fromRight: true);
            case "splitlines": return s.Length == 0 ? new List<object?>() : (s.EndsWith('\n') ? s[..^1] : s).Split('\n').Select(l => (object?)l).ToList();
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Filters.Title(s);
            case "capitalize": return Filters.Capitalize(s);
            case "replace": return Filters.Replace(s, args.Required(0, "old"), args.Required(1, "new"), args.Get(2, "count"));
            case "find": return (long)s.IndexOf(Text(args.Required(0, "sub")), StringComparison.Ordinal);
            case "rfind": return (long)s.LastIndexOf(Text(args.Required(0, "sub")), StringComparison.Ordinal);
            case "count":
                var sub = Text(args.Required(0, "sub"));
                return sub.Length == 0 ? (long)Values.CodePoints(s).Count + 1 : (long)((s.Length - s.Replace(sub, "").Length) / sub.Length);
            case "join": return string.Join(s, Values.Iterate(args.Required(0, "iterable")).Select(Text));
            case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "islower": return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            case "isupper": return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            default: throw new JinjaError($"str has no method '{name}'");
        }
    }

    private static string Text(object? value) =>
        value as string ?? throw new JinjaError($"expected a string argument, got {Values.TypeName(value)}");

    /// <summary>startswith/endswith take a string or a tuple of strings.</summary>
    private static bool Affix(string s, object? affix, Func<string, StringComparison, bool> test) => affix switch
    {
        string one => test(one, StringComparison.Ordinal),
        List<object?> many => many.Any(a => test(Text(a), StringComparison.Ordinal)),
        _ => throw new JinjaError($"startswith/endswith first arg must be str or a tuple of str, not {Values.TypeName(affix)}"),
    };

    /// <summary>Python's strip: whitespace by default, else any of the given characters.</summary>
    public static string Strip(string s, string? chars, bool left, bool right)
    {
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);
        var start = 0;
        var end = s.Length;
        if (left) while (start < end && Strippable(s[start])) start++;
        if (right) while (end > start && Strippable(s[end - 1])) end--;
        return s[start..end];
    }

    private static List<object?> Split(string s, string? separator, int maxSplit, bool fromRight)
    {
        if (separator is "") throw new JinjaError("empty separator");
        List<string> parts;
        if (separator is null)
        {
            // No separator: runs of whitespace split, and empty strings are dropped.
            var words = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToList();
            if (maxSplit < 0 || words.Count <= maxSplit + 1) return words.Cast<object?>().ToList();
            if (fromRight)
            {
                var keep = words.Count - maxSplit;
                var cut = s.TrimEnd();
                for (var i = 0; i < maxSplit; i++) cut = cut[..cut.LastIndexOf(words[words.Count - 1 - i], StringComparison.Ordinal)].TrimEnd();
                return [cut.TrimStart(), .. words.Skip(keep)];
            }
            var rest = s.TrimStart();
            var head = new List<object?>();
            for (var i = 0; i < maxSplit; i++)
            {
                var word = words[i];
                head.Add(word);
                rest = rest[word.Length..].TrimStart();
            }
            head.Add(rest);
            return head;
        }
        if (maxSplit < 0) parts = s.Split(separator).ToList();
        else if (!fromRight) parts = s.Split(separator, maxSplit + 1).ToList();
        else
        {
            parts = [];
            var remaining = s;
            for (var i = 0; i < maxSplit; i++)
            {
                var at = remaining.LastIndexOf(separator, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Insert(0, remaining[(at + separator.Length)..]);
                remaining = remaining[..at];
            }
            parts.Insert(0, remaining);
        }
        return parts.Cast<object?>().ToList();
    }
}

/// <summary>Python's <c>datetime.strftime</c> for the directives templates use with <c>strftime_now</c>.</summary>
internal static class StrFTime
{
    public static string Format(DateTimeOffset time, string format)
    {
        var culture = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            var directive = format[++i];
            text.Append(directive switch
            {
                'a' => time.ToString("ddd", culture),
                'A' => time.ToString("dddd", culture),
                'b' or 'h' => time.ToString("MMM", culture),
                'B' => time.ToString("MMMM", culture),
                'd' => time.ToString("dd", culture),
                'e' => time.Day.ToString(culture).PadLeft(2),
                'm' => time.ToString("MM", culture),
                'y' => time.ToString("yy", culture),
                'Y' => time.Year.ToString(culture),
                'H' => time.ToString("HH", culture),
                'I' => time.ToString("hh", culture),
                'M' => time.ToString("mm", culture),
                'S' => time.ToString("ss", culture),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => time.DayOfYear.ToString("000", culture),
                'f' => (time.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", culture),
                'w' => ((int)time.DayOfWeek).ToString(culture),
                'z' => (time.Offset < TimeSpan.Zero ? "-" : "+") + time.Offset.ToString("hhmm", culture),
                'F' => time.ToString("yyyy-MM-dd", culture),
                'T' => time.ToString("HH:mm:ss", culture),
                '%' => "%",
                _ => "%" + directive,
            });
        }
        return text.ToString();
    }
}
