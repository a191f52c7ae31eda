#!/usr/bin/env python3
"""Write the reference data that wazn-text's tests compare against.

Run from the repository root with the reference Python environment (transformers, tokenizers,
gguf, sentencepiece; no network needed):

    HF_HUB_OFFLINE=1 python crates/wazn-text/tests/gen_text_fixtures.py \\
        [--model ~/.cache/wazn/models/SmolLM2-135M-Instruct.Q4_1.gguf]

It writes, under crates/wazn-text/tests/data/:

  smollm2_tokenizer.json      ids and decodes of a varied corpus, from HF `tokenizers` as
                              transformers builds it from the GGUF (with llama.cpp's digit split
                              for pre = "smollm"), plus the same vocabulary under other
                              pre-tokenizers ("default", "llama-bpe", "qwen2", "gpt-4o")
  smollm2_chat_template.json  transformers' apply_chat_template(tokenize=False) of conversations
  chat_template_constructs.json  small templates exercising Jinja features, rendered by
                              transformers' chat-template renderer (Jinja2)
  tiny_spm.gguf, tiny_spm.json  a small SentencePiece BPE model trained here, written as a GGUF
                              by the gguf package, and sentencepiece's own ids for test texts
  bad_*.gguf                  malformed tokenizer metadata, written by the gguf package
  strftime_cases.json         Python's time.strftime of fixed UTC instants
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import pre_tokenizers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.integrations.gguf.gguf_tokenizer_mapping import (  # noqa: E402
    convert_gguf_tokenizer,
    get_gguf_tokenizer,
)
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = Path.home() / ".cache/wazn/models/SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp pre-tokenizer types that split every digit off before the GPT-2 regex. transformers
# keeps only the GPT-2 regex when it converts such a GGUF, so the reference is corrected to
# llama.cpp's split here (the same fix the project's model-reference tool applies).
DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}
# llama.cpp (and Meta's tokenizer.json) run these with BPE's ignore_merges on; transformers'
# GGUF conversion does not set it, so the reference sets it.
IGNORE_MERGES_PRE = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"}

CORPUS = [
    # English, contractions in both cases
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How's it going? I'm fine, you're great, they've left, we'll see, he'd go.",
    "It's John's book; don't touch it. IT'S JOHN'S. They'RE here.",
    "Don't 's 't 're 've 'm 'll 'd",
    # Arabic (with and without diacritics), Chinese, Japanese, Korean, Cyrillic, Hindi
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "وَزْن الكلمة العربية",
    "你好，世界！今天天气很好。",
    "こんにちは、世界。カタカナとひらがなと漢字。",
    "안녕하세요 세계",
    "Привет, мир! Как дела?",
    "नमस्ते दुनिया",
    # code, tabs and indentation
    "def f(x):\n\treturn x + 1\n",
    'fn main() {\n    let v: Vec<u32> = vec![1, 2, 3];\n    println!("{:?}", v);\n}\n',
    "if (a && b) { return -1; }\n\t\t// comment\n",
    "    indented four\n        eight\n\ttab\n",
    "x\t\ty\t \tz",
    "<div class=\"a\">&nbsp;</div>",
    "SELECT * FROM t WHERE id >= 10 AND name LIKE '%x%';",
    # emoji: single, variation selector, ZWJ sequences, skin tones, flags
    "I ❤️ Rust 🦀",
    "👩‍👩‍👧‍👦 family",
    "👍🏽👍🏿 thumbs",
    "🇸🇦🇯🇵 flags",
    "🧑🏻‍💻 coder",
    "🦀🦀🦀",
    # whitespace runs
    *(" " * n for n in range(1, 11)),
    *("\n" * n for n in range(1, 11)),
    *("a" + " " * n + "b" for n in (2, 3, 5, 10)),
    "a\n\nb",
    " \n \n ",
    "\r\n windows\r\n",
    "trailing spaces   ",
    "   leading spaces",
    "  both  ",
    "tab\there",
    # digits and numbers
    "1234567890",
    "3.14159 2.71828",
    "a  2",
    "a 2",
    "year 2024, pi ≈ 3.14",
    "12,345,678.90",
    "x=100000000000000000000",
    "٣٤٥ and ５６ and ²",
    # URLs and addresses
    "https://example.com/path?q=1&lang=ar#frag",
    "email: someone@example.org",
    # special-token strings typed inside text
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|endoftext|>",
    "text <|endoftext|> more",
    "<|im_start|>",
    "<repo_name>wazn<file_sep>",
    "<|im_start|><|im_end|>",
    "<|im_start",
    # mixed scripts and Unicode oddities
    "Hello مرحبا 你好 こんにちは Привет",
    "Ünïcödé façade naïve café",
    "e\u0301 combining acute",
    "a\u0300\u0301\u0302 stacked marks",
    "ﷺ ligature",
    "zero\u200bwidth",
    "NBSP\u00a0here",
    "soft\u00adhyphen",
    "ctrl\x00\x01\x7fchars",
    # empty and tiny
    "",
    " ",
    "a",
    # a longer paragraph
    (
        "Large language models run on a user's own machine when the weights are small enough. "
        "SmolLM2 has 135M parameters; quantized to 4 bits it needs about 90 MB.\n\n"
        "Steps:\n  1. fetch the file\n  2. run `wazn run`\n  3. profit!!!"
    ),
]

# Token texts llama.cpp treats as end of generation, whatever their ids.
EOG_TEXTS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>",
             "<|return|>", "<|call|>", "</s>", "<|eom_id|>")

SPECIAL_PARSE_TEXTS = [
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|endoftext|>",
    "text <|endoftext|> more",
    "<repo_name>wazn<file_sep>",
    "<|im_start|><|im_end|>",
    "<|im_start|>assistant\n 12 <|im_end|>",
    "no specials here",
]

SMOLLM_CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ],
    [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green."},
    ],
    [
        {"role": "user", "content": "  spaced out  \n\nwith newlines\n"},
        {"role": "assistant", "content": " ok "},
        {"role": "user", "content": "مرحبا 你好 🦀 ünïcödé"},
    ],
    [{"role": "system", "content": "Only a system prompt."}],
    [{"role": "user", "content": "Braces {{ not_a_var }} and {% raw %} stay text <|im_end|>"}],
]

CONSTRUCT_MESSAGES = [
    {"role": "system", "content": "  Be brief.  "},
    {"role": "user", "content": "Hello there, friend"},
    {"role": "assistant", "content": "Hi! 👋"},
    {"role": "user", "content": "Say \"quotes\" & <tags>\nand a newline"},
]

CONSTRUCT_TEMPLATES = {
    "llama3_style": (
        "{{- bos_token }}\n"
        "{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content']|trim %}\n"
        "    {%- set messages = messages[1:] %}\n"
        "{%- else %}\n"
        "    {%- set system_message = \"\" %}\n"
        "{%- endif %}\n"
        "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
        "{{- system_message }}\n"
        "{{- \"<|eot_id|>\" }}\n"
        "{%- for message in messages %}\n"
        "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + message['content'] | trim + '<|eot_id|>' }}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}\n"
        "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
        "{%- endif %}\n"
    ),
    "trim_and_lstrip_blocks": (
        "<start>\n"
        "  {% for m in messages %}\n"
        "    {% if m.role == 'user' %}\n"
        "  U: {{ m.content }}\n"
        "    {% else %}\n"
        "  A: {{ m.content }}\n"
        "    {% endif %}\n"
        "  {% endfor %}\n"
        "  {%+ if add_generation_prompt %}GEN{% endif %}\n"
        "<end>\n"
    ),
    "python_string_methods": (
        "{% for m in messages %}"
        "[{{ m.content.strip() }}|{{ m.content.upper() }}|{{ m.content.lower() }}"
        "|{{ m.content.startswith('He') }}|{{ m.content.endswith('d') }}"
        "|{{ m.content.split(' ') | length }}|{{ m.role.replace('u', 'U') }}"
        "|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}|{{ m.content.title() }}]\n"
        "{% endfor %}"
    ),
    "tojson": (
        "{{ messages | tojson }}\n"
        "{{ messages[:2] | tojson(indent=2) }}\n"
        "{{ {'a': 1.5, 'b': [1e-5, 1e16, 0.1, 3.0, none, true, false, 42], "
        "'c': 'q\"uote <>&\\' \\n\\t é 🦀'} | tojson }}\n"
        "{{ {'b': 1, 'a': {'d': [], 'c': {}}} | tojson(sort_keys=true) }}\n"
        "{{ {'k': 'é🦀', 'n': -0.0} | tojson(ensure_ascii=true) }}\n"
        "{{ [1, [2, {'x': 'y'}]] | tojson(indent=4) }}\n"
        "{{ {'a': [1, 2]} | tojson(separators=[',', ':']) }}"
    ),
    "namespace_and_loop": (
        "{% set ns = namespace(found=false, count=0) %}"
        "{% for m in messages %}"
        "{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}"
        "{% set ns.count = ns.count + 1 %}"
        "{{ loop.index0 }}/{{ loop.index }}:{{ m.role }}{% if loop.first %}(first){% endif %}"
        "{% if not loop.last %},{% endif %}"
        "{% endfor %} found={{ ns.found }} count={{ ns.count }}"
    ),
    "dict_methods": (
        "{% set d = {'x': 1, 'y': 'two', 'z': none} %}"
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"
        "|{{ d.get('y') }}|{{ d.get('w', 'fallback') }}|{{ d.keys() | list | length }}"
        "|{% for v in d.values() %}{{ v }},{% endfor %}"
    ),
    "undefined_and_none": (
        "[{{ messages[0].missing }}]"
        "|{% if messages[0].missing is defined %}def{% else %}undef{% endif %}"
        "|{{ tools }}|{% if tools %}T{% else %}F{% endif %}|{% if tools is none %}none{% endif %}"
        "|{{ true }}|{{ false }}|{{ none }}"
    ),
    "loop_controls": (
        "{% for m in messages %}"
        "{% if loop.index > 3 %}{% break %}{% endif %}"
        "{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{{ m.content }};"
        "{% endfor %}"
    ),
    "filters_and_slices": (
        "{{ messages[-1].content[:5] }}|{{ messages[1].content[6:] }}"
        "|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
        "|{{ messages | map(attribute='role') | join(',') }}"
        "|{{ 'abc' ~ 1 }}|{{ messages[0].content | length }}"
        "|{% if messages[0].content is string %}str{% endif %}"
        "|{% if messages[0] is mapping %}map{% endif %}"
        "|{{ messages | first | attr('role') if false else (messages | first)['role'] }}"
        "|{{ (messages | last).role }}|{{ 'a,b,,c'.split(',') | join('+') }}"
    ),
    "arithmetic": (
        "{{ 7 // 2 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ 1.0 }} {{ 10 / 5 }} {{ -3 // 2 }}"
        " {{ 0.1 + 0.2 }} {{ 1e16 * 10 }} {{ messages | length * 2 }}"
    ),
    "whitespace_control": (
        "A  {{- ' B ' -}}  C\n"
        "{%- for m in messages -%}\n"
        "   <{{ m.role }}>\n"
        "{%- endfor %}\n"
        "D {# a comment #} E\n"
        "{% if true %}\n"
        "F\n"
        "{% endif %}\n"
        "G\n"
    ),
}

RAISE_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role not in ['user', 'assistant'] %}"
    "{{ raise_exception('Only user and assistant roles are supported, got ' + m.role + '!') }}"
    "{% endif %}{{ m.content }}{% endfor %}"
)

SPM_TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Tokenizers split text into pieces; sentencepiece learns its pieces from raw text without spaces removed.
Hello world! Hello again, world. The world says hello back to everyone in the room.
Numbers like 12 and 345 appear here, with punctuation: commas, periods, and question marks?
Weights, models, tokens and layers: a language model reads tokens and writes tokens.
Ünïcödé letters such as é, ü and ñ are common in European languages, as in café and señor.
Line breaks
separate lines, and  double  spaces stay double.
"""

SPM_TEXTS = [
    "Hello world",
    "Hello world, hello again.",
    " leading space",
    "two  spaces",
    "trailing ",
    "",
    " ",
    "line\nbreak",
    "café señor über",
    "日本語 and emoji 🦀",
    "<s> typed as text",
    "12345 tokens",
]


def versions() -> dict:
    return {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": getattr(gguf, "__version__", "unknown"),
        "sentencepiece": spm.__version__,
        "python": sys.version.split()[0],
    }


def gguf_string(path: Path, key: str) -> str | None:
    field = gguf.GGUFReader(str(path)).fields.get(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def load_reference_tokenizer(model: Path):
    """transformers' tokenizer for the GGUF, pre-tokenizing as llama.cpp does."""
    tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    pre = gguf_string(model, "tokenizer.ggml.pre")
    backend = tok.backend_tokenizer
    state = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    if pre in DIGIT_SPLIT_PRE:
        assert state.get("type") == "ByteLevel" and state.get("use_regex"), state
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=state.get("add_prefix_space", False),
                                     trim_offsets=state.get("trim_offsets", True), use_regex=True),
        ])
    return tok, pre


def smollm_tokenizer_fixture(model: Path) -> dict:
    tok, pre = load_reference_tokenizer(model)
    vocab = tok.get_vocab()
    backend = tok.backend_tokenizer
    corpus = []
    for text in CORPUS:
        plain = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        with_special = tok(text, add_special_tokens=True, split_special_tokens=True)["input_ids"]
        # The transformers call and the tokenizers one must agree, or the reference is unclear.
        backend.encode_special_tokens = True
        assert backend.encode(text, add_special_tokens=False).ids == plain, text
        backend.encode_special_tokens = False
        corpus.append({
            "text": text,
            "ids": plain,
            "ids_add_special": with_special,
            "tokens": tok.convert_ids_to_tokens(plain),
            "decoded": backend.decode(plain, skip_special_tokens=False),
        })
    special = []
    for text in SPECIAL_PARSE_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        special.append({
            "text": text,
            "ids": ids,
            "decoded": backend.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": backend.decode(ids, skip_special_tokens=True),
        })

    # The same vocabulary under other pre-tokenizers, as transformers converts such a GGUF.
    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(model))
    variants = {}
    for variant in ("default", "llama-bpe", "qwen2", "gpt-4o"):
        backend_v, _ = convert_gguf_tokenizer(architecture, dict(tokenizer_dict, pre_tokenizer_type=variant))
        if variant in IGNORE_MERGES_PRE:
            backend_v.model.ignore_merges = True
            assert json.loads(backend_v.to_str())["model"]["ignore_merges"] is True
        backend_v.encode_special_tokens = True
        variants[variant] = [backend_v.encode(text, add_special_tokens=False).ids for text in CORPUS]

    return {
        "generator": "crates/wazn-text/tests/gen_text_fixtures.py",
        "model": model.name,
        "pre": pre,
        "versions": versions(),
        "bos_id": tok.bos_token_id,
        "bos_token": tok.bos_token,
        "eos_id": tok.eos_token_id,
        "eos_token": tok.eos_token,
        "vocab_size": len(tok),
        "special_ids": sorted(i for i, t in tok.backend_tokenizer.get_added_tokens_decoder().items() if t.special),
        "eog_ids": sorted({tok.eos_token_id} | {vocab[t] for t in EOG_TEXTS if t in vocab}),
        "corpus": corpus,
        "special_parsed": special,
        "pre_variants": variants,
    }


def smollm_chat_fixture(model: Path) -> dict:
    tok, _ = load_reference_tokenizer(model)
    cases = []
    for messages in SMOLLM_CONVERSATIONS:
        for add_generation_prompt in (False, True):
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
            cases.append({"messages": messages, "add_generation_prompt": add_generation_prompt, "expected": rendered})
    return {"generator": "crates/wazn-text/tests/gen_text_fixtures.py", "model": model.name,
            "versions": versions(), "cases": cases}


def constructs_fixture() -> dict:
    bos, eos = "<BOS>", "<EOS>"
    cases = []
    for name, template in CONSTRUCT_TEMPLATES.items():
        for add_generation_prompt in (False, True):
            rendered, _ = render_jinja_template(
                conversations=[CONSTRUCT_MESSAGES], chat_template=template,
                add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
            cases.append({"name": name, "template": template, "add_generation_prompt": add_generation_prompt,
                          "expected": rendered[0]})
    try:
        render_jinja_template(conversations=[CONSTRUCT_MESSAGES], chat_template=RAISE_TEMPLATE,
                              bos_token=bos, eos_token=eos)
        raise AssertionError("the raising template rendered")
    except Exception as e:  # jinja2.exceptions.TemplateError
        raised = str(e)
    ok_messages = [m for m in CONSTRUCT_MESSAGES if m["role"] != "system"]
    ok_rendered, _ = render_jinja_template(conversations=[ok_messages], chat_template=RAISE_TEMPLATE,
                                           bos_token=bos, eos_token=eos)
    return {
        "generator": "crates/wazn-text/tests/gen_text_fixtures.py",
        "versions": versions(),
        "bos_token": bos,
        "eos_token": eos,
        "messages": CONSTRUCT_MESSAGES,
        "cases": cases,
        "raise": {"template": RAISE_TEMPLATE, "messages": CONSTRUCT_MESSAGES, "message": raised,
                  "ok_messages": ok_messages, "ok_expected": ok_rendered[0]},
    }


def train_tiny_spm() -> spm.SentencePieceProcessor:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_TRAINING_TEXT.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=420,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=False,
        user_defined_symbols=["<tool>"],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def spm_token_type(sp: spm.SentencePieceProcessor, i: int) -> int:
    if sp.is_unknown(i):
        return gguf.TokenType.UNKNOWN
    if sp.is_control(i):
        return gguf.TokenType.CONTROL
    if sp.is_byte(i):
        return gguf.TokenType.BYTE
    if sp.is_unused(i):
        return gguf.TokenType.UNUSED
    if sp.id_to_piece(i) == "<tool>":
        return gguf.TokenType.USER_DEFINED
    return gguf.TokenType.NORMAL


def write_gguf(path: Path, fill) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    fill(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tiny_spm_fixture() -> dict:
    sp = train_tiny_spm()
    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    types = [int(spm_token_type(sp, i)) for i in range(n)]

    def fill(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        # add_bos_token and add_space_prefix are left out: llama.cpp's defaults (both true) apply.

    write_gguf(DATA / "tiny_spm.gguf", fill)
    cases = []
    for text in SPM_TEXTS:
        ids = sp.encode(text)
        cases.append({
            "text": text,
            "ids": ids,
            "ids_with_bos": sp.encode(text, add_bos=True),
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": sp.decode(ids),
        })
    # Control and user-defined tokens split the text: llama.cpp encodes each stretch after one
    # with its own space prefix, which sentencepiece gives for the stretch encoded alone.
    tool = sp.piece_to_id("<tool>")
    split_cases = [
        {"text": "<s> hi", "parse_special": True, "ids": [sp.bos_id()] + sp.encode(" hi")},
        {"text": "<tool> call", "parse_special": False, "ids": [tool] + sp.encode(" call")},
        {"text": "run <tool>now", "parse_special": False, "ids": sp.encode("run ") + [tool] + sp.encode("now")},
    ]
    return {
        "generator": "crates/wazn-text/tests/gen_text_fixtures.py",
        "versions": versions(),
        "vocab_size": n,
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "tool_id": tool,
        "cases": cases,
        "split_cases": split_cases,
    }


def tiny_bpe_fixture() -> dict:
    """A hand-made byte-level vocabulary where ignore_merges and plain-text tokens matter: "abc" and
    "€" are tokens no merge reaches, "€" is stored as plain text rather than in the byte alphabet."""
    tokens = ["a", "b", "c", "\u0120", "ab", "abc", "\u20ac", "<|x|>"]
    types = [1, 1, 1, 1, 1, 1, 1, 3]
    merges = ["a b"]
    texts = ["abc", "abc ab c abc", "\u20ac", "a\u20acb", "<|x|>abc", "ab<|x|> c"]
    cases = {}
    for pre in ("llama-bpe", "gpt2"):
        tokenizer_dict = {"tokenizer_type": "gpt2", "pre_tokenizer_type": pre, "tokens": tokens,
                          "token_type": types, "merges": merges}
        backend, _ = convert_gguf_tokenizer("llama", tokenizer_dict)
        if pre in IGNORE_MERGES_PRE:
            backend.model.ignore_merges = True
        parsed = [backend.encode(t, add_special_tokens=False).ids for t in texts]
        backend.encode_special_tokens = True
        plain = [backend.encode(t, add_special_tokens=False).ids for t in texts]
        cases[pre] = {"ids": plain, "ids_parse_special": parsed}
    return {"generator": "crates/wazn-text/tests/gen_text_fixtures.py", "versions": versions(),
            "tokens": tokens, "token_types": types, "merges": merges, "texts": texts, "by_pre": cases}


def bad_ggufs() -> dict:
    """Malformed tokenizer metadata, each with the problem the loader must name."""
    tokens = ["a", "b", "ab"]

    def base_gpt2(w, pre="gpt2", merges=("a b",)):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_merges(list(merges))

    cases = {
        "bad_missing_tokens.gguf": (lambda w: w.add_tokenizer_model("llama"), "tokenizer.ggml.tokens"),
        "bad_token_type_length.gguf": (
            lambda w: (w.add_tokenizer_model("llama"), w.add_token_list(tokens), w.add_token_types([1, 1])),
            "tokenizer.ggml.token_type"),
        "bad_unknown_model.gguf": (
            lambda w: (w.add_tokenizer_model("bert"), w.add_token_list(tokens)), "bert"),
        "bad_unknown_pre.gguf": (lambda w: base_gpt2(w, pre="no-such-pre"), "no-such-pre"),
        "bad_merge.gguf": (lambda w: base_gpt2(w, merges=("ab",)), "tokenizer.ggml.merges"),
        "bad_bos_id.gguf": (
            lambda w: (base_gpt2(w), w.add_bos_token_id(7)), "tokenizer.ggml.bos_token_id"),
    }
    expected = {}
    for name, (fill, must_mention) in cases.items():
        write_gguf(DATA / name, fill)
        expected[name] = must_mention
    return expected


def strftime_fixture() -> list:
    instants = [
        0, 951_782_400, 951_868_800, 4_107_542_400, 1_709_164_800, 1_735_689_599, 1_234_567_890,
        2_147_483_647, 253_402_300_799, 68_169_600, 946_684_799, 1_700_000_000 + 12 * 3600 + 5,
    ]
    formats = ["%Y-%m-%d %H:%M:%S", "%d %b %Y", "%A, %B %d, %Y", "%j %y %I %p %a %e|", "%-d/%-m %-H", "100%% %F %T"]
    return [
        {"unix_seconds": t, "format": f, "expected": time.strftime(f, time.gmtime(t))}
        for t in instants for f in formats
    ]


def write_json(name: str, value) -> None:
    path = DATA / name
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the SmolLM2 GGUF")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    write_json("smollm2_tokenizer.json", smollm_tokenizer_fixture(args.model))
    write_json("smollm2_chat_template.json", smollm_chat_fixture(args.model))
    write_json("chat_template_constructs.json", constructs_fixture())
    write_json("tiny_spm.json", tiny_spm_fixture())
    write_json("tiny_bpe.json", tiny_bpe_fixture())
    write_json("bad_gguf_cases.json", bad_ggufs())
    write_json("strftime_cases.json", strftime_fixture())


if __name__ == "__main__":
    main()
