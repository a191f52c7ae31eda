#!/usr/bin/env python3
"""Write two small Hugging Face tokenizer folders and HF `tokenizers`' own ids for test texts.

Run from the repository root with the reference Python environment (no network needed):

    HF_HUB_OFFLINE=1 python crates/wazn-text/tests/gen_hf_folder_fixtures.py

It writes, under crates/wazn-text/tests/data/hf_folders/:

  byte_bpe/   a byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder), trained here,
              with special tokens and one non-special added token
  spm_bpe/    a SentencePiece-style BPE (Llama 2 style: "▁" for spaces, <0xNN> byte fallback,
              a post-processor that adds <s>), trained here
  cases.json  for each folder and text: encode(add_special_tokens=False / True), the ids with
              special-token strings parsed, and decode(ids)

Each folder has tokenizer.json (saved by `tokenizers`), tokenizer_config.json,
generation_config.json and config.json as transformers lays them out.
"""

from __future__ import annotations

import json
import os

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "hf_folders")

TRAIN = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, how are you today?",
    "def add(a, b):\n    return a + b\n",
    "Numbers 12345 and 3.14159 appear here.",
    "Ça va? Très bien, merci. Grüße aus München.",
    "مرحبا بالعالم",
    "你好，世界。",
] * 20

TEXTS = [
    "Hello world",
    "The lazy dog jumps over the quick brown fox!",
    "  leading spaces and trailing  ",
    "def sub(a, b):\n\treturn a - b\n",
    "Très bien 你好 مرحبا 🙂 emoji",
    "unseen: zebra qwxj 🦓",
    "<|im_start|>user\nHi<|im_end|>",
    "<s> literal </s> and <think> added",
    "",
]


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def byte_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN, trainer)
    tok.add_tokens(["<think>"])
    config = {
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "special": True},
        "add_bos_token": False,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    }
    return tok, config, {"eos_token_id": [2, 0]}


def spm_bpe():
    # Learn merges over "▁"-marked text, then rebuild the model with SentencePiece's layout:
    # <unk> <s> </s>, the 256 byte tokens, then the learned pieces.
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False)
    learner.train_from_iterator(TRAIN, trainer)
    learned = json.loads(learner.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    return tok, config, {"bos_token_id": 1, "eos_token_id": 2}


def main():
    cases = {"generator": "crates/wazn-text/tests/gen_hf_folder_fixtures.py",
             "tokenizers_version": tokenizers.__version__, "folders": {}}
    for name, build in [("byte_bpe", byte_bpe), ("spm_bpe", spm_bpe)]:
        tok, config, generation = build()
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        tok.save(os.path.join(folder, "tokenizer.json"))
        write_json(os.path.join(folder, "tokenizer_config.json"), config)
        write_json(os.path.join(folder, "generation_config.json"), generation)
        write_json(os.path.join(folder, "config.json"), {"model_type": "llama"})
        # Special-token strings as text: a copy that does not match special tokens.
        as_text = Tokenizer.from_str(tok.to_str())
        as_text.encode_special_tokens = True
        items = []
        for text in TEXTS:
            ids = as_text.encode(text, add_special_tokens=False).ids
            items.append({
                "text": text,
                "ids": ids,
                "ids_add_special": as_text.encode(text, add_special_tokens=True).ids,
                "ids_parse_special": tok.encode(text, add_special_tokens=False).ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
            })
        cases["folders"][name] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": items}
    write_json(os.path.join(OUT, "cases.json"), cases)


if __name__ == "__main__":
    main()
