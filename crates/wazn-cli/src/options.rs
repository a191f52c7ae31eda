//! Flags shared by the commands that run a model. Names follow llama.cpp's, so that
//! habits carry over.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use wazn_engine::{Engine, EngineOptions, SamplerParams};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;
use wazn_text::harmony::ReasoningEffort;
use wazn_text::ChatMessage;

use crate::model_path;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file or Hugging Face model folder (default: SmolLM2-135M-Instruct Q4_1
    /// from wazn's cache).
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
        crate::load_bar::load_engine(&path, options)
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

/// How long a harmony model (gpt-oss) reasons before it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Reasoning {
    Low,
    Medium,
    High,
}

/// The reasoning effort of a chat: `--reasoning`, which only harmony models take (the others
/// have no such setting, and silently ignoring it would mislead), else harmony's default,
/// medium.
pub fn reasoning_effort(engine: &Engine, reasoning: Option<Reasoning>) -> Result<ReasoningEffort> {
    let harmony = engine.chat_format().is_some_and(|f| f.is_harmony());
    Ok(match reasoning {
        Some(_) if !harmony => {
            bail!("--reasoning applies to harmony models (gpt-oss) only; this model has no reasoning setting")
        }
        Some(Reasoning::Low) => ReasoningEffort::Low,
        Some(Reasoning::High) => ReasoningEffort::High,
        Some(Reasoning::Medium) | None => ReasoningEffort::Medium,
    })
}

/// Token ids of a chat in the model's chat format (template or harmony), ready for the
/// assistant's answer.
pub fn tokenize_chat(
    engine: &Engine,
    messages: &[ChatMessage],
    effort: ReasoningEffort,
) -> Result<Vec<u32>> {
    let format = engine
        .chat_format()
        .context("this model has no chat template (tokenizer.chat_template)")?;
    Ok(format.render_chat(engine.tokenizer(), messages, effort)?)
}
