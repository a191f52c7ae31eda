//! GGUF (v2, v3) reader: header, metadata and tensor infos parsed from a byte slice, and a
//! memory-mapped file whose tensors are zero-copy views.
//!
//! Layout (little-endian):
//! `"GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv[] | tensor_info[] | pad | data`.
//! Every length read from the file is checked against the bytes that remain before anything
//! is allocated for it, so a hostile file costs at most a small multiple of its own size.
//!
//! The data section must start inside the file (writers pad to it even with no tensors).
//!
//! This reader is lenient where llama.cpp is strict but nothing can go wrong: tensor offsets
//! must be aligned and in bounds, but need not be sequential, and tensors may overlap (they
//! are read-only views); tensor names may be longer than ggml's 63 bytes.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::FormatError;
use crate::ggml_type::GgmlType;
use crate::meta_array::MetaArray;
use crate::metadata::{MetaValue, Metadata, ValueType};
use crate::reader::{ByteReader, ShortExt};

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but rare; this bound keeps recursion (and the stack) small.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Smallest possible metadata entry: empty key (u64 length), u32 type, 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name, u32 n_dims = 0, u32 type, u64 offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Byte offset of the tensor count field (after magic and version).
const TENSOR_COUNT_OFFSET: u64 = 8;

/// One tensor as described in the file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ne[]: innermost (contiguous) dimension first, as in the file; the reverse of a PyTorch
    /// shape. Missing trailing dimensions are 1.
    pub dims: Vec<u64>,
    /// Absolute byte offset of the first byte of data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Product of all dimensions.
    pub fn n_elements(&self) -> u64 {
        product(&self.dims)
    }

    /// Number of rows: the product of `dims[1..]` (1 for a vector).
    pub fn n_rows(&self) -> u64 {
        product(self.dims.get(1..).unwrap_or(&[]))
    }

    /// Elements per row: `dims[0]` (1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Bytes per row (ggml's nb1); 0 if the row is not a whole number of blocks, which a
    /// parsed tensor never is.
    pub fn row_bytes(&self) -> u64 {
        self.ggml_type.row_bytes(self.row_len()).unwrap_or(0)
    }
}

/// Product that cannot overflow or panic: 0 if any factor is 0, else saturating.
fn product(dims: &[u64]) -> u64 {
    if dims.contains(&0) {
        return 0;
    }
    dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
}

/// Everything in a GGUF file but the tensor data.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    /// Alignment of the data section and of every tensor in it, in bytes.
    pub alignment: u64,
    pub metadata: Metadata,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
}

impl GgufHeader {
    /// Parses the header of a whole GGUF file held in `bytes`, and checks that every tensor's
    /// data lies inside `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<GgufHeader, FormatError> {
        let mut r = ByteReader::new(bytes);
        let version = read_preamble(&mut r, bytes)?;
        let tensor_count = r.u64().what(|| "tensor count".to_string())?;
        let kv_count_offset = r.offset();
        let kv_count = r.u64().what(|| "metadata entry count".to_string())?;
        check_count(
            &r,
            "metadata entry count",
            kv_count_offset,
            kv_count,
            MIN_KV_BYTES,
        )?;

        let mut metadata = Metadata::new();
        for i in 0..kv_count {
            let key = r.string(|| format!("metadata key #{i}"))?.to_string();
            let type_offset = r.offset();
            let type_id = r
                .u32()
                .what(|| format!("value type of metadata key {key:?}"))?;
            let value = read_value(&mut r, &key, type_id, type_offset, 0)?;
            metadata.insert(key, value)?;
        }

        let alignment = match metadata.get_u64(ALIGNMENT_KEY)? {
            None => DEFAULT_ALIGNMENT,
            Some(a) if a.is_power_of_two() => a,
            Some(a) => return Err(FormatError::BadAlignment { alignment: a }),
        };

        check_count(
            &r,
            "tensor count",
            TENSOR_COUNT_OFFSET,
            tensor_count,
            MIN_TENSOR_INFO_BYTES,
        )?;
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = HashSet::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let tensor = read_tensor_info(&mut r, i, alignment)?;
            if !names.insert(tensor.name.clone()) {
                return Err(FormatError::DuplicateTensor { name: tensor.name });
            }
            tensors.push(tensor);
        }

        // Writers (gguf-py, llama.cpp) pad to the data section even with no tensors, so its
        // start lies inside the file; a file that says otherwise is cut short, or claims an
        // alignment far beyond its size.
        let data_offset = r
            .offset()
            .checked_next_multiple_of(alignment)
            .ok_or(FormatError::BadAlignment { alignment })?;
        r.take(data_offset - r.offset())
            .what(|| "padding before the data section".to_string())?;
        let file_size = bytes.len() as u64;
        for t in &mut tensors {
            // `offset` holds the offset relative to the data section until here.
            let start = data_offset.saturating_add(t.offset);
            let end = start.saturating_add(t.n_bytes);
            if end > file_size {
                return Err(FormatError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start,
                    end,
                    file_size,
                });
            }
            t.offset = start;
        }

        Ok(GgufHeader {
            version,
            alignment,
            metadata,
            tensors,
            data_offset,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads magic and version; returns the version if it is one this reader supports.
fn read_preamble(r: &mut ByteReader<'_>, bytes: &[u8]) -> Result<u32, FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::EmptyFile);
    }
    let head = &bytes[..bytes.len().min(GGUF_MAGIC.len())];
    if head != &GGUF_MAGIC[..head.len()] {
        return Err(FormatError::BadMagic {
            found: head.to_vec(),
        });
    }
    r.take(GGUF_MAGIC.len() as u64)
        .what(|| "magic".to_string())?;
    let version = r.u32().what(|| "version".to_string())?;
    match version {
        2 | 3 => Ok(version),
        // A big-endian file has the same magic bytes but a byte-swapped version, so a small
        // version number shows up with its low 16 bits zero.
        v if v & 0xFFFF == 0 && (1..=3).contains(&v.swap_bytes()) => Err(FormatError::BigEndian {
            version: v.swap_bytes(),
        }),
        v => Err(FormatError::UnsupportedVersion { version: v }),
    }
}

/// Rejects a count of items that the remaining bytes could not hold at `min_bytes` each,
/// before anything is allocated for it.
fn check_count(
    r: &ByteReader<'_>,
    what: &str,
    offset: u64,
    count: u64,
    min_bytes: u64,
) -> Result<(), FormatError> {
    let fits = count
        .checked_mul(min_bytes)
        .is_some_and(|needed| needed <= r.remaining());
    if fits {
        return Ok(());
    }
    Err(FormatError::CountTooLarge {
        what: what.to_string(),
        offset,
        count,
        available: r.remaining(),
    })
}

/// Reads one value of type `type_id` (found at `type_offset`) for metadata key `key`;
/// `depth` counts the arrays around it.
fn read_value(
    r: &mut ByteReader<'_>,
    key: &str,
    type_id: u32,
    type_offset: u64,
    depth: usize,
) -> Result<MetaValue, FormatError> {
    let value_type = ValueType::from_id(type_id).ok_or_else(|| FormatError::UnknownValueType {
        key: key.to_string(),
        type_id,
        offset: type_offset,
    })?;
    let what = || format!("value of metadata key {key:?}");
    Ok(match value_type {
        ValueType::U8 => MetaValue::U8(r.u8().what(what)?),
        ValueType::I8 => MetaValue::I8(r.u8().what(what)? as i8),
        ValueType::U16 => MetaValue::U16(r.u16().what(what)?),
        ValueType::I16 => MetaValue::I16(r.u16().what(what)? as i16),
        ValueType::U32 => MetaValue::U32(r.u32().what(what)?),
        ValueType::I32 => MetaValue::I32(r.u32().what(what)? as i32),
        ValueType::F32 => MetaValue::F32(f32::from_bits(r.u32().what(what)?)),
        // The format says 0 or 1; any non-zero byte reads as true, as in C.
        ValueType::Bool => MetaValue::Bool(r.u8().what(what)? != 0),
        ValueType::String => MetaValue::String(r.string(what)?.to_string()),
        ValueType::U64 => MetaValue::U64(r.u64().what(what)?),
        ValueType::I64 => MetaValue::I64(r.u64().what(what)? as i64),
        ValueType::F64 => MetaValue::F64(f64::from_bits(r.u64().what(what)?)),
        ValueType::Array => MetaValue::Array(read_array(r, key, depth)?),
    })
}

/// Reads an array (element type, count, elements) straight into one typed vector; `depth`
/// counts the arrays around it.
fn read_array(r: &mut ByteReader<'_>, key: &str, depth: usize) -> Result<MetaArray, FormatError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(FormatError::NestingTooDeep {
            key: key.to_string(),
            max_depth: MAX_ARRAY_DEPTH,
        });
    }
    let elem_offset = r.offset();
    let elem_id = r
        .u32()
        .what(|| format!("array element type of metadata key {key:?}"))?;
    let elem_type = ValueType::from_id(elem_id).ok_or_else(|| FormatError::UnknownValueType {
        key: key.to_string(),
        type_id: elem_id,
        offset: elem_offset,
    })?;
    let count_offset = r.offset();
    let count = r
        .u64()
        .what(|| format!("array length of metadata key {key:?}"))?;
    check_count(
        r,
        &format!("array of metadata key {key:?}"),
        count_offset,
        count,
        elem_type.min_encoded_bytes(),
    )?;
    // From here count <= remaining bytes, so each vector below is bounded by the input's size
    // (a fixed-size element takes exactly its min_encoded_bytes, which check_count covered).
    let what = || format!("value of metadata key {key:?}");
    Ok(match elem_type {
        ValueType::U8 => MetaArray::U8(r.take(count).what(what)?.to_vec()),
        ValueType::I8 => MetaArray::I8(read_fixed(r, count, what, i8::from_le_bytes)?),
        ValueType::U16 => MetaArray::U16(read_fixed(r, count, what, u16::from_le_bytes)?),
        ValueType::I16 => MetaArray::I16(read_fixed(r, count, what, i16::from_le_bytes)?),
        ValueType::U32 => MetaArray::U32(read_fixed(r, count, what, u32::from_le_bytes)?),
        ValueType::I32 => MetaArray::I32(read_fixed(r, count, what, i32::from_le_bytes)?),
        ValueType::F32 => MetaArray::F32(read_fixed(r, count, what, f32::from_le_bytes)?),
        // The format says 0 or 1; any non-zero byte reads as true, as in C.
        ValueType::Bool => MetaArray::Bool(read_fixed(r, count, what, |[b]: [u8; 1]| b != 0)?),
        ValueType::U64 => MetaArray::U64(read_fixed(r, count, what, u64::from_le_bytes)?),
        ValueType::I64 => MetaArray::I64(read_fixed(r, count, what, i64::from_le_bytes)?),
        ValueType::F64 => MetaArray::F64(read_fixed(r, count, what, f64::from_le_bytes)?),
        ValueType::String => {
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(r.string(what)?.to_string());
            }
            MetaArray::String(items)
        }
        ValueType::Array => {
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_array(r, key, depth + 1)?);
            }
            MetaArray::Array(items)
        }
    })
}

/// `count` little-endian values of `N` bytes each, decoded by `decode` into one vector.
fn read_fixed<T, const N: usize>(
    r: &mut ByteReader<'_>,
    count: u64,
    what: impl FnOnce() -> String,
    decode: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, FormatError> {
    let bytes = r.take(count.saturating_mul(N as u64)).what(what)?;
    let (chunks, _) = bytes.as_chunks::<N>();
    Ok(chunks.iter().map(|&chunk| decode(chunk)).collect())
}

/// Reads tensor info number `index`; its `offset` is still relative to the data section.
fn read_tensor_info(
    r: &mut ByteReader<'_>,
    index: u64,
    alignment: u64,
) -> Result<TensorInfo, FormatError> {
    let name = r.string(|| format!("name of tensor #{index}"))?.to_string();
    let n_dims = r
        .u32()
        .what(|| format!("dimension count of tensor {name:?}"))?;
    if n_dims > MAX_DIMS {
        return Err(FormatError::TooManyDims {
            tensor: name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(r.u64().what(|| format!("ne[{d}] of tensor {name:?}"))?);
    }
    let type_id = r.u32().what(|| format!("type of tensor {name:?}"))?;
    let offset = r.u64().what(|| format!("data offset of tensor {name:?}"))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(FormatError::UnknownGgmlType {
            tensor: name,
            type_id,
        });
    };
    let n_bytes = tensor_n_bytes(&name, ggml_type, &dims)?;
    if offset % alignment != 0 {
        return Err(FormatError::MisalignedTensor {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        ggml_type,
        dims,
        offset,
        n_bytes,
    })
}

/// Bytes of data of a tensor of `ggml_type` with ne = `dims`, with every size checked:
/// ggml keeps ne and the element count in i64, and rows must be whole blocks.
pub(crate) fn tensor_n_bytes(
    name: &str,
    ggml_type: GgmlType,
    dims: &[u64],
) -> Result<u64, FormatError> {
    let overflow = || FormatError::SizeOverflow {
        tensor: name.to_string(),
        dims: dims.to_vec(),
    };
    let max = i64::MAX as u64;
    if dims.iter().any(|&d| d > max) {
        return Err(overflow());
    }
    // An empty tensor has no elements whatever its other dimensions are.
    if !dims.contains(&0) {
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= max);
        if n_elements.is_none() {
            return Err(overflow());
        }
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ggml_type.block_size() != 0 {
        return Err(FormatError::RowNotBlockAligned {
            tensor: name.to_string(),
            ggml_type: ggml_type.name(),
            ne0,
            block_size: ggml_type.block_size(),
        });
    }
    let n_rows = product(dims.get(1..).unwrap_or(&[]));
    ggml_type
        .row_bytes(ne0)
        .and_then(|row_bytes| row_bytes.checked_mul(n_rows))
        .ok_or_else(overflow)
}

/// A GGUF file mapped into memory, with its parsed header.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    header: GgufHeader,
}

impl GgufFile {
    /// Maps and parses the file at `path`. Errors name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, FormatError> {
        let path = path.as_ref();
        let io_error = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let in_file = |source| FormatError::InFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let file = File::open(path).map_err(io_error)?;
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            return Err(io_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        // An empty file cannot be mapped on every platform; say what it is instead.
        if meta.len() == 0 {
            return Err(in_file(FormatError::EmptyFile));
        }
        // SAFETY: the map is read-only and private to this process. Like every mmap-based
        // loader we assume nobody truncates or rewrites the file while it is open; if someone
        // does, reads may see the new bytes or fault, which is the documented cost of mmap.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        let header = GgufHeader::parse(&mmap).map_err(in_file)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            header,
        })
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    pub fn version(&self) -> u32 {
        self.header.version
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor(name)
    }

    /// The bytes of a tensor of this file: `t.n_bytes` bytes starting at an address aligned
    /// to `alignment` (the map itself is page-aligned). A `TensorInfo` from another file
    /// that does not fit in this one gives an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let len = usize::try_from(t.n_bytes).ok()?;
            Some(start..start.checked_add(len)?)
        });
        range.and_then(|r| self.mmap.get(r)).unwrap_or(&[])
    }

    /// The info and bytes of the tensor named `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, &[u8]), FormatError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| FormatError::TensorNotFound {
                name: name.to_string(),
            })?;
        Ok((t, self.tensor_data(t)))
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Drops the mapped pages of `bytes[offset..offset + len]` from this process's
    /// memory, for data copied elsewhere: they stay readable, read again from the file
    /// (or the page cache) if touched. Pages shared with neighbouring bytes go too and
    /// come back the same way. A range past the end, or an OS that declines, changes
    /// nothing.
    pub fn release_range(&self, offset: usize, len: usize) {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.mmap.len())
        {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: the mapping is read-only and file-backed, so dropping its pages
            // loses nothing: a later read faults the same bytes back in from the file.
            let _ = unsafe {
                self.mmap
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// `general.architecture` ("llama", "gpt-oss", ...).
    pub fn architecture(&self) -> Result<&str, FormatError> {
        self.metadata().require_str("general.architecture")
    }
}
