"""Writes small Hugging Face model folders with the `safetensors` package, and what the package
reads back from them (names, dtypes, shapes, bytes as hex), for tests/hf_folder.rs.

tests/data/hf_single/   config.json + generation_config.json + model.safetensors (one tensor of each common dtype,
                        an MXFP4 _blocks/_scales pair)
tests/data/hf_sharded/  config.json + model.safetensors.index.json + two shards
tests/data/hf_folders_facts.json

Run: /work/ref/venv/bin/python crates/wazn-formats/tests/gen_hf_folders.py
(needs torch and safetensors; written with torch 2.15, safetensors 0.8.0)
"""

import json
import os
import shutil

import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def tensors_single(gen):
    e, rows, n_blocks = 2, 6, 3
    return {
        "model.embed_tokens.weight": torch.randn(10, 8, generator=gen, dtype=torch.float32),
        "model.norm.weight": torch.randn(8, generator=gen).to(torch.bfloat16),
        "lm_head.weight": torch.randn(10, 8, generator=gen).to(torch.float16),
        "model.layers.0.self_attn.sinks": torch.randn(4, generator=gen).to(torch.float64),
        "model.layers.0.mlp.experts.gate_up_proj_blocks": torch.randint(
            0, 256, (e, rows, n_blocks, 16), generator=gen, dtype=torch.uint8),
        "model.layers.0.mlp.experts.gate_up_proj_scales": torch.randint(
            118, 134, (e, rows, n_blocks), generator=gen, dtype=torch.uint8),
        "model.layers.0.mlp.experts.gate_up_proj_bias": torch.randn(e, rows, generator=gen),
        "counts.i8": torch.randint(-128, 128, (3, 5), generator=gen, dtype=torch.int8),
        "counts.i32": torch.randint(-1000, 1000, (7,), generator=gen, dtype=torch.int32),
        "counts.i64": torch.randint(-1000, 1000, (2, 2), generator=gen, dtype=torch.int64),
        "mask.bool": torch.rand(5, generator=gen) > 0.5,
        "scalar.f32": torch.tensor(3.5),
        "empty.f32": torch.zeros(0, 4),
    }


def tensors_sharded(gen):
    return {
        "model.embed_tokens.weight": torch.randn(12, 4, generator=gen),
        "model.layers.0.input_layernorm.weight": torch.randn(4, generator=gen).to(torch.bfloat16),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(4, 4, generator=gen).to(torch.float16),
        "model.layers.1.input_layernorm.weight": torch.randn(4, generator=gen).to(torch.bfloat16),
        "model.layers.1.self_attn.q_proj.weight": torch.randn(4, 4, generator=gen).to(torch.float16),
        "model.norm.weight": torch.randn(4, generator=gen),
    }


def facts_of(folder, files):
    facts = {}
    for fname in files:
        with safe_open(os.path.join(folder, fname), framework="pt") as f:
            for name in f.keys():
                t = f.get_slice(name)
                dtype = t.get_dtype()
                shape = t.get_shape()
                # Raw bytes as stored: view the tensor's memory as uint8.
                tensor = f.get_tensor(name).contiguous()
                raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
                facts[name] = {
                    "file": fname,
                    "dtype": dtype,
                    "shape": shape,
                    "hex": raw.hex(),
                    "n_bytes": len(raw),
                }
    return facts


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def main():
    gen = torch.Generator().manual_seed(1234)
    single = os.path.join(DATA, "hf_single")
    fresh(single)
    with open(os.path.join(single, "config.json"), "w") as f:
        json.dump({"model_type": "gpt_oss", "hidden_size": 8, "vocab_size": 10}, f, indent=1)
    with open(os.path.join(single, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [200002, 199999, 200012], "bos_token_id": 199998}, f, indent=1)
    save_file(tensors_single(gen), os.path.join(single, "model.safetensors"),
              metadata={"format": "pt"})

    sharded = os.path.join(DATA, "hf_sharded")
    fresh(sharded)
    with open(os.path.join(sharded, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": 4, "vocab_size": 12}, f, indent=1)
    tensors = tensors_sharded(gen)
    names = sorted(tensors)
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for i, shard in enumerate(shard_names):
        part = {n: tensors[n] for n in names[i::2]}
        save_file(part, os.path.join(sharded, shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)

    out = {
        "generator": "tests/gen_hf_folders.py",
        "safetensors_version": safetensors.__version__,
        "hf_single": facts_of(single, ["model.safetensors"]),
        "hf_sharded": facts_of(sharded, shard_names),
    }
    with open(os.path.join(DATA, "hf_folders_facts.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", single, sharded)


if __name__ == "__main__":
    main()
