#!/usr/bin/env python3
"""Tiny random Gemma 3 (text-only) checkpoint in the real Hugging Face layout, its transformers
reference outputs, and the same weights as a llama.cpp GGUF.

Writes into crates/wazn-models/tests/data/gemma3/ (or OUT_DIR):
  hf/config.json, hf/model.safetensors
      A Gemma3ForCausalLM (model_type "gemma3_text", the layout of google/gemma-3-1b-it) with
      all tensors in bfloat16 and tied embeddings (no lm_head.weight in the file). 8 layers with
      the released 5:1 pattern (layers 0-4 sliding, 5 global, 6-7 sliding), 4 query heads over 2
      KV heads, head_dim 32 (4 * 32 = 128 != hidden 64), q/k RMSNorm, four norms per layer,
      GELU-tanh MLP, sliding window 64, global RoPE theta 1e6 with linear scaling x8 (as
      gemma-3-4b and larger), local RoPE theta 1e4 unscaled, a final logit soft cap of 4.0 that
      bites (raw logits reach ~7.4; the released Gemma 3 configs have none). Weights ~ N(0, 0.2),
      norm weights w ~ N(0, 0.3) (final norm N(2, 0.3)), embedding ~ N(0, 0.07).
      config.json is in the transformers-5 form: `layer_types` and per-layer-type
      `rope_parameters` (no `rope_theta` / `rope_local_base_freq` / `rope_scaling` keys);
      `sliding_window_pattern` 6 is kept as the released configs carry it.
  reference.json
      transformers 5.24 outputs for that folder loaded back in float32 (eager attention):
      full-vocabulary logits at chosen positions of three prompts (lengths 7, 150, 300; the
      longer two exceed the 64-token sliding window), the 16-token greedy continuation of each
      prompt, the RoPE inverse frequencies per layer type, and how far the logits move when
      each Gemma 3 feature is removed ("feature_effects").
  tiny.gguf
      The same weights converted by llama.cpp's own convert_hf_to_gguf.py (--outtype auto, which
      picks bf16 for this bf16 checkpoint) into general.architecture "gemma3". The converter
      needs a tokenizer, so it runs on a temporary copy of hf/ with a small byte-level BPE
      tokenizer of exactly vocab_size entries added (see make_gguf()).

Model facts the reference pins down (all checked below, float32 compute):
  * embeddings are multiplied by sqrt(hidden) = 8.0 (a float32 buffer cast to the weight dtype;
    8.0 is exact in bf16 too) before layer 0;
  * every Gemma3RMSNorm computes x * rsqrt(mean(x^2) + eps) in float32 and multiplies by
    (1 + w) in float32 (w = the stored weight); q_norm / k_norm act per head on head_dim values,
    after the q/k projections and before RoPE;
  * layer: h = x + post_attention_norm(attn(input_norm(x)));
           out = h + post_feedforward_norm(mlp(pre_feedforward_norm(h)));
    mlp(x) = down(gelu_tanh(gate(x)) * up(x));
  * attention scores are q.k * query_pre_attn_scalar^-0.5 (= head_dim^-0.5 here, as llama.cpp
    assumes for all Gemma 3 sizes but 27B), no attention soft cap;
  * a sliding layer's query at position i sees keys j with i - 64 < j <= i, i.e. 64 keys
    including itself (transformers' sliding_window_overlay: kv_idx > q_idx - sliding_window;
    llama.cpp masks when p1 - p0 >= n_swa: the same window);
  * RoPE is rotate-half (NeoX) style; sliding layers use theta 1e4, global layers theta 1e6 with
    inv_freq divided by 8 (linear scaling = positions divided by 8);
  * logits = cap * tanh((final_norm(h) @ embed^T) / cap) with cap = final_logit_softcapping.

Checks made here (the script fails loudly if one does not hold):
  * every parameter transformers loaded equals its bfloat16 file value, lm_head is the embedding;
  * both RoPE inverse-frequency tables equal an independent formula, embed scale is 8.0;
  * the additive mask eager attention receives lets each query of a sliding layer see exactly
    min(i + 1, 64) keys (global layers: i + 1), and disabling the window leaves positions
    0..63 unchanged but moves position 64;
  * decoding one token at a time with the cache (DynamicCache: sliding layers keep the last
    63 keys) gives the logits of one full pass;
  * generate(do_sample=False) equals the argmax of full passes;
  * every GGUF tensor equals its HF tensor after gguf-py dequantization, norms as exactly
    float32(1) + float32(w).

What the converter writes (printed by the script; llama.cpp vendored in llama-cpp-python 0.3.36):
  tensors  token_embd.weight (BF16, ggml ne [64, 512]; no output.weight: llama.cpp reuses
           token_embd, the model is tied), output_norm.weight and per layer N: blk.N.attn_norm,
           blk.N.attn_q, blk.N.attn_k, blk.N.attn_v, blk.N.attn_output, blk.N.attn_q_norm,
           blk.N.attn_k_norm, blk.N.post_attention_norm, blk.N.ffn_norm (= HF
           pre_feedforward_layernorm), blk.N.ffn_gate, blk.N.ffn_up, blk.N.ffn_down,
           blk.N.post_ffw_norm (= HF post_feedforward_layernorm). 2-D weights BF16 (the bf16 file
           values unchanged); every *norm.weight F32 holding 1 + w: the converter upcasts bf16
           to float32 before Gemma3Model.modify_tensors adds 1.0, so the stored value is the
           float32 sum float32(1) + float32(w_bf16), the same number transformers multiplies by
           (most of these values are not representable in bf16). Gemma3Model.modify_tensors
           also cuts token_embd to len(tokenizer.json model.vocab) + len(added_tokens) rows; the
           toy tokenizer here has 512 vocab entries (+5 added, also in the vocab), so nothing is
           cut.
  metadata general.architecture = "gemma3" (general.name "Hf" from the folder name,
           general.size_label, general.file_type 32 = MOSTLY_BF16, general.quantization_version);
           gemma3.{context_length, embedding_length, feed_forward_length, block_count,
           attention.head_count, attention.head_count_kv, attention.key_length,
           attention.value_length, attention.layer_norm_rms_epsilon (float32 9.99999997e-07),
           attention.sliding_window, rope.freq_base (global theta), rope.freq_base_swa (local
           theta), rope.scaling.type = "linear", rope.scaling.factor = 8, final_logit_softcapping};
           tokenizer.ggml.{model "gpt2", pre "default", tokens, token_type, merges,
           bos/eos/padding_token_id 2/1/0, add_bos_token true, add_eos_token false}.
           No key gives query_pre_attn_scalar (llama.cpp uses 1/sqrt(head_dim) unless
           block_count is 62, the 27B, where 1/sqrt(n_embd/n_head)) and none gives the layer
           pattern (llama.cpp's gemma3 loader assumes period 6, layer i sliding iff i % 6 < 5 -
           the same as transformers' default layer_types). Local layers get freq_scale_swa = 1
           (unscaled) in llama.cpp, global ones 1/rope.scaling.factor.

Run (from the repository root; CPU only, about a minute, nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/gemma3_tiny.py \
      [--out crates/wazn-models/tests/data/gemma3] \
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
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from torch import nn
from transformers import DynamicCache, Gemma3ForCausalLM, GenerationConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "crates/wazn-models/tests/data/gemma3"
DEFAULT_LLAMA_CPP = Path("/work/llamacpp/build/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")

SEED_WEIGHTS = 20261206
SEED_PROMPTS = 7
PROMPT_LENGTHS = [7, 150, 300]
NEW_TOKENS = 16
LOGIT_STRIDE = 10  # logits stored at positions 0, 10, 20, ... and the last one

# Structure of gemma-3-1b-it / 4b, scaled down. Eight layers give the 5:1 pattern with a second
# sliding run after the global layer; intermediate 32 (not the 6x of the real models) keeps the
# bf16 folder under 600 KB with 2 KV heads and head_dim 32 (4 * 32 = 128 != hidden 64).
HIDDEN = 64
INTERMEDIATE = 32
LAYERS = 8
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 32
VOCAB = 512
SLIDING_WINDOW = 64
SLIDING_WINDOW_PATTERN = 6
LAYER_TYPES = ["sliding_attention" if (i + 1) % SLIDING_WINDOW_PATTERN else "full_attention"
               for i in range(LAYERS)]
ROPE_THETA_GLOBAL = 1_000_000.0
ROPE_THETA_LOCAL = 10_000.0
ROPE_LINEAR_FACTOR = 8.0
QUERY_PRE_ATTN_SCALAR = HEAD_DIM
FINAL_LOGIT_SOFTCAP = 4.0
RMS_EPS = 1e-6
INIT_STD = 0.2  # larger than the 0.02 default so attention patterns and every feature matter
NORM_STD = 0.3  # stored norm weights w ~ N(0, 0.3): the multiplier (1 + w) differs from 1
# The embedding is also the output matrix (tied). With std 0.2 a token's own embedding
# dominates the final hidden state and every greedy continuation repeats one token; a small
# embedding and a final norm multiplier (1 + w) ~ 3 keep the continuations varied and the raw
# logits (max ~8) well above the cap.
EMBED_STD = 0.07
FINAL_NORM_MEAN = 2.0
MIN_DISTINCT_GREEDY = 4
TOKENS_SPECIAL = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]  # ids 0..4
# Prompts are redrawn until no greedy argmax is a near-tie (see well_conditioned_prompt); the
# float32 noise floor of these logits is ~1e-5.
MIN_GREEDY_MARGIN = 1e-2
MIN_FEATURE_EFFECT = 1e-2


def config_json() -> dict:
    """config.json as transformers 5 writes a Gemma 3 text checkpoint (per-layer-type
    rope_parameters, explicit layer_types), plus the BC key sliding_window_pattern."""
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_logit_softcapping": None,
        "bos_token_id": 2,
        "dtype": "bfloat16",
        "eos_token_id": 1,
        "final_logit_softcapping": FINAL_LOGIT_SOFTCAP,
        "head_dim": HEAD_DIM,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": HIDDEN,
        "initializer_range": INIT_STD,
        "intermediate_size": INTERMEDIATE,
        "layer_types": LAYER_TYPES,
        "max_position_embeddings": 131072,
        "model_type": "gemma3_text",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pad_token_id": 0,
        "query_pre_attn_scalar": QUERY_PRE_ATTN_SCALAR,
        "rms_norm_eps": RMS_EPS,
        "rope_parameters": {
            "full_attention": {"factor": ROPE_LINEAR_FACTOR, "rope_theta": ROPE_THETA_GLOBAL,
                               "rope_type": "linear"},
            "sliding_attention": {"rope_theta": ROPE_THETA_LOCAL, "rope_type": "default"},
        },
        "sliding_window": SLIDING_WINDOW,
        "sliding_window_pattern": SLIDING_WINDOW_PATTERN,
        "tie_word_embeddings": True,
        "transformers_version": transformers.__version__,
        "use_bidirectional_attention": False,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def make_tensors() -> dict[str, torch.Tensor]:
    """All checkpoint tensors (HF names, PyTorch [out, in] layout); tied, so no lm_head."""
    rng = np.random.default_rng(SEED_WEIGHTS)
    n = lambda *shape, std=INIT_STD: rng.normal(0.0, std, size=shape)  # noqa: E731
    t: dict[str, torch.Tensor] = {}
    q_w, kv_w = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    t["model.embed_tokens.weight"] = bf16(n(VOCAB, HIDDEN, std=EMBED_STD))
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            t[p + norm + ".weight"] = bf16(n(HIDDEN, std=NORM_STD))
        t[p + "self_attn.q_proj.weight"] = bf16(n(q_w, HIDDEN))
        t[p + "self_attn.k_proj.weight"] = bf16(n(kv_w, HIDDEN))
        t[p + "self_attn.v_proj.weight"] = bf16(n(kv_w, HIDDEN))
        t[p + "self_attn.o_proj.weight"] = bf16(n(HIDDEN, q_w))
        t[p + "self_attn.q_norm.weight"] = bf16(n(HEAD_DIM, std=NORM_STD))
        t[p + "self_attn.k_norm.weight"] = bf16(n(HEAD_DIM, std=NORM_STD))
        t[p + "mlp.gate_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
        t[p + "mlp.up_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
        t[p + "mlp.down_proj.weight"] = bf16(n(HIDDEN, INTERMEDIATE))
    t["model.norm.weight"] = bf16(n(HIDDEN, std=NORM_STD) + FINAL_NORM_MEAN)
    return t


def rope_inv_freq(theta: float, factor: float = 1.0) -> np.ndarray:
    """Plain RoPE inverse frequencies for pair i of head_dim (rotate-half pairs i, i + d/2),
    divided by the linear scaling factor."""
    i = np.arange(HEAD_DIM // 2, dtype=np.float64)
    return 1.0 / theta ** (2 * i / HEAD_DIM) / factor


def sig6(x) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def load_and_verify(hf_dir: Path, tensors) -> Gemma3ForCausalLM:
    model = Gemma3ForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    cfg = model.config
    check(cfg._attn_implementation == "eager", "attention implementation not eager")
    check(cfg.layer_types == LAYER_TYPES, f"layer_types {cfg.layer_types}")
    check(cfg.rope_parameters == config_json()["rope_parameters"], f"rope {cfg.rope_parameters}")
    check(cfg.sliding_window == SLIDING_WINDOW, f"sliding_window {cfg.sliding_window}")
    for i, layer in enumerate(model.model.layers):
        want = SLIDING_WINDOW if LAYER_TYPES[i] == "sliding_attention" else None
        check(layer.self_attn.sliding_window == want, f"layer {i} sliding_window")
        check(layer.self_attn.scaling == QUERY_PRE_ATTN_SCALAR ** -0.5, f"layer {i} scaling")
    params = dict(model.named_parameters())
    n_checked = 0
    for name, value in tensors.items():
        got = params[name].detach()
        check(got.dtype == torch.float32, f"{name} loaded as {got.dtype}")
        check(torch.equal(got, value.float()), f"{name} differs from its bf16 file value")
        n_checked += 1
    check(n_checked == len(params), f"checked {n_checked} of {len(params)} parameters")
    check(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
          "lm_head is not tied to embed_tokens")
    emb = model.model.embed_tokens
    check(float(emb.embed_scale) == math.sqrt(HIDDEN) and emb.embed_scale.dtype == torch.float32,
          f"embed_scale {emb.embed_scale}")
    rot = model.model.rotary_emb
    for lt, theta, factor in (("full_attention", ROPE_THETA_GLOBAL, ROPE_LINEAR_FACTOR),
                              ("sliding_attention", ROPE_THETA_LOCAL, 1.0)):
        got = getattr(rot, f"{lt}_inv_freq").double().numpy()
        check(np.allclose(got, rope_inv_freq(theta, factor), rtol=1e-6, atol=0),
              f"{lt} inv_freq {got}")
        check(getattr(rot, f"{lt}_attention_scaling") == 1.0, f"{lt} attention scaling")
    print(f"verified {n_checked} parameters (lm_head tied), embed scale {float(emb.embed_scale)}, "
          f"RoPE inv_freq of both layer types")
    return model


def verify_masks(model, ids) -> None:
    """The additive masks eager attention receives: a sliding layer's query i sees
    min(i + 1, SLIDING_WINDOW) keys, all of them at positions i - W < j <= i; a global one i + 1."""
    seen: dict[int, torch.Tensor] = {}

    def grab(idx):
        def hook(_mod, _args, kwargs):
            seen[idx] = kwargs["attention_mask"].detach().clone()
        return hook

    handles = [layer.self_attn.register_forward_pre_hook(grab(i), with_kwargs=True)
               for i, layer in enumerate(model.model.layers)]
    with torch.inference_mode():
        model(ids)
    for h in handles:
        h.remove()
    p = ids.shape[1]
    q = torch.arange(p)[:, None]
    k = torch.arange(p)[None, :]
    for i, mask in seen.items():
        visible = mask[0, 0] == 0  # 0 = attend, dtype-min = masked
        check(bool(((mask[0, 0] == 0) | (mask[0, 0] == torch.finfo(mask.dtype).min)).all()),
              f"layer {i}: mask values other than 0 / min")
        if LAYER_TYPES[i] == "sliding_attention":
            want = (k <= q) & (k > q - SLIDING_WINDOW)
        else:
            want = k <= q
        check(bool((visible == want).all()), f"layer {i}: mask pattern")
    print(f"masks: sliding layers see keys i-{SLIDING_WINDOW} < j <= i ({SLIDING_WINDOW} keys "
          f"incl. itself), global layers j <= i")


def rmsnorm_f64(self, x):
    """Gemma3RMSNorm in float64 (transformers' own forward upcasts to float32 only)."""
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight.double())


def model_f64(model):
    m = copy.deepcopy(model).double()
    for mod in m.modules():
        if type(mod).__name__ == "Gemma3RMSNorm":
            mod.forward = types.MethodType(rmsnorm_f64, mod)
    return m


def well_conditioned_prompt(model, rng, length: int, gen_cfg) -> list[int]:
    """Draws random prompts until every greedy step's top-2 logits differ by
    >= MIN_GREEDY_MARGIN (no near-tie that float32 rounding in another engine could flip) and
    the continuation has >= MIN_DISTINCT_GREEDY different tokens (not one token repeated)."""
    for _ in range(200):
        ids_list = rng.integers(0, VOCAB, size=length).tolist()
        ids = torch.tensor([ids_list])
        with torch.inference_mode():
            res = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
        margins = [float(v[0] - v[1]) for v in (torch.topk(sc[0], 2).values for sc in res.scores)]
        distinct = len(set(res.sequences[0, length:].tolist()))
        if min(margins) >= MIN_GREEDY_MARGIN and distinct >= MIN_DISTINCT_GREEDY:
            return ids_list
    raise SystemExit(f"CHECK FAILED: no well-conditioned prompt of length {length} in 200 draws")


def run_reference(model: Gemma3ForCausalLM) -> tuple[dict, float, list[torch.Tensor]]:
    rng = np.random.default_rng(SEED_PROMPTS)
    # The same weights computed in float64 (RoPE angles and the eager softmax stay float32
    # inside transformers): the distance of the float32 logits from it is about the float32
    # noise floor.
    model64 = model_f64(model)
    prompts_out = []
    prompt_ids = []
    worst = 0.0
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                               pad_token_id=model.config.pad_token_id, output_scores=True,
                               return_dict_in_generate=True)
    for length in PROMPT_LENGTHS:
        ids_list = well_conditioned_prompt(model, rng, length, gen_cfg)
        ids = torch.tensor([ids_list])
        prompt_ids.append(ids)
        with torch.inference_mode():
            full = model(ids).logits[0]  # [P, vocab]
            f64_diff = float((model64(ids).logits[0] - full.double()).abs().max())
            cache = DynamicCache(config=model.config)
            steps = [model(ids[:, t:t + 1], cache=cache, use_cache=True).logits[0, -1]
                     for t in range(length)]
            diff = float((torch.stack(steps) - full).abs().max())
            worst = max(worst, diff)
            scale = float(full.abs().max())
            check(diff < 2e-5 * scale, f"incremental vs full logits differ by {diff} (max |logit| {scale})")
            # An explicit all-ones mask: without one, generate() masks out every prompt token
            # equal to pad_token_id (the random prompts contain id 0).
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
            greedy = out.sequences[0, length:].tolist()
            check(len(greedy) == NEW_TOKENS, f"generate produced {len(greedy)} tokens")
            seq = ids
            for tok in greedy:
                nxt = int(model(seq).logits[0, -1].argmax())
                check(nxt == tok, f"generate picked {tok}, full-pass argmax {nxt}")
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
            margins = []
            for s in out.scores:
                top2 = torch.topk(s[0], 2).values
                margins.append(float(top2[0] - top2[1]))
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
            "max_abs_f32_minus_f64": f64_diff,
        })
        print(f"prompt len {length:3d}: max|logit| {scale:.3f}, max|full - incremental| = {diff:.3e}, "
              f"max|f32 - f64| {f64_diff:.3e}, greedy {greedy}, min top-2 margin {min(margins):.4f}")
    return {"prompts": prompts_out}, worst, prompt_ids


def softcap_stats(model, ids) -> dict:
    """Logits before the cap: how far above the cap they go."""
    with torch.inference_mode():
        h = model.model(ids).last_hidden_state
        raw = model.lm_head(h)[0]
    cap = model.config.final_logit_softcapping
    capped = cap * torch.tanh(raw / cap)
    return {"max_abs_logit_before_cap": float(raw.abs().max()),
            "fraction_of_logits_above_cap": float((raw.abs() > cap).double().mean()),
            "max_abs_cap_change": float((capped - raw).abs().max())}


def identity_norms(m, names):
    for layer in m.model.layers:
        for nm in names:
            owner = layer.self_attn if nm in ("q_norm", "k_norm") else layer
            setattr(owner, nm, nn.Identity())


def feature_effects(model, prompt_ids) -> dict:
    """max |logits(model) - logits(model with one feature removed)| over all positions of the
    300-token prompt (float32 copies); plus sliding-window sanity on positions < and = W."""
    ids = prompt_ids[-1]
    with torch.inference_mode():
        base = model(ids).logits[0]

    def effect(mutate):
        m = copy.deepcopy(model)
        mutate(m)
        with torch.inference_mode():
            return (m(ids).logits[0] - base).abs()

    def no_softcap(m):
        m.config.final_logit_softcapping = None

    def no_embed_scale(m):
        m.model.embed_tokens.embed_scale.fill_(1.0)

    def no_window(m):
        m.config.sliding_window = 4096  # every key of the prompt inside the window

    def set_inv_freq(layer_type, theta, factor=1.0):
        def mutate(m):
            rot = m.model.rotary_emb
            getattr(rot, f"{layer_type}_inv_freq").copy_(
                torch.from_numpy(rope_inv_freq(theta, factor)).float())
        return mutate

    def attn_scale_27b(m):
        for layer in m.model.layers:
            layer.self_attn.scaling = (HIDDEN / HEADS) ** -0.5

    features = {
        "qk_norm_identity": lambda m: identity_norms(m, ["q_norm", "k_norm"]),
        "final_softcap_removed": no_softcap,
        "post_norms_removed": lambda m: identity_norms(
            m, ["post_attention_layernorm", "post_feedforward_layernorm"]),
        "embed_not_scaled_by_sqrt_hidden": no_embed_scale,
        "sliding_window_disabled": no_window,
        "local_rope_base_equal_to_global": set_inv_freq("sliding_attention", ROPE_THETA_GLOBAL),
        "global_rope_linear_scaling_removed": set_inv_freq("full_attention", ROPE_THETA_GLOBAL),
        "attention_scale_27b_rule_hidden_over_heads": attn_scale_27b,
    }
    out = {}
    for name, mutate in features.items():
        d = effect(mutate)
        out[name] = float(d.max())
        check(out[name] > MIN_FEATURE_EFFECT, f"feature {name} moves logits by only {out[name]}")
        if name == "sliding_window_disabled":
            before = float(d[:SLIDING_WINDOW].max())
            at = float(d[SLIDING_WINDOW].max())
            check(before < 1e-5, f"window disabled changes positions < {SLIDING_WINDOW} by {before}")
            check(at > 1e-4, f"window disabled leaves position {SLIDING_WINDOW} unchanged ({at})")
            out["sliding_window_disabled_positions_below_window"] = before
            out["sliding_window_disabled_at_position_window"] = at
    return out


def write_tokenizer(folder: Path) -> None:
    """A small byte-level BPE (256 byte symbols + merges learnt from a fixed text + 5 special
    tokens = exactly VOCAB entries) with the GPT-2 pre-tokenizer (llama.cpp pre "default"), only
    so that llama.cpp's converter finds a tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    words = ("the quick brown fox jumps over the lazy dog while a tiny gemma model for tests "
             "checks sliding window attention rotary position embeddings soft capping norms "
             "queries keys values heads layers logits tokens vocabulary merges bytes pairs "
             "numbers 0123456789 alpha beta gamma delta epsilon zeta theta lambda sigma omega "
             "morning evening river mountain forest garden window kitchen station library").split()
    rng = np.random.default_rng(3)
    text = [" ".join(rng.choice(words, size=24).tolist()) for _ in range(400)]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=TOKENS_SPECIAL)
    tok.train_from_iterator(text, trainer=trainer)
    check(tok.get_vocab_size(with_added_tokens=True) == VOCAB,
          f"toy tokenizer has {tok.get_vocab_size(with_added_tokens=True)} entries, want {VOCAB}")
    for i, s in enumerate(TOKENS_SPECIAL):
        check(tok.token_to_id(s) == i, f"{s} has id {tok.token_to_id(s)}")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False}))


CONVERTER_SHIM = r"""
import sys
llama_cpp, hf_dir, outfile = sys.argv[1:4]
sys.path.insert(0, llama_cpp)
import convert_hf_to_gguf as conv
from conversion.base import TextModel
# The toy tokenizer's hash is unknown to the converter; name the plain GPT-2 byte-level
# pre-tokenizer it uses ("default", known to llama.cpp) instead of failing.
TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", outfile, "--outtype", "auto"]
conv.main()
"""


def make_gguf(hf_dir: Path, out_file: Path, llama_cpp: Path) -> None:
    """Runs llama.cpp's convert_hf_to_gguf.py (with its own gguf-py) on a temporary copy of the
    HF folder plus a small tokenizer. The converter is unchanged; a shim only replaces its
    pre-tokenizer hash lookup (which knows real tokenizers only) by the value "default"."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hf"
        shutil.copytree(hf_dir, src)
        write_tokenizer(src)
        tj = json.loads((src / "tokenizer.json").read_text())
        n_vocab_real = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
        check(n_vocab_real >= VOCAB, f"converter would cut token_embd to {n_vocab_real} rows")
        shim = Path(tmp) / "shim.py"
        shim.write_text(CONVERTER_SHIM)
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("NO_LOCAL_GGUF", None)
        res = subprocess.run([sys.executable, str(shim), str(llama_cpp), str(src), str(out_file)],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout[-4000:], res.stderr[-4000:])
            raise SystemExit("CHECK FAILED: convert_hf_to_gguf.py failed")


def verify_gguf(gguf_path: Path, tensors) -> dict:
    """Every GGUF tensor against the HF tensors; returns names, types and metadata."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(gguf_path))
    hf_of = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight",
                 "attn_q.weight": "self_attn.q_proj.weight",
                 "attn_k.weight": "self_attn.k_proj.weight",
                 "attn_v.weight": "self_attn.v_proj.weight",
                 "attn_output.weight": "self_attn.o_proj.weight",
                 "attn_q_norm.weight": "self_attn.q_norm.weight",
                 "attn_k_norm.weight": "self_attn.k_norm.weight",
                 "post_attention_norm.weight": "post_attention_layernorm.weight",
                 "ffn_norm.weight": "pre_feedforward_layernorm.weight",
                 "ffn_gate.weight": "mlp.gate_proj.weight",
                 "ffn_up.weight": "mlp.up_proj.weight",
                 "ffn_down.weight": "mlp.down_proj.weight",
                 "post_ffw_norm.weight": "post_feedforward_layernorm.weight"}
    info = {"tensors": [], "metadata": {}, "norms_not_bf16_representable": 0, "norm_values": 0}
    for t in r.tensors:
        name, qtype = t.name, gguf.GGMLQuantizationType(t.tensor_type)
        # numpy shape of the GGUF tensor is the reverse of ggml's ne (= PyTorch order)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        vals = dequantize(t.data, qtype).reshape(shape).astype(np.float32)
        info["tensors"].append({"name": name, "type": qtype.name, "ggml_ne": [int(x) for x in t.shape],
                                "n_bytes": int(t.n_bytes)})
        if name.startswith("blk."):
            _, i, rest = name.split(".", 2)
            check(rest in per_layer, f"unexpected GGUF tensor {name}")
            hf_name = f"model.layers.{i}." + per_layer[rest]
        else:
            check(name in hf_of, f"unexpected GGUF tensor {name}")
            hf_name = hf_of[name]
        want = tensors[hf_name].float().numpy()
        if name.endswith("norm.weight"):
            check(qtype == gguf.GGMLQuantizationType.F32, f"{name} is {qtype.name}")
            want = np.float32(1.0) + want  # float32 sum, as transformers' (1.0 + w.float())
            as_bf16 = torch.from_numpy(want).to(torch.bfloat16).float().numpy()
            info["norms_not_bf16_representable"] += int((as_bf16 != want).sum())
            info["norm_values"] += want.size
        else:
            check(qtype == gguf.GGMLQuantizationType.BF16, f"{name} is {qtype.name}")
        check(vals.shape == want.shape, f"{name}: GGUF shape {vals.shape} vs HF {want.shape}")
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
    n_expected = 2 + LAYERS * len(per_layer)
    check(len(r.tensors) == n_expected, f"{len(r.tensors)} GGUF tensors, expected {n_expected}")
    md = {k: v["value"] for k, v in info["metadata"].items()}
    expect = {"general.architecture": "gemma3", "gemma3.block_count": LAYERS,
              "gemma3.embedding_length": HIDDEN, "gemma3.feed_forward_length": INTERMEDIATE,
              "gemma3.attention.head_count": HEADS, "gemma3.attention.head_count_kv": KV_HEADS,
              "gemma3.attention.key_length": HEAD_DIM, "gemma3.attention.value_length": HEAD_DIM,
              "gemma3.attention.sliding_window": SLIDING_WINDOW,
              "gemma3.rope.freq_base": ROPE_THETA_GLOBAL, "gemma3.rope.freq_base_swa": ROPE_THETA_LOCAL,
              "gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": ROPE_LINEAR_FACTOR,
              "gemma3.final_logit_softcapping": FINAL_LOGIT_SOFTCAP,
              "tokenizer.ggml.pre": "default"}
    for k, v in expect.items():
        got = md.get(k)
        ok = (isinstance(v, float) and got is not None and abs(float(got) - v) <= 1e-6 * abs(v)) or got == v
        check(ok, f"GGUF metadata {k} = {got!r}, expected {v!r}")
    tok_embd = next(t for t in info["tensors"] if t["name"] == "token_embd.weight")
    check(tok_embd["ggml_ne"] == [HIDDEN, VOCAB], f"token_embd ne {tok_embd['ggml_ne']}")
    check(not any(t["name"] == "output.weight" for t in info["tensors"]), "unexpected output.weight")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--llama-cpp", type=Path, default=DEFAULT_LLAMA_CPP)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out = args.out
    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)

    tensors = make_tensors()
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    (hf_dir / "config.json").write_text(json.dumps(config_json(), indent=2, sort_keys=True) + "\n")
    print("HF tensors (name, shape, dtype):")
    for name in sorted(tensors):
        if ".layers." not in name or ".layers.0." in name:
            dtype = str(tensors[name].dtype).replace("torch.", "")
            print(f"  {name:50s} {list(tensors[name].shape)} {dtype}")

    model = load_and_verify(hf_dir, tensors)
    verify_masks(model, torch.tensor([np.random.default_rng(1).integers(0, VOCAB, 150).tolist()]))
    ref, worst, prompt_ids = run_reference(model)
    cap_stats = softcap_stats(model, prompt_ids[-1])
    print(f"soft cap {FINAL_LOGIT_SOFTCAP} on the 300-token prompt: max |logit| before the cap "
          f"{cap_stats['max_abs_logit_before_cap']:.3f}, "
          f"{100 * cap_stats['fraction_of_logits_above_cap']:.2f}% of logits above the cap, "
          f"max change {cap_stats['max_abs_cap_change']:.3f}")
    check(cap_stats["max_abs_logit_before_cap"] > 1.5 * FINAL_LOGIT_SOFTCAP, "soft cap does not bite")
    effects = feature_effects(model, prompt_ids)
    print("feature effects (max |delta logit| on the 300-token prompt, float32):")
    for k, v in effects.items():
        print(f"  {k:48s} {v:.4g}")

    cfg = config_json()
    rot = model.model.rotary_emb
    reference = {
        "generator": "scripts/reference/gemma3_tiny.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "weights": "hf/model.safetensors (all tensors bf16; tied: no lm_head.weight, logits use "
                   "model.embed_tokens.weight)",
        "config": {k: cfg[k] for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "sliding_window", "layer_types",
            "rope_parameters", "rms_norm_eps", "query_pre_attn_scalar", "final_logit_softcapping",
            "attn_logit_softcapping", "hidden_activation", "tie_word_embeddings")},
        "embed_scale": float(model.model.embed_tokens.embed_scale),
        "attention_scale": float(QUERY_PRE_ATTN_SCALAR ** -0.5),
        "rope_inv_freq": {lt: sig6(getattr(rot, f"{lt}_inv_freq").numpy())
                          for lt in ("full_attention", "sliding_attention")},
        "sliding_window_note": f"a query at position i of a sliding layer attends to keys j with "
                               f"i - {SLIDING_WINDOW} < j <= i ({SLIDING_WINDOW} keys including itself)",
        "final_softcap_stats": cap_stats,
        "feature_effects": effects,
        "feature_effects_note": "max |logits - logits with the feature removed| over all 300 positions "
                                "of prompts[2], float32 copies of the model; post_norms_removed drops "
                                "post_attention_layernorm and post_feedforward_layernorm; "
                                "qk_norm_identity replaces q_norm/k_norm by the identity",
        "logits_note": "logits[k] is the full-vocabulary row at position logit_positions[k] of one "
                       "forward pass over input_ids (6 significant digits), after the final soft cap; "
                       f"greedy_ids are the {NEW_TOKENS} tokens of generate(do_sample=False) with no "
                       "stop token",
        "max_abs_full_minus_incremental": worst,
        **ref,
    }
    ref_path = out / "reference.json"
    ref_path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    gguf_path = out / "tiny.gguf"
    make_gguf(hf_dir, gguf_path, args.llama_cpp)
    info = verify_gguf(gguf_path, tensors)
    print("GGUF tensors (name, type, ggml ne):")
    for t in info["tensors"]:
        if not t["name"].startswith("blk.") or t["name"].startswith("blk.0."):
            print(f"  {t['name']:34s} {t['type']:6s} {t['ggml_ne']}")
    print(f"GGUF norms: F32 = float32(1) + float32(w) exactly; {info['norms_not_bf16_representable']} "
          f"of {info['norm_values']} such values are not representable in bf16")
    print("GGUF metadata:")
    for k, v in info["metadata"].items():
        print(f"  {k} ({'/'.join(v['type'])}) = {v['value']}")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print("summary:")
    for k, v in sizes.items():
        print(f"  {k:24s} {v / 1024:8.1f} KiB")
    print(f"  max |full - incremental| logits: {worst:.3e}")
    hf_total = sum(v for k, v in sizes.items() if k.startswith("hf/"))
    check(hf_total < 600 * 1024, f"hf/ is {hf_total} bytes")
    check(sizes["reference.json"] < 800 * 1024, "reference.json too large")
    check(sizes["tiny.gguf"] < 700 * 1024, "tiny.gguf too large")


if __name__ == "__main__":
    main()
