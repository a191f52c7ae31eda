#!/usr/bin/env python3
"""Tiny random DeepSeek-V3-architecture checkpoints (multi-head latent attention + DeepSeek MoE)
in the released on-disk layout, their transformers reference outputs, and llama.cpp GGUF copies.

Two variants (`--variant v3|k2|all`, default all), each written into its own folder:
  v3 -> crates/wazn-models/tests/data/deepseek3/
      DeepSeek-V3 scaled down: 3 layers (first_k_dense_replace 1: layer 0 dense SwiGLU MLP,
      layers 1-2 MoE), q through q_a_proj -> q_a_layernorm -> q_b_proj (q_lora_rank 32),
      16 routed experts in 4 groups of 4, topk_group 2, 2 experts per token, 1 shared expert,
      routed_scaling_factor 2.5, YaRN as DeepSeek-V3 (factor 40, original 4096, beta 32/1,
      mscale = mscale_all_dim = 1.0, rope_theta 10000).  NOTE: 16 experts, not 8: with 8 experts
      in 4 groups a group has 2 experts and "group score = sum of the top-2 biased scores" would be
      the sum of the whole group, so an implementation summing all (or the wrong number of)
      group members would pass unnoticed.  With groups of 4 the feature effect
      "group_score_sum_all" below is non-zero.
  k2 -> crates/wazn-models/tests/data/kimi_k2/
      Kimi K2's routing shape: n_group 1, topk_group 1, 16 routed experts, 4 per token, 1 shared
      expert, routed_scaling_factor 2.827, first_k_dense_replace 1; YaRN as Kimi-K2-Instruct
      (factor 32, original 4096, beta_fast = beta_slow = 1, mscale = mscale_all_dim = 1.0,
      rope_theta 50000).  DIFFERENT FROM REAL K2: q_lora_rank is null here (direct
      self_attn.q_proj, the DeepSeek-V2-Lite q path) so that the second q path is exercised;
      real Kimi K2 has q_lora_rank 1536 like DeepSeek-V3.  config.json says
      architectures ["DeepseekV3ForCausalLM"], model_type "deepseek_v3" (the released K2
      config.json names model_type "kimi_k2" with remote code; transformers 5.24 has no
      "kimi_k2" model type, it loads K2 as deepseek_v3).
Both: hidden 64, 4 heads, kv_lora_rank 32, qk_nope_head_dim 16, qk_rope_head_dim 8,
v_head_dim 16 (!= qk head dim 24), intermediate_size 128 (dense layer), moe_intermediate_size 32,
vocab 256 (512 would put hf/ over 700 KB with 16 experts), rms_norm_eps 1e-6, untied lm_head,
no attention bias, no MTP layer (num_nextn_predict_layers 0), scoring_func sigmoid,
topk_method noaux_tc, norm_topk_prob true.

Files per folder:
  hf/config.json, hf/model.safetensors
      The released checkpoints' on-disk layout (deepseek-ai/DeepSeek-V3 minus its FP8
      quantization): bfloat16 weights, mlp.gate.e_score_correction_bias float32, per-expert
      tensors model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj.weight, shared expert
      mlp.shared_experts.{gate,up,down}_proj.weight, router mlp.gate.weight,
      self_attn.{q_a_proj,q_a_layernorm,q_b_proj | q_proj, kv_a_proj_with_mqa, kv_a_layernorm,
      kv_b_proj, o_proj}.weight, input_layernorm / post_attention_layernorm, model.norm,
      model.embed_tokens, lm_head.
  reference.json
      transformers 5.24 outputs for hf/ loaded in float32 (eager attention, eager experts):
      full-vocabulary logits at chosen positions of three prompts (lengths 7, 150, 300), the
      16-token greedy continuation of each, routing of the 7-token prompt's last position,
      feature effects and the model facts below.
  tiny.gguf
      hf/ converted by llama.cpp's own convert_hf_to_gguf.py (--outtype auto: BF16 matrices,
      F32 norms / router / bias), run on a temporary copy of hf/ plus a toy byte-level BPE
      tokenizer (make_gguf()).

transformers 5.24 DeepseekV3 math (what the reference computes; reproduced independently by
numpy_forward() below in float64, both directly and in llama.cpp's absorbed form from the GGUF):
  attention (per layer, x = input_layernorm(h), RMSNorm = w * x / sqrt(mean(x^2) + eps)):
    q = q_b_proj(q_a_layernorm(q_a_proj(x)))   (or q = q_proj(x) when q_lora_rank is null)
    q viewed [T, n_head, 24]; per head q = [q_nope (16) | q_pe (8)].
    c = kv_a_proj_with_mqa(x) [T, 32 + 8] = [latent (first kv_lora_rank=32) | k_pe (last 8)];
    latent = kv_a_layernorm(latent)  (the norm is on the latent only; k_pe is NOT normed);
    k_pe is one head shared by all heads.
    kv = kv_b_proj(latent) viewed [T, n_head, 16 + 16]; per head kv = [k_nope (16) | v (16)].
    RoPE (rope_interleave true): on q_pe and k_pe, element pairs (2i, 2i+1), i = 0..3, are
    rotated by angle pos * inv_freq[i] (x0' = x0 cos - x1 sin, x1' = x1 cos + x0 sin), cos/sin
    multiplied by the YaRN attention_factor (= 1.0 here).  transformers writes the result
    de-interleaved ([x0',x2',x4',x6',x1',x3',x5',x7']) for q_pe AND k_pe, so q.k is the same
    as rotating in place (llama.cpp's GGML_ROPE_TYPE_NORM, adjacent pairs); no weight permute.
    k = [k_nope | k_pe], q = [q_nope | q_pe]; scores = q.k * softmax_scale, causal softmax,
    out = o_proj(concat_heads(softmax @ v)).
    softmax_scale = qk_head_dim^-0.5 * m^2 with qk_head_dim = 16 + 8 = 24 and
    m = 0.1 * mscale_all_dim * ln(factor) + 1 (when rope type != default and mscale_all_dim
    is truthy; factor > 1).
    YaRN inv_freq (rope dim 8 = qk_rope_head_dim, truncate true): low = max(floor(c(beta_fast)),
    0), high = min(ceil(c(beta_slow)), 7), c(r) = 8 ln(orig / (2 pi r)) / (2 ln base);
    ramp_i = clip((i - low) / (high - low), 0, 1) (high += 0.001 if equal);
    inv_freq_i = base^(-2i/8) * (1 - ramp_i) + base^(-2i/8) / factor * ramp_i.
    attention_factor (cos/sin scale) = get_mscale(factor, mscale) / get_mscale(factor,
    mscale_all_dim) when both are set and non-zero, else get_mscale(factor) =
    0.1 ln(factor) + 1.
    The KV cache stores the normed latent and the rotated k_pe (compressed MLA cache).
  MoE (layers >= first_k_dense_replace; x = post_attention_layernorm(h)):
    logits = x @ gate.weight^T (float32); s = sigmoid(logits);
    b = s + e_score_correction_bias (bias used for the SELECTION only);
    group score g = sum of the 2 largest b in each of n_group contiguous groups of
    n_routed/n_group experts; keep the topk_group best groups (others -> -inf);
    choose num_experts_per_tok experts by b among the kept ones;
    weights w = s[chosen] (UNBIASED); if norm_topk_prob: w /= (sum w + 1e-20);
    w *= routed_scaling_factor;  out = sum_k w_k * expert_k(x) + shared_expert(x),
    expert(x) = down(silu(gate(x)) * up(x)), shared expert likewise with intermediate
    moe_intermediate_size * n_shared_experts.  The shared expert output is added unweighted.
  In memory transformers 5 fuses the experts: mlp.experts.gate_up_proj [E, 2I, H] with
  gate_up_proj[e] = cat(experts.e.gate_proj.weight, experts.e.up_proj.weight, dim 0) (first I rows
  gate, then I rows up; NOT interleaved), mlp.experts.down_proj [E, H, I] =
  stack(experts.e.down_proj.weight); e_score_correction_bias is a persistent buffer.

What the converter writes (printed by the script; llama.cpp vendored in llama-cpp-python 0.3.36,
conversion/deepseek.py DeepseekV2Model, registered for DeepseekV3ForCausalLM):
  tensors  token_embd.weight, output_norm.weight, output.weight; per layer N: blk.N.attn_norm,
           blk.N.attn_q_a [H -> q_lora], blk.N.attn_q_a_norm, blk.N.attn_q_b (or blk.N.attn_q),
           blk.N.attn_kv_a_mqa [H -> kv_lora + rope], blk.N.attn_kv_a_norm, blk.N.attn_k_b,
           blk.N.attn_v_b, blk.N.attn_output, blk.N.ffn_norm (= post_attention_layernorm);
           dense layer: blk.N.ffn_{gate,up,down}; MoE layers: blk.N.ffn_gate_inp (router),
           blk.N.exp_probs_b.bias (= e_score_correction_bias), blk.N.ffn_{gate,up,down}_exps
           (experts stacked on the slowest axis: numpy [E, out, in]), blk.N.ffn_{gate,up,down}_shexp.
           kv_b_proj [n_head * (16 + 16), 32] is split per head:
             kv = kv_b_proj.view(n_head, nope + v, kv_lora)
             attn_k_b = kv[:, :nope, :].transpose(1, 2)  -> numpy [n_head, kv_lora, nope],
                                                           ggml ne [nope, kv_lora, n_head]
             attn_v_b = kv[:, nope:, :]                   -> numpy [n_head, v, kv_lora],
                                                           ggml ne [kv_lora, v, n_head]
           No kv_b tensor is written (llama.cpp then runs MLA in absorbed form).  Types with
           --outtype auto: matrices (2-D and the 3-D k_b / v_b / *_exps) BF16; norms,
           ffn_gate_inp and exp_probs_b F32.
  metadata general.architecture = "deepseek2"; deepseek2.{block_count, context_length,
           embedding_length, feed_forward_length (= intermediate_size, the dense layer),
           attention.head_count, attention.head_count_kv = 1 (MQA view of MLA),
           rope.freq_base, rope.scaling.{type = yarn, factor, original_context_length,
           yarn_beta_fast, yarn_beta_slow, yarn_log_multiplier = 0.1 * mscale_all_dim},
           attention.layer_norm_rms_epsilon, expert_count, expert_used_count,
           expert_group_count, expert_group_used_count, expert_gating_func = 2 (sigmoid),
           leading_dense_block_count, vocab_size, attention.q_lora_rank (absent when null),
           attention.kv_lora_rank, attention.key_length = kv_lora + rope (40),
           attention.value_length = kv_lora (32), attention.key_length_mla = nope + rope (24),
           attention.value_length_mla = v (16), expert_feed_forward_length, expert_shared_count,
           expert_weights_scale, expert_weights_norm, rope.dimension_count = qk_rope_head_dim};
           general.file_type; tokenizer.ggml.* (pre "deepseek-v3" / "kimi-k2", set by the shim).
           llama.cpp's deepseek2 loader REQUIRES attention.q_lora_rank unless the model has
           26/27 layers (or 48 layers with vocab 128256), so the k2 tiny.gguf (no q_lora_rank)
           is not loadable by that llama.cpp build; its tensors are still checked here.

llama.cpp on these files (same vendored version; checked by hand with its llama-server, not by
this script):
  * kq_scale = m^2 / sqrt(key_length_mla = 24) with m = 1 + 0.1 * (yarn_log_multiplier / 0.1) *
    ln(factor) (times a cancelling attn_factor); the cos/sin factor it ends up with is
    get_mscale(factor, ms) / get_mscale(factor, mscale_all_dim), where llama.cpp does not read
    mscale and takes ms = 1, or ms = mscale_all_dim when that is != 1.  Equal to transformers here
    (mscale = mscale_all_dim = 1: cos/sin factor 1, softmax scale 1.3689^2 / sqrt(24) for v3).
    Rope type NORM (adjacent pairs) on q_pe (last 8 of each q head) and k_pe.
  * its deepseek2 loader does NOT read rope.scaling.yarn_beta_fast / yarn_beta_slow (it keeps
    the defaults 32 / 1), so for Kimi K2 (beta_fast 1) llama.cpp's YaRN ramp differs from
    transformers' unless run with --yarn-beta-fast 1; v3's values are the defaults.
  * attention.q_lora_rank is a required key (unless 26/27 layers): the k2 tiny.gguf does not
    load ("key not found in model: deepseek2.attention.q_lora_rank"); with the key added as 0 it
    uses attn_q.
  * with an f32 conversion of hf/ (--outtype f32), -ctk f32 -ctv f32 -fa off (k2: q_lora_rank 0
    added and --yarn-beta-fast 1) its top-2 log-probabilities of the first generated token equal
    transformers' to 4 decimals and its 16 greedy tokens equal greedy_ids for all prompts of
    both variants.  On tiny.gguf (BF16) with default settings (BF16-rounded activations in the
    CPU matmuls, F16 KV cache, flash attention) the log-probabilities differ by ~2e-2 and the
    greedy continuations diverge after a few tokens.

Checks made here (the script fails loudly if one does not hold):
  * transformers loads hf/ with no missing / unexpected keys, and every parameter and buffer
    equals its file value (bf16, or f32 for e_score_correction_bias) under the fusing above;
  * YaRN inv_freq, attention_factor and softmax scale equal the formulas above; some rope pairs
    keep the plain frequency and some do not;
  * decoding one token at a time with the cache gives the logits of one full pass;
  * generate(do_sample=False) equals the argmax of full passes;
  * an independent float64 numpy forward pass following the math above reproduces the logits,
    both with kv_b_proj from hf/ and in llama.cpp's absorbed form with the GGUF's attn_k_b /
    attn_v_b and all other GGUF tensors;
  * every GGUF tensor equals its HF tensor after gguf-py dequantization and the converter's
    transformations.

Run (from the repository root; CPU only, a few minutes, nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/deepseek3_tiny.py \
      [--variant v3|k2|all] [--out-v3 DIR] [--out-k2 DIR] [--llama-cpp /path/to/llama.cpp]
Needs the packages of scripts/reference/requirements.txt. Deterministic: fixed seeds, numpy
generators for all random data.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV3ForCausalLM, DynamicCache, GenerationConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LLAMA_CPP = Path("/work/llamacpp/build/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")

PROMPT_LENGTHS = [7, 150, 300]
NEW_TOKENS = 16
LOGIT_STRIDE = 10  # logits stored at positions 0, 10, 20, ... and the last one

HIDDEN = 64
LAYERS = 3
FIRST_K_DENSE = 1
INTERMEDIATE = 128  # dense layer 0
MOE_INTERMEDIATE = 32
HEADS = 4
KV_LORA = 32
QK_NOPE = 16
QK_ROPE = 8
V_HEAD = 16
QK_HEAD = QK_NOPE + QK_ROPE
VOCAB = 256
RMS_EPS = 1e-6
INIT_STD = 0.2  # larger than the 0.02 default so norms, routing and rope visibly matter
# Router weight and e_score_correction_bias spreads: wide enough that near-ties between biased
# scores are rare (see MIN_ROUTER_GAP) while all experts still get picked by some token.
ROUTER_STD = 0.35
BIAS_STD = 0.25  # e_score_correction_bias (sigmoid scores lie in (0, 1))
FEATURE_MIN = 1e-2  # every feature must move some logit by more than this
# Prompts are redrawn until no expert choice is a near-tie (see well_conditioned_prompt). The
# gaps are in biased sigmoid-score units (scores lie in (0, 1)); the float32 noise of the scores
# is ~3e-7 (max |f32 - f64| is printed and stored). Over the ~1300 routing decisions of a
# 300-token prompt a 1e-3 gap needs a few hundred draws (each rejected cheaply on the prompt).
MIN_ROUTER_GAP = 1e-3
MAX_DRAWS = 3000
MIN_GREEDY_MARGIN = 1e-2
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


@dataclass(frozen=True)
class Variant:
    key: str
    out: Path
    q_lora_rank: int | None
    experts: int
    top_k: int
    n_group: int
    topk_group: int
    routed_scaling: float
    rope_theta: float
    rope_scaling: dict
    max_position_embeddings: int
    gguf_pre: str
    seed_weights: int
    seed_prompts: int


VARIANTS = {
    "v3": Variant(
        key="v3", out=REPO_ROOT / "crates/wazn-models/tests/data/deepseek3", q_lora_rank=32,
        experts=16, top_k=2, n_group=4, topk_group=2, routed_scaling=2.5, rope_theta=10000.0,
        rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                      "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                      "type": "yarn"},
        max_position_embeddings=163840, gguf_pre="deepseek-v3", seed_weights=20261206,
        seed_prompts=11),
    "k2": Variant(
        key="k2", out=REPO_ROOT / "crates/wazn-models/tests/data/kimi_k2", q_lora_rank=None,
        experts=16, top_k=4, n_group=1, topk_group=1, routed_scaling=2.827, rope_theta=50000.0,
        rope_scaling={"beta_fast": 1.0, "beta_slow": 1.0, "factor": 32.0, "mscale": 1.0,
                      "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                      "type": "yarn"},
        max_position_embeddings=131072, gguf_pre="kimi-k2", seed_weights=20261207,
        seed_prompts=12),
}


def config_json(v: Variant) -> dict:
    """config.json with the fields (old-style rope_scaling, scoring_func, topk_method, ...) of
    deepseek-ai/DeepSeek-V3's config.json, minus quantization_config and auto_map."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": FIRST_K_DENSE,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": INIT_STD,
        "intermediate_size": INTERMEDIATE,
        "kv_lora_rank": KV_LORA,
        "max_position_embeddings": v.max_position_embeddings,
        "model_type": "deepseek_v3",
        "moe_intermediate_size": MOE_INTERMEDIATE,
        "moe_layer_freq": 1,
        "n_group": v.n_group,
        "n_routed_experts": v.experts,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": HEADS,
        "num_experts_per_tok": v.top_k,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": HEADS,
        "num_nextn_predict_layers": 0,
        "pretraining_tp": 1,
        "q_lora_rank": v.q_lora_rank,
        "qk_nope_head_dim": QK_NOPE,
        "qk_rope_head_dim": QK_ROPE,
        "rms_norm_eps": RMS_EPS,
        "rope_scaling": dict(v.rope_scaling),
        "rope_theta": v.rope_theta,
        "routed_scaling_factor": v.routed_scaling,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": v.topk_group,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "v_head_dim": V_HEAD,
        "vocab_size": VOCAB,
    }


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def make_tensors(v: Variant) -> dict[str, torch.Tensor]:
    """All checkpoint tensors under their released (per-expert) names."""
    rng = np.random.default_rng(v.seed_weights)
    n = lambda *shape, std=INIT_STD, mean=0.0: rng.normal(mean, std, size=shape)  # noqa: E731
    norm = lambda size: bf16(n(size, std=0.3, mean=1.0))  # noqa: E731
    t: dict[str, torch.Tensor] = {}
    t["model.embed_tokens.weight"] = bf16(n(VOCAB, HIDDEN))
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(HIDDEN)
        t[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        a = p + "self_attn."
        if v.q_lora_rank is None:
            t[a + "q_proj.weight"] = bf16(n(HEADS * QK_HEAD, HIDDEN))
        else:
            t[a + "q_a_proj.weight"] = bf16(n(v.q_lora_rank, HIDDEN))
            t[a + "q_a_layernorm.weight"] = norm(v.q_lora_rank)
            t[a + "q_b_proj.weight"] = bf16(n(HEADS * QK_HEAD, v.q_lora_rank))
        t[a + "kv_a_proj_with_mqa.weight"] = bf16(n(KV_LORA + QK_ROPE, HIDDEN))
        t[a + "kv_a_layernorm.weight"] = norm(KV_LORA)
        t[a + "kv_b_proj.weight"] = bf16(n(HEADS * (QK_NOPE + V_HEAD), KV_LORA))
        t[a + "o_proj.weight"] = bf16(n(HIDDEN, HEADS * V_HEAD))
        m = p + "mlp."
        if i < FIRST_K_DENSE:
            t[m + "gate_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
            t[m + "up_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
            t[m + "down_proj.weight"] = bf16(n(HIDDEN, INTERMEDIATE))
            continue
        t[m + "gate.weight"] = bf16(n(v.experts, HIDDEN, std=ROUTER_STD))
        t[m + "gate.e_score_correction_bias"] = torch.from_numpy(
            n(v.experts, std=BIAS_STD).astype(np.float32))  # full float32 precision, as released
        for e in range(v.experts):
            t[m + f"experts.{e}.gate_proj.weight"] = bf16(n(MOE_INTERMEDIATE, HIDDEN))
            t[m + f"experts.{e}.up_proj.weight"] = bf16(n(MOE_INTERMEDIATE, HIDDEN))
            t[m + f"experts.{e}.down_proj.weight"] = bf16(n(HIDDEN, MOE_INTERMEDIATE))
        t[m + "shared_experts.gate_proj.weight"] = bf16(n(MOE_INTERMEDIATE, HIDDEN))
        t[m + "shared_experts.up_proj.weight"] = bf16(n(MOE_INTERMEDIATE, HIDDEN))
        t[m + "shared_experts.down_proj.weight"] = bf16(n(HIDDEN, MOE_INTERMEDIATE))
    t["model.norm.weight"] = norm(HIDDEN)
    t["lm_head.weight"] = bf16(n(VOCAB, HIDDEN))
    return t


def get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_facts(v: Variant) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(YaRN inv_freq, plain inv_freq, cos/sin attention factor, softmax scale), written from
    the formulas in the docstring (truncate = true: floor / ceil of the correction range)."""
    rs, d, base = v.rope_scaling, QK_ROPE, v.rope_theta
    orig, factor = rs["original_max_position_embeddings"], rs["factor"]
    corr = lambda rot: d * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))  # noqa: E731
    low, high = max(math.floor(corr(rs["beta_fast"])), 0), min(math.ceil(corr(rs["beta_slow"])), d - 1)
    if low == high:
        high += 0.001
    i = np.arange(d // 2, dtype=np.float64)
    plain = 1.0 / base ** (2 * i / d)
    ramp = np.clip((i - low) / (high - low), 0, 1)
    inv = plain / factor * ramp + plain * (1 - ramp)
    attn_factor = get_mscale(factor, rs["mscale"]) / get_mscale(factor, rs["mscale_all_dim"])
    scale = QK_HEAD ** -0.5 * get_mscale(factor, rs["mscale_all_dim"]) ** 2
    return inv, plain, attn_factor, scale


def sig6(x) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def hf_param_values(v: Variant, tensors) -> dict[str, torch.Tensor]:
    """The in-memory transformers parameter/buffer each file tensor becomes (float32)."""
    want: dict[str, torch.Tensor] = {}
    for name, val in tensors.items():
        if ".mlp.experts." not in name:
            want[name] = val.float()
    for i in range(FIRST_K_DENSE, LAYERS):
        m = f"model.layers.{i}.mlp.experts."
        g = lambda e, w: tensors[m + f"{e}.{w}_proj.weight"].float()  # noqa: E731
        want[m + "gate_up_proj"] = torch.stack(
            [torch.cat([g(e, "gate"), g(e, "up")], dim=0) for e in range(v.experts)])
        want[m + "down_proj"] = torch.stack([g(e, "down") for e in range(v.experts)])
    return want


def load_and_verify(v: Variant, hf_dir: Path, tensors) -> DeepseekV3ForCausalLM:
    model, info = DeepseekV3ForCausalLM.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
        output_loading_info=True)
    model.eval()
    # generate() fills unset (None) fields of the GenerationConfig it is given from the model's
    # own one, which carries eos_token_id 1 from config.json: remove it so that the greedy
    # continuations never stop early.
    model.generation_config.eos_token_id = None
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        check(not info.get(k), f"loading info {k}: {info.get(k)}")
    check(model.config._experts_implementation == "eager", "experts implementation not eager")
    cfg = model.config
    check(cfg.rope_parameters.get("rope_type") == "yarn", f"rope {cfg.rope_parameters}")
    check(cfg.rope_interleave is True, "rope_interleave is not true")
    check(cfg.num_mtp_layers == 0, f"num_mtp_layers {cfg.num_mtp_layers}")
    state = dict(model.named_parameters())
    state.update({k: b for k, b in model.named_buffers() if k.endswith("e_score_correction_bias")})
    want = hf_param_values(v, tensors)
    check(set(state) == set(want), f"parameter names differ: {sorted(set(state) ^ set(want))}")
    for name, w in want.items():
        got = state[name].detach()
        check(got.dtype == torch.float32, f"{name} loaded as {got.dtype}")
        check(got.shape == w.shape and torch.equal(got, w), f"{name} differs from its file value")
    rot = model.model.rotary_emb
    inv, plain, attn_factor, scale = yarn_facts(v)
    check(np.allclose(rot.inv_freq.double().numpy(), inv, rtol=1e-6, atol=0),
          f"YaRN inv_freq {rot.inv_freq} vs {inv}")
    same = np.isclose(inv, plain, rtol=1e-6, atol=0)
    check(same.any() and not same.all(), f"YaRN ramp does not split the pairs: {inv} vs {plain}")
    check(abs(rot.attention_scaling - attn_factor) < 1e-12, f"YaRN attention factor {rot.attention_scaling}")
    for layer in model.model.layers:
        check(abs(layer.self_attn.scaling - scale) < 1e-12, f"softmax scale {layer.self_attn.scaling}")
    print(f"verified {len(want)} parameters/buffers; YaRN inv_freq {sig6(inv)} "
          f"(plain {sig6(plain)}; pairs keeping the plain frequency: {np.nonzero(same)[0].tolist()}), "
          f"cos/sin factor {attn_factor}, softmax scale {scale:.8f}")
    return model


# ----------------------------------------------------------------------------------- routing

def route(logits: torch.Tensor, bias: torch.Tensor, v: Variant, *, topk_group: int | None = None,
          group_reduce: str = "top2", bias_in_weights: bool = False, norm: bool = True,
          scaling: float | None = None) -> dict:
    """DeepseekV3TopkRouter's selection on router logits [T, E] (float32), with knobs for the
    feature effects. Returns the chosen experts, weights and the selection gaps."""
    topk_group = v.topk_group if topk_group is None else topk_group
    scaling = v.routed_scaling if scaling is None else scaling
    s = logits.float().sigmoid()
    b = s + bias
    per = v.experts // v.n_group
    grouped = b.view(-1, v.n_group, per)
    if group_reduce == "top2":
        g = grouped.topk(2, dim=-1)[0].sum(-1)
    elif group_reduce == "all":
        g = grouped.sum(-1)
    else:
        raise ValueError(group_reduce)
    g_sorted = torch.sort(g, dim=-1, descending=True).values
    group_gap = (g_sorted[:, topk_group - 1] - g_sorted[:, topk_group]) if topk_group < v.n_group else None
    gidx = torch.topk(g, k=topk_group, dim=-1, sorted=False)[1]
    gmask = torch.zeros_like(g).scatter_(1, gidx, 1).unsqueeze(-1).expand(-1, v.n_group, per).reshape(-1, v.experts)
    masked = b.masked_fill(~gmask.bool(), float("-inf"))
    m_sorted = torch.sort(masked, dim=-1, descending=True).values
    expert_gap = m_sorted[:, v.top_k - 1] - m_sorted[:, v.top_k]
    idx = torch.topk(masked, k=v.top_k, dim=-1, sorted=False)[1]
    w = (b if bias_in_weights else s).gather(1, idx)
    if norm:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * scaling
    return {"scores": s, "biased": b, "group_scores": g, "groups": gidx, "idx": idx, "weights": w,
            "group_gap": group_gap, "expert_gap": expert_gap}


def patch_router(model, v: Variant, **knobs) -> None:
    """Replaces every router's forward by route() with the given knobs."""
    for layer in model.model.layers[FIRST_K_DENSE:]:
        gate = layer.mlp.gate

        def fwd(self, hidden_states, _knobs=knobs):
            hs = hidden_states.view(-1, self.hidden_dim)
            logits = F.linear(hs.float(), self.weight.float())
            r = route(logits, self.e_score_correction_bias, v, **_knobs)
            return logits, r["weights"], r["idx"]
        gate.forward = types.MethodType(fwd, gate)


def router_logits(model, seq: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        out = model(seq, output_router_logits=True)
    rl = list(out.router_logits)
    check(len(rl) == LAYERS - FIRST_K_DENSE, f"{len(rl)} router outputs")
    return rl


def min_router_gap(model, v: Variant, seq: torch.Tensor) -> float:
    gaps = []
    for layer, rl in zip(model.model.layers[FIRST_K_DENSE:], router_logits(model, seq)):
        r = route(rl, layer.mlp.gate.e_score_correction_bias, v)
        gaps.append(float(r["expert_gap"].min()))
        if r["group_gap"] is not None:
            gaps.append(float(r["group_gap"].min()))
    return min(gaps)


def well_conditioned_prompt(model, v: Variant, rng, length: int, gen_cfg) -> tuple[list[int], float, int]:
    """Draws random prompts until one has no near-tie that float32 rounding in another engine
    could flip: over prompt + greedy continuation, in every MoE layer and at every position the
    topk_group-th and next group scores, and the top_k-th and next biased expert scores among
    the kept groups, differ by >= MIN_ROUTER_GAP, and every greedy step's top-2 logits by
    >= MIN_GREEDY_MARGIN. Returns the prompt, its smallest router gap and the number of draws."""
    for draw in range(1, MAX_DRAWS + 1):
        ids_list = rng.integers(0, VOCAB, size=length).tolist()
        ids = torch.tensor([ids_list])
        if min_router_gap(model, v, ids) < MIN_ROUTER_GAP:  # cheap early rejection
            continue
        with torch.inference_mode():
            res = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
        check(len(res.scores) == NEW_TOKENS, f"generate produced {len(res.scores)} tokens")
        margins = [float(x[0] - x[1]) for x in (torch.topk(sc[0], 2).values for sc in res.scores)]
        if min(margins) < MIN_GREEDY_MARGIN:
            continue
        gap = min_router_gap(model, v, res.sequences)
        if gap >= MIN_ROUTER_GAP:
            return ids_list, gap, draw
    raise SystemExit(f"CHECK FAILED: no well-conditioned prompt of length {length} in {MAX_DRAWS} draws")


def routing_example(model, v: Variant, ids: torch.Tensor) -> list[dict]:
    """Per MoE layer, the routing of the last position of `ids`."""
    out = []
    for li, (layer, rl) in enumerate(zip(model.model.layers[FIRST_K_DENSE:], router_logits(model, ids)),
                                     start=FIRST_K_DENSE):
        r = route(rl[-1:], layer.mlp.gate.e_score_correction_bias, v)
        order = torch.argsort(r["weights"][0], descending=True)
        out.append({
            "layer": li,
            "router_logits": sig6(rl[-1].numpy()),
            "sigmoid_scores": sig6(r["scores"][0].numpy()),
            "biased_scores": sig6(r["biased"][0].numpy()),
            "group_scores": sig6(r["group_scores"][0].numpy()),
            "selected_groups": sorted(r["groups"][0].tolist()),
            "selected_experts": r["idx"][0][order].tolist(),
            "weights": sig6(r["weights"][0][order].numpy()),
        })
    return out


# --------------------------------------------------------------------------- numpy forward

def rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + RMS_EPS) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope_pairs(x: np.ndarray, inv: np.ndarray, factor: float) -> np.ndarray:
    """Rotates adjacent pairs (2i, 2i+1) of the last axis in place; x [T, ..., 8]."""
    t = x.shape[0]
    ang = np.arange(t, dtype=np.float64)[:, None] * inv[None, :]  # [T, 4]
    shape = (t,) + (1,) * (x.ndim - 2) + (inv.size,)
    c, s = (np.cos(ang) * factor).reshape(shape), (np.sin(ang) * factor).reshape(shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x1 * c + x0 * s
    return out


def numpy_forward(v: Variant, W: dict[str, np.ndarray], ids: list[int], absorbed: bool) -> np.ndarray:
    """Independent float64 forward pass from the docstring's math. W holds float64 arrays under
    the HF file names; with absorbed=True the attention uses W['...attn_k_b'] [n_head, kv_lora,
    nope] and W['...attn_v_b'] [n_head, v, kv_lora] (GGUF layout) instead of kv_b_proj, the way
    llama.cpp's deepseek2 graph does (scores over the latent, values = latent, then v_b)."""
    inv, _, attn_factor, scale = yarn_facts(v)
    T = len(ids)
    h = W["model.embed_tokens.weight"][ids]
    causal = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        x = rms(h, W[p + "input_layernorm.weight"])
        if v.q_lora_rank is None:
            q = x @ W[a + "q_proj.weight"].T
        else:
            q = rms(x @ W[a + "q_a_proj.weight"].T, W[a + "q_a_layernorm.weight"]) @ W[a + "q_b_proj.weight"].T
        q = q.reshape(T, HEADS, QK_HEAD)
        q_nope, q_pe = q[..., :QK_NOPE], rope_pairs(q[..., QK_NOPE:], inv, attn_factor)
        c = x @ W[a + "kv_a_proj_with_mqa.weight"].T
        lat = rms(c[:, :KV_LORA], W[a + "kv_a_layernorm.weight"])  # [T, kv_lora]
        k_pe = rope_pairs(c[:, KV_LORA:], inv, attn_factor)  # [T, rope], one shared head
        if absorbed:
            kb, vb = W[a + "attn_k_b"], W[a + "attn_v_b"]  # [nh, kv_lora, nope], [nh, v, kv_lora]
            q_abs = np.einsum("hcd,thd->thc", kb, q_nope)
            sc = np.einsum("thc,sc->hts", q_abs, lat) + np.einsum("thr,sr->hts", q_pe, k_pe)
        else:
            kv = (lat @ W[a + "kv_b_proj.weight"].T).reshape(T, HEADS, QK_NOPE + V_HEAD)
            k_nope, val = kv[..., :QK_NOPE], kv[..., QK_NOPE:]
            sc = np.einsum("thd,shd->hts", q_nope, k_nope) + np.einsum("thr,sr->hts", q_pe, k_pe)
        sc = sc * scale + causal
        pr = np.exp(sc - sc.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        if absorbed:
            o = np.einsum("hjc,thc->thj", vb, np.einsum("hts,sc->thc", pr, lat))
        else:
            o = np.einsum("hts,shj->thj", pr, val)
        h = h + o.reshape(T, HEADS * V_HEAD) @ W[a + "o_proj.weight"].T
        x = rms(h, W[p + "post_attention_layernorm.weight"])
        m = p + "mlp."
        ffn = lambda x, g, u, d: (silu(x @ W[g].T) * (x @ W[u].T)) @ W[d].T  # noqa: E731
        if i < FIRST_K_DENSE:
            h = h + ffn(x, m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight")
            continue
        s = 1.0 / (1.0 + np.exp(-(x @ W[m + "gate.weight"].T)))  # [T, E]
        b = s + W[m + "gate.e_score_correction_bias"]
        per = v.experts // v.n_group
        g = np.sort(b.reshape(T, v.n_group, per), axis=-1)[..., -2:].sum(-1)  # [T, n_group]
        keep_groups = np.argsort(-g, axis=-1, kind="stable")[:, :v.topk_group]
        keep = np.zeros((T, v.n_group), dtype=bool)
        np.put_along_axis(keep, keep_groups, True, axis=-1)
        masked = np.where(np.repeat(keep, per, axis=-1), b, -np.inf)
        idx = np.argsort(-masked, axis=-1, kind="stable")[:, :v.top_k]
        w = np.take_along_axis(s, idx, axis=-1)
        w = w / w.sum(-1, keepdims=True) * v.routed_scaling
        out = ffn(x, m + "shared_experts.gate_proj.weight", m + "shared_experts.up_proj.weight",
                  m + "shared_experts.down_proj.weight")
        for e in range(v.experts):
            tok, slot = np.nonzero(idx == e)
            if tok.size:
                out[tok] += w[tok, slot, None] * ffn(x[tok], m + f"experts.{e}.gate_proj.weight",
                                                      m + f"experts.{e}.up_proj.weight",
                                                      m + f"experts.{e}.down_proj.weight")
        h = h + out
    return rms(h, W["model.norm.weight"]) @ W["lm_head.weight"].T


# ------------------------------------------------------------------------------- reference

def run_reference(model, v: Variant, W64: dict[str, np.ndarray]) -> tuple[dict, float, list]:
    rng = np.random.default_rng(v.seed_prompts)
    prompts_out = []
    worst = 0.0
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                               pad_token_id=model.config.eos_token_id, output_scores=True,
                               return_dict_in_generate=True)
    all_ids = []
    for length in PROMPT_LENGTHS:
        ids_list, gap, draws = well_conditioned_prompt(model, v, rng, length, gen_cfg)
        all_ids.append(ids_list)
        ids = torch.tensor([ids_list])
        with torch.inference_mode():
            full = model(ids).logits[0]  # [P, vocab]
            cache = DynamicCache(config=model.config)
            steps = [model(ids[:, t:t + 1], cache=cache, use_cache=True).logits[0, -1]
                     for t in range(length)]
            diff = float((torch.stack(steps) - full).abs().max())
            worst = max(worst, diff)
            scale = float(full.abs().max())
            check(diff < 2e-5 * scale, f"incremental vs full logits differ by {diff} (max |logit| {scale})")
            # explicit all-ones mask: generate() would otherwise mask prompt tokens equal to pad
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
            greedy = out.sequences[0, length:].tolist()
            check(len(greedy) == NEW_TOKENS, f"generate produced {len(greedy)} tokens")
            seq = ids
            for tok in greedy:
                nxt = int(model(seq).logits[0, -1].argmax())
                check(nxt == tok, f"generate picked {tok}, full-pass argmax {nxt}")
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
            margins = [float(x[0] - x[1]) for x in (torch.topk(s[0], 2).values for s in out.scores)]
        ref64 = numpy_forward(v, W64, ids_list, absorbed=False)
        f64_diff = float(np.abs(ref64 - full.double().numpy()).max())
        check(f64_diff < 1e-4 * max(scale, 1.0), f"numpy float64 forward differs from transformers by {f64_diff}")
        positions = sorted(set(range(0, length, LOGIT_STRIDE)) | {length - 1})
        if length <= 10:
            positions = list(range(length))
        prompts_out.append({
            "input_ids": ids_list,
            "logit_positions": positions,
            "logits": [sig6(full[p].numpy()) for p in positions],
            "greedy_ids": greedy,
            "greedy_top2_margin": sig6(margins),
            "max_abs_full_minus_incremental": diff,
            "max_abs_f32_minus_numpy_f64": f64_diff,
            "min_router_gap": gap,
        })
        print(f"prompt len {length:3d} (draw {draws}): max|logit| {scale:.2f}, max|full - incremental| "
              f"= {diff:.3e}, max|f32 - numpy f64| {f64_diff:.3e}, greedy {greedy}, "
              f"min top-2 margin {min(margins):.4f}, min router gap {gap:.2e}")
    return {"prompts": prompts_out}, worst, all_ids


def router_score_noise(model, v: Variant, W64, ids: list[int]) -> float:
    """max |f32 - f64| of the biased router scores over a prompt (float64 from numpy_forward's
    hidden states is not exposed, so this reruns the f32 model's router input in float64)."""
    inputs = []
    hooks = [layer.mlp.gate.register_forward_hook(lambda mod, args, out: inputs.append(args[0].detach()))
             for layer in model.model.layers[FIRST_K_DENSE:]]
    rl = router_logits(model, torch.tensor([ids]))
    for hk in hooks:
        hk.remove()
    worst = 0.0
    for li, (x, lg) in enumerate(zip(inputs, rl), start=FIRST_K_DENSE):
        w = W64[f"model.layers.{li}.mlp.gate.weight"]
        s64 = 1.0 / (1.0 + np.exp(-(x.double().numpy().reshape(-1, HIDDEN) @ w.T)))
        worst = max(worst, float(np.abs(s64 - lg.double().sigmoid().numpy()).max()))
    return worst


def feature_effects(model, v: Variant, ids: list[int]) -> dict:
    """max |delta logit| over all positions of `ids` when one feature is switched off (float32)."""
    seq = torch.tensor([ids])
    with torch.inference_mode():
        base = model(seq).logits[0]

    def effect(mutate) -> float:
        m = copy.deepcopy(model)
        mutate(m)
        with torch.inference_mode():
            return float((m(seq).logits[0] - base).abs().max())

    # sanity: route() without knobs reproduces DeepseekV3TopkRouter exactly
    check(effect(lambda m: patch_router(m, v)) == 0.0, "route() differs from DeepseekV3TopkRouter")
    attn = lambda m: [layer.self_attn for layer in m.model.layers]  # noqa: E731
    moe = lambda m: [layer.mlp for layer in m.model.layers[FIRST_K_DENSE:]]  # noqa: E731
    _, plain, _, _ = yarn_facts(v)

    def set_(mods, attr, fn):
        def mutate(m):
            for mod in mods(m):
                with torch.no_grad():
                    fn(getattr(mod, attr) if attr else mod)
        return mutate

    def yarn_inv_plain(m):
        m.model.rotary_emb.inv_freq = torch.tensor(plain, dtype=torch.float32)

    def softmax_plain(m):
        for a in attn(m):
            a.scaling = QK_HEAD ** -0.5

    def yarn_off(m):
        yarn_inv_plain(m)
        softmax_plain(m)
        m.model.rotary_emb.attention_scaling = 1.0

    def no_interleave(m):
        m.config.rope_interleave = False

    feats = {}
    if v.q_lora_rank is not None:
        feats["q_a_layernorm_ones"] = set_(attn, "q_a_layernorm", lambda n: n.weight.fill_(1.0))
    feats["kv_a_layernorm_ones"] = set_(attn, "kv_a_layernorm", lambda n: n.weight.fill_(1.0))
    feats["e_score_correction_bias_zero"] = set_(moe, "gate", lambda g: g.e_score_correction_bias.zero_())
    feats["bias_also_in_weights"] = lambda m: patch_router(m, v, bias_in_weights=True)
    if v.topk_group < v.n_group:
        feats["group_limit_off"] = lambda m: patch_router(m, v, topk_group=v.n_group)
        feats["group_score_sum_all"] = lambda m: patch_router(m, v, group_reduce="all")
    feats["shared_expert_removed"] = set_(moe, "shared_experts", lambda s: s.down_proj.weight.zero_())
    feats["routed_scaling_factor_1"] = lambda m: patch_router(m, v, scaling=1.0)
    feats["norm_topk_prob_false"] = lambda m: patch_router(m, v, norm=False)
    feats["yarn_off_plain_rope"] = yarn_off
    feats["yarn_inv_freq_plain_only"] = yarn_inv_plain
    feats["softmax_scale_without_mscale"] = softmax_plain
    feats["rope_interleave_false"] = no_interleave
    res = {name: effect(fn) for name, fn in feats.items()}
    for name, val in res.items():
        print(f"  feature {name:30s} max |d logit| {val:.4f}")
        check(val > FEATURE_MIN, f"feature {name} moves the logits by only {val}")
    return {k: float(f"{val:.6g}") for k, val in res.items()}


# ----------------------------------------------------------------------------------- GGUF

def write_tokenizer(folder: Path) -> None:
    """A small byte-level BPE (alphabet and merges learnt from a fixed text, ids < VOCAB) only so
    that llama.cpp's converter finds a tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog " * 4,
            "a tiny deepseek model for tests; latent attention, groups and experts."] * 8
    trainer = trainers.BpeTrainer(vocab_size=160, show_progress=False, initial_alphabet=[],
                                  special_tokens=[BOS, EOS])
    tok.train_from_iterator(text, trainer=trainer)
    check(tok.get_vocab_size() <= VOCAB, f"toy tokenizer has {tok.get_vocab_size()} tokens")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS}))


CONVERTER_SHIM = r"""
import sys
llama_cpp, hf_dir, outfile, pre = sys.argv[1:5]
sys.path.insert(0, llama_cpp)
import convert_hf_to_gguf as conv
from conversion.base import TextModel
# The toy tokenizer's hash is unknown to the converter; name the pre-tokenizer the real
# GGUFs carry ("deepseek-v3" / "kimi-k2") instead of failing.
TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", outfile, "--outtype", "auto"]
conv.main()
"""


def make_gguf(v: Variant, hf_dir: Path, out_file: Path, llama_cpp: Path) -> None:
    """Runs llama.cpp's convert_hf_to_gguf.py (with its own gguf-py) on a temporary copy of the
    HF folder plus a small tokenizer. The converter is unchanged; a shim only replaces its
    pre-tokenizer hash lookup (which knows real tokenizers only) by v.gguf_pre."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hf"
        shutil.copytree(hf_dir, src)
        write_tokenizer(src)
        shim = Path(tmp) / "shim.py"
        shim.write_text(CONVERTER_SHIM)
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("NO_LOCAL_GGUF", None)
        res = subprocess.run([sys.executable, str(shim), str(llama_cpp), str(src), str(out_file),
                              v.gguf_pre], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout[-4000:], res.stderr[-4000:])
            raise SystemExit("CHECK FAILED: convert_hf_to_gguf.py failed")


def verify_gguf(v: Variant, gguf_path: Path, tensors) -> tuple[dict, dict[str, np.ndarray]]:
    """Every GGUF tensor against the HF tensors; returns names, types, metadata and the GGUF
    tensors as float64 under HF names (+ attn_k_b / attn_v_b) for numpy_forward."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(gguf_path))
    hf = {k: t.float().numpy() for k, t in tensors.items()}
    hf_of = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight",
                 "ffn_norm.weight": "post_attention_layernorm.weight",
                 "attn_q_a.weight": "self_attn.q_a_proj.weight",
                 "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight",
                 "attn_q_b.weight": "self_attn.q_b_proj.weight",
                 "attn_q.weight": "self_attn.q_proj.weight",
                 "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight",
                 "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight",
                 "attn_output.weight": "self_attn.o_proj.weight",
                 "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                 "ffn_down.weight": "mlp.down_proj.weight",
                 "ffn_gate_inp.weight": "mlp.gate.weight",
                 "exp_probs_b.bias": "mlp.gate.e_score_correction_bias",
                 "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight",
                 "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
                 "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight"}
    info = {"tensors": [], "metadata": {}}
    W: dict[str, np.ndarray] = {}
    for t in r.tensors:
        name, qtype = t.name, gguf.GGMLQuantizationType(t.tensor_type)
        # numpy shape of the GGUF tensor is the reverse of ggml's ne (= PyTorch order)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        vals = dequantize(t.data, qtype).reshape(shape).astype(np.float32)
        info["tensors"].append({"name": name, "type": qtype.name, "ggml_ne": [int(x) for x in t.shape],
                                "n_bytes": int(t.n_bytes)})
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            p = f"model.layers.{i}."
            kv = lambda: hf[p + "self_attn.kv_b_proj.weight"].reshape(HEADS, QK_NOPE + V_HEAD, KV_LORA)  # noqa: E731
            if rest in per_layer:
                hf_name = p + per_layer[rest]
                want = hf[hf_name]
            elif rest == "attn_k_b.weight":
                hf_name = p + "self_attn.attn_k_b"
                want = np.ascontiguousarray(kv()[:, :QK_NOPE, :].transpose(0, 2, 1))
            elif rest == "attn_v_b.weight":
                hf_name = p + "self_attn.attn_v_b"
                want = np.ascontiguousarray(kv()[:, QK_NOPE:, :])
            elif rest in ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"):
                w = rest.split("_")[1]
                want = np.stack([hf[p + f"mlp.experts.{e}.{w}_proj.weight"] for e in range(v.experts)])
                hf_name = None
                for e in range(v.experts):
                    W[p + f"mlp.experts.{e}.{w}_proj.weight"] = vals[e].astype(np.float64)
            else:
                raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
        elif name in hf_of:
            hf_name = hf_of[name]
            want = hf[hf_name]
        else:
            raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
        check(vals.shape == want.shape, f"{name}: GGUF shape {vals.shape} vs HF {want.shape}")
        check(np.array_equal(vals, want), f"{name}: GGUF values differ from HF "
              f"(max |d| {np.abs(vals - want).max()})")
        if hf_name is not None:
            W[hf_name] = vals.astype(np.float64)
    for fld in r.fields.values():
        if fld.name.startswith("GGUF."):
            continue
        vt = [gguf.GGUFValueType(x).name for x in fld.types]
        if fld.name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            val = f"<array of {len(fld.data)}>"
        else:
            val = fld.contents()
        info["metadata"][fld.name] = {"type": vt, "value": val}
    n_attn = (1 if v.q_lora_rank is None else 3) + 7  # q's + kv_a, kv_a_norm, k_b, v_b, o, 2 norms
    n_expected = 3 + LAYERS * n_attn + FIRST_K_DENSE * 3 + (LAYERS - FIRST_K_DENSE) * 8
    check(len(r.tensors) == n_expected, f"{len(r.tensors)} GGUF tensors, expected {n_expected}")
    return info, W


def gguf_metadata_checks(v: Variant, md: dict) -> None:
    get = lambda k: md[k]["value"] if k in md else None  # noqa: E731
    a = "deepseek2."
    check(get("general.architecture") == "deepseek2", f"architecture {get('general.architecture')}")
    want = {
        "block_count": LAYERS, "embedding_length": HIDDEN, "feed_forward_length": INTERMEDIATE,
        "attention.head_count": HEADS, "attention.head_count_kv": 1,
        "attention.kv_lora_rank": KV_LORA, "attention.key_length": KV_LORA + QK_ROPE,
        "attention.value_length": KV_LORA, "attention.key_length_mla": QK_HEAD,
        "attention.value_length_mla": V_HEAD, "rope.dimension_count": QK_ROPE,
        "expert_count": v.experts, "expert_used_count": v.top_k, "expert_shared_count": 1,
        "expert_group_count": v.n_group, "expert_group_used_count": v.topk_group,
        "expert_feed_forward_length": MOE_INTERMEDIATE, "leading_dense_block_count": FIRST_K_DENSE,
        "expert_gating_func": 2, "expert_weights_norm": True,
        "rope.scaling.original_context_length": v.rope_scaling["original_max_position_embeddings"],
    }
    for k, val in want.items():
        check(get(a + k) == val, f"{a}{k} = {get(a + k)}, expected {val}")
    check(abs(get(a + "expert_weights_scale") - v.routed_scaling) < 1e-6, "expert_weights_scale")
    check(abs(get(a + "rope.scaling.factor") - v.rope_scaling["factor"]) < 1e-6, "rope.scaling.factor")
    check(abs(get(a + "rope.scaling.yarn_log_multiplier") - 0.1 * v.rope_scaling["mscale_all_dim"]) < 1e-7,
          "yarn_log_multiplier")
    check((get(a + "attention.q_lora_rank") is None) == (v.q_lora_rank is None)
          and get(a + "attention.q_lora_rank") in (None, v.q_lora_rank), "q_lora_rank")


# ----------------------------------------------------------------------------------- main

def build(v: Variant, out: Path, llama_cpp: Path) -> None:
    print(f"===== variant {v.key} -> {out}")
    torch.manual_seed(0)
    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    tensors = make_tensors(v)
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    (hf_dir / "config.json").write_text(json.dumps(config_json(v), indent=2, sort_keys=True) + "\n")
    print("HF tensors (name, shape, dtype; layers 0 and 1, expert 0 only):")
    for name in sorted(tensors):
        if ".layers." not in name or ((".layers.0." in name or ".layers.1." in name)
                                      and (".experts." not in name or ".experts.0." in name)):
            dtype = str(tensors[name].dtype).replace("torch.", "")
            print(f"  {name:58s} {list(tensors[name].shape)} {dtype}")
    W64 = {k: t.double().numpy() for k, t in tensors.items()}

    model = load_and_verify(v, hf_dir, tensors)
    ref, worst, prompts = run_reference(model, v, W64)
    noise = max(router_score_noise(model, v, W64, p) for p in prompts)
    print(f"max |f32 - f64| of the sigmoid router scores (same router input): {noise:.2e}")
    print("feature effects on the 150-token prompt:")
    effects = feature_effects(model, v, prompts[1])
    example = routing_example(model, v, torch.tensor([prompts[0]]))
    for ex in example:
        print(f"  routing layer {ex['layer']} last position of the 7-token prompt: groups "
              f"{ex['selected_groups']}, experts {ex['selected_experts']}, weights {ex['weights']}")

    inv, plain, attn_factor, scale = yarn_facts(v)
    cfg = config_json(v)
    reference = {
        "generator": "scripts/reference/deepseek3_tiny.py",
        "variant": v.key,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "experts_implementation": "eager",
        "weights": "hf/model.safetensors (bf16; mlp.gate.e_score_correction_bias f32)",
        "config": {k: cfg[k] for k in (
            "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "q_lora_rank", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
            "num_experts_per_tok", "n_group", "topk_group", "n_shared_experts", "norm_topk_prob",
            "routed_scaling_factor", "scoring_func", "topk_method", "first_k_dense_replace",
            "vocab_size", "rope_theta", "rope_scaling", "rms_norm_eps", "max_position_embeddings",
            "tie_word_embeddings", "attention_bias")},
        "rope_interleave": True,
        "rope_inv_freq": sig6(model.model.rotary_emb.inv_freq.numpy()),
        "rope_inv_freq_plain": sig6(plain),
        "rope_attention_scaling": float(model.model.rotary_emb.attention_scaling),
        "softmax_scale": float(model.model.layers[0].self_attn.scaling),
        "logits_note": "logits[k] is the full-vocabulary row at position logit_positions[k] of one "
                       "forward pass over input_ids (6 significant digits); greedy_ids are the "
                       f"{NEW_TOKENS} tokens of generate(do_sample=False) with no stop token",
        "max_abs_full_minus_incremental": worst,
        "min_router_gap_required": MIN_ROUTER_GAP,
        "max_abs_router_score_f32_minus_f64": float(f"{noise:.3g}"),
        "feature_effects_note": "max |delta logit| over all positions of prompts[1] (float32) when "
                                "one feature is switched off / changed",
        "feature_effects": effects,
        "routing_example_note": "per MoE layer, the last position of prompts[0]: selected_experts "
                                "sorted by final weight (descending), weights include "
                                "norm_topk_prob and routed_scaling_factor",
        "routing_example": example,
        **ref,
    }
    ref_path = out / "reference.json"
    ref_path.write_text(json.dumps(reference, separators=(",", ":"), ensure_ascii=False) + "\n")

    gguf_path = out / "tiny.gguf"
    make_gguf(v, hf_dir, gguf_path, llama_cpp)
    info, Wg = verify_gguf(v, gguf_path, tensors)
    gguf_metadata_checks(v, info["metadata"])
    for p in prompts:
        with torch.inference_mode():
            want = model(torch.tensor([p])).logits[0].double().numpy()
        got = numpy_forward(v, Wg, p, absorbed=True)
        d = float(np.abs(got - want).max())
        check(d < 1e-4 * max(float(np.abs(want).max()), 1.0), f"absorbed GGUF forward differs by {d}")
        print(f"absorbed-MLA numpy forward from the GGUF tensors, {len(p)} tokens: max |d| vs HF {d:.3e}")
    print("GGUF tensors (name, type, ggml ne; globals, layers 0 and 1):")
    for t in info["tensors"]:
        if not t["name"].startswith("blk.") or t["name"].startswith(("blk.0.", "blk.1.")):
            print(f"  {t['name']:30s} {t['type']:5s} {t['ggml_ne']}")
    print("GGUF metadata:")
    for k, val in info["metadata"].items():
        print(f"  {k} ({'/'.join(val['type'])}) = {val['value']}")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print("summary:")
    for k, val in sizes.items():
        print(f"  {k:24s} {val / 1024:8.1f} KiB")
    print(f"  max |full - incremental| logits: {worst:.3e}")
    hf_total = sum(val for k, val in sizes.items() if k.startswith("hf/"))
    check(hf_total < 700 * 1024, f"hf/ is {hf_total} bytes")
    check(sizes["reference.json"] < 800 * 1024, "reference.json too large")
    check(sizes["tiny.gguf"] < 800 * 1024, "tiny.gguf too large")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=["v3", "k2", "all"], default="all")
    ap.add_argument("--out-v3", type=Path, default=VARIANTS["v3"].out)
    ap.add_argument("--out-k2", type=Path, default=VARIANTS["k2"].out)
    ap.add_argument("--llama-cpp", type=Path, default=DEFAULT_LLAMA_CPP)
    args = ap.parse_args()
    torch.set_num_threads(2)
    outs = {"v3": args.out_v3, "k2": args.out_k2}
    for key in (["v3", "k2"] if args.variant == "all" else [args.variant]):
        build(VARIANTS[key], outs[key], args.llama_cpp)


if __name__ == "__main__":
    main()
