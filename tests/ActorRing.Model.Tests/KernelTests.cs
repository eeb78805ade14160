using ActorRing.Model;
using Xunit;

namespace ActorRing.Model.Tests;

/// <summary>The decode kernels against plain double-precision loops, and the split helpers' hand-off.</summary>
public sealed unsafe class KernelTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(33)]
    [InlineData(768)]
    [InlineData(1001)]
    public void Dot_equals_a_plain_loop(int n)
    {
        var rng = new Random(n);
        float[] a = Random(rng, n), x = Random(rng, n);
        fixed (float* pa = a, px = x)
        {
            float got = DotKernel.Dot<F32Weights>((byte*)pa, px, n);
            double want = 0;
            for (int i = 0; i < n; i++) want += (double)a[i] * x[i];
            Assert.Equal(want, got, Math.Max(1e-4, Math.Abs(want) * 1e-5));
        }
    }

    [Theory]
    [InlineData(16, 8)]
    [InlineData(48, 64)]
    [InlineData(128, 768)]
    [InlineData(32, 264)]
    public void Panels_compute_the_rows_of_a_packed_matrix(int rows, int cols)
    {
        Assert.True(DotKernel.CanPack(rows, cols));
        var rng = new Random(rows * 31 + cols);
        float[] w = Random(rng, rows * cols), x = Random(rng, cols);
        var y = new float[rows];
        Product(PackPanels(w, rows, cols, DotKernel.WidePanels), DotKernel.WidePanels, x, 1, rows, cols, y);
        for (int r = 0; r < rows; r++)
        {
            double want = 0;
            for (int k = 0; k < cols; k++) want += (double)w[r * cols + k] * x[k];
            Assert.Equal(want, y[r], Math.Max(1e-4, Math.Abs(want) * 1e-5));
        }
    }

    [Theory]
    [InlineData(64, 1, false)]
    [InlineData(64, 200, false)]
    [InlineData(128, 37, false)]
    [InlineData(48, 9, false)]   // not a multiple of 64: six blocks of 8 columns
    [InlineData(96, 21, false)]  // a block of 64 columns, then four of 8
    [InlineData(8, 3, false)]
    [InlineData(12, 5, false)]   // not a multiple of 8: the portable path
    [InlineData(64, 200, true)]
    [InlineData(48, 9, true)]
    [InlineData(12, 5, true)]
    public void Attention_of_one_head_equals_a_plain_softmax_weighted_sum(int headDim, int length, bool bf16Cache)
    {
        var rng = new Random(headDim * 1000 + length);
        float[] q = Random(rng, headDim), keys = Random(rng, length * headDim), values = Random(rng, length * headDim);
        if (bf16Cache)
        {
            // The reference reads the values the cache really holds: rounded to bf16.
            keys = keys.Select(RoundToBf16).ToArray();
            values = values.Select(RoundToBf16).ToArray();
        }
        float scale = 1f / MathF.Sqrt(headDim);
        var scores = new float[length];
        var output = new float[headDim];
        // The cache is paged: blocks of 4 positions, scattered in reverse order through a pool with a spare
        // block between each, so the kernel must follow the block table to find each position.
        const int blockSize = 4;
        int blocks = (length + blockSize - 1) / blockSize;
        var table = Enumerable.Range(0, blocks).Select(b => 2 * (blocks - 1 - b) + 1).ToArray();
        float[] pagedKeys = Page(keys, table, blockSize, headDim), pagedValues = Page(values, table, blockSize, headDim);
        fixed (float* pq = q, pk = pagedKeys, pv = pagedValues, ps = scores, po = output)
        fixed (int* pt = table)
        {
            if (bf16Cache)
            {
                fixed (ushort* bk = ToBf16Bits(pagedKeys), bv = ToBf16Bits(pagedValues))
                    AttentionKernel.Attend<BF16Weights>(pq, (byte*)bk, (byte*)bv, pt, blockSize, blockSize * headDim * 2L, 0, length, headDim, scale, 0f, ps, po);
            }
            else
            {
                AttentionKernel.Attend<F32Weights>(pq, (byte*)pk, (byte*)pv, pt, blockSize, blockSize * headDim * 4L, 0, length, headDim, scale, 0f, ps, po);
            }
        }

        var weights = new double[length];
        for (int l = 0; l < length; l++)
        {
            for (int k = 0; k < headDim; k++) weights[l] += (double)q[k] * keys[l * headDim + k];
            weights[l] *= scale;
        }
        double max = weights.Max(), total = weights.Sum(w => Math.Exp(w - max));
        for (int c = 0; c < headDim; c++)
        {
            double want = 0;
            for (int l = 0; l < length; l++) want += Math.Exp(weights[l] - max) / total * values[l * headDim + c];
            Assert.Equal(want, output[c], 1e-5);
        }
    }

    [Theory]
    [InlineData(16, 64)]
    [InlineData(128, 768)]
    public void Bf16_panels_and_rows_compute_the_products_of_the_rounded_weights(int rows, int cols)
    {
        var rng = new Random(rows + cols);
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray(), x = Random(rng, cols);
        ushort[] bits = ToBf16Bits(w);
        var fromPanels = new float[rows];
        var fromRows = new float[rows];
        Product(PackPanels(bits, rows, cols, DotKernel.WidePanels), DotKernel.WidePanels, x, 1, rows, cols, fromPanels);
        fixed (ushort* pr = bits)
        fixed (float* px = x, pz = fromRows)
        {
            for (int r = 0; r < rows; r++) pz[r] = DotKernel.Dot<BF16Weights>((byte*)(pr + r * cols), px, cols);
        }
        for (int r = 0; r < rows; r++)
        {
            double want = 0;
            for (int k = 0; k < cols; k++) want += (double)w[r * cols + k] * x[k];
            Assert.Equal(want, fromPanels[r], Math.Max(1e-4, Math.Abs(want) * 1e-5));
            Assert.Equal(want, fromRows[r], Math.Max(1e-4, Math.Abs(want) * 1e-5));
        }
    }

    /// <summary>Rows [position, headDim] copied into a pool of blocks at the places the block table names.</summary>
    private static float[] Page(float[] rows, int[] table, int blockSize, int headDim)
    {
        var pool = new float[(table.Max() + 1) * blockSize * headDim];
        for (int l = 0; l < rows.Length / headDim; l++)
            Array.Copy(rows, l * headDim, pool, (table[l / blockSize] * blockSize + l % blockSize) * headDim, headDim);
        return pool;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Batched_panels_give_each_row_the_bits_of_its_own_one_row_product(bool bf16, bool wide)
    {
        // Batch invariance at the kernel, in both layouts: whatever the batch size and wherever a row falls in the
        // groups, its outputs are bit-identical to its product alone.
        if (wide && !DotKernel.WidePanels) wide = false; // the 16-row kernels need AVX-512; this CPU packs 4-row panels
        const int rows = 32, cols = 264, batch = 37;
        var rng = new Random(bf16 ? 5 : 6);
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray(), x = Random(rng, batch * cols);
        object packed = bf16 ? PackPanels(ToBf16Bits(w), rows, cols, wide) : PackPanels(w, rows, cols, wide);
        var solo = new float[batch * rows];
        for (int b = 0; b < batch; b++) Product(packed, wide, x.AsSpan(b * cols, cols).ToArray(), 1, rows, cols, solo.AsSpan(b * rows, rows));
        for (int size = 1; size <= batch; size++)
        {
            var y = new float[size * rows];
            Product(packed, wide, x.AsSpan(0, size * cols).ToArray(), size, rows, cols, y);
            for (int i = 0; i < y.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(solo[i]) == BitConverter.SingleToInt32Bits(y[i]),
                    $"{(wide ? 16 : 4)}-row panels, batch {size}, row {i / rows}, output {i % rows}: {y[i]} != solo {solo[i]}");
        }
    }

    [Theory]
    [InlineData(false, 8)]
    [InlineData(false, 264)]
    [InlineData(false, 776)]
    [InlineData(true, 8)]
    [InlineData(true, 264)]
    [InlineData(true, 776)]
    [InlineData(false, 3080)]
    [InlineData(true, 3080)]
    public void Batched_panels_accumulate_every_output_in_the_one_row_order(bool bf16, int cols)
    {
        // The orders that define batch invariance, spelled out. 4-row panels (every CPU with 256-bit vectors runs
        // them, so they are checked here whichever layout this CPU packs): 8 lane accumulators, k ascending in
        // blocks of 8, one fused multiply-add per product, then Vector256.Sum. 16-row panels (AVX-512): one fused
        // multiply-add per product, k ascending, from +0. Every output must have exactly these bits, for batch sizes
        // that leave every kind of remainder (pairs of rows and a last one; groups of 16, pairs of panels up to 8
        // rows, and with 3080 columns, a 197 KB panel, groups past 16 rows taking turns over chunks of one panel).
        int rows = cols > 1000 ? 48 : 16;
        var rng = new Random(cols + (bf16 ? 1 : 0));
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray();
        foreach (bool wide in DotKernel.WidePanels ? new[] { false, true } : new[] { false })
        {
            object packed = bf16 ? PackPanels(ToBf16Bits(w), rows, cols, wide) : PackPanels(w, rows, cols, wide);
            foreach (int batch in new[] { 1, 2, 3, 5, 7, 8, 9, 11, 13, 16, 17, 19, 25, 37 })
            {
                float[] x = Random(rng, batch * cols);
                var y = new float[batch * rows];
                Product(packed, wide, x, batch, rows, cols, y);
                for (int b = 0; b < batch; b++)
                    for (int r = 0; r < rows; r++)
                    {
                        float want;
                        if (wide)
                        {
                            want = 0;
                            for (int k = 0; k < cols; k++) want = MathF.FusedMultiplyAdd(w[r * cols + k], x[b * cols + k], want);
                        }
                        else
                        {
                            var lanes = new float[8];
                            for (int k = 0; k < cols; k += 8)
                                for (int l = 0; l < 8; l++) lanes[l] = MathF.FusedMultiplyAdd(w[r * cols + k + l], x[b * cols + k + l], lanes[l]);
                            want = System.Runtime.Intrinsics.Vector256.Sum(System.Runtime.Intrinsics.Vector256.Create(lanes));
                        }
                        float got = y[b * rows + r];
                        Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got),
                            $"{(wide ? 16 : 4)}-row panels, {(bf16 ? "bf16" : "f32")} n={cols} batch {batch}, row {b}, output {r}: {got} != {want} (the one-row order)");
                    }
            }
        }
    }

    /// <summary>y[b·rows + r] for a matrix packed as <see cref="PackPanels{T}"/> (float[] f32 or ushort[] bf16), as
    /// the model computes it: the 16-row layout through transposed activation groups, the 4-row one directly.</summary>
    private static void Product(object packed, bool wide, float[] x, int batch, int rows, int cols, Span<float> y)
    {
        var xt = new float[DotKernel.TransposedFloats(batch, cols)];
        var result = new float[batch * rows];
        fixed (float* px = x, pt = xt, py = result)
        {
            DotKernel.Transpose(px, cols, batch, cols, pt);
            if (packed is ushort[] bits)
                fixed (ushort* pb = bits)
                {
                    if (wide) DotKernel.Panels16Rows<BF16Weights>((byte*)pb, rows / 16, pt, batch, cols, py, rows);
                    else DotKernel.Panels4Rows<BF16Weights>((byte*)pb, rows / 4, px, cols, batch, cols, py, rows);
                }
            else
                fixed (float* pf = (float[])packed)
                {
                    if (wide) DotKernel.Panels16Rows<F32Weights>((byte*)pf, rows / 16, pt, batch, cols, py, rows);
                    else DotKernel.Panels4Rows<F32Weights>((byte*)pf, rows / 4, px, cols, batch, cols, py, rows);
                }
        }
        result.CopyTo(y);
    }

    /// <summary>Packs as the model does: per 16-row panel each column's 16 weights side by side (wide), or per
    /// 4-row panel 8 columns of row 0, of row 1, ..., then the next 8.</summary>
    private static T[] PackPanels<T>(T[] w, int rows, int cols, bool wide)
    {
        var packed = new T[w.Length];
        int at = 0;
        if (wide)
        {
            for (int p = 0; p < rows / 16; p++)
                for (int k = 0; k < cols; k++)
                    for (int r = 0; r < 16; r++)
                        packed[at++] = w[(p * 16 + r) * cols + k];
            return packed;
        }
        for (int p = 0; p < rows / 4; p++)
            for (int c = 0; c < cols; c += 8)
                for (int r = 0; r < 4; r++)
                    for (int k = 0; k < 8; k++)
                        packed[at++] = w[(p * 4 + r) * cols + c + k];
        return packed;
    }

    private static float RoundToBf16(float v) => Transport.BFloat16.FromSingle(v).ToSingle();

    private static ushort[] ToBf16Bits(float[] values) => values.Select(v => Transport.BFloat16.FromSingle(v).Bits).ToArray();

    [Fact]
    public void Shapes_that_do_not_fill_whole_panels_stay_row_major()
    {
        Assert.False(DotKernel.CanPack(6, 8));
        // stories260K's FFN width: as the output it fills 4-row panels, not 16-row ones; as the input any width
        // fits the 16-row panels, while the 4-row ones need whole blocks of 8 columns.
        Assert.Equal(!DotKernel.WidePanels, DotKernel.CanPack(172, 64));
        Assert.Equal(DotKernel.WidePanels, DotKernel.CanPack(64, 172));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    public void Split_helpers_run_every_part_of_every_product_and_surface_errors(int spinMicroseconds)
    {
        using var workers = new SplitWorkers(3, TimeSpan.FromMicroseconds(spinMicroseconds));
        var counts = new int[3];
        for (int round = 0; round < 2000; round++)
        {
            var seen = new int[3];
            workers.Run(part => seen[part]++);
            Assert.Equal([1, 1, 1], seen);
            for (int i = 0; i < 3; i++) counts[i] += seen[i];
            // Now and then let the helpers fall asleep, so both hand-off paths (spinning and sleeping) run.
            if (round % 500 == 0) Thread.Sleep(5);
        }
        Assert.Equal([2000, 2000, 2000], counts);
        var error = Assert.Throws<InvalidOperationException>(() => workers.Run(part =>
        {
            if (part == 2) throw new InvalidOperationException("helper 2 failed");
        }));
        Assert.Equal("helper 2 failed", error.Message);
        int after = 0;
        workers.Run(_ => Interlocked.Increment(ref after));
        Assert.Equal(3, after);
    }

    [Fact]
    public void Cores_are_consecutive_blocks_and_none_when_the_ranks_do_not_fit()
    {
        int cores = Environment.ProcessorCount;
        Assert.Equal([0], CorePinning.CoresFor(0, 1, 1)!);
        if (cores >= 2) Assert.Equal([1], CorePinning.CoresFor(1, 2, 1)!);
        Assert.Null(CorePinning.CoresFor(0, cores + 1, 1));
        Assert.Null(CorePinning.CoresFor(0, 1, cores + 1));
    }

    private static float[] Random(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}
