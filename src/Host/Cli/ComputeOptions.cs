using ActorRing.Model;
using ActorRing.Model.Quantization;

namespace ActorRing.Host.Cli;

/// <summary>
/// Options with one meaning wherever they appear (generate, serve and the benches): how weights are stored and
/// computed, and which preset shape a benchmark builds. Each call makes a fresh option.
/// </summary>
internal static class ComputeOptions
{
    public static ChoiceOption<ComputeDType> DType() => Opt.Choice("--dtype", "f32|bf16",
        "Compute dtype of weights and activations", "f32", text =>
            ParseDType(text) ?? throw new UsageException($"option --dtype expects f32 or bf16, got '{text}'"));

    /// <summary>--kv-dtype: the KV cache's element type; null (auto) keeps it in the --dtype.</summary>
    public static ChoiceOption<ComputeDType?> KvDType() => Opt.Choice<ComputeDType?>("--kv-dtype", "auto|f32|bf16",
        "Element type of the KV cache (bf16 halves its memory and what attention reads; auto: the --dtype)", "auto", text =>
            text == "auto" ? null : ParseDType(text) ?? throw new UsageException($"option --kv-dtype expects auto, f32 or bf16, got '{text}'"));

    /// <summary>The spellings --dtype and --kv-dtype accept for a storage type; null for anything else.</summary>
    private static ComputeDType? ParseDType(string text) => text switch
    {
        "f32" or "fp32" or "float32" => ComputeDType.F32,
        "bf16" or "bfloat16" => ComputeDType.BF16,
        _ => null,
    };

    /// <summary>How <see cref="DType"/> is spelled on the command line and in JSON output.</summary>
    public static string DTypeName(ComputeDType dtype) => dtype == ComputeDType.F32 ? "f32" : "bf16";

    public static ChoiceOption<WeightQuantization> Quant() => Opt.Choice("--quant", "none|q8_0|q4_0|q4_1|q5_1",
        "Quantize the linear layers' weights to this ggml block format", "none", text =>
            WeightQuantizationNames.Parse(text) ?? throw new UsageException($"option --quant expects none, q8_0, q4_0, q4_1 or q5_1, got '{text}'"));

    public static System.CommandLine.Option<bool> QuantLmHead() => Opt.Flag("--quant-lm-head",
        "Quantize the LM head too, to the --quant format");

    /// <summary>--quant and --quant-lm-head together: the head needs a format to be quantized to.</summary>
    public static (WeightQuantization Quant, bool LmHead) QuantChoice(System.CommandLine.ParseResult result,
        ChoiceOption<WeightQuantization> quant, System.CommandLine.Option<bool> lmHead)
    {
        var format = quant.Get(result);
        bool head = result.GetValue(lmHead);
        if (head && format == WeightQuantization.None)
            throw new UsageException("--quant-lm-head quantizes the LM head to the --quant format; give --quant q8_0, q4_0, q4_1 or q5_1 too");
        return (format, head);
    }

    public static ChoiceOption<SyncPayload> SyncDType() => Opt.Choice("--sync-dtype", "f32|bf16|q8_0",
        "Payload of the ring's all-reduce", "f32", text =>
            SyncPayloadNames.Parse(text) ?? throw new UsageException($"option --sync-dtype expects f32, bf16 or q8_0, got '{text}'"));

    /// <summary>A benchmark's model shape with seeded random weights (no checkpoint, no tokenizer).</summary>
    public static System.CommandLine.Option<string?> Preset() => Opt.Typed<string?>("--preset", string.Join("|", ModelPresets.Names),
        "Model shape to build with seeded random weights", text =>
        {
            Bench.DecodeBench.Preset(text); // refuses an unknown name
            return text;
        });
}
