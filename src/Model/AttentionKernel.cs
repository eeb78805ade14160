using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace ActorRing.Model;

/// <summary>
/// One query head of a decode step attending over its cached keys and values. Why not TensorPrimitives per
/// cached position: a head dimension is only 64–128 floats, so a call per position per head (two per position:
/// the score and the weighted value) costs more in call overhead than in arithmetic. On llama-160m at 128–230
/// cached positions that was about 58,000 calls and 1.7 ms of a 21 ms step; these loops keep a position's
/// whole row in registers instead.
/// </summary>
internal static class AttentionKernel
{
    /// <summary>
    /// out = softmax(scale · K·q) · V over <paramref name="length"/> cached positions. Keys and values are
    /// row-major [position, headDim]; <paramref name="scores"/> has room for <paramref name="length"/> floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Attend(float* q, float* keys, float* values, int length, int headDim, float scale, float* scores, float* output)
    {
        var p = new Span<float>(scores, length);
        var outHead = new Span<float>(output, headDim);
        if (!Vector256.IsHardwareAccelerated || headDim % Vector256<float>.Count != 0)
        {
            var query = new ReadOnlySpan<float>(q, headDim);
            for (int l = 0; l < length; l++) scores[l] = TensorPrimitives.Dot(query, new ReadOnlySpan<float>(keys + (long)l * headDim, headDim)) * scale;
            TensorPrimitives.SoftMax(p, p);
            outHead.Clear();
            for (int l = 0; l < length; l++)
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(values + (long)l * headDim, headDim), scores[l], outHead, outHead);
            return;
        }

        for (int l = 0; l < length; l++)
        {
            float* key = keys + (long)l * headDim;
            var s0 = Vector256<float>.Zero;
            var s1 = s0;
            int k = 0;
            for (; k + 16 <= headDim; k += 16)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(key + k), Vector256.Load(q + k), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(key + k + 8), Vector256.Load(q + k + 8), s1);
            }
            if (k < headDim) s0 = Vector256.FusedMultiplyAdd(Vector256.Load(key + k), Vector256.Load(q + k), s0);
            scores[l] = Vector256.Sum(s0 + s1) * scale;
        }
        TensorPrimitives.SoftMax(p, p);

        // The weighted sum of value rows, 32 columns at a time held in four registers across all positions.
        int c = 0;
        for (; c + 32 <= headDim; c += 32)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = a0;
            var a2 = a0;
            var a3 = a0;
            float* v = values + c;
            for (int l = 0; l < length; l++, v += headDim)
            {
                var w = Vector256.Create(scores[l]);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), w, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 8), w, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 16), w, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 24), w, a3);
            }
            a0.Store(output + c);
            a1.Store(output + c + 8);
            a2.Store(output + c + 16);
            a3.Store(output + c + 24);
        }
        for (; c < headDim; c += 8)
        {
            var a = Vector256<float>.Zero;
            float* v = values + c;
            for (int l = 0; l < length; l++, v += headDim) a = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(scores[l]), a);
            a.Store(output + c);
        }
    }
}
