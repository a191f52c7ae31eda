#!/usr/bin/env python3
"""Writes tests/data/eval_reference.json: per-item log-likelihoods of the multiple-choice
tasks in tests/data, computed with Hugging Face transformers on the default model (the
Q4_1 GGUF, which transformers dequantizes to float32).

Items are asked as lm-evaluation-harness asks them:
  * question items: "{question.strip()}\\nA. {c0}\\nB. {c1}...\\nAnswer:" with
    continuations " A", " B", ... (its MMLU template);
  * completion items: the context with continuations " {ending}";
  * K shots: the first K other items, each "{text} {gold continuation}", joined and
    followed by "\\n\\n" (fewshot_delimiter), then the item;
and split into context and continuation tokens by lm-eval's _encode_pair (trailing
spaces of the context move to the continuation; the continuation is what the whole text
has past the context's own tokens), tokenized with the tokenizer's own special-token
rule. A log-likelihood is the sum, over the continuation tokens, of the log-softmax of
the logits of the position before each.

Run from the repository root with the reference environment (scripts/reference):

    python crates/wazn-eval/tests/gen_eval_reference.py ~/.cache/wazn/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "scripts" / "reference"))
from make_reference import load, sha256_of, versions  # noqa: E402

CASES = [("questions.jsonl", 0), ("questions.jsonl", 2), ("completions.jsonl", 0)]


def items_of(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        doc = json.loads(line)
        if "question" in doc:
            letters = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
            text = doc["question"].strip()
            for letter, choice in zip(letters, doc["choices"]):
                text += f"\n{letter}. {choice}"
            text += "\nAnswer:"
            answer = doc["answer"]
            gold = answer if isinstance(answer, int) else ord(answer) - ord("A")
            choices = letters
        else:
            text, choices, gold = doc["context"], doc["endings"], doc["label"]
        out.append({"id": str(doc.get("id", n)), "text": text, "choices": choices, "gold": gold})
    return out


def context_of(items: list[dict], index: int, shots: int) -> str:
    examples = [it for i, it in enumerate(items) if i != index][:shots]
    prefix = "".join(f"{ex['text']} {ex['choices'][ex['gold']]}\n\n" for ex in examples)
    return prefix + items[index]["text"]


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation)["input_ids"]
    context_enc = tok(context)["input_ids"]
    return context_enc, whole[len(context_enc):]


@torch.no_grad()
def loglikelihood(model, context_enc: list[int], continuation_enc: list[int]) -> tuple[float, bool]:
    ids = torch.tensor([context_enc + continuation_enc[:-1]])
    logits = model(ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)[len(context_enc) - 1:]
    target = torch.tensor(continuation_enc)
    ll = logprobs.gather(1, target[:, None]).sum().item()
    greedy = bool((logprobs.argmax(dim=-1) == target).all().item())
    return ll, greedy


def main() -> int:
    model_path = Path(sys.argv[1]).expanduser()
    tok, model, fixes = load(model_path, torch.float32)
    cases = []
    for file_name, shots in CASES:
        items = items_of(HERE / "data" / file_name)
        results = []
        for index, item in enumerate(items):
            context = context_of(items, index, shots)
            choices = []
            for choice in item["choices"]:
                context_enc, continuation_enc = encode_pair(tok, context, " " + choice)
                ll, greedy = loglikelihood(model, context_enc, continuation_enc)
                choices.append({"context_len": len(context_enc), "continuation_ids": continuation_enc,
                                "ll": ll, "is_greedy": greedy})
            results.append({"id": item["id"], "gold": item["gold"], "choices": choices})
        cases.append({"task": file_name, "shots": shots, "items": results})
    out = {
        "model": model_path.name,
        "model_sha256": sha256_of(model_path),
        "tokenizer_fixes": fixes,
        "versions": versions(),
        "cases": cases,
    }
    (HERE / "data" / "eval_reference.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
