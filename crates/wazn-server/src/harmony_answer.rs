//! The answer of a harmony model (gpt-oss) in OpenAI's chat shape, as vLLM gives it: the
//! `analysis` channel as `reasoning_content`, the `final` channel (and preambles) as `content`,
//! and function calls as `tool_calls` with `finish_reason` "tool_calls". Streamed, each piece
//! is one chunk: `delta.reasoning_content`, `delta.content`, or `delta.tool_calls` (the first
//! chunk of a call carries its id, type and name, the next ones more of its arguments).
//! A template model's reply read from its text (`text_reply`: `<think>` reasoning, function
//! calls in its family's format) comes in the same pieces and is answered the same way.

use serde_json::{json, Value};
use wazn_text::harmony::{AssistantReply, ReplyDelta};

/// The id of tool call `index` of choice `choice` of the answer `answer_id`.
pub fn tool_call_id(answer_id: &str, choice: usize, index: usize) -> String {
    format!("call_{answer_id}_{choice}_{index}")
}

/// `message` of a whole answer. `content` is null when the reply only calls tools.
pub fn message_json(reply: &AssistantReply, ids: impl Fn(usize) -> String) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if reply.content.is_empty() && !reply.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(reply.content)
        },
        "reasoning_content": if reply.reasoning.is_empty() {
            Value::Null
        } else {
            json!(reply.reasoning)
        },
    });
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                json!({
                    "id": ids(i),
                    "type": "function",
                    "function": { "name": call.name, "arguments": call.arguments },
                })
            })
            .collect();
    }
    message
}

/// `delta` of the chunk that carries one piece.
pub fn delta_json(delta: &ReplyDelta, ids: impl Fn(usize) -> String) -> Value {
    match delta {
        ReplyDelta::Reasoning(text) => json!({ "reasoning_content": text }),
        ReplyDelta::Content(text) => json!({ "content": text }),
        ReplyDelta::ToolCallStart { index, name } => json!({
            "tool_calls": [{
                "index": index,
                "id": ids(*index),
                "type": "function",
                "function": { "name": name, "arguments": "" },
            }]
        }),
        ReplyDelta::ToolCallArguments { index, arguments } => json!({
            "tool_calls": [{ "index": index, "function": { "arguments": arguments } }]
        }),
    }
}

/// "tool_calls" when a reply that stopped by itself called tools.
pub fn finish_reason(reply: &AssistantReply, reason: Value) -> Value {
    if reason == json!("stop") && !reply.tool_calls.is_empty() {
        json!("tool_calls")
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wazn_text::harmony::{HarmonyRenderer, Message, RenderConfig, ReplyAssembler, Role};
    use wazn_text::{o200k_ids, Tokenizer};

    /// A client's way of putting streamed deltas together (as the OpenAI SDKs do).
    fn merge(message: &mut Value, delta: &Value) {
        for key in ["content", "reasoning_content"] {
            if let Some(text) = delta[key].as_str() {
                let old = message[key].as_str().unwrap_or_default().to_string();
                message[key] = json!(old + text);
            }
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            let calls = message["tool_calls"].as_array_mut().unwrap();
            if calls.len() <= index {
                calls.push(json!({ "function": { "arguments": "" } }));
            }
            let slot = &mut calls[index];
            for key in ["id", "type"] {
                if !call[key].is_null() {
                    slot[key] = call[key].clone();
                }
            }
            if let Some(name) = call["function"]["name"].as_str() {
                slot["function"]["name"] = json!(name);
            }
            let args = slot["function"]["arguments"].as_str().unwrap().to_string();
            let more = call["function"]["arguments"].as_str().unwrap_or_default();
            slot["function"]["arguments"] = json!(args + more);
        }
    }

    fn generated(tok: &Tokenizer, messages: &[Message]) -> Vec<u32> {
        let renderer = HarmonyRenderer::new(tok).unwrap();
        let config = RenderConfig {
            auto_drop_analysis: false,
        };
        let mut ids = renderer.render_for_training(messages, config).unwrap();
        // The prompt ends with `<|start|>assistant`; the model writes the rest.
        let n_prefix = 1 + tok.encode("assistant", false, false).unwrap().len();
        assert_eq!(ids[0], o200k_ids::START);
        ids.drain(..n_prefix);
        ids
    }

    #[test]
    fn streamed_deltas_add_up_to_the_whole_message() {
        let tok = Tokenizer::o200k_harmony().unwrap();
        let ids_of = |i: usize| tool_call_id("chatcmpl-7", 0, i);
        let analysis = Message::text(Role::Assistant, "User wants weather. Call it 🌦.")
            .with_channel("analysis");
        let call = |name: &str, args: &str| {
            Message::text(Role::Assistant, args)
                .with_channel("commentary")
                .with_recipient(format!("functions.{name}"))
                .with_content_type("<|constrain|>json")
        };
        let cases: Vec<(Vec<Message>, Value)> = vec![
            (
                vec![
                    analysis.clone(),
                    Message::text(Role::Assistant, "It is **sunny**, 20 °C.").with_channel("final"),
                ],
                json!({
                    "role": "assistant",
                    "content": "It is **sunny**, 20 °C.",
                    "reasoning_content": "User wants weather. Call it 🌦.",
                }),
            ),
            (
                vec![
                    analysis.clone(),
                    call("get_weather", r#"{"location": "東京"}"#),
                ],
                json!({
                    "role": "assistant",
                    "content": null,
                    "reasoning_content": "User wants weather. Call it 🌦.",
                    "tool_calls": [{
                        "id": "call_chatcmpl-7_0_0",
                        "type": "function",
                        "function": { "name": "get_weather", "arguments": r#"{"location": "東京"}"# },
                    }],
                }),
            ),
        ];
        for (messages, want) in cases {
            let ids = generated(&tok, &messages);
            let mut assembler = ReplyAssembler::new();
            let mut streamed = json!({ "role": "assistant", "content": "", "tool_calls": [] });
            let mut deltas = Vec::new();
            for &id in &ids {
                deltas.extend(assembler.push(&tok, id));
            }
            deltas.extend(assembler.finish());
            for delta in &deltas {
                merge(&mut streamed, &delta_json(delta, ids_of));
            }
            let whole = message_json(assembler.reply(), ids_of);
            assert_eq!(whole, want);
            // Streamed, the same fields (a client starts from content "" and no calls).
            assert_eq!(streamed["reasoning_content"], want["reasoning_content"]);
            assert_eq!(
                streamed["content"].as_str().unwrap_or_default(),
                want["content"].as_str().unwrap_or_default()
            );
            assert_eq!(
                streamed["tool_calls"],
                want.get("tool_calls").cloned().unwrap_or(json!([]))
            );
            let reason = finish_reason(assembler.reply(), json!("stop"));
            let wants_calls = want.get("tool_calls").is_some();
            assert_eq!(
                reason,
                json!(if wants_calls { "tool_calls" } else { "stop" })
            );
        }
    }
}
