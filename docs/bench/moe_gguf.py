#!/usr/bin/env python3
"""A random-weight mixture-of-experts GGUF for llama.cpp, in the shape of ActorRing's `--preset qwen3-moe-520m`.

Speed only: the weights mean nothing. llama.cpp runs Mixtral-style experts under its `llama` architecture (with
llama.expert_count), so the file is that: hidden 768, 12 layers, 12 heads of 64 with 4 KV heads, 64 experts of
256 of which 8 per token, vocabulary 32000, untied head, all F32 (llama-quantize makes Q8_0 / BF16 from it).
The preset differs only by qwen3's per-head q/k norms, a few thousand multiply-adds a token.

    python3 docs/bench/moe_gguf.py OUT.gguf
    llama-bench -m OUT.gguf -p 0 -n 64 -t 2        # beside: actorring bench decode --preset qwen3-moe-520m --world-size 2

Pure standard library. Tensors are filled from a tiled 8 MiB pool of uniform values in +-0.05 (norms are ones),
so the router's picks vary from token to token as a trained router's do.
"""
import os
import random
import struct
import sys

D, L, H, KV, HD, V, C = 768, 12, 12, 4, 64, 32000, 2048
EXPERTS, USED, FF = 64, 8, 256

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR = 4, 5, 6, 7, 8, 9
ALIGN = 32


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    fmt = {GGUF_U32: "<I", GGUF_I32: "<i", GGUF_F32: "<f", GGUF_BOOL: "<B"}
    return gstr(key) + struct.pack("<I", vtype) + (gstr(value) if vtype == GGUF_STR else struct.pack(fmt[vtype], value))


def kv_arr(key, etype, values):
    head = gstr(key) + struct.pack("<IIQ", GGUF_ARR, etype, len(values))
    if etype == GGUF_STR:
        return head + b"".join(gstr(v) for v in values)
    return head + struct.pack("<%d%s" % (len(values), "f" if etype == GGUF_F32 else "i"), *values)


def spm_vocab(n):
    """<unk> <s> </s>, 256 byte tokens, then plain pieces: enough for llama.cpp's SentencePiece tokenizer."""
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b); scores.append(0.0); types.append(6)
    toks.append("\u2581"); scores.append(-1.0); types.append(1)
    for c in range(0x21, 0x7F):
        toks.append(chr(c)); scores.append(-2.0); types.append(1)
        toks.append("\u2581" + chr(c)); scores.append(-1.5); types.append(1)
    i = 0
    while len(toks) < n:
        toks.append("\u2581w%05d" % i); scores.append(-10.0 - i * 1e-4); types.append(1)
        i += 1
    return toks, scores, types


def main(path):
    tensors = [("token_embd.weight", [D, V])]  # ggml order: ne0 is the row length
    for i in range(L):
        b = "blk.%d." % i
        tensors += [(b + "attn_norm.weight", [D]), (b + "attn_q.weight", [D, H * HD]), (b + "attn_k.weight", [D, KV * HD]),
                    (b + "attn_v.weight", [D, KV * HD]), (b + "attn_output.weight", [H * HD, D]), (b + "ffn_norm.weight", [D]),
                    (b + "ffn_gate_inp.weight", [D, EXPERTS]), (b + "ffn_gate_exps.weight", [D, FF, EXPERTS]),
                    (b + "ffn_up_exps.weight", [D, FF, EXPERTS]), (b + "ffn_down_exps.weight", [FF, D, EXPERTS])]
    tensors += [("output_norm.weight", [D]), ("output.weight", [D, V])]
    toks, scores, types = spm_vocab(V)
    kvs = [
        kv("general.architecture", GGUF_STR, "llama"), kv("general.name", GGUF_STR, "random-qwen3-moe-520m-shape"),
        kv("general.file_type", GGUF_U32, 0), kv("general.alignment", GGUF_U32, ALIGN),
        kv("llama.vocab_size", GGUF_U32, V), kv("llama.context_length", GGUF_U32, C), kv("llama.embedding_length", GGUF_U32, D),
        kv("llama.block_count", GGUF_U32, L), kv("llama.feed_forward_length", GGUF_U32, FF),
        kv("llama.expert_count", GGUF_U32, EXPERTS), kv("llama.expert_used_count", GGUF_U32, USED),
        kv("llama.rope.dimension_count", GGUF_U32, HD), kv("llama.rope.freq_base", GGUF_F32, 10000.0),
        kv("llama.attention.head_count", GGUF_U32, H), kv("llama.attention.head_count_kv", GGUF_U32, KV),
        kv("llama.attention.key_length", GGUF_U32, HD), kv("llama.attention.value_length", GGUF_U32, HD),
        kv("llama.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-5),
        kv("tokenizer.ggml.model", GGUF_STR, "llama"), kv_arr("tokenizer.ggml.tokens", GGUF_STR, toks),
        kv_arr("tokenizer.ggml.scores", GGUF_F32, scores), kv_arr("tokenizer.ggml.token_type", GGUF_I32, types),
        kv("tokenizer.ggml.unknown_token_id", GGUF_U32, 0), kv("tokenizer.ggml.bos_token_id", GGUF_U32, 1),
        kv("tokenizer.ggml.eos_token_id", GGUF_U32, 2), kv("tokenizer.ggml.add_bos_token", GGUF_BOOL, True),
        kv("tokenizer.ggml.add_eos_token", GGUF_BOOL, False),
    ]
    infos, sizes, offset = [], [], 0
    for name, ne in tensors:
        n = 1
        for d in ne:
            n *= d
        infos.append(gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", 0, offset))
        sizes.append(n * 4)
        offset += (n * 4 + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    rnd = random.Random(1)
    pool = struct.pack("<%df" % (1 << 21), *[(rnd.random() * 2 - 1) * 0.05 for _ in range(1 << 21)])
    ones = struct.pack("<f", 1.0) * 8192
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        for k, ((name, ne), nbytes) in enumerate(zip(tensors, sizes)):
            source, start = (ones, 0) if len(ne) == 1 else (pool, (k * 16384) % len(pool))
            while nbytes > 0:
                chunk = source[start:start + nbytes]
                f.write(chunk)
                nbytes -= len(chunk)
                start = 0
            f.write(b"\0" * ((-sizes[k]) % ALIGN))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
