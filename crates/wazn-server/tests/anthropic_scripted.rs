//! Anthropic's Messages API on a scripted Qwen3-like model: thinking, text and tool_use blocks,
//! a tool result rendered back into the prompt, a system turn kept in place, a call whose
//! arguments are no object kept as text, and a full context as its own stop reason.

mod common;

use common::messages::{whole_and_streamed, without_ids};
use common::scripted;
use serde_json::{json, Value};

/// Qwen3's answer when it reasons, then calls a tool.
const THINK_AND_CALL: &str = "<think>\nThe user wants the weather.\n</think>\n\nLet me check.\n\
    <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";

fn weather_tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}
        }, "required": ["city", "unit"]},
    }])
}

/// The prompts the scripted model saw, as text.
fn prompts(seen: &scripted::Seen) -> Vec<String> {
    let tokenizer = scripted::tokenizer();
    seen.lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .collect()
}

#[test]
fn thinking_text_and_a_tool_call_then_its_result_in_the_prompt() {
    let (server, seen) = scripted::start(&scripted::qwen3_template(), THINK_AND_CALL);
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({
        "model": "scripted",
        "max_tokens": 200,
        "messages": [question],
        "tools": weather_tools(),
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    });
    let (whole, streamed) = whole_and_streamed(&server, &body);
    assert_eq!(whole["stop_reason"], "tool_use", "{whole}");
    let content = whole["content"].as_array().unwrap();
    let kinds: Vec<&str> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"], "{whole}");

    // The same reply as chat completions reads it.
    let chat = server.post(
        "/v1/chat/completions",
        &json!({
            "messages": [question],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "The weather in a city",
                "parameters": weather_tools()[0]["input_schema"],
            }}],
        }),
    );
    let chat = chat.json()["choices"][0]["message"].clone();
    assert_eq!(content[0]["thinking"], chat["reasoning_content"]);
    assert_eq!(content[0]["signature"], "");
    assert_eq!(content[1]["text"], chat["content"]);
    assert!(content[1]["text"]
        .as_str()
        .unwrap()
        .contains("Let me check."));
    let call = &content[2];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "Paris", "unit": "celsius"}));
    // Key order as the model wrote it.
    assert_eq!(
        call["input"].to_string(),
        r#"{"city":"Paris","unit":"celsius"}"#
    );
    assert_eq!(without_ids(&streamed), without_ids(&whole));

    // The result goes back under the call's id and the model sees it.
    let id = call["id"].as_str().unwrap();
    seen.lock().unwrap().clear();
    let round_trip = json!({
        "model": "scripted",
        "max_tokens": 200,
        "messages": [
            question,
            {"role": "assistant", "content": content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id,
                 "content": [{"type": "text", "text": "{\"temperature\": 21}"}]},
            ]},
        ],
        "tools": weather_tools(),
    });
    let answer = server.post("/v1/messages", &round_trip);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let prompts = prompts(&seen);
    assert_eq!(prompts.len(), 1);
    let prompt = &prompts[0];
    let call_at = prompt
        .find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"")
        .unwrap_or_else(|| panic!("no call in the prompt:\n{prompt}"));
    let result_at = prompt
        .find("<tool_response>\n{\"temperature\": 21}\n</tool_response>")
        .unwrap_or_else(|| panic!("no tool result in the prompt:\n{prompt}"));
    assert!(call_at < result_at);
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");

    let counted = server.post("/v1/messages/count_tokens", &round_trip);
    assert_eq!(
        counted.json()["input_tokens"],
        answer.json()["usage"]["input_tokens"]
    );
}

#[test]
fn a_system_turn_among_the_messages_stays_where_it_was_sent() {
    let (server, seen) = scripted::start(&scripted::qwen3_template(), "Hello.");
    let body = json!({
        "model": "scripted",
        "max_tokens": 20,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Say hello."},
            {"role": "system", "content": [{"type": "text", "text": "Today is Monday."}]},
        ],
    });
    let answer = server.post("/v1/messages", &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let prompts = prompts(&seen);
    let prompt = &prompts[0];
    let first = prompt.find("<|im_start|>system\nYou are terse.<|im_end|>");
    let user = prompt.find("<|im_start|>user\nSay hello.<|im_end|>");
    let later = prompt.find("<|im_start|>system\nToday is Monday.<|im_end|>");
    assert!(
        first < user && user < later && first.is_some(),
        "system turns out of place:\n{prompt}"
    );
}

/// A ChatML template for a model that writes Llama 3's JSON calls (`{"name": ..., "parameters":
/// ...}`, which the comment's `<|python_tag|>` tells). The scripted vocabulary has no such tag,
/// so under "auto" no grammar holds the calls, as for Llama 3 models that start a call with `{`.
const LLAMA3_JSON_TEMPLATE: &str = "{#- calls: <|python_tag|> -#}\
    {%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}\
    {%- if add_generation_prompt %}<|im_start|>assistant\n{% endif -%}";

#[test]
fn a_call_whose_arguments_are_no_object_is_kept_as_text() {
    // Nothing holds the model to the schema, and it writes a string where `input` must be an
    // object: chat completions reads it as a call, the Messages API cannot offer it as one.
    let reply = "{\"name\": \"note\", \"parameters\": \"buy milk\"}";
    let (server, _) = scripted::start(LLAMA3_JSON_TEMPLATE, reply);
    let tools = json!([{"name": "note", "input_schema": {"type": "object"}}]);
    let chat = server.post(
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "Remember to buy milk."}],
            "tools": [{"type": "function", "function": {"name": "note",
                       "parameters": {"type": "object"}}}],
        }),
    );
    let call = &chat.json()["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["arguments"], "\"buy milk\"", "{}", chat.text());
    let body = json!({
        "model": "scripted",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Remember to buy milk."}],
        "tools": tools,
    });
    let (whole, streamed) = whole_and_streamed(&server, &body);
    assert_eq!(whole["stop_reason"], "end_turn", "{whole}");
    assert_eq!(
        whole["content"],
        json!([{"type": "text", "text": "note \"buy milk\""}])
    );
    assert_eq!(without_ids(&streamed), without_ids(&whole));
    assert!(server.wait_idle());
}

#[test]
fn a_full_context_is_its_own_stop_reason() {
    // The scripted model's context is 2048 tokens, one a byte: a long prompt leaves less room
    // than the reply and `max_tokens` want. `max_tokens` past the whole context is taken as
    // "until the context is full", as Claude Code asks for 32,000.
    let (server, _) = scripted::start(&scripted::qwen3_template(), &"la ".repeat(200));
    let body = json!({
        "model": "scripted",
        "max_tokens": 32000,
        "messages": [{"role": "user", "content": "a".repeat(1800)}],
    });
    let (whole, streamed) = whole_and_streamed(&server, &body);
    assert_eq!(
        whole["stop_reason"], "model_context_window_exceeded",
        "{whole}"
    );
    let usage = &whole["usage"];
    let n_used = usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap();
    assert_eq!(n_used, 2048, "{usage}");
    assert_eq!(without_ids(&streamed), without_ids(&whole));
    assert!(server.wait_idle());
}
