//! Reading weight files for wazn.
//!
//! GGUF (versions 2 and 3): [`GgufFile::open`] maps a file and parses its header — metadata
//! ([`Metadata`], typed getters) and tensor infos ([`TensorInfo`]) — and hands out tensors as
//! zero-copy byte views, still in their ggml encoding ([`GgmlType`]). [`GgufHeader::parse`]
//! does the same from a byte slice. [`GgufWriter`] writes small GGUF files (for tests and
//! tools).
//!
//! A malformed or hostile file is an error ([`FormatError`]), never a panic, and no length
//! read from a file is trusted before it is checked against the bytes that remain.

mod error;
mod ggml_type;
mod gguf;
mod metadata;
mod reader;
mod writer;

pub use error::FormatError;
pub use ggml_type::GgmlType;
pub use gguf::{
    GgufFile, GgufHeader, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC,
    MAX_ARRAY_DEPTH, MAX_DIMS,
};
pub use metadata::{MetaValue, Metadata, ValueType};
pub use writer::GgufWriter;
