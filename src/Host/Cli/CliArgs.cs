using System.Globalization;

namespace ActorRing.Host.Cli;

/// <summary>
/// Parsed <c>--name value</c>, <c>--name=value</c> and <c>--flag</c> options of one verb. Every getter turns a
/// malformed value into a <see cref="UsageException"/> that names the option and the value.
/// </summary>
public sealed class CliArgs
{
    private readonly Dictionary<string, string?> _options;
    private readonly List<string> _positionals;

    private CliArgs(Dictionary<string, string?> options, List<string> positionals)
    {
        _options = options;
        _positionals = positionals;
    }

    public IReadOnlyList<string> Positionals => _positionals;

    /// <param name="args">The arguments after the verb.</param>
    /// <param name="flags">Option names (without dashes) that take no value.</param>
    public static CliArgs Parse(IEnumerable<string> args, params string[] flags)
    {
        var flagSet = new HashSet<string>(flags, StringComparer.Ordinal);
        var options = new Dictionary<string, string?>(StringComparer.Ordinal);
        var positionals = new List<string>();
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            string arg = e.Current;
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg == "--")
            {
                positionals.Add(arg);
                continue;
            }
            string name = arg[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (!flagSet.Contains(name))
            {
                if (!e.MoveNext()) throw new UsageException($"option --{name} needs a value");
                value = e.Current;
            }
            if (options.ContainsKey(name)) throw new UsageException($"option --{name} is given twice");
            options[name] = value;
        }
        return new CliArgs(options, positionals);
    }

    /// <summary>Rejects options the verb does not know, listing the ones it does.</summary>
    public void EnsureOnly(params string[] known)
    {
        foreach (var name in _options.Keys)
        {
            if (Array.IndexOf(known, name) < 0)
            {
                throw new UsageException(
                    $"unknown option --{name}; this command accepts: {string.Join(", ", known.Select(k => "--" + k))}");
            }
        }
    }

    public bool Has(string name) => _options.ContainsKey(name);

    public bool Flag(string name) => _options.TryGetValue(name, out var v) && (v is null || v is "true" or "1");

    public string? String(string name) => _options.TryGetValue(name, out var v) ? v : null;

    public string String(string name, string defaultValue) => String(name) ?? defaultValue;

    /// <summary><c>--dtype f32|bf16</c> (also fp32, float32, bfloat16), f32 when absent.</summary>
    public Model.ComputeDType DType() => String("dtype", "f32") switch
    {
        "f32" or "fp32" or "float32" => Model.ComputeDType.F32,
        "bf16" or "bfloat16" => Model.ComputeDType.BF16,
        var other => throw new UsageException($"option --dtype expects f32 or bf16, got '{other}'"),
    };

    /// <summary>
    /// <c>--generation-config auto|ignore</c>: the defaults of the model's generation_config.json (auto, the
    /// default, uses them when the file exists), or none.
    /// </summary>
    public Model.Sampling.GenerationDefaults GenerationDefaults(string modelDir) => String("generation-config", "auto") switch
    {
        "auto" => LoadGenerationDefaults(modelDir),
        "ignore" => Model.Sampling.GenerationDefaults.None,
        var other => throw new UsageException($"option --generation-config expects auto or ignore, got '{other}'"),
    };

    private static Model.Sampling.GenerationDefaults LoadGenerationDefaults(string modelDir)
    {
        try
        {
            return Model.Sampling.GenerationDefaults.Load(modelDir);
        }
        catch (Model.ModelLoadException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>How <see cref="DType"/> is spelled on the command line and in JSON output.</summary>
    public static string DTypeName(Model.ComputeDType dtype) => dtype == Model.ComputeDType.F32 ? "f32" : "bf16";

    /// <summary><c>--quant none|q8_0|q4_0</c> (none when absent) and the <c>--quant-lm-head</c> flag.</summary>
    public (Model.Quantization.WeightQuantization Quant, bool LmHead) Quant()
    {
        string text = String("quant", "none");
        var quant = Model.Quantization.WeightQuantizationNames.Parse(text)
            ?? throw new UsageException($"option --quant expects none, q8_0 or q4_0, got '{text}'");
        bool head = Flag("quant-lm-head");
        if (head && quant == Model.Quantization.WeightQuantization.None)
            throw new UsageException("--quant-lm-head quantizes the LM head to the --quant format; give --quant q8_0 or q4_0 too");
        return (quant, head);
    }

    /// <summary><c>--sync-dtype f32|bf16|q8_0</c>, the all-reduce payload; f32 when absent.</summary>
    public Model.SyncPayload SyncDType()
    {
        string text = String("sync-dtype", "f32");
        return Model.SyncPayloadNames.Parse(text) ?? throw new UsageException($"option --sync-dtype expects f32, bf16 or q8_0, got '{text}'");
    }

    public int? Int(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        if (!_options.TryGetValue(name, out var v)) return null;
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed))
            throw new UsageException($"option --{name} expects an integer, got '{v}'");
        if (parsed < min || parsed > max)
            throw new UsageException($"option --{name} must be between {min} and {max}, got {parsed}");
        return parsed;
    }

    public long? Long(string name, long min = long.MinValue, long max = long.MaxValue)
    {
        if (!_options.TryGetValue(name, out var v)) return null;
        if (!long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long parsed))
            throw new UsageException($"option --{name} expects an integer, got '{v}'");
        if (parsed < min || parsed > max)
            throw new UsageException($"option --{name} must be between {min} and {max}, got {parsed}");
        return parsed;
    }

    public double? Double(string name, double min = double.MinValue, double max = double.MaxValue)
    {
        if (!_options.TryGetValue(name, out var v)) return null;
        if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) || double.IsNaN(parsed))
            throw new UsageException($"option --{name} expects a number, got '{v}'");
        if (parsed < min || parsed > max)
            throw new UsageException($"option --{name} must be between {min} and {max}, got {parsed}");
        return parsed;
    }

    /// <summary>A comma-separated list of integers, e.g. <c>--prompt-ids 1,403,407</c>.</summary>
    public int[]? IntList(string name)
    {
        if (!_options.TryGetValue(name, out var v)) return null;
        var parts = (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new UsageException($"option --{name} expects comma-separated integers, got '{parts[i]}' in '{v}'");
        }
        return result;
    }

    /// <summary>A byte size such as <c>16KiB</c>, <c>4MiB</c>, <c>1GiB</c> or a plain number of bytes.</summary>
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
            throw new UsageException($"option --{option} expects sizes like 16KiB, 4MiB or 1048576, got '{text}'");
        return n * unit;
    }
}
