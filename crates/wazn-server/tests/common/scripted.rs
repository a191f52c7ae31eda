//! A scripted stand-in for a ChatML model (Qwen-like) over a small byte-level vocabulary that
//! has the chat markers, `<think>` / `</think>`, `<tool_call>` / `</tool_call>` and
//! StarCoder's fill-in-the-middle tokens as tokens:
//! greedily sampled, it writes a fixed reply after every prompt, then `<|im_end|>`, and keeps
//! the prompt it was given.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;
use wazn_engine::{Engine, EngineOptions};
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, KvCache, Logits, Model, ModelError, ModelInfo, SeqId};
use wazn_server::HttpLimits;
use wazn_text::{ChatFormat, ChatTemplate, ModelText, Tokenizer, TokenizerSpec};

use super::{Config, TestServer};

const SPECIALS: [&str; 9] = [
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
];

/// The id of `<|im_end|>`: the first special after the 256 bytes, then one.
const IM_END: u32 = 257;

/// GPT-2's printable spelling of each byte, then the special tokens.
pub fn tokenizer() -> Tokenizer {
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
    // Byte tokens are normal (1); the chat markers control (3); the think and tool-call
    // tags user-defined (4), as Qwen3's GGUF files mark them; the FIM tokens control.
    let mut types = vec![1; 256];
    types.extend([3, 3, 4, 4, 4, 4, 3, 3, 3]);
    Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2".into(),
        pre: Some("qwen2".into()),
        tokens,
        token_types: Some(types),
        scores: None,
        merges: Some(Vec::new()),
        bos_id: None,
        eos_id: Some(IM_END),
        eot_id: None,
        eom_id: None,
        unk_id: None,
        add_bos: Some(false),
        add_eos: Some(false),
        add_space_prefix: None,
        ..TokenizerSpec::default()
    })
    .unwrap()
}

/// Every sequence's prompt length and tokens, as the model saw them.
pub type Seen = Arc<Mutex<HashMap<SeqId, (usize, Vec<u32>)>>>;

/// Holds the model's first forward pass until the test opens it: what a server does while a
/// long prompt is being read.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    /// Waits until the gate is open, or two minutes at most so that a failing test ends.
    fn wait(&self) {
        let (open, changed) = &*self.0;
        let guard = open.lock().unwrap();
        let _ = changed
            .wait_timeout_while(guard, Duration::from_secs(120), |open| !*open)
            .unwrap();
    }
}

/// Writes `script` after every prompt, then `<|im_end|>`.
struct ScriptedModel {
    info: ModelInfo,
    script: Vec<u32>,
    tokens: Seen,
    gate: Option<Gate>,
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
        if let Some(gate) = &self.gate {
            gate.wait();
        }
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
            let next = self.script.get(written).copied().unwrap_or(IM_END);
            let mut logits = vec![0.0f32; n_vocab];
            logits[next as usize] = 30.0;
            data.extend(logits);
        }
        Ok(Logits { n_vocab, data })
    }
}

/// A server with chat template `source` whose model writes `reply`; what the model saw.
pub fn start(source: &str, reply: &str) -> (TestServer, Seen) {
    start_limited(source, reply, HttpLimits::default())
}

/// [`start`] under the given limits on clients.
pub fn start_limited(source: &str, reply: &str, limits: HttpLimits) -> (TestServer, Seen) {
    start_configured(
        source,
        reply,
        Config {
            limits,
            ..Config::default()
        },
    )
}

/// [`start`] with the given server configuration (its KV blocks are the scripted model's).
pub fn start_configured(source: &str, reply: &str, config: Config) -> (TestServer, Seen) {
    start_scripted(source, reply, config, None)
}

/// [`start`] with a model that computes nothing until `gate` is opened.
pub fn start_gated(source: &str, reply: &str, gate: Gate) -> (TestServer, Seen) {
    start_scripted(source, reply, Config::default(), Some(gate))
}

fn start_scripted(
    source: &str,
    reply: &str,
    config: Config,
    gate: Option<Gate>,
) -> (TestServer, Seen) {
    let tokenizer = tokenizer();
    let script = tokenizer.encode(reply, false, true).unwrap();
    let template = ChatTemplate::new(source, "", "<|im_end|>").unwrap();
    let n_vocab = tokenizer.vocab_size();
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
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
        tokens: Arc::clone(&seen),
        gate,
    };
    let text = ModelText {
        tokenizer,
        chat_format: Some(ChatFormat::Template(Arc::new(template))),
    };
    let options = EngineOptions {
        n_ctx: 2048,
        n_threads: 1,
        ..EngineOptions::default()
    };
    let engine = Engine::with_model(Box::new(model), text, options).expect("engine");
    let config = Config {
        kv_blocks: 4 * 2048 / wazn_engine::KV_BLOCK_SIZE,
        ..config
    };
    (TestServer::start_with(engine, "scripted", config), seen)
}

/// Qwen3's own chat template (checked against transformers in wazn-text's tests).
pub fn qwen3_template() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-text/tests/data/tool_chat_templates.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let qwen3 = fixture["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "qwen3")
        .expect("the Qwen3 template");
    qwen3["template"].as_str().unwrap().to_string()
}
