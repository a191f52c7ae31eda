//! Anthropic's Messages API as a client sees it: a stream's events, the message they make up
//! (checked in order as the SDKs put it together), and the parts that differ between requests.

use serde_json::{json, Value};

use super::{Response, TestServer};

/// The events of a Messages stream: each `event:` name with its `data:` JSON.
pub fn events(response: &Response) -> Vec<(String, Value)> {
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
pub fn reassemble(events: &[(String, Value)]) -> Value {
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
pub fn whole_and_streamed(server: &TestServer, body: &Value) -> (Value, Value) {
    let whole = server.post("/v1/messages", body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let streamed = server.post_streamed("/v1/messages", body);
    assert!(streamed
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    (whole.json(), reassemble(&events(&streamed)))
}

/// `message` without the parts that differ from one request to the next (ids).
pub fn without_ids(message: &Value) -> Value {
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
pub fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
}
