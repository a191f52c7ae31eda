//! safetensors files: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [start, end]}, "__metadata__": {..}}`, then the data,
//! with offsets relative to the first byte after the header.
//!
//! Every number in the header is checked before it is used: the header length against the file
//! size, each tensor's byte count (shape × dtype size) against its offsets, its offsets against
//! the data section, its start against the dtype's alignment, and the tensors against each other
//! (no overlap). Tensors are zero-copy views into the mapped file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use crate::FormatError;

/// Bytes of the header-length prefix.
const LEN_PREFIX_BYTES: u64 = 8;
/// Larger headers are refused before reading them (the safetensors crate uses the same bound).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element types as the safetensors header spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SafeDtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    /// Unsigned power-of-two exponents (MX block scales).
    F8E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl SafeDtype {
    /// The dtype a header string names; sub-byte types (F4, F6_*) are not supported.
    pub fn from_name(name: &str) -> Option<SafeDtype> {
        Some(match name {
            "BOOL" => SafeDtype::Bool,
            "U8" => SafeDtype::U8,
            "I8" => SafeDtype::I8,
            "F8_E5M2" => SafeDtype::F8E5M2,
            "F8_E4M3" => SafeDtype::F8E4M3,
            "F8_E8M0" => SafeDtype::F8E8M0,
            "I16" => SafeDtype::I16,
            "U16" => SafeDtype::U16,
            "F16" => SafeDtype::F16,
            "BF16" => SafeDtype::BF16,
            "I32" => SafeDtype::I32,
            "U32" => SafeDtype::U32,
            "F32" => SafeDtype::F32,
            "F64" => SafeDtype::F64,
            "I64" => SafeDtype::I64,
            "U64" => SafeDtype::U64,
            _ => return None,
        })
    }

    /// The header spelling.
    pub fn name(self) -> &'static str {
        match self {
            SafeDtype::Bool => "BOOL",
            SafeDtype::U8 => "U8",
            SafeDtype::I8 => "I8",
            SafeDtype::F8E5M2 => "F8_E5M2",
            SafeDtype::F8E4M3 => "F8_E4M3",
            SafeDtype::F8E8M0 => "F8_E8M0",
            SafeDtype::I16 => "I16",
            SafeDtype::U16 => "U16",
            SafeDtype::F16 => "F16",
            SafeDtype::BF16 => "BF16",
            SafeDtype::I32 => "I32",
            SafeDtype::U32 => "U32",
            SafeDtype::F32 => "F32",
            SafeDtype::F64 => "F64",
            SafeDtype::I64 => "I64",
            SafeDtype::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            SafeDtype::Bool
            | SafeDtype::U8
            | SafeDtype::I8
            | SafeDtype::F8E5M2
            | SafeDtype::F8E4M3
            | SafeDtype::F8E8M0 => 1,
            SafeDtype::I16 | SafeDtype::U16 | SafeDtype::F16 | SafeDtype::BF16 => 2,
            SafeDtype::I32 | SafeDtype::U32 | SafeDtype::F32 => 4,
            SafeDtype::F64 | SafeDtype::I64 | SafeDtype::U64 => 8,
        }
    }
}

impl std::fmt::Display for SafeDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a safetensors header, checked against the file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeTensorInfo {
    pub name: String,
    pub dtype: SafeDtype,
    /// PyTorch order: the last dimension is contiguous.
    pub shape: Vec<u64>,
    /// Byte range in the whole file (header included), so `&file[start..end]` is the data.
    pub file_start: u64,
    pub file_end: u64,
}

impl SafeTensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// The parsed header of a safetensors file.
#[derive(Clone, Debug, Default)]
pub struct SafeHeader {
    /// Sorted by data offset.
    pub tensors: Vec<SafeTensorInfo>,
    /// The optional `__metadata__` string map.
    pub metadata: HashMap<String, String>,
}

fn bad(reason: impl Into<String>) -> FormatError {
    FormatError::BadSafetensorsHeader {
        reason: reason.into(),
    }
}

impl SafeHeader {
    /// Parses and checks the header of a whole safetensors file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<SafeHeader, FormatError> {
        let file_size = bytes.len() as u64;
        let Some(prefix) = bytes.get(..LEN_PREFIX_BYTES as usize) else {
            return Err(bad(format!(
                "the file has {file_size} bytes, fewer than the 8-byte header length"
            )));
        };
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(prefix);
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || header_len > file_size - LEN_PREFIX_BYTES {
            return Err(bad(format!(
                "header length {header_len} runs past the end of the file ({file_size} bytes)"
            )));
        }
        let data_start = LEN_PREFIX_BYTES + header_len;
        let json = &bytes[LEN_PREFIX_BYTES as usize..data_start as usize];
        let json = std::str::from_utf8(json).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let value: Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(entries) = value else {
            return Err(bad("the header is not a JSON object"));
        };
        let data_len = file_size - data_start;

        let mut header = SafeHeader::default();
        for (name, entry) in &entries {
            if name == "__metadata__" {
                header.metadata = parse_metadata(entry)?;
                continue;
            }
            let info = parse_tensor(name, entry, data_start, data_len, file_size)?;
            header.tensors.push(info);
        }
        header.tensors.sort_by_key(|t| (t.file_start, t.file_end));
        for pair in header.tensors.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            // Empty tensors occupy no bytes and cannot overlap anything.
            if next.file_start < prev.file_end && next.file_start < next.file_end {
                return Err(FormatError::OverlappingTensors {
                    tensor: next.name.clone(),
                    other: prev.name.clone(),
                    start: next.file_start - data_start,
                    end: next.file_end - data_start,
                });
            }
        }
        Ok(header)
    }
}

fn parse_metadata(entry: &Value) -> Result<HashMap<String, String>, FormatError> {
    let Value::Object(map) = entry else {
        return Err(bad("__metadata__ is not an object of strings"));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(bad(format!("__metadata__ value of {k:?} is not a string"))),
        })
        .collect()
}

fn parse_tensor(
    name: &str,
    entry: &Value,
    data_start: u64,
    data_len: u64,
    file_size: u64,
) -> Result<SafeTensorInfo, FormatError> {
    let field = |key: &str| {
        entry
            .get(key)
            .ok_or_else(|| bad(format!("tensor {name:?} has no {key:?}")))
    };
    let dtype_name = field("dtype")?
        .as_str()
        .ok_or_else(|| bad(format!("tensor {name:?}: dtype is not a string")))?;
    let dtype = SafeDtype::from_name(dtype_name).ok_or_else(|| FormatError::UnknownDtype {
        tensor: name.to_string(),
        dtype: dtype_name.to_string(),
    })?;
    let shape = u64_list(field("shape")?)
        .ok_or_else(|| bad(format!("tensor {name:?}: shape is not a list of integers")))?;
    let offsets = u64_list(field("data_offsets")?)
        .filter(|o| o.len() == 2)
        .ok_or_else(|| bad(format!("tensor {name:?}: data_offsets is not [start, end]")))?;
    let (start, end) = (offsets[0], offsets[1]);
    if end < start {
        return Err(bad(format!(
            "tensor {name:?}: data_offsets [{start}, {end}] end before they start"
        )));
    }
    let overflow = || FormatError::SizeOverflow {
        tensor: name.to_string(),
        dims: shape.clone(),
    };
    let n_bytes = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size_bytes()))
        .ok_or_else(overflow)?;
    if n_bytes != end - start {
        return Err(FormatError::TensorSizeMismatch {
            tensor: name.to_string(),
            dtype: dtype.name(),
            shape,
            expected: n_bytes,
            found: end - start,
        });
    }
    if end > data_len {
        return Err(FormatError::TensorOutOfBounds {
            tensor: name.to_string(),
            start: data_start + start,
            end: data_start + end,
            file_size,
        });
    }
    let file_start = data_start + start;
    // Views are read as arrays of the dtype straight from the page-aligned map.
    if !file_start.is_multiple_of(dtype.size_bytes()) {
        return Err(FormatError::MisalignedTensor {
            tensor: name.to_string(),
            offset: file_start,
            alignment: dtype.size_bytes(),
        });
    }
    Ok(SafeTensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        file_start,
        file_end: data_start + end,
    })
}

fn u64_list(value: &Value) -> Option<Vec<u64>> {
    value.as_array()?.iter().map(Value::as_u64).collect()
}

/// A tensor's dtype, shape and bytes (little-endian, row-major), borrowed from the mapped file.
#[derive(Clone, Copy, Debug)]
pub struct SafeTensorView<'a> {
    pub name: &'a str,
    pub dtype: SafeDtype,
    /// PyTorch order: the last dimension is contiguous.
    pub shape: &'a [u64],
    pub data: &'a [u8],
}

/// A safetensors file mapped into memory, with its checked header.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Option<Mmap>,
    header: SafeHeader,
    by_name: HashMap<String, usize>,
}

impl SafetensorsFile {
    /// Maps and parses the file at `path`. Errors name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile, FormatError> {
        let path = path.as_ref();
        let io_error = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        // An empty file cannot be mapped on every platform; it fails the header check instead.
        let mmap = if size == 0 {
            None
        } else {
            // SAFETY: read-only private map; as for GGUF files, the file must not be truncated
            // or rewritten while it is open.
            Some(unsafe { Mmap::map(&file) }.map_err(io_error)?)
        };
        let bytes = mmap.as_deref().unwrap_or(&[]);
        let header = SafeHeader::parse(bytes).map_err(|source| FormatError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            header,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &SafeHeader {
        &self.header
    }

    pub fn info(&self, name: &str) -> Option<&SafeTensorInfo> {
        self.by_name.get(name).map(|&i| &self.header.tensors[i])
    }

    /// The tensor called `name`, if the file holds it.
    pub fn tensor(&self, name: &str) -> Option<SafeTensorView<'_>> {
        let info = self.info(name)?;
        let bytes = self.mmap.as_deref().unwrap_or(&[]);
        // The header check put every tensor's range inside the file.
        let data = bytes.get(info.file_start as usize..info.file_end as usize)?;
        Some(SafeTensorView {
            name: &info.name,
            dtype: info.dtype,
            shape: &info.shape,
            data,
        })
    }

    /// Drops the pages of tensor `name` from memory (see `GgufFile::release_range`): for a
    /// tensor copied at load and never read here again. Nothing happens for an unknown
    /// name or where the OS declines.
    pub fn release_tensor(&self, name: &str) {
        let (Some(info), Some(mmap)) = (self.info(name), self.mmap.as_ref()) else {
            return;
        };
        let (start, end) = (info.file_start as usize, info.file_end as usize);
        if start > end || end > mmap.len() {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: the mapping is read-only and file-backed, so dropping its pages
            // loses nothing: a later read faults the same bytes back in from the file.
            let _ = unsafe {
                mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// Tensor names in data-offset order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.header.tensors.iter().map(|t| t.name.as_str())
    }
}
