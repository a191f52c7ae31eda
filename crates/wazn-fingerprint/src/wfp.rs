//! The `.wfp` fingerprint file: what a comparison reads from a model, without the model.
//!
//! Layout (little-endian):
//!
//! ```text
//! "WAZN-WFP"            8 bytes of magic
//! version               u32 (2; version 1, without the invariant terms, is read too)
//! header length         u32, then that many bytes of JSON: ModelFacts, the sketch size, and
//!                       the invariant terms' token count, layers and kinds
//! sketch hashes         k × u64
//! sketch rows           k × n_embd × f16
//! per layer             Wq (q_rows × n_embd), Wk (k_rows × n_embd) and, for latent attention,
//!                       the form's query factor (k_rows × n_embd), as the header's
//!                       `matrices` says: Q8_0 blocks (version 2 where n_embd is a multiple of
//!                       32) or f16
//! invariant tokens      t × u64 (version 2)
//! per invariant layer   HuRef's attention term, then its value/output term where there is
//!                       one, t × t × f32 each (version 2)
//! checksum              u64: FNV-1a of every byte before it
//! ```
//!
//! Layer matrices are kept in GGUF's Q8_0 blocks (32 values as 8-bit integers with one f16
//! scale: 8.5 bits a value, about a quarter of f32's size), which moves a CKA by under 1e-4
//! (see the tests); the sketch rows, which align the hidden dimensions, stay in f16. The file
//! is mapped, checked whole (its size against the header, then its checksum) when opened, and
//! its layers are converted when asked for, so a comparison holds one layer of it at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use wazn_kernels::dtype::{dequantize_row, quantize_row, DType};

use crate::compare::Progress;
use crate::error::FingerprintError;
use crate::huref::{Invariants, LayerInvariants};
use crate::matrix::Matrix;
use crate::sketch::TokenSketch;
use crate::source::{AttentionLayer, ModelFacts, WeightSource};

pub const WFP_MAGIC: &[u8; 8] = b"WAZN-WFP";
pub const WFP_VERSION: u32 = 2;
/// Larger headers are refused before parsing.
const MAX_HEADER_BYTES: u32 = 1 << 20;

/// How a file stores its layer matrices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WfpStorage {
    /// GGUF's Q8_0 blocks: about half of f16's size (f16 where a row is not whole blocks
    /// of 32).
    #[default]
    Q8_0,
    /// Twice the size, nearer the model's numbers (version 1's only kind).
    F16,
}

impl WfpStorage {
    /// What `self` writes for rows of `cols` values.
    fn resolved(self, cols: usize) -> WfpStorage {
        match self {
            WfpStorage::Q8_0 if DType::Q8_0.row_bytes(cols).is_some() => WfpStorage::Q8_0,
            _ => WfpStorage::F16,
        }
    }

    fn dtype(self) -> DType {
        match self {
            WfpStorage::Q8_0 => DType::Q8_0,
            WfpStorage::F16 => DType::F16,
        }
    }

    /// Bytes of a row of `cols` values (checked whole when the header is read).
    fn row_bytes(self, cols: usize) -> usize {
        self.dtype().row_bytes(cols).unwrap_or(usize::MAX)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    facts: ModelFacts,
    sketch_tokens: usize,
    /// F16 or Q8_0 (absent: F16, as version 1 wrote).
    #[serde(default = "f16_storage")]
    matrices: WfpStorage,
    /// Tokens of the invariant terms (0: none kept).
    #[serde(default)]
    invariant_tokens: usize,
    #[serde(default)]
    invariant_layers: Vec<usize>,
    /// Whether each invariant layer has a value/output term after its attention term.
    #[serde(default)]
    invariant_value_output: bool,
}

fn f16_storage() -> WfpStorage {
    WfpStorage::F16
}

/// Whether the file at `path` starts as a fingerprint does.
pub fn looks_like_wfp(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == WFP_MAGIC)
}

/// FNV-1a, 64 bits, fed in pieces.
struct Checksum(u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes bytes and keeps their checksum.
struct Out<W: Write> {
    inner: W,
    checksum: Checksum,
}

impl<W: Write> Out<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.checksum.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_f32(&mut self, values: &[f32]) -> std::io::Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
        self.put(&bytes)
    }

    fn put_matrix(&mut self, m: &Matrix, storage: WfpStorage) -> std::io::Result<()> {
        if storage == WfpStorage::F16 {
            return self.put_f16(&m.data);
        }
        let mut bytes = vec![0u8; m.rows * storage.row_bytes(m.cols)];
        for (row, out) in m
            .data
            .chunks_exact(m.cols.max(1))
            .zip(bytes.chunks_exact_mut(storage.row_bytes(m.cols).max(1)))
        {
            quantize_row(storage.dtype(), row, out).map_err(std::io::Error::other)?;
        }
        self.put(&bytes)
    }

    fn put_f16(&mut self, values: &[f32]) -> std::io::Result<()> {
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        self.put(&bytes)
    }
}

/// Writes the fingerprint of `source` to `path`, a layer at a time.
pub fn write_wfp(
    source: &dyn WeightSource,
    path: &Path,
    storage: WfpStorage,
    progress: &dyn Progress,
) -> Result<u64, FingerprintError> {
    let io = |source| FingerprintError::Io {
        path: path.to_path_buf(),
        source,
    };
    let facts = source.facts();
    let sketch = source.sketch()?;
    progress.stage("invariant terms", 0, 1);
    let invariants = source.invariants(&sketch)?;
    let value_output = invariants
        .as_ref()
        .is_some_and(|inv| inv.layers.iter().all(|l| l.value_output.is_some()));
    let storage = storage.resolved(facts.n_embd);
    let header = serde_json::to_vec(&Header {
        facts: facts.clone(),
        sketch_tokens: sketch.hashes.len(),
        matrices: storage,
        invariant_tokens: invariants.as_ref().map_or(0, |inv| inv.hashes.len()),
        invariant_layers: invariants
            .as_ref()
            .map_or_else(Vec::new, |inv| inv.layers.iter().map(|l| l.layer).collect()),
        invariant_value_output: value_output,
    })
    .map_err(|e| FingerprintError::BadModel(format!("the header does not serialize: {e}")))?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|&n| n <= MAX_HEADER_BYTES)
        .ok_or_else(|| FingerprintError::BadModel("the model's header is too large".into()))?;
    let file = File::create(path).map_err(io)?;
    let mut out = Out {
        inner: BufWriter::new(file),
        checksum: Checksum::new(),
    };
    out.put(WFP_MAGIC).map_err(io)?;
    out.put(&WFP_VERSION.to_le_bytes()).map_err(io)?;
    out.put(&header_len.to_le_bytes()).map_err(io)?;
    out.put(&header).map_err(io)?;
    let hashes: Vec<u8> = sketch.hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
    out.put(&hashes).map_err(io)?;
    out.put_f16(&sketch.rows.data).map_err(io)?;
    for index in 0..facts.n_layer {
        progress.stage("extracting layers", index, facts.n_layer);
        let layer = source.layer(index)?;
        out.put_matrix(&layer.wq, storage).map_err(io)?;
        out.put_matrix(&layer.wk, storage).map_err(io)?;
        if let Some(p) = &layer.form_query {
            out.put_matrix(p, storage).map_err(io)?;
        }
    }
    progress.stage("extracting layers", facts.n_layer, facts.n_layer);
    if let Some(inv) = &invariants {
        let hashes: Vec<u8> = inv.hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
        out.put(&hashes).map_err(io)?;
        for layer in &inv.layers {
            out.put_f32(&layer.attention.data).map_err(io)?;
            if let (true, Some(vo)) = (value_output, &layer.value_output) {
                out.put_f32(&vo.data).map_err(io)?;
            }
        }
    }
    let checksum = out.checksum.0;
    out.inner.write_all(&checksum.to_le_bytes()).map_err(io)?;
    out.inner.flush().map_err(io)?;
    let size = std::fs::metadata(path).map_err(io)?.len();
    Ok(size)
}

/// A `.wfp` file, mapped and checked.
pub struct WfpFile {
    path: PathBuf,
    map: Mmap,
    facts: ModelFacts,
    sketch_tokens: usize,
    matrices: WfpStorage,
    invariant_tokens: usize,
    invariant_layers: Vec<usize>,
    invariant_value_output: bool,
    /// Byte offset of the sketch hashes.
    body: usize,
}

impl WfpFile {
    pub fn open(path: &Path) -> Result<WfpFile, FingerprintError> {
        let bad = |reason: String| FingerprintError::BadFingerprintFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|source| FingerprintError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only; a file changed under it by another process gives
        // wrong numbers (caught by the checksum when opened), not undefined behaviour in safe
        // code that only reads bytes.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| FingerprintError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bytes: &[u8] = &map;
        if bytes.len() < 16 || &bytes[..8] != WFP_MAGIC {
            return Err(bad("it does not start with the WAZN-WFP magic".into()));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = u32_at(8);
        if !(1..=WFP_VERSION).contains(&version) {
            return Err(bad(format!(
                "version {version}; this wazn reads version {WFP_VERSION}"
            )));
        }
        let header_len = u32_at(12);
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!("a header of {header_len} bytes is too large")));
        }
        let body = 16 + header_len as usize;
        let header_bytes = bytes.get(16..body).ok_or_else(|| {
            bad(format!(
                "truncated: {} bytes, the header alone needs {body}",
                bytes.len()
            ))
        })?;
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| bad(format!("the header is not valid: {e}")))?;
        header.facts.check().map_err(|e| bad(e.to_string()))?;
        if version == 1 && (header.invariant_tokens > 0 || header.matrices != WfpStorage::F16) {
            return Err(bad(
                "a version 1 file has f16 matrices and no invariant terms".into(),
            ));
        }
        if header
            .matrices
            .dtype()
            .row_bytes(header.facts.n_embd)
            .is_none()
        {
            return Err(bad(format!(
                "rows of {} values are not whole {:?} blocks",
                header.facts.n_embd, header.matrices
            )));
        }
        let expected = expected_size(&header, body)
            .ok_or_else(|| bad("the header's shapes overflow".into()))?;
        if bytes.len() as u64 != expected {
            return Err(bad(format!(
                "{}: the header describes {expected} bytes, the file has {}",
                if (bytes.len() as u64) < expected {
                    "truncated"
                } else {
                    "wrong size"
                },
                bytes.len()
            )));
        }
        let (content, stored) = bytes.split_at(bytes.len() - 8);
        let mut checksum = Checksum::new();
        checksum.update(content);
        let stored = u64::from_le_bytes(stored.try_into().unwrap_or([0; 8]));
        if checksum.0 != stored {
            return Err(bad(
                "corrupt: its checksum does not match its contents".into()
            ));
        }
        Ok(WfpFile {
            path: path.to_path_buf(),
            facts: header.facts,
            sketch_tokens: header.sketch_tokens,
            matrices: header.matrices,
            invariant_tokens: header.invariant_tokens,
            invariant_layers: header.invariant_layers,
            invariant_value_output: header.invariant_value_output,
            body,
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `count` f16 values from byte `at`, as f32.
    fn values(&self, at: usize, count: usize) -> Vec<f32> {
        self.map
            .get(at..at + 2 * count)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    }

    fn sketch_rows_at(&self) -> usize {
        self.body + 8 * self.sketch_tokens
    }

    /// Byte offset of the invariant terms' token hashes.
    fn invariants_at(&self) -> usize {
        self.sketch_rows_at()
            + 2 * self.sketch_tokens * self.facts.n_embd
            + self.facts.n_layer * self.layer_bytes()
    }

    /// `count` f32 values from byte `at`.
    fn f32_values(&self, at: usize, count: usize) -> Vec<f32> {
        self.map
            .get(at..at + 4 * count)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn layer_bytes(&self) -> usize {
        layer_rows(&self.facts) * self.matrices.row_bytes(self.facts.n_embd)
    }

    /// The `rows × n_embd` matrix stored from byte `at`.
    fn matrix(&self, at: usize, rows: usize) -> Result<Matrix, FingerprintError> {
        let cols = self.facts.n_embd;
        let row_bytes = self.matrices.row_bytes(cols);
        let bad = |reason: String| FingerprintError::BadFingerprintFile {
            path: self.path.clone(),
            reason,
        };
        let bytes = self
            .map
            .get(at..at + rows * row_bytes)
            .ok_or_else(|| bad(format!("a matrix at byte {at} is past the end")))?;
        let mut m = Matrix::zeros(rows, cols);
        for (src, dst) in bytes
            .chunks_exact(row_bytes.max(1))
            .zip(m.data.chunks_exact_mut(cols.max(1)))
        {
            dequantize_row(self.matrices.dtype(), src, dst).map_err(|e| bad(e.to_string()))?;
        }
        Ok(m)
    }
}

/// Rows stored per layer: Wq, Wk and a latent layer's form factor.
fn layer_rows(facts: &ModelFacts) -> usize {
    facts.q_rows() + facts.k_rows() + facts.form_rows().unwrap_or(0)
}

/// Bytes of the invariant terms' section.
fn invariant_bytes(header: &Header) -> Option<u64> {
    let t = header.invariant_tokens as u64;
    let terms = if header.invariant_value_output { 2 } else { 1 };
    let per_layer = t.checked_mul(t)?.checked_mul(4 * terms)?;
    per_layer
        .checked_mul(header.invariant_layers.len() as u64)?
        .checked_add(t.checked_mul(8)?)
}

/// Bytes of a file with this header, ending at `body`.
fn expected_size(header: &Header, body: usize) -> Option<u64> {
    let facts = &header.facts;
    let n = facts.n_embd as u64;
    let sketch = (header.sketch_tokens as u64).checked_mul(8 + 2 * n)?;
    let row_bytes = header.matrices.dtype().row_bytes(facts.n_embd)? as u64;
    let per_layer = (layer_rows(facts) as u64).checked_mul(row_bytes)?;
    let layers = per_layer.checked_mul(facts.n_layer as u64)?;
    (body as u64)
        .checked_add(sketch)?
        .checked_add(layers)?
        .checked_add(invariant_bytes(header)?)?
        .checked_add(8)
}

impl WeightSource for WfpFile {
    fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    fn invariants(&self, _sketch: &TokenSketch) -> Result<Option<Invariants>, FingerprintError> {
        let t = self.invariant_tokens;
        if t == 0 {
            return Ok(None);
        }
        let at = self.invariants_at();
        let hashes = self
            .map
            .get(at..at + 8 * t)
            .unwrap_or(&[])
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        let mut next = at + 8 * t;
        let mut term = || {
            let m = Matrix {
                rows: t,
                cols: t,
                data: self.f32_values(next, t * t),
            };
            next += 4 * t * t;
            m
        };
        let mut layers = Vec::with_capacity(self.invariant_layers.len());
        for &layer in &self.invariant_layers {
            let attention = term();
            let value_output = self.invariant_value_output.then(&mut term);
            layers.push(LayerInvariants {
                layer,
                attention,
                value_output,
            });
        }
        Ok(Some(Invariants { hashes, layers }))
    }

    fn sketch(&self) -> Result<TokenSketch, FingerprintError> {
        let hashes = self
            .map
            .get(self.body..self.sketch_rows_at())
            .unwrap_or(&[])
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        let n = self.facts.n_embd;
        let rows = Matrix {
            rows: self.sketch_tokens,
            cols: n,
            data: self.values(self.sketch_rows_at(), self.sketch_tokens * n),
        };
        Ok(TokenSketch { hashes, rows })
    }

    fn layer(&self, index: usize) -> Result<AttentionLayer, FingerprintError> {
        if index >= self.facts.n_layer {
            return Err(FingerprintError::BadModel(format!(
                "{}: no layer {index}",
                self.path.display()
            )));
        }
        let n = self.facts.n_embd;
        let start = self.sketch_rows_at() + 2 * self.sketch_tokens * n + index * self.layer_bytes();
        let (q, k) = (self.facts.q_rows(), self.facts.k_rows());
        let row_bytes = self.matrices.row_bytes(n);
        Ok(AttentionLayer {
            wq: self.matrix(start, q)?,
            wk: self.matrix(start + q * row_bytes, k)?,
            form_query: match self.facts.form_rows() {
                Some(rows) => Some(self.matrix(start + (q + k) * row_bytes, rows)?),
                None => None,
            },
        })
    }
}
