using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// The signed int8 weights of a format with one fp16 scale per 32-weight block: how many bytes a block's quants
/// take after its scale, and how to read its 32 weights in order as int8, 32 at once or one at a time.
/// </summary>
internal unsafe interface ISignedQuants
{
    static abstract int Bytes { get; }
    static abstract BlockFormat Format { get; }
    static abstract Vector256<sbyte> Load(byte* quants);
    static abstract int Value(byte* quants, int k);
}

/// <summary>
/// The 256-bit and portable dot-product kernels of the formats whose weights are signed int8 values times one fp16
/// scale per block: Q8_0 (stored as int8) and IQ4_NL (4-bit indices into a table of int8 values). Both give the same
/// integer lanes for the same weight values, so an IQ4_NL block and the Q8_0 block of its values give the same bits.
/// </summary>
internal static unsafe class SignedQuantKernels<TQuants> where TQuants : struct, ISignedQuants
{
    private const int BlockSize = BlockFormat.BlockSize, PanelRows = BlockFormat.PanelRows, ColumnGroup = BlockFormat.ColumnGroup;

    /// <summary>
    /// Four rows of a panel: per block column, each row's 32 int8 products summed exactly in eight int32 lanes
    /// (|w| against x with w's sign, the operand order the instructions need), widened to float and
    /// accumulated lane by lane with the block's two scales, as ggml's AVX2 <c>vec_dot_q8_0_q8_0</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Panel4<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* y) where TDot : struct, IInt8Dot
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = acc0;
        var acc2 = acc0;
        var acc3 = acc0;
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += PanelRows, quants += PanelRows * TQuants.Bytes)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes + 64);
                var x = Vector256.Load(xq + (c + j) * BlockSize);
                var d = Fp16.ToSingle4(scales, xs[c + j]).ToVector256Unsafe();
                acc0 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 0), Vector256.ConvertToSingle(Product<TDot>(quants, x)), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 1), Vector256.ConvertToSingle(Product<TDot>(quants + TQuants.Bytes, x)), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 2), Vector256.ConvertToSingle(Product<TDot>(quants + 2 * TQuants.Bytes, x)), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Fp16.Broadcast(d, 3), Vector256.ConvertToSingle(Product<TDot>(quants + 3 * TQuants.Bytes, x)), acc3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(acc0);
        y[1] = LaneSum.Of(acc1);
        y[2] = LaneSum.Of(acc2);
        y[3] = LaneSum.Of(acc3);
    }

    /// <summary>
    /// <see cref="Panel4{TDot}"/> for two activation rows (quants and scales one row of blocks apart, outputs
    /// <paramref name="yStride"/> apart), in 256-bit registers: each weight row's load and magnitude, and the
    /// column's scale widening, serve both. Every output's integer lanes, scale product and accumulation order are
    /// <see cref="Panel4{TDot}"/>'s, so its bits are too. Two rows, not four: eight accumulators and the shared
    /// operands fill AVX2's sixteen registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Panel4Rows2<TDot>(byte* panel, int blocks, sbyte* xq, float* xs, float* y, long yStride) where TDot : struct, IInt8Dot
    {
        long qRow = (long)blocks * BlockSize, sRow = blocks;
        var a0 = Vector256<float>.Zero; // activation row 0 against weight rows 0..3, then row 1's
        Vector256<float> a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int c = 0; c < blocks; c += ColumnGroup)
        {
            int columns = Math.Min(ColumnGroup, blocks - c);
            ushort* scales = (ushort*)panel;
            byte* quants = panel + columns * PanelRows * sizeof(ushort);
            for (int j = 0; j < columns; j++, scales += PanelRows, quants += PanelRows * TQuants.Bytes)
            {
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes);
                Sse.Prefetch0(quants + DotKernel512.PrefetchBytes + 64);
                var x0 = Vector256.Load(xq + (c + j) * BlockSize);
                var x1 = Vector256.Load(xq + qRow + (c + j) * BlockSize);
                var wide = Fp16.Widen4(scales);
                var d0 = (wide * Vector128.Create(xs[c + j])).ToVector256Unsafe();
                var d1 = (wide * Vector128.Create(xs[sRow + c + j])).ToVector256Unsafe();
                (a0, b0) = Accumulate<TDot>(a0, b0, quants, x0, x1, d0, d1, 0);
                (a1, b1) = Accumulate<TDot>(a1, b1, quants + TQuants.Bytes, x0, x1, d0, d1, 1);
                (a2, b2) = Accumulate<TDot>(a2, b2, quants + 2 * TQuants.Bytes, x0, x1, d0, d1, 2);
                (a3, b3) = Accumulate<TDot>(a3, b3, quants + 3 * TQuants.Bytes, x0, x1, d0, d1, 3);
            }
            panel = quants;
        }
        y[0] = LaneSum.Of(a0);
        y[1] = LaneSum.Of(a1);
        y[2] = LaneSum.Of(a2);
        y[3] = LaneSum.Of(a3);
        y[yStride] = LaneSum.Of(b0);
        y[yStride + 1] = LaneSum.Of(b1);
        y[yStride + 2] = LaneSum.Of(b2);
        y[yStride + 3] = LaneSum.Of(b3);
    }

    /// <summary>One weight row's block against two activation rows: <see cref="Product{TDot}"/>'s operations with the load and magnitude done once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> First, Vector256<float> Second) Accumulate<TDot>(Vector256<float> first, Vector256<float> second,
        byte* quants, Vector256<sbyte> x0, Vector256<sbyte> x1, Vector256<float> d0, Vector256<float> d1, int row) where TDot : struct, IInt8Dot
    {
        var w = TQuants.Load(quants);
        var magnitude = Avx2.Abs(w);
        return (Vector256.FusedMultiplyAdd(Fp16.Broadcast(d0, row), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, magnitude, Avx2.Sign(x0, w))), first),
            Vector256.FusedMultiplyAdd(Fp16.Broadcast(d1, row), Vector256.ConvertToSingle(TDot.Dot(Vector256<int>.Zero, magnitude, Avx2.Sign(x1, w))), second));
    }

    /// <summary>One row in ggml's row layout (blocks one after another).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Row<TDot>(byte* row, int blocks, sbyte* xq, float* xs) where TDot : struct, IInt8Dot
    {
        var acc = Vector256<float>.Zero;
        for (int c = 0; c < blocks; c++, row += sizeof(ushort) + TQuants.Bytes)
        {
            var x = Vector256.Load(xq + c * BlockSize);
            acc = Vector256.FusedMultiplyAdd(Vector256.Create(Fp16.ToSingle(*(ushort*)row) * xs[c]), Vector256.ConvertToSingle(Product<TDot>(row + sizeof(ushort), x)), acc);
        }
        return LaneSum.Of(acc);
    }

    /// <summary>The same lanes and the same float operations in scalar code, for CPUs without AVX2: row <paramref name="row"/> of a packed matrix.</summary>
    public static float RowPortable(byte* packed, long row, long blocksPerRow, int panelRows, sbyte* xq, float* xs)
    {
        Span<float> acc = stackalloc float[8];
        for (int c = 0; c < blocksPerRow; c++)
        {
            float d = Fp16.ToSingle(*(ushort*)(packed + TQuants.Format.ScaleOffset(row, c, blocksPerRow, panelRows))) * xs[c];
            byte* w = packed + TQuants.Format.QuantOffset(row, c, blocksPerRow, panelRows);
            sbyte* x = xq + c * BlockSize;
            for (int lane = 0; lane < 8; lane++)
            {
                int sum = 0;
                for (int k = 4 * lane; k < 4 * lane + 4; k++) sum += TQuants.Value(w, k) * x[k];
                acc[lane] = MathF.FusedMultiplyAdd(d, sum, acc[lane]);
            }
        }
        return LaneSum.Of(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Product<TDot>(byte* quants, Vector256<sbyte> x) where TDot : struct, IInt8Dot
    {
        var w = TQuants.Load(quants);
        return TDot.Dot(Vector256<int>.Zero, Avx2.Abs(w), Avx2.Sign(x, w));
    }
}
