//! A small GGUF writer, for tests and tools that need tiny model files.
//!
//! It writes what the reader reads: little-endian v3 (or v2), metadata in the order given,
//! tensor infos with sequential offsets, and every tensor padded to the alignment
//! (`general.alignment` if set, else 32), the same layout gguf-py writes.

use std::collections::HashSet;
use std::path::Path;

use crate::error::FormatError;
use crate::ggml_type::GgmlType;
use crate::gguf::{
    tensor_n_bytes, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS,
};
use crate::meta_array::MetaArray;
use crate::metadata::MetaValue;

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory. Problems (duplicates, wrong data sizes, arrays nested too
/// deep) are reported by [`GgufWriter::to_bytes`].
#[derive(Clone, Debug)]
#[must_use]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// The version number written (2 and 3 share one layout).
    pub fn version(mut self, version: u32) -> GgufWriter {
        self.version = version;
        self
    }

    /// Appends a metadata entry. An empty array is written as an array of UINT8.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> GgufWriter {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Appends a tensor: `dims` is ne[] (innermost first), `data` its raw bytes, which must be
    /// exactly the size the type and dims imply.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> GgufWriter {
        self.tensors.push(PendingTensor {
            name: name.into(),
            ggml_type,
            dims: dims.to_vec(),
            data: data.into(),
        });
        self
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let specs: Vec<TensorSpec> = self
            .tensors
            .iter()
            .map(|t| TensorSpec::new(t.name.clone(), t.ggml_type, &t.dims))
            .collect();
        let header = encode_header(self.version, &self.metadata, &specs)?;
        for (t, &n_bytes) in self.tensors.iter().zip(&header.data_sizes) {
            if n_bytes != t.data.len() as u64 {
                return Err(unwritable(format!(
                    "tensor {:?} is {} {:?} which takes {n_bytes} bytes, but {} were given",
                    t.name,
                    t.ggml_type,
                    t.dims,
                    t.data.len()
                )));
            }
        }
        let mut out = header.bytes;
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, header.alignment);
        }
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), FormatError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// One tensor of a header being written: its name, type and ne[] (innermost first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub ggml_type: GgmlType,
    pub dims: Vec<u64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, ggml_type: GgmlType, dims: &[u64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            ggml_type,
            dims: dims.to_vec(),
        }
    }
}

/// A header ready to be written, and what the data after it must look like.
#[derive(Clone, Debug)]
pub(crate) struct EncodedHeader {
    /// Everything up to the data section, padded to the alignment.
    pub bytes: Vec<u8>,
    pub alignment: u64,
    /// Bytes of data of each tensor, in order (without padding).
    pub data_sizes: Vec<u64>,
}

/// Encodes magic, version, metadata and tensor infos (offsets sequential, each tensor
/// padded to the alignment), and pads to the data section. Every size is checked as the
/// reader checks it.
pub(crate) fn encode_header(
    version: u32,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorSpec],
) -> Result<EncodedHeader, FormatError> {
    if !matches!(version, 2 | 3) {
        return Err(unwritable(format!(
            "version {version} (only 2 and 3 exist)"
        )));
    }
    let alignment = declared_alignment(metadata)?;
    let mut out = Vec::new();
    out.extend_from_slice(&GGUF_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    put_u64(&mut out, tensors.len() as u64);
    put_u64(&mut out, metadata.len() as u64);

    let mut keys = HashSet::new();
    for (key, value) in metadata {
        if !keys.insert(key.as_str()) {
            return Err(FormatError::DuplicateKey { key: key.clone() });
        }
        put_string(&mut out, key);
        put_u32(&mut out, value.value_type().id());
        put_value(&mut out, key, value)?;
    }

    let mut names = HashSet::new();
    let mut data_sizes = Vec::with_capacity(tensors.len());
    let mut relative_offset = 0u64;
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(FormatError::DuplicateTensor {
                name: t.name.clone(),
            });
        }
        if t.dims.len() > MAX_DIMS as usize {
            return Err(FormatError::TooManyDims {
                tensor: t.name.clone(),
                n_dims: u32::try_from(t.dims.len()).unwrap_or(u32::MAX),
                max: MAX_DIMS,
            });
        }
        let n_bytes = tensor_n_bytes(&t.name, t.ggml_type, &t.dims)?;
        put_string(&mut out, &t.name);
        put_u32(&mut out, t.dims.len() as u32);
        for &d in &t.dims {
            put_u64(&mut out, d);
        }
        put_u32(&mut out, t.ggml_type.id());
        put_u64(&mut out, relative_offset);
        relative_offset = n_bytes
            .checked_next_multiple_of(alignment)
            .and_then(|padded| relative_offset.checked_add(padded))
            .ok_or_else(|| unwritable(format!("tensor {:?} overflows u64", t.name)))?;
        data_sizes.push(n_bytes);
    }
    pad_to(&mut out, alignment);
    Ok(EncodedHeader {
        bytes: out,
        alignment,
        data_sizes,
    })
}

/// The alignment the file will declare, checked as the reader checks it.
fn declared_alignment(metadata: &[(String, MetaValue)]) -> Result<u64, FormatError> {
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        Some(a) => Err(FormatError::BadAlignment { alignment: a }),
        None => Err(unwritable(format!(
            "{ALIGNMENT_KEY} must be a non-negative integer, not {}",
            value.type_name()
        ))),
    }
}

pub(crate) fn unwritable(reason: String) -> FormatError {
    FormatError::Unwritable { reason }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    // alignment is a power of two no larger than u64, and out.len() fits in usize.
    let rem = (out.len() as u64) % alignment;
    if rem != 0 {
        out.resize(out.len() + (alignment - rem) as usize, 0);
    }
}

/// Writes a value without its type id (the caller wrote it).
fn put_value(out: &mut Vec<u8>, key: &str, value: &MetaValue) -> Result<(), FormatError> {
    match value {
        MetaValue::U8(v) => out.push(*v),
        MetaValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Array(items) => put_array(out, key, items, 0)?,
    }
    Ok(())
}

/// Writes an array: element type, count, elements; `depth` counts the arrays around it.
fn put_array(
    out: &mut Vec<u8>,
    key: &str,
    items: &MetaArray,
    depth: usize,
) -> Result<(), FormatError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(FormatError::NestingTooDeep {
            key: key.to_string(),
            max_depth: MAX_ARRAY_DEPTH,
        });
    }
    put_u32(out, items.element_type().id());
    put_u64(out, items.len() as u64);
    match items {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::U16(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::I16(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::U32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::I32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::F32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => v.iter().for_each(|s| put_string(out, s)),
        MetaArray::U64(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::I64(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::F64(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        MetaArray::Array(v) => {
            for inner in v {
                put_array(out, key, inner, depth + 1)?;
            }
        }
    }
    Ok(())
}
