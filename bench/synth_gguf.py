#!/usr/bin/env python3
"""Random-weight GGUF files with the exact tensor shapes and types of real checkpoints.

Speed does not depend on the values, so a file with the shapes of Llama-3.1-8B (the Q4_K_M, Q5_K_M, Q6_K,
Q4_0 and Q8_0 mixes as llama-quantize writes them: which tensors get more bits, the output's type) or of
ggml-org's gpt-oss-20b MXFP4 conversion (optionally with its gate and up expert stacks fused into one
`ffn_gate_up_exps`, as newer converters write it) lets two engines be raced at real size without
downloading weights. Quantized blocks are random bytes with sane scales. The vocabulary (tokens, merges) is
taken from a template GGUF and padded with unused tokens.

llama3-8b-f16 and llama3.2-3b-f16 are F16 files as convert_hf_to_gguf.py writes them (norms in F32, normal
random weights of scale 0.02): inputs for quantizers.

Qwen3-8B and Qwen3-30B-A3B (qwen3moe: 128 experts, 8 used) come in llama-quantize's Q4_K_M mix: attn_v and
ffn_down (the expert stacks too) of the use_more_bits layers in Q6_K, the output in Q6_K, the router and the
q/k norms in F32.

usage: synth_gguf.py TEMPLATE.gguf OUT.gguf KIND [SEED]
  KIND: llama3-8b-{q4_k_m,q5_k_m,q6_k,q4_0,q8_0,f16}, llama3.2-3b-f16, gptoss-20b-mxfp4, gptoss-20b-mxfp4-fused,
        qwen3-8b-q4_k_m, qwen3-30b-a3b-q4_k_m
SEED (default 1234) seeds the random weights: two seeds give two independent models of the same shapes.
Needs the `gguf` (0.19.0) and numpy packages.
"""
import sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

rng = np.random.default_rng(1234)
BLOCK = {T.Q8_0: (32, 34), T.Q4_0: (32, 18), T.Q4_K: (256, 144), T.Q5_K: (256, 176), T.Q6_K: (256, 210),
         T.MXFP4: (32, 17), T.F32: (1, 4), T.F16: (1, 2)}
F16_SCALE = np.float16(0.002).view(np.uint16)


def blocks(dtype, n):
    """n values of dtype as random bytes with sane scale fields."""
    per, size = BLOCK[dtype]
    if dtype == T.F32:
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).view(np.uint8)
    if dtype == T.F16:
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float16).view(np.uint8)
    nb = n // per
    b = np.frombuffer(rng.bytes(nb * size), dtype=np.uint8).copy().reshape(nb, size)
    d = np.full(nb, F16_SCALE, dtype=np.uint16).view(np.uint8).reshape(nb, 2)
    if dtype in (T.Q8_0, T.Q4_0):
        b[:, 0:2] = d
    elif dtype in (T.Q4_K, T.Q5_K):
        b[:, 0:2] = d
        b[:, 2:4] = d  # dmin
    elif dtype == T.Q6_K:
        b[:, 208:210] = d
        b[:, 192:208] = rng.integers(1, 32, (nb, 16), dtype=np.int8).view(np.uint8)
    elif dtype == T.MXFP4:
        b[:, 0] = rng.integers(118, 122, nb, dtype=np.uint8)
    return b.reshape(-1)


def llama3_8b(variant):
    L, E, F, H, KV, V = 32, 4096, 14336, 32, 8, 128256
    kv = {"llama.context_length": (8192, "u32"), "llama.embedding_length": (E, "u32"), "llama.block_count": (L, "u32"),
          "llama.feed_forward_length": (F, "u32"), "llama.rope.dimension_count": (128, "u32"),
          "llama.attention.head_count": (H, "u32"), "llama.attention.head_count_kv": (KV, "u32"),
          "llama.attention.layer_norm_rms_epsilon": (1e-5, "f32"), "llama.rope.freq_base": (500000.0, "f32"),
          "llama.vocab_size": (V, "u32")}
    main = {"q4_k_m": T.Q4_K, "q5_k_m": T.Q5_K, "q6_k": T.Q6_K, "q4_0": T.Q4_0, "q8_0": T.Q8_0}[variant]
    ftype = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "q4_0": 2, "q8_0": 7}[variant]
    # llama-quantize: the output in Q6_K unless the mix is Q8_0
    output = T.Q8_0 if variant == "q8_0" else T.Q6_K

    t = [("token_embd.weight", [E, V], main)]
    for i in range(L):
        big = T.Q6_K if variant in ("q4_k_m", "q5_k_m") and more_bits(i, L) else main
        t += [(f"blk.{i}.attn_norm.weight", [E], T.F32), (f"blk.{i}.attn_q.weight", [E, H * 128], main),
              (f"blk.{i}.attn_k.weight", [E, KV * 128], main), (f"blk.{i}.attn_v.weight", [E, KV * 128], big),
              (f"blk.{i}.attn_output.weight", [H * 128, E], main), (f"blk.{i}.ffn_norm.weight", [E], T.F32),
              (f"blk.{i}.ffn_gate.weight", [E, F], main), (f"blk.{i}.ffn_up.weight", [E, F], main),
              (f"blk.{i}.ffn_down.weight", [F, E], big)]
    t += [("output_norm.weight", [E], T.F32), ("output.weight", [E, V], output)]
    return "llama", kv, t, V, ftype, "smollm"


def llama3_f16(size):
    """Llama-3.1-8B or Llama-3.2-3B (tied embeddings) in F16, as convert_hf_to_gguf.py writes it: an input
    for quantizers."""
    if size == "8b":
        L, E, F, H, KV, V, tied = 32, 4096, 14336, 32, 8, 128256, False
    else:
        L, E, F, H, KV, V, tied = 28, 3072, 8192, 24, 8, 128256, True
    kv = {"llama.context_length": (8192, "u32"), "llama.embedding_length": (E, "u32"), "llama.block_count": (L, "u32"),
          "llama.feed_forward_length": (F, "u32"), "llama.rope.dimension_count": (128, "u32"),
          "llama.attention.head_count": (H, "u32"), "llama.attention.head_count_kv": (KV, "u32"),
          "llama.attention.layer_norm_rms_epsilon": (1e-5, "f32"), "llama.rope.freq_base": (500000.0, "f32"),
          "llama.vocab_size": (V, "u32")}
    t = [("token_embd.weight", [E, V], T.F16)]
    for i in range(L):
        t += [(f"blk.{i}.attn_norm.weight", [E], T.F32), (f"blk.{i}.attn_q.weight", [E, H * 128], T.F16),
              (f"blk.{i}.attn_k.weight", [E, KV * 128], T.F16), (f"blk.{i}.attn_v.weight", [E, KV * 128], T.F16),
              (f"blk.{i}.attn_output.weight", [H * 128, E], T.F16), (f"blk.{i}.ffn_norm.weight", [E], T.F32),
              (f"blk.{i}.ffn_gate.weight", [E, F], T.F16), (f"blk.{i}.ffn_up.weight", [E, F], T.F16),
              (f"blk.{i}.ffn_down.weight", [F, E], T.F16)]
    t += [("output_norm.weight", [E], T.F32)]
    if not tied:
        t += [("output.weight", [E, V], T.F16)]
    return "llama", kv, t, V, 1, "smollm"


def more_bits(i, n_layer):
    """llama-quantize's use_more_bits: the layers whose attn_v and ffn_down get Q6_K in the _M mixes."""
    return i < n_layer // 8 or i >= 7 * n_layer // 8 or (i - n_layer // 8) % 3 == 2


def qwen3(moe):
    """Qwen3-8B (dense) or Qwen3-30B-A3B (moe) in llama-quantize's Q4_K_M mix."""
    arch = "qwen3moe" if moe else "qwen3"
    if moe:
        L, E, F, H, KV, D, X, K, FX = 48, 2048, 6144, 32, 4, 128, 128, 8, 768
    else:
        L, E, F, H, KV, D = 36, 4096, 12288, 32, 8, 128
    V = 151936
    kv = {f"{arch}.context_length": (40960, "u32"), f"{arch}.embedding_length": (E, "u32"),
          f"{arch}.block_count": (L, "u32"), f"{arch}.feed_forward_length": (F, "u32"),
          f"{arch}.attention.head_count": (H, "u32"), f"{arch}.attention.head_count_kv": (KV, "u32"),
          f"{arch}.attention.key_length": (D, "u32"), f"{arch}.attention.value_length": (D, "u32"),
          f"{arch}.rope.freq_base": (1000000.0, "f32"), f"{arch}.attention.layer_norm_rms_epsilon": (1e-6, "f32")}
    if moe:
        kv.update({f"{arch}.expert_count": (X, "u32"), f"{arch}.expert_used_count": (K, "u32"),
                   f"{arch}.expert_feed_forward_length": (FX, "u32")})
    t = [("token_embd.weight", [E, V], T.Q4_K)]
    for i in range(L):
        p = f"blk.{i}."
        big = T.Q6_K if more_bits(i, L) else T.Q4_K
        t += [(p + "attn_norm.weight", [E], T.F32), (p + "attn_q.weight", [E, H * D], T.Q4_K),
              (p + "attn_k.weight", [E, KV * D], T.Q4_K), (p + "attn_v.weight", [E, KV * D], big),
              (p + "attn_output.weight", [H * D, E], T.Q4_K), (p + "attn_q_norm.weight", [D], T.F32),
              (p + "attn_k_norm.weight", [D], T.F32), (p + "ffn_norm.weight", [E], T.F32)]
        if moe:
            t += [(p + "ffn_gate_inp.weight", [E, X], T.F32), (p + "ffn_gate_exps.weight", [E, FX, X], T.Q4_K),
                  (p + "ffn_up_exps.weight", [E, FX, X], T.Q4_K), (p + "ffn_down_exps.weight", [FX, E, X], big)]
        else:
            t += [(p + "ffn_gate.weight", [E, F], T.Q4_K), (p + "ffn_up.weight", [E, F], T.Q4_K),
                  (p + "ffn_down.weight", [F, E], big)]
    t += [("output_norm.weight", [E], T.F32), ("output.weight", [E, V], T.Q6_K)]
    return arch, kv, t, V, 15, "qwen2"


def gptoss_20b(fused):
    L, E, H, KV, D, X, V = 24, 2880, 64, 8, 64, 32, 201088
    kv = {"gpt-oss.context_length": (131072, "u32"), "gpt-oss.embedding_length": (E, "u32"),
          "gpt-oss.block_count": (L, "u32"), "gpt-oss.feed_forward_length": (E, "u32"),
          "gpt-oss.attention.head_count": (H, "u32"), "gpt-oss.attention.head_count_kv": (KV, "u32"),
          "gpt-oss.rope.freq_base": (150000.0, "f32"), "gpt-oss.attention.layer_norm_rms_epsilon": (1e-5, "f32"),
          "gpt-oss.expert_count": (X, "u32"), "gpt-oss.expert_used_count": (4, "u32"),
          "gpt-oss.attention.key_length": (D, "u32"), "gpt-oss.attention.value_length": (D, "u32"),
          "gpt-oss.attention.sliding_window": (128, "u32"), "gpt-oss.expert_feed_forward_length": (E, "u32"),
          "gpt-oss.rope.scaling.type": ("yarn", "str"), "gpt-oss.rope.scaling.factor": (32.0, "f32"),
          "gpt-oss.rope.scaling.original_context_length": (4096, "u32"),
          "gpt-oss.rope.scaling.yarn_beta_fast": (32.0, "f32"), "gpt-oss.rope.scaling.yarn_beta_slow": (1.0, "f32")}
    t = [("token_embd.weight", [E, V], T.Q8_0)]
    for i in range(L):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", [E], T.F32), (p + "attn_q.weight", [E, H * D], T.Q8_0),
              (p + "attn_q.bias", [H * D], T.F32), (p + "attn_k.weight", [E, KV * D], T.Q8_0),
              (p + "attn_k.bias", [KV * D], T.F32), (p + "attn_v.weight", [E, KV * D], T.Q8_0),
              (p + "attn_v.bias", [KV * D], T.F32), (p + "attn_output.weight", [H * D, E], T.Q8_0),
              (p + "attn_output.bias", [E], T.F32), (p + "attn_sinks.weight", [H], T.F32),
              (p + "post_attention_norm.weight", [E], T.F32), (p + "ffn_gate_inp.weight", [E, X], T.F32),
              (p + "ffn_gate_inp.bias", [X], T.F32)]
        if fused:
            t += [(p + "ffn_gate_up_exps.weight", [E, 2 * E, X], T.MXFP4),
                  (p + "ffn_gate_up_exps.bias", [2 * E, X], T.F32)]
        else:
            t += [(p + "ffn_gate_exps.weight", [E, E, X], T.MXFP4), (p + "ffn_gate_exps.bias", [E, X], T.F32),
                  (p + "ffn_up_exps.weight", [E, E, X], T.MXFP4), (p + "ffn_up_exps.bias", [E, X], T.F32)]
        t += [(p + "ffn_down_exps.weight", [E, E, X], T.MXFP4), (p + "ffn_down_exps.bias", [E, X], T.F32)]
    t += [("output_norm.weight", [E], T.F32), ("output.weight", [E, V], T.Q8_0)]
    return "gpt-oss", kv, t, V, 38, "gpt-4o"


def main():
    global rng
    template, out, kind = sys.argv[1:4]
    if len(sys.argv) > 4:
        rng = np.random.default_rng(int(sys.argv[4]))
    if kind in ("llama3-8b-f16", "llama3.2-3b-f16"):
        arch, kv, tensors, vocab, ftype, pre = llama3_f16(kind.split("-")[1])
    elif kind.startswith("llama3-8b-"):
        arch, kv, tensors, vocab, ftype, pre = llama3_8b(kind[len("llama3-8b-"):])
    elif kind in ("qwen3-8b-q4_k_m", "qwen3-30b-a3b-q4_k_m"):
        arch, kv, tensors, vocab, ftype, pre = qwen3(kind.startswith("qwen3-30b"))
    elif kind in ("gptoss-20b-mxfp4", "gptoss-20b-mxfp4-fused"):
        arch, kv, tensors, vocab, ftype, pre = gptoss_20b(kind.endswith("-fused"))
    else:
        sys.exit(f"unknown kind {kind}")
    r = gguf.GGUFReader(template)
    toks = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode() for i in r.fields["tokenizer.ggml.tokens"].data]
    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    merges = [bytes(r.fields["tokenizer.ggml.merges"].parts[i]).decode() for i in r.fields["tokenizer.ggml.merges"].data]
    n0 = len(toks)
    toks += [f"<|unused_{i}|>" for i in range(vocab - n0)]
    types += [4] * (vocab - n0)  # USER_DEFINED
    w = gguf.GGUFWriter(out, arch)
    w.add_name(f"synthetic {kind}")
    for k, (v, ty) in kv.items():
        {"u32": w.add_uint32, "f32": w.add_float32, "str": w.add_string}[ty](k, v)
    w.add_file_type(ftype)
    w.add_quantization_version(2)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, shape, dtype in tensors:
        n = int(np.prod(shape))
        per, size = BLOCK[dtype]
        nbytes = n // per * size
        byte_shape = [*shape[:0:-1], shape[0] // per * size]  # numpy order, innermost row in bytes
        w.add_tensor_info(name, byte_shape, np.uint8, nbytes, raw_dtype=dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for name, shape, dtype in tensors:
        n = int(np.prod(shape))
        data = blocks(dtype, n)
        w.write_tensor_data(data)
        total += data.nbytes
    w.close()
    print(f"{out}: {len(tensors)} tensors, {total / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
