//! The one error type of this crate. Every message is a single line that names what is wrong
//! and where (key, tensor name, byte offset), so a user can tell a corrupt download from an
//! unsupported file without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a weight file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened, sized or mapped.
    #[error("cannot read {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A parse error, with the file it came from.
    #[error("{path}: {source}", path = .path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<FormatError>,
    },

    #[error("the file is empty (0 bytes), not a GGUF file")]
    EmptyFile,

    #[error("not a GGUF file: the first bytes are {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic { found: Vec<u8> },

    #[error(
        "big-endian GGUF file (version {version} stored byte-swapped) is not supported; \
         use a little-endian conversion"
    )]
    BigEndian { version: u32 },

    #[error("unsupported GGUF version {version}: only versions 2 and 3 can be read")]
    UnsupportedVersion { version: u32 },

    /// The bytes ran out before a field was complete (this also covers absurd string lengths).
    #[error(
        "truncated file: {what} at byte offset {offset} needs {needed} bytes \
         but only {available} remain"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// A count of items (metadata entries, tensors, array elements) that the remaining bytes
    /// could not hold even at the smallest encoding of each item.
    #[error(
        "{what} at byte offset {offset} declares {count} items, more than the {available} \
         bytes left could hold"
    )]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        available: u64,
    },

    #[error("{what} at byte offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("metadata key {key:?} has unknown value type {type_id} (at byte offset {offset})")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },

    #[error("metadata key {key:?} nests arrays deeper than {max_depth} levels")]
    NestingTooDeep { key: String, max_depth: usize },

    #[error("metadata key {key:?} appears more than once")]
    DuplicateKey { key: String },

    #[error("tensor {name:?} appears more than once")]
    DuplicateTensor { name: String },

    #[error("tensor {tensor:?} has unknown ggml type id {type_id}")]
    UnknownGgmlType { tensor: String, type_id: u32 },

    #[error("tensor {tensor:?} has {n_dims} dimensions; at most {max} are allowed")]
    TooManyDims {
        tensor: String,
        n_dims: u32,
        max: u32,
    },

    #[error("tensor {tensor:?} has dimensions {dims:?} whose element or byte count overflows")]
    SizeOverflow { tensor: String, dims: Vec<u64> },

    #[error(
        "tensor {tensor:?}: ne[0] = {ne0} is not a multiple of the {ggml_type} block size \
         {block_size}"
    )]
    RowNotBlockAligned {
        tensor: String,
        ggml_type: &'static str,
        ne0: u64,
        block_size: u64,
    },

    #[error("general.alignment = {alignment} is invalid: it must be a non-zero power of two")]
    BadAlignment { alignment: u64 },

    #[error(
        "tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "tensor {tensor:?}: data at byte offsets {start}..{end} runs past the end of the file \
         ({file_size} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_size: u64,
    },

    #[error("tensor {tensor:?}: data offset {offset} overflows when added to the data section start {data_offset}")]
    OffsetOverflow {
        tensor: String,
        offset: u64,
        data_offset: u64,
    },

    #[error("no tensor named {name:?}")]
    TensorNotFound { name: String },

    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },

    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("metadata key {key:?}: value {value} does not fit in {target}")]
    ValueOutOfRange {
        key: String,
        value: String,
        target: &'static str,
    },

    #[error("invalid safetensors header: {reason}")]
    BadSafetensorsHeader { reason: String },

    #[error("tensor {tensor:?} has unknown safetensors dtype {dtype:?}")]
    UnknownDtype { tensor: String, dtype: String },

    #[error("tensor {tensor:?}: data at byte offsets {start}..{end} overlaps tensor {other:?}")]
    OverlappingTensors {
        tensor: String,
        other: String,
        start: u64,
        end: u64,
    },

    #[error(
        "tensor {tensor:?}: shape {shape:?} of {dtype} needs {expected} bytes but its data \
         offsets span {found}"
    )]
    TensorSizeMismatch {
        tensor: String,
        dtype: &'static str,
        shape: Vec<u64>,
        expected: u64,
        found: u64,
    },

    #[error("{path} is missing ({what})", path = .path.display())]
    MissingFile { path: PathBuf, what: String },

    #[error("{path} is not valid JSON: {source}", path = .path.display())]
    InvalidJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: {reason}", path = .path.display())]
    BadFolderFile { path: PathBuf, reason: String },

    #[error("{index}: tensor {tensor:?} is mapped to {shard}, which does not hold it", index = .index.display())]
    TensorNotInShard {
        index: PathBuf,
        shard: String,
        tensor: String,
    },

    /// The output of a streaming writer refused bytes.
    #[error("cannot write GGUF data: {source}")]
    WriteFailed {
        #[source]
        source: std::io::Error,
    },

    /// The writer was asked for something GGUF cannot express.
    #[error("cannot write GGUF: {reason}")]
    Unwritable { reason: String },
}

impl FormatError {
    /// The error without the file name wrapped around it by [`crate::GgufFile::open`].
    pub fn without_path(&self) -> &FormatError {
        match self {
            FormatError::InFile { source, .. } => source.without_path(),
            other => other,
        }
    }
}
