//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over real loopback
//! connections: on the default model, the same greedy answer as chat completions, whole and
//! streamed, with its stop reasons and token counts; on a scripted Qwen3-like model, thinking,
//! text and tool_use blocks and a tool result rendered back into the prompt; bad input answered
//! in Anthropic's error shape, with nothing left held in the engine.

mod common;

use std::io::Read;
use std::sync::MutexGuard;

use common::{request, scripted, send, Config, TestServer, MODEL_ID};
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

/// The events of a Messages stream: each `event:` name with its `data:` JSON.
fn events(response: &common::Response) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in response.text().lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(data) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(data).expect("event JSON");
            out.push((name.take().expect("an event name before its data"), data));
        }
    }
    out
}

/// The message a client puts together from a stream's events (as the SDKs do), after checking
/// their order: `message_start`, blocks started, filled and stopped one at a time,
/// `message_delta`, `message_stop`.
fn reassemble(events: &[(String, Value)]) -> Value {
    let mut message = Value::Null;
    let mut open: Option<usize> = None;
    let mut partial_json = String::new();
    let mut stopped = false;
    for (name, data) in events {
        assert_eq!(data["type"], name.as_str(), "event name and type differ");
        assert!(!stopped, "{name} after message_stop");
        match name.as_str() {
            "message_start" => {
                assert!(message.is_null(), "a second message_start");
                message = data["message"].clone();
                assert_eq!(message["content"], json!([]));
                assert_eq!(message["stop_reason"], Value::Null);
            }
            "ping" => {}
            "content_block_start" => {
                assert_eq!(open, None, "a block started while another was open");
                let index = data["index"].as_u64().unwrap() as usize;
                let content = message["content"].as_array_mut().unwrap();
                assert_eq!(index, content.len());
                content.push(data["content_block"].clone());
                open = Some(index);
                partial_json.clear();
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(index), "a delta to a block that is not open");
                let block = &mut message["content"][index];
                let delta = &data["delta"];
                let mut add = |key: &str, piece: &Value| {
                    let old = block[key].as_str().unwrap().to_string();
                    block[key] = json!(old + piece.as_str().unwrap());
                };
                match delta["type"].as_str().unwrap() {
                    "text_delta" => add("text", &delta["text"]),
                    "thinking_delta" => add("thinking", &delta["thinking"]),
                    "signature_delta" => add("signature", &delta["signature"]),
                    "input_json_delta" => {
                        partial_json.push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(index));
                let block = &mut message["content"][index];
                if block["type"] == "tool_use" {
                    block["input"] = serde_json::from_str(&partial_json).expect("input JSON");
                }
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None, "message_delta with a block open");
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                message["usage"]["output_tokens"] = data["usage"]["output_tokens"].clone();
            }
            "message_stop" => stopped = true,
            other => panic!("unknown event {other}: {data}"),
        }
    }
    assert!(stopped, "no message_stop");
    message
}

/// `body` whole, then streamed; both messages (the streamed one put together).
fn whole_and_streamed(server: &TestServer, body: &Value) -> (Value, Value) {
    let whole = server.post("/v1/messages", body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let streamed = server.post("/v1/messages", &streamed_body);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert!(streamed
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    (whole.json(), reassemble(&events(&streamed)))
}

/// `message` without the parts that differ from one request to the next (ids).
fn without_ids(message: &Value) -> Value {
    let mut message = message.clone();
    message["id"] = Value::Null;
    for block in message["content"].as_array_mut().into_iter().flatten() {
        if block["type"] == "tool_use" {
            assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
            block["id"] = Value::Null;
        }
    }
    message
}

/// The text of a message's text blocks.
fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
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
