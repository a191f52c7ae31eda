//! The one error type of this crate. Each message is one line that names what is wrong and
//! where (the type name, the tensor, the file), so the command line can print it as it is.

use std::path::PathBuf;

use wazn_formats::{FormatError, GgmlType};

/// Everything that can stop a quantization.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error(transparent)]
    Format(#[from] FormatError),

    #[error(
        "unknown quantization type {name:?}; wazn writes {known} (or their llama_ftype numbers)"
    )]
    UnknownType { name: String, known: String },

    #[error("quantization type {name} is one of llama-quantize's that wazn does not write yet")]
    TypeNotWritten { name: String },

    #[error(
        "tensor {tensor:?} is already quantized ({from}); requantizing is disabled: pass \
         --allow-requantize to dequantize it to f32 first (quality suffers)"
    )]
    Requantize { tensor: String, from: GgmlType },

    #[error("tensor {tensor:?}: {reason}")]
    BadTensor { tensor: String, reason: String },

    #[error(
        "no fallback type is defined for {ggml_type} when a row does not split into its blocks"
    )]
    NoFallback { ggml_type: GgmlType },

    #[error("tensor {tensor:?}: wazn cannot read {ggml_type} tensors")]
    UnreadableType { tensor: String, ggml_type: GgmlType },

    #[error("tensor {tensor:?}: wazn cannot quantize to {ggml_type} yet")]
    NoQuantizer { tensor: String, ggml_type: GgmlType },

    #[error("tensor {tensor:?}: quantized data validation failed ({to}): {reason}")]
    InvalidData {
        tensor: String,
        to: GgmlType,
        reason: String,
    },

    #[error("input and output are the same file: {path}", path = .path.display())]
    SameFile { path: PathBuf },

    // The causes below are part of the message, not `source()`s, so that a caller that
    // prints an error's chain prints them once.
    #[error("cannot write {path}: {error}", path = .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{path}: {error}", path = .path.display())]
    Output { path: PathBuf, error: FormatError },

    #[error("cannot start {n_threads} threads: {error}")]
    Threads {
        n_threads: usize,
        error: std::io::Error,
    },
}
