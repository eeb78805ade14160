namespace ActorRing.Model.Quantization;

/// <summary>What the linear weights of a full-precision checkpoint are quantized to as they load (<c>--quant</c>).</summary>
public enum WeightQuantization { None, Q8_0, Q4_0, Q4_1, Q5_1 }

public static class WeightQuantizationNames
{
    /// <summary>The <c>--quant</c> spelling: none, q8_0, q4_0, q4_1, q5_1.</summary>
    public static string Name(this WeightQuantization q) => q switch
    {
        WeightQuantization.Q8_0 => "q8_0",
        WeightQuantization.Q4_0 => "q4_0",
        WeightQuantization.Q4_1 => "q4_1",
        WeightQuantization.Q5_1 => "q5_1",
        _ => "none",
    };

    public static WeightQuantization? Parse(string text) => text.ToLowerInvariant() switch
    {
        "none" or "off" => WeightQuantization.None,
        "q8_0" => WeightQuantization.Q8_0,
        "q4_0" => WeightQuantization.Q4_0,
        "q4_1" => WeightQuantization.Q4_1,
        "q5_1" => WeightQuantization.Q5_1,
        _ => null,
    };

    internal static BlockFormat? Format(this WeightQuantization q) => q switch
    {
        WeightQuantization.Q8_0 => BlockFormat.Q8_0,
        WeightQuantization.Q4_0 => BlockFormat.Q4_0,
        WeightQuantization.Q4_1 => BlockFormat.Q4_1,
        WeightQuantization.Q5_1 => BlockFormat.Q5_1,
        _ => null,
    };
}
