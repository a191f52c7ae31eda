//! Structured output and tool calls behind the API, on the default model: `response_format`,
//! `structured_outputs` on chat and completions, forced and named tool calls whose arguments
//! follow their schemas, streamed `tool_calls` deltas that join into the whole answer, and
//! bad constraints answered 400 with the server still serving.

mod common;

use std::sync::MutexGuard;

use common::{TestServer, MODEL_ID};
use serde_json::{json, Value};

fn server() -> MutexGuard<'static, TestServer> {
    common::shared_server()
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 200,
        "temperature": 0,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"enum": ["celsius", "fahrenheit"]}
            }, "required": ["city", "unit"], "additionalProperties": false}
        }},
        {"type": "function", "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {
                "a": {"type": "integer"}, "b": {"type": "integer"}
            }, "required": ["a", "b"], "additionalProperties": false}
        }}
    ])
}

/// Checks a call's arguments against the two tools' schemas (by hand: the schemas are small).
fn check_arguments(name: &str, arguments: &str) {
    let args: Value =
        serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments:?}: {e}"));
    let obj = args.as_object().expect("arguments are an object");
    match name {
        "get_weather" => {
            assert_eq!(obj.len(), 2, "{arguments}");
            assert!(
                obj["city"]
                    .as_str()
                    .is_some_and(|c| c.chars().count() <= 40),
                "{arguments}"
            );
            assert!(
                ["celsius", "fahrenheit"].contains(&obj["unit"].as_str().unwrap()),
                "{arguments}"
            );
        }
        "add" => {
            assert_eq!(obj.len(), 2, "{arguments}");
            assert!(obj["a"].is_i64() && obj["b"].is_i64(), "{arguments}");
        }
        other => panic!("unknown tool {other}"),
    }
}

#[test]
fn response_format_and_structured_outputs_constrain_chat_and_completions() {
    let server = server();
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30},
        "founded": {"type": "string", "format": "date"},
        "rivers": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2}
    }, "required": ["name", "founded", "rivers"]});
    let format = json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": true}});
    let r = server.post(
        "/v1/chat/completions",
        &chat("Describe Paris.", json!({"response_format": format})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    let v: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}"));
    // strict: no properties beyond the listed ones.
    assert_eq!(v.as_object().unwrap().len(), 3, "{content}");
    let founded = v["founded"].as_str().unwrap();
    assert!(
        founded.len() == 10 && founded.as_bytes()[4] == b'-',
        "{content}"
    );

    let object = server.post(
        "/v1/chat/completions",
        &chat(
            "Describe Paris.",
            json!({"response_format": {"type": "json_object"}, "max_tokens": 256}),
        ),
    );
    let content = object.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    if object.json()["choices"][0]["finish_reason"] == "stop" {
        assert!(
            serde_json::from_str::<Value>(&content).unwrap().is_object(),
            "{content}"
        );
    }

    let completion = server.post(
        "/v1/completions",
        &json!({"model": MODEL_ID, "prompt": "The code is", "max_tokens": 20, "temperature": 0,
                "structured_outputs": {"regex": " [A-Z]{3}-\\d{3}"}}),
    );
    assert_eq!(completion.status, 200, "{}", completion.text());
    let text = completion.json()["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let code = text.strip_prefix(' ').unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        code.len() == 7
            && code[..3].bytes().all(|b| b.is_ascii_uppercase())
            && &code[3..4] == "-"
            && code[4..].bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );

    let choice = server.post(
        "/v1/chat/completions",
        &chat(
            "Is water wet?",
            json!({"structured_outputs": {"choice": ["yes", "no", "it depends"]}}),
        ),
    );
    let content = choice.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ["yes", "no", "it depends"].contains(&content.as_str()),
        "{content:?}"
    );
}

#[test]
fn forced_tool_calls_follow_their_schemas_whole_and_streamed() {
    let server = server();
    let cases = [
        (json!("required"), true, None),
        (
            json!({"type": "function", "function": {"name": "add"}}),
            true,
            Some("add"),
        ),
        (json!("required"), false, None),
    ];
    for (choice, parallel, only) in cases {
        let body = chat(
            "What is the weather in Paris, and what is 2 + 3?",
            json!({"tools": tools(), "tool_choice": choice, "parallel_tool_calls": parallel}),
        );
        let whole = server.post("/v1/chat/completions", &body);
        assert_eq!(whole.status, 200, "{}", whole.text());
        let whole = whole.json();
        let c = &whole["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls", "{whole}");
        let calls = c["message"]["tool_calls"].as_array().expect("tool_calls");
        assert!(!calls.is_empty());
        if !parallel {
            assert_eq!(calls.len(), 1, "{whole}");
        }
        for call in calls {
            let name = call["function"]["name"].as_str().unwrap();
            if let Some(only) = only {
                assert_eq!(name, only);
            }
            assert_eq!(call["type"], "function");
            assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
            check_arguments(name, call["function"]["arguments"].as_str().unwrap());
        }

        // Streamed: the deltas, joined as the SDKs join them, give the same calls.
        let mut streamed_body = body.clone();
        streamed_body["stream"] = json!(true);
        let (chunks, done) = server.post("/v1/chat/completions", &streamed_body).sse();
        assert!(done);
        let mut joined: Vec<(String, String)> = Vec::new();
        let mut finish = Value::Null;
        for chunk in &chunks {
            let choice = &chunk["choices"][0];
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
            for delta in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = delta["index"].as_u64().unwrap() as usize;
                if index == joined.len() {
                    joined.push((String::new(), String::new()));
                }
                if let Some(name) = delta["function"]["name"].as_str() {
                    joined[index].0.push_str(name);
                }
                if let Some(args) = delta["function"]["arguments"].as_str() {
                    joined[index].1.push_str(args);
                }
            }
        }
        assert_eq!(finish, "tool_calls");
        let want: Vec<(String, String)> = calls
            .iter()
            .map(|c| {
                (
                    c["function"]["name"].as_str().unwrap().to_string(),
                    c["function"]["arguments"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(joined, want);
    }
}

#[test]
fn tool_choice_none_and_auto_leave_the_model_free() {
    let server = server();
    let none = server.post(
        "/v1/chat/completions",
        &chat(
            "Say hello.",
            json!({"tools": tools(), "tool_choice": "none", "max_tokens": 20}),
        ),
    );
    assert_eq!(none.status, 200, "{}", none.text());
    assert!(none.json()["choices"][0]["message"]
        .get("tool_calls")
        .is_none());
    let auto = server.post(
        "/v1/chat/completions",
        &chat("Say hello.", json!({"tools": tools(), "max_tokens": 20})),
    );
    assert_eq!(auto.status, 200, "{}", auto.text());
}

#[test]
fn bad_constraints_are_400_and_the_server_stays_up() {
    let server = server();
    let cases = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                "schema": {"type": "object", "properties": {"a": {"type": "no-such-type"}}}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                "schema": {"$ref": "#/$defs/missing"}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            json!({"structured_outputs": {"grammar": "start: nowhere"}}),
            "structured_outputs",
        ),
        (
            json!({"structured_outputs": {"regex": "(unclosed"}}),
            "structured_outputs",
        ),
        (
            json!({"tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": tools(), "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name!"}}], "tool_choice": "required"}),
            "tools",
        ),
        (
            json!({"tools": tools(), "tool_choice": "required", "response_format": {"type": "json_object"}}),
            "",
        ),
    ];
    for (extra, param) in cases {
        let r = server.post("/v1/chat/completions", &chat("hi", extra.clone()));
        assert_eq!(r.status, 400, "{extra}: {}", r.text());
        let error = &r.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{extra}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{extra}: {error}");
        }
    }
    let ok = server.post(
        "/v1/chat/completions",
        &chat("hi", json!({"max_tokens": 4})),
    );
    assert_eq!(ok.status, 200);
}
