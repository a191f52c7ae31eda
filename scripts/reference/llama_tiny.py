#!/usr/bin/env python3
"""Tiny random Llama in the Hugging Face layout and its transformers reference logits.

Writes into crates/wazn-models/tests/data/llama_hf/ (or --out):
  hf/config.json, hf/model.safetensors
      A LlamaForCausalLM (hidden 64, 2 layers, 4 query heads, 2 KV heads, head_dim 16,
      intermediate 128, vocab 512, rope_theta 10000, untied lm_head, no biases) with bfloat16
      weights under the real HF tensor names. q_proj/k_proj rows are in HF order, i.e. RoPE pairs
      (x[i], x[i + head_dim/2]) ("rotate_half"), unlike GGUF's adjacent pairs.
  reference.json
      transformers' float32 forward (eager attention) of that folder: full-vocabulary logits for
      two prompts given as token ids (all positions of the short one, every 8th and the last of
      the long one), the 16-token greedy continuation, and max |full - incremental| logits.

Checks (the script fails loudly otherwise): every loaded parameter equals its bfloat16 file
value; one-token-at-a-time decoding with a KV cache reproduces the full-pass logits;
generate(do_sample=False) equals the argmax of full passes.

Run (from the repository root; CPU only, a few seconds, nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/llama_tiny.py [--out DIR]
Needs the packages of scripts/reference/requirements.txt. Deterministic (fixed numpy seeds).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import DynamicCache, GenerationConfig, LlamaForCausalLM

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "crates/wazn-models/tests/data/llama_hf"

SEED_WEIGHTS = 1128
SEED_PROMPTS = 11
PROMPT_LENGTHS = [6, 40]
NEW_TOKENS = 16
LOGIT_STRIDE = 8

HIDDEN = 64
INTERMEDIATE = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
VOCAB = 512
ROPE_THETA = 10000.0
INIT_STD = 0.2


def config_json() -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": INIT_STD,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": 2048,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": ROPE_THETA,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def make_tensors() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(SEED_WEIGHTS)
    n = lambda *shape, std=INIT_STD, mean=0.0: rng.normal(mean, std, size=shape)  # noqa: E731
    t = {"model.embed_tokens.weight": bf16(n(VOCAB, HIDDEN))}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
        t[p + "post_attention_layernorm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
        t[p + "self_attn.q_proj.weight"] = bf16(n(HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.k_proj.weight"] = bf16(n(KV_HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.v_proj.weight"] = bf16(n(KV_HEADS * HEAD_DIM, HIDDEN))
        t[p + "self_attn.o_proj.weight"] = bf16(n(HIDDEN, HEADS * HEAD_DIM))
        t[p + "mlp.gate_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
        t[p + "mlp.up_proj.weight"] = bf16(n(INTERMEDIATE, HIDDEN))
        t[p + "mlp.down_proj.weight"] = bf16(n(HIDDEN, INTERMEDIATE))
    t["model.norm.weight"] = bf16(n(HIDDEN, std=0.3, mean=1.0))
    t["lm_head.weight"] = bf16(n(VOCAB, HIDDEN))
    return t


def sig6(x) -> list:
    return [float(f"{v:.6g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
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
            print(f"  {name:46s} {list(tensors[name].shape)} {dtype}")

    model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
    params = dict(model.named_parameters())
    check(set(params) == set(tensors), f"parameter names {sorted(set(params) ^ set(tensors))}")
    for name, value in tensors.items():
        check(torch.equal(params[name].detach(), value.float()), f"{name} differs from its file value")
    print(f"verified {len(params)} parameters equal their bf16 file values")

    rng = np.random.default_rng(SEED_PROMPTS)
    # The same weights computed in float64: the distance of the float32 logits from it is the
    # float32 noise floor of this fixture.
    model64 = copy.deepcopy(model).double()
    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                               pad_token_id=None, output_scores=True, return_dict_in_generate=True)
    prompts, worst = [], 0.0
    for length in PROMPT_LENGTHS:
        ids_list = rng.integers(0, VOCAB, size=length).tolist()
        ids = torch.tensor([ids_list])
        with torch.inference_mode():
            full = model(ids).logits[0]  # [P, vocab]
            f64_diff = float((model64(ids).logits[0] - full.double()).abs().max())
            cache = DynamicCache(config=model.config)
            inc = torch.stack([model(ids[:, t:t + 1], cache=cache, use_cache=True).logits[0, -1]
                               for t in range(length)])
            diff = float((inc - full).abs().max())
            scale = float(full.abs().max())
            check(diff < 2e-5 * scale, f"incremental vs full logits differ by {diff} (max |logit| {scale})")
            worst = max(worst, diff)
            res = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
            greedy = res.sequences[0, length:].tolist()
            check(len(greedy) == NEW_TOKENS, f"generate produced {len(greedy)} tokens")
            seq = ids
            for tok in greedy:
                nxt = int(model(seq).logits[0, -1].argmax())
                check(nxt == tok, f"generate picked {tok}, full-pass argmax {nxt}")
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
            margins = [float(v[0] - v[1]) for v in (torch.topk(s[0], 2).values for s in res.scores)]
        positions = list(range(length)) if length <= 10 else sorted(
            set(range(0, length, LOGIT_STRIDE)) | {length - 1})
        prompts.append({
            "input_ids": ids_list,
            "logit_positions": positions,
            "logits": [sig6(full[p].numpy()) for p in positions],
            "greedy_ids": greedy,
            "greedy_top2_margin": sig6(margins),
            "max_abs_full_minus_incremental": diff,
            "max_abs_f32_minus_f64": f64_diff,
        })
        print(f"prompt len {length:3d}: max|logit| {scale:.2f}, max|full - incremental| {diff:.3e}, "
              f"max|f32 - f64| {f64_diff:.3e}, "
              f"greedy {greedy}, min top-2 margin {min(margins):.4f}")

    cfg = config_json()
    reference = {
        "generator": "scripts/reference/llama_tiny.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "weights": "hf/model.safetensors (bfloat16)",
        "config": {k: cfg[k] for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "rope_theta", "rms_norm_eps",
            "tie_word_embeddings")},
        "rope_inv_freq": sig6(model.model.rotary_emb.inv_freq.numpy()),
        "logits_note": "logits[k] is the full-vocabulary row at position logit_positions[k] of one "
                       "forward pass over input_ids (6 significant digits); greedy_ids are the "
                       f"{NEW_TOKENS} tokens of generate(do_sample=False) with no stop token",
        "max_abs_full_minus_incremental": worst,
        "prompts": prompts,
    }
    (out / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print("summary:")
    for k, v in sizes.items():
        print(f"  {k:24s} {v / 1024:8.1f} KiB")
    print(f"  max |full - incremental| logits: {worst:.3e}")
    check(sum(sizes.values()) < 400 * 1024, f"fixture is {sum(sizes.values())} bytes")


if __name__ == "__main__":
    main()
