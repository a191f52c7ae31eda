use std::path::PathBuf;

use wazn_formats::FormatError;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("unsupported architecture '{0}' (wazn runs: {supported})", supported = crate::SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture(String),
    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },
    #[error("invalid hyper-parameter: {0}")]
    BadHyperParameter(String),
    #[error("tensor '{name}' is missing")]
    MissingTensor { name: String },
    #[error("tensor '{name}' has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        actual: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor '{name}' has type {dtype}, which wazn cannot compute with yet")]
    UnsupportedDType { name: String, dtype: String },
    #[error("tensor {0}")]
    BadTensor(String),
    /// A problem found in a file of a model folder (config or tensor), with its path.
    #[error("{path}: {source}", path = .path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },
    #[error("{path}: {reason}", path = .path.display())]
    Config { path: PathBuf, reason: String },
    #[error("this model does not hand back its hidden states, so it cannot embed")]
    NoHiddenStates,
    #[error("token id {token} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    #[error("sequence {seq_id}: position {pos} does not follow the {cached} cached positions")]
    PositionGap {
        seq_id: u32,
        pos: usize,
        cached: usize,
    },
    #[error("sequence {seq_id} needs {needed} positions but the context holds {n_ctx}")]
    ContextFull {
        seq_id: u32,
        needed: usize,
        n_ctx: usize,
    },
}
