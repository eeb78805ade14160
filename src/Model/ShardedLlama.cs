using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ActorRing.Model.Batching;
using ActorRing.Model.Checkpoints;
using ActorRing.Model.Quantization;
using ActorRing.Transport;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorRing.Model;

/// <summary>
/// One rank's shard of a Llama-family decoder (llama, mistral, qwen2, qwen3) under Megatron-style tensor
/// parallelism. q/k/v and gate/up are column-parallel (this rank's heads / FFN block, no communication);
/// o_proj and down_proj are row-parallel and end in one all-reduce each; the LM head is split by vocabulary
/// and its logit slices are gathered to rank 0. Every rank calls <see cref="Execute"/> with identical
/// arguments from one dedicated thread (TorchSharp dispose scopes and grad mode are per thread).
/// </summary>
public sealed partial class ShardedLlama : IDisposable
{
    /// <summary>
    /// An [out, in] weight and how its output rows are shared among the rank's split workers: part i computes
    /// rows [RowStart[i], RowStart[i+1]). Stored either in PyTorch's row-major layout, or (when the shape
    /// allows, in either compute dtype) packed in panels for decode (see <see cref="DotKernel"/>): tensor shape
    /// [out/16, in, 16, 1] with AVX-512 (each column's 16 weights side by side), else [out/4, in/8, 4, 8].
    /// Or quantized: blocks of <see cref="Format"/> in its panel layout (see <see cref="BlockFormat"/>), held
    /// in a byte tensor.
    /// </summary>
    private sealed unsafe class SplitMatrix(Tensor weight, long outDim, long inDim, bool packed, long[] rowStart, BlockFormat? format = null, int panelRows = 1)
    {
        public readonly Tensor Weight = weight;
        /// <summary>Start of the weight's memory (native memory does not move), for the decode kernels.</summary>
        public readonly byte* Data = (byte*)DataPointer(weight);
        /// <summary>Bytes per element: float32 or bf16.</summary>
        public readonly int ElementSize = (int)weight.ElementSize;
        public readonly bool Packed = packed;
        public readonly long[] RowStart = rowStart;
        /// <summary>The block format of a quantized matrix; null for float32 and bf16.</summary>
        public readonly BlockFormat? Format = format;
        /// <summary>Rows per panel of a quantized matrix (4, or 1 for ggml's row layout).</summary>
        public readonly int PanelRows = panelRows;
        public long Out => outDim;
        public long In => inDim;
    }

    /// <summary>
    /// A layer's experts: the router (all experts' rows, replicated on every rank, so every rank routes each token
    /// the same way) and each expert's fused [gate; up] rows and down columns of this rank's slice of its
    /// intermediate dimension, as the dense MLP is split.
    /// </summary>
    private sealed class ExpertWeights(SplitMatrix router, SplitMatrix[] gateUp, SplitMatrix[] down, SharedExpert? shared)
    {
        public readonly SplitMatrix Router = router;
        public readonly SplitMatrix[] GateUp = gateUp;
        public readonly SplitMatrix[] Down = down;
        public readonly SharedExpert? Shared = shared;
    }

    /// <summary>
    /// qwen2_moe's shared expert: this rank's slice of its fused [gate; up] rows and down columns (split as the dense
    /// MLP is), and its gate vector (replicated, float32), whose σ(gate · x) weights the expert's output for row x.
    /// </summary>
    private sealed class SharedExpert(SplitMatrix gateUp, SplitMatrix down, float[] gate)
    {
        public readonly SplitMatrix GateUp = gateUp;
        public readonly SplitMatrix Down = down;
        public readonly float[] Gate = gate;
    }

    private sealed class Layer
    {
        /// <summary>The norms before the attention and before the MLP (null in olmo2, which normalizes outputs instead).</summary>
        public Tensor? InputNorm;
        public Tensor? PostNorm;
        /// <summary>Fused [q; k; v] rows of this rank, [q + 2kv, hidden]: one product per layer instead of three.</summary>
        public required SplitMatrix Wqkv;
        public Tensor? Bqkv;
        /// <summary>qwen3's q_norm weight repeated for each local query head, then k_norm for each local KV head:
        /// [localHeads + localKv, headDim], so one RMSNorm over the fused q|k heads normalizes each with its own.</summary>
        public Tensor? QkNorm;
        /// <summary>olmo2's q_norm and k_norm weights over this rank's slices of the q and k projections, [q | k]
        /// (see <see cref="ModelConfig.Olmo2"/>); else null.</summary>
        public Tensor? QkWholeNorm;
        /// <summary>The layer's attention window (see <see cref="ModelConfig.WindowOf"/>), or null for full attention.</summary>
        public int? Window;
        /// <summary>o_proj columns of this rank's heads: [hidden, localHeads·headDim].</summary>
        public required SplitMatrix Wo;
        /// <summary>Full o_proj bias, added once after the all-reduce.</summary>
        public Tensor? Bo;
        /// <summary>Fused [gate; up] rows of this rank's FFN block: [2·localFfn, hidden] (null in a layer of experts).</summary>
        public SplitMatrix? Wgu;
        /// <summary>down_proj columns of this rank's FFN block: [hidden, localFfn].</summary>
        public SplitMatrix? Wdown;
        /// <summary>The router and this rank's slice of every expert, in a mixture-of-experts layer; else null.</summary>
        public ExpertWeights? Experts;
        /// <summary>gemma, olmo2 and glm4: the norms of the attention's and the MLP's outputs, before each residual add; else null.</summary>
        public Tensor? AttnOutNorm, FfnOutNorm;
        /// <summary>Whether this layer's RoPE uses the local tables (gemma's windowed layers).</summary>
        public bool LocalRope;
        /// <summary>Whether this layer rotates its queries and keys at all (SmolLM3's NoPE layers do not).</summary>
        public bool Rope = true;
        /// <summary>This rank's KV heads in pages: [blocks, localKv, blockSize, headDim], compute dtype.</summary>
        public Tensor KPool = null!;
        public Tensor VPool = null!;
    }

    private readonly ICollectives _comm;
    private readonly List<Tensor> _owned = new();
    private readonly Layer[] _layers;
    private readonly Tensor _embed;
    private readonly Tensor _finalNorm;
    private readonly SplitMatrix _lmHead;
    private readonly SplitWorkers? _workers;
    private readonly Tensor _cos, _sin; // [context, rotaryDim/2], compute dtype
    private readonly Tensor? _localCos, _localSin; // the same for LocalRopeTheta (gemma's windowed layers), else null

    /// <summary>
    /// gemma multiplies the embedding rows by √hidden, a scale transformers casts to the weights' dtype first (in
    /// bf16 √1152 = 33.94 becomes 34): so here, in the compute dtype. 1 for the other families.
    /// </summary>
    private readonly float _embedScale = 1f;
    private readonly ScalarType _dtype;

    /// <summary>The KV cache's element type (<see cref="ModelLoadOptions.KvDType"/>).</summary>
    private readonly ScalarType _kvDtype;
    private readonly DType _wireDType;
    private readonly int _qDim, _kvDim, _group;
    private readonly int?[] _slotLength;
    private readonly int? _threads;
    /// <summary>Format the linear weights are quantized to as they load (null: none), and whether the LM head is too.</summary>
    private readonly BlockFormat? _quant;
    private readonly bool _quantizeLmHead;
    private readonly Action<string>? _log;
    private readonly SyncPayload _syncPayload;
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private bool _disposed;

    public ModelConfig Config { get; }
    public ShardPlan Plan { get; }
    public int ContextLength { get; }
    public int Slots { get; }

    /// <summary>The instruction set of the batched float32/bf16 products on this CPU: "avx512" (<see cref="DotKernel512"/>)
    /// or "avx2" (also what <c>DOTNET_EnableAVX512=0</c> selects, for an A/B run in one build).</summary>
    public static string BatchedKernels => DotKernel512.IsSupported ? "avx512" : "avx2";

    /// <summary>Positions per KV-cache block (page).</summary>
    public const int KvBlockSize = 16;

    /// <summary>Blocks in this rank's KV cache (the same on every rank; each holds this rank's KV heads).</summary>
    public int KvBlocks { get; }

    /// <summary>Bytes of one block on this rank, keys and values of every layer.</summary>
    public long KvBlockBytes => 2L * Config.NumLayers * Plan.LocalKvHeads * KvBlockSize * Config.HeadDim * KvElementBytes;

    /// <summary>Bytes of one cached key or value element.</summary>
    private int KvElementBytes => _kvDtype == ScalarType.Float32 ? sizeof(float) : sizeof(ushort);

    private readonly int _blocksPerSlot;
    public ComputeDType DType { get; }

    /// <summary>Weight bytes this rank read from the checkpoint while loading (its slices plus replicated parts).</summary>
    public long CheckpointBytesRead { get; }

    /// <summary>Bytes of this rank's weights streamed by one decode step (every matrix once, plus norms).</summary>
    public long WeightBytesPerToken { get; }

    /// <summary>Time this rank spent inside all-reduce calls since the last reset (for benches' overhead breakdown).</summary>
    public TimeSpan AllReduceTime => TimeSpan.FromSeconds(_allReduceTicks / (double)System.Diagnostics.Stopwatch.Frequency);

    /// <summary>Time this rank spent inside the logits gather since the last reset.</summary>
    public TimeSpan GatherTime => TimeSpan.FromSeconds(_gatherTicks / (double)System.Diagnostics.Stopwatch.Frequency);

    private long _allReduceTicks, _gatherTicks;

    public void ResetCommunicationTime() => _allReduceTicks = _gatherTicks = 0;

    /// <summary>
    /// Loads this rank's shard of the model in <paramref name="modelDir"/> (see <see cref="ModelDirectory"/>).
    /// Must run on the thread that will call <see cref="Execute"/>. Refuses an unsupported split before
    /// reading any weight.
    /// </summary>
    public static ShardedLlama Load(string modelDir, ICollectives comm, ModelLoadOptions options, IProgress<double>? progress = null)
    {
        var dir = ModelDirectory.Recognise(modelDir);
        using var reader = dir.OpenReader();
        return new ShardedLlama(reader, comm, options, progress);
    }

    /// <summary>
    /// A model of the given shape with seeded pseudo-random weights generated block by block, so that every
    /// rank builds exactly its own slice of the same full model (used by benches and tests).
    /// </summary>
    public static ShardedLlama CreateRandom(ModelConfig config, ulong seed, ICollectives comm, ModelLoadOptions options)
    {
        using var reader = new RandomCheckpoint(config, seed);
        return new ShardedLlama(reader, comm, options, null);
    }

    internal ShardedLlama(ICheckpointReader reader, ICollectives comm, ModelLoadOptions options, IProgress<double>? progress)
    {
        _claimProductRows = _ => ClaimProductRows();
        _attendPairs = part => AttendPairs(part, _workers!.Parts);
        _comm = comm;
        var c = reader.Config;
        Config = c;
        _quant = options.Quant.Format();
        _syncPayload = options.SyncDType;
        if (_syncPayload == SyncPayload.Q8_0 && c.HiddenSize % BlockFormat.BlockSize != 0)
            throw new ModelLoadException($"--sync-dtype q8_0 sends the hidden state in {BlockFormat.BlockSize}-value blocks, and hidden_size {c.HiddenSize} is not a multiple of {BlockFormat.BlockSize}; use --sync-dtype bf16 or f32");
        _quantizeLmHead = options.QuantizeLmHead && _quant is not null;
        _log = options.Log;
        // Quantized row-parallel weights split their input columns on whole blocks, so the FFN is dealt out
        // in whole blocks (every rank must agree, so this depends on the options and the checkpoint only).
        var (block, why) = RowParallelBlock(reader, _quant);
        Plan = ShardPlan.Create(c, comm.Rank, comm.WorldSize, FfnSplitUnit(c, block));
        CheckBlockAlignedSplit(c, comm.WorldSize, block, why);
        int context = options.ContextFor(c);
        if (context < 1)
            throw new ModelLoadException($"context length {context} must be positive");
        if (options.Slots < 1) throw new ModelLoadException($"slots {options.Slots} must be at least 1");
        ContextLength = context;
        Slots = options.Slots;
        _blocksPerSlot = (context + KvBlockSize - 1) / KvBlockSize;
        if (options.KvCacheTokens is int kvTokens && kvTokens < KvBlockSize)
            throw new ModelLoadException($"kv-cache-tokens {kvTokens} is less than one block of {KvBlockSize} positions");
        DType = options.DType;
        _dtype = options.DType == ComputeDType.BF16 ? ScalarType.BFloat16 : ScalarType.Float32;
        _kvDtype = (options.KvDType ?? options.DType) == ComputeDType.BF16 ? ScalarType.BFloat16 : ScalarType.Float32;
        _wireDType = options.DType == ComputeDType.BF16 ? Transport.DType.BF16 : Transport.DType.F32;
        if (c.Gemma)
        {
            float scale = MathF.Sqrt(c.HiddenSize);
            _embedScale = _dtype == ScalarType.BFloat16 ? Transport.BFloat16.FromSingle(scale).ToSingle() : scale;
        }
        else if (c.EmbeddingMultiplier is double multiplier)
        {
            _embedScale = (float)multiplier; // granite: a Python float times the embeddings, not rounded to the dtype first
        }
        _slotLength = new int?[Slots];
        _threads = options.Threads;
        if (options.Cores is { Length: > 0 } cores) CorePinning.PinCurrentThread(cores[0]);
        if (_threads is int t)
        {
            // More than one thread per rank: split every product by output rows over our own helpers, each
            // with one libtorch thread (libtorch's own threading does not speed up matrix-vector products).
            torch.set_num_threads(t > 1 ? 1 : t);
            if (t > 1) _workers = new SplitWorkers(t, options.EffectiveHelperSpin, options.Cores);
        }

        var p = Plan;
        int d = c.HeadDim, h = c.HiddenSize;
        _qDim = p.LocalHeads * d;
        _kvDim = p.LocalKvHeads * d;
        _group = p.LocalHeads / p.LocalKvHeads;
        int qRow0 = p.HeadStart * d, kvRow0 = p.KvHeadStart * d;

        int totalSteps = c.NumLayers + 2, step = 0;
        void Advance() => progress?.Report(++step / (double)totalSteps);

        using var noGrad = torch.no_grad();
        try
        {
            _embed = Own(LoadFull(reader, "model.embed_tokens.weight", c.VocabSize, h));
            _layers = new Layer[c.NumLayers];
            for (int i = 0; i < c.NumLayers; i++)
            {
                string pre = $"model.layers.{i}.";
                // Where a projection's rows are stored: its own tensor, or (phi3) its rows of qkv_proj, q then k then v.
                (string Name, long DiskRows, long Offset) Stored(string proj, long rows, long fusedOffset) => c.FusedProjections
                    ? (pre + "self_attn.qkv_proj.weight", (long)(c.NumHeads + 2 * c.NumKvHeads) * d, fusedOffset)
                    : (pre + $"self_attn.{proj}.weight", rows, 0);
                var q = Stored("q_proj", c.NumHeads * d, 0);
                var k = Stored("k_proj", c.NumKvHeads * d, c.NumHeads * d);
                var v = Stored("v_proj", c.NumKvHeads * d, (c.NumHeads + c.NumKvHeads) * d);
                var wqkv = LoadLinear(reader,
                    (q.Name, q.DiskRows, h, q.Offset + qRow0, _qDim, 0, h),
                    (k.Name, k.DiskRows, h, k.Offset + kvRow0, _kvDim, 0, h),
                    (v.Name, v.DiskRows, h, v.Offset + kvRow0, _kvDim, 0, h));
                Tensor? bqkv = null;
                if (c.QkvBias)
                {
                    using var column = Blocks(reader, 1,
                        (pre + "self_attn.q_proj.bias", qRow0, _qDim, c.NumHeads * d),
                        (pre + "self_attn.k_proj.bias", kvRow0, _kvDim, c.NumKvHeads * d),
                        (pre + "self_attn.v_proj.bias", kvRow0, _kvDim, c.NumKvHeads * d));
                    bqkv = Own(column.view(-1));
                }
                var layer = new Layer
                {
                    InputNorm = c.Olmo2 ? null : Own(LoadNorm(reader, pre + "input_layernorm.weight", h)),
                    // Gemma 2's and 3's post_attention_layernorm is the norm of the attention's output; their pre-MLP
                    // norm is pre_feedforward_layernorm. olmo2 has none before its MLP.
                    PostNorm = c.Olmo2 ? null : Own(LoadNorm(reader, pre + (c.GemmaOutputNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), h)),
                    Wqkv = wqkv,
                    Bqkv = bqkv,
                    QkNorm = c.QkNorm ? Own(LoadQkNorm(reader, pre)) : null,
                    Window = c.WindowOf(i),
                    LocalRope = c.LocalRopeTheta is not null && c.WindowOf(i) is not null,
                    Rope = c.UsesRope(i),
                    Wo = LoadLinear(reader, (pre + "self_attn.o_proj.weight", h, c.NumHeads * d, 0, h, qRow0, _qDim)),
                    Bo = c.OProjBias ? Own(LoadVector(reader, pre + "self_attn.o_proj.bias", h)) : null,
                };
                if (c.Olmo2)
                {
                    using var whole = Blocks(reader, 1,
                        (pre + "self_attn.q_norm.weight", qRow0, _qDim, c.NumHeads * d),
                        (pre + "self_attn.k_norm.weight", kvRow0, _kvDim, c.NumKvHeads * d));
                    layer.QkWholeNorm = Own(whole.view(-1));
                }
                if (c.GemmaOutputNorms || c.Olmo2)
                {
                    layer.AttnOutNorm = Own(LoadNorm(reader, pre + "post_attention_layernorm.weight", h));
                    layer.FfnOutNorm = Own(LoadNorm(reader, pre + "post_feedforward_layernorm.weight", h));
                }
                if (c.Glm4)
                {
                    layer.AttnOutNorm = Own(LoadNorm(reader, pre + "post_self_attn_layernorm.weight", h));
                    layer.FfnOutNorm = Own(LoadNorm(reader, pre + "post_mlp_layernorm.weight", h));
                }
                if (c.IsSparse(i))
                {
                    layer.Experts = LoadExperts(reader, i);
                }
                else
                {
                    // phi3's gate_up_proj holds the gate's rows, then up's.
                    layer.Wgu = c.FusedGateUp
                        ? LoadLinear(reader,
                            (pre + "mlp.gate_up_proj.weight", 2L * c.IntermediateSize, h, p.FfnStart, p.LocalFfn, 0, h),
                            (pre + "mlp.gate_up_proj.weight", 2L * c.IntermediateSize, h, c.IntermediateSize + p.FfnStart, p.LocalFfn, 0, h))
                        : LoadLinear(reader,
                            (pre + "mlp.gate_proj.weight", c.IntermediateSize, h, p.FfnStart, p.LocalFfn, 0, h),
                            (pre + "mlp.up_proj.weight", c.IntermediateSize, h, p.FfnStart, p.LocalFfn, 0, h));
                    layer.Wdown = LoadLinear(reader, (pre + "mlp.down_proj.weight", h, c.IntermediateSize, 0, h, p.FfnStart, p.LocalFfn));
                }
                _layers[i] = layer;
                Advance();
            }
            _finalNorm = Own(LoadNorm(reader, "model.norm.weight", h));
            if (c.TieWordEmbeddings)
            {
                // A tied head is this rank's vocabulary rows of the (replicated) embedding: a view, or a copy in
                // the decode panel layout (1/N of the embedding) when that applies.
                if (_quantizeLmHead && QuantizableWidth(h, "lm_head"))
                {
                    using var rows = _embed.narrow(0, p.VocabStart, p.LocalVocab);
                    using var f32 = rows.to(ScalarType.Float32);
                    _lmHead = SplitQuantized(f32, _quant!, "lm_head (tied to embed_tokens)");
                }
                else
                {
                    _lmHead = Split(_embed.narrow(0, p.VocabStart, p.LocalVocab));
                }
            }
            else
            {
                if (!reader.Contains("lm_head.weight"))
                    throw new ModelLoadException($"{reader.Source}: tie_word_embeddings is false but lm_head.weight is missing");
                _lmHead = LoadLinear(reader, _quantizeLmHead, ("lm_head.weight", c.VocabSize, h, p.VocabStart, p.LocalVocab, 0, h));
            }
            // The cache is sized once the weights are in, so a budget from free memory sees what they left.
            KvBlocks = options.KvCacheTokens is int tokens ? tokens / KvBlockSize
                : options.KvCacheFromMemory is { } budget ? BlocksFromMemory(budget, options.Log)
                : Slots * _blocksPerSlot;
            foreach (var layer in _layers)
            {
                layer.KPool = Own(torch.zeros(new long[] { KvBlocks, p.LocalKvHeads, KvBlockSize, d }, _kvDtype));
                layer.VPool = Own(torch.zeros(new long[] { KvBlocks, p.LocalKvHeads, KvBlockSize, d }, _kvDtype));
            }
            Advance();
            var (cos, sin) = RotaryTables.Build(c, context);
            _cos = Own(torch.tensor(cos, new long[] { context, c.RotaryDim / 2 }).to(_dtype));
            _sin = Own(torch.tensor(sin, new long[] { context, c.RotaryDim / 2 }).to(_dtype));
            if (c.LocalRopeTheta is double localTheta)
            {
                var (localCos, localSin) = RotaryTables.Build(c with { RopeTheta = localTheta, RopeScaling = null }, context);
                _localCos = Own(torch.tensor(localCos, new long[] { context, c.RotaryDim / 2 }).to(_dtype));
                _localSin = Own(torch.tensor(localSin, new long[] { context, c.RotaryDim / 2 }).to(_dtype));
            }
            Advance();
        }
        catch
        {
            foreach (var o in _owned) o.Dispose();
            _workers?.Dispose();
            throw;
        }

        CheckpointBytesRead = reader.BytesRead;
        long elem = _dtype == ScalarType.Float32 ? 4 : 2;
        // What a decode step must stream from memory: every matrix once in its stored format, plus the norms.
        long Bytes(SplitMatrix m) => m.Weight.NumberOfElements * m.Weight.ElementSize;
        // A layer of experts streams its router and the experts a token picks (PerToken of them, for one sequence).
        long Ffn(Layer l) => l.Experts is { } x
            ? Bytes(x.Router) + c.Moe!.PerToken * (Bytes(x.GateUp[0]) + Bytes(x.Down[0]))
            : Bytes(l.Wgu!) + Bytes(l.Wdown!);
        WeightBytesPerToken = _layers.Sum(l => Bytes(l.Wqkv) + Bytes(l.Wo) + Ffn(l) + 2L * h * elem)
            + Bytes(_lmHead) + h * elem;
    }

    /// <summary>Blocks the KV cache gets from <paramref name="budget"/> and this rank's free memory now; says so through <paramref name="log"/>.</summary>
    private int BlocksFromMemory(KvMemoryBudget budget, Action<string>? log)
    {
        var (tokens, description) = budget.Resolve(KvBlockBytes / KvBlockSize, KvMemoryBudget.ReadAvailableBytes());
        if (budget.Announce) log?.Invoke($"rank {_comm.Rank}: KV cache: {description}");
        return tokens / KvBlockSize;
    }

    /// <summary>
    /// Tensor names of expert <paramref name="expert"/>'s gate, up and down projections and of the router, as each
    /// family's checkpoints name them (qwen3_moe: <c>mlp.experts.E.gate_proj</c>; mixtral: <c>block_sparse_moe.experts.E.w1</c>
    /// (gate), <c>w3</c> (up) and <c>w2</c> (down)).
    /// </summary>
    internal static (string Gate, string Up, string Down, string Router) ExpertNames(ModelConfig c, int layer, int expert)
    {
        string pre = $"model.layers.{layer}.";
        // granitemoe: mixtral's per-expert names (what a GGUF file's stacked experts are read as), its own router. Its
        // Hugging Face checkpoints stack the experts instead (GraniteMoeStackedExperts).
        return c.ModelType is "mixtral" or "granitemoe"
            ? ($"{pre}block_sparse_moe.experts.{expert}.w1.weight", $"{pre}block_sparse_moe.experts.{expert}.w3.weight",
               $"{pre}block_sparse_moe.experts.{expert}.w2.weight", c.ModelType == "mixtral" ? $"{pre}block_sparse_moe.gate.weight" : $"{pre}block_sparse_moe.router.layer.weight")
            : ($"{pre}mlp.experts.{expert}.gate_proj.weight", $"{pre}mlp.experts.{expert}.up_proj.weight",
               $"{pre}mlp.experts.{expert}.down_proj.weight", $"{pre}mlp.gate.weight");
    }

    /// <summary>
    /// One layer's router (in full precision, whatever <c>--quant</c> says: a rounding that flips which expert a
    /// token picks changes the answer far more than one in a product) and this rank's slice of each expert.
    /// </summary>
    private ExpertWeights LoadExperts(ICheckpointReader reader, int layer)
    {
        var c = Config;
        var moe = c.Moe!;
        long h = c.HiddenSize, size = moe.IntermediateSize, start = Plan.ExpertFfnStart, local = Plan.LocalExpertFfn;
        var router = LoadLinear(reader, quantize: false, (ExpertNames(c, layer, 0).Router, moe.Experts, h, 0, moe.Experts, 0, h));
        var gateUp = new SplitMatrix[moe.Experts];
        var down = new SplitMatrix[moe.Experts];
        var (inputLinear, outputLinear) = GraniteMoeStackedExperts(layer);
        bool stackedExperts = c.ModelType == "granitemoe" && reader.Contains(inputLinear); // Hugging Face's; a GGUF file's are per expert
        for (int e = 0; e < moe.Experts; e++)
        {
            var (gate, up, downName, _) = ExpertNames(c, layer, e);
            if (stackedExperts)
            {
                // Every expert in two 3-D tensors, read as matrices of their stacked rows: input_linear
                // [experts, 2·size, hidden] holds expert e's gate rows then its up rows (transformers chunks the
                // product in two, gate first), output_linear [experts, hidden, size] its down projection.
                long stacked = (long)moe.Experts * 2 * size, first = e * 2 * size;
                gateUp[e] = LoadLinear(reader, (inputLinear, stacked, h, first + start, local, 0, h), (inputLinear, stacked, h, first + size + start, local, 0, h));
                down[e] = LoadLinear(reader, (outputLinear, (long)moe.Experts * h, size, e * h, h, start, local));
                continue;
            }
            gateUp[e] = LoadLinear(reader, (gate, size, h, start, local, 0, h), (up, size, h, start, local, 0, h));
            down[e] = LoadLinear(reader, (downName, h, size, 0, h, start, local));
        }
        SharedExpert? shared = null;
        if (moe.SharedIntermediateSize > 0)
        {
            var names = SharedExpertNames(layer);
            long width = moe.SharedIntermediateSize, sharedStart = Plan.SharedFfnStart, sharedLocal = Plan.LocalSharedFfn;
            using var gate = LoadFull(reader, names.GateVector, 1, h);
            using var gate32 = gate.to(ScalarType.Float32);
            shared = new SharedExpert(
                LoadLinear(reader, (names.Gate, width, h, sharedStart, sharedLocal, 0, h), (names.Up, width, h, sharedStart, sharedLocal, 0, h)),
                LoadLinear(reader, (names.Down, h, width, 0, h, sharedStart, sharedLocal)),
                gate32.data<float>().ToArray());
        }
        return new ExpertWeights(router, gateUp, down, shared);
    }

    /// <summary>A granitemoe layer's experts as its Hugging Face checkpoints hold them: every expert's gate and up rows
    /// in one [experts, 2·intermediate, hidden] tensor, the downs in one [experts, hidden, intermediate].</summary>
    internal static (string InputLinear, string OutputLinear) GraniteMoeStackedExperts(int layer) =>
        ($"model.layers.{layer}.block_sparse_moe.input_linear.weight", $"model.layers.{layer}.block_sparse_moe.output_linear.weight");

    /// <summary>qwen2_moe's shared expert in a layer: its projections and its gate vector (shared_expert_gate, [1, hidden]).</summary>
    internal static (string Gate, string Up, string Down, string GateVector) SharedExpertNames(int layer)
    {
        string pre = $"model.layers.{layer}.mlp.";
        return ($"{pre}shared_expert.gate_proj.weight", $"{pre}shared_expert.up_proj.weight", $"{pre}shared_expert.down_proj.weight", $"{pre}shared_expert_gate.weight");
    }

    /// <summary>FFN columns are dealt out in whole blocks when the row-parallel weights are blocks (and the width allows), else one by one.</summary>
    private static int FfnSplitUnit(ModelConfig c, int block) => block > 1 && c.IntermediateSize % block == 0 ? block : 1;

    /// <summary>
    /// Values per block that a row-parallel split (o_proj over this rank's heads, down_proj over its FFN block)
    /// must not cut, and why: 32 for --quant, the stored block of a quantized checkpoint (256 for K-quants).
    /// </summary>
    private static (int Block, string Why) RowParallelBlock(ICheckpointReader reader, BlockFormat? quant)
    {
        var (block, why) = quant is null ? (1, "") : (BlockFormat.BlockSize, $"--quant {quant.Name}");
        var c = reader.Config;
        int firstDense = Enumerable.Range(0, c.NumLayers).FirstOrDefault(l => !c.IsSparse(l), -1);
        int firstSparse = Enumerable.Range(0, c.NumLayers).FirstOrDefault(c.IsSparse, -1);
        var rowParallel = new List<string> { "model.layers.0.self_attn.o_proj.weight" };
        if (firstDense >= 0) rowParallel.Add($"model.layers.{firstDense}.mlp.down_proj.weight");
        if (firstSparse >= 0) rowParallel.Add(ExpertNames(c, firstSparse, 0).Down);
        if (firstSparse >= 0 && c.Moe!.SharedIntermediateSize > 0) rowParallel.Add(SharedExpertNames(firstSparse).Down);
        foreach (var name in rowParallel)
        {
            int stored = reader.ColumnBlock(name);
            if (stored > block) (block, why) = (stored, $"{name} stored as {reader.StoredType(name)}");
        }
        return (block, why);
    }

    /// <summary>
    /// Refuses, before any weight is read, a world size that would cut a row-parallel weight inside a block,
    /// naming the world sizes that work.
    /// </summary>
    private static void CheckBlockAlignedSplit(ModelConfig c, int worldSize, int block, string why)
    {
        if (block == 1 || BlockAligned(c, worldSize, block)) return;
        var work = Enumerable.Range(1, c.NumHeads).Where(n => BlockAligned(c, n, block)).ToArray();
        throw new ModelLoadException($"{why} needs every rank's share of o_proj and down_proj to be whole {block}-value blocks, and world size {worldSize} cuts them ({c.NumHeads} heads of {c.HeadDim}, intermediate_size {c.IntermediateSize}{(c.Moe is { } moe ? $", experts of {moe.IntermediateSize}" : "")}); world sizes that work: {(work.Length == 0 ? "none" : string.Join(", ", work))}{(why.StartsWith("--quant", StringComparison.Ordinal) ? "; or load without --quant" : "")}");
    }

    private static bool BlockAligned(ModelConfig c, int worldSize, int block)
    {
        for (int rank = 0; rank < worldSize; rank++)
        {
            ShardPlan plan;
            try { plan = ShardPlan.Create(c, rank, worldSize, FfnSplitUnit(c, block)); }
            catch (ModelLoadException) { return false; }
            // A width that is not whole blocks even unsplit stays in full precision (see QuantizableWidth).
            if (c.NumHeads * c.HeadDim % block == 0 && plan.LocalHeads * c.HeadDim % block != 0) return false;
            if (c.IntermediateSize % block == 0 && plan.LocalFfn % block != 0) return false;
            if (c.Moe is { } moe && moe.IntermediateSize % block == 0 && plan.LocalExpertFfn % block != 0) return false;
        }
        return true;
    }

    /// <summary>Whether a matrix of this input width quantizes; if not, says once that it stays in full precision.</summary>
    private bool QuantizableWidth(long inDim, string what)
    {
        if (inDim % BlockFormat.BlockSize == 0) return true;
        string note = $"{what}: input width {inDim} is not a whole number of {BlockFormat.BlockSize}-value blocks, so it stays in {(_dtype == ScalarType.BFloat16 ? "bf16" : "f32")} (not {_quant!.Name})";
        if (_logged.Add(note)) _log?.Invoke(note);
        return false;
    }

    private void LogOnce(string note)
    {
        if (_logged.Add(note)) _log?.Invoke(note);
    }

    /// <summary>A linear layer's weight: quantized when the options ask (<see cref="ModelLoadOptions.Quant"/>), else in the compute dtype.</summary>
    private SplitMatrix LoadLinear(ICheckpointReader reader, params (string Name, long DiskRows, long DiskCols, long Row0, long Rows, long Col0, long Cols)[] parts) =>
        LoadLinear(reader, quantize: true, parts);

    /// <summary>
    /// A linear layer's weight in the format it will run in: Q8_0/Q4_0/Q4_1/Q5_1/IQ4_NL blocks of a GGUF file as they
    /// are stored; Q4_K, Q5_K and IQ4_XS as Q4_1, Q5_1 and IQ4_NL blocks (<see cref="KQuantConversion"/>), unless
    /// <see cref="ModelLoadOptions.Quant"/> names a format for them; other quantized types (Q6_K) dequantized and
    /// requantized to that format, or Q8_0; float weights quantized to <see cref="ModelLoadOptions.Quant"/> when
    /// asked and the width allows, else in the compute dtype.
    /// </summary>
    private SplitMatrix LoadLinear(ICheckpointReader reader, bool quantize, params (string Name, long DiskRows, long DiskCols, long Row0, long Rows, long Col0, long Cols)[] parts)
    {
        string what = string.Join("+", parts.Select(x => System.Text.RegularExpressions.Regex.Replace(x.Name, @"^model\.layers\.\d+\.|\.weight$", "")).Distinct());
        var types = parts.Select(x => reader.StoredType(x.Name)).Distinct().ToArray();
        if (types.Length == 1 && BlockFormat.OfType(types[0]) is { } stored) return LoadNative(reader, stored, parts);
        // --quant given: K-quants too run in that format (Q5_1's fifth bits cost integer work that makes it slower
        // than Q8_0 on CPUs where the dot products, not the memory, bound decode). Without it they keep their size.
        var requested = quantize ? _quant : null;
        if (types.Length == 1 && requested is null && KQuantConversion.Target(types[0]) is var (converted, _))
        {
            LogOnce($"{what}: stored as {types[0]}, which runs as {converted.Name} (each 32-weight sub-block's scale{(converted.ScaleBytes > 2 ? " and minimum" : "")} rounded to fp16; --quant q8_0 requantizes instead)");
            return LoadNative(reader, converted, parts, fromKQuant: types[0]);
        }
        BlockFormat target;
        if (types.Any(t => t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)))
        {
            target = requested ?? BlockFormat.Q8_0;
            LogOnce($"{what}: stored as {string.Join("/", types)}, which runs as {target.Name} (dequantized and requantized at load)");
        }
        else if (!quantize || _quant is null || !QuantizableWidth(parts[0].Cols, what))
        {
            return Split(LoadMatrix(reader, parts));
        }
        else
        {
            target = _quant;
        }
        // The rank's full-precision slice lives only until it is quantized: one slice at a time.
        using var f32 = LoadMatrixF32(reader, parts);
        return SplitQuantized(f32, target, parts.Length == 1 ? parts[0].Name : what);
    }

    /// <summary>
    /// Q8_0/Q4_0/Q4_1/Q5_1/IQ4_NL blocks read straight from a quantized checkpoint into the panel layout: ggml's bytes
    /// are ours, so nothing is converted, and a rank reads only its rows and (block-aligned) columns. With
    /// <paramref name="fromKQuant"/> the stored blocks are Q4_K, Q5_K or IQ4_XS, each super-block turned into eight
    /// Q4_1, Q5_1 or IQ4_NL blocks (<see cref="KQuantConversion"/>) as it is read.
    /// </summary>
    private unsafe SplitMatrix LoadNative(ICheckpointReader reader, BlockFormat format, (string Name, long DiskRows, long DiskCols, long Row0, long Rows, long Col0, long Cols)[] parts, GgmlType? fromKQuant = null)
    {
        long cols = parts[0].Cols, outDim = parts.Sum(x => x.Rows), blocks = cols / BlockFormat.BlockSize, rowBytes = format.RowBytes(cols);
        int panelRows = BlockFormat.PanelRowsFor(outDim);
        var packed = Own(torch.empty(new long[] { outDim * rowBytes }, ScalarType.Byte));
        byte* to = (byte*)DataPointer(packed);
        HugePages.Advise(to, outDim * rowBytes);
        long chunkRows = Math.Max(1, (8L << 20) / rowBytes), at = 0;
        var buffer = new byte[chunkRows * rowBytes];
        long superBlocks = cols / GgmlTypeTraits.KBlock;
        long storedRowBytes = fromKQuant is { } k ? superBlocks * KQuantConversion.Target(k)!.Value.SuperBlockBytes : rowBytes;
        var stored = fromKQuant is null ? buffer : new byte[chunkRows * storedRowBytes];
        foreach (var (name, diskRows, diskCols, row0, rows, col0, width) in parts)
        {
            if (width != cols) throw new InvalidOperationException($"{name}: block width {width} != {cols}");
            CheckShape(reader, name, diskRows, diskCols);
            for (long r = 0; r < rows; r += chunkRows)
            {
                long n = Math.Min(chunkRows, rows - r);
                reader.ReadRaw(name, row0 + r, n, col0, cols, stored.AsSpan(0, (int)(n * storedRowBytes)));
                fixed (byte* from = buffer, raw = stored)
                {
                    if (fromKQuant is { } kquant) KQuantConversion.Convert(kquant, raw, n * superBlocks, from);
                    format.PackRows(from, at + r, n, blocks, panelRows, to);
                }
            }
            at += rows;
        }
        return new SplitMatrix(packed, outDim, cols, false, RowStarts(outDim, panelRows), format, panelRows);
    }

    /// <summary>Output rows shared among the split workers in whole units (panels).</summary>
    private long[] RowStarts(long outDim, long unit)
    {
        long units = outDim / unit;
        int parts = _workers?.Parts ?? 1;
        if (units < parts) parts = 1;
        var rowStart = new long[parts + 1];
        for (int i = 0; i < parts; i++) rowStart[i + 1] = rowStart[i] + unit * ShardPlan.EvenSplit((int)units, parts, i).Count;
        return rowStart;
    }

    /// <summary>
    /// A float32 [out, in] matrix quantized row by row with ggml's reference formulas, straight into the panel
    /// layout of <paramref name="format"/> (rows in parallel: loading a large model quantizes billions of values).
    /// </summary>
    private unsafe SplitMatrix SplitQuantized(Tensor f32, BlockFormat format, string what)
    {
        long outDim = f32.shape[0], inDim = f32.shape[1], blocks = inDim / BlockFormat.BlockSize, rowBytes = format.RowBytes(inDim);
        int panelRows = BlockFormat.PanelRowsFor(outDim);
        var packed = Own(torch.empty(new long[] { outDim * rowBytes }, ScalarType.Byte));
        byte* to = (byte*)DataPointer(packed);
        HugePages.Advise(to, outDim * rowBytes);
        using var source = f32.contiguous();
        float* src = DataPointer(source);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, _threads ?? Environment.ProcessorCount) };
        Parallel.For(0L, outDim, parallel, () => new byte[rowBytes], (r, _, row) =>
        {
            format.QuantizeRow(new ReadOnlySpan<float>(src + r * inDim, (int)inDim), row, $"{what} row {r}");
            fixed (byte* blocksOfRow = row) format.PackRows(blocksOfRow, r, 1, blocks, panelRows, to);
            return row;
        }, _ => { });
        return new SplitMatrix(packed, outDim, inDim, false, RowStarts(outDim, panelRows), format, panelRows);
    }

    private SplitMatrix Split(Tensor w)
    {
        long outDim = w.shape[0], inDim = w.shape[1];
        bool packed = DotKernel.CanPack(outDim, inDim);
        // Parts get whole panels when packed.
        var rowStart = RowStarts(outDim, packed ? DotKernel.PanelRows : 1);
        if (!packed) return new SplitMatrix(Own(w), outDim, inDim, false, rowStart);
        var panels = Own(Pack(w));
        w.Dispose(); // the row-major original (or, for a tied head, a view of the embedding)
        return new SplitMatrix(panels, outDim, inDim, true, rowStart);
    }

    /// <summary>An [out, in] matrix copied into this CPU's decode panel layout (see <see cref="DotKernel"/>), same
    /// dtype: per panel of 16 rows each column's 16 weights side by side, or per panel of 4 rows 8 columns of each
    /// row in turn.</summary>
    private static unsafe Tensor Pack(Tensor w)
    {
        long outDim = w.shape[0], inDim = w.shape[1];
        bool wide = DotKernel.WidePanels;
        int R = DotKernel.PanelRows, C = wide ? 1 : DotKernel.PanelColumns;
        var packed = torch.empty(new long[] { outDim / R, inDim / C, R, C }, w.dtype);
        int e = (int)w.ElementSize, piece = C * e;
        byte* to = (byte*)DataPointer(packed);
        HugePages.Advise(to, outDim * inDim * e);
        using var source = w.contiguous();
        byte* src = (byte*)DataPointer(source);
        for (long panel = 0; panel < outDim / R; panel++)
            for (long chunk = 0; chunk < inDim / C; chunk++)
                for (int r = 0; r < R; r++, to += piece)
                    Buffer.MemoryCopy(src + ((panel * R + r) * inDim + chunk * C) * e, to, piece, piece);
        return packed;
    }

    private Tensor Own(Tensor t)
    {
        _owned.Add(t);
        return t;
    }

    /// <summary>
    /// Blocks of several [diskRows, diskCols] checkpoint weights stacked by rows: [Σ rows, cols]. Each block
    /// is rows [row0, row0+rows) × columns [col0, col0+cols) of its weight, read straight into place.
    /// </summary>
    private Tensor LoadMatrix(ICheckpointReader reader, params (string Name, long DiskRows, long DiskCols, long Row0, long Rows, long Col0, long Cols)[] parts) =>
        ToCompute(LoadMatrixF32(reader, parts));

    private unsafe Tensor LoadMatrixF32(ICheckpointReader reader, params (string Name, long DiskRows, long DiskCols, long Row0, long Rows, long Col0, long Cols)[] parts)
    {
        long cols = parts[0].Cols, outDim = parts.Sum(x => x.Rows);
        var t = torch.empty(new long[] { outDim, cols }, ScalarType.Float32);
        float* dst = DataPointer(t);
        HugePages.Advise(dst, outDim * cols * sizeof(float));
        long chunkRows = Math.Max(1, MaxReadElements / cols), at = 0;
        foreach (var (name, diskRows, diskCols, row0, rows, col0, width) in parts)
        {
            if (width != cols) throw new InvalidOperationException($"{name}: block width {width} != {cols}");
            CheckShape(reader, name, diskRows, diskCols);
            for (long r = 0; r < rows; r += chunkRows)
            {
                long n = Math.Min(chunkRows, rows - r);
                reader.ReadBlock(name, row0 + r, n, col0, cols, new Span<float>(dst + (at + r) * cols, checked((int)(n * cols))));
            }
            at += rows;
        }
        return t;
    }

    private Tensor ToCompute(Tensor f32)
    {
        if (_dtype == ScalarType.Float32) return f32;
        var converted = f32.to(_dtype);
        f32.Dispose();
        return converted;
    }

    private static void CheckShape(ICheckpointReader reader, string name, long rows, long cols)
    {
        var shape = reader.Shape(name);
        // One row is a vector, stored as [cols] or as a one-row matrix [1, cols] (qwen2_moe's shared_expert_gate, a
        // Linear(hidden, 1), is the latter in safetensors and the former in GGUF).
        // A 3-D tensor (granitemoe's stacked experts) is read as the matrix of its stacked rows.
        bool ok = rows == 1 ? shape.Length == 1 && shape[0] == cols || shape.Length == 2 && shape[0] == 1 && shape[1] == cols
            : shape.Length == 2 && shape[0] == rows && shape[1] == cols || shape.Length == 3 && shape[0] * shape[1] == rows && shape[2] == cols;
        if (!ok)
        {
            string want = rows == 1 ? $"[{cols}]" : $"[{rows}, {cols}]";
            throw new ModelLoadException($"{reader.Source}: tensor {name} has shape [{string.Join(", ", shape)}], but the config implies {want}");
        }
    }

    private static unsafe Span<float> FloatSpan(Tensor t) =>
        MemoryMarshal.Cast<byte, float>(t.bytes);

    /// <summary>
    /// Largest block handed to one checkpoint read. Spans are int-indexed, and a replicated embedding or an
    /// unsharded LM head of a large-vocabulary model passes 2 GiB, so big tensors are filled in pieces.
    /// </summary>
    internal static int MaxReadElements = 1 << 26;

    /// <summary>Start of a contiguous tensor's data (as float*; cast for other dtypes). Native memory does not move, so no pinning is needed.</summary>
    private static unsafe float* DataPointer(Tensor t)
    {
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>A whole 1-D weight (norms, row-parallel biases), replicated on every rank.</summary>
    private Tensor LoadVector(ICheckpointReader reader, string name, long length)
    {
        using var row = LoadFull(reader, name, 1, length);
        return row.view(length);
    }

    /// <summary>
    /// An RMSNorm weight as the step multiplies by it: as stored, or for gemma 1 + w, added in float32 and kept in
    /// float32 (transformers' Gemma3RMSNorm computes <c>1.0 + weight.float()</c>; bf16 would round the sum).
    /// </summary>
    private Tensor LoadNorm(ICheckpointReader reader, string name, long length)
    {
        if (!Config.Gemma) return LoadVector(reader, name, length);
        using var row = LoadMatrixF32(reader, (name, 1, length, 0, 1, 0, length));
        return reader.GemmaNormsIncludeOne ? row.view(length).clone() : row.view(length).add(1.0f);
    }

    /// <summary>q_norm and k_norm (each [headDim], replicated) laid out per local head: see <see cref="Layer.QkNorm"/>.</summary>
    private Tensor LoadQkNorm(ICheckpointReader reader, string prefix)
    {
        int d = Config.HeadDim;
        using var q = LoadNorm(reader, prefix + "self_attn.q_norm.weight", d);
        using var k = LoadNorm(reader, prefix + "self_attn.k_norm.weight", d);
        using var qs = q.expand(Plan.LocalHeads, d);
        using var ks = k.expand(Plan.LocalKvHeads, d);
        return torch.cat(new[] { qs, ks }, 0);
    }

    /// <summary>A whole [rows, cols] weight (the replicated embedding, or a vector as one row).</summary>
    private Tensor LoadFull(ICheckpointReader reader, string name, long rows, long cols) =>
        LoadMatrix(reader, (name, rows, cols, 0, rows, 0, cols));

    /// <summary>Blocks of several 1-D tensors (q/k/v biases) side by side, read in place.</summary>
    private Tensor Blocks(ICheckpointReader reader, long cols, params (string Name, long Row0, long Count, long Rows)[] parts)
    {
        long total = parts.Sum(x => x.Count);
        var t = torch.empty(new long[] { total, cols }, ScalarType.Float32);
        var span = FloatSpan(t);
        long at = 0;
        foreach (var (name, row0, count, rows) in parts)
        {
            bool bias = cols == 1;
            CheckShape(reader, name, bias ? 1 : rows, bias ? rows : cols);
            if (bias)
                reader.ReadBlock(name, 0, 1, row0, count, span.Slice((int)at, (int)count));
            else
                reader.ReadBlock(name, row0, count, 0, cols, span.Slice((int)(at * cols), (int)(count * cols)));
            at += count;
        }
        return ToCompute(t);
    }

    /// <summary>Tokens currently held by <paramref name="slot"/> (0 after a reset).</summary>
    public int SlotLength(int slot) => _slotLength[CheckSlot(slot)] ?? 0;

    /// <summary>Forgets the sequence in <paramref name="slot"/>; the next forward must start at position 0.</summary>
    public void ResetSlot(int slot) => _slotLength[CheckSlot(slot)] = null;

    private int CheckSlot(int slot) => slot >= 0 && slot < Slots ? slot
        : throw new ArgumentOutOfRangeException(nameof(slot), slot, $"slot must be in [0, {Slots})");

    /// <summary>
    /// One sequence without a scheduler (tests and benches): runs <paramref name="tokens"/> at positions
    /// startPosition.. of <paramref name="slot"/>, a fixed run of KV blocks reserved for that slot, as a
    /// one-sequence <see cref="Execute"/>. Returns the last position's full logits on rank 0 and null
    /// elsewhere. Serving uses <see cref="Execute"/> with the scheduler's block tables instead; the two must
    /// not share a model.
    /// </summary>
    public float[]? Forward(int slot, ReadOnlySpan<int> tokens, int startPosition)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckSlot(slot);
        if (tokens.Length == 0) throw new ArgumentException("at least one token is needed", nameof(tokens));
        int held = _slotLength[slot] ?? 0;
        if (startPosition < 0 || startPosition > held)
            throw new ArgumentOutOfRangeException(nameof(startPosition), startPosition, $"slot {slot} holds {held} tokens; a forward must start at or before position {held}");
        var result = Execute(new StepPlan(0, [new SequenceStep(slot, startPosition, tokens.ToArray(), SlotBlockTable(slot), NeedsLogits: true)]));
        _slotLength[slot] = startPosition + tokens.Length;
        return _comm.Rank == 0 ? (float[])result.Logits[0].Clone() : null; // a copy: the step's rows are reused
    }

    /// <summary>
    /// One decode step over slots 0..B-1 at once (B = <paramref name="tokens"/>.Length), as the serving loop
    /// batches its sequences: slot b is fed tokens[b] at the position after what it holds. Each slot must hold
    /// a prompt already (<see cref="Forward"/>). Returns every slot's full logits on rank 0 (slot order) and
    /// nothing elsewhere, valid until the next step (as <see cref="Execute"/>'s). For benches that measure the
    /// batched step without a scheduler.
    /// </summary>
    public IReadOnlyList<float[]> DecodeSlots(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Length == 0 || tokens.Length > Slots)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens.Length, $"a step decodes 1 to {Slots} slots (the model's slots)");
        var sequences = new SequenceStep[tokens.Length];
        for (int slot = 0; slot < sequences.Length; slot++)
        {
            int held = _slotLength[slot] ?? throw new InvalidOperationException($"slot {slot} holds no prompt; prefill it with Forward first");
            sequences[slot] = new SequenceStep(slot, held, [tokens[slot]], SlotBlockTable(slot), NeedsLogits: true);
        }
        var result = Execute(new StepPlan(0, sequences));
        for (int slot = 0; slot < sequences.Length; slot++) _slotLength[slot]++;
        return result.Logits;
    }

    /// <summary>The fixed run of KV blocks that <see cref="Forward"/> reserves for <paramref name="slot"/>.</summary>
    private int[] SlotBlockTable(int slot)
    {
        if ((long)(slot + 1) * _blocksPerSlot > KvBlocks)
            throw new InvalidOperationException($"slot {slot} needs blocks up to {(slot + 1) * _blocksPerSlot}, but the KV cache has {KvBlocks} (loaded with a kv-cache-tokens budget meant for a scheduler)");
        return Enumerable.Range(slot * _blocksPerSlot, _blocksPerSlot).ToArray();
    }

    /// <summary>
    /// The step's products, y[rows, out] = x[rows, in] · Wᵀ: each weight panel is streamed once for all rows
    /// (<see cref="DotKernel.PanelsRows{TWeights}"/>, or the block formats' <see cref="BlockFormat.Dot"/>), the panels shared
    /// among the split workers. Why not libtorch: its matrix-vector product goes to MKL's sgemv, which on the
    /// reference AMD CPU takes MKL's generic code path (perf shows <c>mkl_blas_def_xsgemv</c>) and streams
    /// about 14 GB/s, and its batched products accumulate in an order that depends on the batch size.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void MatMul(float* x, int rows, SplitMatrix w, float* y)
    {
        ProductKind kind = w.Format is not null ? ProductKind.Quantized : w.ElementSize == sizeof(float) ? ProductKind.F32 : ProductKind.BF16;
        // Block formats: every activation row quantized to Q8_0 once, then integer dot products over the blocks
        // (BlockFormat.Dot, batched like the float panels: each panel streamed once for all rows, each row's result
        // the same in any batch).
        if (kind == ProductKind.Quantized) _quantizedX.Quantize(x, (int)w.In, rows, w.In);
        float* xt = x; // one row is its own transpose
        if (kind != ProductKind.Quantized && w.Packed && rows > 1 && DotKernel.WidePanels)
        {
            // The 16-row panels read each k's activation values of a group of rows side by side (DotKernel.Transpose),
            // transposed once per product for every panel and split helper.
            long floats = DotKernel.TransposedFloats(rows, (int)w.In);
            if (_transposedX.Length < floats) _transposedX = GC.AllocateArray<float>((int)floats, pinned: true);
            xt = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_transposedX));
            DotKernel.Transpose(x, w.In, rows, (int)w.In, xt);
        }
        _product = new Product(x, xt, rows, w, y, kind);
        if (w.RowStart.Length == 2)
        {
            ProductRows(0, w.Out);
            return;
        }
        _nextRow = 0;
        _workers!.Run(_claimProductRows);
    }

    private enum ProductKind : byte { F32, BF16, Quantized }

    /// <summary>The product being computed, held in a field (not captured by a lambda) so that handing it to the
    /// split workers allocates nothing: a closure and two delegates per product were most of the 5–7 KB of garbage
    /// a step made on rank 0, whose gen0 collections (3–6 ms) stalled a step every few hundred.</summary>
    private readonly unsafe struct Product(float* x, float* xt, int rows, SplitMatrix w, float* y, ProductKind kind)
    {
        public readonly float* X = x, XT = xt, Y = y;
        public readonly int Rows = rows;
        public readonly SplitMatrix W = w;
        public readonly ProductKind Kind = kind;

        /// <summary>Rows are claimed in whole panels.</summary>
        public long Unit => Kind == ProductKind.Quantized ? W.PanelRows : DotKernel.PanelRows;
    }

    private Product _product;

    /// <summary>The current product's activations transposed for the float panels (reused; pinned).</summary>
    private float[] _transposedX = [];

    /// <summary>Activations quantized to Q8_0 for the integer kernels, once per product and shared by the split workers.</summary>
    private readonly QuantizedActivations _quantizedX = new();

    /// <summary>What every split worker runs for a product: it claims blocks of rows until none are left.</summary>
    private readonly Action<int> _claimProductRows;

    /// <summary>
    /// Threads take blocks of rows from a shared counter rather than fixed halves, so a thread whose core is slowed
    /// (a neighbour's burst, an interrupt) does less of the product instead of holding the others up. Blocks shrink
    /// as the product nears its end (a share of what is left, guided scheduling): the caller waits for the last
    /// block to finish, and a fixed 64-row block of a 3072-wide matrix is ~30 µs of streaming, paid up to ~50 times
    /// a step.
    /// </summary>
    private void ClaimProductRows()
    {
        long total = _product.W.Out, unit = _product.Unit;
        int parts = _workers!.Parts;
        while (true)
        {
            long r = Volatile.Read(ref _nextRow);
            if (r >= total) return;
            long size = Math.Clamp((total - r) / (2 * parts), MinBlockRows, MaxBlockRows) / unit * unit;
            long end = Math.Min(total, r + size);
            if (Interlocked.CompareExchange(ref _nextRow, end, r) != r) continue;
            ProductRows(r, end);
        }
    }

    /// <summary>Output rows [r, end) of the current product.</summary>
    private unsafe void ProductRows(long r, long end)
    {
        var p = _product;
        switch (p.Kind)
        {
            case ProductKind.F32:
                MatMulRows<F32Weights>(p.X, p.XT, p.Rows, p.W, p.Y, r, end);
                break;
            case ProductKind.BF16:
                MatMulRows<BF16Weights>(p.X, p.XT, p.Rows, p.W, p.Y, r, end);
                break;
            default:
                p.W.Format!.Dot(p.W.Data, r, end, p.W.In / BlockFormat.BlockSize, p.W.PanelRows, _quantizedX, p.Y, p.W.Out);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MatMulRows<TWeights>(float* x, float* xt, int rows, SplitMatrix w, float* y, long r, long end) where TWeights : struct, IWeightFormat
    {
        byte* ws = w.Data;
        int n = (int)w.In;
        long rowBytes = (long)n * TWeights.Bytes, outDim = w.Out;
        if (w.Packed)
        {
            DotKernel.PanelsRows<TWeights>(ws + r * rowBytes, (end - r) / DotKernel.PanelRows, x, n, xt, rows, n, y + r, outDim);
            return;
        }
        for (; r < end; r++)
            for (int b = 0; b < rows; b++) y[b * outDim + r] = DotKernel.Dot<TWeights>(ws + r * rowBytes, x + (long)b * n, n);
    }

    /// <summary>Bounds of a claimed block of rows (multiples of the panel height, so at least one 16-row panel):
    /// large enough that claiming costs nothing against streaming it, small enough that the last one does not keep
    /// the others waiting.</summary>
    private const long MinBlockRows = 16, MaxBlockRows = 64;

    /// <summary>Next unclaimed row of the product the split workers are sharing (see <see cref="MatVec"/>).</summary>
    private long _nextRow;

    private float[] _syncWide = [];
    private ushort[] _syncBf16 = [];
    private byte[] _syncBlocks = [], _syncGathered = [];

    /// <summary>
    /// Sums a step's [rows, hidden] float32 partial results across ranks in place, in the payload of
    /// <see cref="ModelLoadOptions.SyncDType"/>. bf16 rides the ring's bf16 all-reduce (widened, summed in
    /// float32 in rank order, rounded once). Q8_0 has no sum on the wire: every rank gathers every rank's
    /// blocks and adds their dequantized values in rank order itself, the same float32 arithmetic everywhere.
    /// </summary>
    private unsafe void AllReduceActivations(float* o, int rows)
    {
        if (_comm.WorldSize == 1) return;
        int h = Config.HiddenSize;
        long count = (long)rows * h;
        switch (_syncPayload)
        {
            case SyncPayload.F32:
                AllReduce(o, count, Transport.DType.F32);
                return;
            case SyncPayload.BF16:
                if (_syncBf16.Length < count) _syncBf16 = GC.AllocateArray<ushort>((int)count, pinned: true);
                fixed (ushort* bits = _syncBf16)
                {
                    for (long i = 0; i < count; i++) ((Transport.BFloat16*)bits)[i] = Transport.BFloat16.FromSingle(o[i]);
                    AllReduce(bits, count, Transport.DType.BF16);
                    for (long i = 0; i < count; i++) o[i] = BitConverter.UInt32BitsToSingle((uint)bits[i] << 16);
                }
                return;
            default:
                var format = BlockFormat.Q8_0;
                int bytes = (int)format.RowBytes(count), n = _comm.WorldSize;
                if (_syncBlocks.Length < bytes) _syncBlocks = new byte[bytes];
                if (_syncGathered.Length < bytes * n) _syncGathered = new byte[bytes * n];
                if (_syncWide.Length < count) _syncWide = new float[count];
                var mine = _syncBlocks.AsSpan(0, bytes);
                int* lanes = stackalloc int[8];
                fixed (byte* q = mine)
                {
                    for (long b = 0; b < count / BlockFormat.BlockSize; b++)
                    {
                        QuantizedActivations.QuantizeBlock(o + b * BlockFormat.BlockSize, (sbyte*)(q + b * 34 + 2), out float scale, lanes);
                        *(ushort*)(q + b * 34) = Fp16.FromSingle(scale);
                    }
                }
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                Span<int> counts = stackalloc int[n];
                counts.Fill(bytes);
                _comm.AllGather<byte>(mine, _syncGathered.AsSpan(0, bytes * n), counts);
                _allReduceTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
                var sum = new Span<float>(o, (int)count);
                var part = _syncWide.AsSpan(0, (int)count);
                for (int rank = 0; rank < n; rank++)
                {
                    format.DequantizeRow(_syncGathered.AsSpan(rank * bytes, bytes), rank == 0 ? sum : part);
                    if (rank > 0) TensorPrimitives.Add(sum, part, sum);
                }
                return;
        }
    }

    /// <summary>Sums <paramref name="count"/> elements across ranks in place (compute dtype unless told), timed for the benches.</summary>
    private unsafe void AllReduce(void* data, long count, Transport.DType? dtype = null)
    {
        if (_comm.WorldSize == 1) return;
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        _comm.AllReduceSum(data, count, dtype ?? _wireDType);
        _allReduceTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
        _workers?.Dispose();
    }
}
