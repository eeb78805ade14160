using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model;

/// <summary>
/// The dot product that decode's matrix-vector products are made of: one weight row against the activation
/// vector. Measured on the 2-core reference VM (AMD EPYC with AVX-512), one thread over 450 MB of llama-160m
/// weights on huge pages: this 256-bit loop with four accumulators streams 27 GB/s, as fast as a plain
/// vectorized sum over the same memory, while <see cref="System.Numerics.Tensors.TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>
/// (512-bit here) streams 20–21 GB/s and a hand-written 512-bit loop 19–22. Reading several rows at once
/// (2 or 4 interleaved streams) was slower still, 13–16 GB/s: this CPU prefers one sequential stream.
/// </summary>
internal static class DotKernel
{
    public const int PanelRows = 4, PanelColumns = 8;

    /// <summary>Whether an [out, in] matrix fits the panel layout exactly.</summary>
    public static bool CanPack(long outDim, long inDim) => Vector256.IsHardwareAccelerated && outDim % PanelRows == 0 && inDim % PanelColumns == 0;

    /// <summary>
    /// Four rows' dot products from one panel: <paramref name="panel"/> holds the rows' columns interleaved
    /// in blocks of 8 (row 0's first 8, row 1's first 8, …, row 0's next 8, …), so the weights are one
    /// sequential stream and each 8 floats of x are loaded once for four rows. Measured like
    /// <see cref="Dot{TWeights}"/> in float32: 25–26 GB/s on llama-160m and tinyllama-1.1b shapes, against 21–25
    /// row by row, where rows of 2048–5632 floats streamed slowest. Weights are stored as
    /// <typeparamref name="TWeights"/>; the arithmetic is float32.
    /// </summary>
    // Optimized from the first call: a server's first request would otherwise run ~30 decode steps on
    // unoptimized (tier-0) code, 2–5× slower, before tiered compilation catches up.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Panel4<TWeights>(byte* panel, float* x, int n, float* y) where TWeights : struct, IWeightFormat
    {
        int step = PanelColumns * TWeights.Bytes;
        var s0 = Vector256<float>.Zero;
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        for (int k = 0; k < n; k += PanelColumns)
        {
            var xv = Vector256.Load(x + k);
            s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel), xv, s0);
            s1 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + step), xv, s1);
            s2 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + 2 * step), xv, s2);
            s3 = Vector256.FusedMultiplyAdd(TWeights.Load8(panel + 3 * step), xv, s3);
            panel += PanelRows * step;
        }
        y[0] = Vector256.Sum(s0);
        y[1] = Vector256.Sum(s1);
        y[2] = Vector256.Sum(s2);
        y[3] = Vector256.Sum(s3);
    }

    /// <summary>One row's dot product with x (row-major weights: shapes that do not fill whole panels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe float Dot<TWeights>(byte* a, float* x, int n) where TWeights : struct, IWeightFormat
    {
        int size = TWeights.Bytes;
        float sum = 0;
        int k = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s0 = Vector256<float>.Zero;
            var s1 = s0;
            var s2 = s0;
            var s3 = s0;
            // Four independent accumulators hide the FMA latency; 32 weights per iteration.
            for (; k + 32 <= n; k += 32)
            {
                byte* at = a + k * size;
                s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(at), Vector256.Load(x + k), s0);
                s1 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 8 * size), Vector256.Load(x + k + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 16 * size), Vector256.Load(x + k + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(TWeights.Load8(at + 24 * size), Vector256.Load(x + k + 24), s3);
            }
            for (; k + 8 <= n; k += 8) s0 = Vector256.FusedMultiplyAdd(TWeights.Load8(a + k * size), Vector256.Load(x + k), s0);
            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; k < n; k++) sum += TWeights.Load1(a + k * size) * x[k];
        return sum;
    }
}

/// <summary>
/// How the decode kernels read weights (or cached keys and values) of one storage type as float32: the
/// arithmetic is float32 whatever the storage, so bf16 weights halve the bytes a step streams without
/// changing the kernels. Struct type arguments make the JIT compile each kernel once per format, with
/// these calls inlined.
/// </summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per element.</summary>
    static abstract int Bytes { get; }

    /// <summary>Eight consecutive elements from <paramref name="p"/>, as float32.</summary>
    static abstract Vector256<float> Load8(byte* p);

    static abstract float Load1(byte* p);
}

internal readonly unsafe struct F32Weights : IWeightFormat
{
    public static int Bytes => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p) => Vector256.Load((float*)p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => *(float*)p;
}

/// <summary>Brain float: the top 16 bits of a float32, so widening is a zero-extend and a shift.</summary>
internal readonly unsafe struct BF16Weights : IWeightFormat
{
    public static int Bytes => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* p)
    {
        var bits = Vector128.Load((ushort*)p);
        var wide = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(bits).AsUInt32() // one vpmovzxwd
            : Vector256.Create(Vector128.WidenLower(bits), Vector128.WidenUpper(bits));
        return Vector256.ShiftLeft(wide, 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* p) => BitConverter.UInt32BitsToSingle((uint)*(ushort*)p << 16);
}
