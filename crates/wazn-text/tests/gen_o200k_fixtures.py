"""Writes tests/data/o200k_harmony_cases.json: tiktoken's o200k_harmony ids for a varied corpus.

tiktoken downloads its rank files on first use; this builds the same Encoding from the local
o200k_base rank file that the tiktoken-rs crate ships (its SHA-256 is checked), with tiktoken's
own o200k regex and the harmony special tokens as tiktoken_ext.openai_public defines them.

Run (tiktoken pinned to 0.14.0):
    python -m venv /tmp/venv && /tmp/venv/bin/pip install tiktoken==0.14.0
    cargo fetch   # puts tiktoken-rs's sources under ~/.cargo/registry
    /tmp/venv/bin/python crates/wazn-text/tests/gen_o200k_fixtures.py
"""

import glob
import hashlib
import json
import os

import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

HERE = os.path.dirname(os.path.abspath(__file__))
SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def rank_file():
    pattern = os.path.expanduser(
        "~/.cargo/registry/src/*/tiktoken-rs-0.12.*/assets/o200k_base.tiktoken"
    )
    found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit(f"no rank file matches {pattern}; run `cargo fetch` first")
    return found[-1]


def encoding():
    path = rank_file()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == SHA256, f"{path} has SHA-256 {digest}"
    ranks = tiktoken.load.load_tiktoken_bpe(path, expected_hash=SHA256)
    # Take the regex and special tokens from tiktoken's own definition of o200k_harmony,
    # with the rank loading replaced by the local file.
    orig = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *a, **k: ranks
    try:
        spec = openai_public.o200k_harmony()
    finally:
        openai_public.load_tiktoken_bpe = orig
    return tiktoken.Encoding(**spec)


CORPUS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. It's 12:45 and I'd say we'll go.",
    "HELLO World; CamelCaseIdentifier and snake_case_name, don't YOU'LL.",
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "你好，世界。今天天气很好，我们去公园散步吧。",
    "日本語のテキストとカタカナ、ひらがな。",
    "Привет, мир! Ёлки-палки.",
    "emoji: 👍🏽 🇫🇷 👨‍👩‍👧‍👦 ✨🔥 and ZWJ sequences",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n",
    "def f(a, b):\n\treturn a ** b  # power\n\n\n\nclass A:\n    pass\n",
    "   leading spaces and trailing spaces   ",
    "tabs\t\tand\r\nwindows newlines\r\n\r\n and   runs        of spaces\n\n\n",
    "numbers: 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F 1e-9",
    "<|start|>user<|message|>not special in text<|end|>",
    "mixed <|channel|>analysis<|constrain|>json and <|reserved_200500|> and <|endoftext|>",
    "<|startoftext|><|return|><|call|><|not_a_token|>",
    "URL https://example.com/path?q=1&r=two#frag and email a.b@c.de",
    "Ünïcödé çömbïning: é (e + U+0301), ﬁ ligature, Å, ß",
    "   \n  \n\t \u00a0nbsp\u2003em-space",
    "",
    " ",
    "\n",
    "a" * 300,
    "🙂" * 20,
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
    "Math: ∑_{i=1}^{n} i² = n(n+1)/2 → ∞; α β γ",
    "{\"location\": \"Tokyo\", \"unit\": \"celsius\", \"days\": [1, 2, 3]}",
]


def main():
    enc = encoding()
    cases = []
    for text in CORPUS:
        cases.append(
            {
                "text": text,
                "ordinary": enc.encode_ordinary(text),
                "with_special": enc.encode(text, allowed_special="all"),
            }
        )
    # tiktoken keeps o200k_base's <|endofprompt|> at 200018 next to <|reserved_200018|>;
    # openai-harmony's own table (and tiktoken-rs) only know the reserved name, so wazn follows
    # them and the corpus avoids that string.
    specials = {name: enc.encode_single_token(name) for name in sorted(enc.special_tokens_set)
                if not name.startswith("<|reserved_") and name != "<|endofprompt|>"}
    out = {
        "generator": "tests/gen_o200k_fixtures.py",
        "tiktoken_version": tiktoken.__version__,
        "n_vocab": enc.n_vocab,
        "named_specials": specials,
        "cases": cases,
        # Bytes of a spread of ids, hex, for token_bytes.
        "token_bytes": {str(i): enc.decode_single_token_bytes(i).hex()
                        for i in [0, 1, 255, 256, 1000, 35644, 17196, 173781, 199997,
                                  199998, 200012, 200013, 200500, 201087]},
    }
    path = os.path.join(HERE, "data", "o200k_harmony_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
