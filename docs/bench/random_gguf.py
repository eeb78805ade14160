#!/usr/bin/env python3
"""Random-weight GGUF files written the way llama.cpp's converter writes them, for checking ActorRing against
llama.cpp on the same file (docs/bench/llamacpp_greedy.cpp runs it through llama.cpp).

    python3 docs/bench/random_gguf.py gemma3 OUT.gguf
    python3 docs/bench/random_gguf.py gemma2 OUT.gguf
    python3 docs/bench/random_gguf.py gemma OUT.gguf
    python3 docs/bench/random_gguf.py granite OUT.gguf
    python3 docs/bench/random_gguf.py granitemoe OUT.gguf
    python3 docs/bench/random_gguf.py smollm3 OUT.gguf
    python3 docs/bench/random_gguf.py olmo2 OUT.gguf
    python3 docs/bench/random_gguf.py olmo3 OUT.gguf
    python3 docs/bench/random_gguf.py olmo3-yarn OUT.gguf
    python3 docs/bench/random_gguf.py qwen2moe OUT.gguf
    python3 docs/bench/random_gguf.py glm4 OUT.gguf
    python3 docs/bench/random_gguf.py phi3 OUT.gguf
    python3 docs/bench/random_gguf.py phi3-longrope OUT.gguf [ORIGINAL_CONTEXT]
    python3 docs/bench/random_gguf.py llama512 OUT.gguf

gemma3: Gemma 3 1B's layout at a small size: hidden 256, 6 layers (five windowed of six, window 8), 4 heads of 64 with one
KV head, GeGLU MLP of 512, vocabulary 1024, tied embeddings, per-head q/k norms, norms after the attention and the
MLP; the global layer's RoPE on base 1e6 with linear scaling 8 (the 4B+ models' rope_scaling). As the converter
does, every norm weight is stored with Gemma3RMSNorm's 1 added (random in 0.5..1.5 here, so a reader that adds
another 1 is caught). Vocabulary: SentencePiece-style, <pad> <eos> <bos> <unk> first, as Gemma's.

gemma2: Gemma 2 2B's layout at the same small size: no q/k norms, the even layers windowed (window 8, llama.cpp's
pattern for gemma2), one RoPE base (10000), 4 heads of 64 with 2 KV heads, and both soft-caps, set low enough to
bite on these weights (5 on the attention scores, 3 on the logits; Gemma 2's own are 50 and 30). Norms stored with
the 1 added, as the converter's Gemma2Model does.

gemma: Gemma 1 2B's layout at the same small size: llama's layer (attn_norm, ffn_norm; no q/k norms, no norms after
the attention or the MLP), one KV head (multi-query), GeGLU, no windows or soft-caps, norms stored with the 1 added
(the converter's GemmaModel), attention scaled by the head size.

granite: Granite 3.x 2B's layout at a small size: llama's tensors (q/k rows in llama.cpp's interleaved order), hidden
256, 4 layers, 4 heads of 64 with 2 KV heads, SwiGLU of 512, tied embeddings, and the four scalars of the 2B
(embedding_scale 12, residual_scale 0.22, attention.scale 1/64) except logit_scale, 2 here (8 in the 2B) so that
the logits' gaps stay well above float rounding.

granitemoe: the granite layout (the 2B's scalars, logit_scale 2) with experts in place of the MLP: 4 experts of 512
a layer, 2 per token, stacked in ffn_gate_exps/ffn_up_exps/ffn_down_exps (the converter splits Hugging Face's
input_linear into gate and up), router ffn_gate_inp.

smollm3: the granite layout without the scalars, as SmolLM3 (llama.cpp takes every fourth layer, here layer 3, to
have no RoPE).

olmo2: OLMo 2's layout at the same size (4 KV heads of 64, 4 layers, untied head): no attn_norm or ffn_norm, the
norms post_attention_norm and post_ffw_norm on the attention's and the MLP's outputs, and attn_q_norm/attn_k_norm
over the whole q and k projections (256 wide each), all in 0.5..1.5; rotate-half RoPE (no q/k permutation).

olmo3: the olmo2 file with attention.sliding_window 8, as llama.cpp's converter writes OLMo 3: llama.cpp then windows
layers 0-2 and leaves layer 3 global.

olmo3-yarn: the olmo3 file with OLMo 3's YaRN at a small size (factor 8 over 64 original positions, as the converter
writes rope_scaling: type, factor, original context); llama.cpp applies it to the global layer only.

qwen2moe: Qwen1.5-MoE's layout at the same size: q/k/v biases, 4 layers, each with 8 experts of 128 (2 per token,
stacked in ffn_*_exps, router ffn_gate_inp) and a shared expert of 256 (ffn_*_shexp) weighted by sigmoid of its gate
vector ffn_gate_inp_shexp; 4 KV heads, untied head.

glm4: GLM-4-0414's layout at the same size: q/k/v biases, RoPE over the first half of each head (rope.dimension_count
32 of 64) in GLM's interleaved pairs (the converter keeps Hugging Face's row order), four norms a layer
(attn_norm, post_attention_norm, ffn_norm, post_ffw_norm), gate and up fused in ffn_up, 2 KV heads, untied head.

phi3: Phi-3-mini's layout at a small size: hidden 256, 4 layers, 8 heads of 32 with 4 KV heads, q/k/v fused in
attn_qkv and gate/up fused in ffn_up (gate rows first), untied head, norms in 0.5..1.5, window 2047 (as
Phi-3-mini-4k's; llama.cpp ignores Phi windows for now, so prompts stay shorter), a llama-style vocabulary.

phi3-longrope: Phi-4-mini's RoPE on the phi3 layout with heads of 64: partial_rotary_factor 0.75 (rope.dimension_count
48, the last 16 dimensions of each head not turned) and longrope, 24 short and 24 long factors as the F32 tensors
rope_factors_short/long, context_length 4096 over ORIGINAL_CONTEXT (default 64) original positions, and the
attention factor the converter computes, sqrt(1 + ln(4096 / original) / ln(original)). llama.cpp picks the long
factors when its context (padded to 256) exceeds the original: ORIGINAL_CONTEXT 64 checks the long ones, 512 the short.

llama512: a plain llama file twice as wide (hidden 512, 8 heads of 64 with 2 KV heads, SwiGLU of 1024, 4 layers,
tied embeddings), so that every row-parallel share at two ranks is whole 256-value K-quant blocks: the input for
llama.cpp's own Q4_K_M quantizer (docs/bench/llamacpp_quantize.cpp).
"""
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moe_gguf import ALIGN, GGUF_BOOL, GGUF_F32, GGUF_I32, GGUF_STR, GGUF_U32, gstr, kv, kv_arr, spm_vocab  # noqa: E402

D, L, H, KV, HD, FF, V, C, WINDOW = 256, 6, 4, 1, 64, 512, 1024, 512, 8


def gemma_vocab(n):
    toks, scores, types = ["<pad>", "<eos>", "<bos>", "<unk>"], [0.0] * 4, [3, 3, 3, 2]
    for b in range(256):
        toks.append("<0x%02X>" % b); scores.append(0.0); types.append(6)
    toks.append("\u2581"); scores.append(-1.0); types.append(1)
    for c in range(0x21, 0x7F):
        toks.append(chr(c)); scores.append(-2.0); types.append(1)
    i = 0
    while len(toks) < n:
        toks.append("\u2581w%04d" % i); scores.append(-10.0 - i * 1e-4); types.append(1)
        i += 1
    return toks, scores, types


def shape_kvs(a, layers, kv_heads, eps):
    """The hyperparameters every small file here shares (hidden D, feed-forward FF, H heads of HD, context C)."""
    return [
        kv("general.architecture", GGUF_STR, a), kv("general.name", GGUF_STR, "random-%s-small" % a),
        kv("general.file_type", GGUF_U32, 0), kv("general.alignment", GGUF_U32, ALIGN),
        kv(a + ".context_length", GGUF_U32, C), kv(a + ".embedding_length", GGUF_U32, D),
        kv(a + ".block_count", GGUF_U32, layers), kv(a + ".feed_forward_length", GGUF_U32, FF),
        kv(a + ".attention.head_count", GGUF_U32, H), kv(a + ".attention.head_count_kv", GGUF_U32, kv_heads),
        kv(a + ".attention.key_length", GGUF_U32, HD), kv(a + ".attention.value_length", GGUF_U32, HD),
        kv(a + ".attention.layer_norm_rms_epsilon", GGUF_F32, eps),
    ]


def spm_tokenizer_kvs(vocab, bos, eos, unk, extra=()):
    """A SentencePiece ("llama") vocabulary's keys: its pieces, scores and types, and the special ids."""
    toks, scores, types = vocab
    return [
        kv("tokenizer.ggml.model", GGUF_STR, "llama"), kv("tokenizer.ggml.pre", GGUF_STR, "default"),
        kv_arr("tokenizer.ggml.tokens", GGUF_STR, toks), kv_arr("tokenizer.ggml.scores", GGUF_F32, scores),
        kv_arr("tokenizer.ggml.token_type", GGUF_I32, types),
        kv("tokenizer.ggml.bos_token_id", GGUF_U32, bos), kv("tokenizer.ggml.eos_token_id", GGUF_U32, eos),
        kv("tokenizer.ggml.unknown_token_id", GGUF_U32, unk),
    ] + list(extra)


def llama_tokenizer_kvs():
    """A llama-style vocabulary (spm_vocab): <unk> 0, <s> 1, </s> 2, BOS added."""
    return spm_tokenizer_kvs(spm_vocab(V), 1, 2, 0, [kv("tokenizer.ggml.add_bos_token", GGUF_BOOL, True)])


def gemma_tokenizer_kvs():
    """Gemma's vocabulary as its converter writes it: <bos> 2, <eos> 1, no dummy space prefix."""
    return spm_tokenizer_kvs(gemma_vocab(V), 2, 1, 3, [
        kv("tokenizer.ggml.padding_token_id", GGUF_U32, 0),
        kv("tokenizer.ggml.add_bos_token", GGUF_BOOL, True), kv("tokenizer.ggml.add_eos_token", GGUF_BOOL, False),
        kv("tokenizer.ggml.add_space_prefix", GGUF_BOOL, False),
    ])


def gemma_layer_tensors(kv_heads, qk_norm, output_norms=True):
    """Gemma's layers: llama's projections, q/k norms (Gemma 3 only), and the norms after the attention and the MLP
    (Gemma 2 and 3; not Gemma 1)."""
    tensors = [("token_embd.weight", [D, V])]  # ggml order: ne0 is the row length
    for i in range(L):
        b = "blk.%d." % i
        tensors += [(b + "attn_norm.weight", [D]), (b + "attn_q.weight", [D, H * HD]), (b + "attn_k.weight", [D, kv_heads * HD]),
                    (b + "attn_v.weight", [D, kv_heads * HD])]
        if qk_norm:
            tensors += [(b + "attn_q_norm.weight", [HD]), (b + "attn_k_norm.weight", [HD])]
        tensors += [(b + "attn_output.weight", [H * HD, D])] + ([(b + "post_attention_norm.weight", [D])] if output_norms else [])
        tensors += [(b + "ffn_norm.weight", [D]), (b + "ffn_gate.weight", [D, FF]), (b + "ffn_up.weight", [D, FF]),
                    (b + "ffn_down.weight", [FF, D])] + ([(b + "post_ffw_norm.weight", [D])] if output_norms else [])
    return tensors + [("output_norm.weight", [D])]


def phi3_file(longrope_original=None):
    d, layers, heads, kv_heads, hd, ff = 256, 4, 8, 4, 32, 512
    if longrope_original:
        d, hd = 512, 64
    tensors = [("token_embd.weight", [d, V])]
    for i in range(layers):
        b = "blk.%d." % i
        tensors += [(b + "attn_norm.weight", [d]), (b + "attn_qkv.weight", [d, (heads + 2 * kv_heads) * hd]),
                    (b + "attn_output.weight", [heads * hd, d]), (b + "ffn_norm.weight", [d]),
                    (b + "ffn_up.weight", [d, 2 * ff]), (b + "ffn_down.weight", [ff, d])]
    tensors += [("output_norm.weight", [d]), ("output.weight", [d, V])]
    rotary, context, original = hd, C, C
    if longrope_original:
        rotary, context, original = hd * 3 // 4, 4096, longrope_original
        tensors += [("rope_factors_long.weight", [rotary // 2]), ("rope_factors_short.weight", [rotary // 2])]
    a = "phi3"
    kvs = [
        kv("general.architecture", GGUF_STR, a), kv("general.name", GGUF_STR, "random-small"),
        kv("general.file_type", GGUF_U32, 0), kv("general.alignment", GGUF_U32, ALIGN),
        kv(a + ".context_length", GGUF_U32, context), kv(a + ".rope.scaling.original_context_length", GGUF_U32, original),
        kv(a + ".embedding_length", GGUF_U32, d), kv(a + ".feed_forward_length", GGUF_U32, ff),
        kv(a + ".block_count", GGUF_U32, layers), kv(a + ".attention.head_count", GGUF_U32, heads),
        kv(a + ".attention.head_count_kv", GGUF_U32, kv_heads), kv(a + ".attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
        kv(a + ".rope.dimension_count", GGUF_U32, rotary), kv(a + ".rope.freq_base", GGUF_F32, 10000.0),
        kv(a + ".attention.sliding_window", GGUF_U32, 2047),
    ] + llama_tokenizer_kvs()
    if longrope_original:
        kvs.append(kv(a + ".rope.scaling.attn_factor", GGUF_F32, math.sqrt(1 + math.log(context / original) / math.log(original))))
    return tensors, kvs


def gemma3_file():
    a = "gemma3"
    kvs = shape_kvs(a, L, KV, 1e-6) + [
        kv(a + ".rope.freq_base", GGUF_F32, 1e6), kv(a + ".attention.sliding_window", GGUF_U32, WINDOW),
        kv(a + ".rope.scaling.type", GGUF_STR, "linear"), kv(a + ".rope.scaling.factor", GGUF_F32, 8.0),
    ] + gemma_tokenizer_kvs()
    return gemma_layer_tensors(KV, qk_norm=True), kvs


def gemma2_file():
    a = "gemma2"
    kvs = shape_kvs(a, L, 2, 1e-6) + [
        kv(a + ".attn_logit_softcapping", GGUF_F32, 5.0), kv(a + ".final_logit_softcapping", GGUF_F32, 3.0),
        kv(a + ".attention.sliding_window", GGUF_U32, WINDOW),
    ] + gemma_tokenizer_kvs()
    return gemma_layer_tensors(2, qk_norm=False), kvs


def gemma_file():
    a = "gemma"
    kvs = shape_kvs(a, L, KV, 1e-6) + [kv(a + ".rope.freq_base", GGUF_F32, 10000.0)] + gemma_tokenizer_kvs()
    return gemma_layer_tensors(KV, qk_norm=False, output_norms=False), kvs


def olmo2_file(window=None, yarn=False):
    layers, kv_heads, a = 4, 4, "olmo2"
    tensors = [("token_embd.weight", [D, V])]
    for i in range(layers):
        b = "blk.%d." % i
        tensors += [(b + "attn_q.weight", [D, H * HD]), (b + "attn_k.weight", [D, kv_heads * HD]),
                    (b + "attn_v.weight", [D, kv_heads * HD]), (b + "attn_q_norm.weight", [H * HD]),
                    (b + "attn_k_norm.weight", [kv_heads * HD]), (b + "attn_output.weight", [H * HD, D]),
                    (b + "post_attention_norm.weight", [D]), (b + "ffn_gate.weight", [D, FF]), (b + "ffn_up.weight", [D, FF]),
                    (b + "ffn_down.weight", [FF, D]), (b + "post_ffw_norm.weight", [D])]
    tensors += [("output_norm.weight", [D]), ("output.weight", [D, V])]
    kvs = shape_kvs(a, layers, kv_heads, 1e-6) + [
        kv(a + ".rope.freq_base", GGUF_F32, 500000.0), kv(a + ".rope.dimension_count", GGUF_U32, HD),
    ] + ([kv(a + ".attention.sliding_window", GGUF_U32, window)] if window else []) + ([
        kv(a + ".rope.scaling.type", GGUF_STR, "yarn"), kv(a + ".rope.scaling.factor", GGUF_F32, 8.0),
        kv(a + ".rope.scaling.original_context_length", GGUF_U32, 64),
    ] if yarn else []) + llama_tokenizer_kvs()
    return tensors, kvs


def biased_attention_tensors(b, kv_heads):
    """A layer's norm before the attention, and q/k/v with biases (Qwen's and GLM's), and the output projection."""
    return [(b + "attn_norm.weight", [D]), (b + "attn_q.weight", [D, H * HD]), (b + "attn_q.bias", [H * HD]),
            (b + "attn_k.weight", [D, kv_heads * HD]), (b + "attn_k.bias", [kv_heads * HD]),
            (b + "attn_v.weight", [D, kv_heads * HD]), (b + "attn_v.bias", [kv_heads * HD]),
            (b + "attn_output.weight", [H * HD, D])]


def qwen2moe_file():
    layers, kv_heads, experts, used, ffe, ffs, a = 4, 4, 8, 2, 128, 256, "qwen2moe"
    tensors = [("token_embd.weight", [D, V])]
    for i in range(layers):
        b = "blk.%d." % i
        tensors += biased_attention_tensors(b, kv_heads) + [(b + "ffn_norm.weight", [D]),
                    (b + "ffn_gate_inp.weight", [D, experts]), (b + "ffn_gate_exps.weight", [D, ffe, experts]),
                    (b + "ffn_up_exps.weight", [D, ffe, experts]), (b + "ffn_down_exps.weight", [ffe, D, experts]),
                    (b + "ffn_gate_inp_shexp.weight", [D]), (b + "ffn_gate_shexp.weight", [D, ffs]),
                    (b + "ffn_up_shexp.weight", [D, ffs]), (b + "ffn_down_shexp.weight", [ffs, D])]
    tensors += [("output_norm.weight", [D]), ("output.weight", [D, V])]
    kvs = shape_kvs(a, layers, kv_heads, 1e-6) + [
        kv(a + ".rope.freq_base", GGUF_F32, 1e6), kv(a + ".expert_count", GGUF_U32, experts),
        kv(a + ".expert_used_count", GGUF_U32, used), kv(a + ".expert_feed_forward_length", GGUF_U32, ffe),
        kv(a + ".expert_shared_feed_forward_length", GGUF_U32, ffs),
    ] + llama_tokenizer_kvs()
    return tensors, kvs


def glm4_file():
    layers, kv_heads, a = 4, 2, "glm4"
    tensors = [("token_embd.weight", [D, V])]
    for i in range(layers):
        b = "blk.%d." % i
        tensors += biased_attention_tensors(b, kv_heads) + [(b + "post_attention_norm.weight", [D]),
                    (b + "ffn_norm.weight", [D]), (b + "ffn_up.weight", [D, 2 * FF]), (b + "ffn_down.weight", [FF, D]),
                    (b + "post_ffw_norm.weight", [D])]
    tensors += [("output_norm.weight", [D]), ("output.weight", [D, V])]
    kvs = shape_kvs(a, layers, kv_heads, 1e-5) + [
        kv(a + ".rope.freq_base", GGUF_F32, 10000.0), kv(a + ".rope.dimension_count", GGUF_U32, HD // 2),
    ] + llama_tokenizer_kvs()
    return tensors, kvs


def granite_file(a="granite"):
    layers, kv_heads, experts, used = 4, 2, 4, 2
    tensors = [("token_embd.weight", [D, V])]
    for i in range(layers):
        b = "blk.%d." % i
        tensors += [(b + "attn_norm.weight", [D]), (b + "attn_q.weight", [D, H * HD]), (b + "attn_k.weight", [D, kv_heads * HD]),
                    (b + "attn_v.weight", [D, kv_heads * HD]), (b + "attn_output.weight", [H * HD, D]), (b + "ffn_norm.weight", [D])]
        if a == "granitemoe":
            tensors += [(b + "ffn_gate_inp.weight", [D, experts]), (b + "ffn_gate_exps.weight", [D, FF, experts]),
                        (b + "ffn_up_exps.weight", [D, FF, experts]), (b + "ffn_down_exps.weight", [FF, D, experts])]
        else:
            tensors += [(b + "ffn_gate.weight", [D, FF]), (b + "ffn_up.weight", [D, FF]), (b + "ffn_down.weight", [FF, D])]
    tensors += [("output_norm.weight", [D])]
    kvs = shape_kvs(a, layers, kv_heads, 1e-5) + [
        kv(a + ".rope.freq_base", GGUF_F32, 5e6), kv(a + ".rope.dimension_count", GGUF_U32, HD),
    ] + llama_tokenizer_kvs()
    if a == "granitemoe":
        kvs += [kv(a + ".expert_count", GGUF_U32, experts), kv(a + ".expert_used_count", GGUF_U32, used)]
    if a in ("granite", "granitemoe"):
        kvs += [kv(a + ".embedding_scale", GGUF_F32, 12.0), kv(a + ".residual_scale", GGUF_F32, 0.22),
                kv(a + ".attention.scale", GGUF_F32, 0.015625), kv(a + ".logit_scale", GGUF_F32, 2.0)]
    return tensors, kvs


# longrope factors, one per rotated pair: the short ones near 1, the long ones growing to 40 (as Phi's do).
ROPE_FACTORS = {
    "rope_factors_short.weight": lambda i, n: 1.0 + 0.5 * i / n,
    "rope_factors_long.weight": lambda i, n: 1.0 + 39.0 * (i / n) ** 2,
}


def main(arch, path, original=None):
    global D, H, FF
    if arch == "llama512":
        D, H, FF = 512, 8, 1024
    tensors, kvs = (granite_file("llama") if arch == "llama512" else gemma3_file() if arch == "gemma3" else gemma2_file() if arch == "gemma2" else gemma_file() if arch == "gemma" else olmo2_file(WINDOW) if arch == "olmo3" else olmo2_file(WINDOW, yarn=True) if arch == "olmo3-yarn" else granite_file(arch) if arch in ("granite", "granitemoe", "smollm3") else olmo2_file() if arch == "olmo2" else qwen2moe_file() if arch == "qwen2moe" else glm4_file() if arch == "glm4"
                    else phi3_file(original if arch == "phi3-longrope" else None))
    infos, offset = [], 0
    for name, ne in tensors:
        n = 1
        for d in ne:
            n *= d
        infos.append(gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", 0, offset))
        offset += (n * 4 + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    rnd = random.Random(3)
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        for name, ne in tensors:
            n = 1
            for d in ne:
                n *= d
            if name in ROPE_FACTORS:
                values = [ROPE_FACTORS[name](i, n) for i in range(n)]
            elif len(ne) == 1:
                values = [1.0 + (rnd.random() - 0.5) for _ in range(n)]  # 1 + w, w in +-0.5
            else:
                scale = 0.05 if name == "token_embd.weight" else 1.0 / ne[0] ** 0.5  # rows of unit-ish gain
                values = [(rnd.random() * 2 - 1) * scale * 1.7 for _ in range(n)]
            f.write(struct.pack("<%df" % n, *values))
            f.write(b"\0" * ((-(n * 4)) % ALIGN))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("gemma3", "gemma2", "gemma", "olmo3", "olmo3-yarn", "granite", "granitemoe", "smollm3", "olmo2", "qwen2moe", "glm4", "phi3", "phi3-longrope", "llama512") or (len(sys.argv) == 4 and sys.argv[1] != "phi3-longrope"):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 64)
