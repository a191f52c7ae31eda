//! The output items of a Responses API answer, built from the pieces of the reply as they come:
//! `reasoning` (its text as `reasoning_text` content), `message` (one `output_text` part) and
//! `function_call` items, a new item each time the kind of piece changes. Each piece also gives
//! the typed stream events that announce it, so a streamed answer and a whole one are built by
//! the same code and end the same.

use serde_json::{json, Value};
use wazn_text::harmony::ReplyDelta;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Reasoning,
    Message,
    /// The reply's call `index`.
    FunctionCall {
        index: usize,
    },
}

#[derive(Debug)]
struct Item {
    kind: ItemKind,
    id: String,
    /// The reasoning, the message's text, or the call's arguments.
    text: String,
    name: String,
    call_id: String,
    status: &'static str,
}

/// The items of one answer, and the events that build them.
pub struct OutputBuilder {
    response_id: String,
    items: Vec<Item>,
    /// The item that takes the next piece of its kind, while it is open.
    open: Option<usize>,
}

impl OutputBuilder {
    pub fn new(response_id: &str) -> OutputBuilder {
        OutputBuilder {
            response_id: response_id.to_string(),
            items: Vec::new(),
            open: None,
        }
    }

    /// The id a client uses to answer the reply's call `index` (`function_call_output`).
    pub fn call_id(response_id: &str, index: usize) -> String {
        format!("call_{}_{index}", response_id.trim_start_matches("resp_"))
    }

    /// Adds one piece; returns the events that announce it (without `sequence_number`).
    pub fn push(&mut self, delta: &ReplyDelta) -> Vec<Value> {
        let mut events = Vec::new();
        match delta {
            ReplyDelta::Reasoning(text) => {
                let i = self.open_item(ItemKind::Reasoning, &mut events);
                self.items[i].text.push_str(text);
                events.push(json!({
                    "type": "response.reasoning_text.delta",
                    "item_id": self.items[i].id,
                    "output_index": i,
                    "content_index": 0,
                    "delta": text,
                }));
            }
            ReplyDelta::Content(text) => {
                let i = self.open_item(ItemKind::Message, &mut events);
                self.items[i].text.push_str(text);
                events.push(json!({
                    "type": "response.output_text.delta",
                    "item_id": self.items[i].id,
                    "output_index": i,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                }));
            }
            ReplyDelta::ToolCallStart { index, name } => {
                let i = self.open_item(ItemKind::FunctionCall { index: *index }, &mut events);
                // The item was announced with its name empty when arguments came first.
                self.items[i].name = name.clone();
            }
            ReplyDelta::ToolCallArguments { index, arguments } => {
                let kind = ItemKind::FunctionCall { index: *index };
                let i = match self.items.iter().position(|item| item.kind == kind) {
                    Some(i) => i,
                    None => self.open_item(kind, &mut events),
                };
                self.items[i].text.push_str(arguments);
                events.push(json!({
                    "type": "response.function_call_arguments.delta",
                    "item_id": self.items[i].id,
                    "output_index": i,
                    "delta": arguments,
                }));
            }
        }
        events
    }

    /// Closes the last item (`incomplete` when the answer was cut short); returns its events.
    pub fn finish(&mut self, truncated: bool) -> Vec<Value> {
        let mut events = Vec::new();
        if let Some(i) = self.open.take() {
            if truncated {
                self.items[i].status = "incomplete";
            }
            self.close(i, &mut events);
        }
        events
    }

    /// Every item, as the answer's `output`.
    pub fn output(&self) -> Vec<Value> {
        self.items.iter().map(item_json).collect()
    }

    /// The item of kind `kind` that is open, or a new one (closing the one before).
    fn open_item(&mut self, kind: ItemKind, events: &mut Vec<Value>) -> usize {
        if let Some(i) = self.open {
            if self.items[i].kind == kind {
                return i;
            }
            self.close(i, events);
        }
        let i = self.items.len();
        let prefix = match kind {
            ItemKind::Reasoning => "rs",
            ItemKind::Message => "msg",
            ItemKind::FunctionCall { .. } => "fc",
        };
        let rid = self.response_id.trim_start_matches("resp_");
        let call_id = match kind {
            ItemKind::FunctionCall { index } => Self::call_id(&self.response_id, index),
            _ => String::new(),
        };
        self.items.push(Item {
            kind,
            id: format!("{prefix}_{rid}_{i}"),
            text: String::new(),
            name: String::new(),
            call_id,
            status: "in_progress",
        });
        self.open = Some(i);
        let item = &self.items[i];
        events.push(json!({
            "type": "response.output_item.added",
            "output_index": i,
            "item": item_json(item),
        }));
        match kind {
            ItemKind::Reasoning => events.push(json!({
                "type": "response.content_part.added",
                "item_id": item.id,
                "output_index": i,
                "content_index": 0,
                "part": { "type": "reasoning_text", "text": "" },
            })),
            ItemKind::Message => events.push(json!({
                "type": "response.content_part.added",
                "item_id": item.id,
                "output_index": i,
                "content_index": 0,
                "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] },
            })),
            ItemKind::FunctionCall { .. } => {}
        }
        i
    }

    fn close(&mut self, i: usize, events: &mut Vec<Value>) {
        let item = &mut self.items[i];
        if item.status == "in_progress" {
            item.status = "completed";
        }
        let item = &self.items[i];
        match item.kind {
            ItemKind::Reasoning => {
                events.push(json!({
                    "type": "response.reasoning_text.done",
                    "item_id": item.id,
                    "output_index": i,
                    "content_index": 0,
                    "text": item.text,
                }));
                events.push(json!({
                    "type": "response.content_part.done",
                    "item_id": item.id,
                    "output_index": i,
                    "content_index": 0,
                    "part": { "type": "reasoning_text", "text": item.text },
                }));
            }
            ItemKind::Message => {
                events.push(json!({
                    "type": "response.output_text.done",
                    "item_id": item.id,
                    "output_index": i,
                    "content_index": 0,
                    "text": item.text,
                    "logprobs": [],
                }));
                events.push(json!({
                    "type": "response.content_part.done",
                    "item_id": item.id,
                    "output_index": i,
                    "content_index": 0,
                    "part": output_text(&item.text),
                }));
            }
            ItemKind::FunctionCall { .. } => events.push(json!({
                "type": "response.function_call_arguments.done",
                "item_id": item.id,
                "output_index": i,
                "name": item.name,
                "arguments": item.text,
            })),
        }
        events.push(json!({
            "type": "response.output_item.done",
            "output_index": i,
            "item": item_json(item),
        }));
    }
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn item_json(item: &Item) -> Value {
    let open = item.status == "in_progress";
    match item.kind {
        ItemKind::Reasoning => json!({
            "type": "reasoning",
            "id": item.id,
            "summary": [],
            "content": if open { json!([]) } else {
                json!([{ "type": "reasoning_text", "text": item.text }])
            },
            "status": item.status,
        }),
        ItemKind::Message => json!({
            "type": "message",
            "id": item.id,
            "role": "assistant",
            "status": item.status,
            "content": if open { json!([]) } else { json!([output_text(&item.text)]) },
        }),
        ItemKind::FunctionCall { .. } => json!({
            "type": "function_call",
            "id": item.id,
            "call_id": item.call_id,
            "name": item.name,
            "arguments": if open { "" } else { item.text.as_str() },
            "status": item.status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's way of reading the stream: items from `output_item.done`.
    fn streamed_output(events: &[Value]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| e["item"].clone())
            .collect()
    }

    #[test]
    fn pieces_become_items_in_order_and_the_stream_ends_as_the_whole() {
        let deltas = [
            ReplyDelta::Reasoning("The user ".into()),
            ReplyDelta::Reasoning("wants weather.".into()),
            ReplyDelta::Content("Checking.".into()),
            ReplyDelta::ToolCallStart {
                index: 0,
                name: "get_weather".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 0,
                arguments: " \"Paris\"}".into(),
            },
            ReplyDelta::ToolCallStart {
                index: 1,
                name: "get_time".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 1,
                arguments: "{}".into(),
            },
        ];
        let mut builder = OutputBuilder::new("resp_7");
        let mut events = Vec::new();
        for delta in &deltas {
            events.extend(builder.push(delta));
        }
        events.extend(builder.finish(false));
        let output = builder.output();
        assert_eq!(streamed_output(&events), output);
        let kinds: Vec<&str> = output.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(
            kinds,
            ["reasoning", "message", "function_call", "function_call"]
        );
        assert_eq!(output[0]["content"][0]["text"], "The user wants weather.");
        assert_eq!(output[1]["content"][0]["text"], "Checking.");
        assert_eq!(output[2]["name"], "get_weather");
        assert_eq!(output[2]["arguments"], "{\"city\": \"Paris\"}");
        assert_eq!(output[2]["call_id"], "call_7_0");
        assert_eq!(output[3]["call_id"], "call_7_1");
        assert!(output.iter().all(|i| i["status"] == "completed"));
        // Every item is announced before its pieces and closed once.
        let added: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_item.added")
            .map(|e| &e["output_index"])
            .collect();
        assert_eq!(added, [&json!(0), &json!(1), &json!(2), &json!(3)]);
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(text, "Checking.");
    }

    #[test]
    fn a_cut_answer_leaves_its_last_item_incomplete() {
        let mut builder = OutputBuilder::new("resp_1");
        builder.push(&ReplyDelta::Content("Once upon".into()));
        let events = builder.finish(true);
        assert_eq!(events.last().unwrap()["item"]["status"], "incomplete");
        assert_eq!(builder.output()[0]["content"][0]["text"], "Once upon");
    }
}
