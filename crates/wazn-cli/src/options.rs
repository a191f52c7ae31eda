//! Flags shared by the commands that run a model. Names follow llama.cpp's, so that
//! habits carry over.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use wazn_engine::{Engine, EngineOptions, SamplerParams};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;
use wazn_text::{ChatMessage, Tokenizer};

use crate::model_path;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from wazn's cache).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Context size in tokens (0 = the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Threads to compute with (default: one per core).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Most tokens computed in one step (prompts are processed in chunks of this size).
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Multiply with f32 activations instead of 8-bit ones: slower, and closest to
    /// reference implementations that dequantize the weights.
    #[arg(long = "f32-activations")]
    pub f32_activations: bool,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Engine> {
        let path = model_path::resolve(self.model.clone())?;
        let options = EngineOptions {
            n_ctx: self.ctx_size,
            n_threads: self
                .threads
                .unwrap_or_else(wazn_engine::engine::default_threads),
            n_batch: self.batch_size,
            model: ModelOptions {
                activations: if self.f32_activations {
                    Activations::F32
                } else {
                    Activations::Quantized
                },
            },
        };
        Engine::load(&path, options).with_context(|| format!("cannot load {}", path.display()))
    }
}

#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 picks the most likely token (greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to p (1 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the most likely one (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Seed of the random choices; the same seed gives the same run (default: random).
    #[arg(long = "seed")]
    pub seed: Option<u64>,
    /// Penalize repeating the last --repeat-last-n tokens (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every token already present (0 = off).
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it appeared (0 = off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    pub frequency_penalty: f32,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.unwrap_or_else(random_seed),
            logit_bias: Vec::new(),
        }
    }
}

/// A seed from the clock and the process id, for runs that did not ask for one.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 32)
}

/// `-n` as a token count: negative means "until the context is full".
pub fn max_tokens(n_predict: i64) -> usize {
    usize::try_from(n_predict).unwrap_or(usize::MAX)
}

/// Token ids of a chat rendered by the model's template. The template writes its
/// own special tokens, so they are parsed; BOS is added only where the model wants
/// one and the template did not write it.
pub fn tokenize_chat(engine: &Engine, messages: &[ChatMessage]) -> Result<Vec<u32>> {
    let template = engine
        .chat_template()
        .context("this model has no chat template (tokenizer.chat_template)")?;
    let text = template.render(messages, true)?;
    tokenize_rendered(engine.tokenizer(), &text)
}

fn tokenize_rendered(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode(text, false, true)?;
    if let (true, Some(bos)) = (tokenizer.adds_bos(), tokenizer.bos_id()) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    Ok(ids)
}
