//! Register-tiled matrix-product kernels: a few weight rows against a few activation
//! rows at a time, the partial sums of the whole tile in registers, each weight block
//! loaded and unpacked once per tile.
//!
//! The weights are used as mapped (no copy at load): a kernel may rearrange or widen
//! the few weight rows of one call into a small per-thread buffer.
//!
//! A kernel takes a slice of weight rows and a slice of activation rows (already in the
//! weight type's dot partner) and writes every result to a small output block. Which
//! kernel runs is chosen at run time with the rest of the SIMD level ([`kernel`]); where
//! a level has none for a type, the matrix product falls back to the dtype table's
//! `vec_dot`.
//!
//! Results, per (weight row, activation row) pair:
//! - Q8_0 · Q8_0 and Q4_1 · Q8_1: bit for bit the scalar `vec_dot` (exact integer block
//!   sums, then the reference's f32 arithmetic per block in the reference's order, one
//!   vector lane per pair), whatever the tile shape or the rows computed together.
//! - F16 / BF16 · F32: one fused multiply-add chain per pair over the columns in order (the
//!   weight rows widened and transposed into 16-row panels): the same for a pair
//!   whatever the tile shape, so a row's result does not depend on the other rows of
//!   the product; it differs from the scalar sum (and from the table's `vec_dot`, which
//!   the matrix product uses for a single activation row, where it reads the weights
//!   faster) by its rounding only.
//!
//! Packed weights ([`crate::packed`]) have kernels of their own (`simd::packed`).

use super::Isa;
use crate::dtype::DType;

#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_f16;

/// `out[r · n_w_rows + o] = Σ_i w[o, i] · x[r, i]` for every `o < n_w_rows`,
/// `r < n_x_rows`.
///
/// `w`: `n_w_rows` contiguous weight rows of `n_cols` values; `x`: `n_x_rows`
/// contiguous rows of the dot partner type; `x_tables`: those rows' part of the
/// [`PrepareFn`] tables; `out`: `[n_x_rows, n_w_rows]`. Rows that do not fit short
/// slices get no results.
pub(crate) type GemmFn = fn(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    x_tables: &[f32],
    out: &mut [f32],
);

/// Tables a kernel reads for each activation row (e.g. its block scales, widened),
/// computed once per product rather than once per task: `[n_x_rows, width]` with the
/// same width for every row (0 for kernels that need none).
pub(crate) type PrepareFn = fn(n_cols: usize, x: &[u8], n_x_rows: usize) -> Vec<f32>;

/// A tiled kernel and the per-row tables it reads.
#[derive(Clone, Copy)]
pub(crate) struct Tiled {
    pub prepare: PrepareFn,
    pub run: GemmFn,
}

/// The tiled kernel of `isa` for weights of `dtype`, if it has one and this CPU runs
/// `isa`.
pub(crate) fn kernel(isa: Isa, dtype: DType) -> Option<Tiled> {
    match isa {
        Isa::Scalar => None,
        Isa::Avx2 | Isa::Avx512 if isa.is_available() => avx2_kernel(dtype),
        Isa::Avx2 | Isa::Avx512 => None,
    }
}

/// (weight rows, activation rows) per task of a tiled product of `dtype` weights.
///
/// A task's weight rows (as the kernel rearranges or widens them) are meant to stay in
/// L1/L2 while its activation rows stream past, and its activation rows to stay in L2
/// for the next task, which takes the next weight rows against the same activations.
pub(crate) fn task_shape(dtype: DType) -> (usize, usize) {
    match dtype {
        // F16, BF16: a task widens and transposes its weight rows once (16-row panels that stay
        // in L2) and takes a whole prompt's activation rows past them, which pays for
        // that; 32 rows make each activation row's results a whole 128 bytes of `out`
        // (copying 64-byte runs, one per row far apart, measured slower).
        DType::F16 | DType::BF16 => (32, 512),
        _ => (32, 64),
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_kernel(dtype: DType) -> Option<Tiled> {
    use crate::packed::activation_scales;
    let (prepare, run): (PrepareFn, GemmFn) = match dtype {
        DType::Q8_0 => (
            |n_cols, x, n_x_rows| activation_scales(DType::Q8_0, x, n_cols, n_x_rows),
            x86_avx2::gemm_q8_0_q8_0,
        ),
        DType::Q4_1 => (
            |n_cols, x, n_x_rows| activation_scales(DType::Q8_1, x, n_cols, n_x_rows),
            x86_avx2::gemm_q4_1_q8_1,
        ),
        DType::F16 => (|_, _, _| Vec::new(), x86_avx2_f16::gemm_f16_f32),
        DType::BF16 => (|_, _, _| Vec::new(), x86_avx2_f16::gemm_bf16_f32),
        _ => return None,
    };
    Some(Tiled { prepare, run })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_kernel(_dtype: DType) -> Option<Tiled> {
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Uniform in [-1, 1) with a scale per 32 values spanning 1e-4 .. 1e2 (xorshift64*);
    /// the packed kernels' tests draw from it too.
    pub(crate) fn values(seed: &mut u64, n: usize) -> Vec<f32> {
        let mut next = || {
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let scale = 10f32.powi((next() % 7) as i32 - 4);
            for _ in 0..32 {
                out.push(((next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale);
            }
        }
        out.truncate(n);
        out
    }

    /// The F16 and BF16 kernels on shapes that leave a partial panel or tile (weight rows not a
    /// multiple of 16, activation rows not a multiple of 6, columns not a multiple of 8,
    /// none at all): every result within 2·γ_k·Σ|w_i·x_i| (k = n_cols + 3) of the scalar
    /// `vec_dot`, and each activation row's results the same bits when the kernel gets
    /// that row alone.
    #[test]
    fn f16_kernels_on_ragged_shapes() {
        let mut seed = 0x0F16_u64;
        for (isa, dtype) in Isa::available()
            .into_iter()
            .flat_map(|isa| [(isa, DType::F16), (isa, DType::BF16)])
        {
            let scalar = dtype.scalar_traits();
            let Some(tiled) = kernel(isa, dtype) else {
                continue;
            };
            for (n_w, n_cols, n_x) in [
                (17, 33, 7),
                (33, 100, 13),
                (16, 576, 6),
                (5, 9, 2),
                (40, 8, 11),
                (1, 1, 1),
                (3, 0, 2),
                (50, 200, 20),
            ] {
                let w_f32 = values(&mut seed, n_w * n_cols);
                let mut w = vec![0u8; n_w * n_cols * 2];
                (scalar.from_f32.unwrap())(&w_f32, &mut w);
                let x_f32 = values(&mut seed, n_x * n_cols);
                let x: Vec<u8> = x_f32.iter().flat_map(|v| v.to_le_bytes()).collect();
                let mut got = vec![f32::NAN; n_x * n_w];
                (tiled.run)(n_cols, &w, n_w, &x, n_x, &[], &mut got);
                for r in 0..n_x {
                    let x_row = &x[r * n_cols * 4..(r + 1) * n_cols * 4];
                    let mut alone = vec![f32::NAN; n_w];
                    (tiled.run)(n_cols, &w, n_w, x_row, 1, &[], &mut alone);
                    for o in 0..n_w {
                        let w_row = &w[o * n_cols * 2..(o + 1) * n_cols * 2];
                        let value = got[r * n_w + o];
                        let what = format!("{isa:?} {dtype} {n_w}x{n_cols}, {n_x} rows: ({r},{o})");
                        assert_eq!(value.to_bits(), alone[o].to_bits(), "{what}");
                        let want = (scalar.vec_dot)(n_cols, w_row, x_row);
                        let mut w_wide = vec![0.0; n_cols];
                        (scalar.to_f32)(w_row, &mut w_wide);
                        let m: f64 = w_wide
                            .iter()
                            .zip(&x_f32[r * n_cols..(r + 1) * n_cols])
                            .map(|(a, b)| (*a as f64 * *b as f64).abs())
                            .sum();
                        let ku = (n_cols + 3) as f64 * f32::EPSILON as f64 / 2.0;
                        let bound = 2.0 * ku / (1.0 - ku) * m;
                        assert!(
                            (value as f64 - want as f64).abs() <= bound,
                            "{what}: {value} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Every tiled kernel of every level this CPU runs (whatever `WAZN_KERNELS` picks),
    /// called directly, against the scalar `vec_dot`: bit for bit for the block types,
    /// within 2·γ_k·Σ|w_i·x_i| (k = n_cols + 3) for F16 and BF16, whose sums run in another
    /// order.
    #[test]
    fn tiled_kernels_match_the_scalar_dot_products() {
        let mut seed = 0x0711_1ED5_u64;
        for isa in Isa::available() {
            for dtype in [DType::Q8_0, DType::Q4_1, DType::F16, DType::BF16] {
                let Some(tiled) = kernel(isa, dtype) else {
                    continue;
                };
                let scalar = dtype.scalar_traits();
                let partner = scalar.vec_dot_type.scalar_traits();
                for (n_w, n_cols, n_x) in [(1, 32, 1), (7, 96, 5), (19, 160, 13), (8, 61, 4)] {
                    let is_float = matches!(dtype, DType::F16 | DType::BF16);
                    let n_cols = if is_float { n_cols } else { n_cols / 32 * 32 };
                    let (w_row, x_row) = (
                        dtype.row_bytes(n_cols).unwrap(),
                        scalar.vec_dot_type.row_bytes(n_cols).unwrap(),
                    );
                    let mut w = vec![0u8; n_w * w_row];
                    for row in w.chunks_exact_mut(w_row) {
                        (scalar.from_f32.unwrap())(&values(&mut seed, n_cols), row);
                    }
                    let x_f32 = values(&mut seed, n_x * n_cols);
                    let mut x = vec![0u8; n_x * x_row];
                    for (src, row) in x_f32.chunks_exact(n_cols).zip(x.chunks_exact_mut(x_row)) {
                        (partner.from_f32.unwrap())(src, row);
                    }
                    let mut got = vec![f32::NAN; n_x * n_w];
                    let tables = (tiled.prepare)(n_cols, &x, n_x);
                    (tiled.run)(n_cols, &w, n_w, &x, n_x, &tables, &mut got);
                    for r in 0..n_x {
                        for o in 0..n_w {
                            let (wr, xr) = (&w[o * w_row..][..w_row], &x[r * x_row..][..x_row]);
                            let want = (scalar.vec_dot)(n_cols, wr, xr);
                            let value = got[r * n_w + o];
                            if is_float {
                                let mut w_f32 = vec![0.0; n_cols];
                                (scalar.to_f32)(wr, &mut w_f32);
                                let xs = &x_f32[r * n_cols..][..n_cols];
                                let m: f64 = w_f32
                                    .iter()
                                    .zip(xs)
                                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                                    .sum();
                                let ku = (n_cols + 3) as f64 * f32::EPSILON as f64 / 2.0;
                                let bound = 2.0 * ku / (1.0 - ku) * m;
                                assert!((value as f64 - want as f64).abs() <= bound);
                            } else {
                                assert_eq!(value.to_bits(), want.to_bits(), "{isa:?} {dtype}");
                            }
                        }
                    }
                }
            }
        }
    }
}
