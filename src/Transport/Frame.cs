using System.Buffers.Binary;

namespace ActorRing.Transport;

internal enum OpCode : byte
{
    AllReduce = 1,
    AllGather = 2,
    Gather = 3,
    Broadcast = 4,
    Barrier = 5,
}

/// <summary>
/// The 16-byte header in front of every data frame. The receiver knows exactly which frame must come next
/// (operation, sequence number, frame index, dtype and length), so any difference is a desync, detected
/// before a single payload byte is read.
/// </summary>
internal readonly record struct FrameHeader(OpCode Op, byte DType, byte ElementSize, uint Seq, uint Index, uint Length)
{
    public const int Size = 16;
    public const byte Marker = 0xA7;

    /// <summary>Wire dtype code for <see cref="ICollectives.AllGather{T}"/> and friends: raw elements of T.</summary>
    public const byte RawDType = 0;

    public void Write(Span<byte> dst)
    {
        dst[0] = Marker;
        dst[1] = (byte)Op;
        dst[2] = DType;
        dst[3] = ElementSize;
        BinaryPrimitives.WriteUInt32LittleEndian(dst[4..], Seq);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[8..], Index);
        BinaryPrimitives.WriteUInt32LittleEndian(dst[12..], Length);
    }

    public static bool TryRead(ReadOnlySpan<byte> src, out FrameHeader header)
    {
        header = new FrameHeader((OpCode)src[1], src[2], src[3],
            BinaryPrimitives.ReadUInt32LittleEndian(src[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(src[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(src[12..]));
        return src[0] == Marker;
    }

    /// <summary>Null when <paramref name="got"/> is exactly the expected frame, else what differs.</summary>
    public string? Mismatch(in FrameHeader got)
    {
        if (got.Seq != Seq) return $"frame of operation #{got.Seq} arrived during operation #{Seq} (the ranks are out of step)";
        if (got.Op != Op) return $"frame of a {OpName(got.Op)} arrived, expected a {OpName(Op)}";
        if (got.DType != DType || got.ElementSize != ElementSize)
            return $"dtype {DTypeName(got.DType, got.ElementSize)}, expected {DTypeName(DType, ElementSize)}";
        if (got.Index != Index) return $"frame index {got.Index}, expected {Index}";
        if (got.Length != Length) return $"payload length {got.Length} bytes, expected {Length} (rejected before reading it)";
        return null;
    }

    public static string OpName(OpCode op) => op switch
    {
        OpCode.AllReduce => "all-reduce",
        OpCode.AllGather => "all-gather",
        OpCode.Gather => "gather",
        OpCode.Broadcast => "broadcast",
        OpCode.Barrier => "barrier",
        _ => $"unknown operation {(byte)op}",
    };

    public static string DTypeName(byte dtype, byte elementSize) => dtype switch
    {
        RawDType => $"raw{elementSize * 8}",
        (byte)Transport.DType.F32 => "f32",
        (byte)Transport.DType.BF16 => "bf16",
        (byte)Transport.DType.F16 => "f16",
        _ => $"unknown({dtype})",
    };
}
