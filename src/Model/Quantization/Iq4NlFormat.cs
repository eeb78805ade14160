using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// ggml's IQ4_NL: blocks of 32 weights, an fp16 scale d and 16 bytes of 4-bit indices q into a fixed table of 16
/// non-uniform int8 values (ggml's <c>kvalues_iq4nl</c>), the value d·table[q]; byte j holds weight j's index in its
/// low nibble and weight j+16's in its high one (18 bytes, 4.5 bits per weight). It is also what an IQ4_XS tensor
/// runs as (<see cref="KQuantConversion"/>). The looked-up int8 weights go through the Q8_0 kernels
/// (<see cref="SignedQuantKernels{TQuants}"/>), so a block gives the bits of the Q8_0 block of its values.
/// Read from GGUF files only: ggml's IQ4_NL quantizer searches scales against an importance matrix, and `--quant`
/// does not offer it.
/// </summary>
internal sealed unsafe class Iq4NlFormat : BlockFormat
{
    /// <summary>ggml's <c>kvalues_iq4nl</c>.</summary>
    internal static ReadOnlySpan<sbyte> Table => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    public override string Name => "iq4_nl";
    public override GgmlType Type => GgmlType.IQ4_NL;
    public override int BytesPerBlock => 18;

    protected override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block) =>
        throw new NotSupportedException("iq4_nl blocks are read from GGUF files; quantize to q4_0, q4_1, q5_1 or q8_0 instead");

    /// <summary><c>dequantize_row_iq4_nl</c>: d times the table value.</summary>
    public override void DequantizeBlock(byte* scales, byte* quants, float* values)
    {
        float d = Fp16.ToSingle(*(ushort*)scales);
        for (int k = 0; k < BlockSize; k++) values[k] = d * Quants.Value(quants, k);
    }

    public override void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride) =>
        DotPanels<Kernels>(packed, row0, row1, blocksPerRow, panelRows, x, y, yStride);

    private readonly struct Kernels : IPanelKernels
    {
        public static int Batched(byte* panel, int blocks, QuantizedActivations x, int b, int groupEnd, float* y, long yStride)
        {
            // The 256-bit kernels on every AVX2 CPU (no 512-bit ones for IQ4_NL; the same bits).
            if (!Avx2.IsSupported) return b;
            for (; b + 2 <= groupEnd; b += 2)
            {
                if (AvxVnni.IsSupported) SignedQuantKernels<Quants>.Panel4Rows2<VnniDot>(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks, y + b * yStride, yStride);
                else SignedQuantKernels<Quants>.Panel4Rows2<Avx2Dot>(panel, blocks, x.Quants + (long)b * blocks * BlockSize, x.Scales + (long)b * blocks, y + b * yStride, yStride);
            }
            return b;
        }

        public static void Single(byte* packed, byte* panel, long r, long blocksPerRow, int panelRows, QuantizedActivations x, int b, float* y)
        {
            int blocks = (int)blocksPerRow;
            sbyte* xq = x.Quants + (long)b * blocks * BlockSize;
            float* xs = x.Scales + (long)b * blocks;
            if (panelRows == PanelRows && Avx2.IsSupported)
            {
                if (AvxVnni.IsSupported) SignedQuantKernels<Quants>.Panel4<VnniDot>(panel, blocks, xq, xs, y);
                else SignedQuantKernels<Quants>.Panel4<Avx2Dot>(panel, blocks, xq, xs, y);
            }
            else if (panelRows == 1 && Avx2.IsSupported) *y = SignedQuantKernels<Quants>.Row<Avx2Dot>(panel, blocks, xq, xs);
            else
            {
                for (int i = 0; i < panelRows; i++) y[i] = SignedQuantKernels<Quants>.RowPortable(packed, r + i, blocksPerRow, panelRows, xq, xs);
            }
        }
    }


    /// <summary>IQ4_NL's quants: 16 bytes of table indices, looked up with one in-lane byte shuffle.</summary>
    internal readonly struct Quants : ISignedQuants
    {
        public static int Bytes => 16;
        public static BlockFormat Format => Iq4Nl;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Load(byte* quants) => Avx2.Shuffle(
            Vector256.Create((sbyte)-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113),
            Q4_0Format.Nibbles(quants).AsSByte());

        public static int Value(byte* quants, int k) => Table[k < 16 ? quants[k] & 0x0F : quants[k - 16] >> 4];
    }
}
