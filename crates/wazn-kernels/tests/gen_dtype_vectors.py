#!/usr/bin/env python3
"""Writes tests/data/dtype_vectors.json: reference blocks for wazn's dtype table, made by the
`gguf` Python package (gguf-py, the reference GGUF reader/writer of llama.cpp).

Run from the repository root (deterministic: fixed numpy seed):

    /work/ref/venv/bin/python crates/wazn-kernels/tests/gen_dtype_vectors.py

Needs numpy and gguf (0.19.0 was used). For every type gguf can dequantize, the file holds a
few blocks of bytes and gguf.quants.dequantize's f32 output; where gguf can also quantize, the
f32 input and gguf.quants.quantize's bytes. Types gguf cannot quantize get random bytes with
their f16 scale fields set to finite values of varied magnitude. Bytes and f32 values are
stored as little-endian hex so that every bit (signed zeros, NaN payloads) survives.

The file also records gguf's type ids and (block size, bytes per block) for every type.
"""

import importlib.metadata
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

SEED = 20240521
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "dtype_vectors.json")

FLOAT_TYPES = [T.F32, T.F16, T.BF16]
LEGACY_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_TYPES = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
TABLE_TYPES = FLOAT_TYPES + LEGACY_TYPES + [T.Q8_1] + K_TYPES + [T.Q8_K, T.MXFP4]

# Byte offsets of the f16 scale fields in each block (ggml-common.h): d first, then the
# min/offset field if the type has one.
SCALE_OFFSETS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}

rng = np.random.default_rng(SEED)


def f32_hex(values):
    return np.ascontiguousarray(values, dtype="<f4").tobytes().hex()


def legacy_inputs():
    """5 blocks of 32 of varied magnitude, including an all-zero and an all-positive block."""
    return np.concatenate([
        rng.normal(0.0, 1e-3, 32),
        rng.normal(0.0, 1.0, 32),
        rng.uniform(-300.0, 300.0, 32),
        np.zeros(32),
        5.0 + rng.normal(0.0, 0.1, 32),
    ]).astype(np.float32)


def float_inputs():
    """Values across magnitudes plus the edge cases of f16/bf16 rounding."""
    varied = rng.normal(0.0, 1.0, 48) * 10.0 ** rng.integers(-8, 8, 48)
    special = [
        0.0, -0.0, np.inf, -np.inf, np.nan,
        1e-40,                  # f32 subnormal
        65504.0, 65520.0,       # f16 max; rounds to f16 inf
        2.0 ** -24, 3e-8,       # smallest f16 subnormal; rounds to it
        1.0 + 2.0 ** -8,        # bf16 tie, rounds down to even
        1.0 + 3 * 2.0 ** -8,    # bf16 tie, rounds up to even
        1.0 + 2.0 ** -11,       # f16 tie
        3.4e38,                 # rounds to bf16 inf
        -1.5e-5,                # f16 subnormal
        7.0,
    ]
    return np.concatenate([varied, special]).astype(np.float32)


def random_scale_blocks(qtype, n_blocks):
    """Random bytes with each f16 scale field set to +-10^u, u uniform in [-4, 1]; block 1
    gets an f16-subnormal d (~1e-6)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for b in range(n_blocks):
        for k, offset in enumerate(SCALE_OFFSETS[qtype]):
            magnitude = 1e-6 if (b == 1 and k == 0) else 10.0 ** rng.uniform(-4.0, 1.0)
            value = np.float16(rng.choice([-1.0, 1.0]) * magnitude)
            blocks[b, offset:offset + 2] = np.frombuffer(value.tobytes(), dtype=np.uint8)
    return blocks.reshape(-1)


def random_float_bytes(qtype, n):
    """Random element bit patterns. F16 signalling NaNs are left out: numpy keeps them
    signalling when widening, while wazn (like x86 F16C) returns them quiet."""
    if qtype == T.F32:
        return rng.integers(0, 256, 4 * n, dtype=np.uint8)
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    if qtype == T.F16:
        is_snan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0) & ((bits & 0x0200) == 0)
        bits = np.where(is_snan, bits | 0x0200, bits).astype(np.uint16)
    return bits.astype("<u2").view(np.uint8)


def case(qtype, source, data_bytes, n_elements, input_f32=None):
    dequant = gguf.quants.dequantize(data_bytes, qtype).reshape(-1)
    assert dequant.size == n_elements
    entry = {
        "dtype": qtype.name,
        "source": source,
        "n_elements": int(n_elements),
        "bytes": data_bytes.tobytes().hex(),
        "dequant_f32": f32_hex(dequant),
    }
    if input_f32 is not None:
        entry["input_f32"] = f32_hex(input_f32)
    return entry


def main():
    cases = []
    for qtype in FLOAT_TYPES:
        x = float_inputs()
        # Overflow to inf is one of the cases wanted here, not a mistake.
        with np.errstate(over="ignore"):
            q = np.ascontiguousarray(gguf.quants.quantize(x, qtype)).view(np.uint8).reshape(-1)
        cases.append(case(qtype, "gguf.quants.quantize", q, x.size, x))
        n = 64
        cases.append(case(qtype, "random_bytes", random_float_bytes(qtype, n), n))
    for qtype in LEGACY_TYPES:
        x = legacy_inputs()
        q = gguf.quants.quantize(x.reshape(1, -1), qtype).reshape(-1)
        cases.append(case(qtype, "gguf.quants.quantize", q, x.size, x))
        cases.append(case(qtype, "random_bytes", random_scale_blocks(qtype, 3), 3 * 32))
    for qtype in K_TYPES:
        n_blocks = 3
        cases.append(case(qtype, "random_bytes", random_scale_blocks(qtype, n_blocks), n_blocks * 256))
    # MXFP4 last, so that the draws above are unchanged (tests/gen_mxfp4_vectors.py has its
    # edge cases): every byte is a valid block, the first being the E8M0 scale.
    x = legacy_inputs()
    q = gguf.quants.quantize(x.reshape(1, -1), T.MXFP4).reshape(-1)
    cases.append(case(T.MXFP4, "gguf.quants.quantize", q, x.size, x))
    cases.append(case(T.MXFP4, "random_bytes", rng.integers(0, 256, 3 * 17, dtype=np.uint8), 3 * 32))

    types = [
        {"name": t.name, "ggml_id": int(t.value), "block_size": GGML_QUANT_SIZES[t][0],
         "type_size": GGML_QUANT_SIZES[t][1]}
        for t in TABLE_TYPES
    ]
    doc = {
        "generator": "crates/wazn-kernels/tests/gen_dtype_vectors.py",
        "gguf_version": importlib.metadata.version("gguf"),
        "numpy_version": np.__version__,
        "seed": SEED,
        "types": types,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
