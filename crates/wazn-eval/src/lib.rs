//! wazn's evaluation tools, clients of the engine's batching: perplexity and KL
//! divergence against a base (llama-perplexity's method and base file format), and
//! multiple-choice scoring by log-likelihood (lm-evaluation-harness's method), and the
//! safety probe: refusals by domain and over-refusal, judged by keywords or by a judge
//! model's log-probabilities, with Wilson intervals and exact McNemar tests ([`probe`]).

pub mod binomial;
pub mod logits_file;
pub mod multiple_choice;
mod parallel;
pub mod perplexity;
pub mod probe;
pub mod statistics;
pub mod task;

use std::path::PathBuf;

pub use multiple_choice::{evaluate, EvalOptions, EvalReport};
pub use perplexity::{perplexity, BaseMode, ChunkDone, PerplexityOptions, PerplexityReport};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Engine(#[from] wazn_engine::EngineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    BadBase { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}
