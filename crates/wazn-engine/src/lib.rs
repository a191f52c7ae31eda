//! wazn's engine: sequences, the scheduler, the sampler and the loop that drives a
//! model — schedule → execute → update — for one sequence or many. This is the
//! library API that the command line and the server use, and the engine thread that
//! lets an asynchronous front end drive it.

pub mod constraint;
mod embedding;
pub mod engine;
pub mod error;
mod profile;
pub mod prompt_scoring;
pub mod sampler;
pub mod scheduler;
pub mod sequence;
pub mod service;
mod source;
pub mod stop;
mod top_p;
mod update;

pub use constraint::{Constraint, GrammarCompiler, GrammarError, GrammarSpec, Verdict};
pub use engine::{Engine, EngineOptions, Event, GenerationStats};
pub use error::EngineError;
pub use profile::StepProfile;
pub use prompt_scoring::{PromptScoring, PromptTokenScore};
pub use sampler::{top_logprobs, Sampler, SamplerParams};
pub use scheduler::DEFAULT_PREFILL_ROWS_WITH_DECODES;
pub use sequence::{FinishReason, Request};
pub use service::{
    EngineHandle, EventSink, ServiceCounters, ServiceEvent, ServiceOptions, Submission, SubmitError,
};
pub use wazn_models::kv_cache::{KvUsage, KV_BLOCK_SIZE};
pub use wazn_models::{EmbeddingSupport, Pooling};
pub use wazn_text::ChatFormat;
