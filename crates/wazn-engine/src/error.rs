use wazn_formats::FormatError;
use wazn_models::ModelError;
use wazn_text::TextError;

use crate::sampler::SamplerError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("cannot start {n_threads} threads: {source}")]
    Threads {
        n_threads: usize,
        source: std::io::Error,
    },
    #[error("the prompt is {n_prompt} tokens but the context holds {n_ctx}; use a larger --ctx-size or a shorter prompt")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("the prompt needs {n_blocks} KV cache blocks but the cache has {max_blocks}; use a larger --kv-blocks")]
    CacheTooSmall { n_blocks: usize, max_blocks: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the step that ran this request failed: {0}")]
    StepFailed(String),
    #[error("invalid option: {0}")]
    InvalidOption(String),
}
