using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using ActorRing.Model.Batching;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorRing.Model;

/// <summary>
/// The batched step (<see cref="Execute"/>): every token of the plan, prefill chunks and decodes of different
/// sequences alike, is one row of the step's activations, and each weight panel is streamed from memory once
/// per step for all rows (<see cref="DotKernel.PanelsRows{TWeights}"/>). That is the lever on a memory-bound
/// CPU: a step over 8 sequences reads the same bytes as a step over one. The step runs over the raw memory of
/// the weight and KV-cache tensors in plain vectorized loops (through TorchSharp each of a layer's ~35 small
/// operations cost 5–20 µs of dispatch, 6–8 ms of a 25 ms llama-160m step). Its arithmetic is float32 whether
/// weights and cache are stored as float32 or bf16.
/// Batch invariance: a row's result never depends on the other rows. Products accumulate each output in a
/// fixed order, norms and rotations are per row, attention is per row over its own sequence's pages, and at
/// world size 1 nothing mixes rows; so a sequence's logits are bit-identical whatever its batch.
/// </summary>
public sealed partial class ShardedLlama
{
    /// <summary>Scratch of the step, grown to the largest row count seen and reused (pinned: raw pointers are taken).</summary>
    private sealed class StepScratch(int rows, int hidden, int qkv, int q, int ffn, int context, int parts)
    {
        public readonly int Rows = rows;
        public readonly float[] X = GC.AllocateArray<float>(rows * hidden, pinned: true);
        public readonly float[] Normed = GC.AllocateArray<float>(rows * hidden, pinned: true);
        public readonly float[] Qkv = GC.AllocateArray<float>(rows * qkv, pinned: true);
        public readonly float[] Attn = GC.AllocateArray<float>(rows * q, pinned: true);
        public readonly float[] Out = GC.AllocateArray<float>(rows * hidden, pinned: true);
        public readonly float[] GateUp = GC.AllocateArray<float>(rows * 2 * ffn, pinned: true);
        public readonly float[] Act = GC.AllocateArray<float>(rows * ffn, pinned: true);
        public readonly float[] Scores = GC.AllocateArray<float>(context * parts, pinned: true); // a row per split part
        public readonly int[] Positions = GC.AllocateArray<int>(rows, pinned: true);
        public readonly int[] SequenceOf = GC.AllocateArray<int>(rows, pinned: true);
    }

    private StepScratch? _scratch;

    /// <summary>
    /// Raw addresses of one layer's small tensors, taken once (each address lookup is a few TorchSharp calls).
    /// Norm weights and biases are float32 (copies, when the model computes in bf16); the KV pools are in the
    /// compute dtype.
    /// </summary>
    private readonly unsafe struct LayerMemory(float* inputNorm, float* postNorm, float* bqkv, float* qkNorm, float* qkWholeNorm, float* bo, byte* kPool, byte* vPool,
        float* attnOutNorm, float* ffnOutNorm, float* cos, float* sin)
    {
        /// <summary>The pre-attention and pre-MLP norms (null in olmo2: the row passes as it is).</summary>
        public readonly float* InputNorm = inputNorm, PostNorm = postNorm;
        public readonly float* Bqkv = bqkv, QkNorm = qkNorm, Bo = bo;
        /// <summary>olmo2's whole-projection q and k norm weights, this rank's slices (else null).</summary>
        public readonly float* QkWholeNorm = qkWholeNorm;
        public readonly byte* KPool = kPool, VPool = vPool;
        /// <summary>The norms of the attention's and the MLP's outputs (gemma, olmo2, glm4; else null).</summary>
        public readonly float* AttnOutNorm = attnOutNorm, FfnOutNorm = ffnOutNorm;
        /// <summary>This layer's RoPE tables, [context, rotaryDim/2].</summary>
        public readonly float* Cos = cos, Sin = sin;
    }

    private LayerMemory[]? _layerMemory;
    private unsafe byte* _embedData;
    private unsafe float* _finalNormData;

    private unsafe LayerMemory[] TakeAddresses()
    {
        // The step computes in float32 whatever the storage: bf16 only halves the bytes that the large weights
        // (and the cache) stream. The small tensors are read so often that float32 copies of them cost
        // nothing (for llama-160m, 150 KiB).
        float* Float32(Tensor t) => DataPointer(t.dtype == ScalarType.Float32 ? t : Own(t.to(ScalarType.Float32).DetachFromDisposeScope()));
        _embedData = (byte*)DataPointer(_embed);
        float* cos = Float32(_cos), sin = Float32(_sin);
        float* localCos = _localCos is null ? null : Float32(_localCos), localSin = _localSin is null ? null : Float32(_localSin);
        _finalNormData = Float32(_finalNorm);
        return _layers.Select(l => new LayerMemory(l.InputNorm is null ? null : Float32(l.InputNorm), l.PostNorm is null ? null : Float32(l.PostNorm),
            l.Bqkv is null ? null : Float32(l.Bqkv), l.QkNorm is null ? null : Float32(l.QkNorm),
            l.QkWholeNorm is null ? null : Float32(l.QkWholeNorm), l.Bo is null ? null : Float32(l.Bo),
            (byte*)DataPointer(l.KPool), (byte*)DataPointer(l.VPool),
            l.AttnOutNorm is null ? null : Float32(l.AttnOutNorm), l.FfnOutNorm is null ? null : Float32(l.FfnOutNorm),
            l.LocalRope ? localCos : cos, l.LocalRope ? localSin : sin)).ToArray();
    }

    /// <summary>
    /// Runs one step of <paramref name="plan"/>: writes every new token's keys and values into its sequence's
    /// blocks and, on rank 0, returns the logits of every sequence that needs a token. Every rank calls it with
    /// the same plan (the tensor-parallel forward runs two all-reduces per layer and one gather).
    /// The returned rows are this model's buffers, overwritten by the next call: sample them (or copy them)
    /// before the next step. At concurrency 16 fresh rows were 2 MB of large-object allocations a step, and
    /// the page faults of their first writes were serial work on rank 0 while every other rank waited.
    /// </summary>
    /// <exception cref="ModelLoadException">The plan asks for what this model cannot do (a position beyond the
    /// context, a token outside the vocabulary, a block table too short or naming a block that does not exist);
    /// every rank finds it before any collective.</exception>
    public StepResult Execute(StepPlan plan)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        int rows = Validate(plan);
        if (rows == 0) return StepResult.Empty;
        int sampled = plan.SampledCount;
        float[] local = Reused(ref _localLogits, sampled * Plan.LocalVocab);
        using (torch.no_grad())
        {
            RunRows(plan, rows, local);
        }
        var logits = _comm.Rank == 0 ? LogitRows(sampled) : [];
        if (sampled > 0) GatherLogits(local, sampled, logits);
        return new StepResult(_comm.Rank == 0 ? new ArraySegment<float[]>(logits, 0, sampled) : Array.Empty<float[]>(),
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private int Validate(StepPlan plan)
    {
        int rows = 0, vocab = Config.VocabSize;
        foreach (var s in plan.Sequences)
        {
            int T = s.Tokens.Length, end = s.StartPosition + T;
            if (T == 0) throw new ModelLoadException($"sequence {s.SequenceId}: a step needs at least one token");
            if (s.StartPosition < 0) throw new ModelLoadException($"sequence {s.SequenceId}: start position {s.StartPosition} is negative");
            if (end > ContextLength)
                throw new ModelLoadException($"sequence {s.SequenceId} needs {end} positions ({T} new tokens at position {s.StartPosition}) but the context length is {ContextLength}; shorten the prompt or max tokens, or load with a longer context (at most max_position_embeddings {Config.MaxPositionEmbeddings})");
            int needBlocks = (end + KvBlockSize - 1) / KvBlockSize;
            if (s.BlockTable.Length < needBlocks)
                throw new ModelLoadException($"sequence {s.SequenceId}: its block table has {s.BlockTable.Length} blocks but positions up to {end} need {needBlocks}");
            for (int i = 0; i < needBlocks; i++)
                if ((uint)s.BlockTable[i] >= (uint)KvBlocks)
                    throw new ModelLoadException($"sequence {s.SequenceId}: block {s.BlockTable[i]} is outside the KV cache's [0, {KvBlocks})");
            for (int i = 0; i < T; i++)
                if ((uint)s.Tokens[i] >= (uint)vocab)
                    throw new ModelLoadException($"token id {s.Tokens[i]} at index {i} is outside the vocabulary [0, {vocab})");
            rows += T;
        }
        return rows;
    }

    /// <summary>
    /// A scratch array of at least <paramref name="length"/> floats, kept from step to step. At concurrency 8 a
    /// step's logits slices are 0.5–1.5 MB: allocated anew each step they landed on the large-object heap and
    /// forced a full collection about every 8 steps (docs/serving-profile.md). These two never leave this class.
    /// </summary>
    private static float[] Reused(ref float[] buffer, int length)
    {
        if (buffer.Length < length) buffer = new float[Math.Max(length, 2 * buffer.Length)];
        return buffer;
    }

    private float[] _localLogits = [], _gatheredLogits = [];

    /// <summary>Rank 0's full-vocabulary rows, at least <paramref name="count"/> of them, kept from step to step
    /// (see <see cref="Execute"/>).</summary>
    private float[][] LogitRows(int count)
    {
        if (_logitRows.Length < count)
        {
            var grown = new float[Math.Max(count, 2 * _logitRows.Length)][];
            _logitRows.CopyTo(grown, 0);
            for (int i = _logitRows.Length; i < grown.Length; i++) grown[i] = new float[Config.VocabSize];
            _logitRows = grown;
        }
        return _logitRows;
    }

    private float[][] _logitRows = [];

    /// <summary>Rank 0 receives every rank's vocabulary slice of every sampled row and reassembles full rows
    /// into <paramref name="logits"/> (empty on the other ranks), <paramref name="sampled"/> rows of this step.</summary>
    private void GatherLogits(float[] local, int sampled, float[][] logits)
    {
        int vocab = Config.VocabSize;
        if (_comm.WorldSize == 1)
        {
            for (int i = 0; i < sampled; i++) local.AsSpan(i * vocab, vocab).CopyTo(logits[i]);
            return;
        }
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        var counts = new int[_comm.WorldSize];
        for (int r = 0; r < counts.Length; r++) counts[r] = sampled * Plan.VocabCounts[r];
        float[]? all = _comm.Rank == 0 ? Reused(ref _gatheredLogits, sampled * vocab) : null;
        _comm.Gather<float>(local.AsSpan(0, sampled * Plan.LocalVocab), all is null ? Span<float>.Empty : all.AsSpan(0, sampled * vocab), counts, 0);
        _gatherTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
        if (all is null) return;
        // Rank r's block is [sampled, vocabCount_r]; row i of the result is the concatenation of each block's row i.
        int at = 0, column = 0;
        for (int r = 0; r < counts.Length; r++)
        {
            int width = Plan.VocabCounts[r];
            for (int i = 0; i < sampled; i++, at += width) all.AsSpan(at, width).CopyTo(logits[i].AsSpan(column));
            column += width;
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private unsafe void RunRows(StepPlan plan, int rows, float[] localLogits)
    {
        var c = Config;
        int h = c.HiddenSize, d = c.HeadDim, half = c.RotaryDim / 2, f = Plan.LocalFfn, qkvDim = _qDim + 2 * _kvDim;
        int localHeads = Plan.LocalHeads, localKv = Plan.LocalKvHeads;
        if (_scratch is null || _scratch.Rows < rows)
            _scratch = new StepScratch(Math.Max(rows, _scratch?.Rows ?? 0), h, qkvDim, _qDim, f, ContextLength, _workers?.Parts ?? 1);
        var s = _scratch;
        var memory = _layerMemory ??= TakeAddresses();
        bool bf16 = _dtype == ScalarType.BFloat16, kvBf16 = _kvDtype == ScalarType.BFloat16;
        int e = bf16 ? sizeof(ushort) : sizeof(float), kvE = KvElementBytes;
        long blockStride = (long)localKv * KvBlockSize * d * kvE, headStride = (long)KvBlockSize * d * kvE;

        fixed (float* x = s.X, normed = s.Normed, qkv = s.Qkv, attn = s.Attn, o = s.Out, gu = s.GateUp, act = s.Act, scores = s.Scores, logits = localLogits)
        fixed (int* positions = s.Positions, sequenceOf = s.SequenceOf)
        {
            int row = 0;
            for (int i = 0; i < plan.Sequences.Count; i++)
            {
                var seq = plan.Sequences[i];
                for (int t = 0; t < seq.Tokens.Length; t++, row++)
                {
                    positions[row] = seq.StartPosition + t;
                    sequenceOf[row] = i;
                    ToFloat32(_embedData + (long)seq.Tokens[t] * h * e, bf16, x + (long)row * h, h);
                    if (_embedScale != 1f) TensorPrimitives.Multiply(new Span<float>(x + (long)row * h, h), _embedScale, new Span<float>(x + (long)row * h, h));
                }
            }
            var tables = new GCHandleArray(plan);
            try
            {
                for (int li = 0; li < _layers.Length; li++)
                {
                    var layer = _layers[li];
                    var mem = memory[li];
                    for (int r = 0; r < rows; r++) NormOrCopy(x + (long)r * h, mem.InputNorm, normed + (long)r * h, h);
                    MatMul(normed, rows, layer.Wqkv, qkv);
                    if (mem.QkWholeNorm is not null) NormWholeQk(qkv, rows, qkvDim, mem.QkWholeNorm);
                    for (int r = 0; r < rows; r++)
                    {
                        float* rq = qkv + (long)r * qkvDim;
                        if (mem.Bqkv is not null) Add(rq, mem.Bqkv, qkvDim);
                        if (mem.QkNorm is not null) // qwen3: each q and k head normalized by its own weight row, before RoPE
                            for (int head = 0; head < localHeads + localKv; head++) RmsNorm(rq + head * d, mem.QkNorm + head * d, rq + head * d, d);
                        // q heads, then k heads, sit side by side: rotate them all (rotate-half convention, over each
                        // head's first RotaryDim dimensions; the rest pass through).
                        float* cos = mem.Cos + (long)positions[r] * half, sin = mem.Sin + (long)positions[r] * half;
                        if (layer.Rope)
                            for (int head = 0; head < localHeads + localKv; head++) RotateHalf(rq + head * d, cos, sin, half);
                        // Every new row's keys and values go into its block before any row attends, so a prefill
                        // row sees the rows before it in the same step.
                        int pos = positions[r];
                        long at = tables.Block(sequenceOf[r], pos / KvBlockSize) * blockStride + (long)(pos % KvBlockSize) * d * kvE;
                        for (int kv = 0; kv < localKv; kv++)
                        {
                            FromFloat32(rq + _qDim + kv * d, mem.KPool + at + kv * headStride, kvBf16, d);
                            FromFloat32(rq + _qDim + _kvDim + kv * d, mem.VPool + at + kv * headStride, kvBf16, d);
                        }
                    }
                    if (li == _layers.Length - 1)
                    {
                        // Every row's keys and values are in the cache now, and the last layer's other outputs matter
                        // only for the rows the LM head reads: from here on only those run (1/L of a prefill's work).
                        rows = KeepSampledRows(plan, x, qkv, qkvDim, positions, sequenceOf);
                        if (rows == 0) break; // every rank has the same plan, so all skip the same collectives
                    }
                    AttendRows(new Attention(rows, qkv, mem, layer.Window, tables, positions, sequenceOf, blockStride, headStride, scores, attn, kvBf16));

                    MatMul(attn, rows, layer.Wo, o);
                    AllReduceActivations(o, rows); // the step's activations are float32 in either compute dtype
                    for (int r = 0; r < rows; r++)
                    {
                        if (mem.Bo is not null) Add(o + (long)r * h, mem.Bo, h); // once, after the reduction
                        if (mem.AttnOutNorm is not null) RmsNorm(o + (long)r * h, mem.AttnOutNorm, o + (long)r * h, h);
                        AddResidual(x + (long)r * h, o + (long)r * h, h);
                        NormOrCopy(x + (long)r * h, mem.PostNorm, normed + (long)r * h, h);
                    }
                    if (layer.Experts is { } experts)
                    {
                        MixExperts(experts, normed, rows, o);
                    }
                    else
                    {
                        MatMul(normed, rows, layer.Wgu!, gu);
                        GatedActivation(gu, act, rows, f);
                        MatMul(act, rows, layer.Wdown!, o);
                    }
                    AllReduceActivations(o, rows);
                    for (int r = 0; r < rows; r++)
                    {
                        if (mem.FfnOutNorm is not null) RmsNorm(o + (long)r * h, mem.FfnOutNorm, o + (long)r * h, h);
                        AddResidual(x + (long)r * h, o + (long)r * h, h);
                    }
                }
            }
            finally
            {
                tables.Dispose();
            }

            // The last layer left only the last row of each sampled sequence, packed densely in plan order.
            for (int r = 0; r < rows; r++) RmsNorm(x + (long)r * h, _finalNormData, normed + (long)r * h, h);
            if (rows > 0) MatMul(normed, rows, _lmHead, logits);
            // Granite divides every logit, Gemma 2 caps them; elementwise, so each rank does its own vocabulary slice
            // before the gather.
            if (rows > 0 && Config.LogitsScaling is double divisor)
                TensorPrimitives.Divide(new Span<float>(logits, rows * Plan.LocalVocab), (float)divisor, new Span<float>(logits, rows * Plan.LocalVocab));
            if (rows > 0 && Config.FinalLogitSoftcap is double cap)
                AttentionKernel.Softcap(new Span<float>(logits, rows * Plan.LocalVocab), (float)cap);
        }
    }

    /// <summary>
    /// act = activation(gate)·up for each of <paramref name="rows"/> rows of fused [gate; up] (2·<paramref name="f"/>
    /// wide): SiLU (gate·σ(gate), SwiGLU) or, for gemma, the tanh GELU
    /// (0.5·gate·(1 + tanh(√(2/π)·(gate + 0.044715·gate³))), GeGLU), all in vectorized passes.
    /// </summary>
    private unsafe void GatedActivation(float* gu, float* act, int rows, int f)
    {
        bool gelu = Config.Activation == "gelu_tanh";
        for (int r = 0; r < rows; r++)
        {
            var gate = new Span<float>(gu + (long)r * 2 * f, f);
            var up = new ReadOnlySpan<float>(gu + (long)r * 2 * f + f, f);
            var a = new Span<float>(act + (long)r * f, f);
            if (gelu)
            {
                TensorPrimitives.Multiply(gate, gate, a);
                TensorPrimitives.Multiply(a, 0.044715f, a);
                TensorPrimitives.Add(a, 1f, a);                    // 1 + 0.044715·g²
                TensorPrimitives.Multiply(a, gate, a);             // g + 0.044715·g³
                TensorPrimitives.Multiply(a, 0.7978845608f, a);    // · √(2/π)
                TensorPrimitives.Tanh(a, a);
                TensorPrimitives.Add(a, 1f, a);
                TensorPrimitives.Multiply(a, gate, a);
                TensorPrimitives.Multiply(a, 0.5f, a);
            }
            else
            {
                TensorPrimitives.Sigmoid(gate, a);
                TensorPrimitives.Multiply(a, gate, a);
            }
            TensorPrimitives.Multiply(a, up, a);
        }
    }

    /// <summary>Scratch of a layer of experts, grown to the largest row count seen and reused (pinned).</summary>
    private sealed class ExpertScratch(int rows, int hidden, int experts, int perToken, int ffn)
    {
        public readonly int Rows = rows;
        public readonly float[] RouterLogits = GC.AllocateArray<float>(rows * experts, pinned: true);
        public readonly int[] Chosen = GC.AllocateArray<int>(rows * perToken, pinned: true);
        public readonly float[] Weights = GC.AllocateArray<float>(rows * perToken, pinned: true);
        public readonly int[] Members = GC.AllocateArray<int>(rows, pinned: true);
        public readonly float[] Gathered = GC.AllocateArray<float>(rows * hidden, pinned: true);
        public readonly float[] GateUp = GC.AllocateArray<float>(rows * 2 * ffn, pinned: true);
        public readonly float[] Act = GC.AllocateArray<float>(rows * ffn, pinned: true);
        public readonly float[] ExpertOut = GC.AllocateArray<float>(rows * hidden, pinned: true);
        /// <summary>Row r's j-th expert's output at (r·perToken + j)·hidden, summed per row in j order at the end.</summary>
        public readonly float[] PickOut = GC.AllocateArray<float>(rows * perToken * hidden, pinned: true);
    }

    private ExpertScratch? _expertScratch;

    /// <summary>
    /// A layer of experts over <paramref name="rows"/> normalized rows, this rank's share written to
    /// <paramref name="o"/> (the caller's all-reduce sums the ranks' shares, as after a dense down projection):
    /// each row's router probabilities are a softmax over all experts, its PerToken highest (ties to the lower
    /// index) are its picks, weighted by their probabilities (renormalized to sum to 1 when the model says so).
    /// Each expert then runs once over the rows that picked it, gathered, so its weights stream once per step
    /// however many rows share it. Batch invariance holds: a row's products have the kernels' one-row bits in
    /// any gathering, and its picks are summed in its own pick order.
    /// </summary>
    private unsafe void MixExperts(ExpertWeights experts, float* normed, int rows, float* o)
    {
        var moe = Config.Moe!;
        int h = Config.HiddenSize, k = moe.PerToken, count = moe.Experts, f = Plan.LocalExpertFfn;
        if (_expertScratch is null || _expertScratch.Rows < rows)
            _expertScratch = new ExpertScratch(Math.Max(rows, _expertScratch?.Rows ?? 0), h, count, k, Math.Max(f, Plan.LocalSharedFfn));
        var s = _expertScratch;
        fixed (float* logits = s.RouterLogits, weights = s.Weights, gathered = s.Gathered, gu = s.GateUp, act = s.Act, expertOut = s.ExpertOut, pickOut = s.PickOut)
        fixed (int* chosen = s.Chosen, members = s.Members)
        {
            MatMul(normed, rows, experts.Router, logits);
            for (int r = 0; r < rows; r++) Route(new Span<float>(logits + (long)r * count, count), k, moe.NormalizeTopK, chosen + r * k, weights + r * k);
            for (int e = 0; e < count; e++)
            {
                int n = 0;
                for (int i = 0; i < rows * k; i++)
                    if (chosen[i] == e) members[n++] = i; // a pick: row i / k, its (i % k)-th
                if (n == 0) continue;
                for (int m = 0; m < n; m++)
                    new ReadOnlySpan<float>(normed + (long)(members[m] / k) * h, h).CopyTo(new Span<float>(gathered + (long)m * h, h));
                MatMul(gathered, n, experts.GateUp[e], gu);
                GatedActivation(gu, act, n, f);
                MatMul(act, n, experts.Down[e], expertOut);
                for (int m = 0; m < n; m++)
                    new ReadOnlySpan<float>(expertOut + (long)m * h, h).CopyTo(new Span<float>(pickOut + (long)members[m] * h, h));
            }
            for (int r = 0; r < rows; r++)
            {
                var sum = new Span<float>(o + (long)r * h, h);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(pickOut + (long)r * k * h, h), weights[r * k], sum);
                for (int j = 1; j < k; j++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(pickOut + ((long)r * k + j) * h, h), weights[r * k + j], sum, sum);
            }
            if (experts.Shared is { } shared)
            {
                // qwen2_moe: every row also runs the shared expert (this rank's slice of it), weighted by σ(gate · x),
                // a scalar every rank computes alike from the replicated row and gate; added after the picks.
                int fs = Plan.LocalSharedFfn;
                MatMul(normed, rows, shared.GateUp, gu);
                GatedActivation(gu, act, rows, fs);
                MatMul(act, rows, shared.Down, expertOut);
                for (int r = 0; r < rows; r++)
                {
                    float g = 1f / (1f + MathF.Exp(-TensorPrimitives.Dot(new ReadOnlySpan<float>(normed + (long)r * h, h), shared.Gate)));
                    var sum = new Span<float>(o + (long)r * h, h);
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(expertOut + (long)r * h, h), g, sum, sum);
                }
            }
        }
    }

    /// <summary>
    /// One row's picks from its router logits (overwritten with the probabilities): a softmax over every expert
    /// (as transformers computes it, in float32), the <paramref name="k"/> highest in descending order (ties to the
    /// lower index), and their weights, divided by their sum when <paramref name="normalize"/>.
    /// </summary>
    internal static unsafe void Route(Span<float> logits, int k, bool normalize, int* chosen, float* weights)
    {
        TensorPrimitives.SoftMax(logits, logits);
        float total = 0;
        for (int j = 0; j < k; j++)
        {
            int best = -1;
            for (int e = 0; e < logits.Length; e++)
            {
                if (best >= 0 && logits[e] <= logits[best]) continue;
                bool taken = false;
                for (int i = 0; i < j; i++) taken |= chosen[i] == e;
                if (!taken) best = e;
            }
            chosen[j] = best;
            weights[j] = logits[best];
            total += weights[j];
        }
        if (normalize)
            for (int j = 0; j < k; j++) weights[j] /= total;
    }

    /// <summary>
    /// Moves the last row of each sequence that needs logits to the front, in plan order (its activations, its
    /// query/key/value row, its position and sequence), and returns how many there are. Rows only move to lower
    /// indices, in ascending order, so no row is overwritten before it is moved. A kept row's results are those it
    /// would have had in place: every product and norm is per row, and attention reads the cache, which already
    /// holds every row's keys and values.
    /// </summary>
    private unsafe int KeepSampledRows(StepPlan plan, float* x, float* qkv, int qkvDim, int* positions, int* sequenceOf)
    {
        int h = Config.HiddenSize, kept = 0, end = 0;
        foreach (var seq in plan.Sequences)
        {
            end += seq.Tokens.Length;
            if (!seq.NeedsLogits) continue;
            int from = end - 1;
            if (from != kept)
            {
                new ReadOnlySpan<float>(x + (long)from * h, h).CopyTo(new Span<float>(x + (long)kept * h, h));
                new ReadOnlySpan<float>(qkv + (long)from * qkvDim, qkvDim).CopyTo(new Span<float>(qkv + (long)kept * qkvDim, qkvDim));
                positions[kept] = positions[from];
                sequenceOf[kept] = sequenceOf[from];
            }
            kept++;
        }
        return kept;
    }

    /// <summary>The block tables of a step's sequences, pinned for the attention loops.</summary>
    private readonly struct GCHandleArray : IDisposable
    {
        private readonly System.Runtime.InteropServices.GCHandle[] _handles;
        private readonly int[][] _tables;

        public GCHandleArray(StepPlan plan)
        {
            _tables = plan.Sequences.Select(s => s.BlockTable).ToArray();
            _handles = _tables.Select(t => System.Runtime.InteropServices.GCHandle.Alloc(t, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
        }

        public int Block(int sequence, int index) => _tables[sequence][index];

        public unsafe int* Table(int sequence) => (int*)_handles[sequence].AddrOfPinnedObject();

        public void Dispose()
        {
            foreach (var handle in _handles) handle.Free();
        }
    }

    /// <summary>One layer's attention as the split workers share it, held in a field so that handing it out
    /// allocates nothing (see <see cref="Product"/>).</summary>
    private readonly unsafe struct Attention(int rows, float* qkv, LayerMemory mem, int? window, GCHandleArray tables, int* positions,
        int* sequenceOf, long blockStride, long headStride, float* scores, float* attn, bool kvBf16)
    {
        public readonly int Rows = rows;
        public readonly float* Qkv = qkv, Scores = scores, Attn = attn;
        public readonly LayerMemory Mem = mem;
        public readonly int? Window = window;
        public readonly GCHandleArray Tables = tables;
        public readonly int* Positions = positions, SequenceOf = sequenceOf;
        public readonly long BlockStride = blockStride, HeadStride = headStride;
        public readonly bool KvBf16 = kvBf16;
    }

    private Attention _attention;

    /// <summary>What every split worker runs for a layer's attention.</summary>
    private readonly Action<int> _attendPairs;

    /// <summary>
    /// Every row's local query heads attend over their sequence's positions up to the row's own. (row, head)
    /// pairs are dealt out among the split helpers: attention is 5–8% of a llama-160m decode step, and much
    /// more of a long prefill, which would otherwise run on one thread while the others wait.
    /// </summary>
    private void AttendRows(in Attention attention)
    {
        _attention = attention;
        if (_workers is null) AttendPairs(0, 1);
        else _workers.Run(_attendPairs);
    }

    private void AttendPairs(int part, int parts)
    {
        if (_attention.KvBf16) AttendPairs<BF16Weights>(part, parts);
        else AttendPairs<F32Weights>(part, parts);
    }

    private unsafe void AttendPairs<TCache>(int part, int parts) where TCache : struct, IWeightFormat
    {
        var a = _attention;
        int d = Config.HeadDim, heads = Plan.LocalHeads, group = _group, qkvDim = _qDim + 2 * _kvDim;
        float scale = Config.AttentionMultiplier is double m ? (float)m // granite's, in place of 1/√d
            : Config.QueryPreAttentionScalar is double q ? (float)(1 / Math.Sqrt(q)) : 1f / MathF.Sqrt(d);
        float softcap = (float)(Config.AttentionSoftcap ?? 0);
        int total = a.Rows * heads;
        float* partScores = a.Scores + (long)part * ContextLength; // each part its own score row
        for (int pair = part; pair < total; pair += parts)
        {
            int r = pair / heads, head = pair % heads;
            long kvOffset = (head / group) * a.HeadStride;
            // The positions a row sees: [first, position], the last W of them in a windowed layer.
            int length = a.Positions[r] + 1, first = a.Window is int w ? Math.Max(0, length - w) : 0;
            AttentionKernel.Attend<TCache>(a.Qkv + (long)r * qkvDim + head * d, a.Mem.KPool + kvOffset, a.Mem.VPool + kvOffset,
                a.Tables.Table(a.SequenceOf[r]), KvBlockSize, a.BlockStride, first, length, d, scale, softcap, partScores, a.Attn + (long)r * _qDim + head * d);
        }
    }

    /// <summary>n elements of a float32 or bf16 tensor's memory into float32.</summary>
    private static unsafe void ToFloat32(byte* from, bool bf16, float* to, int n)
    {
        if (!bf16)
        {
            new ReadOnlySpan<float>(from, n).CopyTo(new Span<float>(to, n));
            return;
        }
        for (int i = 0; i < n; i++) to[i] = BF16Weights.Load1(from + i * sizeof(ushort));
    }

    /// <summary>n float32 values into a float32 or bf16 tensor's memory (bf16 rounded to nearest even, as libtorch does).</summary>
    private static unsafe void FromFloat32(float* from, byte* to, bool bf16, int n)
    {
        if (!bf16)
        {
            new ReadOnlySpan<float>(from, n).CopyTo(new Span<float>(to, n));
            return;
        }
        var bits = (Transport.BFloat16*)to;
        for (int i = 0; i < n; i++) bits[i] = Transport.BFloat16.FromSingle(from[i]);
    }

    /// <summary>y = RMSNorm(x) by <paramref name="weight"/>, or x itself where the model has no norm there (olmo2).</summary>
    private unsafe void NormOrCopy(float* x, float* weight, float* y, int n)
    {
        if (weight is null) new ReadOnlySpan<float>(x, n).CopyTo(new Span<float>(y, n));
        else RmsNorm(x, weight, y, n);
    }

    private float[] _qkSquares = [];

    /// <summary>
    /// olmo2's q_norm and k_norm: each row's q and k RMS-normalized over the whole projection, of which this rank
    /// holds its heads' slice. Each rank sums its slices' squares, one all-reduce of two floats per row adds the ranks'
    /// sums (a KV head replicated on r ranks counts 1/r on each), and each rank scales its slice by the common factor
    /// and its slice of the weight. Always float32 on the wire: these are the norms' statistics, not activations.
    /// </summary>
    private unsafe void NormWholeQk(float* qkv, int rows, int qkvDim, float* weight)
    {
        var c = Config;
        float kvShare = Plan.KvReplicated ? (float)c.NumKvHeads / _comm.WorldSize : 1f;
        float* wq = weight, wk = weight + _qDim;
        float[] squares = Reused(ref _qkSquares, 2 * rows);
        fixed (float* sums = squares)
        {
            for (int r = 0; r < rows; r++)
            {
                float* q = qkv + (long)r * qkvDim;
                sums[2 * r] = TensorPrimitives.SumOfSquares(new ReadOnlySpan<float>(q, _qDim));
                sums[2 * r + 1] = TensorPrimitives.SumOfSquares(new ReadOnlySpan<float>(q + _qDim, _kvDim)) * kvShare;
            }
            AllReduce(sums, 2L * rows, Transport.DType.F32);
            float eps = (float)c.RmsNormEps;
            int qWidth = c.NumHeads * c.HeadDim, kWidth = c.NumKvHeads * c.HeadDim;
            for (int r = 0; r < rows; r++)
            {
                float* q = qkv + (long)r * qkvDim, k = q + _qDim;
                var qs = new Span<float>(q, _qDim);
                TensorPrimitives.Multiply(qs, 1f / MathF.Sqrt(sums[2 * r] / qWidth + eps), qs);
                TensorPrimitives.Multiply(qs, new ReadOnlySpan<float>(wq, _qDim), qs);
                var ks = new Span<float>(k, _kvDim);
                TensorPrimitives.Multiply(ks, 1f / MathF.Sqrt(sums[2 * r + 1] / kWidth + eps), ks);
                TensorPrimitives.Multiply(ks, new ReadOnlySpan<float>(wk, _kvDim), ks);
            }
        }
    }

    private unsafe void RmsNorm(float* x, float* weight, float* y, int n)
    {
        var xs = new ReadOnlySpan<float>(x, n);
        float inv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xs) / n + (float)Config.RmsNormEps);
        var ys = new Span<float>(y, n);
        TensorPrimitives.Multiply(xs, inv, ys);
        TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(weight, n), ys);
    }

    /// <summary>x += sublayer output, scaled first by granite's residual multiplier (x = x + m·o, as transformers'
    /// <c>residual + hidden_states * residual_multiplier</c>).</summary>
    private unsafe void AddResidual(float* x, float* o, int n)
    {
        if (Config.ResidualMultiplier is double m)
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(o, n), (float)m, new ReadOnlySpan<float>(x, n), new Span<float>(x, n));
        else
            Add(x, o, n);
    }

    private static unsafe void Add(float* x, float* add, int n) =>
        TensorPrimitives.Add(new ReadOnlySpan<float>(x, n), new ReadOnlySpan<float>(add, n), new Span<float>(x, n));

    /// <summary>Pairs (i, i + d/2) rotate by angle i of the position: the layout the loaders convert every checkpoint to.</summary>
    private static unsafe void RotateHalf(float* v, float* cos, float* sin, int half)
    {
        for (int i = 0; i < half; i++)
        {
            float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}
