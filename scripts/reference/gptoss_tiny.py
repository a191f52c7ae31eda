#!/usr/bin/env python3
"""Tiny random gpt-oss checkpoint in the real Hugging Face layout, its transformers reference
outputs, and the same weights as a llama.cpp GGUF.

Writes into crates/wazn-models/tests/data/gptoss/ (or OUT_DIR):
  hf/config.json, hf/model.safetensors
      A GptOssForCausalLM with the released checkpoint's layout: non-expert tensors in bfloat16,
      expert matrices as MXFP4 `*_blocks` / `*_scales` (uint8) in the original
      [experts, out_rows, in/32, 16] layout, gate/up rows interleaved (even = gate, odd = up),
      expert biases in bfloat16, `quantization_config.quant_method = "mxfp4"`.
      The MXFP4 payload comes from quantizing random dense expert weights with this script's
      own E2M1/E8M0 quantizer.
  reference.json
      transformers 5.24 outputs for that folder loaded back in float32 (MXFP4 dequantized on
      CPU, eager attention): full-vocabulary logits at chosen positions of three prompts
      (lengths 7, 150, 300; the longer two exceed the 128-token sliding window), the 16-token
      greedy continuation of each prompt, and the model facts an implementation needs.
  tiny.gguf
      The same weights converted by llama.cpp's own convert_hf_to_gguf.py (general.architecture
      "gpt-oss", MXFP4 = ggml type 39). The converter needs a tokenizer, so it runs on a
      temporary copy of hf/ with a small byte-level BPE tokenizer added (see make_gguf()).

Checks made here (the script fails loudly if one does not hold):
  * the expert weights transformers dequantized equal this script's numpy dequantization of the
    stored blocks/scales bit for bit, and every other parameter equals its bfloat16 file value;
  * transformers' YaRN inverse frequencies and cos/sin scale equal an independent formula;
  * decoding one token at a time with a KV cache gives the logits of one full pass;
  * generate(do_sample=False) equals the argmax of full passes;
  * gguf-py's dequantization of every MXFP4 tensor in the GGUF equals the HF dequantization,
    and every other GGUF tensor equals its HF tensor.

What the converter writes (printed by the script; llama.cpp vendored in llama-cpp-python 0.3.36):
  tensors  token_embd.weight, output_norm.weight, output.weight and per layer N: blk.N.attn_norm,
           blk.N.post_attention_norm (= the MLP pre-norm), blk.N.attn_{q,k,v,output}.{weight,bias},
           blk.N.attn_sinks.weight, blk.N.ffn_gate_inp.{weight,bias} (router),
           blk.N.ffn_{gate,up,down}_exps.{weight,bias}. gate/up are SPLIT (gate = even rows, up =
           odd rows of gate_up_proj), not fused. Expert weights MXFP4 (39); 2-D attention,
           embedding and output weights BF16; norms, biases, sinks and the router weight F32.
  metadata general.architecture = "gpt-oss"; gpt-oss.{block_count, context_length,
           embedding_length, feed_forward_length, expert_feed_forward_length, expert_count,
           expert_used_count, attention.head_count, attention.head_count_kv, attention.key_length,
           attention.value_length, attention.layer_norm_rms_epsilon, attention.sliding_window,
           rope.freq_base, rope.scaling.type, rope.scaling.factor,
           rope.scaling.original_context_length, rope.scaling.yarn_beta_fast,
           rope.scaling.yarn_beta_slow}; general.{file_type, quantization_version}; tokenizer.ggml.*.
           No key says "truncate = false" and none names the layer pattern (llama.cpp assumes
           sliding on even layers).

Run (from the repository root; CPU only, about a minute, nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/gptoss_tiny.py \
      [--out crates/wazn-models/tests/data/gptoss] \
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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import DynamicCache, GenerationConfig, GptOssForCausalLM, Mxfp4Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "crates/wazn-models/tests/data/gptoss"
DEFAULT_LLAMA_CPP = Path("/work/llamacpp/build/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")

SEED_WEIGHTS = 20261128
SEED_PROMPTS = 7
PROMPT_LENGTHS = [7, 150, 300]
NEW_TOKENS = 16
LOGIT_STRIDE = 10  # logits stored at positions 0, 10, 20, ... and the last one

# Structure of the released models, scaled down. head_dim 32 (not 64) and vocab 512 keep the
# folder under 600 KB with 4 layers; 4 * 32 = 128 != hidden 64 still separates the attention
# width from the hidden size as in the real model (64 * 64 = 4096 != 2880).
HIDDEN = 64
INTERMEDIATE = 64  # per expert; a multiple of the 32-value MXFP4 block
LAYERS = 4
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 32
EXPERTS = 8
TOP_K = 4
VOCAB = 512
SLIDING_WINDOW = 128
ROPE_THETA = 150000.0
YARN = {
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "factor": 32.0,
    "original_max_position_embeddings": 4096,
    "rope_type": "yarn",
    "truncate": False,
}
INIT_STD = 0.2  # larger than the 0.02 default so routing, sinks and attention patterns matter
EXPERT_STD = 0.4  # large enough that the SwiGLU clamp at +-7 is reached sometimes
BIAS_STD = 0.5
# Prompts are redrawn until no top-4 router choice and no greedy argmax is a near-tie (see
# well_conditioned_prompt); the float32 noise floor of these logits is ~1e-4.
MIN_ROUTER_GAP = 1e-3
MIN_GREEDY_MARGIN = 1e-2

# OCP MXFP4: 4-bit E2M1 code -> value (bit 3 = sign); scale byte e means 2^(e - 127).
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)


def config_json() -> dict:
    """config.json with the fields (and old-style rope_scaling) the released gpt-oss config has."""
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "experts_per_token": TOP_K,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initial_context_length": 4096,
        "initializer_range": INIT_STD,
        "intermediate_size": INTERMEDIATE,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(LAYERS)],
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": HEADS,
        "num_experts_per_tok": TOP_K,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "num_local_experts": EXPERTS,
        "output_router_logits": False,
        "pad_token_id": 2,
        "quantization_config": {
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
            "quant_method": "mxfp4",
        },
        "rms_norm_eps": 1e-05,
        "rope_scaling": dict(YARN),
        "rope_theta": ROPE_THETA,
        "router_aux_loss_coef": 0.9,
        "sliding_window": SLIDING_WINDOW,
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def quantize_mxfp4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w [..., K] float32 (K % 32 == 0) -> (blocks [..., K/32, 16] u8, scales [..., K/32] u8).

    Per 32-value block: exponent e = floor(log2(amax)) - 2 so amax / 2^e lies in [4, 8); each
    value / 2^e is rounded to the nearest E2M1 magnitude (ties to the lower code), above 6 clipped.
    Byte b of a block holds element 2b in its low nibble and 2b+1 in its high nibble (OpenAI/HF).
    """
    *lead, k = w.shape
    assert k % 32 == 0
    x = w.reshape(*lead, k // 32, 32).astype(np.float64)
    amax = np.abs(x).max(axis=-1)
    exp = np.where(amax > 0, np.floor(np.log2(np.maximum(amax, 1e-30))) - 2, -127).astype(np.int64)
    assert exp.min() >= -127 and exp.max() <= 127
    scaled = x / np.ldexp(1.0, exp)[..., None]
    mags = E2M1[:8].astype(np.float64)
    idx = np.abs(np.abs(scaled)[..., None] - mags).argmin(axis=-1)  # nearest magnitude code 0..7
    codes = (idx | np.where(scaled < 0, 8, 0)).astype(np.uint8)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (exp + 127).astype(np.uint8)
    return blocks, scales


def dequantize_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """blocks [..., G, 16] u8, scales [..., G] u8 -> float32 [..., G*32] in file row order."""
    lo = E2M1[blocks & 0x0F]
    hi = E2M1[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)
    vals = vals * np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127)[..., None].astype(np.float32)
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32).astype(np.float32)


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def make_tensors() -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """All checkpoint tensors (HF names) and the dense expert matrices the MXFP4 data encodes."""
    rng = np.random.default_rng(SEED_WEIGHTS)
    n = lambda *shape, std=INIT_STD, mean=0.0: rng.normal(mean, std, size=shape)  # noqa: E731
    t: dict[str, torch.Tensor] = {}
    dense: dict[str, np.ndarray] = {}
    q_w, kv_w = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    t["model.embed_tokens.weight"] = bf16(n(VOCAB, HIDDEN))
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
        t[p + "post_attention_layernorm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
        for proj, rows in (("q_proj", q_w), ("k_proj", kv_w), ("v_proj", kv_w)):
            t[p + f"self_attn.{proj}.weight"] = bf16(n(rows, HIDDEN))
            t[p + f"self_attn.{proj}.bias"] = bf16(n(rows, std=BIAS_STD))
        t[p + "self_attn.o_proj.weight"] = bf16(n(HIDDEN, q_w))
        t[p + "self_attn.o_proj.bias"] = bf16(n(HIDDEN, std=BIAS_STD))
        t[p + "self_attn.sinks"] = bf16(n(HEADS, std=BIAS_STD))
        t[p + "mlp.router.weight"] = bf16(n(EXPERTS, HIDDEN))
        t[p + "mlp.router.bias"] = bf16(n(EXPERTS, std=BIAS_STD))
        # [E, 2I, H] (out, in): rows interleaved, even = gate, odd = up; [E, H, I] for down.
        for name, shape in (("gate_up_proj", (EXPERTS, 2 * INTERMEDIATE, HIDDEN)),
                            ("down_proj", (EXPERTS, HIDDEN, INTERMEDIATE))):
            blocks, scales = quantize_mxfp4(n(*shape, std=EXPERT_STD))
            t[p + f"mlp.experts.{name}_blocks"] = torch.from_numpy(blocks)
            t[p + f"mlp.experts.{name}_scales"] = torch.from_numpy(scales)
            dense[p + f"mlp.experts.{name}"] = dequantize_mxfp4(blocks, scales)
        t[p + "mlp.experts.gate_up_proj_bias"] = bf16(n(EXPERTS, 2 * INTERMEDIATE, std=BIAS_STD))
        t[p + "mlp.experts.down_proj_bias"] = bf16(n(EXPERTS, HIDDEN, std=BIAS_STD))
    t["model.norm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
    t["lm_head.weight"] = bf16(n(VOCAB, HIDDEN))
    return t, dense


def yarn_inv_freq() -> tuple[np.ndarray, float]:
    """YaRN (truncate = false) inverse frequencies and cos/sin scale, written from the formula."""
    d, base = HEAD_DIM, ROPE_THETA
    orig, factor = YARN["original_max_position_embeddings"], YARN["factor"]
    corr = lambda rot: d * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))  # noqa: E731
    low, high = max(corr(YARN["beta_fast"]), 0.0), min(corr(YARN["beta_slow"]), d - 1.0)
    i = np.arange(d // 2, dtype=np.float64)
    extrap = 1.0 / base ** (2 * i / d)
    ramp = np.clip((i - low) / (high - low), 0, 1)
    inv = extrap / factor * ramp + extrap * (1 - ramp)
    return inv, 0.1 * math.log(factor) + 1.0


def sig6(x) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def load_and_verify(hf_dir: Path, tensors, dense) -> GptOssForCausalLM:
    model = GptOssForCausalLM.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
        quantization_config=Mxfp4Config(dequantize=True)).eval()
    # "eager" experts = the plain per-expert loop of modeling_gpt_oss.py (the default, grouped_mm,
    # computes the same but has no float64 kernel, which the noise-floor pass below needs).
    check(model.config._experts_implementation == "eager", "experts implementation not eager")
    cfg = model.config
    check(cfg.layer_types == config_json()["layer_types"], f"layer_types {cfg.layer_types}")
    check(cfg.rope_parameters.get("rope_type") == "yarn", f"rope {cfg.rope_parameters}")
    params = dict(model.named_parameters())
    n_checked = 0
    for name, value in tensors.items():
        if name.endswith("_blocks") or name.endswith("_scales"):
            continue
        got = params[name].detach()
        check(got.dtype == torch.float32, f"{name} loaded as {got.dtype}")
        check(torch.equal(got, value.float()), f"{name} differs from its bf16 file value")
        n_checked += 1
    for name, w in dense.items():
        # transformers keeps experts as [E, in, out] (x @ W), i.e. the file matrix transposed.
        got = params[name].detach().numpy()
        want = np.swapaxes(w, 1, 2)
        check(got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}")
        check(np.array_equal(got, want), f"{name}: transformers' MXFP4 dequantization differs "
              f"from ours (max |d| {np.abs(got - want).max()})")
        n_checked += 1
    check(n_checked == len(params), f"checked {n_checked} of {len(params)} parameters")
    rot = model.model.rotary_emb
    inv, scale = yarn_inv_freq()
    check(np.allclose(rot.inv_freq.double().numpy(), inv, rtol=1e-6, atol=0),
          f"YaRN inv_freq {rot.inv_freq} vs {inv}")
    check(abs(rot.attention_scaling - scale) < 1e-12, f"YaRN scale {rot.attention_scaling}")
    print(f"verified {n_checked} parameters (experts: exact MXFP4 dequantization), YaRN "
          f"inv_freq and attention scale {scale:.6f}")
    return model


def clamp_stats(model, ids) -> dict:
    """How often the SwiGLU clamps bite on a prompt (so the fixture is known to exercise them)."""
    lim = model.config.swiglu_limit
    seen = {"gate_above": 0, "up_outside": 0, "values": 0}

    def hook(_mod, args, out):
        g, u = out[..., ::2], out[..., 1::2]
        seen["gate_above"] += int((g > lim).sum())
        seen["up_outside"] += int((u.abs() > lim).sum())
        seen["values"] += g.numel()

    hooks = []
    for layer in model.model.layers:
        ex = layer.mlp.experts
        orig = ex._apply_gate

        def wrapped(gate_up, _orig=orig):
            hook(None, None, gate_up)
            return _orig(gate_up)
        ex._apply_gate = wrapped
        hooks.append((ex, orig))
    with torch.inference_mode():
        model(ids)
    for ex, orig in hooks:
        ex._apply_gate = orig
    return seen


def well_conditioned_prompt(model, rng, length: int, gen_cfg) -> tuple[list[int], float]:
    """Draws random prompts until one has no near-tie that float32 rounding in another engine
    could flip: over prompt + greedy continuation, every token's 4th and 5th router logits differ
    by >= MIN_ROUTER_GAP in every layer, and every greedy step's top-2 logits by >= MIN_GREEDY_MARGIN.
    Returns the prompt and its smallest router gap."""
    for _ in range(200):
        ids_list = rng.integers(0, VOCAB, size=length).tolist()
        ids = torch.tensor([ids_list])
        with torch.inference_mode():
            res = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
            margins = [float(v[0] - v[1]) for v in (torch.topk(sc[0], 2).values for sc in res.scores)]
            out = model(res.sequences, output_router_logits=True)
        gap = min(float((srt[:, TOP_K - 1] - srt[:, TOP_K]).min()) for srt in
                  (torch.sort(rl, dim=-1, descending=True).values for rl in out.router_logits))
        if gap >= MIN_ROUTER_GAP and min(margins) >= MIN_GREEDY_MARGIN:
            return ids_list, gap
    raise SystemExit(f"CHECK FAILED: no well-conditioned prompt of length {length} in 200 draws")


def run_reference(model: GptOssForCausalLM) -> tuple[dict, float]:
    rng = np.random.default_rng(SEED_PROMPTS)
    # The same weights computed in float64 (RoPE angles stay float32 inside transformers): the
    # distance of the float32 logits from it is the float32 noise floor of this fixture.
    model64 = copy.deepcopy(model).double()
    prompts_out = []
    worst = 0.0
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                               pad_token_id=model.config.pad_token_id, output_scores=True,
                               return_dict_in_generate=True)
    for length in PROMPT_LENGTHS:
        ids_list, gap = well_conditioned_prompt(model, rng, length, gen_cfg)
        ids = torch.tensor([ids_list])
        with torch.inference_mode():
            full = model(ids).logits[0]  # [P, vocab]
            f64_diff = float((model64(ids).logits[0] - full.double()).abs().max())
            cache = DynamicCache(config=model.config)
            steps = [model(ids[:, t:t + 1], cache=cache, use_cache=True).logits[0, -1]
                     for t in range(length)]
            diff = float((torch.stack(steps) - full).abs().max())
            worst = max(worst, diff)
            # float32 rounding only: a few ulps of the largest logit, summed over 4 layers
            scale = float(full.abs().max())
            check(diff < 2e-5 * scale, f"incremental vs full logits differ by {diff} (max |logit| {scale})")
            # An explicit all-ones mask: without one, generate() masks out every prompt token
            # equal to pad_token_id (the random prompts contain id 2).
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
            greedy = out.sequences[0, length:].tolist()
            check(len(greedy) == NEW_TOKENS, f"generate produced {len(greedy)} tokens")
            # the same continuation from plain full passes
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
            "min_router_top4_gap": gap,
        })
        print(f"prompt len {length:3d}: max|logit| {scale:.2f}, max|full - incremental| = {diff:.3e}, "
              f"max|f32 - f64| {f64_diff:.3e}, greedy {greedy}, "
              f"min top-2 margin {min(margins):.4f}, min router 4th-5th gap {gap:.2e}")
    return {"prompts": prompts_out}, worst


def write_tokenizer(folder: Path) -> None:
    """A small byte-level BPE (256 byte symbols + merges learnt from a fixed text) with the
    o200k-style pre-tokenizer, only so that llama.cpp's converter finds a tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    pat = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
           r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
           r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
           r"[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pat), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog " * 4,
            "a tiny gpt-oss model for tests; sliding window, sinks and experts."] * 8
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|startoftext|>", "<|endoftext|>", "<|pad|>"])
    tok.train_from_iterator(text, trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}))


CONVERTER_SHIM = r"""
import sys
llama_cpp, hf_dir, outfile = sys.argv[1:4]
sys.path.insert(0, llama_cpp)
import convert_hf_to_gguf as conv
from conversion.base import TextModel
# The toy tokenizer's hash is unknown to the converter; name the pre-tokenizer the real
# gpt-oss GGUFs carry (o200k, "gpt-4o") instead of failing.
TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-4o"
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", outfile, "--outtype", "auto"]
conv.main()
"""


def make_gguf(hf_dir: Path, out_file: Path, llama_cpp: Path) -> None:
    """Runs llama.cpp's convert_hf_to_gguf.py (with its own gguf-py) on a temporary copy of the
    HF folder plus a small tokenizer. The converter is unchanged; a shim only replaces its
    pre-tokenizer hash lookup (which knows real tokenizers only) by the value "gpt-4o"."""
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


def verify_gguf(gguf_path: Path, tensors, dense) -> dict:
    """Every GGUF tensor against the HF tensors; returns names, types and metadata keys."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(gguf_path))
    hf_of = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm.weight": "input_layernorm.weight",
                 "post_attention_norm.weight": "post_attention_layernorm.weight",
                 "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
                 "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
                 "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
                 "attn_output.weight": "self_attn.o_proj.weight", "attn_output.bias": "self_attn.o_proj.bias",
                 "attn_sinks.weight": "self_attn.sinks", "ffn_gate_inp.weight": "mlp.router.weight",
                 "ffn_gate_inp.bias": "mlp.router.bias"}
    info = {"tensors": [], "metadata": {}}
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
            if rest in per_layer:
                want = tensors[p + per_layer[rest]].float().numpy()
            elif rest in ("ffn_gate_exps.weight", "ffn_up_exps.weight"):
                check(qtype == gguf.GGMLQuantizationType.MXFP4, f"{name} is {qtype.name}")
                w = dense[p + "mlp.experts.gate_up_proj"]
                want = w[:, 0::2, :] if "gate" in rest else w[:, 1::2, :]
            elif rest == "ffn_down_exps.weight":
                check(qtype == gguf.GGMLQuantizationType.MXFP4, f"{name} is {qtype.name}")
                want = dense[p + "mlp.experts.down_proj"]
            elif rest in ("ffn_gate_exps.bias", "ffn_up_exps.bias"):
                b = tensors[p + "mlp.experts.gate_up_proj_bias"].float().numpy()
                want = b[:, 0::2] if "gate" in rest else b[:, 1::2]
            elif rest == "ffn_down_exps.bias":
                want = tensors[p + "mlp.experts.down_proj_bias"].float().numpy()
            else:
                raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
        elif name in hf_of:
            want = tensors[hf_of[name]].float().numpy()
        else:
            raise SystemExit(f"CHECK FAILED: unexpected GGUF tensor {name}")
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
    n_expected = 3 + LAYERS * (len(per_layer) + 6)
    check(len(r.tensors) == n_expected, f"{len(r.tensors)} GGUF tensors, expected {n_expected}")
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

    tensors, dense = make_tensors()
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    (hf_dir / "config.json").write_text(json.dumps(config_json(), indent=2, sort_keys=True) + "\n")
    print("HF tensors (name, shape, dtype):")
    for name in sorted(tensors):
        if ".layers." not in name or ".layers.0." in name:
            dtype = str(tensors[name].dtype).replace("torch.", "")
            print(f"  {name:50s} {list(tensors[name].shape)} {dtype}")

    model = load_and_verify(hf_dir, tensors, dense)
    stats = clamp_stats(model, torch.tensor([np.random.default_rng(1).integers(0, VOCAB, 300).tolist()]))
    print(f"SwiGLU clamp on a 300-token prompt: gate > 7 in {stats['gate_above']}, |up| > 7 in "
          f"{stats['up_outside']} of {stats['values']} values")
    ref, worst = run_reference(model)

    inv, scale = yarn_inv_freq()
    cfg = config_json()
    reference = {
        "generator": "scripts/reference/gptoss_tiny.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "experts_implementation": "eager",
        "weights": "hf/model.safetensors (bf16 non-expert tensors; MXFP4 experts dequantized exactly)",
        "config": {k: cfg[k] for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "num_local_experts", "num_experts_per_tok",
            "vocab_size", "sliding_window", "rope_theta", "rope_scaling", "rms_norm_eps",
            "swiglu_limit", "layer_types", "tie_word_embeddings")},
        "swiglu_alpha": float(model.config.swiglu_alpha),
        "rope_inv_freq": sig6(model.model.rotary_emb.inv_freq.numpy()),
        "rope_attention_scaling": float(model.model.rotary_emb.attention_scaling),
        "logits_note": "logits[k] is the full-vocabulary row at position logit_positions[k] of one "
                       "forward pass over input_ids (6 significant digits); greedy_ids are the "
                       f"{NEW_TOKENS} tokens of generate(do_sample=False) with no stop token",
        "max_abs_full_minus_incremental": worst,
        **ref,
    }
    ref_path = out / "reference.json"
    ref_path.write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    gguf_path = out / "tiny.gguf"
    make_gguf(hf_dir, gguf_path, args.llama_cpp)
    info = verify_gguf(gguf_path, tensors, dense)
    print("GGUF tensors (name, type, ggml ne):")
    for t in info["tensors"]:
        if not t["name"].startswith("blk.") or t["name"].startswith("blk.0."):
            print(f"  {t['name']:34s} {t['type']:6s} {t['ggml_ne']}")
    fused = any("gate_up" in t["name"] for t in info["tensors"])
    print("converter emits", "fused ffn_gate_up_exps" if fused else
          "separate ffn_gate_exps / ffn_up_exps (gate = even rows, up = odd rows of gate_up_proj)")
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
    check(sizes["tiny.gguf"] < 600 * 1024, "tiny.gguf too large")


if __name__ == "__main__":
    main()
