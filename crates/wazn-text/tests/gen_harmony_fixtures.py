"""Writes tests/data/harmony_cases.json: conversations rendered to token ids by OpenAI's
`openai-harmony` package, and its StreamableParser's state after every token of some
generated assistant turns. The conversations are stored in harmony's own JSON form
(Conversation.to_json), which wazn's harmony types read directly.

openai-harmony downloads o200k_base.tiktoken unless TIKTOKEN_ENCODINGS_BASE names a folder
that holds it; the tiktoken-rs crate ships the file. Run (openai-harmony pinned to 0.0.8):
    python -m venv /tmp/venv && /tmp/venv/bin/pip install openai-harmony==0.0.8
    cargo fetch
    mkdir -p /tmp/enc && cp ~/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets/o200k_base.tiktoken /tmp/enc/
    TIKTOKEN_ENCODINGS_BASE=/tmp/enc /tmp/venv/bin/python crates/wazn-text/tests/gen_harmony_fixtures.py
"""

import json
import os

import openai_harmony
from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncodingName,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    StreamableParser,
    SystemContent,
    ToolDescription,
    ToolNamespaceConfig,
    load_harmony_encoding,
)

HERE = os.path.dirname(os.path.abspath(__file__))

WEATHER = ToolDescription.new(
    "get_current_weather",
    "Gets the current weather in the provided location.",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["location"],
    },
)

# A schema that reaches every branch of the JSON-schema → TypeScript rendering.
KITCHEN_SINK = ToolDescription.new(
    "search_flights",
    "Searches flights.\nReturns at most `limit` results.",
    parameters={
        "type": "object",
        "description": "Search parameters",
        "properties": {
            "origin": {"type": "string", "title": "Origin airport", "examples": ["SFO", "JFK"]},
            "passengers": {"type": "integer", "description": "How many", "default": 1},
            "max_price": {"type": "number", "nullable": True},
            "direct_only": {"type": "boolean", "default": False},
            "cabin": {"type": "string", "enum": ["economy", "business"], "default": "economy"},
            "airline": {"type": "string", "default": "any"},
            "dates": {"type": "array", "items": {"type": "string"}, "description": "ISO dates"},
            "tags": {"type": "array"},
            "id": {"type": ["string", "integer"]},
            "filters": {
                "type": "object",
                "properties": {
                    "stops": {"type": "integer"},
                    "alliances": {"type": "array", "items": {"type": "string", "enum": ["star", "oneworld"]}},
                },
                "required": ["stops"],
            },
            "when": {
                "description": "Departure time",
                "oneOf": [
                    {"type": "string", "description": "Departure time"},
                    {"type": "number", "description": "Unix seconds", "default": 0},
                    {"type": "object", "properties": {"from": {"type": "string"}}, "nullable": True},
                ],
            },
            "sort": {
                "oneOf": [
                    {"type": "string", "enum": ["price", "time"], "default": "price"},
                    {"type": "null"},
                ],
                "default": "price",
            },
            "anything": {},
            "extra": {"type": "custom"},
        },
        "required": ["origin", "dates"],
    },
)


def system(**kw):
    s = SystemContent.new()
    if "effort" in kw:
        s = s.with_reasoning_effort(kw["effort"])
    if "date" in kw:
        s = s.with_conversation_start_date(kw["date"])
    if "cutoff" in kw:
        s = s.with_knowledge_cutoff(kw["cutoff"])
    if kw.get("browser"):
        s = s.with_browser_tool()
    if kw.get("python"):
        s = s.with_python_tool()
    return Message.from_role_and_content(Role.SYSTEM, s)


def user(text):
    return Message.from_role_and_content(Role.USER, text)


def assistant(text, channel, recipient=None, content_type=None):
    m = Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)
    if recipient:
        m = m.with_recipient(recipient)
    if content_type:
        m = m.with_content_type(content_type)
    return m


def tool(name, text, channel="commentary"):
    return (Message.from_author_and_content(Author.new(Role.TOOL, name), text)
            .with_channel(channel).with_recipient("assistant"))


CONVERSATIONS = {
    "simple": [system(), user("What is 2 + 2?")],
    "tools_and_call": [
        system(effort=ReasoningEffort.HIGH, date="2025-06-28"),
        Message.from_role_and_content(
            Role.DEVELOPER,
            DeveloperContent.new().with_instructions("Always respond in riddles").with_function_tools(
                [WEATHER, ToolDescription.new("get_time", "Current time")]),
        ),
        user("What is the weather like in SF?"),
        assistant("Need to use function get_current_weather.", "analysis"),
        assistant('{"location": "San Francisco"}', "commentary",
                  "functions.get_current_weather", "<|constrain|>json"),
        tool("functions.get_current_weather", '{"sunny": true, "temperature": 20}'),
    ],
    "multi_turn_final": [
        system(effort=ReasoningEffort.LOW, cutoff="2025-01"),
        Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_instructions(
            "Answer briefly.\nUse metric units.")),
        user("Hi <|end|> there — ça va? 你好 👋🏽"),
        assistant("User greets. Reply.", "analysis"),
        assistant("Hello! Ça va bien.", "final"),
        user("And 3*7?"),
        assistant("Multiply.", "analysis"),
        assistant("21", "final"),
    ],
    "kitchen_sink_tools": [
        system(effort=ReasoningEffort.MEDIUM, browser=True, python=True),
        Message.from_role_and_content(
            Role.DEVELOPER,
            DeveloperContent.new().with_function_tools([KITCHEN_SINK, WEATHER]).with_tools(
                ToolNamespaceConfig(name="calendar", description="Calendar tools.\nUse them wisely.",
                                    tools=[ToolDescription.new("list_events", "Lists events", parameters={
                                        "type": "object", "properties": {"day": {"type": "string"}}})])),
        ),
        Message.from_author_and_content(Author.new(Role.USER, "alice"), "Find me a flight"),
        assistant("search", "analysis", "browser.search", "json"),
        tool("browser.search", "results...", "analysis"),
        Message.from_role_and_content(Role.ASSISTANT, '{"origin":"SFO"}').with_channel(
            "commentary").with_recipient("functions.search_flights").with_content_type("<|constrain|>json"),
    ],
}

# Assistant turns as a model generates them after "<|start|>assistant".
GENERATIONS = {
    "analysis_then_final": [
        assistant("Let me think… 🤔 about ünïcode.", "analysis"),
        assistant("The answer is 42. 你好! 𠜎𝔘𝔫𝔦 🫠", "final"),
    ],
    "tool_call_after_channel": [
        assistant("Need weather.", "analysis"),
        assistant('{"location": "Tokyo"}', "commentary", "functions.get_weather", "<|constrain|>json"),
    ],
    "preamble_then_final": [
        assistant("I'll check that for you.", "commentary"),
        assistant("Done: **yes**.\n\n- a\n- b", "final"),
    ],
}


def parse_steps(enc, tokens):
    parser = StreamableParser(enc, role=Role.ASSISTANT)
    steps = []
    for t in tokens:
        parser.process(t)
        steps.append({
            "token": t,
            "state": parser.state.name,
            "channel": parser.current_channel,
            "recipient": parser.current_recipient,
            "content_type": parser.current_content_type,
            "delta": parser.last_content_delta,
            "content": parser.current_content,
        })
    return steps, [m.to_dict() for m in parser.messages]


def generated_tokens(enc, messages, end_with_return):
    """The ids a model produces for `messages` after the prompt's "<|start|>assistant"."""
    toks = enc.render_conversation(Conversation.from_messages(messages),
                                   RenderConversationConfig(auto_drop_analysis=False))
    prefix = [200006] + enc.encode("assistant", allowed_special=set())
    assert toks[:len(prefix)] == prefix
    toks = toks[len(prefix):]
    if end_with_return and toks[-1] == 200007:
        toks[-1] = 200002
    return toks


def main():
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    keep = RenderConversationConfig(auto_drop_analysis=False)
    convs = []
    for name, messages in CONVERSATIONS.items():
        conv = Conversation.from_messages(messages)
        convs.append({
            "name": name,
            "conversation": json.loads(conv.to_json()),
            "completion": enc.render_conversation_for_completion(conv, Role.ASSISTANT),
            "completion_keep_analysis": enc.render_conversation_for_completion(conv, Role.ASSISTANT, keep),
            "training": enc.render_conversation_for_training(conv),
            "text": enc.decode_utf8(enc.render_conversation_for_completion(conv, Role.ASSISTANT)),
        })
    gens = []
    for name, messages in GENERATIONS.items():
        toks = generated_tokens(enc, messages, end_with_return=(name != "tool_call_after_channel"))
        steps, parsed = parse_steps(enc, toks)
        gens.append({"name": name, "tokens": toks, "steps": steps, "messages": parsed})
    # The recipient may also come before the channel, in the role part of the header.
    toks = [200005] + enc.encode("commentary", allowed_special=set())
    toks = (enc.encode(" to=functions.lookup", allowed_special=set()) + toks
            + enc.encode(" json", allowed_special=set()) + [200008]
            + enc.encode('{"q": 1}', allowed_special=set()) + [200012])
    steps, parsed = parse_steps(enc, toks)
    gens.append({"name": "recipient_in_role_part", "tokens": toks, "steps": steps, "messages": parsed})
    out = {
        "generator": "tests/gen_harmony_fixtures.py",
        "openai_harmony_version": getattr(openai_harmony, "__version__", "0.0.8"),
        "stop_tokens": sorted(enc.stop_tokens()),
        "stop_tokens_for_assistant_actions": sorted(enc.stop_tokens_for_assistant_actions()),
        "conversations": convs,
        "generations": gens,
    }
    path = os.path.join(HERE, "data", "harmony_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
