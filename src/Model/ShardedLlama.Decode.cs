using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorRing.Model;

/// <summary>
/// The one-token decode step, run over the raw memory of the same weight and KV-cache tensors that prefill
/// uses through libtorch. Why a second path: at batch 1 a decode step is about 35 small tensor operations per
/// layer, and through TorchSharp each costs 5–20 µs of dispatch and allocation, which on llama-160m added
/// 6–8 ms to a 25 ms step. Here the step is plain vectorized loops over preallocated buffers, so its time is
/// the weight stream (see <see cref="MatVec"/>) plus the attention over the cache. Its arithmetic is float32
/// whether weights and cache are stored as float32 or bf16. Prefill and every multi-token forward stay on the
/// libtorch path; tests hold both paths to the same logits (float32) or to the same tokens within bf16
/// rounding (bf16).
/// </summary>
public sealed partial class ShardedLlama
{
    /// <summary>Scratch of the decode step, allocated on first use and reused (pinned: raw pointers are taken).</summary>
    private sealed class DecodeScratch(int hidden, int qkv, int q, int ffn, int context, int localVocab, int parts)
    {
        public readonly float[] X = GC.AllocateArray<float>(hidden, pinned: true);
        public readonly float[] Normed = GC.AllocateArray<float>(hidden, pinned: true);
        public readonly float[] Qkv = GC.AllocateArray<float>(qkv, pinned: true);
        public readonly float[] Attn = GC.AllocateArray<float>(q, pinned: true);
        public readonly float[] Out = GC.AllocateArray<float>(hidden, pinned: true);
        public readonly float[] GateUp = GC.AllocateArray<float>(2 * ffn, pinned: true);
        public readonly float[] Act = GC.AllocateArray<float>(ffn, pinned: true);
        public readonly float[] Scores = GC.AllocateArray<float>(context * parts, pinned: true); // a row per split part
        public readonly float[] Logits = GC.AllocateArray<float>(localVocab, pinned: true);
    }

    private DecodeScratch? _scratch;

    /// <summary>
    /// Raw addresses of one layer's small tensors, taken once (each address lookup is a few TorchSharp calls).
    /// Norm weights and biases are float32 (copies, when the model computes in bf16); the KV cache is the
    /// model's own, in its compute dtype, shared with prefill.
    /// </summary>
    private readonly unsafe struct LayerMemory(float* inputNorm, float* postNorm, float* bqkv, float* qkNorm, float* bo, byte* kCache, byte* vCache)
    {
        public readonly float* InputNorm = inputNorm, PostNorm = postNorm, Bqkv = bqkv, QkNorm = qkNorm, Bo = bo;
        public readonly byte* KCache = kCache, VCache = vCache;
    }

    private LayerMemory[]? _layerMemory;
    private unsafe byte* _embedData;
    private unsafe float* _cosData, _sinData, _finalNormData;

    private unsafe LayerMemory[] TakeAddresses()
    {
        // The step computes in float32 whatever the storage: bf16 only halves the bytes that the large weights
        // (and the cache) stream. The small tensors are read so often that float32 copies of them cost
        // nothing (for llama-160m, 150 KiB).
        float* Float32(Tensor t) => DataPointer(t.dtype == ScalarType.Float32 ? t : Own(t.to(ScalarType.Float32).DetachFromDisposeScope()));
        _embedData = (byte*)DataPointer(_embed);
        _cosData = Float32(_cos);
        _sinData = Float32(_sin);
        _finalNormData = Float32(_finalNorm);
        return _layers.Select(l => new LayerMemory(Float32(l.InputNorm), Float32(l.PostNorm),
            l.Bqkv is null ? null : Float32(l.Bqkv), l.QkNorm is null ? null : Float32(l.QkNorm), l.Bo is null ? null : Float32(l.Bo),
            (byte*)DataPointer(l.KCache), (byte*)DataPointer(l.VCache))).ToArray();
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private unsafe float[] DecodeLocal(int slot, int token, int pos)
    {
        var c = Config;
        int h = c.HiddenSize, d = c.HeadDim, half = d / 2, L = pos + 1, f = Plan.LocalFfn;
        int localHeads = Plan.LocalHeads, localKv = Plan.LocalKvHeads;
        var s = _scratch ??= new DecodeScratch(h, _qDim + 2 * _kvDim, _qDim, f, ContextLength, Plan.LocalVocab, _workers?.Parts ?? 1);
        var memory = _layerMemory ??= TakeAddresses();

        fixed (float* x = s.X, normed = s.Normed, qkv = s.Qkv, attn = s.Attn, o = s.Out, gu = s.GateUp, act = s.Act, scores = s.Scores)
        {
            bool bf16 = _dtype == ScalarType.BFloat16;
            int e = bf16 ? sizeof(ushort) : sizeof(float);
            ToFloat32(_embedData + (long)token * h * e, bf16, x, h);
            float* cos = _cosData + (long)pos * half, sin = _sinData + (long)pos * half;
            for (int i = 0; i < _layers.Length; i++)
            {
                var layer = _layers[i];
                var mem = memory[i];
                RmsNorm(x, mem.InputNorm, normed, h);
                MatVec(normed, layer.Wqkv, qkv);
                if (mem.Bqkv is not null) Add(qkv, mem.Bqkv, _qDim + 2 * _kvDim);
                if (mem.QkNorm is not null) // qwen3: each q and k head normalized by its own weight row, before RoPE
                    for (int head = 0; head < localHeads + localKv; head++) RmsNorm(qkv + head * d, mem.QkNorm + head * d, qkv + head * d, d);
                // q heads, then k heads, sit side by side: rotate them all (rotate-half convention).
                for (int head = 0; head < localHeads + localKv; head++) RotateHalf(qkv + head * d, cos, sin, half);

                long slotBase = (long)slot * localKv * ContextLength * d * e;
                byte* kCache = mem.KCache + slotBase, vCache = mem.VCache + slotBase;
                for (int kv = 0; kv < localKv; kv++)
                {
                    long at = ((long)kv * ContextLength + pos) * d * e;
                    FromFloat32(qkv + _qDim + kv * d, kCache + at, bf16, d);
                    FromFloat32(qkv + _qDim + _kvDim + kv * d, vCache + at, bf16, d);
                }
                // A windowed layer attends over the last W cached positions only.
                int first = layer.Window is int w ? Math.Max(0, L - w) : 0;
                if (bf16) AttendLocalHeads<BF16Weights>(qkv, kCache, vCache, first, L, scores, attn);
                else AttendLocalHeads<F32Weights>(qkv, kCache, vCache, first, L, scores, attn);

                MatVec(attn, layer.Wo, o);
                AllReduce(o, h, Transport.DType.F32); // the step's activations are float32 in either compute dtype
                if (mem.Bo is not null) Add(o, mem.Bo, h); // once, after the reduction
                Add(x, o, h);

                RmsNorm(x, mem.PostNorm, normed, h);
                MatVec(normed, layer.Wgu, gu);
                // SiLU(gate)·up = gate·σ(gate)·up
                var gate = new Span<float>(gu, f);
                var up = new ReadOnlySpan<float>(gu + f, f);
                var a = new Span<float>(act, f);
                TensorPrimitives.Sigmoid(gate, a);
                TensorPrimitives.Multiply(a, gate, a);
                TensorPrimitives.Multiply(a, up, a);
                MatVec(act, layer.Wdown, o);
                AllReduce(o, h, Transport.DType.F32); // the step's activations are float32 in either compute dtype
                Add(x, o, h);
            }
            RmsNorm(x, _finalNormData, normed, h);
            fixed (float* logits = s.Logits) MatVec(normed, _lmHead, logits);
        }
        return s.Logits.ToArray();
    }

    /// <summary>
    /// Every local query head attends over its KV head's cached positions [<paramref name="first"/>, <paramref name="end"/>). With
    /// split helpers the heads are dealt out among them: attention is 5–8% of a llama-160m step, which would
    /// otherwise run on one thread while the others wait for the next product.
    /// </summary>
    private unsafe void AttendLocalHeads<TCache>(float* qkv, byte* kCache, byte* vCache, int first, int end, float* scores, float* attn)
        where TCache : struct, IWeightFormat
    {
        int d = Config.HeadDim, heads = Plan.LocalHeads, context = ContextLength, group = _group;
        float scale = 1f / MathF.Sqrt(d);
        void Heads(int part, int parts)
        {
            float* partScores = scores + (long)part * context; // each part its own score row
            for (int head = part; head < heads; head += parts)
            {
                long kvOffset = ((long)(head / group) * context + first) * d * TCache.Bytes;
                AttentionKernel.Attend<TCache>(qkv + head * d, kCache + kvOffset, vCache + kvOffset, end - first, d, scale, partScores, attn + head * d);
            }
        }
        if (_workers is null) Heads(0, 1);
        else _workers.Run(part => Heads(part, _workers.Parts));
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

    private unsafe void RmsNorm(float* x, float* weight, float* y, int n)
    {
        var xs = new ReadOnlySpan<float>(x, n);
        float inv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xs) / n + (float)Config.RmsNormEps);
        var ys = new Span<float>(y, n);
        TensorPrimitives.Multiply(xs, inv, ys);
        TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(weight, n), ys);
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
