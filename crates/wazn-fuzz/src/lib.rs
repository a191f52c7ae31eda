//! wazn's fuzz targets, each a function of arbitrary bytes that panics when it finds a bug.
//!
//! They live here, in the workspace, so that one body serves two runners: the cargo-fuzz
//! project in `fuzz/` (nightly, libFuzzer and AddressSanitizer) calls them for hours, and this
//! crate's `tests/replay.rs` calls them on every committed seed and corpus input on stable, in
//! the ordinary test suite. Beyond "never panics", each target checks what the code under test
//! promises (see each function).

mod chat_template;
mod formats;
mod hf_config;
mod http_bodies;
mod replies;
mod scripted;
mod tokenizer_json;

pub use chat_template::chat_template;
pub use formats::{gguf_parse, safetensors_header};
pub use hf_config::hf_config;
pub use http_bodies::http_bodies;
pub use replies::{harmony_reply, tool_calls};
pub use tokenizer_json::tokenizer_json;

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: [(&str, Target); 8] = [
    ("gguf_parse", gguf_parse),
    ("safetensors_header", safetensors_header),
    ("hf_config", hf_config),
    ("tokenizer_json", tokenizer_json),
    ("chat_template", chat_template),
    ("harmony_reply", harmony_reply),
    ("tool_calls", tool_calls),
    ("http_bodies", http_bodies),
];
