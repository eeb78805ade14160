namespace ActorRing.Model.Tests.Support;

/// <summary>
/// The plainest possible Llama/Qwen2 forward pass over float arrays, in double precision, sharing no code
/// with the model: an independent check of the maths (RMSNorm, rotate-half RoPE with optional llama3
/// scaling, grouped-query causal attention with an optional sliding window, qwen3's per-head q/k norms,
/// SwiGLU, biases, tied or untied head).
/// </summary>
internal static class ReferenceForward
{
    /// <summary>Logits of the last position after running all <paramref name="tokens"/> from position 0.</summary>
    /// <param name="contextLength">The context the model under test is loaded with: longrope picks its factors by it.</param>
    public static float[] LastLogits(SyntheticModel m, int[] tokens, int contextLength = 64)
    {
        int T = tokens.Length, H = m.Hidden, d = m.HeadDim, nh = m.Heads, nkv = m.KvHeads, group = nh / nkv;
        var W = m.W;
        double[][] x = new double[T][];
        for (int t = 0; t < T; t++)
        {
            x[t] = new double[H];
            // gemma scales its embeddings by sqrt(hidden).
            double embedScale = m.Gemma ? Math.Sqrt(H) : m.ModelType is "granite" or "granitemoe" ? m.EmbeddingMultiplier : 1;
            for (int i = 0; i < H; i++) x[t][i] = W["model.embed_tokens.weight"][tokens[t] * H + i] * embedScale;
        }
        bool gemma = m.Gemma;
        double normOffset = gemma ? 1 : 0; // gemma's RMSNorm multiplies by 1 + w
        bool granite = m.ModelType is "granite" or "granitemoe";
        bool olmo2 = m.ModelType is "olmo2" or "olmo3"; // no pre-norms; output norms; q and k normalized over the whole projection
        bool glm4 = m.ModelType == "glm4"; // interleaved rotary pairs; norms of the attention's and the MLP's outputs
        double residual = granite ? m.ResidualMultiplier : 1; // granite scales each sublayer's output before the add

        for (int l = 0; l < m.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            // gemma3's windowed layers rotate with their own base (rope_local_base_freq), unscaled; olmo3's with the
            // model's base, unscaled (no YaRN frequencies, no YaRN magnitude).
            bool unscaled = m.WindowOf(l) is not null && m.ModelType is "gemma3_text" or "olmo3";
            double[] invFreq = InverseFrequencies(m, m.ModelType == "gemma3_text" && unscaled ? m.LocalTheta : m.Theta, contextLength, unscaled);
            double magnitude = unscaled ? 1 : RopeMagnitude(m);
            var q = new double[T][];
            var k = new double[T][];
            var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                var h = olmo2 ? x[t] : RmsNorm(x[t], W[p + "input_layernorm.weight"], m.Eps, normOffset);
                q[t] = MatVec(W[p + "self_attn.q_proj.weight"], nh * d, H, h, m.QkvBias ? W[p + "self_attn.q_proj.bias"] : null);
                k[t] = MatVec(W[p + "self_attn.k_proj.weight"], nkv * d, H, h, m.QkvBias ? W[p + "self_attn.k_proj.bias"] : null);
                v[t] = MatVec(W[p + "self_attn.v_proj.weight"], nkv * d, H, h, m.QkvBias ? W[p + "self_attn.v_proj.bias"] : null);
                if (olmo2)
                {
                    q[t] = RmsNorm(q[t], W[p + "self_attn.q_norm.weight"], m.Eps, 0);
                    k[t] = RmsNorm(k[t], W[p + "self_attn.k_norm.weight"], m.Eps, 0);
                }
                if (m.QkNorm)
                {
                    // qwen3: every head of q (and of k) is RMS-normalized over its head_dim by a shared weight, before RoPE.
                    for (int head = 0; head < nh; head++) NormHead(q[t], head, d, W[p + "self_attn.q_norm.weight"], m.Eps, normOffset);
                    for (int head = 0; head < nkv; head++) NormHead(k[t], head, d, W[p + "self_attn.k_norm.weight"], m.Eps, normOffset);
                }
                if (!m.UsesRope(l)) continue; // smollm3's NoPE layers
                RotateHalf(q[t], nh, d, m.RotaryDim, t, invFreq, magnitude, interleaved: glm4);
                RotateHalf(k[t], nkv, d, m.RotaryDim, t, invFreq, magnitude, interleaved: glm4);
            }
            int? window = m.WindowOf(l);
            for (int t = 0; t < T; t++)
            {
                // A window of W: position t sees positions t-W+1 .. t.
                int from = window is int w ? Math.Max(0, t - w + 1) : 0;
                var attn = new double[nh * d];
                for (int head = 0; head < nh; head++)
                {
                    int kvh = head / group;
                    var scores = new double[t + 1];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s < from; s++) scores[s] = double.NegativeInfinity;
                    for (int s = from; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < d; i++) dot += q[t][head * d + i] * k[s][kvh * d + i];
                        scores[s] = granite ? dot * m.AttentionMultiplier : dot / Math.Sqrt(m.GemmaOutputNorms ? m.QueryPreAttnScalar : d); // Gemma 1: head_dim
                        if (m.AttnSoftcap is double cap) scores[s] = cap * Math.Tanh(scores[s] / cap); // gemma2
                        max = Math.Max(max, scores[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                    for (int s = 0; s <= t; s++)
                        for (int i = 0; i < d; i++) attn[head * d + i] += scores[s] / sum * v[s][kvh * d + i];
                }
                var o = MatVec(W[p + "self_attn.o_proj.weight"], H, nh * d, attn, m.OBias ? W[p + "self_attn.o_proj.bias"] : null);
                if (m.GemmaOutputNorms || olmo2) o = RmsNorm(o, W[p + "post_attention_layernorm.weight"], m.Eps, normOffset); // a norm of the output
                if (glm4) o = RmsNorm(o, W[p + "post_self_attn_layernorm.weight"], m.Eps, 0);
                for (int i = 0; i < H; i++) x[t][i] += residual * o[i];

                var h2 = olmo2 ? x[t] : RmsNorm(x[t], W[p + (m.GemmaOutputNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")], m.Eps, normOffset);
                if (m.IsSparse(l))
                {
                    // Router softmax over all experts, the top k, their probabilities (renormalized) as weights.
                    var probs = MatVec(W[m.ExpertNames(l, 0).Router], m.Experts, H, h2, null);
                    double top = probs.Max(), total = 0;
                    for (int e = 0; e < probs.Length; e++) total += probs[e] = Math.Exp(probs[e] - top);
                    for (int e = 0; e < probs.Length; e++) probs[e] /= total;
                    var picks = Enumerable.Range(0, m.Experts).OrderByDescending(e => probs[e]).ThenBy(e => e).Take(m.ExpertsPerToken).ToArray();
                    // granitemoe's gates are a softmax over the top k logits: the same renormalized probabilities.
                    double norm = m.NormTopK || m.ModelType is "mixtral" or "granitemoe" ? picks.Sum(e => probs[e]) : 1;
                    foreach (int e in picks)
                    {
                        var (_, gate, up, downName) = m.ExpertNames(l, e);
                        float[] gateW = W[gate], upW = W[up], downW = W[downName];
                        if (m.ModelType == "granitemoe")
                        {
                            // Expert e's rows of the stacked tensors: gate rows, then up rows, then its down matrix.
                            int I = m.ExpertIntermediate;
                            gateW = W[gate].AsSpan(e * 2 * I * H, I * H).ToArray();
                            upW = W[up].AsSpan((e * 2 * I + I) * H, I * H).ToArray();
                            downW = W[downName].AsSpan(e * H * I, H * I).ToArray();
                        }
                        var eo = Mlp(gateW, upW, downW, m.ExpertIntermediate, H, h2);
                        for (int i = 0; i < H; i++) x[t][i] += residual * probs[e] / norm * eo[i];
                    }
                    if (m.ModelType == "qwen2_moe")
                    {
                        // The shared expert, weighted by σ(shared_expert_gate · h).
                        string s = p + "mlp.shared_expert.";
                        var so = Mlp(W[s + "gate_proj.weight"], W[s + "up_proj.weight"], W[s + "down_proj.weight"], m.SharedIntermediate, H, h2);
                        double g = 1 / (1 + Math.Exp(-MatVec(W[p + "mlp.shared_expert_gate.weight"], 1, H, h2, null)[0]));
                        for (int i = 0; i < H; i++) x[t][i] += g * so[i];
                    }
                    continue;
                }
                var down = Mlp(W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"], W[p + "mlp.down_proj.weight"], m.Intermediate, H, h2, gemma);
                if (m.GemmaOutputNorms || olmo2) down = RmsNorm(down, W[p + "post_feedforward_layernorm.weight"], m.Eps, normOffset);
                if (glm4) down = RmsNorm(down, W[p + "post_mlp_layernorm.weight"], m.Eps, 0);
                for (int i = 0; i < H; i++) x[t][i] += residual * down[i];
            }
        }
        var final = RmsNorm(x[T - 1], W["model.norm.weight"], m.Eps, normOffset);
        var head_ = m.Tied ? W["model.embed_tokens.weight"] : W["lm_head.weight"];
        var logits = MatVec(head_, m.Vocab, H, final, null);
        if (granite) logits = logits.Select(z => z / m.LogitsScaling).ToArray();
        if (m.FinalSoftcap is double finalCap) logits = logits.Select(z => finalCap * Math.Tanh(z / finalCap)).ToArray(); // gemma2
        return logits.Select(z => (float)z).ToArray();
    }

    /// <summary>SwiGLU: down(SiLU(gate·x) · up·x); GeGLU with the tanh GELU when <paramref name="gelu"/>.</summary>
    private static double[] Mlp(float[] gate, float[] up, float[] down, int inner, int hidden, double[] x, bool gelu = false)
    {
        var g = MatVec(gate, inner, hidden, x, null);
        var u = MatVec(up, inner, hidden, x, null);
        for (int i = 0; i < g.Length; i++)
            g[i] = (gelu ? 0.5 * g[i] * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (g[i] + 0.044715 * g[i] * g[i] * g[i]))) : g[i] / (1 + Math.Exp(-g[i]))) * u[i];
        return MatVec(down, hidden, inner, g, null);
    }

    private static double[] InverseFrequencies(SyntheticModel m, double theta, int contextLength, bool unscaled = false)
    {
        int half = m.RotaryDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++)
        {
            double f = 1.0 / Math.Pow(theta, 2.0 * i / m.RotaryDim);
            // LongRoPE: each pair's frequency divided by its own factor, the long set past the pretraining context.
            if (m.LongRope is { } longRope) f /= (contextLength > longRope.Original ? longRope.Long : longRope.Short)[i];
            if (unscaled) { inv[i] = f; continue; } // gemma3's and olmo3's windowed layers: no scaling
            if (m.Llama3 is { } s)
            {
                double wavelen = 2 * Math.PI / f;
                double lowWavelen = s.Original / s.Low, highWavelen = s.Original / s.High;
                if (wavelen < highWavelen) { }
                else if (wavelen > lowWavelen) f /= s.Factor;
                else
                {
                    double smooth = (s.Original / wavelen - s.Low) / (s.High - s.Low);
                    f = (1 - smooth) * f / s.Factor + smooth * f;
                }
            }
            if (m.LinearRope is double linear) f /= linear;
            if (m.Yarn is { } y)
            {
                // YaRN (arXiv 2309.00071): pairs that turn more than 32 times over the original context keep their
                // frequency, those that turn less than once are divided by the factor, a ramp between (ends rounded out).
                double Dim(double turns) => m.HeadDim * Math.Log(y.Original / (turns * 2 * Math.PI)) / (2 * Math.Log(m.Theta));
                double lo = Math.Max(Math.Floor(Dim(32)), 0), hi = Math.Min(Math.Ceiling(Dim(1)), m.HeadDim - 1);
                double interpolated = Math.Clamp((i - lo) / (hi == lo ? 0.001 : hi - lo), 0, 1);
                f = f * (1 - interpolated) + f / y.Factor * interpolated;
            }
            inv[i] = f;
        }
        return inv;
    }

    /// <summary>YaRN multiplies cos and sin by 0.1·ln(factor) + 1 (so q·k by its square), LongRoPE by
    /// √(1 + ln(max / original) / ln(original)); 1 otherwise.</summary>
    private static double RopeMagnitude(SyntheticModel m) =>
        m.Yarn is { } y ? 0.1 * Math.Log(y.Factor) + 1
        : m.LongRope is { } l ? Math.Sqrt(1 + Math.Log((double)m.MaxPos / l.Original) / Math.Log(l.Original))
        : 1;

    /// <summary>Rotate-half RoPE over each head's first <paramref name="rotary"/> dimensions; the rest pass through unscaled.</summary>
    /// <summary>Pairs (i, i + R/2) turn by angle i, or with <paramref name="interleaved"/> (GLM's rotary) pairs (2i, 2i + 1).</summary>
    private static void RotateHalf(double[] vec, int heads, int d, int rotary, int position, double[] invFreq, double magnitude, bool interleaved = false)
    {
        int half = rotary / 2;
        for (int head = 0; head < heads; head++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = position * invFreq[i];
                int first = head * d + (interleaved ? 2 * i : i), second = head * d + (interleaved ? 2 * i + 1 : i + half);
                double a = vec[first], b = vec[second];
                vec[first] = magnitude * (a * Math.Cos(angle) - b * Math.Sin(angle));
                vec[second] = magnitude * (b * Math.Cos(angle) + a * Math.Sin(angle));
            }
        }
    }

    private static void NormHead(double[] vec, int head, int d, float[] w, double eps, double offset)
    {
        var normed = RmsNorm(vec[(head * d)..((head + 1) * d)], w, eps, offset);
        normed.CopyTo(vec, head * d);
    }

    private static double[] RmsNorm(double[] x, float[] w, double eps, double offset)
    {
        double ss = 0;
        foreach (var z in x) ss += z * z;
        double inv = 1 / Math.Sqrt(ss / x.Length + eps);
        return x.Select((z, i) => z * inv * (offset + w[i])).ToArray();
    }

    /// <summary>y = W x (+ b), W row-major [rows, cols].</summary>
    private static double[] MatVec(float[] w, int rows, int cols, double[] x, float[]? bias)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double acc = bias is null ? 0 : bias[r];
            for (int c = 0; c < cols; c++) acc += w[r * cols + c] * x[c];
            y[r] = acc;
        }
        return y;
    }
}
