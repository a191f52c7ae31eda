#!/usr/bin/env python3
"""Write llama.cpp's logits for the token sequences of a transformers reference.

llama.cpp multiplies quantized weights with activations quantized to 8 bits (Q8_0 /
Q8_1 / Q8_K), as wazn's fast path does, so its logits are the reference for that path,
while transformers (make_reference.py) is the reference for wazn's f32-activation path.

For every entry of REFERENCE (a make_reference.py output) this evaluates
prompt_ids + greedy_ids[:-1] in one batch with llama.cpp (the `llama-cpp-python`
binding, pinned in requirements-llamacpp.txt) and records the top-k logits at every
position, in the same layout as make_reference.py.

usage: llamacpp_logits.py MODEL.gguf REFERENCE.json -o OUT.json [--top-k 10] [--threads 2]

Set-up (builds llama.cpp from source, about 10 minutes on 2 cores):
    python3 -m venv .venv-llamacpp
    .venv-llamacpp/bin/pip install --no-binary llama-cpp-python -r scripts/reference/requirements-llamacpp.txt
"""

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from llama_cpp import Llama



def f32(x: float) -> float:
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("reference", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    ref = json.loads(args.reference.read_text(encoding="utf-8"))
    llm = Llama(model_path=str(args.model), n_ctx=1024, n_batch=1024, n_ubatch=1024,
                n_threads=args.threads, logits_all=True, verbose=False)
    entries = []
    for entry in ref["entries"]:
        tokens = entry["prompt_ids"] + entry["greedy_ids"][:-1]
        llm.reset()
        llm.eval(tokens)
        scores = np.asarray(llm.scores[: len(tokens)], dtype=np.float32)  # [positions, vocab]
        rows = []
        for pos, row in enumerate(scores):
            top = np.argsort(-row, kind="stable")[: args.top_k]
            rows.append({"pos": pos, "ids": [int(i) for i in top], "logits": [f32(row[i]) for i in top]})
        entries.append({"id": entry["id"], "tokens": tokens, "topk": rows})
        print(f"[{entry['id']}] {len(tokens)} positions", file=sys.stderr)

    doc = {
        "format": "llamacpp-logits/1",
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "versions": {"llama-cpp-python": metadata.version("llama-cpp-python")},
        "threads": args.threads,
        "entries": entries,
    }
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    args.output.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
