#!/usr/bin/env python3
"""Writes the reference data the wazn-formats tests compare against, using the `gguf` Python
package (gguf-py, llama.cpp's own reader/writer) as the independent implementation.

Run from the repository root, with the reference environment:

    /work/ref/venv/bin/python crates/wazn-formats/tests/gen_gguf_facts.py \
        [--model ~/.cache/wazn/models/SmolLM2-135M-Instruct.Q4_1.gguf]

Outputs (under crates/wazn-formats/tests/data/):
  smollm2_gguf_facts.json   facts about the default model as gguf.GGUFReader sees them
  tiny_gguf_py.gguf         a small file written by gguf.GGUFWriter (every value type,
                            nested arrays, custom alignment, several tensor types)
  tiny_gguf_py_facts.json   the same facts for that file
  tiny_big_endian.gguf      a small big-endian file written by gguf.GGUFWriter
  ggml_type_sizes.json      gguf-py's ggml type table (id, name, block size, bytes per block)
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFEndian, GGUFValueType

DATA = Path(__file__).resolve().parent / "data"
# How many leading values of each array go into the facts.
HEAD = 5


def default_model() -> Path:
    cache = os.environ.get("WAZN_CACHE_DIR")
    if cache is None:
        xdg = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
        cache = os.path.join(xdg, "wazn")
    return Path(cache) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def field_facts(field) -> dict:
    """Type chain and value of one metadata field. Scalars also carry their raw little-endian
    bytes so that floats compare exactly; arrays carry their length and leading leaves
    (gguf-py flattens nested arrays into leaves)."""
    types = [t.name for t in field.types]
    out = {"key": field.name, "types": types}
    if field.types[0] == GGUFValueType.ARRAY:
        leaves = field.contents()
        out["len"] = int(field.parts[4][0])
        out["n_leaves"] = len(leaves)
        out["head"] = leaves[:HEAD]
        out["last"] = leaves[-1] if leaves else None
    else:
        out["value"] = field.contents()
        out["raw_hex"] = field.parts[-1].tobytes().hex()
    return out


def file_facts(path: Path) -> dict:
    reader = gguf.GGUFReader(path)
    fields = [f for name, f in reader.fields.items() if not name.startswith("GGUF.")]
    tensors = []
    for t in reader.tensors:
        raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
        assert raw.size == t.n_bytes, t.name
        tensors.append({
            "name": t.name,
            "type_id": int(t.tensor_type),
            "type_name": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],
            "n_elements": int(t.n_elements),
            "data_offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "head_hex": raw[:16].tobytes().hex(),
            "tail_hex": raw[-16:].tobytes().hex(),
        })
    return {
        "generator": f"gguf-py {gguf.__version__ if hasattr(gguf, '__version__') else ''}".strip(),
        "file_name": path.name,
        "file_size": path.stat().st_size,
        "version": int(reader.fields["GGUF.version"].contents()),
        "tensor_count": int(reader.fields["GGUF.tensor_count"].contents()),
        "kv_count": int(reader.fields["GGUF.kv_count"].contents()),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "metadata": [field_facts(f) for f in fields],
        "tensors": tensors,
    }


def write_tiny(path: Path, endianess: GGUFEndian) -> None:
    w = gguf.GGUFWriter(path, "llama", endianess=endianess)
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 1e-5)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 3.141592653589793)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "مرحبا 👋 héllo")
    w.add_string("test.empty_string", "")
    w.add_array("test.str_array", ["a", "", "ß", "<|im_start|>"])
    w.add_array("test.i32_array", [1, -2, 3])
    w.add_array("test.f32_array", [0.5, -1.25, 1e-3])
    w.add_array("test.nested", [[1, 2], [3]])
    w.add_tensor("f32_matrix", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("f16_vector", np.linspace(-1, 1, 8).astype(np.float16))
    q4_1 = np.arange(2 * 2 * 20, dtype=np.uint8).reshape(2, 40)  # 2 rows of 64 values
    w.add_tensor("q4_1_matrix", q4_1, raw_dtype=GGMLQuantizationType.Q4_1)
    q8_0 = (np.arange(34, dtype=np.uint8) * 7).reshape(1, 34)  # one block
    w.add_tensor("q8_0_vector", q8_0, raw_dtype=GGMLQuantizationType.Q8_0)
    w.add_tensor("i32_3d", np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def type_table() -> list:
    return [
        {"id": int(t), "name": t.name, "block_size": bs, "type_size": ts}
        for t, (bs, ts) in sorted(GGML_QUANT_SIZES.items(), key=lambda kv: int(kv[0]))
    ]


def dump(name: str, obj) -> None:
    text = json.dumps(obj, indent=1, ensure_ascii=False) + "\n"
    (DATA / name).write_text(text, encoding="utf-8")
    print(f"wrote {DATA / name} ({len(text)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=default_model())
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)

    dump("ggml_type_sizes.json", type_table())

    tiny = DATA / "tiny_gguf_py.gguf"
    write_tiny(tiny, GGUFEndian.LITTLE)
    dump("tiny_gguf_py_facts.json", file_facts(tiny))
    write_tiny(DATA / "tiny_big_endian.gguf", GGUFEndian.BIG)

    if args.model.exists():
        dump("smollm2_gguf_facts.json", file_facts(args.model))
    else:
        print(f"{args.model} not found; smollm2_gguf_facts.json not regenerated")


if __name__ == "__main__":
    main()
