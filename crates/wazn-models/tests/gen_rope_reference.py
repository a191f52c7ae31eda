#!/usr/bin/env python3
"""RoPE frequency schedules as transformers computes them, for wazn's rope_scaling module.

Writes crates/wazn-models/tests/data/rope_reference.json: the inverse frequencies (and the
cos/sin factor) of transformers' `llama3` schedule for Llama 3.1-8B's parameters and of its
`yarn` schedule for gpt-oss-20b's parameters (truncate false), plus `yarn` with truncate true.

Run from the repository root (CPU, a second, nothing downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python crates/wazn-models/tests/gen_rope_reference.py
"""
import json
from pathlib import Path

from transformers import GptOssConfig, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

OUT = Path(__file__).resolve().parent / "data/rope_reference.json"


def entry(name, config, head_dim, theta, params):
    inv, scale = ROPE_INIT_FUNCTIONS[params["rope_type"]](config)
    return {"name": name, "head_dim": head_dim, "theta": theta, "params": params,
            "inv_freq": [float(v) for v in inv.tolist()], "attention_scaling": float(scale)}


def main():
    cases = []
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, head_dim=128,
                      max_position_embeddings=131072,
                      rope_parameters={"rope_theta": 500000.0, **llama3})
    cases.append(entry("llama3.1-8b", cfg, 128, 500000.0, llama3))
    for truncate in (False, True):
        yarn = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "original_max_position_embeddings": 4096, "truncate": truncate}
        cfg = GptOssConfig(head_dim=64, rope_parameters={"rope_theta": 150000.0, **yarn})
        cases.append(entry(f"gpt-oss-yarn-truncate-{truncate}", cfg, 64, 150000.0, yarn))
    OUT.write_text(json.dumps({"generator": "crates/wazn-models/tests/gen_rope_reference.py",
                               "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
