//! Reading weight files for wazn.
//!
//! GGUF (versions 2 and 3): [`GgufFile::open`] maps a file and parses its header — metadata
//! ([`Metadata`], typed getters, arrays as typed vectors in [`MetaArray`]) and tensor infos
//! ([`TensorInfo`]) — and hands out tensors as zero-copy byte views, still in their ggml
//! encoding ([`GgmlType`]). [`GgufHeader::parse`] does the same from a byte slice. [`GgufWriter`] writes small GGUF files (for tests and
//! tools) in memory; [`GgufStreamWriter`] writes a file of any size front to back, header
//! first, tensor data as it is produced.
//!
//! Hugging Face model folders: [`HfFolder::open`] reads `config.json` and maps
//! `model.safetensors` or the shards of `model.safetensors.index.json`; [`SafetensorsFile`]
//! reads one safetensors file; tensors come out as [`SafeTensorView`]s (dtype, PyTorch-order
//! shape, bytes), and MXFP4 `_blocks`/`_scales` pairs as [`Mxfp4Tensor`]s.
//!
//! A malformed or hostile file is an error ([`FormatError`]), never a panic, and no length
//! read from a file is trusted before it is checked against the bytes that remain.

mod error;
mod ggml_type;
mod gguf;
mod hf_folder;
mod meta_array;
mod metadata;
mod reader;
mod safetensors;
mod stream_writer;
mod writer;

pub mod model_cache;

pub use error::FormatError;
pub use ggml_type::GgmlType;
pub use gguf::{
    GgufFile, GgufHeader, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC,
    MAX_ARRAY_DEPTH, MAX_DIMS,
};
pub use hf_folder::{
    mxfp4_blocks_name, mxfp4_scales_name, HfFolder, Mxfp4Tensor, CONFIG_FILE,
    GENERATION_CONFIG_FILE, INDEX_FILE, MXFP4_BLOCK_BYTES, MXFP4_BLOCK_VALUES, SINGLE_FILE,
};
pub use meta_array::{MetaArray, MetaArrayIter};
pub use metadata::{MetaValue, Metadata, ValueType};
pub use safetensors::{SafeDtype, SafeHeader, SafeTensorInfo, SafeTensorView, SafetensorsFile};
pub use stream_writer::GgufStreamWriter;
pub use writer::{GgufWriter, TensorSpec};
