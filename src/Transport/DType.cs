namespace ActorRing.Transport;

/// <summary>Element type of a collective buffer. The numeric value is sent in every frame header.</summary>
public enum DType : byte
{
    F32 = 1,
    BF16 = 2,
    F16 = 3,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
