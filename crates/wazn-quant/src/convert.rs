//! Converting rows from one type to another on the thread pool: each task dequantizes a run
//! of whole rows to f32 in its own scratch buffer and quantizes them into its part of the
//! output, as llama-quantize does (without an importance matrix every block is quantized on
//! its own, so the split cannot change a byte).

use std::sync::Mutex;

use wazn_formats::GgmlType;
use wazn_kernels::dtype::{dequantize_row, quantize_row, DType};
use wazn_kernels::ThreadPool;

use crate::error::QuantError;
use crate::validate::invalid_data;

/// Elements one task converts at a time (at least one row): 256 KiB of f32 scratch, small
/// enough to stay in cache, large enough that handing out tasks costs nothing.
const TASK_ELEMENTS: usize = 1 << 16;

/// The kernels' type for a file's type, if wazn has one.
pub fn dtype_of(ggml_type: GgmlType) -> Option<DType> {
    DType::from_ggml_id(ggml_type.id())
}

/// Whether wazn can read tensors of `ggml_type` into f32.
pub fn can_dequantize(ggml_type: GgmlType) -> bool {
    dtype_of(ggml_type).is_some()
}

/// Whether wazn can write tensors of `ggml_type` from f32.
pub fn can_quantize(ggml_type: GgmlType) -> bool {
    dtype_of(ggml_type).is_some_and(|d| d.traits().from_f32.is_some())
}

/// One conversion job: rows of `row_len` elements of tensor `tensor`, `from` → `to`.
pub struct RowConversion<'a> {
    pub tensor: &'a str,
    pub from: GgmlType,
    pub to: GgmlType,
    pub row_len: usize,
}

impl RowConversion<'_> {
    /// Converts the whole rows in `src` into `dst` on `pool`. Both hold the same number of
    /// rows; every quantized row is validated as llama.cpp validates it.
    pub fn run(&self, pool: &ThreadPool, src: &[u8], dst: &mut [u8]) -> Result<(), QuantError> {
        let (from, to) = (self.dtype(self.from)?, self.dtype(self.to)?);
        let src_row_bytes = self.row_bytes(from)?;
        let dst_row_bytes = self.row_bytes(to)?;
        let rows_per_task = (TASK_ELEMENTS / self.row_len.max(1)).max(1);
        let src_chunks: Vec<&[u8]> = src.chunks(rows_per_task * src_row_bytes.max(1)).collect();
        // Each task writes its own part of `dst`; the locks are never contended.
        let dst_chunks: Vec<Mutex<&mut [u8]>> = dst
            .chunks_mut(rows_per_task * dst_row_bytes.max(1))
            .map(Mutex::new)
            .collect();
        if src_chunks.len() != dst_chunks.len() {
            return Err(self.bad(format!(
                "{} bytes of {} and {} bytes of {} are not the same number of rows",
                src.len(),
                self.from,
                dst.len(),
                self.to
            )));
        }
        let first_error: Mutex<Option<QuantError>> = Mutex::new(None);
        pool.run(src_chunks.len(), &|i| {
            let mut dst_chunk = dst_chunks[i].lock().unwrap_or_else(|e| e.into_inner());
            if let Err(err) = self.convert_chunk(from, to, src_chunks[i], &mut dst_chunk) {
                first_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(err);
            }
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn convert_chunk(
        &self,
        from: DType,
        to: DType,
        src: &[u8],
        dst: &mut [u8],
    ) -> Result<(), QuantError> {
        let n_elements = src.len() / self.row_bytes(from)?.max(1) * self.row_len;
        let mut scratch = vec![0f32; n_elements];
        dequantize_row(from, src, &mut scratch).map_err(|e| self.bad(e.to_string()))?;
        quantize_row(to, &scratch, dst).map_err(|e| self.bad(e.to_string()))?;
        match invalid_data(self.to, dst) {
            Some(reason) => Err(QuantError::InvalidData {
                tensor: self.tensor.to_string(),
                to: self.to,
                reason,
            }),
            None => Ok(()),
        }
    }

    fn dtype(&self, ggml_type: GgmlType) -> Result<DType, QuantError> {
        dtype_of(ggml_type).ok_or_else(|| QuantError::UnreadableType {
            tensor: self.tensor.to_string(),
            ggml_type,
        })
    }

    fn row_bytes(&self, dtype: DType) -> Result<usize, QuantError> {
        dtype.row_bytes(self.row_len).ok_or_else(|| {
            self.bad(format!(
                "a row of {} elements is not a whole number of {dtype} blocks",
                self.row_len
            ))
        })
    }

    fn bad(&self, reason: String) -> QuantError {
        QuantError::BadTensor {
            tensor: self.tensor.to_string(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn threads_and_chunks_do_not_change_a_byte() {
        let row_len = 96;
        let n_rows = 3 * TASK_ELEMENTS / row_len + 5;
        let values: Vec<f32> = (0..row_len * n_rows)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
            .collect();
        let src = to_bytes(&values);
        let mut whole = vec![0u8; n_rows * 3 * 34];
        quantize_row(DType::Q8_0, &values, &mut whole).unwrap();
        for n_threads in [1, 3] {
            let pool = ThreadPool::new(n_threads).unwrap();
            let mut dst = vec![0u8; whole.len()];
            let job = RowConversion {
                tensor: "t",
                from: GgmlType::F32,
                to: GgmlType::Q8_0,
                row_len,
            };
            job.run(&pool, &src, &mut dst).unwrap();
            assert!(dst == whole, "{n_threads} threads");
        }
    }

    #[test]
    fn a_value_that_overflows_the_target_is_refused() {
        let pool = ThreadPool::new(1).unwrap();
        let src = to_bytes(&[1.0, 1e6, 0.0, 0.0]);
        let mut dst = vec![0u8; 8];
        let job = RowConversion {
            tensor: "big",
            from: GgmlType::F32,
            to: GgmlType::F16,
            row_len: 4,
        };
        let err = job.run(&pool, &src, &mut dst).unwrap_err().to_string();
        assert!(err.contains("big") && err.contains("validation"), "{err}");
    }
}
