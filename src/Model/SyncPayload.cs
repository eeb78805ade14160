namespace ActorRing.Model;

/// <summary>
/// How the step's row-parallel partial sums travel in the all-reduce (<c>--sync-dtype</c>): float32, bf16
/// (half the bytes), or Q8_0 blocks (34 bytes per 32 values, about a quarter). Compressed on send and widened
/// on receive; the sum runs in float32 in rank order, so every rank still gets bit-identical activations.
/// </summary>
public enum SyncPayload { F32, BF16, Q8_0 }

public static class SyncPayloadNames
{
    public static string Name(this SyncPayload p) => p switch
    {
        SyncPayload.BF16 => "bf16",
        SyncPayload.Q8_0 => "q8_0",
        _ => "f32",
    };

    public static SyncPayload? Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => SyncPayload.F32,
        "bf16" or "bfloat16" => SyncPayload.BF16,
        "q8_0" => SyncPayload.Q8_0,
        _ => null,
    };
}
