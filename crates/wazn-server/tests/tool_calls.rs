//! Function calls of a template model behind the chat API, end to end: Qwen3's own chat
//! template (from crates/wazn-text/tests/data/tool_chat_templates.json, checked there against
//! transformers) shows the model its tools, and a scripted stand-in with `<tool_call>` in its
//! vocabulary answers as Qwen3 does. Under "auto" the call is held to its schema from the
//! `<tool_call>` token on and comes back as `tool_calls`, whole and streamed alike; the text
//! before it stays `content`.

mod common;

use std::collections::HashMap;

use common::scripted;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Qwen3's answer when it calls a tool: some text, then one block per call.
const REPLY: &str = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";

fn body(tool_choice: Value) -> Value {
    json!({
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}
            }, "required": ["city", "unit"]}
        }}],
        "tool_choice": tool_choice,
    })
}

#[test]
fn a_qwen3_call_under_auto_whole_and_streamed() {
    let (server, seen) = scripted::start(&scripted::qwen3_template(), REPLY);
    let whole = server.post("/v1/chat/completions", &body(json!("auto")));
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
    assert_eq!(choice["message"]["content"], "Let me check.");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"city": "Paris", "unit": "celsius"}"#
    );

    // The template showed the model its tools.
    let tokenizer = scripted::tokenizer();
    let prompts: Vec<String> = seen
        .lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .collect();
    assert!(prompts
        .iter()
        .all(|p| p.contains("<tools>") && p.contains("\"get_weather\"")));

    let mut streamed_body = body(json!("auto"));
    streamed_body["stream"] = json!(true);
    let (chunks, done) = server.post("/v1/chat/completions", &streamed_body).sse();
    assert!(done);
    let (mut content, mut name, mut arguments, mut finish) =
        (String::new(), String::new(), String::new(), Value::Null);
    for chunk in &chunks {
        let c = &chunk["choices"][0];
        content.push_str(c["delta"]["content"].as_str().unwrap_or_default());
        for call in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(call["index"], 0);
            name.push_str(call["function"]["name"].as_str().unwrap_or_default());
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if !c["finish_reason"].is_null() {
            finish = c["finish_reason"].clone();
        }
    }
    assert_eq!(content, "Let me check.");
    assert_eq!(name, "get_weather");
    assert_eq!(arguments, calls[0]["function"]["arguments"]);
    assert_eq!(finish, "tool_calls");
}

#[test]
fn under_required_the_answer_is_the_call_alone() {
    // The model would write text first; a forced call starts at the first token. Sampled at
    // temperature 1 with fixed seeds, the stand-in's other tokens are as likely as each other,
    // so the grammar alone shapes the call: every such answer must still read as a call.
    let (server, _) = scripted::start(&scripted::qwen3_template(), REPLY);
    for (temperature, seed) in [(0.0, 0), (1.0, 1), (1.0, 2), (1.0, 3), (1.0, 4), (1.0, 5)] {
        let mut request = body(json!("required"));
        // Bounded arguments and one call, so that every path of the grammar ends soon.
        request["tools"][0]["function"]["parameters"]["properties"]["city"]["maxLength"] =
            json!(20);
        request["tools"][0]["function"]["parameters"]["additionalProperties"] = json!(false);
        request["parallel_tool_calls"] = json!(false);
        request["temperature"] = json!(temperature);
        request["seed"] = json!(seed);
        request["max_tokens"] = json!(400);
        let whole = server.post("/v1/chat/completions", &request);
        assert_eq!(whole.status, 200, "{}", whole.text());
        let whole = whole.json();
        let choice = &whole["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert!(!calls.is_empty(), "{whole}");
        for call in calls {
            assert_eq!(call["function"]["name"], "get_weather");
            // Read as written: a number past f64 is valid JSON the grammar may allow.
            let arguments = call["function"]["arguments"].as_str().unwrap();
            let args: HashMap<String, Box<RawValue>> =
                serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments}: {e}"));
            assert!(args["city"].get().starts_with('"'), "{arguments}");
            let unit = args["unit"].get();
            assert!(
                unit == r#""celsius""# || unit == r#""fahrenheit""#,
                "{arguments}"
            );
        }
    }
}
