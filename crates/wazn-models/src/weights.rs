//! Weights by name, from a GGUF file or a Hugging Face folder, checked for shape and
//! type at load.
//!
//! Matrices stay where they lie (the mapped file) in their stored type: GGUF's ggml
//! types, or a safetensors tensor's F32 / F16 / BF16 (all in the dtype table, so BF16
//! weights are multiplied as stored). The one exception is MXFP4 from a Hugging Face
//! folder: its codes and scales are separate tensors in another nibble order, so they
//! are converted once at load into ggml's MXFP4 blocks, owned here. Vectors (norm
//! gains, biases, sinks) are small and are read into f32 at load.
//!
//! Matrices of linear layers and expert stacks may instead be repacked once into
//! interleaved row groups ([`Weights::linear_matrix`], [`Weights::experts`],
//! [`wazn_kernels::packed`]) where the kernels in use read that layout faster; the
//! packed copy is owned here, and the file's pages it came from are released, so the
//! memory a model holds is about its file's size either way.
//!
//! Shapes are given in PyTorch order (`[n_rows, n_cols]`, the last dim contiguous);
//! GGUF lists the same dims reversed.

use std::path::PathBuf;
use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder, SafeDtype, SafeTensorView, TensorInfo};
use wazn_kernels::{packed, DType, Layout, WeightMatrix};

use crate::error::ModelError;
use crate::load::ModelSource;
use crate::load_progress;

/// Where the bytes of a matrix are.
#[derive(Clone, Copy, Debug)]
enum Location {
    /// A byte range of the mapped GGUF file.
    Gguf { offset: usize },
    /// The `i`-th tensor handed out from the Hugging Face folder (by name).
    Hf(usize),
    /// The `i`-th buffer converted at load.
    Owned(usize),
}

/// A weight matrix `[n_rows, n_cols]`: its type, shape and where its bytes are.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef {
    pub dtype: DType,
    pub n_rows: usize,
    pub n_cols: usize,
    location: Location,
    n_bytes: usize,
    layout: Layout,
}

impl MatrixRef {
    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }
}

/// The weights of one model, from either kind of source.
pub struct Weights {
    source: ModelSource,
    /// Names of the folder tensors behind [`Location::Hf`].
    hf_names: Vec<String>,
    /// Buffers behind [`Location::Owned`].
    owned: Vec<Vec<u8>>,
}

/// The kernel type of a safetensors dtype, for the floating-point types matrices use.
fn safe_dtype(dtype: SafeDtype) -> Option<DType> {
    match dtype {
        SafeDtype::F32 => Some(DType::F32),
        SafeDtype::F16 => Some(DType::F16),
        SafeDtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

impl Weights {
    /// The weights of `source`; a [`crate::load_progress`] observer is told of the bytes of
    /// its tensors, which the load then reads.
    pub fn new(source: ModelSource) -> Self {
        load_progress::begin(source_bytes(&source));
        Weights {
            source,
            hf_names: Vec::new(),
            owned: Vec::new(),
        }
    }

    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    /// Whether the source has a tensor called `name` (for MXFP4 in a folder, the
    /// `{name}_blocks` half counts).
    pub fn has(&self, name: &str) -> bool {
        match &self.source {
            ModelSource::Gguf(file) => file.tensor(name).is_some(),
            ModelSource::HfFolder(folder) => {
                folder.tensor(name).is_some()
                    || folder
                        .tensor(&wazn_formats::mxfp4_blocks_name(name))
                        .is_some()
            }
        }
    }

    /// A matrix of `n_rows` rows of `n_cols` values.
    pub fn matrix(
        &mut self,
        name: &str,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<MatrixRef, ModelError> {
        self.stacked(name, &[n_rows, n_cols])
    }

    /// `n_expert` matrices `[n_rows, n_cols]` stored as one tensor `[n_expert, n_rows,
    /// n_cols]`, as one matrix of `n_expert * n_rows` rows ([`Weights::expert_view`]
    /// picks one), packed where the kernels in use read that layout and each expert is
    /// whole groups of rows. MXFP4 experts of a folder are converted to ggml blocks here
    /// (straight into the packed layout where it is used) and the folder's pages of them
    /// released.
    pub fn experts(
        &mut self,
        name: &str,
        n_expert: usize,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<MatrixRef, ModelError> {
        let packs = |dtype: DType| {
            packed::worth_packing(dtype) && n_rows.is_multiple_of(packed::GROUP_ROWS)
        };
        let ModelSource::HfFolder(folder) = &self.source else {
            let m = self.stacked(name, &[n_expert, n_rows, n_cols])?;
            return Ok(if packs(m.dtype) { self.packed(m) } else { m });
        };
        let folder = Arc::clone(folder);
        let Some(pair) = folder.mxfp4(name)? else {
            let m = self.stacked(name, &[n_expert, n_rows, n_cols])?;
            return Ok(if packs(m.dtype) { self.packed(m) } else { m });
        };
        let blocks_name = wazn_formats::mxfp4_blocks_name(name);
        let in_file = |source: ModelError| hf_error(&folder, &blocks_name, source);
        let expected = [n_expert as u64, n_rows as u64, n_cols as u64];
        let actual = pair.logical_shape();
        if actual != expected {
            return Err(in_file(ModelError::TensorShape {
                name: name.to_string(),
                actual,
                expected: expected.to_vec(),
            }));
        }
        let dtype = DType::Mxfp4;
        let expert_bytes = dtype
            .row_bytes(n_cols)
            .and_then(|b| b.checked_mul(n_rows))
            .ok_or_else(|| {
                in_file(ModelError::BadHyperParameter(format!(
                    "{n_cols} columns are not whole MXFP4 blocks"
                )))
            })?;
        let layout = if packs(dtype) {
            Layout::Interleaved8
        } else {
            Layout::Rows
        };
        // One expert at a time: its HF blocks and scales, as ggml blocks, then packed.
        let expert_blocks = expert_bytes / dtype.type_size();
        let expert_hf_bytes = expert_blocks * wazn_kernels::dtype::MXFP4_HF_BLOCK_BYTES;
        let mut converted = vec![0u8; expert_bytes * n_expert];
        let mut rows = vec![
            0u8;
            if layout == Layout::Rows {
                0
            } else {
                expert_bytes
            }
        ];
        for (e, out) in converted.chunks_exact_mut(expert_bytes).enumerate() {
            let blocks = pair
                .blocks
                .data
                .get(e * expert_hf_bytes..(e + 1) * expert_hf_bytes);
            let scales = pair
                .scales
                .data
                .get(e * expert_blocks..(e + 1) * expert_blocks);
            let (Some(blocks), Some(scales)) = (blocks, scales) else {
                return Err(in_file(ModelError::BadTensor(format!(
                    "{name}: expert {e} is past the end of its blocks or scales"
                ))));
            };
            let target = if layout == Layout::Rows {
                &mut *out
            } else {
                &mut rows
            };
            wazn_kernels::dtype::mxfp4_blocks_from_hf(blocks, scales, target)
                .map_err(|e| in_file(ModelError::BadTensor(format!("{name}: {e}"))))?;
            if layout == Layout::Interleaved8
                && packed::pack_into(dtype, &rows, n_rows, n_cols, out).is_none()
            {
                return Err(in_file(ModelError::BadTensor(format!(
                    "{name}: expert {e} could not be packed"
                ))));
            }
        }
        folder.release_tensor(&blocks_name);
        folder.release_tensor(&wazn_formats::mxfp4_scales_name(name));
        load_progress::advance((pair.blocks.data.len() + pair.scales.data.len()) as u64);
        let n_bytes = converted.len();
        self.owned.push(converted);
        Ok(MatrixRef {
            dtype,
            n_rows: n_expert * n_rows,
            n_cols,
            location: Location::Owned(self.owned.len() - 1),
            n_bytes,
            layout,
        })
    }

    /// `n_expert` matrices `[n_rows, n_cols]` stored as one tensor per expert
    /// (`name_of(e)`, as Hugging Face MoE checkpoints hold them), stacked into one
    /// matrix of `n_expert * n_rows` rows as [`Weights::experts`] gives, packed where
    /// the kernels in use read that layout. The source's pages of each expert are
    /// released once copied.
    pub fn expert_list(
        &mut self,
        name_of: impl Fn(usize) -> String,
        n_expert: usize,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<MatrixRef, ModelError> {
        let mut stack: Vec<u8> = Vec::new();
        let mut first: Option<(DType, Layout)> = None;
        for e in 0..n_expert {
            let name = name_of(e);
            let m = self.matrix(&name, n_rows, n_cols)?;
            let (dtype, layout) = *first.get_or_insert_with(|| {
                let packs =
                    packed::worth_packing(m.dtype) && n_rows.is_multiple_of(packed::GROUP_ROWS);
                let layout = if packs {
                    Layout::Interleaved8
                } else {
                    Layout::Rows
                };
                (m.dtype, layout)
            });
            if m.dtype != dtype {
                return Err(ModelError::BadTensor(format!(
                    "{name} is {:?} but expert 0 is {dtype:?}: the experts of a layer share one type",
                    m.dtype
                )));
            }
            let rows = self.view(&m).data;
            match layout {
                Layout::Rows => stack.extend_from_slice(rows),
                Layout::Interleaved8 => {
                    let packed = packed::pack(dtype, rows, n_rows, n_cols).ok_or_else(|| {
                        ModelError::BadTensor(format!("{name} could not be packed"))
                    })?;
                    stack.extend_from_slice(&packed);
                }
            }
            match (&self.source, m.location) {
                (ModelSource::HfFolder(folder), _) => folder.release_tensor(&name),
                (ModelSource::Gguf(file), Location::Gguf { offset }) => {
                    file.release_range(offset, m.n_bytes)
                }
                _ => {}
            }
        }
        let Some((dtype, layout)) = first else {
            return Err(ModelError::BadHyperParameter("a layer of 0 experts".into()));
        };
        let n_bytes = stack.len();
        self.owned.push(stack);
        Ok(MatrixRef {
            dtype,
            n_rows: n_expert * n_rows,
            n_cols,
            location: Location::Owned(self.owned.len() - 1),
            n_bytes,
            layout,
        })
    }

    /// A matrix computed at load (`[n_rows, n_cols]` f32 values, row after row), owned
    /// here.
    pub fn owned_f32(&mut self, values: &[f32], n_rows: usize, n_cols: usize) -> MatrixRef {
        debug_assert_eq!(values.len(), n_rows * n_cols);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let n_bytes = bytes.len();
        self.owned.push(bytes);
        MatrixRef {
            dtype: DType::F32,
            n_rows,
            n_cols,
            location: Location::Owned(self.owned.len() - 1),
            n_bytes,
            layout: Layout::Rows,
        }
    }

    /// Every value of `m`, as f32 (`[n_rows, n_cols]`, row after row).
    pub fn to_f32(&self, m: &MatrixRef) -> Vec<f32> {
        let view = self.view(m);
        let mut out = vec![0.0f32; m.n_rows * m.n_cols];
        for (row, dst) in out.chunks_exact_mut(m.n_cols.max(1)).enumerate() {
            view.dequantize_row_into(row, dst);
        }
        out
    }

    /// The matrix of a linear layer: as [`Weights::matrix`], packed when worth it.
    pub fn linear_matrix(
        &mut self,
        name: &str,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<MatrixRef, ModelError> {
        let m = self.matrix(name, n_rows, n_cols)?;
        Ok(self.packed(m))
    }

    /// `m` repacked into interleaved row groups, owned here, if the kernels in use read
    /// that layout for its type; otherwise `m` itself. A GGUF source's pages of `m` are
    /// released once copied (a tied embedding reads its rows back from the file).
    pub fn packed(&mut self, m: MatrixRef) -> MatrixRef {
        if m.layout != Layout::Rows || !packed::worth_packing(m.dtype) {
            return m;
        }
        let Some(bytes) = packed::pack(m.dtype, self.view(&m).data, m.n_rows, m.n_cols) else {
            return m;
        };
        if let (Location::Gguf { offset }, ModelSource::Gguf(file)) = (m.location, &self.source) {
            file.release_range(offset, m.n_bytes);
        }
        let n_bytes = bytes.len();
        self.owned.push(bytes);
        MatrixRef {
            location: Location::Owned(self.owned.len() - 1),
            n_bytes,
            layout: Layout::Interleaved8,
            ..m
        }
    }

    /// A tensor of PyTorch shape `shape` (its last dim the row length) as one matrix of
    /// all the leading dims' rows.
    fn stacked(&mut self, name: &str, shape: &[usize]) -> Result<MatrixRef, ModelError> {
        let Some((&n_cols, lead)) = shape.split_last() else {
            return Err(ModelError::BadHyperParameter(format!("{name}: no shape")));
        };
        let n_rows: usize = lead.iter().product();
        match &self.source {
            ModelSource::Gguf(file) => {
                let info = gguf_info(file, name)?;
                check_gguf_dims(info, shape)?;
                let dtype = gguf_dtype(info)?;
                let offset = to_usize(info.offset, name)?;
                let n_bytes = to_usize(info.n_bytes, name)?;
                load_progress::advance(info.n_bytes);
                Ok(MatrixRef {
                    dtype,
                    n_rows,
                    n_cols,
                    location: Location::Gguf { offset },
                    n_bytes,
                    layout: Layout::Rows,
                })
            }
            ModelSource::HfFolder(folder) => {
                let view = hf_tensor(folder, name, shape)?;
                let dtype = safe_dtype(view.dtype).ok_or_else(|| {
                    hf_error(
                        folder,
                        name,
                        ModelError::UnsupportedDType {
                            name: name.to_string(),
                            dtype: view.dtype.to_string(),
                        },
                    )
                })?;
                let n_bytes = view.data.len();
                load_progress::advance(n_bytes as u64);
                self.hf_names.push(name.to_string());
                Ok(MatrixRef {
                    dtype,
                    n_rows,
                    n_cols,
                    location: Location::Hf(self.hf_names.len() - 1),
                    n_bytes,
                    layout: Layout::Rows,
                })
            }
        }
    }

    /// A vector of `len` values, converted to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        self.tensor_f32(name, &[len])
    }

    /// A small tensor of PyTorch shape `shape`, converted to f32 (row-major).
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let n: usize = shape.iter().product();
        let mut out = vec![0.0f32; n];
        match &self.source {
            ModelSource::Gguf(file) => {
                let info = gguf_info(file, name)?;
                check_gguf_dims(info, shape)?;
                let dtype = gguf_dtype(info)?;
                (dtype.traits().to_f32)(file.tensor_data(info), &mut out);
                load_progress::advance(info.n_bytes);
            }
            ModelSource::HfFolder(folder) => {
                let view = hf_tensor(folder, name, shape)?;
                let Some(dtype) = safe_dtype(view.dtype) else {
                    let err = ModelError::UnsupportedDType {
                        name: name.to_string(),
                        dtype: view.dtype.to_string(),
                    };
                    return Err(hf_error(folder, name, err));
                };
                (dtype.traits().to_f32)(view.data, &mut out);
                load_progress::advance(view.data.len() as u64);
            }
        }
        Ok(out)
    }

    /// The bytes of a matrix as a kernel operand.
    pub fn view(&self, m: &MatrixRef) -> WeightMatrix<'_> {
        let data: &[u8] = match (m.location, &self.source) {
            (Location::Gguf { offset }, ModelSource::Gguf(file)) => file
                .as_bytes()
                .get(offset..offset + m.n_bytes)
                .unwrap_or(&[]),
            (Location::Hf(i), ModelSource::HfFolder(folder)) => self
                .hf_names
                .get(i)
                .and_then(|name| folder.tensor(name))
                .map_or(&[], |view| view.data),
            (Location::Owned(i), _) => self.owned.get(i).map_or(&[], Vec::as_slice),
            // A MatrixRef only comes from these weights, so the kinds always match.
            _ => &[],
        };
        WeightMatrix {
            dtype: m.dtype,
            data,
            n_rows: m.n_rows,
            n_cols: m.n_cols,
            layout: m.layout,
        }
    }

    /// Expert `expert` (`[rows_per_expert, n_cols]`) of a stack from [`Weights::experts`],
    /// in the stack's layout (a packed stack holds each expert as whole groups of rows).
    pub fn expert_view(
        &self,
        m: &MatrixRef,
        expert: usize,
        rows_per_expert: usize,
    ) -> WeightMatrix<'_> {
        let all = self.view(m);
        let n_bytes = match m.layout {
            Layout::Rows => all.row_bytes() * rows_per_expert,
            Layout::Interleaved8 => {
                packed::packed_len(m.dtype, rows_per_expert, m.n_cols).unwrap_or(0)
            }
        };
        WeightMatrix {
            dtype: m.dtype,
            data: all
                .data
                .get(expert * n_bytes..(expert + 1) * n_bytes)
                .unwrap_or(&[]),
            n_rows: rows_per_expert,
            n_cols: m.n_cols,
            layout: m.layout,
        }
    }
}

/// The bytes of every tensor of `source`.
fn source_bytes(source: &ModelSource) -> u64 {
    match source {
        ModelSource::Gguf(file) => file.tensors().iter().map(|t| t.n_bytes).sum(),
        ModelSource::HfFolder(folder) => folder
            .tensor_names()
            .iter()
            .filter_map(|name| folder.tensor(name))
            .map(|view| view.data.len() as u64)
            .sum(),
    }
}

fn to_usize(v: u64, name: &str) -> Result<usize, ModelError> {
    usize::try_from(v).map_err(|_| ModelError::BadTensor(format!("{name}: size {v} too large")))
}

fn gguf_info<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo, ModelError> {
    file.tensor(name).ok_or_else(|| ModelError::MissingTensor {
        name: name.to_string(),
    })
}

/// GGUF dims are the PyTorch shape reversed.
fn check_gguf_dims(info: &TensorInfo, shape: &[usize]) -> Result<(), ModelError> {
    let expected: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
    if info.dims != expected {
        return Err(ModelError::TensorShape {
            name: info.name.clone(),
            actual: info.dims.clone(),
            expected,
        });
    }
    Ok(())
}

/// The kernel type of a tensor, or a clear error if wazn cannot compute with it.
fn gguf_dtype(info: &TensorInfo) -> Result<DType, ModelError> {
    DType::from_ggml_id(info.ggml_type.id()).ok_or_else(|| ModelError::UnsupportedDType {
        name: info.name.clone(),
        dtype: info.ggml_type.name().to_string(),
    })
}

/// `err`, located in the file that holds tensor `name` (the folder when none does).
fn hf_error(folder: &HfFolder, name: &str, err: ModelError) -> ModelError {
    let path: PathBuf = folder
        .tensor_file(name)
        .map_or_else(|| folder.dir().to_path_buf(), |p| p.to_path_buf());
    ModelError::InFile {
        path,
        source: Box::new(err),
    }
}

/// The folder tensor `name`, checked to have PyTorch shape `shape`.
fn hf_tensor<'a>(
    folder: &'a HfFolder,
    name: &str,
    shape: &[usize],
) -> Result<SafeTensorView<'a>, ModelError> {
    let Some(view) = folder.tensor(name) else {
        let err = ModelError::MissingTensor {
            name: name.to_string(),
        };
        return Err(hf_error(folder, name, err));
    };
    let expected: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    if view.shape != expected.as_slice() {
        let err = ModelError::TensorShape {
            name: name.to_string(),
            actual: view.shape.to_vec(),
            expected,
        };
        return Err(hf_error(folder, name, err));
    }
    Ok(view)
}
