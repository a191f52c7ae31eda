#!/usr/bin/env python3
"""Writes tests/data/mxfp4_vectors.json: reference data for wazn's MXFP4 type, made by others'
code:

- dequantize: gguf-py's gguf.quants.dequantize (MXFP4) on blocks covering every scale byte
  0..255 and every 4-bit code in every position;
- quantize: gguf-py's gguf.quants.quantize (MXFP4.quantize_blocks) on blocks of varied
  magnitude, rounding ties, largest magnitudes just below powers of two (where the rounding
  of log2 decides the exponent), tiny and huge blocks; each input is also run through ggml's
  quantize_row_mxfp4_ref and the generator stops if the two references disagree;
- hf: HF-layout `_blocks` / `_scales` pairs and their values from transformers'
  convert_moe_packed_tensors (integrations/mxfp4.py), in f32;
- vec_dot: ggml's ggml_vec_dot_mxfp4_q8_0_generic on MXFP4 rows (gguf-py's quantizer) and
  Q8_0 rows (ggml's quantize_row_q8_0_ref), with ragged block counts.

Run from the repository root with a ggml source folder (https://github.com/ggml-org/ggml, or
llama.cpp's ggml/ folder) and gcc:

    /work/ref/venv/bin/python crates/wazn-kernels/tests/gen_mxfp4_vectors.py /path/to/ggml [commit]

Deterministic (fixed numpy seed). ggml is compiled as gen_dtype_ggml_vectors.py does (its
build_library is reused). Bytes and f32 values are stored as little-endian hex.
"""

import ctypes
import importlib.metadata
import json
import os
import sys
import tempfile

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as T
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_dtype_ggml_vectors import build_library, ggml_commit  # noqa: E402

SEED = 20260391
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mxfp4_vectors.json")
BLOCK = 32
MXFP4_BYTES = 17
Q8_0_BYTES = 34

rng = np.random.default_rng(SEED)


def f32_hex(values):
    return np.ascontiguousarray(values, dtype="<f4").tobytes().hex()


def gguf_dequantize(data):
    return gguf.quants.dequantize(np.ascontiguousarray(data, dtype=np.uint8), T.MXFP4).reshape(-1)


def gguf_quantize(x):
    return gguf.quants.quantize(x.reshape(1, -1), T.MXFP4).reshape(-1)


def dequantize_blocks():
    """256 blocks with e = 0..255 (each scale byte once), then 16 blocks whose code bytes
    run through 0..255 (byte j of block k is 16k + j: every code in both nibbles), then 8
    random blocks."""
    scale_sweep = rng.integers(0, 256, (256, MXFP4_BYTES), dtype=np.uint8)
    scale_sweep[:, 0] = np.arange(256, dtype=np.uint8)
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16)
    code_sweep = np.concatenate(
        [rng.choice(np.array([0, 1, 2, 126, 127, 128, 253, 254, 255], dtype=np.uint8), (16, 1)),
         every_byte], axis=1)
    random = rng.integers(0, 256, (8, MXFP4_BYTES), dtype=np.uint8)
    return np.concatenate([scale_sweep, code_sweep, random]).reshape(-1)


def below_power_of_two_blocks():
    """Blocks whose largest magnitude is 2^k (1 - j 2^-24) for k from -124 to 127 and j up
    to 34: log2 of it rounds up to k in f32 for small j (and larger |k|), so the exponent
    byte depends on that rounding."""
    blocks = []
    for k in list(range(-124, 128, 16)) + [1, 2, 3, 4, 5, 64, 100, 127]:
        for j in [1, 2, 3, 5, 8, 13, 34]:
            amax = np.float32(np.ldexp(1.0 - j * 2.0 ** -24, k))
            x = (rng.uniform(-1.0, 1.0, BLOCK) * amax * 0.9).astype(np.float32)
            x[rng.integers(0, BLOCK)] = amax * rng.choice([-1.0, 1.0])
            blocks.append(x)
    return np.concatenate(blocks).astype(np.float32)


def quantize_inputs():
    """Rows of whole blocks: varied magnitudes, ties, edge exponents."""
    cases = []
    varied = np.concatenate([rng.normal(0.0, 10.0 ** s, BLOCK) for s in rng.integers(-30, 30, 24)])
    cases.append(("varied magnitudes", varied))
    # amax 6 gives e = 127 and d = 2^-1: the grid is 0, .5, 1, 1.5, 2, 3, 4, 6; the
    # midpoints between neighbours are ties, which go to the first code in table order.
    # Scaling by powers of two keeps them ties (the exponent byte follows).
    mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=np.float32)
    ties = []
    for s in [-100, -3, 0, 5, 90]:
        more_ties = rng.choice(np.concatenate([mids, -mids]), 16)
        block = np.concatenate([mids, [6.0], -mids, [-0.0], more_ties])
        ties.append(block.astype(np.float32) * np.float32(2.0 ** s))
    ties_scaled = np.concatenate(ties).astype(np.float32)
    cases.append(("rounding ties", ties_scaled))
    cases.append(("largest magnitude just below a power of two", below_power_of_two_blocks()))
    special = []
    special.append(np.zeros(BLOCK))
    zeros_and_negative_zeros = np.zeros(BLOCK)
    zeros_and_negative_zeros[1::2] = -0.0
    special.append(zeros_and_negative_zeros)
    # Largest magnitudes 2^-125 .. 2^-118: exponent bytes 0 .. 7, with f32 subnormals.
    for k in range(-125, -117):
        x = rng.uniform(-1.0, 1.0, BLOCK) * 2.0 ** k
        x[0] = 2.0 ** k
        special.append(x)
    # Near the largest f32: exponent byte 252, products up to 12 * 2^124.
    special.append(rng.uniform(-3.4e38, 3.4e38, BLOCK))
    # One large element: the rest round to 0 or the smallest codes.
    one_large = rng.normal(0.0, 1e-3, BLOCK)
    one_large[17] = -50.0
    special.append(one_large)
    cases.append(("zero, tiny and huge blocks", np.concatenate(special).astype(np.float32)))
    return cases


def hf_case(n_rows, n_groups):
    """Random HF `_blocks` [1, n_rows, n_groups, 16] and `_scales` [1, n_rows, n_groups] (one
    expert), scale bytes 0..254 with the ends over-represented (255 is NaN in the OCP spec;
    transformers' ldexp gives 0 * inf = NaN there), and transformers' f32 values
    [1, n_rows, 32 n_groups] (it returns them transposed, [1, 32 n_groups, n_rows])."""
    n_blocks = n_rows * n_groups
    blocks = rng.integers(0, 256, (n_blocks, 16), dtype=np.uint8)
    scales = rng.integers(0, 255, n_blocks, dtype=np.uint8)
    ends = np.array([0, 1, 2, 127, 128, 252, 253, 254], dtype=np.uint8)[:n_blocks]
    scales[:ends.size] = ends
    values = convert_moe_packed_tensors(
        torch.from_numpy(blocks.reshape(1, n_rows, n_groups, 16)),
        torch.from_numpy(scales.reshape(1, n_rows, n_groups)),
        dtype=torch.float32,
    ).transpose(1, 2).reshape(-1).numpy()
    assert values.size == n_blocks * BLOCK
    return {"n_blocks": n_blocks, "blocks": blocks.tobytes().hex(),
            "scales": scales.tobytes().hex(), "values_f32": f32_hex(values)}


class Ggml:
    def __init__(self, lib):
        self.lib = lib
        table = (ctypes.c_float * (1 << 16)).in_dll(lib, "ggml_table_f32_f16")
        values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        ctypes.memmove(table, values.ctypes.data, values.nbytes)

    def quantize(self, name, x, type_size):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(x.size // BLOCK * type_size, dtype=np.uint8)
        fn = getattr(self.lib, f"quantize_row_{name}_ref")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out

    def vec_dot(self, n, w, xq):
        fn = self.lib.ggml_vec_dot_mxfp4_q8_0_generic
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                       ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        result = np.zeros(1, dtype=np.float32)
        fn(n, result.ctypes.data, 0, w.ctypes.data, 0, xq.ctypes.data, 0, 1)
        return result


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ggml_dir = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) == 3 else ggml_commit(ggml_dir)

    data = dequantize_blocks()
    dequantize_case = {"n_elements": data.size // MXFP4_BYTES * BLOCK,
                       "bytes": data.tobytes().hex(),
                       "dequant_f32": f32_hex(gguf_dequantize(data))}

    with tempfile.TemporaryDirectory() as work_dir:
        ggml = Ggml(build_library(ggml_dir, work_dir))
        quantize_cases = []
        for what, x in quantize_inputs():
            q = gguf_quantize(x)
            q_ggml = ggml.quantize("mxfp4", x, MXFP4_BYTES)
            assert np.array_equal(q, q_ggml), f"gguf-py and ggml quantize {what} differently"
            quantize_cases.append({"what": what, "input_f32": f32_hex(x),
                                   "bytes": q.tobytes().hex()})

        dot_cases = []
        for n_blocks, w_scale in [(1, 1.0), (3, 1e-2), (5, 30.0), (8, 1.0), (13, 1e3), (90, 1.0)]:
            n = n_blocks * BLOCK
            w = gguf_quantize(rng.normal(0.0, w_scale, n).astype(np.float32))
            xq = ggml.quantize("q8_0", rng.normal(0.0, 1.0 / w_scale, n), Q8_0_BYTES)
            dot_cases.append({"n_elements": n, "w": w.tobytes().hex(), "x": xq.tobytes().hex(),
                              "ggml_dot_f32": f32_hex(ggml.vec_dot(n, w, xq))})

    doc = {
        "generator": "crates/wazn-kernels/tests/gen_mxfp4_vectors.py",
        "gguf_version": importlib.metadata.version("gguf"),
        "transformers_version": importlib.metadata.version("transformers"),
        "numpy_version": np.__version__,
        "ggml_commit": commit,
        "seed": SEED,
        "dequantize": dequantize_case,
        "quantize": quantize_cases,
        "hf": [hf_case(1, 1), hf_case(1, 7), hf_case(4, 16)],
        "vec_dot": dot_cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
