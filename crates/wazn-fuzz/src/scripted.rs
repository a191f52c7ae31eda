//! A stand-in for a ChatML model (Qwen-like) over a byte-level vocabulary with the chat
//! markers, `<think>` / `</think>` and `<tool_call>` / `</tool_call>` as tokens: greedily
//! sampled, it writes a fixed reply after every prompt, then `<|im_end|>`. It lets the server's
//! routes run end to end in a fuzz target, at thousands of requests a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wazn_engine::{Engine, EngineOptions, KV_BLOCK_SIZE};
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, KvCache, Logits, Model, ModelError, ModelInfo, SeqId};
use wazn_text::{ChatFormat, ChatTemplate, ModelText, Tokenizer, TokenizerSpec};

const SPECIALS: [&str; 6] = [
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
];

/// The id of `<|im_end|>`: the second special after the 256 bytes.
const IM_END: u32 = 257;

const N_CTX: usize = 2048;

/// An engine whose model writes `reply` after any prompt, with chat template `template`.
pub fn engine(template: &str, reply: &str) -> Engine {
    let tokenizer = tokenizer();
    let script = tokenizer
        .encode(reply, false, true)
        .expect("the reply encodes");
    let template = ChatTemplate::new(template, "", "<|im_end|>").expect("the template compiles");
    let model = ScriptedModel {
        info: ModelInfo {
            architecture: "qwen3".into(),
            n_vocab: tokenizer.vocab_size(),
            n_ctx_train: 4096,
            n_layer: 1,
            kv_width: 1,
            weight_bytes: 0,
        },
        script,
        reply_starts: Mutex::new(HashMap::new()),
    };
    let text = ModelText {
        tokenizer,
        chat_format: Some(ChatFormat::Template(Arc::new(template))),
    };
    let options = EngineOptions {
        n_ctx: N_CTX,
        n_threads: 1,
        ..EngineOptions::default()
    };
    let mut engine = Engine::with_model(Box::new(model), text, options).expect("an engine");
    engine
        .set_kv_blocks(4 * N_CTX / KV_BLOCK_SIZE)
        .expect("KV blocks");
    engine
}

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
            char::from_u32(code).map_or_else(String::new, String::from)
        })
        .collect();
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    // Byte tokens are normal (1); the chat markers control (3); the think and tool-call tags
    // user-defined (4), as Qwen3's GGUF files mark them.
    let mut types = vec![1; 256];
    types.extend([3, 3, 4, 4, 4, 4]);
    Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2".into(),
        pre: Some("qwen2".into()),
        tokens,
        token_types: Some(types),
        merges: Some(Vec::new()),
        eos_id: Some(IM_END),
        add_bos: Some(false),
        add_eos: Some(false),
        ..TokenizerSpec::default()
    })
    .expect("the byte vocabulary builds")
}

/// Writes `script` after every prompt, then `<|im_end|>`.
struct ScriptedModel {
    info: ModelInfo,
    script: Vec<u32>,
    /// Where each sequence's reply begins: the position after its prompt. Forgotten wholesale
    /// past [`MAX_REMEMBERED`] sequences, so that hours of fuzzing stay in bounded memory; a
    /// sequence forgotten while it runs starts its reply over, which is still a reply.
    reply_starts: Mutex<HashMap<SeqId, usize>>,
}

const MAX_REMEMBERED: usize = 4096;

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
        let mut starts = self.reply_starts.lock().unwrap_or_else(|p| p.into_inner());
        if starts.len() > MAX_REMEMBERED {
            starts.clear();
        }
        let mut data = Vec::new();
        for row in batch.rows.iter().filter(|row| row.wants_logits) {
            let start = *starts.entry(row.seq_id).or_insert(row.pos + 1);
            let written = (row.pos + 1).saturating_sub(start);
            let next = self.script.get(written).copied().unwrap_or(IM_END);
            let mut logits = vec![0.0f32; n_vocab];
            logits[next as usize] = 30.0;
            data.extend(logits);
        }
        Ok(Logits { n_vocab, data })
    }
}
