//! The one error type of this crate. Each message is one line that names what is wrong and
//! where, so the command line can print it as it is.

use std::path::PathBuf;

use wazn_formats::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error(transparent)]
    Format(#[from] FormatError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "architecture {0:?} has no fingerprint in wazn yet (supported: llama, qwen3, qwen3moe, \
         gemma3, gpt-oss, deepseek2)"
    )]
    UnsupportedArchitecture(String),

    #[error("{0}")]
    BadModel(String),

    #[error("tensor {name:?}: {reason}")]
    BadTensor { name: String, reason: String },

    #[error("tensor {name:?} is missing")]
    MissingTensor { name: String },

    #[error("{path}: not a wazn fingerprint (.wfp): {reason}")]
    BadFingerprintFile { path: PathBuf, reason: String },

    #[error("{0}")]
    Incomparable(String),
}
