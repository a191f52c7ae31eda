//! Several matrix products over chosen rows of one activation matrix, as one op: the
//! experts of a mixture-of-experts layer, each meeting the rows routed to it.
//!
//! The activations are quantized once (not once per product that takes a row), the
//! rows of each product gathered into one contiguous run, and where every matrix is
//! packed with the same type and width all the products run as one op of the pool,
//! their tasks (expert × weight row chunk × activation row chunk) shared by the threads.
//! Otherwise each product runs as [`matmul`] would run it alone.

use crate::matmul::{matmul, quantize_rows, Activations, WeightMatrix};
use crate::matmul_packed::{run_packed_jobs, PackedJob};
use crate::packed::{activation_scales, Layout};
use crate::pool::{SyncMutPtr, ThreadPool};

/// One product of [`matmul_gathered`]: `out[k] = w · x[rows[k]]`.
pub struct GatheredProduct<'w, 'o> {
    pub w: WeightMatrix<'w>,
    /// The activation rows this product takes, by index into `x`, in output order.
    pub rows: &'o [usize],
    /// `[rows.len(), w.n_rows]`.
    pub out: &'o mut [f32],
}

/// Buffers of [`matmul_gathered`], kept by the caller between calls.
#[derive(Default)]
pub struct GatherScratch {
    /// Every row of `x` in the dot partner type.
    quantized: Vec<u8>,
    /// The products' rows, gathered one run per product.
    gathered: Vec<u8>,
    /// One product's rows in f32 (where the products run one by one).
    rows_f32: Vec<f32>,
}

/// Runs every product of `products` over the rows of `x` (`[n_x_rows, n_cols]`, each
/// product's `w.n_cols == n_cols`), as one op of the pool where the matrices allow.
///
/// # Panics
/// If a product's row index is out of `x`, or an output or width does not fit its
/// shape: callers build these from their own routing, never from input.
pub fn matmul_gathered(
    pool: &ThreadPool,
    products: &mut [GatheredProduct<'_, '_>],
    x: &[f32],
    n_cols: usize,
    scratch: &mut GatherScratch,
    activations: Activations,
) {
    let n_x_rows = x.len() / n_cols.max(1);
    for p in products.iter() {
        assert_eq!(p.w.n_cols, n_cols, "matmul_gathered: width");
        assert_eq!(
            p.out.len(),
            p.rows.len() * p.w.n_rows,
            "matmul_gathered: output"
        );
        assert!(
            p.rows.iter().all(|&r| r < n_x_rows),
            "matmul_gathered: row index"
        );
    }
    let Some(first) = products.first() else {
        return;
    };
    let (dtype, partner) = (first.w.dtype, first.w.dtype.vec_dot_type());
    let packed_alike = activations == Activations::Quantized
        && products
            .iter()
            .all(|p| p.w.layout == Layout::Interleaved8 && p.w.dtype == dtype);
    if !packed_alike {
        for p in products.iter_mut() {
            let rows = &mut scratch.rows_f32;
            rows.clear();
            for &r in p.rows {
                rows.extend_from_slice(&x[r * n_cols..(r + 1) * n_cols]);
            }
            matmul(
                pool,
                &p.w,
                rows,
                p.rows.len(),
                p.out,
                &mut scratch.gathered,
                activations,
            );
        }
        return;
    }

    let row_bytes = quantize_rows(pool, partner, x, n_x_rows, n_cols, &mut scratch.quantized);
    let n_gathered: usize = products.iter().map(|p| p.rows.len()).sum();
    let gathered = &mut scratch.gathered;
    gathered.clear();
    for p in products.iter() {
        for &r in p.rows {
            gathered.extend_from_slice(&scratch.quantized[r * row_bytes..(r + 1) * row_bytes]);
        }
    }
    let x_scales = activation_scales(partner, gathered, n_cols, n_gathered);
    let scales_width = x_scales.len() / n_gathered.max(1);
    let mut jobs = Vec::with_capacity(products.len());
    let mut start = 0;
    for p in products.iter_mut() {
        let n = p.rows.len();
        jobs.push(PackedJob {
            w: p.w,
            x: &gathered[start * row_bytes..(start + n) * row_bytes],
            x_scales: &x_scales[start * scales_width..(start + n) * scales_width],
            n_x_rows: n,
            out: SyncMutPtr::new(p.out),
        });
        start += n;
    }
    run_packed_jobs(pool, &jobs, row_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::packed::pack;
    use crate::simd::gemm::tests::values;

    /// Gathered products equal [`matmul`] of each matrix on its rows alone, bit for bit,
    /// packed or not, with rows taken by several products, by none, and repeated.
    #[test]
    fn gathered_products_equal_separate_products() {
        let mut seed = 0xC0FF_EE00_u64;
        let (n_cols, n_x_rows) = (96, 7);
        let x = values(&mut seed, n_cols * n_x_rows);
        for dtype in [DType::Q8_0, DType::Mxfp4, DType::Q4_0] {
            let quantize = dtype.scalar_traits().from_f32.unwrap();
            let row_bytes = dtype.row_bytes(n_cols).unwrap();
            let shapes = [16usize, 24, 8];
            let stored: Vec<Vec<u8>> = shapes
                .iter()
                .map(|&n_rows| {
                    let mut w = vec![0u8; n_rows * row_bytes];
                    for row in w.chunks_exact_mut(row_bytes) {
                        quantize(&values(&mut seed, n_cols), row);
                    }
                    w
                })
                .collect();
            let packed: Vec<Vec<u8>> = stored
                .iter()
                .zip(shapes)
                .map(|(w, n_rows)| pack(dtype, w, n_rows, n_cols).unwrap())
                .collect();
            let rows: [&[usize]; 3] = [&[0, 3, 6], &[1, 1, 5, 2], &[]];
            for n_threads in [1, 2, 3] {
                let pool = ThreadPool::new(n_threads).unwrap();
                for use_packed in [false, true] {
                    let ws: Vec<WeightMatrix<'_>> = (0..3)
                        .map(|i| match use_packed {
                            true => {
                                WeightMatrix::packed(dtype, &packed[i], shapes[i], n_cols).unwrap()
                            }
                            false => {
                                WeightMatrix::new(dtype, &stored[i], shapes[i], n_cols).unwrap()
                            }
                        })
                        .collect();
                    let mut outs: Vec<Vec<f32>> = (0..3)
                        .map(|i| vec![f32::NAN; rows[i].len() * shapes[i]])
                        .collect();
                    let mut products: Vec<GatheredProduct<'_, '_>> = ws
                        .iter()
                        .zip(outs.iter_mut())
                        .zip(rows)
                        .map(|((w, out), rows)| GatheredProduct { w: *w, rows, out })
                        .collect();
                    let mut scratch = GatherScratch::default();
                    matmul_gathered(
                        &pool,
                        &mut products,
                        &x,
                        n_cols,
                        &mut scratch,
                        Activations::Quantized,
                    );
                    for i in 0..3 {
                        let xs: Vec<f32> = rows[i]
                            .iter()
                            .flat_map(|&r| x[r * n_cols..(r + 1) * n_cols].to_vec())
                            .collect();
                        let mut want = vec![0.0f32; rows[i].len() * shapes[i]];
                        let w = WeightMatrix::new(dtype, &stored[i], shapes[i], n_cols).unwrap();
                        let mut bytes = Vec::new();
                        matmul(
                            &pool,
                            &w,
                            &xs,
                            rows[i].len(),
                            &mut want,
                            &mut bytes,
                            Activations::Quantized,
                        );
                        let same = outs[i]
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{dtype} product {i}, packed {use_packed}, {n_threads} threads"
                        );
                    }
                }
            }
        }
    }
}
