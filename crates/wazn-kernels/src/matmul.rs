//! Matrix products with weights that stay in their stored (often quantized) type.
//!
//! `out[r, o] = Σ_i x[r, i] · W[o, i]`: each row of the activations is quantized once
//! to the weight type's dot partner (float weights read f32 activations in place).
//! Matrices packed at load ([`crate::packed`]) go to their own kernels
//! (`matmul_packed`), from one activation row up. For rows as stored: where the SIMD
//! level has a register-tiled kernel
//! for the weight type (`simd::gemm`: a few weight rows × a few activation rows per
//! tile), tasks are (weight row chunk × activation row chunk) rectangles of it.
//! Otherwise every (activation row, weight row) pair is one `vec_dot` of the dtype
//! table, four activation rows at a time where the table has a four-row kernel
//! (`vec_dot_x4`), and work is split over weight rows. Either way a thread reads its
//! slice of the weights once for all the activation rows of its task.

use std::cell::RefCell;

use crate::dtype::DType;
use crate::matmul_packed::packed_products;
use crate::packed::{packed_len, unpack_row, Layout};
use crate::pool::{SyncMutPtr, ThreadPool};
use crate::simd::{gemm, Isa};

/// A weight matrix `[n_rows, n_cols]` in its stored type: `n_rows` output features of
/// `n_cols` input features each, row after row or packed ([`crate::packed`]).
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    pub dtype: DType,
    pub data: &'a [u8],
    pub n_rows: usize,
    pub n_cols: usize,
    pub layout: Layout,
}

impl<'a> WeightMatrix<'a> {
    /// Checks that `data` holds exactly `n_rows` rows of `n_cols` values of `dtype`.
    pub fn new(
        dtype: DType,
        data: &'a [u8],
        n_rows: usize,
        n_cols: usize,
    ) -> Result<Self, ShapeError> {
        let expected = dtype.row_bytes(n_cols).and_then(|b| b.checked_mul(n_rows));
        Self::checked(dtype, data, n_rows, n_cols, expected, Layout::Rows)
    }

    /// Checks that `data` holds an `[n_rows, n_cols]` matrix of `dtype` in the packed
    /// layout of [`crate::packed::pack`].
    pub fn packed(
        dtype: DType,
        data: &'a [u8],
        n_rows: usize,
        n_cols: usize,
    ) -> Result<Self, ShapeError> {
        let expected = packed_len(dtype, n_rows, n_cols);
        Self::checked(dtype, data, n_rows, n_cols, expected, Layout::Interleaved8)
    }

    /// The matrix, if `data` has the `expected` length of its shape in `layout`.
    fn checked(
        dtype: DType,
        data: &'a [u8],
        n_rows: usize,
        n_cols: usize,
        expected: Option<usize>,
        layout: Layout,
    ) -> Result<Self, ShapeError> {
        if expected != Some(data.len()) {
            return Err(ShapeError {
                dtype,
                n_rows,
                n_cols,
                n_bytes: data.len(),
            });
        }
        Ok(WeightMatrix {
            dtype,
            data,
            n_rows,
            n_cols,
            layout,
        })
    }

    /// Bytes of one row as stored.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.n_cols).unwrap_or(0)
    }

    /// The stored bytes of row `row` of a matrix stored row after row.
    fn row(&self, row: usize) -> &'a [u8] {
        let n = self.row_bytes();
        &self.data[row * n..(row + 1) * n]
    }

    /// Dequantizes row `row` into `out` (`n_cols` values): an embedding lookup.
    pub fn dequantize_row_into(&self, row: usize, out: &mut [f32]) {
        let to_f32 = self.dtype.traits().to_f32;
        match self.layout {
            Layout::Rows => to_f32(self.row(row), out),
            Layout::Interleaved8 => {
                let mut stored = vec![0u8; self.row_bytes()];
                if unpack_row(self.dtype, self.data, self.n_cols, row, &mut stored).is_some() {
                    to_f32(&stored, out);
                }
            }
        }
    }
}

/// A weight matrix whose bytes do not hold the shape it was given.
#[derive(Debug, thiserror::Error)]
#[error("{n_bytes} bytes are not a {n_rows}x{n_cols} matrix of {dtype:?} (block size {})", dtype.block_size())]
pub struct ShapeError {
    pub dtype: DType,
    pub n_rows: usize,
    pub n_cols: usize,
    pub n_bytes: usize,
}

/// Weight rows per task: enough work per task to amortize the atomic counter, small
/// enough to balance threads on matrices of a few hundred rows.
const ROWS_PER_TASK: usize = 16;

/// How activations meet the weights in a matrix product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// Quantized once per product to the weight type's dot partner (8-bit for
    /// quantized weights) and multiplied with integer dot products: the fast path,
    /// as llama.cpp computes.
    #[default]
    Quantized,
    /// Kept in f32 and multiplied with dequantized weight rows: slower, and as close
    /// to a f32 reference implementation as the weights allow.
    F32,
}

/// `out[r, o] = Σ_i x[r, i] · w[o, i]` for `r < n_x_rows`.
///
/// `x` is `[n_x_rows, w.n_cols]`, `out` is `[n_x_rows, w.n_rows]`. `scratch` holds
/// the activations quantized to the dot partner type; it is grown as needed.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    x: &[f32],
    n_x_rows: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    activations: Activations,
) {
    assert_eq!(x.len(), n_x_rows * w.n_cols, "matmul: activations shape");
    assert_eq!(out.len(), n_x_rows * w.n_rows, "matmul: output shape");
    match activations {
        Activations::Quantized => matmul_quantized(pool, w, x, n_x_rows, out, scratch),
        Activations::F32 => matmul_f32(pool, w, x, n_x_rows, out),
    }
}

/// `x` (`[n_x_rows, n_cols]`) quantized into `scratch` to `partner`, one task per row:
/// returns the bytes of one quantized row.
pub(crate) fn quantize_rows(
    pool: &ThreadPool,
    partner: DType,
    x: &[f32],
    n_x_rows: usize,
    n_cols: usize,
    scratch: &mut Vec<u8>,
) -> usize {
    let partner_row_bytes = partner
        .row_bytes(n_cols)
        .unwrap_or_else(|| panic!("matmul: {n_cols} columns do not fit {partner:?} blocks"));
    let quantize = partner
        .traits()
        .from_f32
        .unwrap_or_else(|| panic!("matmul: {partner:?} has no quantizer"));
    scratch.resize(n_x_rows * partner_row_bytes, 0);
    let partner_rows = SyncMutPtr::new(scratch);
    pool.run(n_x_rows, &|r| {
        // SAFETY: each task writes its own row of the scratch buffer.
        let dst = unsafe { partner_rows.slice_mut(r * partner_row_bytes, partner_row_bytes) };
        quantize(&x[r * n_cols..(r + 1) * n_cols], dst);
    });
    partner_row_bytes
}

/// The products of several matrices with the same activations (a layer's q, k and v,
/// or its gate and up projections): `outs[i]` as [`matmul`] gives it for `ws[i]`.
///
/// Where every matrix is packed with the same type and width, the activations are
/// quantized once and all the products run as one op of the pool (one barrier instead
/// of one per matrix, which counts in a decode step); otherwise one after another.
pub fn matmul_shared_input(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    x: &[f32],
    n_x_rows: usize,
    outs: &mut [&mut [f32]],
    scratch: &mut Vec<u8>,
    activations: Activations,
) {
    assert_eq!(
        ws.len(),
        outs.len(),
        "matmul_shared_input: one output per matrix"
    );
    let shared = ws.first().filter(|first| {
        activations == Activations::Quantized
            && ws.iter().all(|w| {
                w.layout == Layout::Interleaved8
                    && w.dtype == first.dtype
                    && w.n_cols == first.n_cols
            })
    });
    let Some(first) = shared else {
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            matmul(pool, w, x, n_x_rows, out, scratch, activations);
        }
        return;
    };
    assert_eq!(
        x.len(),
        n_x_rows * first.n_cols,
        "matmul: activations shape"
    );
    for (w, out) in ws.iter().zip(outs.iter()) {
        assert_eq!(out.len(), n_x_rows * w.n_rows, "matmul: output shape");
    }
    let partner = first.dtype.vec_dot_type();
    let partner_row_bytes = quantize_rows(pool, partner, x, n_x_rows, first.n_cols, scratch);
    packed_products(pool, ws, scratch, partner_row_bytes, n_x_rows, outs);
}

fn matmul_quantized(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    x: &[f32],
    n_x_rows: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
) {
    let n_cols = w.n_cols;
    let traits = w.dtype.traits();
    let partner = traits.vec_dot_type;
    let (partner_data, partner_row_bytes): (&[u8], usize) =
        if partner == DType::F32 && cfg!(target_endian = "little") {
            // Float weights meet the activations as they are: f32 rows are their own
            // partner rows (little-endian f32), so they are read in place, not copied.
            // SAFETY: any initialized f32 is 4 initialized bytes, and u8 needs no
            // alignment; the view lives no longer than `x`.
            let bytes = unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), x.len() * 4) };
            (bytes, n_cols * 4)
        } else {
            let row_bytes = quantize_rows(pool, partner, x, n_x_rows, n_cols, scratch);
            (scratch.as_slice(), row_bytes)
        };

    if w.layout == Layout::Interleaved8 {
        let mut outs = [out];
        packed_products(
            pool,
            &[*w],
            partner_data,
            partner_row_bytes,
            n_x_rows,
            &mut outs,
        );
        return;
    }

    // A single activation row (one decode step) is bound by reading the weights, which
    // the table's `vec_dot` does as one stream; tiles pay off from two rows on.
    if let Some(tiled) = gemm::kernel(Isa::best(), w.dtype).filter(|_| n_x_rows > 1) {
        tiled_products(
            pool,
            tiled,
            w,
            partner_data,
            partner_row_bytes,
            n_x_rows,
            out,
        );
        return;
    }

    let vec_dot = traits.vec_dot;
    let vec_dot_x4 = traits.vec_dot_x4;
    let n_out = w.n_rows;
    let out_ptr = SyncMutPtr::new(out);
    let x_row = |r: usize| &partner_data[r * partner_row_bytes..(r + 1) * partner_row_bytes];
    // SAFETY (both writes): output element (r, o) belongs to the task that owns weight row o.
    let store = |r: usize, o: usize, value: f32| unsafe {
        out_ptr.slice_mut(r * n_out + o, 1)[0] = value;
    };
    pool.run_chunks(n_out, ROWS_PER_TASK, &|start, end| {
        // Four activation rows at a time against every weight row of the task: each
        // weight block is loaded once per four rows, and the task's weight rows and the
        // four activation rows stay in L1 across the inner loop.
        let mut r = 0;
        if let Some(x4) = vec_dot_x4 {
            while r + 4 <= n_x_rows {
                let xs = [x_row(r), x_row(r + 1), x_row(r + 2), x_row(r + 3)];
                for o in start..end {
                    let dots = x4(n_cols, w.row(o), xs);
                    for (k, &dot) in dots.iter().enumerate() {
                        store(r + k, o, dot);
                    }
                }
                r += 4;
            }
        }
        for r in r..n_x_rows {
            let x = x_row(r);
            for o in start..end {
                store(r, o, vec_dot(n_cols, w.row(o), x));
            }
        }
    });
}

/// The products by a tiled kernel, over (weight row chunk × activation row chunk)
/// tasks, activation chunks outermost so that the threads share one chunk at a time.
fn tiled_products(
    pool: &ThreadPool,
    tiled: gemm::Tiled,
    w: &WeightMatrix<'_>,
    partner_data: &[u8],
    partner_row_bytes: usize,
    n_x_rows: usize,
    out: &mut [f32],
) {
    let n_out = w.n_rows;
    let w_row_bytes = w.row_bytes();
    let (w_rows_per_task, x_rows_per_task) = gemm::task_shape(w.dtype);
    let n_w_chunks = n_out.div_ceil(w_rows_per_task);
    let n_x_chunks = n_x_rows.div_ceil(x_rows_per_task);
    // Per activation row tables, once for every task: `[n_x_rows, width]`.
    let x_tables = (tiled.prepare)(w.n_cols, partner_data, n_x_rows);
    let width = x_tables.len() / n_x_rows.max(1);
    let out_ptr = SyncMutPtr::new(out);
    thread_local! {
        /// Each thread's results of its current task, reused from task to task.
        static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    pool.run(n_w_chunks * n_x_chunks, &|task| {
        let (x_chunk, w_chunk) = (task / n_w_chunks, task % n_w_chunks);
        let o0 = w_chunk * w_rows_per_task;
        let o1 = (o0 + w_rows_per_task).min(n_out);
        let r0 = x_chunk * x_rows_per_task;
        let r1 = (r0 + x_rows_per_task).min(n_x_rows);
        let (n_w, n_x) = (o1 - o0, r1 - r0);
        BLOCK.with(|block| {
            let mut block = block.borrow_mut();
            // The task's results `[n_x, n_w]`, then copied to its rectangle of `out`.
            block.clear();
            block.resize(n_x * n_w, 0.0);
            (tiled.run)(
                w.n_cols,
                &w.data[o0 * w_row_bytes..o1 * w_row_bytes],
                n_w,
                &partner_data[r0 * partner_row_bytes..r1 * partner_row_bytes],
                n_x,
                &x_tables[r0 * width..r1 * width],
                &mut block,
            );
            for (r, row) in block.chunks_exact(n_w).enumerate() {
                // SAFETY: out[r0 + r, o0..o1] belongs to this task alone (its rectangle
                // of activation rows × weight rows).
                let dst = unsafe { out_ptr.slice_mut((r0 + r) * n_out + o0, n_w) };
                // Whole runs of 8 copy inline; a call to `memcpy` per row of a few
                // dozen bytes costs more than the copy.
                let mut dst8 = dst.chunks_exact_mut(8);
                let mut row8 = row.chunks_exact(8);
                for (d, s) in (&mut dst8).zip(&mut row8) {
                    d.copy_from_slice(s);
                }
                for (d, s) in dst8.into_remainder().iter_mut().zip(row8.remainder()) {
                    *d = *s;
                }
            }
        });
    });
}

fn matmul_f32(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    x: &[f32],
    n_x_rows: usize,
    out: &mut [f32],
) {
    let n_cols = w.n_cols;
    let n_out = w.n_rows;
    let out_ptr = SyncMutPtr::new(out);
    pool.run_chunks(n_out, ROWS_PER_TASK, &|start, end| {
        let mut w_row = vec![0.0f32; n_cols];
        for o in start..end {
            w.dequantize_row_into(o, &mut w_row);
            for r in 0..n_x_rows {
                let x_row = &x[r * n_cols..(r + 1) * n_cols];
                let dot = crate::ops::dot(&w_row, x_row);
                // SAFETY: output element (r, o) belongs to the task that owns weight row o.
                unsafe { out_ptr.slice_mut(r * n_out + o, 1)[0] = dot };
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::packed::tests::weight_rows;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn matmul_equals_dequantized_reference_for_every_weight_type() {
        let pool = ThreadPool::new(3).unwrap();
        let mut seed = 7u64;
        for &dtype in &[
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
            DType::Q2_K,
            DType::Q3_K,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
        ] {
            let Some(quantize_w) = dtype.traits().from_f32 else {
                continue;
            };
            let (n_rows, n_cols, n_x) = (37, 512, 3);
            let w_f32: Vec<f32> = (0..n_rows * n_cols).map(|_| lcg(&mut seed)).collect();
            let mut w_bytes = vec![0u8; n_rows * dtype.row_bytes(n_cols).unwrap()];
            for (src, dst) in w_f32
                .chunks(n_cols)
                .zip(w_bytes.chunks_mut(dtype.row_bytes(n_cols).unwrap()))
            {
                quantize_w(src, dst);
            }
            let w = WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).unwrap();
            let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
            let mut out = vec![0.0; n_x * n_rows];
            matmul(
                &pool,
                &w,
                &x,
                n_x,
                &mut out,
                &mut Vec::new(),
                Activations::Quantized,
            );
            let mut exact_out = vec![0.0; n_x * n_rows];
            matmul(
                &pool,
                &w,
                &x,
                n_x,
                &mut exact_out,
                &mut Vec::new(),
                Activations::F32,
            );

            // x as the quantized product reads it: quantized to the partner type and back.
            let partner = dtype.vec_dot_type().scalar_traits();
            let partner_row_bytes = partner.dtype.row_bytes(n_cols).unwrap();
            let mut x_partner = vec![0.0; n_x * n_cols];
            for (src, dst) in x.chunks(n_cols).zip(x_partner.chunks_mut(n_cols)) {
                let mut bytes = vec![0u8; partner_row_bytes];
                (partner.from_f32.unwrap())(src, &mut bytes);
                (partner.to_f32)(&bytes, dst);
            }

            let mut w_row = vec![0.0; n_cols];
            for o in 0..n_rows {
                w.dequantize_row_into(o, &mut w_row);
                for r in 0..n_x {
                    let x_row = &x[r * n_cols..(r + 1) * n_cols];
                    let exact: f32 = w_row.iter().zip(x_row).map(|(a, b)| a * b).sum();
                    assert!((exact_out[r * n_rows + o] - exact).abs() < 1e-4 * (1.0 + exact.abs()));
                    // The quantized product is the dot product with the partner-rounded x,
                    // up to f32 rounding in another order (bounded by the sum of |terms|).
                    let x_row = &x_partner[r * n_cols..(r + 1) * n_cols];
                    let want: f32 = w_row.iter().zip(x_row).map(|(a, b)| a * b).sum();
                    let magnitude: f32 = w_row.iter().zip(x_row).map(|(a, b)| (a * b).abs()).sum();
                    let got = out[r * n_rows + o];
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + magnitude),
                        "{dtype:?} ({r},{o}): {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_other_rows() {
        // Odd row counts exercise the tiles, the four-row kernels and the rows left
        // over. For the block types a row's result is the dtype table's `vec_dot` bit
        // for bit, alone or with any other rows; for F16 and BF16 it does not depend on the
        // other rows of a product of two rows or more (a single row takes `vec_dot`,
        // which sums in another order).
        let pool = ThreadPool::new(3).unwrap();
        let mut seed = 11u64;
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q8_0,
            DType::F16,
            DType::BF16,
        ] {
            let (n_rows, n_cols) = (45, 256);
            let row_bytes = dtype.row_bytes(n_cols).unwrap();
            let mut w_bytes = vec![0u8; n_rows * row_bytes];
            for dst in w_bytes.chunks_mut(row_bytes) {
                let src: Vec<f32> = (0..n_cols).map(|_| lcg(&mut seed)).collect();
                (dtype.traits().from_f32.unwrap())(&src, dst);
            }
            let w = WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).unwrap();
            let partner = dtype.vec_dot_type();
            let partner_bytes = partner.row_bytes(n_cols).unwrap();
            for n_x in [1, 4, 7, 13, 70] {
                let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
                let mut out = vec![0.0; n_x * n_rows];
                let mut scratch = Vec::new();
                matmul(
                    &pool,
                    &w,
                    &x,
                    n_x,
                    &mut out,
                    &mut scratch,
                    Activations::Quantized,
                );
                for r in 0..n_x {
                    // Row r twice: a product of two rows without the others.
                    let row = &x[r * n_cols..(r + 1) * n_cols];
                    let twice: Vec<f32> = row.iter().chain(row).copied().collect();
                    let mut alone = vec![0.0; 2 * n_rows];
                    matmul(
                        &pool,
                        &w,
                        &twice,
                        2,
                        &mut alone,
                        &mut Vec::new(),
                        Activations::Quantized,
                    );
                    // The quantized activations (F16 and BF16 read their f32 rows in place).
                    let x_row = scratch.get(r * partner_bytes..(r + 1) * partner_bytes);
                    for o in 0..n_rows {
                        let got = out[r * n_rows + o];
                        if n_x > 1 {
                            assert_eq!(got, alone[o], "{dtype} n_x={n_x} ({r},{o}) vs twice");
                        }
                        if !matches!(dtype, DType::F16 | DType::BF16) {
                            let x_row = x_row.expect("the quantized activations in scratch");
                            let want = (dtype.traits().vec_dot)(n_cols, w.row(o), x_row);
                            assert_eq!(got, want, "{dtype} n_x={n_x} ({r},{o})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packed_matrices_give_the_products_of_their_rows() {
        // Every packed type, bit for bit the same as the matrix stored row after row,
        // whatever the row count (a ragged last group, an odd pair of groups), activation
        // rows, threads and activation type.
        let mut seed = 23u64;
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for dtype in crate::packed::PACKED_TYPES {
                let k_quant = dtype.block_size() == 256;
                let shapes = if k_quant {
                    [(45, 256), (8, 512), (300, 256)]
                } else {
                    [(45, 256), (8, 32), (300, 96)]
                };
                for (n_rows, n_cols) in shapes {
                    let w_bytes = weight_rows(dtype, n_rows, n_cols, &mut seed);
                    let rows = WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).unwrap();
                    let packed_bytes = crate::packed::pack(dtype, &w_bytes, n_rows, n_cols);
                    let packed_bytes = packed_bytes.unwrap();
                    let packed =
                        WeightMatrix::packed(dtype, &packed_bytes, n_rows, n_cols).unwrap();
                    assert!(WeightMatrix::packed(dtype, &w_bytes, n_rows + 8, n_cols).is_err());
                    for n_x in [1, 4, 7, 70] {
                        let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
                        for activations in [Activations::Quantized, Activations::F32] {
                            let product = |w: &WeightMatrix<'_>| {
                                let mut out = vec![f32::NAN; n_x * n_rows];
                                matmul(&pool, w, &x, n_x, &mut out, &mut Vec::new(), activations);
                                out
                            };
                            let (want, got) = (product(&rows), product(&packed));
                            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                                assert_eq!(a.to_bits(), b.to_bits(), "{dtype} {n_x} {i}");
                            }
                        }
                    }
                    let (mut a, mut b) = (vec![0.0; n_cols], vec![0.0; n_cols]);
                    for o in [0, n_rows / 2, n_rows - 1] {
                        rows.dequantize_row_into(o, &mut a);
                        packed.dequantize_row_into(o, &mut b);
                        assert_eq!(a, b);
                    }
                }
            }
        }
    }

    #[test]
    fn shared_input_products_equal_separate_ones() {
        let mut seed = 31u64;
        let n_cols = 96;
        for dtype in [DType::Q8_0, DType::Q4_1] {
            let shapes = [45usize, 13, 64];
            let row_bytes = dtype.row_bytes(n_cols).unwrap();
            let stored: Vec<Vec<u8>> = shapes
                .iter()
                .map(|&n_rows| {
                    let mut bytes = vec![0u8; n_rows * row_bytes];
                    for dst in bytes.chunks_mut(row_bytes) {
                        let src: Vec<f32> = (0..n_cols).map(|_| lcg(&mut seed)).collect();
                        (dtype.traits().from_f32.unwrap())(&src, dst);
                    }
                    bytes
                })
                .collect();
            let packed: Vec<Vec<u8>> = stored
                .iter()
                .zip(shapes)
                .map(|(b, n_rows)| crate::packed::pack(dtype, b, n_rows, n_cols).unwrap())
                .collect();
            for threads in [1, 3] {
                let pool = ThreadPool::new(threads).unwrap();
                for n_x in [1, 5, 67] {
                    let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
                    // All packed (one op), then one of them stored by rows (one by one).
                    for mixed in [false, true] {
                        let ws: Vec<WeightMatrix<'_>> = (0..3)
                            .map(
                                |i| match (mixed && i == 1, crate::packed::worth_packing(dtype)) {
                                    (false, true) => {
                                        WeightMatrix::packed(dtype, &packed[i], shapes[i], n_cols)
                                    }
                                    _ => WeightMatrix::new(dtype, &stored[i], shapes[i], n_cols),
                                },
                            )
                            .map(Result::unwrap)
                            .collect();
                        let mut outs: Vec<Vec<f32>> =
                            shapes.iter().map(|&n| vec![f32::NAN; n_x * n]).collect();
                        let mut out_slices: Vec<&mut [f32]> =
                            outs.iter_mut().map(Vec::as_mut_slice).collect();
                        matmul_shared_input(
                            &pool,
                            &ws,
                            &x,
                            n_x,
                            &mut out_slices,
                            &mut Vec::new(),
                            Activations::Quantized,
                        );
                        for (w, got) in ws.iter().zip(&outs) {
                            let mut want = vec![0.0; got.len()];
                            let q = Activations::Quantized;
                            matmul(&pool, w, &x, n_x, &mut want, &mut Vec::new(), q);
                            let same = want
                                .iter()
                                .zip(got)
                                .all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(same, "{dtype} n_x={n_x} mixed={mixed} rows={}", w.n_rows);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weight_matrix_rejects_wrong_sizes() {
        assert!(WeightMatrix::new(DType::Q4_0, &[0u8; 18], 1, 32).is_ok());
        assert!(WeightMatrix::new(DType::Q4_0, &[0u8; 17], 1, 32).is_err());
        assert!(WeightMatrix::new(DType::Q4_0, &[0u8; 18], 1, 33).is_err());
    }
}
