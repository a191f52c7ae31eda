//! The content blocks of a Messages answer, built from the reply's pieces as they come: the
//! events of the stream (`content_block_start`, `content_block_delta`, `content_block_stop`),
//! and the same blocks whole. A whole answer is read through the same builder as a streamed one,
//! so that the two cannot disagree.
//!
//! One block is open at a time; a piece of another kind closes it and opens the next. Thinking
//! blocks carry a `signature`, which Anthropic uses to check that reasoning sent back is its
//! own; wazn signs nothing, so the signature is the empty string (sent as a `signature_delta`
//! before the block stops, where clients expect it), and thinking sent back is never checked.
//!
//! A call becomes a `tool_use` block once its arguments are complete (the next piece that is
//! not a call, or the end), and only when they are a JSON object, as `input` must be: its
//! `input_json_delta` is then the arguments whole, exactly as the model wrote them. A call
//! whose arguments are no JSON object (cut short by `max_tokens`, or written wrong where no
//! grammar held the model) is not offered as a call, since a client would run it with input the
//! model did not give; it is kept as a text block of its own, the function's name, a space and
//! the arguments as written, so that nothing the model wrote is lost.

use serde_json::{json, Map, Value};
use wazn_text::harmony::ReplyDelta;

/// A block of the answer.
#[derive(Debug)]
enum Block {
    Text(String),
    Thinking(String),
    ToolUse {
        id: String,
        name: String,
        input: Map<String, Value>,
    },
}

impl Block {
    fn to_json(&self) -> Value {
        match self {
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::Thinking(thinking) => {
                json!({"type": "thinking", "thinking": thinking, "signature": ""})
            }
            Block::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

/// Which kind of text block is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextKind {
    Text,
    Thinking,
}

/// A call whose arguments may still be coming.
#[derive(Debug)]
struct PendingCall {
    index: usize,
    name: String,
    arguments: String,
}

/// The answer's blocks as they are built. Each method returns the stream events it completes;
/// an event's `type` is its SSE event name.
#[derive(Debug)]
pub struct ContentBlocks {
    /// `toolu_…` ids are this, then the call's place among the answer's tool uses.
    tool_id_prefix: String,
    blocks: Vec<Block>,
    /// The last block is open for more text of this kind.
    open: Option<TextKind>,
    calls: Vec<PendingCall>,
}

impl ContentBlocks {
    /// `tool_id_prefix` makes the answer's `tool_use` ids (e.g. `toolu_<message>`).
    pub fn new(tool_id_prefix: String) -> ContentBlocks {
        ContentBlocks {
            tool_id_prefix,
            blocks: Vec::new(),
            open: None,
            calls: Vec::new(),
        }
    }

    /// Adds one piece of the reply.
    pub fn push(&mut self, delta: ReplyDelta) -> Vec<Value> {
        match delta {
            ReplyDelta::Reasoning(text) => {
                let mut events = self.flush_calls();
                events.extend(self.append(TextKind::Thinking, &text));
                events
            }
            ReplyDelta::Content(text) => {
                let mut events = self.flush_calls();
                events.extend(self.append(TextKind::Text, &text));
                events
            }
            ReplyDelta::ToolCallStart { index, name } => {
                self.calls.push(PendingCall {
                    index,
                    name,
                    arguments: String::new(),
                });
                Vec::new()
            }
            ReplyDelta::ToolCallArguments { index, arguments } => {
                match self.calls.iter_mut().rev().find(|c| c.index == index) {
                    Some(call) => call.arguments.push_str(&arguments),
                    // Arguments of a call that never started: kept, and shown as text since
                    // there is no name to call.
                    None => self.calls.push(PendingCall {
                        index,
                        name: String::new(),
                        arguments,
                    }),
                }
                Vec::new()
            }
        }
    }

    /// Closes what is open at the end of the answer.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut events = self.flush_calls();
        events.extend(self.close());
        events
    }

    /// Whether the answer holds a `tool_use` block.
    pub fn has_tool_use(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. }))
    }

    /// The answer's `content`.
    pub fn to_json(&self) -> Value {
        self.blocks.iter().map(Block::to_json).collect()
    }

    /// More text of `kind`: into the open block when it is of that kind, else a new block.
    fn append(&mut self, kind: TextKind, text: &str) -> Vec<Value> {
        let mut events = Vec::new();
        if text.is_empty() {
            return events;
        }
        if self.open != Some(kind) {
            events.extend(self.close());
            let block = match kind {
                TextKind::Text => Block::Text(String::new()),
                TextKind::Thinking => Block::Thinking(String::new()),
            };
            events.push(self.start(&block));
            self.blocks.push(block);
            self.open = Some(kind);
        }
        let index = self.blocks.len().saturating_sub(1);
        let delta = match self.blocks.last_mut() {
            Some(Block::Text(whole)) => {
                whole.push_str(text);
                json!({"type": "text_delta", "text": text})
            }
            Some(Block::Thinking(whole)) => {
                whole.push_str(text);
                json!({"type": "thinking_delta", "thinking": text})
            }
            // The open block is always a text block: `open` is only set right after one starts.
            _ => return events,
        };
        events.push(block_delta(index, delta));
        events
    }

    /// Stops the open block; a thinking block gets its (empty) signature first.
    fn close(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        let Some(kind) = self.open.take() else {
            return events;
        };
        let index = self.blocks.len().saturating_sub(1);
        if kind == TextKind::Thinking {
            events.push(block_delta(
                index,
                json!({"type": "signature_delta", "signature": ""}),
            ));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
        events
    }

    /// The calls whose arguments are complete, each a block of its own.
    fn flush_calls(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        for call in std::mem::take(&mut self.calls) {
            events.extend(self.close());
            let input = serde_json::from_str::<Value>(&call.arguments).ok();
            let (block, delta) = match input {
                Some(Value::Object(input)) if !call.name.is_empty() => {
                    let n_uses = self
                        .blocks
                        .iter()
                        .filter(|b| matches!(b, Block::ToolUse { .. }))
                        .count();
                    let block = Block::ToolUse {
                        id: format!("{}_{n_uses}", self.tool_id_prefix),
                        name: call.name,
                        input,
                    };
                    let delta = json!({"type": "input_json_delta", "partial_json": call.arguments});
                    (block, delta)
                }
                _ => {
                    let text = if call.name.is_empty() {
                        call.arguments
                    } else {
                        format!("{} {}", call.name, call.arguments)
                    };
                    let delta = json!({"type": "text_delta", "text": text});
                    (Block::Text(text), delta)
                }
            };
            let index = self.blocks.len();
            events.push(self.start(&block));
            events.push(block_delta(index, delta));
            events.push(json!({"type": "content_block_stop", "index": index}));
            self.blocks.push(block);
        }
        events
    }

    /// `content_block_start` of `block` as the next block, empty: its content follows in
    /// deltas.
    fn start(&self, block: &Block) -> Value {
        let empty = match block {
            Block::Text(_) => Block::Text(String::new()),
            Block::Thinking(_) => Block::Thinking(String::new()),
            Block::ToolUse { id, name, .. } => Block::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: Map::new(),
            },
        };
        json!({
            "type": "content_block_start",
            "index": self.blocks.len(),
            "content_block": empty.to_json(),
        })
    }
}

fn block_delta(index: usize, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocks a client puts together from `events`, as the Messages SDKs do.
    fn reassemble(events: &[Value]) -> Value {
        let mut blocks: Vec<Value> = Vec::new();
        let mut partial: Vec<String> = Vec::new();
        for event in events {
            let index = event["index"].as_u64().unwrap() as usize;
            match event["type"].as_str().unwrap() {
                "content_block_start" => {
                    assert_eq!(index, blocks.len());
                    blocks.push(event["content_block"].clone());
                    partial.push(String::new());
                }
                "content_block_delta" => {
                    let delta = &event["delta"];
                    let block = &mut blocks[index];
                    match delta["type"].as_str().unwrap() {
                        "text_delta" => {
                            let text = block["text"].as_str().unwrap().to_string();
                            block["text"] = json!(text + delta["text"].as_str().unwrap());
                        }
                        "thinking_delta" => {
                            let text = block["thinking"].as_str().unwrap().to_string();
                            block["thinking"] = json!(text + delta["thinking"].as_str().unwrap());
                        }
                        "signature_delta" => block["signature"] = delta["signature"].clone(),
                        "input_json_delta" => {
                            partial[index].push_str(delta["partial_json"].as_str().unwrap())
                        }
                        other => panic!("delta {other}"),
                    }
                }
                "content_block_stop" => {
                    if blocks[index]["type"] == "tool_use" {
                        blocks[index]["input"] = serde_json::from_str(&partial[index]).unwrap();
                    }
                }
                other => panic!("event {other}"),
            }
        }
        Value::Array(blocks)
    }

    fn build(deltas: Vec<ReplyDelta>) -> (Vec<Value>, ContentBlocks) {
        let mut blocks = ContentBlocks::new("toolu_x".into());
        let mut events = Vec::new();
        for delta in deltas {
            events.extend(blocks.push(delta));
        }
        events.extend(blocks.finish());
        (events, blocks)
    }

    #[test]
    fn reasoning_text_and_a_call_are_three_blocks_streamed_as_whole() {
        let (events, blocks) = build(vec![
            ReplyDelta::Reasoning("Two ".into()),
            ReplyDelta::Reasoning("and two.".into()),
            ReplyDelta::Content("Let me ".into()),
            ReplyDelta::Content("check.".into()),
            ReplyDelta::ToolCallStart {
                index: 0,
                name: "weather".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 0,
                arguments: "{\"city\": ".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
        ]);
        let whole = json!([
            {"type": "thinking", "thinking": "Two and two.", "signature": ""},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_x_0", "name": "weather", "input": {"city": "Paris"}},
        ]);
        assert_eq!(blocks.to_json(), whole);
        assert!(blocks.has_tool_use());
        assert_eq!(reassemble(&events), whole);
        // The thinking block is signed before it stops.
        assert_eq!(events[3]["delta"]["type"], "signature_delta");
        assert_eq!(events[4], json!({"type": "content_block_stop", "index": 0}));
    }

    #[test]
    fn arguments_that_are_no_object_stay_as_text() {
        let (events, blocks) = build(vec![
            ReplyDelta::ToolCallStart {
                index: 0,
                name: "weather".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 0,
                arguments: "{\"city\": \"Par".into(),
            },
            ReplyDelta::ToolCallStart {
                index: 1,
                name: "weather".into(),
            },
            ReplyDelta::ToolCallArguments {
                index: 1,
                arguments: "\"Rome\"".into(),
            },
        ]);
        let whole = json!([
            {"type": "text", "text": "weather {\"city\": \"Par"},
            {"type": "text", "text": "weather \"Rome\""},
        ]);
        assert_eq!(blocks.to_json(), whole);
        assert!(!blocks.has_tool_use());
        assert_eq!(reassemble(&events), whole);
    }
}
