//! OpenAI's Responses API (`/v1/responses`) on the engine behind chat completions: a greedy
//! answer equals the chat answer for the same conversation; the stream's items end as the
//! whole answer's; reasoning, text and function calls of a scripted Qwen3-like model come back
//! as their own items, and a tool's output goes back in; `previous_response_id` goes on from
//! the conversation kept; bad requests get OpenAI's error shape and leave the cache empty.

mod common;

use common::{scripted, shared_server, TestServer};
use serde_json::{json, Value};

/// The whole answer and the streamed events of the same request.
fn both_ways(server: &TestServer, body: &Value) -> (Value, Vec<Value>) {
    let whole = server.post("/v1/responses", body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let response = server.post_streamed("/v1/responses", body);
    let events = response.sse().0;
    // `event:` names each event by its type.
    let names: Vec<String> = response
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("event: ").map(str::to_string))
        .collect();
    let types: Vec<String> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, types);
    (whole.json(), events)
}

/// What a client keeps of an answer: each item's kind and text, without ids.
fn items(output: &Value) -> Vec<Value> {
    output
        .as_array()
        .unwrap()
        .iter()
        .map(|item| match item["type"].as_str().unwrap() {
            "message" => json!(["message", item["content"][0]["text"]]),
            "reasoning" => json!(["reasoning", item["content"][0]["text"]]),
            "function_call" => json!(["function_call", item["name"], item["arguments"]]),
            other => panic!("unexpected item {other}"),
        })
        .collect()
}

/// The stream read as the SDK reads it: its events in order, each item from its `done`
/// event, and the final response.
fn check_stream(events: &[Value]) -> Value {
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events[0]["response"]["status"], "in_progress");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], json!(i));
    }
    let last = events.last().unwrap();
    let done_items: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(Value::Array(done_items), last["response"]["output"]);
    last.clone()
}

#[test]
fn a_greedy_answer_equals_the_chat_answer_whole_and_streamed() {
    let s = shared_server();
    let question = "What is the capital of France?";
    let chat = s.post(
        "/v1/chat/completions",
        &json!({
            "messages": [
                { "role": "system", "content": "Answer in one sentence." },
                { "role": "user", "content": question },
            ],
            "temperature": 0,
            "max_tokens": 24,
        }),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat = chat.json();
    let body = json!({
        "model": s.state.model_id,
        "instructions": "Answer in one sentence.",
        "input": question,
        "temperature": 0,
        "max_output_tokens": 24,
    });
    let (whole, events) = both_ways(&s, &body);
    assert_eq!(whole["object"], "response");
    let text = chat["choices"][0]["message"]["content"].clone();
    assert_eq!(items(&whole["output"]), vec![json!(["message", text])]);
    let status = match chat["choices"][0]["finish_reason"].as_str() {
        Some("length") => "incomplete",
        _ => "completed",
    };
    assert_eq!(whole["status"], status);
    assert_eq!(
        whole["usage"]["input_tokens"],
        chat["usage"]["prompt_tokens"]
    );
    assert_eq!(
        whole["usage"]["output_tokens"],
        chat["usage"]["completion_tokens"]
    );
    let last = check_stream(&events);
    let want = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    assert_eq!(last["type"], want);
    assert_eq!(items(&last["response"]["output"]), items(&whole["output"]));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(json!(deltas), text);
    assert!(s.wait_idle());
}

#[test]
fn a_token_limit_leaves_the_answer_incomplete() {
    let s = shared_server();
    let body =
        json!({ "input": "Tell me a long story.", "max_output_tokens": 3, "temperature": 0 });
    let whole = s.post("/v1/responses", &body).json();
    assert_eq!(whole["status"], "incomplete", "{whole}");
    assert_eq!(whole["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(whole["usage"]["output_tokens"], 3);
    assert_eq!(whole["output"][0]["status"], "incomplete");
}

/// Qwen3's answer when it reasons, then calls a tool.
const REPLY: &str = "<think>\nThe user wants the weather.\n</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    })
}

#[test]
fn reasoning_text_and_calls_are_items_and_a_tool_output_goes_back_in() {
    let (server, seen) = scripted::start(&scripted::qwen3_template(), REPLY);
    let body = json!({
        "input": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": [weather_tool(), { "type": "web_search" }],
    });
    let (whole, events) = both_ways(&server, &body);
    assert_eq!(
        items(&whole["output"]),
        vec![
            json!(["reasoning", "\nThe user wants the weather.\n"]),
            json!(["message", "\n\nLet me check."]),
            json!(["function_call", "get_weather", "{\"city\": \"Paris\"}"]),
        ]
    );
    // The tools the answer repeats are those it could use.
    assert_eq!(whole["tools"], json!([weather_tool()]));
    let last = check_stream(&events);
    assert_eq!(last["type"], "response.completed");
    assert_eq!(items(&last["response"]["output"]), items(&whole["output"]));
    let reasoning: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(reasoning, "\nThe user wants the weather.\n");
    let arguments: String = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");

    // The client runs the call and sends everything back, as a stateless client does.
    let call = whole["output"][2].clone();
    let mut history = body["input"].as_array().unwrap().clone();
    history.extend(whole["output"].as_array().unwrap().iter().cloned());
    history.push(json!({
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "{\"temperature\": 21}",
    }));
    seen.lock().unwrap().clear();
    let next = server.post(
        "/v1/responses",
        &json!({ "input": history, "tools": [weather_tool()], "store": false }),
    );
    assert_eq!(next.status, 200, "{}", next.text());
    let tokenizer = scripted::tokenizer();
    let prompt = seen
        .lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .next()
        .unwrap();
    assert!(
        prompt.contains("<tool_response>\n{\"temperature\": 21}\n</tool_response>"),
        "{prompt}"
    );
    assert!(prompt.contains("\"name\": \"get_weather\""), "{prompt}");
}

#[test]
fn previous_response_id_goes_on_from_the_kept_conversation() {
    let (server, seen) = scripted::start(&scripted::qwen3_template(), "Paris.");
    let first = server.post(
        "/v1/responses",
        &json!({ "instructions": "Be brief.", "input": "Capital of France?" }),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    seen.lock().unwrap().clear();
    let second = server.post(
        "/v1/responses",
        &json!({ "previous_response_id": first["id"], "input": "And of Italy?" }),
    );
    assert_eq!(second.status, 200, "{}", second.text());
    let tokenizer = scripted::tokenizer();
    let prompt = seen
        .lock()
        .unwrap()
        .values()
        .map(|(n, ids)| tokenizer.decode(&ids[..*n], false).unwrap())
        .next()
        .unwrap();
    // The earlier turns, not the earlier instructions (a later request does not inherit them).
    let want = "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.\
                <|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n";
    assert!(prompt.ends_with(want), "{prompt}");
    assert!(!prompt.contains("Be brief."), "{prompt}");
    assert_eq!(second.json()["previous_response_id"], first["id"]);

    // An answer made with store: false is not kept.
    let unstored = server
        .post("/v1/responses", &json!({ "input": "Hi", "store": false }))
        .json();
    let missing = server.post(
        "/v1/responses",
        &json!({ "previous_response_id": unstored["id"], "input": "Again" }),
    );
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.json()["error"]["param"], "previous_response_id");
}

#[test]
fn bad_requests_get_openai_errors_and_leave_the_cache_empty() {
    let s = shared_server();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "input is required"),
        (json!({ "input": 5 }), 400, "input must be a string"),
        (
            json!({ "input": [{ "role": "user" }] }),
            400,
            "input[0].content",
        ),
        (
            json!({ "input": "hi", "model": "gpt-9" }),
            404,
            "does not exist",
        ),
        (
            json!({ "input": "hi", "max_output_tokens": 0 }),
            400,
            "max_output_tokens",
        ),
        (
            json!({ "input": "hi", "temperature": "hot" }),
            400,
            "invalid request",
        ),
        (
            json!({ "input": "hi", "tools": [{ "name": "f" }] }),
            400,
            "tools[0].type",
        ),
        (
            json!({ "input": "hi", "tools": [weather_tool()], "tool_choice": "sometimes" }),
            400,
            "tool_choice",
        ),
        (
            json!({ "input": "hi", "text": { "format": { "type": "yaml" } } }),
            400,
            "text.format",
        ),
        (
            json!({ "input": "hi", "background": true }),
            400,
            "background",
        ),
        (
            json!({ "input": "hi", "previous_response_id": "resp_nope" }),
            404,
            "not kept",
        ),
    ];
    for (body, status, message) in cases {
        let r = s.post("/v1/responses", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let error = &r.json()["error"];
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
        assert!(error["type"].is_string(), "{error}");
    }
    let big = json!({ "input": "x".repeat(wazn_server::DEFAULT_BODY_LIMIT_BYTES + 1) });
    let r = s.post("/v1/responses", &big);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"].is_string());
    assert!(s.wait_idle());
    assert_eq!(s.metric("wazn_kv_blocks_used"), 0.0);
}
