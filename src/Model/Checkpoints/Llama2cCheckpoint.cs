using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorRing.Model.Checkpoints;

/// <summary>
/// A llama2.c checkpoint (<c>run.c</c>'s float32 format): either the legacy header of 7 int32 (a negative
/// vocab_size meaning an untied classifier, RoPE tables stored after the weights), or export.py's version 1
/// (<c>ak42</c> magic, version, 7 int32, a shared-classifier byte, padded to 256 bytes; weights grouped by
/// kind). Tensors are exposed under Hugging Face names. llama2.c's RoPE rotates interleaved pairs
/// (2i, 2i+1) of each head while the forward pass uses Hugging Face's rotate-half pairs (i, i + d/2), so
/// q/k rows are permuted within each head as they are read.
/// </summary>
internal sealed class Llama2cCheckpoint : ICheckpointReader
{
    private const uint Ak42Magic = 0x616b3432;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, (long Offset, long[] Shape)> _tensors = new(StringComparer.Ordinal);

    public ModelConfig Config { get; }
    public string Source { get; }

    public Llama2cCheckpoint(string path)
    {
        Source = path;
        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long length = RandomAccess.GetLength(_handle);
            var head = new byte[64];
            if (length < 28 || RandomAccess.Read(_handle, head, 0) < 28)
                throw new ModelLoadException($"{path}: too short to be a llama2.c checkpoint");
            bool v1 = BinaryPrimitives.ReadUInt32LittleEndian(head) == Ak42Magic;
            int p0 = 0;
            long dataStart = 28;
            if (v1)
            {
                int version = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4));
                if (version != 1)
                    throw new ModelLoadException($"{path}: llama2.c format version {version} is not supported (float32 version 1 and the legacy format are; version 2 is int8-quantised)");
                p0 = 8;
                dataStart = 256;
            }
            int Read(int i) => BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(p0 + 4 * i));
            int dim = Read(0), hidden = Read(1), layers = Read(2), heads = Read(3), kvHeads = Read(4), vocab = Read(5), seqLen = Read(6);
            bool shared = v1 ? head[p0 + 28] != 0 : vocab > 0;
            vocab = Math.Abs(vocab);
            if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0 || seqLen <= 0
                || dim % heads != 0 || heads % kvHeads != 0 || (dim / heads) % 2 != 0)
            {
                throw new ModelLoadException($"{path}: header (dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {vocab}, seq_len {seqLen}) is not a valid llama2.c model");
            }
            int headDim = dim / heads, kvDim = kvHeads * headDim;
            Config = new ModelConfig
            {
                ModelType = "llama",
                HiddenSize = dim,
                IntermediateSize = hidden,
                NumLayers = layers,
                NumHeads = heads,
                NumKvHeads = kvHeads,
                HeadDim = headDim,
                VocabSize = vocab,
                MaxPositionEmbeddings = seqLen,
                RmsNormEps = 1e-5, // run.c's rmsnorm constant
                RopeTheta = 10000.0,
                TieWordEmbeddings = shared,
                QkvBias = false,
                OProjBias = false,
                BosTokenId = 1,
                EosTokenIds = [2],
            };

            long offset = dataStart;
            void Add(string name, params long[] shape)
            {
                _tensors[name] = (offset, shape);
                offset += shape.Aggregate(4L, (a, b) => a * b);
            }
            string L(int i, string rest) => $"model.layers.{i}.{rest}";
            if (v1)
            {
                for (int i = 0; i < layers; i++) Add(L(i, "input_layernorm.weight"), dim);
                for (int i = 0; i < layers; i++) Add(L(i, "post_attention_layernorm.weight"), dim);
                Add("model.norm.weight", dim);
                Add("model.embed_tokens.weight", vocab, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.q_proj.weight"), dim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.k_proj.weight"), kvDim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.v_proj.weight"), kvDim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.o_proj.weight"), dim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.gate_proj.weight"), hidden, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.down_proj.weight"), dim, hidden);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.up_proj.weight"), hidden, dim);
                if (!shared) Add("lm_head.weight", vocab, dim);
            }
            else
            {
                Add("model.embed_tokens.weight", vocab, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "input_layernorm.weight"), dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.q_proj.weight"), dim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.k_proj.weight"), kvDim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.v_proj.weight"), kvDim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "self_attn.o_proj.weight"), dim, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "post_attention_layernorm.weight"), dim);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.gate_proj.weight"), hidden, dim);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.down_proj.weight"), dim, hidden);
                for (int i = 0; i < layers; i++) Add(L(i, "mlp.up_proj.weight"), hidden, dim);
                Add("model.norm.weight", dim);
                offset += (long)seqLen * headDim * 4; // freq_cis_real and freq_cis_imag, unused (recomputed)
                if (!shared) Add("lm_head.weight", vocab, dim);
            }
            if (offset > length)
                throw new ModelLoadException($"{path}: file has {length} bytes but the header (dim {dim}, {layers} layers, vocab {vocab}) needs {offset}");
        }
        catch
        {
            _handle.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public long BytesRead { get; private set; }

    public long[] Shape(string name) => _tensors.TryGetValue(name, out var t) ? t.Shape
        : throw new ModelLoadException($"{Source}: tensor {name} is not in a llama2.c checkpoint");

    public void ReadBlock(string name, long row0, long rows, long col0, long cols, Span<float> destination)
    {
        var (offset, shape) = _tensors[name];
        long width = shape.Length == 1 ? shape[0] : shape[1];
        bool permute = name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("k_proj.weight", StringComparison.Ordinal);
        int d = Config.HeadDim;
        if (permute && (row0 % d != 0 || rows % d != 0))
            throw new InvalidOperationException($"{name}: q/k rows must be read whole heads at a time (rows {row0}+{rows}, head_dim {d})");

        for (long r = 0; r < rows; r++)
        {
            // Hugging Face row h*(d/2)+i of a head is llama2.c row 2i+h of the same head.
            long src = row0 + r;
            if (permute)
            {
                long headBase = src - src % d, j = src % d;
                long half = j / (d / 2), i = j % (d / 2);
                src = headBase + 2 * i + half;
            }
            Span<float> dst = destination.Slice((int)(r * cols), (int)cols);
            var bytes = MemoryMarshal.AsBytes(dst);
            BytesRead += bytes.Length;
            long at = offset + (src * width + col0) * 4;
            while (bytes.Length > 0)
            {
                int n = RandomAccess.Read(_handle, bytes, at);
                if (n <= 0) throw new ModelLoadException($"{Source}: unexpected end of file at byte {at}");
                bytes = bytes[n..];
                at += n;
            }
        }
    }

    public void Dispose() => _handle.Dispose();
}
