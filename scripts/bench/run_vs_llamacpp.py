#!/usr/bin/env python3
"""Prompt and generation tokens/s of `wazn run` next to llama.cpp's, same model, same threads.

Alternates the two engines REPEAT times in the same time window (this machine is shared
and noisy: read the ratio, not the absolute figures). llama.cpp is driven through the
`llama-cpp-python` binding (pinned in scripts/reference/requirements-llamacpp.txt):
one batched evaluation of the prompt, then one evaluation per generated token, greedy,
as `wazn run` does. Both read the same token ids: wazn's tokenization of PROMPT.

usage: run_vs_llamacpp.py [--model GGUF] [--wazn target/release/wazn] [--threads 2]
                          [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3]
Run it with the venv that has llama-cpp-python.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from llama_cpp import Llama

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path(os.environ.get("WAZN_CACHE_DIR", Path.home() / ".cache/wazn")) / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
        "combined movable metal type, oil-based ink and a wooden press adapted from wine making. ")


def wazn_once(args, prompt: str) -> tuple[float, float, list[int]]:
    cmd = [args.wazn, "run", "--json", "-m", str(args.model), "-t", str(args.threads), "--temp", "0",
           "-n", str(args.gen_tokens), "--ignore-eos", prompt]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    t = doc["timings"]
    return t["prompt_tokens_per_second"], t["generation_tokens_per_second"], doc["prompt_ids"]


def llamacpp_once(llm: Llama, prompt_ids: list[int], n_gen: int) -> tuple[float, float]:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt_ids)
    t1 = time.perf_counter()
    token = int(llm.scores[len(prompt_ids) - 1].argmax())
    for _ in range(n_gen - 1):
        llm.eval([token])
        token = int(llm.scores[llm.n_tokens - 1].argmax())
    t2 = time.perf_counter()
    return len(prompt_ids) / (t1 - t0), (n_gen - 1) / (t2 - t1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--wazn", default=str(ROOT / "target/release/wazn"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    # A prompt of about --prompt-tokens tokens (the exact ids come from wazn's tokenizer).
    prompt = TEXT * (args.prompt_tokens // 30 + 1)
    _, _, ids = wazn_once(argparse.Namespace(**{**vars(args), "gen_tokens": 1}), prompt)
    while len(ids) > args.prompt_tokens:
        prompt = prompt[: int(len(prompt) * args.prompt_tokens / len(ids)) - 1]
        _, _, ids = wazn_once(argparse.Namespace(**{**vars(args), "gen_tokens": 1}), prompt)

    llm = Llama(model_path=str(args.model), n_ctx=1024, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=True, verbose=False)
    rows = {"wazn": [], "llama.cpp": []}
    for _ in range(args.repeat):
        pp, tg, _ = wazn_once(args, prompt)
        rows["wazn"].append((pp, tg))
        rows["llama.cpp"].append(llamacpp_once(llm, ids, args.gen_tokens))

    print(f"model {args.model.name}, {args.threads} threads, prompt {len(ids)} tokens, "
          f"{args.gen_tokens} generated, {args.repeat} alternating runs, "
          f"llama-cpp-python {metadata.version('llama-cpp-python')}")
    print("| engine | prompt tokens/s | generation tokens/s |")
    print("|---|---|---|")
    means = {}
    for name, r in rows.items():
        pp = statistics.mean(x[0] for x in r)
        tg = statistics.mean(x[1] for x in r)
        means[name] = (pp, tg)
        print(f"| {name} | {pp:.1f} | {tg:.1f} |")
    w, l = means["wazn"], means["llama.cpp"]
    print(f"| wazn / llama.cpp | {w[0] / l[0]:.3f} | {w[1] / l[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
