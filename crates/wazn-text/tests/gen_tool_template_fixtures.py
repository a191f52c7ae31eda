#!/usr/bin/env python3
"""Write tests/data/tool_chat_templates.json: real tool-calling chat templates rendered with
tools, tool calls and tool results by transformers' chat-template renderer (Jinja2), for
tests/tool_chat_templates.rs to hold `ChatTemplate::render_with_tools` to, byte for byte.

The templates are the copies in llama.cpp's models/templates/ as shipped in the
llama-cpp-python 0.3.36 sdist (vendor/llama.cpp/models/templates/); llama.cpp's README there
says each was taken from the named Hugging Face repository's tokenizer_config.json by
scripts/get_chat_template.py (Hermes 3's is its "tool_use" named template). Run from the
repository root with the reference Python environment (transformers, jinja2; no network):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist
    tar -xzf /tmp/sdist/llama_cpp_python-0.3.36.tar.gz -C /tmp/sdist
    python crates/wazn-text/tests/gen_tool_template_fixtures.py \\
        --templates /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates

Written with transformers 5.24.0 and jinja2 3.1.6 (the fixture records the versions used).

Every template renders every conversation below, through the same function as
apply_chat_template (transformers.utils.chat_template_utils.render_jinja_template, which passes
`tools` and `documents` explicitly, None when absent), except these, which raise under
transformers and are left out (the generator checks that they still raise):

  - Llama 3.1, "parallel_calls": the template allows one tool call per assistant turn
    (raise_exception "This model only supports single tool-calls at once!").
  - Hermes 3 tool_use, "no_tools": the template loops `for tool in tools` unguarded, and
    transformers passes tools=None, so Jinja2 raises "'NoneType' object is not iterable".

The renders are deterministic: Llama 3.1 writes `date_string`, whose default the template sets
itself ("26 Jul 2024") when the caller gives none (it never calls strftime_now); none of the
others reads the clock. The bos/eos strings are those of each model's tokenizer (Qwen3 has no
BOS token: ""). Mistral Nemo requires tool call ids of 9 alphanumeric characters, so every
conversation uses such ids. Messages hold exactly the fields wazn's ChatMessage has, in its
order (role, content, tool_calls, tool_call_id, name; content "" on an assistant turn that
only calls tools), and tool call arguments are JSON objects, as wazn passes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

DATA = Path(__file__).resolve().parent / "data"
SDIST = "llama-cpp-python 0.3.36 (sdist), vendor/llama.cpp/models/templates/"

# name, file in llama.cpp's models/templates, Hugging Face repository, bos, eos
TEMPLATES = [
    ("llama-3.1", "meta-llama-Llama-3.1-8B-Instruct.jinja", "meta-llama/Llama-3.1-8B-Instruct",
     "<|begin_of_text|>", "<|eot_id|>"),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja", "Qwen/Qwen3-0.6B", "", "<|im_end|>"),
    ("mistral-nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistralai/Mistral-Nemo-Instruct-2407",
     "<s>", "</s>"),
    ("hermes-3-tool-use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
     "NousResearch/Hermes-3-Llama-3.1-8B (tool_use template)", "<|begin_of_text|>", "<|im_end|>"),
]

# (template, case) pairs that raise under transformers, with the reason; left out of the fixture.
RAISES = {
    ("llama-3.1", "parallel_calls"): "the template allows one tool call per assistant turn",
    ("hermes-3-tool-use", "no_tools"): "the template iterates `tools` unguarded; transformers passes None",
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and country, e.g. Zürich, Switzerland"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "The temperature unit"},
            },
            "required": ["location"],
        },
    },
}

CURRENCY_TOOL = {
    "type": "function",
    "function": {
        "name": "convert_currency",
        "description": "Convert an amount of money into other currencies, with \"live\" rates.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "description": "How much money"},
                "from_currency": {"type": "string", "description": "ISO code, e.g. SAR"},
                "to_currencies": {"type": "array", "items": {"type": "string"},
                                  "description": "ISO codes to convert into"},
                "decimals": {"type": "integer", "description": "Digits after the point"},
                "include_fees": {"type": "boolean", "description": "Whether to add bank fees"},
            },
            "required": ["amount", "from_currency", "to_currencies"],
        },
    },
}

TOOLS = [WEATHER_TOOL, CURRENCY_TOOL]

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}


def message(role: str, content: str, tool_calls=None, tool_call_id=None, name=None) -> dict:
    """A message with wazn ChatMessage's fields, in its order, absent ones left out."""
    m = {"role": role, "content": content}
    if tool_calls is not None:
        m["tool_calls"] = tool_calls
    if tool_call_id is not None:
        m["tool_call_id"] = tool_call_id
    if name is not None:
        m["name"] = name
    return m


def call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_ARGS = {"location": "Zürich, Switzerland", "unit": "celsius"}
CURRENCY_ARGS = {"amount": 1250.75, "from_currency": "SAR", "to_currencies": ["USD", "EUR"], "decimals": 2,
                 "include_fees": False}

CASES = [
    # (a) a question the tools can answer
    ("tools_question", [SYSTEM, message("user", "What's the weather like in Zürich today?")], TOOLS),
    # (b) a full tool round: the call, its result, then the assistant's turn to answer
    ("tool_round", [
        SYSTEM,
        message("user", "What's the weather like in Zürich today?"),
        message("assistant", "", tool_calls=[call("a1B2c3D4e", "get_current_weather", WEATHER_ARGS)]),
        message("tool", '{"temperature": 21.5, "condition": "sunny", "note": "UV index \\"high\\""}',
                tool_call_id="a1B2c3D4e", name="get_current_weather"),
    ], TOOLS),
    # two calls in one assistant turn, two results
    ("parallel_calls", [
        SYSTEM,
        message("user", "Weather in Zürich, and 1250.75 SAR in USD and EUR?"),
        message("assistant", "", tool_calls=[
            call("a1B2c3D4e", "get_current_weather", WEATHER_ARGS),
            call("Z9y8X7w6V", "convert_currency", CURRENCY_ARGS),
        ]),
        message("tool", '{"temperature": 21.5, "condition": "sunny"}', tool_call_id="a1B2c3D4e",
                name="get_current_weather"),
        message("tool", "USD: 333.53\nEUR: 307.12", tool_call_id="Z9y8X7w6V", name="convert_currency"),
    ], TOOLS),
    # (c) no tools at all
    ("no_tools", [
        SYSTEM,
        message("user", "Hi there!"),
        message("assistant", "Hello! How can I help?"),
        message("user", "Tell me a fun fact about owls."),
    ], None),
]


def versions() -> dict:
    return {"transformers": transformers.__version__, "jinja2": jinja2.__version__,
            "python": sys.version.split()[0]}


def render(source: str, bos: str, eos: str, messages, tools, add_generation_prompt: bool) -> str:
    rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                        add_generation_prompt=add_generation_prompt, bos_token=bos,
                                        eos_token=eos)
    return rendered[0]


def template_fixture(templates_dir: Path, name: str, file: str, repo: str, bos: str, eos: str) -> dict:
    source = (templates_dir / file).read_text(encoding="utf-8")
    cases, left_out = [], []
    for case_name, messages, tools in CASES:
        add_generation_prompt = True
        reason = RAISES.get((name, case_name))
        try:
            expected = render(source, bos, eos, messages, tools, add_generation_prompt)
        except Exception as e:  # jinja2 errors and raise_exception's TemplateError
            if reason is None:
                raise AssertionError(f"{name} / {case_name} raised: {e!r}") from e
            left_out.append({"case": case_name, "reason": reason, "raised": f"{type(e).__name__}: {e}"})
            continue
        assert reason is None, f"{name} / {case_name} was expected to raise ({reason}) but rendered"
        cases.append({"name": case_name, "messages": messages, "tools": tools,
                      "add_generation_prompt": add_generation_prompt, "expected": expected})
    return {
        "name": name,
        "huggingface_repo": repo,
        "source_file": f"{SDIST}{file}",
        "bos_token": bos,
        "eos_token": eos,
        "template": source,
        "cases": cases,
        "left_out": left_out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", type=Path, required=True,
                    help="llama.cpp's models/templates folder from the llama-cpp-python 0.3.36 sdist")
    args = ap.parse_args()
    fixture = {
        "generator": "crates/wazn-text/tests/gen_tool_template_fixtures.py",
        "renderer": "transformers.utils.chat_template_utils.render_jinja_template",
        "versions": versions(),
        "templates": [template_fixture(args.templates, *t) for t in TEMPLATES],
    }
    path = DATA / "tool_chat_templates.json"
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{t['name']}: {len(t['cases'])}" for t in fixture["templates"])
    print(f"wrote {path} ({path.stat().st_size} bytes; cases {counts})")


if __name__ == "__main__":
    main()
