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
    [InlineData(4, 8)]
    [InlineData(12, 64)]
    [InlineData(128, 768)]
    public void Panel4_computes_four_rows_of_a_packed_matrix(int rows, int cols)
    {
        Assert.True(DotKernel.CanPack(rows, cols));
        var rng = new Random(rows * 31 + cols);
        float[] w = Random(rng, rows * cols), x = Random(rng, cols);
        var packed = PackPanels(w, rows, cols);
        var y = new float[rows];
        fixed (float* pw = packed, px = x, py = y)
        {
            for (int p = 0; p < rows / 4; p++) DotKernel.Panel4<F32Weights>((byte*)(pw + p * 4 * cols), px, cols, py + p * 4);
        }
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
    [InlineData(12, 64)]
    [InlineData(128, 768)]
    public void Bf16_panels_and_rows_compute_the_products_of_the_rounded_weights(int rows, int cols)
    {
        var rng = new Random(rows + cols);
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray(), x = Random(rng, cols);
        ushort[] bits = ToBf16Bits(w);
        var packed = PackPanels(bits, rows, cols);
        var fromPanels = new float[rows];
        var fromRows = new float[rows];
        fixed (ushort* pp = packed, pr = bits)
        fixed (float* px = x, py = fromPanels, pz = fromRows)
        {
            for (int p = 0; p < rows / 4; p++) DotKernel.Panel4<BF16Weights>((byte*)(pp + p * 4 * cols), px, cols, py + p * 4);
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
    [InlineData(false)]
    [InlineData(true)]
    public void Batched_panels_give_each_row_the_bits_of_its_own_one_row_product(bool bf16)
    {
        // Batch invariance at the kernel: whatever the batch size and wherever a row falls in the groups of
        // four, its outputs are bit-identical to the one-row kernel's.
        const int rows = 12, cols = 264, batch = 11;
        var rng = new Random(bf16 ? 5 : 6);
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray(), x = Random(rng, batch * cols);
        ushort[] bits = ToBf16Bits(w);
        var packedF = PackPanels(w, rows, cols);
        var packedB = PackPanels(bits, rows, cols);
        fixed (float* pf = packedF, px = x)
        fixed (ushort* pb = packedB)
        {
            byte* panels = bf16 ? (byte*)pb : (byte*)pf;
            int panelBytes = 4 * cols * (bf16 ? 2 : 4);
            var solo = new float[batch * rows];
            fixed (float* ps = solo)
            {
                for (int b = 0; b < batch; b++)
                    for (int p = 0; p < rows / 4; p++)
                    {
                        if (bf16) DotKernel.Panel4<BF16Weights>(panels + p * panelBytes, px + b * cols, cols, ps + b * rows + p * 4);
                        else DotKernel.Panel4<F32Weights>(panels + p * panelBytes, px + b * cols, cols, ps + b * rows + p * 4);
                    }
            }
            for (int size = 1; size <= batch; size++)
            {
                var y = new float[size * rows];
                fixed (float* py = y)
                {
                    for (int p = 0; p < rows / 4; p++)
                    {
                        if (bf16) DotKernel.Panel4Rows<BF16Weights>(panels + p * panelBytes, px, cols, size, cols, py + p * 4, rows);
                        else DotKernel.Panel4Rows<F32Weights>(panels + p * panelBytes, px, cols, size, cols, py + p * 4, rows);
                    }
                }
                for (int i = 0; i < y.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(solo[i]) == BitConverter.SingleToInt32Bits(y[i]),
                        $"batch {size}, row {i / rows}, output {i % rows}: {y[i]} != solo {solo[i]}");
            }
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
    [InlineData(false, 3072)] // rows 12 KB apart: PanelsRows packs each k block's activations side by side
    [InlineData(true, 3072)]
    public void Batched_panels_accumulate_every_output_in_the_one_row_order(bool bf16, int cols)
    {
        // The order that defines batch invariance, spelled out lane by lane: 8 lane accumulators, k ascending
        // in blocks of 8, one fused multiply-add per product, then Vector256.Sum. Whichever kernel
        // Panel4Rows picks (512-bit calls of up to 11 rows on AVX-512, 256-bit pairs of rows elsewhere), every
        // output must have exactly these bits, for batch sizes that leave every kind of remainder. PanelsRows
        // over the whole matrix must give them too: with 3080 columns it cuts k into blocks (carrying the lanes
        // between them) and takes 18 panels in chunks of 16; with 3072, rows a multiple of 4 KB apart, it also
        // copies each block's activation rows side by side first.
        int rows = cols > 1000 ? 72 : 8;
        var rng = new Random(cols + (bf16 ? 1 : 0));
        float[] w = Random(rng, rows * cols).Select(RoundToBf16).ToArray();
        var packedF = PackPanels(w, rows, cols);
        var packedB = PackPanels(ToBf16Bits(w), rows, cols);
        foreach (int batch in new[] { 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 25, 37 }) // one kernel call for each of 2-11 rows; above 16 (and 9-16 when 8 rows fit in L1 whole): groups of 8 rows take turns over chunks of panels
        {
            float[] x = Random(rng, batch * cols);
            var y = new float[batch * rows];
            var whole = new float[batch * rows];
            var narrow = new float[batch * rows];
            fixed (float* pf = packedF, px = x, py = y, pn = narrow)
            fixed (ushort* pb = packedB)
            {
                byte* panels = bf16 ? (byte*)pb : (byte*)pf;
                int panelBytes = 4 * cols * (bf16 ? 2 : 4);
                for (int p = 0; p < rows / 4; p++)
                {
                    if (bf16) DotKernel.Panel4Rows<BF16Weights>(panels + p * panelBytes, px, cols, batch, cols, py + p * 4, rows);
                    else DotKernel.Panel4Rows<F32Weights>(panels + p * panelBytes, px, cols, batch, cols, py + p * 4, rows);
                    // The 256-bit kernels of CPUs without AVX-512 (pairs of rows, then one), which this CPU may not pick.
                    if (bf16) DotKernel.Panel4Rows256<BF16Weights>(panels + p * panelBytes, px, cols, batch, cols, pn + p * 4, rows);
                    else DotKernel.Panel4Rows256<F32Weights>(panels + p * panelBytes, px, cols, batch, cols, pn + p * 4, rows);
                }
                fixed (float* pw = whole)
                {
                    if (bf16) DotKernel.PanelsRows<BF16Weights>(panels, rows / 4, px, cols, batch, cols, pw, rows);
                    else DotKernel.PanelsRows<F32Weights>(panels, rows / 4, px, cols, batch, cols, pw, rows);
                }
            }
            for (int b = 0; b < batch; b++)
                for (int r = 0; r < rows; r++)
                {
                    var lanes = new float[8];
                    for (int k = 0; k < cols; k += 8)
                        for (int l = 0; l < 8; l++) lanes[l] = MathF.FusedMultiplyAdd(w[r * cols + k + l], x[b * cols + k + l], lanes[l]);
                    float want = System.Runtime.Intrinsics.Vector256.Sum(System.Runtime.Intrinsics.Vector256.Create(lanes));
                    float got = y[b * rows + r];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got),
                        $"{(bf16 ? "bf16" : "f32")} n={cols} batch {batch}, row {b}, output {r}: {got} != {want} (the one-row order)");
                    float twoRows = narrow[b * rows + r];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(twoRows),
                        $"{(bf16 ? "bf16" : "f32")} n={cols} batch {batch}, row {b}, output {r}: the 256-bit kernels gave {twoRows} != {want} (the one-row order)");
                    float blocked = whole[b * rows + r];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(blocked),
                        $"{(bf16 ? "bf16" : "f32")} n={cols} batch {batch}, row {b}, output {r}: PanelsRows gave {blocked} != {want} (the one-row order)");
                }
        }
    }

    /// <summary>Packs as the model does: per 4-row panel, 8 columns of row 0, of row 1, ..., then the next 8.</summary>
    private static T[] PackPanels<T>(T[] w, int rows, int cols)
    {
        var packed = new T[w.Length];
        int at = 0;
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
        Assert.False(DotKernel.CanPack(8, 172)); // stories260K's FFN width
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
