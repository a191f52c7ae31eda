//! wazn's engine: sequences, the scheduler, the sampler and the loop that drives a
//! model — schedule → execute → update — for one sequence or many. This is the
//! library API that the command line (and later the server) use.

pub mod engine;
pub mod error;
pub mod sampler;
pub mod scheduler;
pub mod sequence;
pub mod stop;

pub use engine::{Engine, EngineOptions, Event, GenerationStats};
pub use error::EngineError;
pub use sampler::{top_logprobs, Sampler, SamplerParams};
pub use sequence::{FinishReason, Request};
