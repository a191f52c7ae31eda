#!/usr/bin/env python3
"""Writes the seeds of the fuzz targets other than gguf_parse into fuzz/seeds/TARGET/, from the
repository's own test fixtures (Python 3 standard library only). Run from the repository root:

    python3 fuzz/write_seeds.py

Each target's input layout is described in crates/wazn-fuzz/src/.
"""

import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
TEXT_DATA = ROOT / "crates" / "wazn-text" / "tests" / "data"
MODEL_DATA = ROOT / "crates" / "wazn-models" / "tests" / "data"

# The order of CHECKPOINTS in crates/wazn-fuzz/src/hf_config.rs.
CHECKPOINTS = ["llama_hf", "qwen3", "qwen3moe", "gptoss", "gemma3", "deepseek3", "kimi_k2"]

# The order of HARMONY_WORDS in crates/wazn-fuzz/src/replies.rs.
START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL = range(7)
ASSISTANT, ANALYSIS, FINAL, COMMENTARY, TO_WEATHER, TO_BROWSER, JSON_WORD, ARGS, HELLO = range(7, 16)

# The order of ROUTES and REPLIES in crates/wazn-fuzz/src/http_bodies.rs.
ROUTES = [
    "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
    "/v1/messages/count_tokens", "/v1/embeddings", "/tokenize", "/detokenize", "/api/chat",
    "/api/generate", "/api/embed", "/api/embeddings", "/api/show",
]
N_REPLIES = 4


def write(target, name, data):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / name).write_bytes(data)


def safetensors(tensors, metadata=None):
    """A safetensors file: {name: (dtype, shape, bytes)}."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    body = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def safetensors_seeds():
    write("safetensors_header", "f32_bf16.safetensors", safetensors({
        "model.embed_tokens.weight": ("F32", [2, 3], struct.pack("<6f", *range(6))),
        "model.norm.weight": ("BF16", [3], b"\x80\x3f" * 3),
    }, {"format": "pt"}))
    write("safetensors_header", "mxfp4_empty.safetensors", safetensors({
        "experts.gate_up_proj_blocks": ("U8", [2, 1, 16], bytes(range(32))),
        "experts.gate_up_proj_scales": ("U8", [2, 1], b"\x7f\x80"),
        "empty": ("F16", [0, 4], b""),
        "scalar": ("I64", [], struct.pack("<q", -1)),
    }))


def hf_config_seeds():
    for index, name in enumerate(CHECKPOINTS):
        config = (MODEL_DATA / name / "hf" / "config.json").read_bytes()
        write("hf_config", f"{name}.json", bytes([index]) + config)


def tokenizer_seeds():
    for folder in ["byte_bpe", "spm_bpe"]:
        data = (TEXT_DATA / "hf_folders" / folder / "tokenizer.json").read_bytes()
        write("tokenizer_json", f"{folder}.json", data)


def chat_template_seeds():
    tools = json.loads((TEXT_DATA / "tool_chat_templates.json").read_text())
    for t in tools["templates"]:
        write("chat_template", f"{t['name']}.jinja", t["template"])
    constructs = json.loads((TEXT_DATA / "chat_template_constructs.json").read_text())
    messages = json.dumps(constructs["messages"]).encode()
    for i, case in enumerate(constructs["cases"]):
        write("chat_template", f"construct_{i:02}.jinja", case["template"].encode() + b"\0" + messages)


def harmony_seeds():
    final = [START, ASSISTANT, CHANNEL, FINAL, MESSAGE, HELLO, RETURN]
    reasoning = [CHANNEL, ANALYSIS, MESSAGE, HELLO, END] + final
    call = [CHANNEL, ANALYSIS, MESSAGE, HELLO, END, START, ASSISTANT, CHANNEL, COMMENTARY,
            TO_WEATHER, CONSTRAIN, JSON_WORD, MESSAGE, ARGS, CALL]
    browser = [CHANNEL, COMMENTARY, TO_BROWSER, MESSAGE, ARGS, CALL]
    for name, words in [("final", final), ("reasoning", reasoning), ("call", call),
                        ("browser", browser)]:
        write("harmony_reply", name, bytes(words))


def tool_call_seeds():
    texts = {
        "hermes": 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
        "llama3": '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "f", "parameters": {}}',
        "mistral": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "f", "arguments": {"a": [1, "}"]}}]',
        "mistral_args": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris \\"x\\""}',
        "think": "<think>I should call it.</think>\n\nThe answer is 42. <thi",
    }
    for i, (name, text) in enumerate(texts.items()):
        write("tool_calls", name, bytes([i * 37]) + text.encode())


def http_seeds():
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    bodies = {
        "/v1/chat/completions": [
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            {"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Weather?"}],
             "tools": tools, "tool_choice": "required", "stream": True,
             "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2},
            {"messages": [{"role": "user", "content": "json"}],
             "response_format": {"type": "json_schema",
                                 "json_schema": {"name": "a", "schema": schema}}},
        ],
        "/v1/completions": [
            {"prompt": "Once upon", "max_tokens": 4, "echo": True, "logprobs": 1},
            {"prompt": ["a", "b"], "stream": True, "stop": ["\n"], "seed": 1,
             "temperature": 0.7},
        ],
        "/v1/responses": [
            {"input": "hi", "max_output_tokens": 16},
            {"input": [{"type": "message", "role": "user", "content": "Weather?"},
                       {"type": "function_call", "call_id": "c1", "name": "get_weather",
                        "arguments": "{\"city\": \"Paris\"}"},
                       {"type": "function_call_output", "call_id": "c1", "output": "21"}],
             "instructions": "Be brief.", "tools": [
                 {"type": "function", "name": "get_weather", "parameters": schema},
                 {"type": "web_search"}], "stream": True, "store": False},
            {"input": "json", "text": {"format": {"type": "json_schema", "name": "a",
                                                  "schema": schema}}},
        ],
        "/v1/messages": [
            {"model": "scripted", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
            {"model": "scripted", "max_tokens": 64, "system": "Be brief.", "stream": True,
             "tools": [{"name": "get_weather", "input_schema": schema}],
             "tool_choice": {"type": "any"},
             "thinking": {"type": "enabled", "budget_tokens": 1024},
             "messages": [
                 {"role": "user", "content": "Weather?"},
                 {"role": "assistant", "content": [
                     {"type": "tool_use", "id": "t1", "name": "get_weather",
                      "input": {"city": "Paris"}}]},
                 {"role": "user", "content": [
                     {"type": "tool_result", "tool_use_id": "t1", "content": "21"}]}]},
        ],
        "/v1/messages/count_tokens": [
            {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "tools": [
                {"name": "f", "input_schema": {"type": "object"}}]},
        ],
        "/v1/embeddings": [{"input": ["a", "b"], "encoding_format": "base64"}],
        "/tokenize": [{"prompt": "hi <|im_end|>", "add_special": True, "with_pieces": True},
                      {"messages": [{"role": "user", "content": "hi"}]}],
        "/detokenize": [{"tokens": [104, 105, 257]}],
        "/api/chat": [
            {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            {"model": "scripted", "messages": [{"role": "user", "content": "w"}], "tools": tools,
             "format": schema, "think": True, "stream": False,
             "options": {"temperature": 0, "num_predict": 8, "stop": ["x"]}},
        ],
        "/api/generate": [
            {"model": "scripted", "prompt": "def f(", "suffix": "return 1", "stream": False},
            {"model": "scripted", "prompt": "hi", "system": "s", "format": "json", "raw": False,
             "keep_alive": "5m", "options": {"seed": 3, "top_k": 4}},
        ],
        "/api/embed": [{"model": "scripted", "input": ["a"], "truncate": True, "dimensions": 2}],
        "/api/embeddings": [{"model": "scripted", "prompt": "a"}],
        "/api/show": [{"model": "scripted", "verbose": True}],
    }
    for route, route_bodies in bodies.items():
        index = ROUTES.index(route)
        for i, body in enumerate(route_bodies):
            name = route.strip("/").replace("/", "_") + f"_{i}.json"
            write("http_bodies", name, bytes([index, i % N_REPLIES]) + json.dumps(body).encode())


def main():
    safetensors_seeds()
    hf_config_seeds()
    tokenizer_seeds()
    chat_template_seeds()
    harmony_seeds()
    tool_call_seeds()
    http_seeds()


if __name__ == "__main__":
    main()
