//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over real loopback
//! connections on the default model: the same greedy answer as chat completions, whole and
//! streamed, with its stop reasons and token counts; bad input answered in Anthropic's error
//! shape, with nothing left held in the engine. The scripted-model cases (thinking, tool_use,
//! tool results) are in `anthropic_scripted.rs`.
mod common;

use std::io::Read;
use std::sync::MutexGuard;

use common::messages::{text_of, whole_and_streamed, without_ids};
use common::{request, send, Config, TestServer, MODEL_ID};
use serde_json::{json, Value};

/// The default model's server, one test at a time so that its metrics can be read exactly.
fn server() -> MutexGuard<'static, TestServer> {
    common::shared_server()
}

const SYSTEM: &str = "You are a helpful assistant.";

fn messages_body(question: &str, max_tokens: usize) -> Value {
    json!({
        "model": MODEL_ID,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

#[test]
fn a_greedy_answer_is_the_chat_completion_whole_and_streamed() {
    let s = server();
    let body = messages_body("What is the capital of France?", 24);
    let (whole, streamed) = whole_and_streamed(&s, &body);
    let chat = s.post(
        "/v1/chat/completions",
        &json!({
            "model": MODEL_ID,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            "max_tokens": 24,
            "temperature": 0,
        }),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat = chat.json();
    let chat_text = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!chat_text.is_empty());

    assert!(whole["id"].as_str().unwrap().starts_with("msg_"), "{whole}");
    assert_eq!(whole["type"], "message");
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["model"], MODEL_ID);
    assert_eq!(whole["content"].as_array().unwrap().len(), 1, "{whole}");
    assert_eq!(whole["content"][0]["type"], "text");
    assert_eq!(whole["content"][0]["text"], chat_text);
    let expected_stop = match chat["choices"][0]["finish_reason"].as_str() {
        Some("stop") => "end_turn",
        Some("length") => "max_tokens",
        other => panic!("finish_reason {other:?}"),
    };
    assert_eq!(whole["stop_reason"], expected_stop);
    assert_eq!(whole["stop_sequence"], Value::Null);
    assert_eq!(
        whole["usage"],
        json!({
            "input_tokens": chat["usage"]["prompt_tokens"],
            "output_tokens": chat["usage"]["completion_tokens"],
        })
    );
    assert_ne!(whole["id"], streamed["id"]);
    assert_eq!(without_ids(&streamed), without_ids(&whole));

    // count_tokens gives the prompt length the answer reported.
    let counted = s.post("/v1/messages/count_tokens", &body);
    assert_eq!(counted.status, 200, "{}", counted.text());
    assert_eq!(
        counted.json(),
        json!({"input_tokens": whole["usage"]["input_tokens"]})
    );
    assert!(s.wait_idle());
}

#[test]
fn a_stop_sequence_and_max_tokens_are_the_stop_reasons() {
    let s = server();
    let body = messages_body("Write a long essay about the sea.", 40);
    let free = s.post("/v1/messages", &body).json();
    assert_eq!(free["stop_reason"], "max_tokens", "{free}");
    assert_eq!(free["usage"]["output_tokens"], 40);
    let text = text_of(&free);
    // A piece from the middle of the answer: the answer with it as a stop ends just before.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "{text}");
    let stop: String = chars[8..11].iter().collect();
    let before = &text[..text.find(&stop).unwrap()];
    let mut stopped_body = body.clone();
    stopped_body["stop_sequences"] = json!(["never written here", stop]);
    let (whole, streamed) = whole_and_streamed(&s, &stopped_body);
    assert_eq!(whole["stop_reason"], "stop_sequence", "{whole}");
    assert_eq!(whole["stop_sequence"], stop);
    assert_eq!(text_of(&whole), before);
    assert_eq!(without_ids(&streamed), without_ids(&whole));

    let mut short = body.clone();
    short["max_tokens"] = json!(3);
    let (whole, streamed) = whole_and_streamed(&s, &short);
    assert_eq!(whole["stop_reason"], "max_tokens");
    assert_eq!(whole["stop_sequence"], Value::Null);
    assert_eq!(whole["usage"]["output_tokens"], 3);
    assert_eq!(without_ids(&streamed), without_ids(&whole));
    assert!(s.wait_idle());
}

#[test]
fn an_output_format_holds_the_text_to_its_schema_as_chat_completions_does() {
    let s = server();
    let schema = json!({
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 16}},
        "required": ["capital"],
        "additionalProperties": false,
    });
    let mut body = messages_body("What is the capital of France? Answer in JSON.", 40);
    body["output_config"] = json!({"format": {"type": "json_schema", "schema": schema}});
    let (whole, streamed) = whole_and_streamed(&s, &body);
    assert_eq!(without_ids(&streamed), without_ids(&whole));
    let chat = s.post(
        "/v1/chat/completions",
        &json!({
            "model": MODEL_ID,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What is the capital of France? Answer in JSON."},
            ],
            "max_tokens": 40,
            "temperature": 0,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "output", "schema": schema}},
        }),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat_text = chat.json()["choices"][0]["message"]["content"].clone();
    let text = text_of(&whole);
    assert_eq!(json!(text), chat_text);
    assert_eq!(whole["stop_reason"], "end_turn", "{whole}");
    let answer: Value = serde_json::from_str(&text).expect("the text is JSON");
    let keys: Vec<&String> = answer.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["capital"], "{answer}");
    assert!(answer["capital"]
        .as_str()
        .is_some_and(|c| c.chars().count() <= 16));
    assert!(s.wait_idle());
}

#[test]
fn a_forced_tool_call_on_the_default_model_is_a_tool_use_block() {
    let s = server();
    let mut body = messages_body("What is the weather in Paris?", 60);
    body["tools"] = json!([{
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                         "required": ["city"], "additionalProperties": false},
    }]);
    body["tool_choice"] = json!({"type": "tool", "name": "get_weather",
                                 "disable_parallel_tool_use": true});
    let (whole, streamed) = whole_and_streamed(&s, &body);
    assert_eq!(whole["stop_reason"], "tool_use", "{whole}");
    let uses: Vec<&Value> = whole["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{whole}");
    assert_eq!(uses[0]["name"], "get_weather");
    assert!(uses[0]["input"]["city"].is_string(), "{whole}");
    assert_eq!(without_ids(&streamed), without_ids(&whole));
    assert!(s.wait_idle());
}

#[test]
fn a_client_that_goes_away_mid_stream_gives_its_blocks_back() {
    let s = server();
    let mut body = messages_body("Write a long essay about the sea.", 300);
    let whole = s.post("/v1/messages", &body).json();
    let n_whole = whole["usage"]["output_tokens"].as_f64().unwrap();
    assert!(n_whole >= 100.0, "the answer is too short to cut: {whole}");
    body["stream"] = json!(true);
    let mut stream = send(
        s.addr,
        "POST",
        "/v1/messages",
        &[],
        body.to_string().as_bytes(),
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen)
        .matches("event: content_block_delta")
        .count()
        < 4
    {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let generated_before = s.metric("wazn_generation_tokens_total");
    drop(stream);
    assert!(s.wait_idle(), "blocks not returned after the client left");
    let generated = s.metric("wazn_generation_tokens_total") - generated_before;
    assert!(
        generated < n_whole / 2.0,
        "{generated} tokens generated after hang-up"
    );
}

/// Requests to `route` answered with `status`, as `/metrics` counts them.
fn requests_answered(server: &TestServer, route: &str, status: u16) -> f64 {
    let line = format!("wazn_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0.0, |n| n.trim().parse().expect("a count"))
}

/// A request and the status and Anthropic error type it must get.
struct BadCase {
    path: &'static str,
    body: Vec<u8>,
    status: u16,
    error_type: &'static str,
}

fn bad(path: &'static str, body: Value, status: u16, error_type: &'static str) -> BadCase {
    BadCase {
        path,
        body: body.to_string().into_bytes(),
        status,
        error_type,
    }
}

#[test]
fn bad_requests_get_an_anthropic_error_and_hold_nothing() {
    let s = server();
    let user = json!([{"role": "user", "content": "hi"}]);
    let tool = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let invalid = "invalid_request_error";
    let messages = "/v1/messages";
    let count = "/v1/messages/count_tokens";
    let long_prompt = "hello ".repeat(common::N_CTX + 10);
    let oversize = vec![b'a'; wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1];
    let with = |extra: Value| {
        let mut body = json!({"model": MODEL_ID, "max_tokens": 5, "messages": user});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = vec![
        BadCase {
            path: messages,
            body: b"{not json".to_vec(),
            status: 400,
            error_type: invalid,
        },
        BadCase {
            path: messages,
            body: b"[1, 2]".to_vec(),
            status: 400,
            error_type: invalid,
        },
        bad(
            messages,
            json!({"max_tokens": 5, "messages": user}),
            400,
            invalid,
        ),
        bad(
            messages,
            json!({"model": MODEL_ID, "messages": user}),
            400,
            invalid,
        ),
        bad(messages, with(json!({"max_tokens": "ten"})), 400, invalid),
        bad(messages, with(json!({"max_tokens": 0})), 400, invalid),
        bad(messages, with(json!({"messages": "hi"})), 400, invalid),
        bad(messages, with(json!({"messages": []})), 400, invalid),
        bad(
            messages,
            with(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
            ]}]})),
            400,
            invalid,
        ),
        bad(messages, with(json!({"temperature": 1.5})), 400, invalid),
        bad(messages, with(json!({"temperature": "hot"})), 400, invalid),
        bad(messages, with(json!({"stop_sequences": "x"})), 400, invalid),
        bad(messages, with(json!({"stream": "yes"})), 400, invalid),
        bad(
            messages,
            with(json!({"tools": [{"name": "f"}]})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"tools": tool, "tool_choice": "auto"})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"tools": tool, "tool_choice": {"type": "tool"}})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"tools": tool, "tool_choice": {"type": "tool", "name": "g"}})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"tool_choice": {"type": "any"}})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"thinking": {"type": "enabled"}})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"output_config": {"format": {"type": "json_schema", "schema": 3}}})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"output_config": {"format": {"type": "json_schema",
                "schema": {"type": "object"}}}, "tools": tool})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"messages": [{"role": "user", "content": long_prompt}]})),
            400,
            invalid,
        ),
        bad(
            messages,
            with(json!({"model": "claude-sonnet-4-5"})),
            404,
            "not_found_error",
        ),
        bad(
            messages,
            with(json!({"model": "claude-sonnet-4-5", "stream": true})),
            404,
            "not_found_error",
        ),
        BadCase {
            path: messages,
            body: oversize.clone(),
            status: 413,
            error_type: "request_too_large",
        },
        BadCase {
            path: count,
            body: b"{not json".to_vec(),
            status: 400,
            error_type: invalid,
        },
        bad(count, json!({"model": MODEL_ID}), 400, invalid),
        bad(
            count,
            json!({"model": MODEL_ID, "messages": [{"role": "user", "content": 5}]}),
            400,
            invalid,
        ),
        bad(
            count,
            json!({"model": MODEL_ID, "messages": user, "system": {"text": "x"}}),
            400,
            invalid,
        ),
        bad(
            count,
            json!({"model": "claude-sonnet-4-5", "messages": user}),
            404,
            "not_found_error",
        ),
        bad(
            count,
            json!({"model": MODEL_ID, "messages": user, "tool_choice": {"type": "tool"}}),
            400,
            invalid,
        ),
        BadCase {
            path: count,
            body: oversize,
            status: 413,
            error_type: "request_too_large",
        },
    ];
    let refused_before = requests_answered(&s, messages, 400);
    let mut refused_here = 0.0;
    for case in cases {
        let r = request(s.addr, "POST", case.path, &[], &case.body);
        let shown = String::from_utf8_lossy(&case.body[..case.body.len().min(100)]).into_owned();
        assert_eq!(r.status, case.status, "{shown}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["type"], "error", "{shown}: {answer}");
        assert_eq!(
            answer["error"]["type"], case.error_type,
            "{shown}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty() && !message.contains('\n'), "{shown}");
        if case.path == messages && case.status == 400 {
            refused_here += 1.0;
        }
    }
    // A path or a method the Messages API does not have is answered in its shape too.
    for (method, path, status, error_type) in [
        ("GET", messages, 405, invalid),
        ("GET", count, 405, invalid),
        ("POST", "/v1/messages/batches", 404, "not_found_error"),
    ] {
        let r = request(s.addr, method, path, &[], b"");
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["type"], "error", "{method} {path}: {answer}");
        assert_eq!(
            answer["error"]["type"], error_type,
            "{method} {path}: {answer}"
        );
    }
    // Each refusal is counted under its own route, and nothing is left running or held.
    assert_eq!(
        requests_answered(&s, messages, 400) - refused_before,
        refused_here
    );
    assert!(s.wait_idle());
    assert_eq!(s.metric("wazn_kv_blocks_used"), 0.0);
}

#[test]
fn the_api_key_is_taken_from_x_api_key() {
    let s = TestServer::start(Config {
        api_key: Some("sk-ant-test".into()),
        ..Config::default()
    });
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into_bytes();
    let path = "/v1/messages/count_tokens";
    for headers in [vec![], vec![("x-api-key", "wrong")]] {
        let r = request(s.addr, "POST", path, &headers, &body);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["type"], "error");
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    let r = request(s.addr, "POST", path, &[("x-api-key", "sk-ant-test")], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
}
