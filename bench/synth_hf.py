#!/usr/bin/env python3
"""Writes a Hugging Face model folder with the exact tensor names, shapes and types of
openai/gpt-oss-20b (config.json + model.safetensors) and random values, to measure load time,
memory and speed at real size. Speed does not depend on the values; they are kept finite and
small (bf16 normals of std 0.02, MXFP4 exponents 2^-9 .. 2^-4) so that no NaN appears.

The layout is the released checkpoint's: non-expert tensors bf16, expert matrices MXFP4 as
`*_blocks` [experts, rows, cols/32, 16] and `*_scales` [experts, rows, cols/32] (uint8), gate and
up rows interleaved in one stack, expert biases bf16. No tokenizer is written (`wazn bench` does
not need one).

Usage: synth_hf.py OUT_DIR [gptoss-20b]
Needs numpy. Writes ~13.8 GB, streaming (memory stays under ~1 GB).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GPTOSS_20B = {
    "hidden": 2880,
    "layers": 24,
    "heads": 64,
    "kv_heads": 8,
    "head_dim": 64,
    "intermediate": 2880,
    "experts": 32,
    "top_k": 4,
    "vocab": 201088,
    "sliding_window": 128,
}

CHUNK_VALUES = 1 << 24


def config_json(c: dict) -> dict:
    """config.json as the released gpt-oss-20b has it (the fields wazn and transformers read)."""
    return {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": 200002,
        "experts_per_token": c["top_k"],
        "head_dim": c["head_dim"],
        "hidden_act": "silu",
        "hidden_size": c["hidden"],
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "intermediate_size": c["intermediate"],
        "layer_types": [
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(c["layers"])
        ],
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": c["heads"],
        "num_experts_per_tok": c["top_k"],
        "num_hidden_layers": c["layers"],
        "num_key_value_heads": c["kv_heads"],
        "num_local_experts": c["experts"],
        "output_router_logits": False,
        "pad_token_id": 199999,
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
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.9,
        "sliding_window": c["sliding_window"],
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": c["vocab"],
    }


def tensors(c: dict) -> list[tuple[str, str, list[int]]]:
    """(name, safetensors dtype, shape) of every tensor, in the checkpoint's names."""
    d, e = c["hidden"], c["experts"]
    q, kv, ff = c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"], c["intermediate"]
    out = [("model.embed_tokens.weight", "BF16", [c["vocab"], d])]
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", "BF16", [d]),
            (p + "post_attention_layernorm.weight", "BF16", [d]),
            (p + "self_attn.q_proj.weight", "BF16", [q, d]),
            (p + "self_attn.q_proj.bias", "BF16", [q]),
            (p + "self_attn.k_proj.weight", "BF16", [kv, d]),
            (p + "self_attn.k_proj.bias", "BF16", [kv]),
            (p + "self_attn.v_proj.weight", "BF16", [kv, d]),
            (p + "self_attn.v_proj.bias", "BF16", [kv]),
            (p + "self_attn.o_proj.weight", "BF16", [d, q]),
            (p + "self_attn.o_proj.bias", "BF16", [d]),
            (p + "self_attn.sinks", "BF16", [c["heads"]]),
            (p + "mlp.router.weight", "BF16", [e, d]),
            (p + "mlp.router.bias", "BF16", [e]),
            (p + "mlp.experts.gate_up_proj_blocks", "U8", [e, 2 * ff, d // 32, 16]),
            (p + "mlp.experts.gate_up_proj_scales", "U8", [e, 2 * ff, d // 32]),
            (p + "mlp.experts.gate_up_proj_bias", "BF16", [e, 2 * ff]),
            (p + "mlp.experts.down_proj_blocks", "U8", [e, d, ff // 32, 16]),
            (p + "mlp.experts.down_proj_scales", "U8", [e, d, ff // 32]),
            (p + "mlp.experts.down_proj_bias", "BF16", [e, d]),
        ]
    out += [("model.norm.weight", "BF16", [d]), ("lm_head.weight", "BF16", [c["vocab"], d])]
    return out


def chunks(rng: np.random.Generator, name: str, dtype: str, n: int):
    """The tensor's bytes, CHUNK_VALUES values at a time."""
    for start in range(0, n, CHUNK_VALUES):
        count = min(CHUNK_VALUES, n - start)
        if dtype == "U8" and name.endswith("_scales"):
            yield rng.integers(118, 124, size=count, dtype=np.uint8).tobytes()
        elif dtype == "U8":
            yield rng.integers(0, 256, size=count, dtype=np.uint8).tobytes()
        else:
            std = 1.0 if name.endswith("norm.weight") else 0.02
            values = rng.standard_normal(count, dtype=np.float32) * np.float32(std)
            yield (values.view(np.uint32) >> 16).astype("<u2").tobytes()


def write_safetensors(path: Path, specs: list[tuple[str, str, list[int]]]) -> None:
    size = {"BF16": 2, "U8": 1}
    header, offset = {}, 0
    for name, dtype, shape in specs:
        n = int(np.prod(shape)) * size[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(20)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for i, (name, dtype, shape) in enumerate(specs):
            for chunk in chunks(rng, name, dtype, int(np.prod(shape))):
                f.write(chunk)
            if i % 40 == 0:
                print(f"  {i + 1}/{len(specs)} tensors, {f.tell() / 2**30:.1f} GiB", file=sys.stderr)
    print(f"wrote {path} ({offset / 2**30:.2f} GiB of tensors)", file=sys.stderr)


def main() -> None:
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "gptoss-20b"):
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_json(GPTOSS_20B), indent=2) + "\n")
    write_safetensors(out / "model.safetensors.part", tensors(GPTOSS_20B))
    (out / "model.safetensors.part").rename(out / "model.safetensors")


if __name__ == "__main__":
    main()
