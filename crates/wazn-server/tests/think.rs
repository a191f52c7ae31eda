//! A model that reasons in `<think>` blocks (Qwen3 and the models trained like it) behind
//! the chat API: the reasoning goes to `reasoning_content`, the rest to `content`, whole
//! and streamed alike, whether the model opens the block itself or the chat template
//! opened it in the prompt. A scripted stand-in writes a fixed reply over a small
//! byte-level vocabulary that has `<think>` and `</think>` as tokens.

mod common;

use common::{scripted, TestServer};
use serde_json::{json, Value};

/// A server whose template ends the prompt with `prompt_end` after the assistant's
/// header, and whose model then writes `reply`.
fn start(prompt_end: &str, reply: &str) -> TestServer {
    let source = format!(
        "{{% for m in messages %}}<|im_start|>{{{{ m.role }}}}\n{{{{ m.content }}}}<|im_end|>\n\
         {{% endfor %}}{{% if add_generation_prompt %}}<|im_start|>assistant\n{prompt_end}{{% endif %}}"
    );
    scripted::start(&source, reply).0
}

/// The message of a whole answer and the streamed deltas put together.
fn both_ways(server: &TestServer) -> (Value, Value) {
    let body = json!({ "messages": [{ "role": "user", "content": "2 + 2?" }] });
    let whole = server.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let message = whole.json()["choices"][0]["message"].clone();
    let streamed = server.post_streamed("/v1/chat/completions", &body);
    let (chunks, done) = streamed.sse();
    assert!(done);
    let mut merged = json!({ "content": null, "reasoning_content": null });
    for chunk in &chunks {
        let delta = &chunk["choices"][0]["delta"];
        for key in ["content", "reasoning_content"] {
            if let Some(text) = delta[key].as_str() {
                let old = merged[key].as_str().unwrap_or_default().to_string();
                merged[key] = json!(old + text);
            }
        }
    }
    (message, merged)
}

#[test]
fn a_think_block_the_model_writes_is_reasoning_content() {
    let server = start("", "<think>\nTwo and two.\n</think>\n\nIt is 4. é");
    let (message, streamed) = both_ways(&server);
    assert_eq!(
        message,
        json!({
            "role": "assistant",
            "content": "\n\nIt is 4. é",
            "reasoning_content": "\nTwo and two.\n",
        })
    );
    assert_eq!(streamed["content"], message["content"]);
    assert_eq!(streamed["reasoning_content"], message["reasoning_content"]);
}

#[test]
fn a_think_block_the_template_opens_ends_at_the_closing_tag() {
    let server = start("<think>\n", "Two and two.</think>It is 4.");
    let (message, streamed) = both_ways(&server);
    assert_eq!(message["reasoning_content"], "Two and two.");
    assert_eq!(message["content"], "It is 4.");
    assert_eq!(streamed["content"], message["content"]);
    assert_eq!(streamed["reasoning_content"], message["reasoning_content"]);
}

#[test]
fn thinking_turned_off_by_the_template_leaves_all_content() {
    let server = start("<think>\n\n</think>\n\n", "It is 4.");
    let (message, streamed) = both_ways(&server);
    assert_eq!(message["content"], "It is 4.");
    assert_eq!(message["reasoning_content"], Value::Null);
    assert_eq!(streamed["content"], "It is 4.");
    assert_eq!(streamed["reasoning_content"], Value::Null);
}
