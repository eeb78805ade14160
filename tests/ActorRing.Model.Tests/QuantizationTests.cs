using System.Runtime.Intrinsics.X86;
using ActorRing.Model.Quantization;

namespace ActorRing.Model.Tests;

/// <summary>
/// Q8_0, Q4_0, Q4_1 and Q5_1 against ggml itself (blocks its reference quantizers wrote, kept in Data/), and the integer
/// decode kernels against each other and against plain double-precision loops over the dequantized values.
/// </summary>
public sealed unsafe class QuantizationTests
{
    private static readonly BlockFormat[] Formats = [BlockFormat.Q8_0, BlockFormat.Q4_0, BlockFormat.Q4_1, BlockFormat.Q5_1];

    /// <summary>With IQ4_NL, which is read from files only (no quantizer).</summary>
    private static readonly BlockFormat[] KernelFormats = [.. Formats, BlockFormat.Iq4Nl];

    /// <summary>The rows the golden file was made from, built the way its C generator builds them.</summary>
    private static IEnumerable<(string Name, float[] Row)> GoldenRows()
    {
        double[] scales = [1.0, 0.02, 300.0, 1e-6];
        for (int r = 0; r < scales.Length; r++)
        {
            var rng = new XorShift(0x9E3779B97F4A7C15ul + (ulong)r);
            yield return ($"random{r}", Enumerable.Range(0, 256).Select(_ => (float)(rng.Next() * scales[r])).ToArray());
        }
        yield return ("zeros", new float[64]);
        var huge = new XorShift(7);
        var row = Enumerable.Range(0, 64).Select(_ => huge.Next() * 0.01f).ToArray();
        row[5] = 30000f;
        row[40] = -1000f;
        yield return ("huge", row);
        yield return ("plusminusmax", Enumerable.Range(0, 64).Select(i => (i % 2 == 1 ? 1f : -1f) * 3.5f).ToArray());
        var ties = new float[64];
        for (int i = 0; i < 32; i++) ties[i] = (i - 16) * 0.5f;
        ties[31] = 127f;
        for (int i = 32; i < 64; i++) ties[i] = -(float)(i - 32) / 16.0f * 8.0f;
        yield return ("ties", ties);
    }

    private sealed class XorShift(ulong state)
    {
        public float Next()
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            return (float)((state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
    }

    [Fact]
    public void Quantized_rows_equal_ggml_reference_blocks_byte_for_byte()
    {
        var golden = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "ggml_quants_golden.txt"))
            .Where(l => !l.StartsWith('#'))
            .Select(l => l.Split(' '))
            .ToDictionary(p => (p[0], p[1]), p => p[2]);
        int compared = 0;
        foreach (var (name, row) in GoldenRows())
        {
            foreach (var format in Formats)
            {
                var blocks = new byte[format.RowBytes(row.Length)];
                format.QuantizeRow(row, blocks);
                Assert.True(golden[(name, format.Name)] == Convert.ToHexStringLower(blocks), $"{name} {format.Name}");
                compared++;
            }
        }
        Assert.Equal(32, compared);
    }

    [Fact]
    public unsafe void K_quant_blocks_dequantize_to_the_values_ggml_gives()
    {
        int checkedTypes = 0;
        foreach (var line in File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "ggml_kquants_golden.txt")).Where(l => !l.StartsWith('#')))
        {
            var parts = line.Split(' ');
            var type = Enum.Parse<GgmlType>(parts[0], ignoreCase: true);
            var blocks = Convert.FromHexString(parts[1]);
            var want = Convert.FromHexString(parts[2]);
            Assert.Equal(2 * GgmlTypeTraits.Geometry(type)!.Value.BlockBytes, blocks.Length);
            var got = new float[512];
            fixed (byte* b = blocks)
            fixed (float* g = got) GgmlTypeTraits.Dequantize(type, b, 512, g);
            for (int i = 0; i < 512; i++)
            {
                uint bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(want.AsSpan(4 * i));
                Assert.True(bits == BitConverter.SingleToUInt32Bits(got[i]), $"{type} value {i}: {got[i]}, ggml {BitConverter.UInt32BitsToSingle(bits)}");
            }
            checkedTypes++;
        }
        Assert.Equal(3, checkedTypes);
    }

    /// <summary>
    /// Q4_K and Q5_K super-blocks (ggml's own, from the golden file) as Q4_1 and Q5_1 blocks: the dequantized values
    /// are ggml's dequantize_row_q4_K/_q5_K values within the fp16 rounding of each sub-block's scale and minimum,
    /// and the quants are carried over unchanged.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K, 15)]
    [InlineData(GgmlType.Q5_K, 31)]
    public unsafe void K_quant_blocks_become_scale_and_minimum_blocks_of_the_same_values(GgmlType type, int levels)
    {
        var line = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "ggml_kquants_golden.txt")).Single(l => l.StartsWith($"q{type.ToString()[1]}_K "));
        var blocks = Convert.FromHexString(line.Split(' ')[1]);
        var want = Convert.FromHexString(line.Split(' ')[2]);
        var format = KQuantConversion.Target(type)!.Value.Format;
        var converted = new byte[16 * format.BytesPerBlock];
        var got = new float[512];
        fixed (byte* k = blocks, q = converted) KQuantConversion.Convert(type, k, 2, q);
        format.DequantizeRow(converted, got);
        int exact = 0;
        for (int i = 0; i < 512; i++)
        {
            float ggml = BitConverter.UInt32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(want.AsSpan(4 * i)));
            int block = i / 32;
            float d = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(converted, block * format.BytesPerBlock));
            float m = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(converted, block * format.BytesPerBlock + 2));
            float bound = (levels * MathF.Abs(d) + MathF.Abs(m)) / 2048 * 1.01f;
            Assert.True(MathF.Abs(got[i] - ggml) <= bound, $"{type} value {i}: {got[i]}, ggml {ggml} (bound {bound})");
            if (got[i] == ggml) exact++;
            // The quant itself is carried over: the value's step count above the minimum is a whole number.
            double steps = (got[i] - (double)m) / d;
            Assert.True(Math.Abs(steps - Math.Round(steps)) < 1e-3 && Math.Round(steps) is >= 0 && Math.Round(steps) <= levels, $"{type} value {i}: {steps} steps");
        }
        Assert.True(exact < 512, "the golden row's scales are not all exact in fp16, so some values must move");
    }

    [Fact]
    public unsafe void Iq4_blocks_dequantize_to_the_values_ggml_gives_and_iq4_xs_becomes_iq4_nl()
    {
        var golden = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Data", "ggml_iq4_golden.txt")).Where(l => !l.StartsWith('#'))
            .Select(l => l.Split(' ')).ToDictionary(p => p[0], p => (Blocks: Convert.FromHexString(p[1]), Values: Convert.FromHexString(p[2])));
        float Want(string type, int i) => BitConverter.UInt32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(golden[type].Values.AsSpan(4 * i)));
        foreach (var (name, type) in new[] { ("iq4_nl", GgmlType.IQ4_NL), ("iq4_xs", GgmlType.IQ4_XS) })
        {
            var got = new float[512];
            fixed (byte* b = golden[name].Blocks)
            fixed (float* g = got) GgmlTypeTraits.Dequantize(type, b, 512, g);
            for (int i = 0; i < 512; i++)
                Assert.True(BitConverter.SingleToUInt32Bits(Want(name, i)) == BitConverter.SingleToUInt32Bits(got[i]), $"{name} value {i}: {got[i]}, ggml {Want(name, i)}");
        }
        // IQ4_XS as IQ4_NL: each sub-block's d·(ls-32) rounded to fp16, the indices unchanged.
        var nl = new byte[16 * 18];
        var back = new float[512];
        fixed (byte* xs = golden["iq4_xs"].Blocks, to = nl) KQuantConversion.Convert(GgmlType.IQ4_XS, xs, 2, to);
        BlockFormat.Iq4Nl.DequantizeRow(nl, back);
        for (int i = 0; i < 512; i++)
        {
            float d = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(nl, i / 32 * 18));
            Assert.True(MathF.Abs(back[i] - Want("iq4_xs", i)) <= 127 * MathF.Abs(d) / 2048 * 1.01f, $"iq4_xs as iq4_nl, value {i}: {back[i]}, ggml {Want("iq4_xs", i)}");
        }
        Assert.Equal(golden["iq4_xs"].Blocks.AsSpan(8, 16).ToArray(), nl.AsSpan(2, 16).ToArray());
    }

    /// <summary>
    /// An IQ4_NL matrix and the Q8_0 matrix of its very values (each block's scale, and its table values as int8) give
    /// the same bits for one and several activation rows: the IQ4_NL kernels are Q8_0's over looked-up weights.
    /// </summary>
    [Fact]
    public unsafe void Iq4_nl_gives_the_bits_of_the_q8_0_blocks_of_its_values()
    {
        const int rows = 12, cols = 288, blocks = cols / 32, batch = 3;
        var random = new Random(5);
        var nl = new byte[rows * blocks * 18];
        random.NextBytes(nl);
        var q8 = new byte[rows * blocks * 34];
        for (int b = 0; b < rows * blocks; b++)
        {
            BitConverter.TryWriteBytes(nl.AsSpan(b * 18), Fp16.FromSingle((float)(random.NextDouble() * 2 - 1) * 0.01f));
            nl.AsSpan(b * 18, 2).CopyTo(q8.AsSpan(b * 34));
            for (int k = 0; k < 32; k++)
                q8[b * 34 + 2 + k] = (byte)Iq4NlFormat.Table[k < 16 ? nl[b * 18 + 2 + k] & 0x0F : nl[b * 18 + 2 + k - 16] >> 4];
        }
        var x = Enumerable.Range(0, batch * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var acts = new QuantizedActivations();
        var fromNl = new float[batch * rows];
        var fromQ8 = new float[batch * rows];
        var nlPacked = new byte[nl.Length];
        var q8Packed = new byte[q8.Length];
        fixed (byte* n = nl, q = q8, np = nlPacked, qp = q8Packed)
        fixed (float* px = x, a = fromNl, c = fromQ8)
        {
            BlockFormat.Iq4Nl.PackRows(n, 0, rows, blocks, 4, np);
            BlockFormat.Q8_0.PackRows(q, 0, rows, blocks, 4, qp);
            acts.Quantize(px, cols, batch, cols);
            BlockFormat.Iq4Nl.Dot(np, 0, rows, blocks, 4, acts, a, rows);
            BlockFormat.Q8_0.Dot(qp, 0, rows, blocks, 4, acts, c, rows);
        }
        Assert.Equal(fromQ8.Select(BitConverter.SingleToInt32Bits), fromNl.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(fromNl, v => v != 0);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Non_finite_weights_are_refused_naming_the_value_and_column(float bad)
    {
        foreach (var format in Formats)
        {
            var row = new float[64];
            row[37] = bad;
            var error = Assert.Throws<ModelLoadException>(() => format.QuantizeRow(row, new byte[format.RowBytes(64)], "layer 3 q_proj row 5"));
            Assert.Contains($"layer 3 q_proj row 5: value {bad} at column 37 cannot be quantized to {format.Name}", error.Message);
        }
    }

    [Fact]
    public void A_scale_beyond_fp16_is_refused()
    {
        var row = new float[32];
        row[0] = 1e7f; // 1e7/127 > 65504
        var error = Assert.Throws<ModelLoadException>(() => BlockFormat.Q8_0.QuantizeRow(row, new byte[34]));
        Assert.Contains("overflows fp16", error.Message);
    }

    [Fact]
    public void Dequantized_values_are_whole_multiples_of_the_scale_within_one_step()
    {
        var rng = new XorShift(11);
        var row = Enumerable.Range(0, 128).Select(_ => rng.Next()).ToArray();
        foreach (var format in Formats)
        {
            var blocks = new byte[format.RowBytes(128)];
            format.QuantizeRow(row, blocks);
            var back = new float[128];
            format.DequantizeRow(blocks, back);
            for (int b = 0; b < 4; b++)
            {
                float d = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(blocks, b * format.BytesPerBlock));
                // Q4_1's values are q·d + m: whole multiples of d above the block's minimum m.
                float m = format.ScaleBytes == 4 ? (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(blocks, b * format.BytesPerBlock + 2)) : 0f;
                for (int j = 0; j < 32; j++)
                {
                    int i = b * 32 + j;
                    // Q8_0 rounds to the nearest step; Q4_0 too, except that its 16 levels stop one short of
                    // the far end (-8d..7d), so a value opposite the block's largest can be a whole step off. The
                    // quants come from the float32 scale, dequantizing uses its fp16 rounding: 2^-11 relative more.
                    // Q4_1 and Q5_1 round to the nearest of their 16 or 32 levels from the minimum up (half a
                    // step), their fp16 minimum off the true one by 2^-11 of it.
                    float step = format == BlockFormat.Q4_0 ? 1f : 0.5f;
                    Assert.True(MathF.Abs(back[i] - row[i]) <= MathF.Abs(d) * step + (MathF.Abs(row[i]) + MathF.Abs(m)) / 1024, $"{format} {i}: {row[i]} -> {back[i]} (d {d})");
                    double multiple = (back[i] - (double)m) / d;
                    Assert.Equal(Math.Round(multiple), multiple, 1e-4);
                }
            }
        }
    }

    [Fact]
    public void Fp16_scales_widen_exactly_for_every_finite_half()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            var half = BitConverter.UInt16BitsToHalf((ushort)bits);
            if (!Half.IsFinite(half)) continue;
            Assert.Equal(BitConverter.SingleToInt32Bits((float)half), BitConverter.SingleToInt32Bits(Fp16.ToSingle((ushort)bits)));
        }
    }

    [Fact]
    public void Activations_quantize_to_the_same_bytes_as_the_reference_quantizer()
    {
        foreach (var (name, row) in GoldenRows())
        {
            var reference = new byte[BlockFormat.Q8_0.RowBytes(row.Length)];
            BlockFormat.Q8_0.QuantizeRow(row, reference);
            var acts = new QuantizedActivations();
            fixed (float* x = row) acts.Quantize(x, row.Length, 1, row.Length);
            for (int b = 0; b < row.Length / 32; b++)
            {
                float d = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(reference, b * 34));
                Assert.True(BitConverter.SingleToInt32Bits(d) == BitConverter.SingleToInt32Bits(acts.Scales[b]), $"{name} block {b} scale");
                for (int j = 0; j < 32; j++)
                {
                    sbyte q = acts.Quants[b * 32 + j];
                    Assert.True((sbyte)reference[b * 34 + 2 + j] == q, $"{name} value {b * 32 + j}");
                }
                for (int lane = 0; lane < 8; lane++)
                {
                    int sum = 0;
                    for (int k = 0; k < 4; k++) sum += acts.Quants[b * 32 + lane * 4 + k];
                    Assert.Equal(-8 * sum, acts.LaneBias[b * 8 + lane]);
                }
            }
        }
    }

    /// <summary>A quantized [rows, cols] matrix in the panel layout, and its dequantized values.</summary>
    private static (byte[] Packed, float[] Values) QuantizedMatrix(BlockFormat format, int rows, int cols, int seed, int panelRows)
    {
        var rng = new XorShift((ulong)seed + 1);
        var w = Enumerable.Range(0, rows * cols).Select(_ => rng.Next()).ToArray();
        var rowMajor = new byte[format.RowBytes(cols) * rows];
        for (int r = 0; r < rows; r++)
            format.QuantizeRow(w.AsSpan(r * cols, cols), rowMajor.AsSpan((int)(r * format.RowBytes(cols)), (int)format.RowBytes(cols)));
        var packed = new byte[rowMajor.Length];
        var values = new float[rows * cols];
        fixed (byte* from = rowMajor, to = packed)
        fixed (float* v = values)
        {
            format.PackRows(from, 0, rows, cols / 32, panelRows, to);
            format.DequantizeRows(to, 0, rows, cols / 32, panelRows, v);
        }
        var check = new float[cols];
        format.DequantizeRow(rowMajor.AsSpan(0, (int)format.RowBytes(cols)), check);
        Assert.Equal(check, values.AsSpan(0, cols).ToArray()); // packing moved the blocks, not their values
        return (packed, values);
    }

    [Theory]
    [InlineData(8, 64, 1)]
    [InlineData(12, 256, 3)]
    [InlineData(64, 768, 2)]
    [InlineData(16, 288, 11)] // groups of four activation rows and a remainder of three; 9 block columns: a short last group
    public void Every_kernel_gives_the_same_bits_and_the_dot_of_the_dequantized_values(int rows, int cols, int batch)
    {
        foreach (var format in Formats)
        {
            var (packed, values) = QuantizedMatrix(format, rows, cols, rows + cols, 4);
            var rng = new XorShift(99);
            var x = Enumerable.Range(0, batch * cols).Select(_ => rng.Next()).ToArray();
            var acts = new QuantizedActivations();
            var batched = new float[batch * rows];
            var single = new float[rows];
            fixed (float* px = x, py = batched, ps = single)
            fixed (byte* w = packed)
            {
                acts.Quantize(px, cols, batch, cols);
                format.Dot(w, 0, rows, cols / 32, 4, acts, py, rows);
                int blocks = cols / 32;
                for (int b = 0; b < batch; b++)
                {
                    var one = new QuantizedActivations();
                    one.Quantize(px + b * cols, cols, 1, cols);
                    format.Dot(w, 0, rows, blocks, 4, one, ps, rows);
                    for (int r = 0; r < rows; r++)
                    {
                        float got = batched[b * rows + r];
                        Assert.Equal(BitConverter.SingleToInt32Bits(single[r]), BitConverter.SingleToInt32Bits(got)); // batch-independent
                        var portable = Portable(format, w, r, blocks, 4, one.Quants, one.Scales);
                        Assert.Equal(BitConverter.SingleToInt32Bits(portable), BitConverter.SingleToInt32Bits(got));
                        // Against the dequantized weights times the dequantized activations, in double.
                        double want = 0;
                        for (int k = 0; k < cols; k++) want += (double)values[r * cols + k] * one.Quants[k] * one.Scales[k / 32];
                        Assert.Equal(want, got, Math.Max(1e-4, Math.Abs(want) * 1e-5));
                    }
                }
            }
        }
    }

    private static float Portable(BlockFormat format, byte* w, long row, long blocks, int panelRows, sbyte* xq, float* xs)
    {
        if (format == BlockFormat.Q8_0) return Q8_0Format.RowPortable(w, row, blocks, panelRows, xq, xs);
        if (format == BlockFormat.Q4_0) return Q4_0Format.RowPortable(w, row, blocks, panelRows, xq, xs);
        if (format == BlockFormat.Iq4Nl) return SignedQuantKernels<Iq4NlFormat.Quants>.RowPortable(w, row, blocks, panelRows, xq, xs);
        // Q4_1's and Q5_1's minimum multiplies each activation block's sum, summed here from the quants.
        float* sums = stackalloc float[(int)blocks];
        for (long b = 0; b < blocks; b++)
        {
            int sum = 0;
            for (int k = 0; k < 32; k++) sum += xq[b * 32 + k];
            sums[b] = sum;
        }
        return format == BlockFormat.Q4_1 ? Q4_1Format.RowPortable(w, row, blocks, panelRows, xq, xs, sums)
            : Q5_1Format.RowPortable(w, row, blocks, panelRows, xq, xs, sums);
    }

    [Fact]
    public void Rows_kept_in_ggml_layout_compute_the_same_bits_as_panels()
    {
        foreach (var format in Formats)
        {
            const int rows = 8, cols = 128;
            var (panels, _) = QuantizedMatrix(format, rows, cols, 5, 4);
            var (rowMajor, _) = QuantizedMatrix(format, rows, cols, 5, 1);
            var rng = new XorShift(3);
            var x = Enumerable.Range(0, cols).Select(_ => rng.Next()).ToArray();
            var acts = new QuantizedActivations();
            var a = new float[rows];
            var b = new float[rows];
            fixed (float* px = x, pa = a, pb = b)
            fixed (byte* wp = panels, wr = rowMajor)
            {
                acts.Quantize(px, cols, 1, cols);
                format.Dot(wp, 0, rows, cols / 32, 4, acts, pa, rows);
                format.Dot(wr, 0, rows, cols / 32, 1, acts, pb, rows);
            }
            Assert.Equal(a.Select(BitConverter.SingleToInt32Bits), b.Select(BitConverter.SingleToInt32Bits));
        }
    }

    private delegate void PanelKernel(float* y);

    /// <summary>
    /// Every panel kernel this CPU can run (AVX2 for one and two activation rows, AVX-VNNI, AVX-512) against the
    /// portable one, on raw random blocks: every quant byte value (Q8_0's -128, which no quantizer writes but a GGUF file may hold, and every
    /// nibble) and scales across fp16's range, for one and several activation rows.
    /// </summary>
    [Theory]
    [InlineData(768)]
    [InlineData(224)] // 7 block columns: the 512-bit kernels' scales of the last three come from a padded copy
    public void Every_panel_kernel_gives_the_portable_bits_on_raw_random_blocks(int cols)
    {
        const int rows = 8;
        int blocks = cols / 32;
        foreach (var format in KernelFormats)
        {
            var random = new Random(11);
            var packed = new byte[rows * format.RowBytes(cols)];
            random.NextBytes(packed);
            fixed (byte* w = packed)
            {
                for (int r = 0; r < rows; r++)
                {
                    for (int c = 0; c < blocks; c++)
                    for (int s = 0; s < format.ScaleBytes; s += 2) // Q4_1's minimum as well as its scale
                        *(ushort*)(w + format.ScaleOffset(r, c, blocks, 4) + s) = Fp16.FromSingle((float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-20, 12))));
                }
                var x = Enumerable.Range(0, 3 * cols).Select(_ => (float)(random.NextDouble() * 2 - 1) * 40f).ToArray();
                var acts = new QuantizedActivations();
                fixed (float* px = x)
                {
                    acts.Quantize(px, cols, 3, cols);
                    for (int b = 0; b < 3; b++)
                    {
                        sbyte* xq = acts.Quants + b * cols;
                        float* xs = acts.Scales + b * blocks;
                        int* bias = acts.LaneBias + b * blocks * 8;
                        float* sums = acts.Sums + b * blocks;
                        for (int r = 0; r < rows; r += 4)
                        {
                            byte* panel = w + format.ScaleOffset(r, 0, blocks, 4), weights = w;
                            int[] PortableRows(int activationRow) => Enumerable.Range(0, 4).Select(i => BitConverter.SingleToInt32Bits(
                                Portable(format, weights, r + i, blocks, 4, acts.Quants + activationRow * cols, acts.Scales + activationRow * blocks))).ToArray();
                            var want = PortableRows(b);
                            if (b + 1 < 3 && Avx2.IsSupported)
                            {
                                // The two-row AVX2 kernels: activation rows b and b+1 at once, outputs 8 apart.
                                var wantNext = PortableRows(b + 1);
                                foreach (bool vnni in AvxVnni.IsSupported ? new[] { false, true } : [false])
                                {
                                    var pair = new float[16];
                                    Array.Fill(pair, 12345f);
                                    fixed (float* y = pair)
                                    {
                                        if (format == BlockFormat.Q8_0 && vnni) Q8_0Format.Panel4Rows2<VnniDot>(panel, blocks, xq, xs, y, 8);
                                        else if (format == BlockFormat.Q8_0) Q8_0Format.Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, y, 8);
                                        else if (format == BlockFormat.Q4_1 && vnni) Q4_1Format.Panel4Rows2<VnniDot>(panel, blocks, xq, xs, sums, y, 8);
                                        else if (format == BlockFormat.Q4_1) Q4_1Format.Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, sums, y, 8);
                                        else if (format == BlockFormat.Q5_1 && vnni) Q5_1Format.Panel4Rows2<VnniDot>(panel, blocks, xq, xs, sums, y, 8);
                                        else if (format == BlockFormat.Q5_1) Q5_1Format.Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, sums, y, 8);
                                        else if (format == BlockFormat.Iq4Nl && vnni) SignedQuantKernels<Iq4NlFormat.Quants>.Panel4Rows2<VnniDot>(panel, blocks, xq, xs, y, 8);
                                        else if (format == BlockFormat.Iq4Nl) SignedQuantKernels<Iq4NlFormat.Quants>.Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, y, 8);
                                        else if (vnni) Q4_0Format.Panel4Rows2<VnniDot>(panel, blocks, xq, xs, bias, y, 8);
                                        else Q4_0Format.Panel4Rows2<Avx2Dot>(panel, blocks, xq, xs, bias, y, 8);
                                    }
                                    Assert.Equal([12345f, 12345f, 12345f, 12345f], pair[4..8]);
                                    Assert.Equal([12345f, 12345f, 12345f, 12345f], pair[12..]);
                                    Assert.True(want.SequenceEqual(pair[..4].Select(BitConverter.SingleToInt32Bits)) && wantNext.SequenceEqual(pair[8..12].Select(BitConverter.SingleToInt32Bits)),
                                        $"{format} two-row kernel (VNNI {vnni}), rows {r}..{r + 3}, activation rows {b} and {b + 1}: [{string.Join(", ", pair[..4])}] and [{string.Join(", ", pair[8..12])}] where the portable kernel gives [{string.Join(", ", want.Select(BitConverter.Int32BitsToSingle))}] and [{string.Join(", ", wantNext.Select(BitConverter.Int32BitsToSingle))}]");
                                }
                            }
                            void Check(string kernel, PanelKernel run)
                            {
                                var output = new float[8];
                                Array.Fill(output, 12345f, 4, 4); // a kernel writes its four rows and nothing past them
                                fixed (float* y = output) run(y);
                                Assert.Equal([12345f, 12345f, 12345f, 12345f], output[4..]);
                                var got = output[..4];
                                Assert.True(want.SequenceEqual(got.Select(BitConverter.SingleToInt32Bits)), $"{format} {kernel}, rows {r}..{r + 3}, activation row {b}: [{string.Join(", ", got)}] where the portable kernel gives [{string.Join(", ", want.Select(BitConverter.Int32BitsToSingle))}]");
                            }
                            if (format == BlockFormat.Q8_0)
                            {
                                if (Avx2.IsSupported) Check("AVX2", y => Q8_0Format.Panel4<Avx2Dot>(panel, blocks, xq, xs, y));
                                if (AvxVnni.IsSupported) Check("AVX-VNNI", y => Q8_0Format.Panel4<VnniDot>(panel, blocks, xq, xs, y));
                                if (Avx512BW.IsSupported) Check("AVX-512", y => Q8_0Format.Panel4x512(panel, blocks, xq, xs, y));
                            }
                            else if (format == BlockFormat.Q4_1)
                            {
                                if (Avx2.IsSupported) Check("AVX2", y => Q4_1Format.Panel4<Avx2Dot>(panel, blocks, xq, xs, sums, y));
                                if (AvxVnni.IsSupported) Check("AVX-VNNI", y => Q4_1Format.Panel4<VnniDot>(panel, blocks, xq, xs, sums, y));
                            }
                            else if (format == BlockFormat.Iq4Nl)
                            {
                                if (Avx2.IsSupported) Check("AVX2", y => SignedQuantKernels<Iq4NlFormat.Quants>.Panel4<Avx2Dot>(panel, blocks, xq, xs, y));
                                if (AvxVnni.IsSupported) Check("AVX-VNNI", y => SignedQuantKernels<Iq4NlFormat.Quants>.Panel4<VnniDot>(panel, blocks, xq, xs, y));
                            }
                            else if (format == BlockFormat.Q5_1)
                            {
                                if (Avx2.IsSupported) Check("AVX2", y => Q5_1Format.Panel4<Avx2Dot>(panel, blocks, xq, xs, sums, y));
                                if (AvxVnni.IsSupported) Check("AVX-VNNI", y => Q5_1Format.Panel4<VnniDot>(panel, blocks, xq, xs, sums, y));
                            }
                            else
                            {
                                if (Avx2.IsSupported) Check("AVX2", y => Q4_0Format.Panel4<Avx2Dot>(panel, blocks, xq, xs, bias, y));
                                if (AvxVnni.IsSupported) Check("AVX-VNNI", y => Q4_0Format.Panel4<VnniDot>(panel, blocks, xq, xs, bias, y));
                                if (Avx512BW.IsSupported) Check("AVX-512", y => Q4_0Format.Panel4x512(panel, blocks, xq, xs, bias, y));
                            }
                        }
                    }
                }
            }
        }
    }
}
