#!/usr/bin/env python3
"""Writes tests/data/dtype_ggml_vectors.json: outputs of ggml's own C reference kernels, for
what the gguf Python package cannot produce: the activation quantizers (Q8_0, Q8_1, Q8_K),
the K-quant weight quantizers (Q2_K..Q6_K, without importance matrix, as llama-quantize
runs them) and the dot products of every quantized weight type with its activation type.

Run from the repository root with a ggml source checkout (https://github.com/ggml-org/ggml,
or llama.cpp's ggml/ folder) and gcc:

    /work/ref/venv/bin/python crates/wazn-kernels/tests/gen_dtype_ggml_vectors.py /path/to/ggml [commit]

(`commit` names the ggml revision in the output when the folder is not a git checkout.)

It compiles ggml's src/ggml-quants.c (reference quantizers) and src/ggml-cpu/quants.c (the
portable `_generic` dot products) for x86-64 without F16C/FMA, links them with a few stubs
into a shared library in a temporary folder, and calls them through ctypes on data from a
fixed numpy seed. The ggml commit used is recorded in the file. It is built with NDEBUG, as
release builds of ggml are, so rows whose scales overflow f16 go through nearest_int's bit
trick instead of tripping its range assert.
"""

import ctypes
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SEED = 20240522
KQUANT_SEED = 20250611  # the weight quantizer rows draw from their own generator
N = 512  # elements per row: two K-quant super-blocks
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "dtype_ggml_vectors.json")

# Just enough of ggml's core for the two files to link. ggml_table_f32_f16 (f16 -> f32 for
# the CPU kernels) is filled from numpy below.
STUBS_C = r"""
#include <stdio.h>
#include <stdlib.h>
float ggml_table_f32_f16[1 << 16];
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}
const char * ggml_type_name(int type) { (void) type; return "?"; }
size_t ggml_type_size(int type) { (void) type; abort(); }
size_t ggml_row_size(int type, long long ne) { (void) type; (void) ne; abort(); }
"""

# (weight type, activation type), as ggml pairs them.
DOT_TYPES = [
    ("q4_0", "q8_0"), ("q4_1", "q8_1"), ("q5_0", "q8_0"), ("q5_1", "q8_1"), ("q8_0", "q8_0"),
    ("q2_K", "q8_K"), ("q3_K", "q8_K"), ("q4_K", "q8_K"), ("q5_K", "q8_K"), ("q6_K", "q8_K"),
]
TYPE_SIZES = {"q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "q8_0": 34, "q8_1": 36,
              "q2_K": 84, "q3_K": 110, "q4_K": 144, "q5_K": 176, "q6_K": 210, "q8_K": 292}
BLOCK_SIZES = {name: (256 if name.endswith("_K") else 32) for name in TYPE_SIZES}

rng = np.random.default_rng(SEED)


def build_library(ggml_dir, work_dir):
    stubs = os.path.join(work_dir, "stubs.c")
    with open(stubs, "w") as f:
        f.write(STUBS_C)
    lib = os.path.join(work_dir, "libggml_ref.so")
    includes = ["-I", os.path.join(ggml_dir, "include"), "-I", os.path.join(ggml_dir, "src"),
                "-I", os.path.join(ggml_dir, "src", "ggml-cpu")]
    sources = [os.path.join(ggml_dir, "src", "ggml-quants.c"),
               os.path.join(ggml_dir, "src", "ggml-cpu", "quants.c"), stubs]
    # -ffp-contract=off: no fused multiply-adds, so the C rounds like the plain expressions.
    subprocess.run(["gcc", "-O2", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=off",
                    "-DNDEBUG", *includes, *sources, "-o", lib, "-lm"], check=True)
    return ctypes.CDLL(lib)


def ggml_commit(ggml_dir):
    try:
        return subprocess.run(["git", "-C", ggml_dir, "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


class Ggml:
    def __init__(self, lib):
        self.lib = lib
        table = (ctypes.c_float * (1 << 16)).in_dll(lib, "ggml_table_f32_f16")
        values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        ctypes.memmove(table, values.ctypes.data, values.nbytes)

    def quantize(self, name, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(x.size // BLOCK_SIZES[name] * TYPE_SIZES[name], dtype=np.uint8)
        fn = getattr(self.lib, f"quantize_row_{name}_ref")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out

    def vec_dot(self, w_name, x_name, n, w, xq):
        fn = getattr(self.lib, f"ggml_vec_dot_{w_name}_{x_name}_generic")
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                       ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        result = np.zeros(1, dtype=np.float32)
        fn(n, result.ctypes.data, 0, w.ctypes.data, 0, xq.ctypes.data, 0, 1)
        return result


def f32_hex(values):
    return np.ascontiguousarray(values, dtype="<f4").tobytes().hex()


def random_row(scale):
    """Normal values of magnitude `scale`, 1% of them 20x larger."""
    outliers = np.where(rng.uniform(size=N) < 0.01, 20.0, 1.0)
    return (rng.normal(size=N) * scale * outliers).astype(np.float32)


def ties_row():
    """Rows whose scales come out exactly 1 (every 32-block holds +-127, so d = 127/127 and
    Q8_K's iscale = -127/+-127), filled with half-integers: every code is a rounding tie.
    One 32-block is all zeros."""
    x = rng.integers(-127, 127, N).astype(np.float32) + 0.5
    x[::32] = np.where(rng.uniform(size=N // 32) < 0.5, -127.0, 127.0)
    x[64:96] = 0.0
    return x


KQUANT_TYPES = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]


def kquant_rows():
    """(label, row) pairs of N elements (two super-blocks) for the weight quantizers: the
    ordinary case and the edge cases of their searches."""
    g = np.random.default_rng(KQUANT_SEED)
    half = N // 2

    def normal(size, scale=1.0):
        return g.normal(size=size) * scale

    def with_outliers(x, fraction, low, high):
        spikes = g.uniform(size=x.size) < fraction
        return np.where(spikes, x * g.uniform(low, high, x.size), x)

    rows = [
        ("normal", normal(N)),
        ("normal, weight-sized (0.02)", normal(N, 0.02)),
        ("normal, 1% outliers x20", with_outliers(normal(N), 0.01, 20, 20)),
        ("normal, 5% outliers x50..x200", with_outliers(normal(N, 0.1), 0.05, 50, 200)),
        ("all zero", np.zeros(N)),
        ("constant 0.75 | constant -3", np.repeat([0.75, -3.0], half)),
        ("constant per 16", np.repeat(g.choice([0.0, 1.0, -2.5, 1e-3], N // 16) *
                                      g.uniform(0.5, 2, N // 16), 16)),
        ("all positive | all negative", np.concatenate([g.uniform(0.1, 2, half),
                                                        -g.uniform(0.1, 2, half)])),
        ("tiny: 1e-4 | 1e-6", np.concatenate([normal(half, 1e-4), normal(half, 1e-6)])),
        ("tiny: 1e-9 | 1e-15 and 1e-39", np.concatenate([
            normal(half, 1e-9), normal(half // 2, 1e-15), normal(half // 2, 1e-39)])),
        ("a few huge: 1e4, 1e6 | 1e30", np.concatenate([
            with_outliers(normal(half), 0.02, 1e4, 1e6),
            with_outliers(normal(half), 0.01, 1e30, 1e30)])),
        ("one spike per super-block", np.concatenate([
            np.where(np.arange(half) == 37, 5.0, 0.0),
            np.where(np.arange(half) == 200, -7.0, 0.0)])),
        ("sparse: 3% non-zero", np.where(g.uniform(size=N) < 0.03, normal(N), 0.0)),
        ("small integers", g.integers(-8, 8, N).astype(np.float64)),
        ("magnitude 10^-6..10^2 per 16",
         normal(N) * np.repeat(10.0 ** g.uniform(-6, 2, N // 16), 16)),
    ]
    return [(label, np.asarray(x, dtype=np.float32)) for label, x in rows]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ggml_dir = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) == 3 else ggml_commit(ggml_dir)
    with tempfile.TemporaryDirectory() as work_dir:
        ggml = Ggml(build_library(ggml_dir, work_dir))

        quantize_cases = []
        for name in ["q8_0", "q8_1", "q8_K"]:
            for x in [random_row(1.0), random_row(1e-3), ties_row()]:
                quantize_cases.append({"dtype": name.upper(), "input_f32": f32_hex(x),
                                       "bytes": ggml.quantize(name, x).tobytes().hex()})

        dot_cases = []
        for w_name, x_name in DOT_TYPES:
            for scale in [1e-2, 1.0, 30.0]:
                w = ggml.quantize(w_name, random_row(scale))
                xq = ggml.quantize(x_name, random_row(1.0 / scale))
                result = ggml.vec_dot(w_name, x_name, N, w, xq)
                dot_cases.append({"dtype": w_name.upper(), "partner": x_name.upper(),
                                  "n_elements": N, "w": w.tobytes().hex(),
                                  "x": xq.tobytes().hex(), "ggml_dot_f32": f32_hex(result)})

        weight_cases = []
        for label, x in kquant_rows():
            weight_cases.append({"input": label, "input_f32": f32_hex(x),
                                 "bytes": {name.upper(): ggml.quantize(name, x).tobytes().hex()
                                           for name in KQUANT_TYPES}})

    doc = {
        "generator": "crates/wazn-kernels/tests/gen_dtype_ggml_vectors.py",
        "ggml_commit": commit,
        "numpy_version": np.__version__,
        "seed": SEED,
        "kquant_seed": KQUANT_SEED,
        "quantize": quantize_cases,
        "weight_quantize": weight_cases,
        "vec_dot": dot_cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(quantize_cases)} quantize, {len(weight_cases)} weight quantize and "
          f"{len(dot_cases)} vec_dot cases to {OUT} "
          f"({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
