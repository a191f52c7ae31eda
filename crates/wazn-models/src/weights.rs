//! Weights by name: views into the mapped file, checked for shape and type at load.

use std::sync::Arc;

use wazn_formats::{GgufFile, TensorInfo};
use wazn_kernels::{DType, WeightMatrix};

use crate::error::ModelError;

/// Where a weight matrix `[n_rows, n_cols]` lies in the file, and its type.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef {
    pub dtype: DType,
    pub n_rows: usize,
    pub n_cols: usize,
    offset: usize,
    n_bytes: usize,
}

impl MatrixRef {
    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }
}

/// The weights of one model file. Matrices stay in the mapped file, as stored;
/// vectors (norm gains, frequency factors) are small and are read into f32 at load.
pub struct Weights {
    file: Arc<GgufFile>,
}

impl Weights {
    pub fn new(file: Arc<GgufFile>) -> Self {
        Weights { file }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
            })
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// A matrix of `n_rows` rows of `n_cols` values (GGUF dims `[n_cols, n_rows]`).
    pub fn matrix(
        &self,
        name: &str,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<MatrixRef, ModelError> {
        let info = self.info(name)?;
        let expected = [n_cols as u64, n_rows as u64];
        if info.dims != expected {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                actual: info.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        let dtype = compute_dtype(info)?;
        let as_usize = |v: u64| {
            usize::try_from(v).map_err(|_| ModelError::TensorShape {
                name: name.to_string(),
                actual: info.dims.clone(),
                expected: expected.to_vec(),
            })
        };
        Ok(MatrixRef {
            dtype,
            n_rows,
            n_cols,
            offset: as_usize(info.offset)?,
            n_bytes: as_usize(info.n_bytes)?,
        })
    }

    /// A vector of `len` values, converted to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?;
        if info.dims != [len as u64] {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                actual: info.dims.clone(),
                expected: vec![len as u64],
            });
        }
        let dtype = compute_dtype(info)?;
        let mut out = vec![0.0f32; len];
        (dtype.traits().to_f32)(self.file.tensor_data(info), &mut out);
        Ok(out)
    }

    /// The bytes of a matrix as a kernel operand.
    pub fn view(&self, m: &MatrixRef) -> WeightMatrix<'_> {
        let data = &self.file.as_bytes()[m.offset..m.offset + m.n_bytes];
        WeightMatrix {
            dtype: m.dtype,
            data,
            n_rows: m.n_rows,
            n_cols: m.n_cols,
        }
    }
}

/// The kernel type of a tensor, or a clear error if wazn cannot compute with it.
fn compute_dtype(info: &TensorInfo) -> Result<DType, ModelError> {
    DType::from_ggml_id(info.ggml_type.id()).ok_or_else(|| ModelError::UnsupportedDType {
        name: info.name.clone(),
        dtype: info.ggml_type.name().to_string(),
    })
}
