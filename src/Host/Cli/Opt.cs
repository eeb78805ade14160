using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace ActorRing.Host.Cli;

/// <summary>
/// Typed System.CommandLine options whose parse errors name the option, the value and what is expected
/// ("option --http-port must be between 0 and 65535, got 70000"), instead of the library's generic
/// "Cannot parse argument". Options without a default are nullable: null means "not given".
/// </summary>
internal static class Opt
{
    public static Option<bool> Flag(string name, string description) => new(name)
    {
        Description = description,
        Arity = ArgumentArity.ZeroOrOne,
        // --flag, --flag=true and --flag=false. The library passes on only tokens that read as a bool, and leaves
        // any other unmatched (see CommandLine.Describe).
        CustomParser = r => r.Tokens.Count == 0 || bool.Parse(r.Tokens[0].Value),
    };

    public static Option<string?> Text(string name, string helpName, string description) =>
        Typed<string?>(name, helpName, description, text => text);

    public static Option<string> Text(string name, string helpName, string description, string defaultValue)
    {
        var option = Typed<string>(name, helpName, description, text => text);
        option.DefaultValueFactory = _ => defaultValue;
        return option;
    }

    public static Option<int?> Int(string name, string description, int min = int.MinValue, int max = int.MaxValue, string helpName = "N") =>
        Typed<int?>(name, helpName, description, text => ParseInt(name, text, min, max));

    public static Option<int> Int(string name, string description, int defaultValue, int min, int max, string helpName = "N")
    {
        var option = Typed<int>(name, helpName, description, text => ParseInt(name, text, min, max));
        option.DefaultValueFactory = _ => defaultValue;
        return option;
    }

    public static Option<long?> Long(string name, string description, long min = long.MinValue, long max = long.MaxValue, string helpName = "N") =>
        Typed<long?>(name, helpName, description, text =>
        {
            if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long parsed))
                throw new UsageException($"option {name} expects an integer, got '{text}'");
            return parsed < min || parsed > max
                ? throw new UsageException($"option {name} must be between {min} and {max}, got {parsed}")
                : parsed;
        });

    public static Option<double?> Double(string name, string description, double min = double.MinValue, double max = double.MaxValue, string helpName = "X") =>
        Typed<double?>(name, helpName, description, text =>
        {
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) || double.IsNaN(parsed))
                throw new UsageException($"option {name} expects a number, got '{text}'");
            return parsed < min || parsed > max
                ? throw new UsageException($"option {name} must be between {min} and {max}, got {parsed}")
                : parsed;
        });

    /// <summary>A comma-separated list of integers, e.g. <c>--prompt-ids 1,403,407</c>; read it with
    /// <see cref="IntListOption.Get"/> (null when not given).</summary>
    public static IntListOption IntList(string name, string helpName, string description) => new(name, helpName, description);

    public static int[] ParseIntList(string name, string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new UsageException($"option {name} expects comma-separated integers, got '{parts[i]}' in '{text}'");
        }
        return result;
    }

    /// <summary>A byte size such as <c>16KiB</c>, <c>4MiB</c>, <c>1GiB</c> or a plain number of bytes.</summary>
    public static Option<long?> ByteSize(string name, string description) =>
        Typed<long?>(name, "SIZE", description, text => ParseByteSize(name, text));

    /// <summary>One value out of a fixed set, parsed by <paramref name="parse"/> (which throws a
    /// <see cref="UsageException"/> naming the choices); help shows the default as the user spells it.</summary>
    public static ChoiceOption<T> Choice<T>(string name, string choices, string description, string defaultValue, Func<string, T> parse) =>
        new(name, choices, description, defaultValue, parse);

    /// <summary>An option whose single value goes through <paramref name="parse"/>; a <see cref="UsageException"/>
    /// from it becomes this option's parse error.</summary>
    public static Option<T> Typed<T>(string name, string helpName, string description, Func<string, T> parse) => new(name)
    {
        Description = description,
        HelpName = helpName,
        Arity = ArgumentArity.ExactlyOne,
        CustomParser = r => ParseOrReport(r, parse),
    };

    internal static T? ParseOrReport<T>(ArgumentResult result, Func<string, T> parse)
    {
        try
        {
            return parse(result.Tokens[^1].Value);
        }
        catch (UsageException e)
        {
            result.AddError(e.Message);
            return default;
        }
    }

    public static long ParseByteSize(string option, string text)
    {
        string t = text.Trim();
        long unit = 1;
        foreach (var (suffix, factor) in new[] { ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1L) })
        {
            if (t.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                unit = factor;
                t = t[..^suffix.Length];
                break;
            }
        }
        if (!long.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) || n < 0)
            throw new UsageException($"option {option} expects sizes like 16KiB, 4MiB or 1048576, got '{text}'");
        return n * unit;
    }

    private static int ParseInt(string name, string text, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed))
            throw new UsageException($"option {name} expects an integer, got '{text}'");
        return parsed < min || parsed > max
            ? throw new UsageException($"option {name} must be between {min} and {max}, got {parsed}")
            : parsed;
    }
}
