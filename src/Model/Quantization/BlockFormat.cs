namespace ActorRing.Model.Quantization;

/// <summary>
/// One block-quantized weight format, in the style of ggml's <c>type_traits</c>: block size and bytes per
/// block, quantizing and dequantizing rows, packing rows into decode panels, and the decode dot product
/// against activations quantized to Q8_0. Blocks are ggml's exact bytes (an fp16 scale, then the quants), so
/// a GGUF tensor needs no conversion and our quantization error is ggml's.
///
/// Panel layout (see <see cref="DotKernel"/> for the float formats' equivalent): rows are grouped
/// <see cref="PanelRows"/> at a time, and a group's block columns are kept <see cref="ColumnGroup"/> at a
/// time: first those columns' scales, column by column ([d0 d1 d2 d3] each), then their quants, column by
/// column ([qs0][qs1][qs2][qs3] each). The weights are one sequential stream, each activation block is loaded
/// once for four rows, and the 512-bit kernels widen four columns' sixteen scales with one load. A group of
/// eight columns is a whole number of cache lines (9 for Q4_0, 17 for Q8_0: 64 bytes of scales, then the
/// quants), so when the panel starts on a line no 64-byte load of quants straddles two. With groups of four
/// (4.5 and 8.5 lines) every Q8_0 load and half the Q4_0 ones did: on an Intel Xeon (Sapphire Rapids) Q4_0
/// decode of llama-160m went from 89–129 to 121–142 tok/s at one thread, alternating runs (on AMD Zen 5 the
/// two had measured the same). The last group of a panel holds the columns that are left (fewer than eight
/// when the block count is not a multiple of eight).
/// With one row per group this is ggml's row layout byte for byte, which is how matrices whose row count is
/// not a multiple of four are kept.
/// </summary>
internal abstract unsafe class BlockFormat
{
    public const int BlockSize = 32;
    public const int PanelRows = 4;

    /// <summary>Activation rows a batched product takes over a chunk of panels at a time (their Q8_0 blocks, 8 × 3 KB for a
    /// 3072-wide input, stay in L1): at 16 rows llama-160m's Q4_0 step had cost 2.7× its 8-row step.</summary>
    protected const int RowGroup = 8;

    /// <summary>Panels each group of <see cref="RowGroup"/> activation rows passes over before the next group (at most a
    /// few hundred KB of weights, which stay in L2 for it).</summary>
    protected const int PanelChunk = 16;

    /// <summary>Block columns whose scales sit together in a panel.</summary>
    public const int ColumnGroup = 8;

    public static readonly BlockFormat Q8_0 = new Q8_0Format();
    public static readonly BlockFormat Q4_0 = new Q4_0Format();
    public static readonly BlockFormat Q4_1 = new Q4_1Format();
    public static readonly BlockFormat Q5_1 = new Q5_1Format();
    public static readonly BlockFormat Iq4Nl = new Iq4NlFormat();

    /// <summary>The format named by a <c>--quant</c> value (<c>q8_0</c>, <c>q4_0</c>, <c>q4_1</c>, <c>q5_1</c>), or null.</summary>
    public static BlockFormat? Named(string name) => name.ToLowerInvariant() switch
    {
        "q8_0" => Q8_0,
        "q4_0" => Q4_0,
        "q4_1" => Q4_1,
        "q5_1" => Q5_1,
        _ => null,
    };

    public static BlockFormat? OfType(GgmlType type) => type switch
    {
        GgmlType.Q8_0 => Q8_0,
        GgmlType.Q4_0 => Q4_0,
        GgmlType.Q4_1 => Q4_1,
        GgmlType.Q5_1 => Q5_1,
        GgmlType.IQ4_NL => Iq4Nl,
        _ => null,
    };

    /// <summary>Lower-case name, as the <c>--quant</c> flag spells it.</summary>
    public abstract string Name { get; }

    public abstract GgmlType Type { get; }

    /// <summary>Bytes of one block: the fp16 scale(s) and the quants.</summary>
    public abstract int BytesPerBlock { get; }

    /// <summary>Bytes at the start of a block that a panel keeps in its scale area: one fp16 scale, or Q4_1's and
    /// Q5_1's scale and minimum (two fp16 values).</summary>
    public virtual int ScaleBytes => sizeof(ushort);

    /// <summary>Bytes of one block's quants (after its scales).</summary>
    public int QuantBytes => BytesPerBlock - ScaleBytes;

    public long RowBytes(long columns) => columns / BlockSize * BytesPerBlock;

    public override string ToString() => Name;

    /// <summary>
    /// Quantizes one block of 32 finite values exactly as ggml's reference quantizer does, writing the whole
    /// block (its fp16 scales, then the quants) to <paramref name="block"/>.
    /// </summary>
    protected abstract void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block);

    /// <summary>One block's 32 values, as ggml's <c>dequantize_row</c>: its scales at <paramref name="scales"/>
    /// (<see cref="ScaleBytes"/> bytes), its quants at <paramref name="quants"/>.</summary>
    public abstract void DequantizeBlock(byte* scales, byte* quants, float* values);

    /// <summary>
    /// ggml's <c>quantize_row_*_ref</c>: <paramref name="values"/> (a multiple of 32) into blocks in ggml's row
    /// layout. Refuses a NaN or an infinity, which ggml would turn into garbage blocks silently, and a block
    /// whose scale would overflow fp16.
    /// </summary>
    public void QuantizeRow(ReadOnlySpan<float> values, Span<byte> blocks, string what = "row")
    {
        if (values.Length % BlockSize != 0)
            throw new ArgumentException($"{what}: {values.Length} values is not a whole number of {BlockSize}-value {Name} blocks", nameof(values));
        if (blocks.Length != RowBytes(values.Length))
            throw new ArgumentException($"{what}: {blocks.Length} bytes given for {values.Length / BlockSize} {Name} blocks of {BytesPerBlock} bytes", nameof(blocks));
        for (int b = 0; b < values.Length / BlockSize; b++)
        {
            var block = values.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < BlockSize; j++)
            {
                if (!float.IsFinite(block[j]))
                    throw new ModelLoadException($"{what}: value {block[j]} at column {b * BlockSize + j} cannot be quantized to {Name}; the weights hold a NaN or an infinity, so the checkpoint is damaged");
            }
            var target = blocks.Slice(b * BytesPerBlock, BytesPerBlock);
            QuantizeBlock(block, target);
            for (int s = 0; s < ScaleBytes; s += sizeof(ushort))
            {
                if (!Half.IsFinite(BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(target[s..]))))
                    throw new ModelLoadException($"{what}: the block at column {b * BlockSize} holds values up to {MaxAbs(block)}, whose {Name} scale overflows fp16; quantize this model with --quant off");
            }
        }
    }

    /// <summary>Blocks in ggml's row layout back to <paramref name="values"/>.</summary>
    public void DequantizeRow(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        if (blocks.Length != RowBytes(values.Length) || values.Length % BlockSize != 0)
            throw new ArgumentException($"{blocks.Length} bytes of {Name} blocks do not hold {values.Length} values");
        fixed (byte* b = blocks)
        fixed (float* v = values)
        {
            for (int i = 0; i < values.Length / BlockSize; i++)
            {
                byte* block = b + (long)i * BytesPerBlock;
                DequantizeBlock(block, block + ScaleBytes, v + i * BlockSize);
            }
        }
    }

    private static float MaxAbs(ReadOnlySpan<float> values)
    {
        float max = 0;
        foreach (var v in values) max = MathF.Max(max, MathF.Abs(v));
        return max;
    }

    /// <summary>Rows per panel for a matrix of <paramref name="rows"/> rows: four when they divide evenly, else one (ggml's row layout).</summary>
    public static int PanelRowsFor(long rows) => rows % PanelRows == 0 ? PanelRows : 1;

    /// <summary>Where row <paramref name="row"/>'s scale of block column <paramref name="column"/> sits in a panel-packed matrix.</summary>
    public long ScaleOffset(long row, long column, long blocksPerRow, int panelRows)
    {
        if (panelRows == 1) return row * blocksPerRow * BytesPerBlock + column * BytesPerBlock;
        return GroupOffset(row, column, blocksPerRow, panelRows) + (column % ColumnGroup * panelRows + row % panelRows) * ScaleBytes;
    }

    /// <summary>Where row <paramref name="row"/>'s quants of block column <paramref name="column"/> sit in a panel-packed matrix.</summary>
    public long QuantOffset(long row, long column, long blocksPerRow, int panelRows)
    {
        if (panelRows == 1) return row * blocksPerRow * BytesPerBlock + column * BytesPerBlock + ScaleBytes;
        long groupColumns = Math.Min(ColumnGroup, blocksPerRow - column / ColumnGroup * ColumnGroup);
        return GroupOffset(row, column, blocksPerRow, panelRows) + groupColumns * panelRows * ScaleBytes
            + (column % ColumnGroup * panelRows + row % panelRows) * QuantBytes;
    }

    private long GroupOffset(long row, long column, long blocksPerRow, int panelRows) =>
        (row / panelRows * blocksPerRow + column / ColumnGroup * ColumnGroup) * panelRows * BytesPerBlock;

    /// <summary>
    /// Copies <paramref name="rows"/> rows of blocks in ggml's row layout, starting at row <paramref name="row0"/>
    /// of the destination, into the panel layout (<paramref name="row0"/> a multiple of
    /// <paramref name="panelRows"/>), so a loader can pack a matrix a slice at a time.
    /// </summary>
    public void PackRows(byte* rowMajor, long row0, long rows, long blocksPerRow, int panelRows, byte* packed)
    {
        int q = QuantBytes, s = ScaleBytes;
        for (long r = 0; r < rows; r++)
        {
            byte* from = rowMajor + r * blocksPerRow * BytesPerBlock;
            for (long c = 0; c < blocksPerRow; c++, from += BytesPerBlock)
            {
                Buffer.MemoryCopy(from, packed + ScaleOffset(row0 + r, c, blocksPerRow, panelRows), s, s);
                Buffer.MemoryCopy(from + s, packed + QuantOffset(row0 + r, c, blocksPerRow, panelRows), q, q);
            }
        }
    }

    /// <summary>
    /// Rows [row0, row0+rows) of a panel-packed matrix as float32, row-major into <paramref name="destination"/>
    /// (prefill hands them to libtorch).
    /// </summary>
    public void DequantizeRows(byte* packed, long row0, long rows, long blocksPerRow, int panelRows, float* destination)
    {
        for (long r = 0; r < rows; r++)
        {
            float* to = destination + r * blocksPerRow * BlockSize;
            for (long c = 0; c < blocksPerRow; c++)
                DequantizeBlock(packed + ScaleOffset(row0 + r, c, blocksPerRow, panelRows), packed + QuantOffset(row0 + r, c, blocksPerRow, panelRows), to + c * BlockSize);
        }
    }

    /// <summary>
    /// The loop every format's <see cref="Dot"/> runs, with its own kernels (<typeparamref name="TKernels"/>). With
    /// many activation rows their quantized blocks outgrow L1 and would be read from L2 for every panel: rows go in
    /// groups of <see cref="RowGroup"/>, each group over a chunk of <see cref="PanelChunk"/> panels (which stays in
    /// L2 for the next group); within a group the multi-row kernels take what they can and the one-row kernel the
    /// rest, while the panel stays in L1. Each output is one kernel call's, so the bits do not depend on the batch.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    protected void DotPanels<TKernels>(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride)
        where TKernels : struct, IPanelKernels
    {
        int blocks = (int)blocksPerRow;
        for (long chunk = row0; chunk < row1; chunk += PanelChunk * panelRows)
        for (int group = 0; group < x.Batch; group += RowGroup)
        for (long r = chunk, chunkEnd = Math.Min(row1, chunk + PanelChunk * panelRows); r < chunkEnd; r += panelRows)
        {
            int groupEnd = Math.Min(x.Batch, group + RowGroup);
            byte* panel = packed + ScaleOffset(r, 0, blocksPerRow, panelRows);
            int b = panelRows == PanelRows ? TKernels.Batched(panel, blocks, x, group, groupEnd, y + r, yStride) : group;
            for (; b < groupEnd; b++) TKernels.Single(packed, panel, r, blocksPerRow, panelRows, x, b, y + b * yStride + r);
        }
    }

    /// <summary>
    /// The decode product for rows [row0, row1) of a panel-packed matrix against each of the
    /// <see cref="QuantizedActivations.Batch"/> activation rows: y[b·yStride + r] = Σ w[r]·x[b]. Row bounds are
    /// multiples of <paramref name="panelRows"/>. Each output row is computed the same way whatever the batch,
    /// so results are bit-identical for B = 1 and B &gt; 1.
    /// </summary>
    public abstract void Dot(byte* packed, long row0, long row1, long blocksPerRow, int panelRows, QuantizedActivations x, float* y, long yStride);
}

/// <summary>A format's kernels over one panel, for <see cref="BlockFormat.DotPanels{TKernels}"/>.</summary>
internal unsafe interface IPanelKernels
{
    /// <summary>
    /// Activation rows <paramref name="b"/>.. of a group against a four-row panel, as many as the format's
    /// multi-row kernels take (several rows share each weight load and unpacking); returns the first row left.
    /// Row b's outputs go to y + b·yStride.
    /// </summary>
    static abstract int Batched(byte* panel, int blocks, QuantizedActivations x, int b, int groupEnd, float* y, long yStride);

    /// <summary>Activation row <paramref name="b"/> against the panel at row <paramref name="r"/> (four rows, or one
    /// in ggml's row layout), its outputs at <paramref name="y"/>; the portable kernel where AVX2 is missing.</summary>
    static abstract void Single(byte* packed, byte* panel, long r, long blocksPerRow, int panelRows, QuantizedActivations x, int b, float* y);
}
