#!/usr/bin/env python3
"""Tiny random Qwen3 and Qwen3-MoE checkpoints in the real Hugging Face layout, their transformers
reference outputs, and the same weights as llama.cpp GGUFs.

Writes (under crates/wazn-models/tests/data/, or OUT_ROOT):
  qwen3/hf/config.json, qwen3/hf/model.safetensors
      A Qwen3ForCausalLM laid out like Qwen3-0.6B: every tensor bfloat16, q/k/v/o without bias,
      per-head RMSNorm weights self_attn.{q,k}_norm.weight [head_dim], head_dim 32 != hidden 64 /
      4 heads, tie_word_embeddings = true and NO lm_head.weight in the file (the logits use
      model.embed_tokens.weight, as transformers' save_pretrained writes tied checkpoints).
  qwen3moe/hf/config.json, qwen3moe/hf/model.safetensors
      A Qwen3MoeForCausalLM laid out like the released Qwen3-30B-A3B files: router
      model.layers.{i}.mlp.gate.weight [experts, hidden] and one tensor per expert and projection,
      model.layers.{i}.mlp.experts.{e}.{gate,up}_proj.weight [moe_intermediate, hidden] and
      model.layers.{i}.mlp.experts.{e}.down_proj.weight [hidden, moe_intermediate] (nn.Linear
      [out, in] order), untied lm_head.weight, norm_topk_prob = true, every tensor bfloat16.
  <arch>/reference.json
      transformers 5.24 outputs for that folder loaded back in float32 (eager attention, eager
      experts): full-vocabulary logits at chosen positions of three prompts (lengths 7, 150, 300),
      the 16-token greedy continuation of each, and the model facts an implementation needs.
      qwen3moe/reference.json also holds "prompts_norm_topk_prob_false": the 7- and 150-token
      prompts run with the same weights but config.json's norm_topk_prob patched to false.
  <arch>/tiny.gguf
      The same weights converted by llama.cpp's own convert_hf_to_gguf.py (--outtype auto: BF16
      matrices, F32 1-D tensors). The converter needs a tokenizer, so it runs on a temporary copy
      of hf/ with a small Qwen2-style byte-level BPE tokenizer added (see make_gguf()).

How transformers 5.24 loads the Qwen3-MoE experts (checked below, bit for bit):
  the on-disk per-expert tensors are merged at load time (conversion_mapping "qwen2_moe":
  MergeModulelist(dim=0) then Concatenate(dim=1)) into two parameters per layer,
    model.layers.{i}.mlp.experts.gate_up_proj [E, 2*I, H]:
        gate_up_proj[e, :I, :] = experts.{e}.gate_proj.weight,
        gate_up_proj[e, I:, :] = experts.{e}.up_proj.weight      (gate first, NOT interleaved)
    model.layers.{i}.mlp.experts.down_proj [E, H, I]:
        down_proj[e] = experts.{e}.down_proj.weight               (not transposed)
  and the router keeps its name and shape: model.layers.{i}.mlp.gate.weight [E, H].
  Routing (Qwen3MoeTopKRouter): logits = h @ gate.weight^T; p = softmax over all E experts in
  float32; the top-k experts by p (torch.topk); weights = their p, divided by their sum when
  norm_topk_prob (no epsilon, no scale, no bias, no shared expert); output = sum_k weight_k *
  down_e(silu(gate_e(h)) * up_e(h)). This script recomputes every layer of both models in float64
  numpy from the on-disk tensors with exactly that recipe and compares with transformers.

What the converter writes (printed by the script; llama.cpp vendored in llama-cpp-python 0.3.36):
  qwen3    general.architecture "qwen3". Tensors token_embd.weight, output_norm.weight and per
           layer N: blk.N.attn_norm, blk.N.attn_{q,k,v,output}.weight, blk.N.attn_q_norm.weight,
           blk.N.attn_k_norm.weight (ne [head_dim]), blk.N.ffn_norm (= post_attention_layernorm),
           blk.N.ffn_{gate,up,down}.weight. NO output.weight: with the tied checkpoint the
           converter writes none, and llama.cpp then uses token_embd.weight as the output matrix.
  qwen3moe general.architecture "qwen3moe". Tensors as qwen3 plus output.weight, and per layer
           blk.N.ffn_gate_inp.weight (router, ne [H, E]) and blk.N.ffn_{gate,up,down}_exps.weight
           (ne [H, I, E] for gate/up, [I, H, E] for down; i.e. the per-expert [out, in] matrices
           stacked along a new outermost axis in expert order). gate and up stay SEPARATE tensors
           (ffn_gate_up_exps is only written with the non-default --fuse-gate-up-exps).
  Both     Q/K rows are NOT permuted (unlike llama): every attn_q/attn_k tensor equals the HF
           q_proj/k_proj rows directly (llama.cpp applies NeoX-style RoPE for qwen3/qwen3moe,
           the rotate_half convention of transformers). 2-D weights BF16; norms F32; the MoE
           router ffn_gate_inp F32 (converted exactly from bf16).
  metadata general.{architecture, type = "model", name = "Hf" (from the temporary folder's name),
           size_label, file_type = 32 (MOSTLY_BF16), quantization_version = 2};
           qwen3.{block_count, context_length (= max_position_embeddings), embedding_length,
           feed_forward_length, attention.head_count, attention.head_count_kv,
           attention.key_length = attention.value_length = head_dim (32), rope.freq_base,
           attention.layer_norm_rms_epsilon (float32 1e-6)}; qwen3moe.{the same keys, with
           feed_forward_length = intermediate_size (128, unused by the MoE layers), plus
           expert_count, expert_used_count, expert_feed_forward_length (= moe_intermediate_size)};
           tokenizer.ggml.{model = "gpt2", pre = "qwen2" (the shim's value), tokens, token_type,
           merges, bos_token_id = 300, eos_token_id = 302, padding_token_id = 300,
           add_bos_token = false}. There is NO rope.dimension_count (llama.cpp then rotates the
           whole head, n_rot = key_length) and no rope scaling key (rope_scaling is null).
           No key carries norm_topk_prob (no "qwen3moe.expert_weights_norm"): llama.cpp's
           qwen3moe graph always renormalizes the top-k weights (build_moe_ffn(..., norm_w =
           true, ...) in src/models/qwen3moe.cpp), so a norm_topk_prob = false checkpoint is not
           expressible in these GGUFs.

Tied embeddings in transformers 5.24 (tried separately, not part of this script): with
  tie_word_embeddings = true and NO lm_head.weight in the file, lm_head shares
  model.embed_tokens.weight (checked below). If a file nevertheless stores an lm_head.weight that
  differs from embed_tokens, transformers warns and does NOT tie: the logits then use the stored
  lm_head.weight.

Checks made here (the script fails loudly if one does not hold):
  * transformers loads each folder with no missing / unexpected / mismatched keys, ties lm_head
    to embed_tokens for qwen3, and every loaded parameter equals its bfloat16 file value (fused
    MoE expert parameters against the on-disk per-expert tensors as described above);
  * the RoPE inverse frequencies equal 1 / theta^(2i/head_dim) and the attention scale is 1;
  * an independent float64 numpy forward pass from the on-disk tensors reproduces the logits;
  * decoding one token at a time with a KV cache gives the logits of one full pass;
  * generate(do_sample=False) equals the argmax of full passes (model.generation_config's
    eos_token_id is cleared in memory: generate() would otherwise stop at config.json's eos 302);
  * the q/k norms (and, for the MoE, norm_topk_prob) move the logits by far more than noise;
  * every GGUF tensor equals its HF tensor bit for bit (gguf-py dequantization).

Run (from the repository root; CPU only, a few minutes, nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/qwen3_tiny.py \
      [--only qwen3|qwen3moe] [--out-root crates/wazn-models/tests/data] \
      [--llama-cpp /path/to/llama.cpp]   # a checkout containing convert_hf_to_gguf.py and gguf-py/
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
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (DynamicCache, GenerationConfig, Qwen3ForCausalLM,
                          Qwen3MoeForCausalLM)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_ROOT = REPO_ROOT / "crates/wazn-models/tests/data"
DEFAULT_LLAMA_CPP = Path("/work/llamacpp/build/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")

SEED_PROMPTS = 7
PROMPT_LENGTHS = [7, 150, 300]
ALT_PROMPT_LENGTHS = [7, 150]  # also run with norm_topk_prob = false (MoE only)
NEW_TOKENS = 16
LOGIT_STRIDE = 10  # logits stored at positions 0, 10, 20, ... and the last one

# Shared attention shape: head_dim 32 != hidden 64 / 4 heads = 16, so the attention width
# (4 * 32 = 128) differs from the hidden size as in Qwen3-0.6B (16 * 128 = 2048 != 1024).
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 32
VOCAB = 512
ROPE_THETA = 1000000.0
RMS_EPS = 1e-6
INIT_STD = 0.2  # larger than the 0.02 default so attention patterns and routing matter
NORM_STD = 0.3  # layer norms: mean 1.0
QK_NORM_STD = 0.4  # per-head q/k norms: mean 1.0, large enough to visibly move the logits
# Special tokens of the toy tokenizer (appended after its 300 byte-level BPE entries, as Qwen's
# <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645 follow its BPE vocabulary).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BPE_SIZE = 300
BOS_ID, EOS_ID = BPE_SIZE, BPE_SIZE + 2  # config.json: bos = <|endoftext|>, eos = <|im_end|>

# Prompts are redrawn until no greedy argmax and (MoE) no top-k router choice is a near-tie
# (see well_conditioned_prompt); the float32 noise floor of these logits is ~1e-5. The router
# condition is on the LOGITS (as gptoss_tiny.py): a gap of 1e-3 between the k-th and (k+1)-th
# router PROBABILITY is unreachable for 300-token prompts (>= ~1 % of all token-layers fall below
# it for every router std tried, 0.05 to 2.5, so 3 layers x 316 tokens pass with probability
# ~1e-4), while a logit gap >= 1e-3 (probability gap >= ~1e-3 * p_k) is ~100x the float32 noise
# of the router logits. Both smallest gaps are stored per prompt.
MIN_ROUTER_LOGIT_GAP = 1e-3
MIN_GREEDY_MARGIN = 1e-2
MIN_FEATURE_EFFECT = 1e-2


@dataclass(frozen=True)
class Arch:
    name: str  # output folder
    moe: bool
    layers: int
    intermediate: int
    tie: bool
    seed: int
    experts: int = 0
    top_k: int = 0
    moe_intermediate: int = 0
    # router logits ~ N(0, (0.2 * 8)^2): the 2nd expert keeps a real share of the weight (with a
    # wider router the top-1 probability is ~1 and the top-k weighting is barely exercised)
    router_std: float = INIT_STD

    @property
    def cls(self):
        return Qwen3MoeForCausalLM if self.moe else Qwen3ForCausalLM


# The MoE has 3 layers and 32-wide experts (not 4 and 64) so that hf/ stays under 600 KB with 8
# experts in bfloat16; 32 keeps every matrix's inner dimension a multiple of the 32-value Q8_0
# block.
ARCHS = {
    "qwen3": Arch(name="qwen3", moe=False, layers=4, intermediate=128, tie=True, seed=20261206),
    "qwen3moe": Arch(name="qwen3moe", moe=True, layers=3, intermediate=128, tie=False,
                     seed=20261207, experts=8, top_k=2, moe_intermediate=32),
}


def config_json(a: Arch) -> dict:
    """config.json with the fields (and old-style rope_theta / rope_scaling) of the released
    Qwen3-0.6B / Qwen3-30B-A3B configs."""
    cfg = {
        "architectures": ["Qwen3MoeForCausalLM" if a.moe else "Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": INIT_STD,
        "intermediate_size": a.intermediate,
        "max_position_embeddings": 40960,
        "max_window_layers": a.layers,
        "model_type": "qwen3_moe" if a.moe else "qwen3",
        "num_attention_heads": HEADS,
        "num_hidden_layers": a.layers,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": RMS_EPS,
        "rope_scaling": None,
        "rope_theta": ROPE_THETA,
        "sliding_window": None,
        "tie_word_embeddings": a.tie,
        "torch_dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }
    if a.moe:
        cfg.update({
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "moe_intermediate_size": a.moe_intermediate,
            "norm_topk_prob": True,
            "num_experts": a.experts,
            "num_experts_per_tok": a.top_k,
            "output_router_logits": False,
            "router_aux_loss_coef": 0.001,
        })
    return cfg


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def make_tensors(a: Arch) -> dict[str, torch.Tensor]:
    """All checkpoint tensors under their on-disk HF names (bfloat16)."""
    rng = np.random.default_rng(a.seed)
    n = lambda *shape, std=INIT_STD, mean=0.0: rng.normal(mean, std, size=shape)  # noqa: E731
    t: dict[str, torch.Tensor] = {}
    q_w, kv_w = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    t["model.embed_tokens.weight"] = bf16(n(VOCAB, HIDDEN))
    for i in range(a.layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = bf16(n(HIDDEN, std=NORM_STD, mean=1.0))
        t[p + "post_attention_layernorm.weight"] = bf16(n(HIDDEN, std=NORM_STD, mean=1.0))
        t[p + "self_attn.q_proj.weight"] = bf16(n(q_w, HIDDEN))
        t[p + "self_attn.k_proj.weight"] = bf16(n(kv_w, HIDDEN))
        t[p + "self_attn.v_proj.weight"] = bf16(n(kv_w, HIDDEN))
        t[p + "self_attn.o_proj.weight"] = bf16(n(HIDDEN, q_w))
        t[p + "self_attn.q_norm.weight"] = bf16(n(HEAD_DIM, std=QK_NORM_STD, mean=1.0))
        t[p + "self_attn.k_norm.weight"] = bf16(n(HEAD_DIM, std=QK_NORM_STD, mean=1.0))
        if a.moe:
            t[p + "mlp.gate.weight"] = bf16(n(a.experts, HIDDEN, std=a.router_std))
            for e in range(a.experts):
                q = p + f"mlp.experts.{e}."
                t[q + "gate_proj.weight"] = bf16(n(a.moe_intermediate, HIDDEN))
                t[q + "up_proj.weight"] = bf16(n(a.moe_intermediate, HIDDEN))
                t[q + "down_proj.weight"] = bf16(n(HIDDEN, a.moe_intermediate))
        else:
            t[p + "mlp.gate_proj.weight"] = bf16(n(a.intermediate, HIDDEN))
            t[p + "mlp.up_proj.weight"] = bf16(n(a.intermediate, HIDDEN))
            t[p + "mlp.down_proj.weight"] = bf16(n(HIDDEN, a.intermediate))
    t["model.norm.weight"] = bf16(n(HIDDEN, std=NORM_STD, mean=1.0))
    if not a.tie:
        t["lm_head.weight"] = bf16(n(VOCAB, HIDDEN))
    return t


def rope_inv_freq() -> np.ndarray:
    return 1.0 / ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)


def sig6(x) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def expected_params(a: Arch, tensors) -> dict[str, torch.Tensor]:
    """transformers' in-memory parameter name -> expected value, from the on-disk tensors."""
    want = {}
    for name, value in tensors.items():
        if ".mlp.experts." not in name:
            want[name] = value.float()
    if a.moe:
        for i in range(a.layers):
            p = f"model.layers.{i}.mlp.experts."
            g = torch.stack([tensors[p + f"{e}.gate_proj.weight"] for e in range(a.experts)])
            u = torch.stack([tensors[p + f"{e}.up_proj.weight"] for e in range(a.experts)])
            d = torch.stack([tensors[p + f"{e}.down_proj.weight"] for e in range(a.experts)])
            want[p + "gate_up_proj"] = torch.cat([g, u], dim=1).float()  # [E, 2I, H], gate first
            want[p + "down_proj"] = d.float()  # [E, H, I]
    return want


def load_model(a: Arch, hf_dir: Path, tensors):
    kw = {"experts_implementation": "eager"} if a.moe else {}
    model, info = a.cls.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager",
                                        output_loading_info=True, **kw)
    model.eval()
    # No stop token: generate() fills unset fields of a passed GenerationConfig from the model's
    # generation_config, which config.json's eos_token_id would otherwise end early.
    model.generation_config.eos_token_id = None
    # "eager" experts = the plain per-expert loop of modeling_qwen3_moe.py (the default, grouped_mm,
    # computes the same but has no float64 kernel, which the noise-floor pass below needs).
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        check(not info.get(k), f"{hf_dir}: loading reported {k}: {info.get(k)}")
    if a.moe:
        check(model.config._experts_implementation == "eager", "experts implementation not eager")
    cfg = model.config
    check(cfg.head_dim == HEAD_DIM, f"head_dim {cfg.head_dim}")
    check(cfg.sliding_window is None, f"sliding_window {cfg.sliding_window}")
    if not a.moe:  # Qwen3MoeConfig has no layer_types
        check(all(t == "full_attention" for t in cfg.layer_types), f"layer_types {cfg.layer_types}")
    check(cfg.rope_parameters.get("rope_type") == "default" and
          float(cfg.rope_parameters["rope_theta"]) == ROPE_THETA, f"rope {cfg.rope_parameters}")
    params = dict(model.named_parameters())
    want = expected_params(a, tensors)
    check(sorted(params) == sorted(want),
          f"parameter names differ: {sorted(set(params) ^ set(want))}")
    for name, value in want.items():
        got = params[name].detach()
        check(got.dtype == torch.float32, f"{name} loaded as {got.dtype}")
        check(got.shape == value.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(value.shape)}")
        check(torch.equal(got, value), f"{name} differs from its file value")
    if a.tie:
        check(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
              "lm_head is not tied to embed_tokens")
    rot = model.model.rotary_emb
    check(np.allclose(rot.inv_freq.double().numpy(), rope_inv_freq(), rtol=1e-6, atol=0),
          f"RoPE inv_freq {rot.inv_freq}")
    check(rot.attention_scaling == 1.0, f"RoPE attention scale {rot.attention_scaling}")
    return model, len(want)


def set_norm_topk_prob(model, value: bool) -> None:
    """What loading a config.json with norm_topk_prob = value gives (the router copies the flag
    at construction, so the config alone is not enough for an already built model)."""
    model.config.norm_topk_prob = value
    for layer in model.model.layers:
        layer.mlp.gate.norm_topk_prob = value


def load_with_norm_topk_prob_false(a: Arch, hf_dir: Path, tensors):
    """The folder loaded with config.json's norm_topk_prob patched to false (as the Rust tests do)."""
    with tempfile.TemporaryDirectory() as tmp:
        alt = Path(tmp) / "hf"
        shutil.copytree(hf_dir, alt)
        cfg = json.loads((alt / "config.json").read_text())
        cfg["norm_topk_prob"] = False
        (alt / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        model, _ = load_model(a, alt, tensors)
    check(model.config.norm_topk_prob is False and
          all(layer.mlp.gate.norm_topk_prob is False for layer in model.model.layers),
          "norm_topk_prob = false not applied")
    return model


def numpy_forward(a: Arch, tensors, ids: list[int], norm_topk_prob: bool = True):
    """Float64 logits [P, vocab] computed from the on-disk tensors with the recipe the docstring
    states (independent of transformers). Also returns the router probabilities per layer."""
    w = lambda k: tensors[k].double().numpy()  # noqa: E731
    P, D = len(ids), HEAD_DIM
    x = w("model.embed_tokens.weight")[ids]
    ang = np.arange(P, dtype=np.float64)[:, None] * rope_inv_freq()[None, :]
    cos = np.cos(np.concatenate([ang, ang], -1))[:, None, :]
    sin = np.sin(np.concatenate([ang, ang], -1))[:, None, :]
    rms = lambda v, g: v / np.sqrt((v * v).mean(-1, keepdims=True) + RMS_EPS) * g  # noqa: E731
    rope = lambda v: v * cos + np.concatenate([-v[..., D // 2:], v[..., :D // 2]], -1) * sin  # noqa: E731
    silu = lambda v: v / (1.0 + np.exp(-v))  # noqa: E731
    mask = np.triu(np.full((P, P), -np.inf), 1)
    probs_per_layer = []
    for i in range(a.layers):
        p = f"model.layers.{i}."
        h = rms(x, w(p + "input_layernorm.weight"))
        q = (h @ w(p + "self_attn.q_proj.weight").T).reshape(P, HEADS, D)
        k = (h @ w(p + "self_attn.k_proj.weight").T).reshape(P, KV_HEADS, D)
        v = (h @ w(p + "self_attn.v_proj.weight").T).reshape(P, KV_HEADS, D)
        q = rope(rms(q, w(p + "self_attn.q_norm.weight")))  # per-head norm BEFORE RoPE
        k = rope(rms(k, w(p + "self_attn.k_norm.weight")))
        att = np.empty((P, HEADS, D))
        for hh in range(HEADS):
            kv = hh // (HEADS // KV_HEADS)  # GQA: query head hh reads KV head hh // group
            s = q[:, hh] @ k[:, kv].T / math.sqrt(D) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(P, HEADS * D) @ w(p + "self_attn.o_proj.weight").T
        h = rms(x, w(p + "post_attention_layernorm.weight"))
        if a.moe:
            logits = h @ w(p + "mlp.gate.weight").T
            pr = np.exp(logits - logits.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            probs_per_layer.append(pr)
            top = np.argsort(-pr, axis=-1, kind="stable")[:, :a.top_k]
            wt = np.take_along_axis(pr, top, -1)
            if norm_topk_prob:
                wt = wt / wt.sum(-1, keepdims=True)
            y = np.zeros_like(h)
            for e in range(a.experts):
                tok, slot = np.nonzero(top == e)
                if len(tok) == 0:
                    continue
                q_ = p + f"mlp.experts.{e}."
                hs = h[tok]
                act = silu(hs @ w(q_ + "gate_proj.weight").T) * (hs @ w(q_ + "up_proj.weight").T)
                y[tok] += wt[tok, slot][:, None] * (act @ w(q_ + "down_proj.weight").T)
        else:
            act = silu(h @ w(p + "mlp.gate_proj.weight").T) * (h @ w(p + "mlp.up_proj.weight").T)
            y = act @ w(p + "mlp.down_proj.weight").T
        x = x + y
    x = rms(x, w("model.norm.weight"))
    head = w("model.embed_tokens.weight" if a.tie else "lm_head.weight")
    return x @ head.T, probs_per_layer


def router_gaps(a: Arch, model, seq: torch.Tensor) -> tuple[float, float]:
    """Smallest gap between the k-th and (k+1)-th router logit (k = top_k, sorted descending), and
    the same for the router probabilities, over all tokens of seq and all layers; inf, inf for the
    dense model."""
    if not a.moe:
        return math.inf, math.inf
    with torch.inference_mode():
        out = model(seq, output_router_logits=True)
    lg, pg = [], []
    for rl in out.router_logits:
        srt = torch.sort(rl.float(), dim=-1, descending=True).values
        lg.append(float((srt[:, a.top_k - 1] - srt[:, a.top_k]).min()))
        srt = torch.sort(torch.softmax(rl.float(), dim=-1), dim=-1, descending=True).values
        pg.append(float((srt[:, a.top_k - 1] - srt[:, a.top_k]).min()))
    return min(lg), min(pg)


def greedy(model, ids: torch.Tensor, gen_cfg):
    with torch.inference_mode():
        res = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
    margins = [float(v[0] - v[1]) for v in (torch.topk(sc[0], 2).values for sc in res.scores)]
    return res, margins


def well_conditioned_prompt(a: Arch, models, rng, length: int, gen_cfg) -> list[int]:
    """Draws random prompts until one has no near-tie that float32 rounding in another engine
    could flip, for every model in `models`: over prompt + greedy continuation, every token's k-th
    and (k+1)-th router logits differ by >= MIN_ROUTER_LOGIT_GAP in every layer (MoE), and
    every greedy step's top-2 logits by >= MIN_GREEDY_MARGIN."""
    for _ in range(500):
        ids_list = rng.integers(0, VOCAB, size=length).tolist()
        ids = torch.tensor([ids_list])
        ok = True
        for model in models:
            res, margins = greedy(model, ids, gen_cfg)
            check(len(margins) == NEW_TOKENS, f"generate produced {len(margins)} tokens")
            if min(margins) < MIN_GREEDY_MARGIN or \
                    router_gaps(a, model, res.sequences)[0] < MIN_ROUTER_LOGIT_GAP:
                ok = False
                break
        if ok:
            return ids_list
    raise SystemExit(f"CHECK FAILED: no well-conditioned prompt of length {length} in 500 draws")


def gen_config(model) -> GenerationConfig:
    return GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                            pad_token_id=BOS_ID, output_scores=True, return_dict_in_generate=True)


def run_prompt(a: Arch, model, ids_list: list[int], tensors, norm_topk_prob: bool = True,
               model64=None) -> dict:
    """Logits, greedy continuation and consistency checks of one prompt on one model."""
    length = len(ids_list)
    ids = torch.tensor([ids_list])
    gen_cfg = gen_config(model)
    with torch.inference_mode():
        full = model(ids).logits[0]  # [P, vocab]
        scale = float(full.abs().max())
        ref64, _ = numpy_forward(a, tensors, ids_list, norm_topk_prob)
        np_diff = float(np.abs(ref64 - full.double().numpy()).max())
        # transformers' float32 vs our float64 recipe: float32 rounding only
        check(np_diff < 2e-5 * scale, f"numpy float64 forward vs transformers: {np_diff} "
              f"(max |logit| {scale})")
        f64_diff = None
        if model64 is not None:
            l64 = model64(ids).logits[0]
            f64_diff = float((l64 - full.double()).abs().max())
            np64 = float(np.abs(ref64 - l64.numpy()).max())
            # transformers computes the RoPE angles (position * inv_freq) and cos/sin in float32
            # even in float64 mode: ~1e-5 at position 300
            check(np64 < 2e-5 * scale, f"numpy float64 vs transformers float64: {np64}")
        cache = DynamicCache(config=model.config)
        steps = [model(ids[:, t:t + 1], cache=cache, use_cache=True).logits[0, -1]
                 for t in range(length)]
        diff = float((torch.stack(steps) - full).abs().max())
        check(diff < 2e-5 * scale, f"incremental vs full logits differ by {diff} (max |logit| {scale})")
    res, margins = greedy(model, ids, gen_cfg)
    greedy_ids = res.sequences[0, length:].tolist()
    check(len(greedy_ids) == NEW_TOKENS, f"generate produced {len(greedy_ids)} tokens")
    check(min(margins) >= MIN_GREEDY_MARGIN, f"greedy margin {min(margins)}")
    with torch.inference_mode():
        seq = ids
        for tok in greedy_ids:
            nxt = int(model(seq).logits[0, -1].argmax())
            check(nxt == tok, f"generate picked {tok}, full-pass argmax {nxt}")
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    gap, pgap = router_gaps(a, model, res.sequences)
    check(gap >= MIN_ROUTER_LOGIT_GAP, f"router logit gap {gap}")
    positions = sorted(set(range(0, length, LOGIT_STRIDE)) | {length - 1})
    if length <= 10:
        positions = list(range(length))
    out = {
        "input_ids": ids_list,
        "logit_positions": positions,
        "logits": [sig6(full[p].numpy()) for p in positions],
        "greedy_ids": greedy_ids,
        "greedy_top2_margin": sig6(margins),
        "max_abs_full_minus_incremental": diff,
    }
    if f64_diff is not None:
        out["max_abs_f32_minus_f64"] = f64_diff
    out["max_abs_f32_minus_numpy_f64"] = np_diff
    if a.moe:
        out["min_router_topk_logit_gap"] = gap
        out["min_router_topk_prob_gap"] = pgap
    print(f"  len {length:3d}: max|logit| {scale:.2f}, max|full - incremental| {diff:.3e}, "
          + (f"max|f32 - f64| {f64_diff:.3e}, " if f64_diff is not None else "")
          + f"max|f32 - numpy f64| {np_diff:.3e}, greedy {greedy_ids}, min top-2 margin "
          f"{min(margins):.4f}" + (f", min router gap: logits {gap:.2e}, probs {pgap:.2e}" if a.moe else ""))
    return out


def feature_effects(a: Arch, model, prompts: list[list[int]], alt_model=None) -> dict:
    """How much the Qwen3-specific pieces move the logits (all positions of the 150-token
    prompt), and (MoE) how often each expert is chosen over all prompts."""
    ids_list = prompts[1]
    ids = torch.tensor([ids_list])
    eff = {}
    with torch.no_grad():
        base = model(ids).logits[0]
        for which in ("q_norm", "k_norm", "both"):
            m = copy.deepcopy(model)
            for layer in m.model.layers:
                for nm in (("q_norm", "k_norm") if which == "both" else (which,)):
                    getattr(layer.self_attn, nm).weight.fill_(1.0)
            key = {"both": "qk_norm_weights_set_to_one", "q_norm": "q_norm_weights_set_to_one",
                   "k_norm": "k_norm_weights_set_to_one"}[which]
            eff[key] = float((m(ids).logits[0] - base).abs().max())
        if a.moe:
            eff["norm_topk_prob_false"] = float((alt_model(ids).logits[0] - base).abs().max())
            counts = np.zeros((a.layers, a.experts), dtype=np.int64)
            for pr in prompts:
                out = model(torch.tensor([pr]), output_router_logits=True)
                for i, rl in enumerate(out.router_logits):
                    counts[i] += torch.bincount(torch.topk(rl, a.top_k, dim=-1).indices.flatten(),
                                                minlength=a.experts).numpy()
            eff["expert_use_counts_per_layer_all_prompts"] = counts.tolist()
    eff["prompt_length"] = len(ids_list)
    eff["max_abs_logit"] = float(base.abs().max())
    eff["note"] = ("max |logits - logits with the change| over all positions of the prompt of "
                   "prompt_length tokens (the 150-token prompt of 'prompts'); the same weights "
                   "otherwise")
    for k, v in eff.items():
        if isinstance(v, float) and k != "max_abs_logit":
            check(v > MIN_FEATURE_EFFECT, f"feature {k} moves the logits by only {v}")
    return eff


def write_tokenizer(folder: Path) -> None:
    """A small byte-level BPE (256 byte symbols + merges learnt from a fixed text) with the Qwen2
    pre-tokenizer and special tokens, only so that llama.cpp's converter finds a tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    pat = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
           r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pat), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog " * 4,
            "a tiny qwen3 model for tests; per-head q/k norms, tied embeddings and experts."] * 8
    trainer = trainers.BpeTrainer(vocab_size=BPE_SIZE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, trainer=trainer)
    check(tok.get_vocab_size() == BPE_SIZE, f"BPE vocabulary {tok.get_vocab_size()}")
    tok.add_special_tokens(SPECIAL_TOKENS)
    for i, s in enumerate(SPECIAL_TOKENS):
        check(tok.token_to_id(s) == BPE_SIZE + i, f"{s} has id {tok.token_to_id(s)}")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "errors": "replace", "model_max_length": 40960, "split_special_tokens": False}))


CONVERTER_SHIM = r"""
import sys
llama_cpp, hf_dir, outfile = sys.argv[1:4]
sys.path.insert(0, llama_cpp)
import convert_hf_to_gguf as conv
from conversion.base import TextModel
# The toy tokenizer's hash is unknown to the converter; name the pre-tokenizer the real
# Qwen2/Qwen3 GGUFs carry ("qwen2") instead of failing.
TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", outfile, "--outtype", "auto"]
conv.main()
"""


def make_gguf(hf_dir: Path, out_file: Path, llama_cpp: Path) -> None:
    """Runs llama.cpp's convert_hf_to_gguf.py (with its own gguf-py) on a temporary copy of the
    HF folder plus a small tokenizer. The converter is unchanged; a shim only replaces its
    pre-tokenizer hash lookup (which knows real tokenizers only) by the value "qwen2"."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hf"
        shutil.copytree(hf_dir, src)
        write_tokenizer(src)
        shim = Path(tmp) / "shim.py"
        shim.write_text(CONVERTER_SHIM)
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("NO_LOCAL_GGUF", None)
        res = subprocess.run([sys.executable, str(shim), str(llama_cpp), str(src), str(out_file)],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout[-4000:], res.stderr[-4000:])
            raise SystemExit("CHECK FAILED: convert_hf_to_gguf.py failed")


def verify_gguf(a: Arch, gguf_path: Path, tensors) -> dict:
    """Every GGUF tensor against the HF tensors; returns names, types and metadata keys."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(gguf_path))
    hf_of = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight",
                 "ffn_norm.weight": "post_attention_layernorm.weight",
                 "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
                 "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
                 "attn_q_norm.weight": "self_attn.q_norm.weight",
                 "attn_k_norm.weight": "self_attn.k_norm.weight"}
    if a.moe:
        per_layer["ffn_gate_inp.weight"] = "mlp.gate.weight"
        exps = {"ffn_gate_exps.weight": "gate_proj", "ffn_up_exps.weight": "up_proj",
                "ffn_down_exps.weight": "down_proj"}
    else:
        per_layer.update({"ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                          "ffn_down.weight": "mlp.down_proj.weight"})
        exps = {}
    info = {"tensors": [], "metadata": {}}
    seen = set()
    for t in r.tensors:
        name, qtype = t.name, gguf.GGMLQuantizationType(t.tensor_type)
        check(name not in seen, f"duplicate GGUF tensor {name}")
        seen.add(name)
        check(qtype in (gguf.GGMLQuantizationType.BF16, gguf.GGMLQuantizationType.F32),
              f"{name} is {qtype.name}")
        # numpy shape of the GGUF tensor is the reverse of ggml's ne (= PyTorch order)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        vals = dequantize(t.data, qtype).reshape(shape).astype(np.float32)
        info["tensors"].append({"name": name, "type": qtype.name, "ggml_ne": [int(x) for x in t.shape],
                                "n_bytes": int(t.n_bytes)})
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            p = f"model.layers.{i}."
            if rest in per_layer:
                want = tensors[p + per_layer[rest]].float().numpy()
            elif rest in exps:
                want = torch.stack([tensors[p + f"mlp.experts.{e}.{exps[rest]}.weight"]
                                    for e in range(a.experts)]).float().numpy()
            else:
                raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
        elif name in hf_of and hf_of[name] in tensors:
            want = tensors[hf_of[name]].float().numpy()
        else:
            raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
        check(vals.shape == want.shape, f"{name}: GGUF shape {vals.shape} vs HF {want.shape}")
        # direct equality = no row permutation of attn_q / attn_k (unlike llama's converter)
        check(np.array_equal(vals, want), f"{name}: GGUF values differ from HF "
              f"(max |d| {np.abs(vals - want).max()})")
    for field in r.fields.values():
        if field.name.startswith("GGUF."):
            continue
        vt = [gguf.GGUFValueType(x).name for x in field.types]
        if field.name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            val = f"<array of {len(field.data)}>"
        else:
            val = field.contents()
        info["metadata"][field.name] = {"type": vt, "value": val}
    n_expected = (2 if a.tie else 3) + a.layers * (len(per_layer) + len(exps))
    check(len(r.tensors) == n_expected, f"{len(r.tensors)} GGUF tensors, expected {n_expected}")
    check(("output.weight" in seen) == (not a.tie), "output.weight presence does not follow the tie")
    return info


def build(a: Arch, out: Path, llama_cpp: Path) -> None:
    print(f"=== {a.name} ===")
    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    tensors = make_tensors(a)
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg = config_json(a)
    (hf_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    print("HF tensors on disk (name, shape, dtype), layer 0 and globals:")
    for name in sorted(tensors):
        if (".layers." not in name or ".layers.0." in name) and ".experts." not in name or \
                ".layers.0.mlp.experts.0." in name:
            dtype = str(tensors[name].dtype).replace("torch.", "")
            print(f"  {name:50s} {list(tensors[name].shape)} {dtype}")
    if a.moe:
        print(f"  (model.layers.N.mlp.experts.E.* for E = 0..{a.experts - 1} alike)")

    model, n_params = load_model(a, hf_dir, tensors)
    print(f"verified {n_params} loaded parameters against the file, RoPE inv_freq and scale 1"
          + (", lm_head tied to embed_tokens" if a.tie else ""))
    if a.moe:
        print("in-memory parameters of layer 0 (name, shape):")
        for name, prm in model.named_parameters():
            if ".layers.0.mlp" in name:
                print(f"  {name:50s} {list(prm.shape)}")
    alt = load_with_norm_topk_prob_false(a, hf_dir, tensors) if a.moe else None

    # prompts: drawn once, well-conditioned for every model they are run on
    rng = np.random.default_rng(SEED_PROMPTS)
    prompts = []
    for length in PROMPT_LENGTHS:
        models = [model] + ([alt] if a.moe and length in ALT_PROMPT_LENGTHS else [])
        prompts.append(well_conditioned_prompt(a, models, rng, length, gen_config(model)))

    # The same weights computed in float64 (RoPE angles stay float32 inside transformers): the
    # distance of the float32 logits from it is the float32 noise floor of this fixture.
    model64 = copy.deepcopy(model).double()
    print("norm_topk_prob = true:" if a.moe else "prompts:")
    main_out = [run_prompt(a, model, ids, tensors, True, model64) for ids in prompts]
    worst = max(p["max_abs_full_minus_incremental"] for p in main_out)
    alt_out = []
    if a.moe:
        print("norm_topk_prob = false:")
        alt64 = copy.deepcopy(alt).double()
        alt_out = [run_prompt(a, alt, ids, tensors, False, alt64) for ids in prompts
                   if len(ids) in ALT_PROMPT_LENGTHS]
        worst = max([worst] + [p["max_abs_full_minus_incremental"] for p in alt_out])
    effects = feature_effects(a, model, prompts, alt)
    print("feature effects:", json.dumps(effects))

    keys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "rope_theta", "rope_scaling",
            "rms_norm_eps", "tie_word_embeddings", "attention_bias", "max_position_embeddings",
            "bos_token_id", "eos_token_id"]
    if a.moe:
        keys += ["num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                 "decoder_sparse_step", "mlp_only_layers", "router_aux_loss_coef"]
    reference = {
        "generator": "scripts/reference/qwen3_tiny.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
    }
    if a.moe:
        reference["experts_implementation"] = "eager"
    reference.update({
        "weights": "hf/model.safetensors (all tensors bfloat16, loaded exactly into float32)"
                   + ("; lm_head tied to model.embed_tokens.weight (no lm_head.weight in the file)"
                      if a.tie else ""),
        "config": {k: cfg[k] for k in keys},
        "rope_inv_freq": sig6(model.model.rotary_emb.inv_freq.numpy()),
        "rope_attention_scaling": float(model.model.rotary_emb.attention_scaling),
        "logits_note": "logits[k] is the full-vocabulary row at position logit_positions[k] of one "
                       "forward pass over input_ids (6 significant digits); greedy_ids are the "
                       f"{NEW_TOKENS} tokens of generate(do_sample=False) with no stop token",
        "max_abs_full_minus_incremental": worst,
        "feature_effects": effects,
        "prompts": main_out,
    })
    if a.moe:
        reference["routing_note"] = (
            "router: p = softmax(h @ mlp.gate.weight^T) over all experts (float32); the top-k "
            "experts by p; weights = those p, divided by their sum when norm_topk_prob; no bias, "
            "no shared expert. min_router_topk_logit_gap / min_router_topk_prob_gap = smallest "
            "gap between the k-th and (k+1)-th largest router logit / probability over prompt + "
            "greedy continuation and all layers (prompts are drawn until the logit gap >= 1e-3)")
        reference["prompts_norm_topk_prob_false_note"] = (
            "the same weights and input_ids (the 7- and 150-token prompts) with config.json's "
            "norm_topk_prob patched to false; greedy_ids are this model's own continuation")
        reference["prompts_norm_topk_prob_false"] = alt_out
    ref_path = out / "reference.json"
    ref_path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    gguf_path = out / "tiny.gguf"
    make_gguf(hf_dir, gguf_path, llama_cpp)
    info = verify_gguf(a, gguf_path, tensors)
    print("GGUF tensors (name, type, ggml ne), layer 0 and globals, all equal to HF bit for bit:")
    for t in info["tensors"]:
        if not t["name"].startswith("blk.") or t["name"].startswith("blk.0."):
            print(f"  {t['name']:28s} {t['type']:5s} {t['ggml_ne']}")
    if a.tie:
        print("  (no output.weight: tied to token_embd.weight)")
    if a.moe:
        fused = any("gate_up" in t["name"] for t in info["tensors"])
        print("converter emits", "fused ffn_gate_up_exps" if fused else
              "separate ffn_gate_exps / ffn_up_exps / ffn_down_exps (experts stacked in order)")
    print("GGUF metadata:")
    for k, v in info["metadata"].items():
        print(f"  {k} ({'/'.join(v['type'])}) = {v['value']}")
    topk_keys = [k for k in info["metadata"] if "norm" in k and "eps" not in k]
    print(f"metadata keys mentioning a weights norm: {topk_keys or 'none'}")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print("summary:")
    for k, v in sizes.items():
        print(f"  {k:24s} {v / 1024:8.1f} KiB")
    print(f"  max |full - incremental| logits: {worst:.3e}")
    hf_total = sum(v for k, v in sizes.items() if k.startswith("hf/"))
    check(hf_total < 600 * 1024, f"hf/ is {hf_total} bytes")
    check(sizes["reference.json"] < 800 * 1024, "reference.json too large")
    check(sizes["tiny.gguf"] < 600 * 1024, "tiny.gguf too large")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-root", type=Path, default=DEFAULT_OUT_ROOT,
                    help="writes <out-root>/qwen3 and <out-root>/qwen3moe")
    ap.add_argument("--only", choices=sorted(ARCHS), help="build only this checkpoint")
    ap.add_argument("--llama-cpp", type=Path, default=DEFAULT_LLAMA_CPP)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    for key, arch in ARCHS.items():
        if args.only in (None, key):
            build(arch, args.out_root / arch.name, args.llama_cpp)


if __name__ == "__main__":
    main()
