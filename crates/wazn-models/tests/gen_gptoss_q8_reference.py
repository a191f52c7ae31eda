#!/usr/bin/env python3
"""Reference logits of the tiny gpt-oss for wazn's 8-bit path: transformers with the input of
every MXFP4 expert matrix rounded to Q8_0, as llama.cpp and wazn multiply MXFP4 weights.

wazn's default ("quantized activations") path multiplies MXFP4 expert weights with the
activations quantized to Q8_0: per block of 32 values, d = max|x| / 127, q = round(x / d)
(half away from zero), stored as (f16 d, i8 q). Everything else (bf16 attention, router and
output matrices) keeps f32 activations. This script runs transformers' own GptOss forward pass
with exactly that rounding applied to the two expert inputs (the routed hidden states before
gate_up_proj, and the SwiGLU output before down_proj), so the 8-bit path can be checked to the
same 1e-3 as the f32 path instead of with a loose tolerance.

Reads crates/wazn-models/tests/data/gptoss/{hf/, reference.json} (written by
scripts/reference/gptoss_tiny.py) and writes
crates/wazn-models/tests/data/gptoss_q8_reference.json: for the same prompts and positions,
the full-vocabulary logits (7 significant digits).

Run from the repository root (CPU, a few seconds, nothing downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python crates/wazn-models/tests/gen_gptoss_q8_reference.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from transformers import GptOssForCausalLM, Mxfp4Config
from transformers.models.gpt_oss import modeling_gpt_oss

DATA = Path(__file__).resolve().parent / "data"
ROUND = {"on": True}


def q8_0_round(x: torch.Tensor) -> torch.Tensor:
    """x [..., K] float32, K % 32 == 0 -> the values Q8_0 blocks of x stand for."""
    if not ROUND["on"]:
        return x
    shape = x.shape
    b = x.reshape(-1, 32)
    d = b.abs().amax(dim=-1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    v = b * inv
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)  # C roundf: half away from zero
    d16 = d.to(torch.float16).to(torch.float32)
    return (q * d16).reshape(shape)


def experts_forward_q8(self, hidden_states, router_indices=None, routing_weights=None):
    """GptOssExperts.forward with the expert inputs rounded to Q8_0 (same loop otherwise)."""
    next_states = torch.zeros_like(hidden_states)
    with torch.no_grad():
        expert_mask = torch.nn.functional.one_hot(router_indices, num_classes=self.num_experts)
        expert_mask = expert_mask.permute(2, 1, 0)
        expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
    for expert_idx in expert_hit:
        expert_idx = expert_idx[0]
        top_k_pos, token_idx = torch.where(expert_mask[expert_idx])
        current_state = q8_0_round(hidden_states[token_idx])
        gate_up = current_state @ self.gate_up_proj[expert_idx] + self.gate_up_proj_bias[expert_idx]
        gated_output = q8_0_round(self._apply_gate(gate_up))
        out = gated_output @ self.down_proj[expert_idx] + self.down_proj_bias[expert_idx]
        weighted_output = out * routing_weights[token_idx, top_k_pos, None]
        next_states.index_add_(0, token_idx, weighted_output.to(hidden_states.dtype))
    return next_states


def main() -> None:
    torch.set_num_threads(2)
    base = json.loads((DATA / "gptoss/reference.json").read_text())
    model = GptOssForCausalLM.from_pretrained(
        DATA / "gptoss/hf", dtype=torch.float32, attn_implementation="eager",
        quantization_config=Mxfp4Config(dequantize=True)).eval()
    for layer in model.model.layers:
        experts = layer.mlp.experts
        experts.forward = experts_forward_q8.__get__(experts)
    # The patched loop must be the one transformers runs: without rounding it reproduces
    # the stored f32 reference.
    ROUND["on"] = False
    for prompt in base["prompts"]:
        with torch.inference_mode():
            logits = model(torch.tensor([prompt["input_ids"]])).logits[0]
        for p, want in zip(prompt["logit_positions"], prompt["logits"]):
            diff = float((logits[p] - torch.tensor(want)).abs().max())
            if diff > 1e-4:
                raise SystemExit(f"CHECK FAILED: the patched loop differs by {diff}")
    ROUND["on"] = True
    out = {"generator": "crates/wazn-models/tests/gen_gptoss_q8_reference.py",
           "transformers_version": transformers.__version__, "prompts": []}
    worst_vs_f32 = 0.0
    for prompt in base["prompts"]:
        ids = torch.tensor([prompt["input_ids"]])
        with torch.inference_mode():
            logits = model(ids).logits[0]
        rows = [logits[p] for p in prompt["logit_positions"]]
        for row, want in zip(rows, prompt["logits"]):
            worst_vs_f32 = max(worst_vs_f32, float((row - torch.tensor(want)).abs().max()))
        out["prompts"].append({
            "input_ids": prompt["input_ids"],
            "logit_positions": prompt["logit_positions"],
            "logits": [[float(f"{v:.7g}") for v in row.tolist()] for row in rows],
        })
    out["max_abs_diff_vs_f32_reference"] = worst_vs_f32
    print(f"Q8_0-rounded expert inputs move the logits by up to {worst_vs_f32:.4f}")
    (DATA / "gptoss_q8_reference.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
