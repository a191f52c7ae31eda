//! A harmony model (gpt-oss) behind the HTTP API, end to end. No gpt-oss model small enough
//! for a test speaks o200k_harmony, so a scripted stand-in takes its place: it records the
//! prompt it is given and, greedily sampled, writes a fixed assistant turn (rendered by the
//! harmony renderer). The checks: the prompt of a chat request is openai-harmony's rendering
//! (crates/wazn-text/tests/data/harmony_cases.json), the engine does not stop at `<|end|>`
//! between messages, and the answer maps analysis, final and tool calls onto OpenAI's fields,
//! whole and streamed alike.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{Config, TestServer};
use serde_json::{json, Value};
use wazn_engine::{Engine, EngineOptions};
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, KvCache, Logits, Model, ModelError, ModelInfo, SeqId};
use wazn_text::harmony::{HarmonyRenderer, Message, RenderConfig, Role};
use wazn_text::{o200k_ids, ModelText, Tokenizer};

const N_VOCAB: usize = 201_088;

/// Every sequence's tokens, as the model saw them.
type Seen = Arc<Mutex<HashMap<SeqId, Vec<u32>>>>;

/// Writes `script` after every prompt, then `<|endoftext|>`; keeps every sequence's tokens.
struct ScriptedModel {
    info: ModelInfo,
    script: Vec<u32>,
    seen: Seen,
    /// Each sequence's prompt length: its tokens when it first asks for logits.
    prompt_lens: Mutex<HashMap<SeqId, usize>>,
}

impl Model for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(
        &self,
        batch: &Batch,
        _kv: &mut KvCache,
        _pool: &ThreadPool,
    ) -> Result<Logits, ModelError> {
        let mut seen = self.seen.lock().unwrap();
        let mut prompt_lens = self.prompt_lens.lock().unwrap();
        let mut data = Vec::new();
        for row in &batch.rows {
            let tokens = seen.entry(row.seq_id).or_default();
            tokens.truncate(row.pos);
            tokens.push(row.token);
            if !row.wants_logits {
                continue;
            }
            let n_prompt = *prompt_lens.entry(row.seq_id).or_insert(tokens.len());
            let written = tokens.len() - n_prompt;
            let next = self
                .script
                .get(written)
                .copied()
                .unwrap_or(o200k_ids::ENDOFTEXT);
            let mut row_logits = vec![0.0f32; N_VOCAB];
            row_logits[next as usize] = 30.0;
            data.extend(row_logits);
        }
        Ok(Logits {
            n_vocab: N_VOCAB,
            data,
        })
    }
}

fn tokenizer() -> Tokenizer {
    Tokenizer::o200k_harmony().unwrap()
}

/// The ids a model writes for `messages` after `<|start|>assistant`.
fn assistant_turn(messages: &[Message]) -> Vec<u32> {
    let tok = tokenizer();
    let config = RenderConfig {
        auto_drop_analysis: false,
    };
    let mut ids = HarmonyRenderer::new(&tok)
        .unwrap()
        .render_for_training(messages, config)
        .unwrap();
    ids.drain(..1 + tok.encode("assistant", false, false).unwrap().len());
    ids
}

fn start(script: Vec<u32>) -> (TestServer, Seen) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let model = ScriptedModel {
        info: ModelInfo {
            architecture: "gpt-oss".into(),
            n_vocab: N_VOCAB,
            n_ctx_train: 4096,
            n_layer: 1,
            kv_width: 1,
            weight_bytes: 0,
        },
        script,
        seen: Arc::clone(&seen),
        prompt_lens: Mutex::new(HashMap::new()),
    };
    let options = EngineOptions {
        n_ctx: 1024,
        n_threads: 1,
        ..EngineOptions::default()
    };
    let engine = Engine::with_model(Box::new(model), ModelText::harmony().unwrap(), options)
        .expect("engine");
    let config = Config {
        kv_blocks: 4 * 1024 / wazn_engine::KV_BLOCK_SIZE,
        ..Config::default()
    };
    (
        TestServer::start_with(engine, "gpt-oss-scripted", config),
        seen,
    )
}

fn fixture_completion(name: &str) -> Vec<u32> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-text/tests/data/harmony_cases.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = fixture["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    serde_json::from_value(case["completion"].clone()).unwrap()
}

/// Puts streamed chat deltas together as the OpenAI SDKs do.
fn merge_stream(chunks: &[Value]) -> (Value, Vec<Value>) {
    let mut message = json!({ "content": null, "reasoning_content": null, "tool_calls": [] });
    let mut finishes = Vec::new();
    for chunk in chunks {
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if !choice["finish_reason"].is_null() {
            finishes.push(choice["finish_reason"].clone());
        }
        let delta = &choice["delta"];
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
    (message, finishes)
}

#[test]
fn reasoning_and_answer_whole_and_streamed() {
    let script = assistant_turn(&[
        Message::text(Role::Assistant, "User asks 2+2. Answer 4. 🤔").with_channel("analysis"),
        Message::text(Role::Assistant, "2 + 2 = **4**. 你好").with_channel("final"),
    ]);
    let (server, seen) = start(script);
    let body = json!({ "messages": [{ "role": "user", "content": "What is 2 + 2?" }] });
    let whole = server.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    let choice = &whole["choices"][0];
    assert_eq!(
        choice["message"],
        json!({
            "role": "assistant",
            "content": "2 + 2 = **4**. 你好",
            "reasoning_content": "User asks 2+2. Answer 4. 🤔",
        })
    );
    assert_eq!(choice["finish_reason"], "stop");
    // The prompt is openai-harmony's rendering of the same question.
    let prompt = fixture_completion("simple");
    let recorded = seen.lock().unwrap().values().next().cloned().unwrap();
    assert_eq!(recorded[..prompt.len()], prompt[..]);
    assert_eq!(whole["usage"]["prompt_tokens"], json!(prompt.len()));

    let streamed = server.post_streamed("/v1/chat/completions", &body);
    let (chunks, done) = streamed.sse();
    assert!(done);
    let (message, finishes) = merge_stream(&chunks);
    assert_eq!(message["content"], choice["message"]["content"]);
    assert_eq!(
        message["reasoning_content"],
        choice["message"]["reasoning_content"]
    );
    assert_eq!(message["tool_calls"], json!([]));
    assert_eq!(finishes, vec![json!("stop")]);
}

#[test]
fn a_tool_call_whole_and_streamed() {
    let script = assistant_turn(&[
        Message::text(Role::Assistant, "Need the weather.").with_channel("analysis"),
        Message::text(Role::Assistant, r#"{"location": "San Francisco"}"#)
            .with_channel("commentary")
            .with_recipient("functions.get_current_weather")
            .with_content_type("<|constrain|>json"),
    ]);
    let (server, _) = start(script);
    let body = json!({
        "messages": [{ "role": "user", "content": "What is the weather like in SF?" }],
        "tools": [{ "type": "function", "function": {
            "name": "get_current_weather",
            "description": "Gets the current weather in the provided location.",
            "parameters": { "type": "object", "properties": { "location": { "type": "string" } } },
        }}],
        "reasoning_effort": "low",
    });
    let whole = server.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    let choice = &whole["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["reasoning_content"], "Need the weather.");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_current_weather");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"location": "San Francisco"}"#
    );
    assert!(calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(choice["finish_reason"], "tool_calls");

    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let (chunks, done) = server.post("/v1/chat/completions", &streamed_body).sse();
    assert!(done);
    let (streamed, finishes) = merge_stream(&chunks);
    assert_eq!(streamed["reasoning_content"], message["reasoning_content"]);
    // The opening chunk carries `content: ""`, as for every chat stream.
    assert_eq!(streamed["content"].as_str().unwrap_or_default(), "");
    let streamed_calls = streamed["tool_calls"].as_array().unwrap();
    assert_eq!(streamed_calls.len(), 1);
    assert_eq!(streamed_calls[0]["function"], calls[0]["function"]);
    assert_eq!(streamed_calls[0]["type"], "function");
    assert!(streamed_calls[0]["id"].is_string());
    assert_eq!(finishes, vec![json!("tool_calls")]);

    // The raw completion route takes the prompt as it is, harmony or not.
    let raw = server.post(
        "/v1/completions",
        &json!({ "prompt": "<|start|>user<|message|>Hi<|end|><|start|>assistant", "max_tokens": 4 }),
    );
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(
        raw.json()["choices"][0]["text"],
        "<|channel|>analysis<|message|>Need"
    );
}

#[test]
fn forced_calls_and_json_answers_are_held_to_their_grammars() {
    let call = Message::text(Role::Assistant, r#"{"location": "San Francisco"}"#)
        .with_channel("commentary")
        .with_recipient("functions.get_current_weather")
        .with_content_type("<|constrain|>json");
    let analysis = Message::text(Role::Assistant, "Need the weather.").with_channel("analysis");
    let (server, _) = start(assistant_turn(&[analysis.clone(), call]));
    let tools = json!([{ "type": "function", "function": {
        "name": "get_current_weather",
        "parameters": { "type": "object", "properties": { "location": { "type": "string" } },
            "required": ["location"] },
    }}]);
    for choice in [
        json!("required"),
        json!({"type": "function", "function": {"name": "get_current_weather"}}),
    ] {
        let body = json!({
            "messages": [{ "role": "user", "content": "What is the weather like in SF?" }],
            "tools": tools, "tool_choice": choice, "reasoning_effort": "low",
        });
        let whole = server.post("/v1/chat/completions", &body);
        assert_eq!(whole.status, 200, "{}", whole.text());
        let whole = whole.json();
        let calls = whole["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(calls.len(), 1, "{whole}");
        assert_eq!(calls[0]["function"]["name"], "get_current_weather");
        assert_eq!(
            calls[0]["function"]["arguments"],
            r#"{"location": "San Francisco"}"#
        );
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            whole["choices"][0]["message"]["reasoning_content"],
            "Need the weather."
        );
    }

    let answer = Message::text(Role::Assistant, r#"{"sky": "clear"}"#).with_channel("final");
    let (server, _) = start(assistant_turn(&[analysis, answer]));
    let body = json!({
        "messages": [{ "role": "user", "content": "How is the sky?" }],
        "response_format": {"type": "json_schema", "json_schema": {"name": "sky", "schema":
            {"type": "object", "properties": {"sky": {"enum": ["clear", "cloudy"]}}, "required": ["sky"]}}},
    });
    let whole = server.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let message = &whole.json()["choices"][0]["message"];
    assert_eq!(message["content"], r#"{"sky": "clear"}"#);
    assert_eq!(message["reasoning_content"], "Need the weather.");
    let regex = json!({
        "messages": [{ "role": "user", "content": "How is the sky?" }],
        "structured_outputs": {"regex": "[a-z]+"},
    });
    assert_eq!(server.post("/v1/chat/completions", &regex).status, 400);
}
