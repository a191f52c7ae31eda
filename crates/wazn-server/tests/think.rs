//! A model that reasons in `<think>` blocks (Qwen3 and the models trained like it) behind
//! the chat API: the reasoning goes to `reasoning_content`, the rest to `content`, whole
//! and streamed alike, whether the model opens the block itself or the chat template
//! opened it in the prompt. A scripted stand-in writes a fixed reply over a small
//! byte-level vocabulary that has `<think>` and `</think>` as tokens.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{Config, TestServer};
use serde_json::{json, Value};
use wazn_engine::{Engine, EngineOptions};
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, KvCache, Logits, Model, ModelError, ModelInfo, SeqId};
use wazn_text::{ChatFormat, ChatTemplate, ModelText, Tokenizer, TokenizerSpec};

const SPECIALS: [&str; 4] = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"];

/// GPT-2's printable spelling of each byte, then the special tokens.
fn tokenizer() -> Tokenizer {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut shifted = 0;
    let mut tokens: Vec<String> = (0..256u32)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(code).unwrap().to_string()
        })
        .collect();
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    // Byte tokens are normal (1); the chat markers control (3); the think tags
    // user-defined (4), as Qwen3's GGUF files mark them.
    let mut types = vec![1; 256];
    types.extend([3, 3, 4, 4]);
    Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2".into(),
        pre: Some("qwen2".into()),
        tokens,
        token_types: Some(types),
        scores: None,
        merges: Some(Vec::new()),
        bos_id: None,
        eos_id: Some(257),
        eot_id: None,
        eom_id: None,
        unk_id: None,
        add_bos: Some(false),
        add_eos: Some(false),
        add_space_prefix: None,
    })
    .unwrap()
}

/// Writes `script` after every prompt, then `<|im_end|>`; keeps each sequence's tokens.
struct ScriptedModel {
    info: ModelInfo,
    script: Vec<u32>,
    tokens: Mutex<HashMap<SeqId, (usize, Vec<u32>)>>,
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
        let n_vocab = self.info.n_vocab;
        let mut seen = self.tokens.lock().unwrap();
        let mut data = Vec::new();
        for row in &batch.rows {
            let (n_prompt, tokens) = seen.entry(row.seq_id).or_insert((0, Vec::new()));
            tokens.truncate(row.pos);
            tokens.push(row.token);
            if !row.wants_logits {
                continue;
            }
            if *n_prompt == 0 {
                *n_prompt = tokens.len();
            }
            let written = tokens.len() - *n_prompt;
            let next = self.script.get(written).copied().unwrap_or(257);
            let mut logits = vec![0.0f32; n_vocab];
            logits[next as usize] = 30.0;
            data.extend(logits);
        }
        Ok(Logits { n_vocab, data })
    }
}

/// A server whose template ends the prompt with `prompt_end` after the assistant's
/// header, and whose model then writes `reply`.
fn start(prompt_end: &str, reply: &str) -> TestServer {
    let tokenizer = tokenizer();
    let script = tokenizer.encode(reply, false, true).unwrap();
    let source = format!(
        "{{% for m in messages %}}<|im_start|>{{{{ m.role }}}}\n{{{{ m.content }}}}<|im_end|>\n\
         {{% endfor %}}{{% if add_generation_prompt %}}<|im_start|>assistant\n{prompt_end}{{% endif %}}"
    );
    let template = ChatTemplate::new(&source, "", "<|im_end|>").unwrap();
    let n_vocab = tokenizer.vocab_size();
    let model = ScriptedModel {
        info: ModelInfo {
            architecture: "qwen3".into(),
            n_vocab,
            n_ctx_train: 4096,
            n_layer: 1,
            kv_width: 1,
            weight_bytes: 0,
        },
        script,
        tokens: Mutex::new(HashMap::new()),
    };
    let text = ModelText {
        tokenizer,
        chat_format: Some(ChatFormat::Template(Arc::new(template))),
    };
    let options = EngineOptions {
        n_ctx: 1024,
        n_threads: 1,
        ..EngineOptions::default()
    };
    let engine = Engine::with_model(Box::new(model), text, options).expect("engine");
    let config = Config {
        kv_blocks: 4 * 1024 / wazn_engine::KV_BLOCK_SIZE,
        ..Config::default()
    };
    TestServer::start_with(engine, "thinker", config)
}

/// The message of a whole answer and the streamed deltas put together.
fn both_ways(server: &TestServer) -> (Value, Value) {
    let body = json!({ "messages": [{ "role": "user", "content": "2 + 2?" }] });
    let whole = server.post("/v1/chat/completions", &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    let message = whole.json()["choices"][0]["message"].clone();
    let mut streamed_body = body;
    streamed_body["stream"] = json!(true);
    let streamed = server.post("/v1/chat/completions", &streamed_body);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
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
