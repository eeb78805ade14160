using System.Text;
using ActorRing.Model.Quantization;

namespace ActorRing.Model.Tests.Support;

/// <summary>
/// A small GGUF writer following ggml's docs/gguf.md (version 3): writes a <see cref="SyntheticModel"/> as
/// llama.cpp's converter would, with its tensor names, <c>{arch}.*</c> hyperparameters, and the q/k row
/// permutation llama.cpp applies to llama models, so the loader's reading of real files is tested end to end.
/// </summary>
internal static class GgufWriter
{
    public sealed record Tensor(string Name, long[] Shape, GgmlType Type, byte[] Data);

    /// <summary>The model's tensors in GGUF form; matrices stored as <paramref name="matrixType"/> (F32, F16, Q8_0 or Q4_0).</summary>
    public static List<Tensor> Tensors(SyntheticModel model, GgmlType matrixType)
    {
        var list = new List<Tensor>();
        bool permuted = model.ModelType is "llama" or "mixtral" or "granite" or "granitemoe" or "smollm3";
        foreach (var (hf, values) in model.W.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (hf.Contains(".experts.") || hf.EndsWith(".gate.weight") || hf.Contains(".block_sparse_moe.")) continue; // experts and routers: stacked below
            if (model.ModelType == "phi3" && (hf.Contains("_proj.weight") && !hf.Contains("o_proj") && !hf.Contains("down_proj"))) continue; // fused below
            if (model.ModelType == "glm4" && (hf.Contains("gate_proj") || hf.Contains("up_proj"))) continue; // fused below
            string name = GgufName(hf, model.GemmaOutputNorms || model.ModelType is "olmo2" or "olmo3", model.ModelType == "glm4");
            // Vectors, and qwen2moe's shared expert gate, which the converter writes as one [hidden] vector.
            long[] shape = hf.EndsWith("norm.weight") || hf.EndsWith(".bias") || hf.EndsWith("shared_expert_gate.weight") ? [values.Length] : MatrixShape(model, hf);
            var data = values;
            // llama.cpp's GemmaModel, Gemma2Model and Gemma3Model converters add the RMSNorm's 1 to every norm weight, so its norm multiplies.
            if (model.Gemma && hf.EndsWith("norm.weight")) data = values.Select(v => v + 1f).ToArray();
            // llama.cpp's converter permutes q/k biases exactly as the weight rows (a bias is a one-column matrix).
            if (permuted && (hf.EndsWith("q_proj.weight") || hf.EndsWith("k_proj.weight")))
                data = Permute(values, shape[0], shape[1], model.HeadDim);
            else if (permuted && (hf.EndsWith("q_proj.bias") || hf.EndsWith("k_proj.bias")))
                data = Permute(values, shape[0], 1, model.HeadDim);
            bool matrix = shape.Length == 2 && hf != "model.embed_tokens.weight";
            var type = matrix ? matrixType : GgmlType.F32;
            list.Add(new Tensor(name, shape, type, Encode(data, shape, type)));
        }
        // phi3: llama.cpp's converter copies qkv_proj to attn_qkv and gate_up_proj (gate rows, then up rows) to ffn_up.
        for (int l = 0; l < model.Layers && model.ModelType == "phi3"; l++)
        {
            string p = $"model.layers.{l}.";
            foreach (var (name, parts) in new[]
            {
                ($"blk.{l}.attn_qkv.weight", new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj" }),
                ($"blk.{l}.ffn_up.weight", new[] { "mlp.gate_proj", "mlp.up_proj" }),
            })
            {
                var fused = parts.SelectMany(part => model.W[p + part + ".weight"]).ToArray();
                long[] shape = [parts.Sum(part => MatrixShape(model, p + part + ".weight")[0]), model.Hidden];
                list.Add(new Tensor(name, shape, matrixType, Encode(fused, shape, matrixType)));
            }
        }
        // glm4: its converter copies gate_up_proj (gate rows, then up rows) to ffn_up, and keeps q/k in GLM's order.
        for (int l = 0; l < model.Layers && model.ModelType == "glm4"; l++)
        {
            string p = $"model.layers.{l}.mlp.";
            var fused = model.W[p + "gate_proj.weight"].Concat(model.W[p + "up_proj.weight"]).ToArray();
            long[] shape = [2L * model.Intermediate, model.Hidden];
            list.Add(new Tensor($"blk.{l}.ffn_up.weight", shape, matrixType, Encode(fused, shape, matrixType)));
        }
        // phi3 longrope: the factors as two F32 vectors, one per rotated pair (Phi3MiniModel.generate_extra_tensors).
        if (model.LongRope is { } longRope)
        {
            list.Add(new Tensor("rope_factors_long.weight", [longRope.Long.Length], GgmlType.F32, Encode(longRope.Long, [longRope.Long.Length], GgmlType.F32)));
            list.Add(new Tensor("rope_factors_short.weight", [longRope.Short.Length], GgmlType.F32, Encode(longRope.Short, [longRope.Short.Length], GgmlType.F32)));
        }
        // llama.cpp stacks a layer's experts: ffn_gate_exps [experts, ffn, hidden] (ggml ne = hidden, ffn, experts),
        // and so on; the router ffn_gate_inp is [experts, hidden] in float32.
        for (int l = 0; l < model.Layers && model.IsMoe; l++)
        {
            list.Add(new Tensor($"blk.{l}.ffn_gate_inp.weight", [model.Experts, model.Hidden], GgmlType.F32,
                Encode(model.W[model.ExpertNames(l, 0).Router], [model.Experts, model.Hidden], GgmlType.F32)));
            foreach (var (kind, pick, rows, cols) in new (string, Func<(string, string, string, string), string>, int, int)[]
            {
                ("gate", n => n.Item2, model.ExpertIntermediate, model.Hidden),
                ("up", n => n.Item3, model.ExpertIntermediate, model.Hidden),
                ("down", n => n.Item4, model.Hidden, model.ExpertIntermediate),
            })
            {
                // granitemoe's converter splits each expert's input_linear rows into its gate (first half) and up rows.
                int I = model.ExpertIntermediate, H = model.Hidden;
                var stacked = model.ModelType != "granitemoe" ? Enumerable.Range(0, model.Experts).SelectMany(e => model.W[pick(model.ExpertNames(l, e))]).ToArray()
                    : kind == "down" ? model.W[model.ExpertNames(l, 0).Down]
                    : Enumerable.Range(0, model.Experts).SelectMany(e => model.W[model.ExpertNames(l, e).Gate].Skip((e * 2 * I + (kind == "up" ? I : 0)) * H).Take(I * H)).ToArray();
                long[] shape = [model.Experts, rows, cols];
                list.Add(new Tensor($"blk.{l}.ffn_{kind}_exps.weight", shape, matrixType, Encode(stacked, shape, matrixType)));
            }
        }
        return list;
    }

    private static long[] MatrixShape(SyntheticModel m, string hf)
    {
        int q = m.Heads * m.HeadDim, kv = m.KvHeads * m.HeadDim;
        if (hf.Contains("q_proj")) return [q, m.Hidden];
        if (hf.Contains("k_proj") || hf.Contains("v_proj")) return [kv, m.Hidden];
        if (hf.Contains("o_proj")) return [m.Hidden, q];
        int ffn = hf.Contains("shared_expert.") ? m.SharedIntermediate : m.Intermediate;
        if (hf.Contains("gate_proj") || hf.Contains("up_proj")) return [ffn, m.Hidden];
        if (hf.Contains("down_proj")) return [m.Hidden, ffn];
        return [m.Vocab, m.Hidden]; // embedding, lm_head
    }

    /// <summary>llama.cpp's permute: row h·d + t·(d/2) + i moves to h·d + 2i + t.</summary>
    private static float[] Permute(float[] w, long rows, long cols, int d)
    {
        var to = new float[w.Length];
        for (long r = 0; r < rows; r++)
        {
            long head = r / d, within = r % d, t = within / (d / 2), i = within % (d / 2);
            Array.Copy(w, r * cols, to, (head * d + 2 * i + t) * cols, cols);
        }
        return to;
    }

    private static byte[] Encode(float[] values, long[] shape, GgmlType type)
    {
        if (type == GgmlType.F32) return values.SelectMany(BitConverter.GetBytes).ToArray();
        if (type == GgmlType.F16) return values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray();
        var format = BlockFormat.OfType(type)!;
        long cols = shape[^1], rows = values.Length / cols, rowBytes = format.RowBytes(cols);
        var data = new byte[rows * rowBytes];
        for (long r = 0; r < rows; r++)
            format.QuantizeRow(values.AsSpan((int)(r * cols), (int)cols), data.AsSpan((int)(r * rowBytes), (int)rowBytes));
        return data;
    }

    public static string GgufName(string hf, bool gemma = false, bool glm4 = false)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var parts = hf.Split('.'); // model.layers.N.<module>.<proj>.weight
        string layer = parts[2], kind = parts[^1];
        string module = string.Join('.', parts[3..^1]) switch
        {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => gemma ? "post_attention_norm" : "ffn_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "post_self_attn_layernorm" when glm4 => "post_attention_norm",
            "post_mlp_layernorm" when glm4 => "post_ffw_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            "mlp.shared_expert.gate_proj" => "ffn_gate_shexp",
            "mlp.shared_expert.up_proj" => "ffn_up_shexp",
            "mlp.shared_expert.down_proj" => "ffn_down_shexp",
            "mlp.shared_expert_gate" => "ffn_gate_inp_shexp",
            var other => throw new ArgumentException(other),
        };
        return $"blk.{layer}.{module}.{kind}";
    }

    /// <summary>The hyperparameters llama.cpp writes for this model.</summary>
    public static Dictionary<string, object> Metadata(SyntheticModel m)
    {
        string a = m.ModelType switch { "qwen2" or "qwen3" or "phi3" => m.ModelType, "qwen3_moe" => "qwen3moe", "qwen2_moe" => "qwen2moe", "gemma3_text" => "gemma3", "gemma2" => "gemma2", "gemma" => "gemma", "granite" => "granite", "granitemoe" => "granitemoe", "smollm3" => "smollm3", "olmo2" or "olmo3" => "olmo2", "glm4" => "glm4", _ => "llama" };
        var meta = new Dictionary<string, object>
        {
            ["general.architecture"] = a,
            ["general.name"] = "synthetic",
            [$"{a}.context_length"] = (uint)m.MaxPos,
            [$"{a}.embedding_length"] = (uint)m.Hidden,
            [$"{a}.block_count"] = (uint)m.Layers,
            [$"{a}.feed_forward_length"] = (uint)(m.ModelType is "mixtral" or "granitemoe" ? m.ExpertIntermediate : m.Intermediate),
            [$"{a}.attention.head_count"] = (uint)m.Heads,
            [$"{a}.attention.head_count_kv"] = (uint)m.KvHeads,
            [$"{a}.attention.key_length"] = (uint)m.HeadDim,
            [$"{a}.attention.value_length"] = (uint)m.HeadDim,
            [$"{a}.rope.freq_base"] = (float)m.Theta,
            [$"{a}.attention.layer_norm_rms_epsilon"] = (float)m.Eps,
            [$"{a}.vocab_size"] = (uint)m.Vocab,
        };
        if (a == "phi3")
        {
            // Phi3MiniModel.set_gguf_parameters: the window (0 when none), the rotary dimensions, the original context;
            // with longrope, the attention factor it computes (the factor tensors are in Tensors).
            meta[$"{a}.attention.sliding_window"] = (uint)(m.SlidingWindow ?? 0);
            meta[$"{a}.rope.dimension_count"] = (uint)m.RotaryDim;
            meta[$"{a}.rope.scaling.original_context_length"] = (uint)(m.LongRope?.Original ?? m.MaxPos);
            if (m.LongRope is { } longRope)
            {
                double scale = (double)m.MaxPos / longRope.Original;
                meta[$"{a}.rope.scaling.attn_factor"] = (float)(scale > 1 ? Math.Sqrt(1 + Math.Log(scale) / Math.Log(longRope.Original)) : 1);
            }
        }
        if (a == "gemma3")
        {
            // Gemma3Model.set_gguf_parameters: the window, the global layers' base; no pattern (llama.cpp takes 6).
            meta[$"{a}.attention.sliding_window"] = (uint)(m.SlidingWindow ?? 4096);
            if (m.LinearRope is double factor)
            {
                meta[$"{a}.rope.scaling.type"] = "linear";
                meta[$"{a}.rope.scaling.factor"] = (float)factor;
            }
        }
        if (m.Yarn is { } yarn)
        {
            // ModelBase.set_gguf_parameters: YaRN's type, factor and original context (the config has no betas or
            // attention_factor here, so none are written).
            meta[$"{a}.rope.scaling.type"] = "yarn";
            meta[$"{a}.rope.scaling.factor"] = (float)yarn.Factor;
            meta[$"{a}.rope.scaling.original_context_length"] = (uint)yarn.Original;
        }
        if (a == "glm4") meta[$"{a}.rope.dimension_count"] = (uint)m.RotaryDim; // Glm4Model: head_dim × partial_rotary_factor
        if (a is "granite" or "granitemoe")
        {
            // GraniteModel.set_gguf_parameters: the four µP scalars.
            meta[$"{a}.embedding_scale"] = (float)m.EmbeddingMultiplier;
            meta[$"{a}.residual_scale"] = (float)m.ResidualMultiplier;
            meta[$"{a}.attention.scale"] = (float)m.AttentionMultiplier;
            meta[$"{a}.logit_scale"] = (float)m.LogitsScaling;
        }
        if (a == "gemma2")
        {
            // Gemma2Model.set_gguf_parameters: both soft-caps and the window (llama.cpp windows the even layers).
            if (m.AttnSoftcap is double attnCap) meta[$"{a}.attn_logit_softcapping"] = (float)attnCap;
            if (m.FinalSoftcap is double finalCap) meta[$"{a}.final_logit_softcapping"] = (float)finalCap;
            meta[$"{a}.attention.sliding_window"] = (uint)(m.SlidingWindow ?? 4096);
        }
        // Olmo2Model.set_gguf_parameters writes OLMo 3's window (llama.cpp then windows three layers of four).
        if (m.ModelType == "olmo3") meta[$"{a}.attention.sliding_window"] = (uint)(m.SlidingWindow ?? 4096);
        if (m.IsMoe)
        {
            meta[$"{a}.expert_count"] = (uint)m.Experts;
            meta[$"{a}.expert_used_count"] = (uint)m.ExpertsPerToken;
            if (a is "qwen3moe" or "qwen2moe") meta[$"{a}.expert_feed_forward_length"] = (uint)m.ExpertIntermediate;
            if (a == "qwen2moe") meta[$"{a}.expert_shared_feed_forward_length"] = (uint)m.SharedIntermediate;
        }
        return meta;
    }

    /// <summary>A llama2.c tokenizer.bin (stories260K's tok512.bin) as a GGUF SentencePiece vocabulary: its pieces,
    /// '▁' for the space, and their scores.</summary>
    public static (List<string> Tokens, List<float> Scores) Llama2cVocabulary(string tokenizerBin)
    {
        var bin = File.ReadAllBytes(tokenizerBin);
        var tokens = new List<string>();
        var scores = new List<float>();
        for (int at = 4; at < bin.Length;)
        {
            scores.Add(BitConverter.ToSingle(bin, at));
            int len = BitConverter.ToInt32(bin, at + 4);
            tokens.Add(Encoding.UTF8.GetString(bin, at + 8, len).Replace(' ', '\u2581'));
            at += 8 + len;
        }
        return (tokens, scores);
    }

    public static void Write(string path, Dictionary<string, object> metadata, IReadOnlyList<Tensor> tensors, int alignment = 32)
    {
        using var stream = File.Create(path);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(0x46554747u);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            WriteValue(w, value);
        }
        long offset = 0;
        var offsets = new List<long>();
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var d in t.Shape.Reverse()) w.Write((ulong)d); // ggml order: ne[0] is the row length
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset = (offset + t.Data.Length + alignment - 1) / alignment * alignment;
        }
        Pad(w, alignment);
        long start = stream.Position;
        for (int i = 0; i < tensors.Count; i++)
        {
            while (stream.Position < start + offsets[i]) w.Write((byte)0);
            w.Write(tensors[i].Data);
        }
    }

    private static void Pad(BinaryWriter w, int alignment)
    {
        while (w.BaseStream.Position % alignment != 0) w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, object value)
    {
        switch (value)
        {
            case uint u: w.Write(4u); w.Write(u); break;
            case int i: w.Write(5u); w.Write(i); break;
            case float f: w.Write(6u); w.Write(f); break;
            case bool b: w.Write(7u); w.Write(b ? (byte)1 : (byte)0); break;
            case string s: w.Write(8u); WriteString(w, s); break;
            case string[] strings:
                w.Write(9u); w.Write(8u); w.Write((ulong)strings.Length);
                foreach (var s in strings) WriteString(w, s);
                break;
            case float[] floats:
                w.Write(9u); w.Write(6u); w.Write((ulong)floats.Length);
                foreach (var f in floats) w.Write(f);
                break;
            case int[] ints:
                w.Write(9u); w.Write(5u); w.Write((ulong)ints.Length);
                foreach (var i in ints) w.Write(i);
                break;
            default: throw new ArgumentException($"no GGUF type for {value.GetType()}");
        }
    }
}
