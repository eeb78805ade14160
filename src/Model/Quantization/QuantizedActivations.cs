using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ActorRing.Model.Quantization;

/// <summary>
/// A batch of float32 activation rows quantized to Q8_0 once per product, as ggml's <c>vec_dot_type</c>: the
/// integer kernels of every block format multiply against these. Scales are kept as float32 (the values of
/// their fp16 bits), and for each group of four quants their sum times -8, which turns Q4_0's unsigned
/// nibbles into its signed values inside the same integer instruction (Σ(q-8)·x = Σq·x - 8·Σx). Reused from
/// product to product; grows on demand.
/// </summary>
internal sealed unsafe class QuantizedActivations
{
    private sbyte[] _quants = [];
    private float[] _scales = [];
    private int[] _laneBias = [];
    private float[] _sums = [];

    /// <summary>Activation rows held.</summary>
    public int Batch { get; private set; }

    /// <summary>32-value blocks per row.</summary>
    public int Blocks { get; private set; }

    public sbyte* Quants { get; private set; }
    public float* Scales { get; private set; }

    /// <summary>Per block, eight ints: -8 times the sum of quants 4i..4i+3.</summary>
    public int* LaneBias { get; private set; }

    /// <summary>Per block, the sum of its 32 quants as a float (exact): the factor of Q4_1's and Q5_1's minimum.</summary>
    public float* Sums { get; private set; }

    /// <summary>
    /// Quantizes <paramref name="batch"/> rows of <paramref name="n"/> floats (row b at x + b·xStride) with
    /// ggml's reference Q8_0 formulas (see <see cref="Q8_0Format"/>); n must be a multiple of 32.
    /// </summary>
    public void Quantize(float* x, int n, int batch, long xStride)
    {
        int blocks = n / BlockFormat.BlockSize;
        Ensure(blocks * batch);
        Batch = batch;
        Blocks = blocks;
        for (int b = 0; b < batch; b++)
        {
            float* row = x + b * xStride;
            for (int c = 0; c < blocks; c++)
            {
                long block = (long)b * blocks + c;
                QuantizeBlock(row + c * BlockFormat.BlockSize, Quants + block * BlockFormat.BlockSize, out Scales[block], LaneBias + block * 8);
                int* bias = LaneBias + block * 8;
                Sums[block] = (bias[0] + bias[1] + bias[2] + bias[3] + bias[4] + bias[5] + bias[6] + bias[7]) / -8;
            }
        }
    }

    private void Ensure(int blocks)
    {
        if (_scales.Length >= blocks) return;
        _quants = GC.AllocateArray<sbyte>(blocks * BlockFormat.BlockSize, pinned: true);
        _scales = GC.AllocateArray<float>(blocks, pinned: true);
        _laneBias = GC.AllocateArray<int>(blocks * 8, pinned: true);
        _sums = GC.AllocateArray<float>(blocks, pinned: true);
        fixed (sbyte* q = _quants) Quants = q; // pinned arrays do not move
        fixed (float* s = _scales) Scales = s;
        fixed (int* l = _laneBias) LaneBias = l;
        fixed (float* m = _sums) Sums = m;
    }

    /// <summary>One block: d = amax/127, q = roundf(x/d), the scale stored as fp16 (see <see cref="Q8_0Format"/>).</summary>
    internal static void QuantizeBlock(float* x, sbyte* quants, out float scale, int* laneBias)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            var q = new Span<byte>(quants, BlockFormat.BlockSize);
            scale = Fp16.ToSingle(Q8_0Format.QuantizeBlockReference(new ReadOnlySpan<float>(x, BlockFormat.BlockSize), q));
            for (int i = 0; i < 8; i++) laneBias[i] = -8 * (quants[4 * i] + quants[4 * i + 1] + quants[4 * i + 2] + quants[4 * i + 3]);
            return;
        }
        var v0 = Vector256.Load(x);
        var v1 = Vector256.Load(x + 8);
        var v2 = Vector256.Load(x + 16);
        var v3 = Vector256.Load(x + 24);
        var most = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
        float amax = HorizontalMax(most);
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        scale = Fp16.ToSingle(Fp16.FromSingle(d));
        var scaleBy = Vector256.Create(id);
        var i0 = Vector256.ConvertToInt32(RoundHalfAwayFromZero(v0 * scaleBy));
        var i1 = Vector256.ConvertToInt32(RoundHalfAwayFromZero(v1 * scaleBy));
        var i2 = Vector256.ConvertToInt32(RoundHalfAwayFromZero(v2 * scaleBy));
        var i3 = Vector256.ConvertToInt32(RoundHalfAwayFromZero(v3 * scaleBy));
        var bytes = Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3));
        bytes.Store(quants);
        if (Avx2.IsSupported)
        {
            var pairs = Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), bytes);
            var sums = Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
            (sums * -8).Store(laneBias);
            return;
        }
        for (int i = 0; i < 8; i++) laneBias[i] = -8 * (quants[4 * i] + quants[4 * i + 1] + quants[4 * i + 2] + quants[4 * i + 3]);
    }

    private static float HorizontalMax(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>C's <c>roundf</c>: halves away from zero (Vector256.Round rounds them to even).</summary>
    private static Vector256<float> RoundHalfAwayFromZero(Vector256<float> v)
    {
        var truncated = Vector256.Truncate(v);
        var up = Vector256.GreaterThanOrEqual(Vector256.Abs(v - truncated), Vector256.Create(0.5f));
        var step = Vector256.CopySign(Vector256.Create(1f), v);
        return truncated + (step & up);
    }
}
