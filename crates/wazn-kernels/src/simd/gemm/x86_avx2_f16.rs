//! AVX2 + FMA + F16C tiled kernels for F16 and BF16 weights · f32 activations.
//!
//! Outer products rather than dot products: the weight rows of a call are widened (exact;
//! F16 by `vcvtph2ps`, BF16 by a zero-extension and a 16-bit shift, a bf16 being the high
//! half of its f32)
//! and transposed, 16 rows at a time, into a *panel* `[n_cols, 16]` of f32, so that one
//! column of the panel is two 8-lane vectors, lane `j` weight row `j`. A tile is those 16
//! weight rows × up to 6 activation rows: per column `k`, the two panel vectors are
//! multiplied by activation `x[r, k]` broadcast to all lanes and added to the 2 × 6
//! accumulators (12 of the 16 ymm registers). Per column a tile loads 2 vectors and 6
//! scalars for 12 fused multiply-adds, and leaves in lane `j` of its accumulators the
//! results of weight row `j` directly: no horizontal sums.
//!
//! The panel (64 bytes a column: 36 KiB for 576 columns, 96 KiB for 1536) stays in L2
//! while every activation row of the call passes it, six rows at a time; blocking the
//! columns so that it stays in L1 measured slower, as the activation rows are then read
//! again for every block. Widening and transposing cost about as much as a few
//! activation rows' products, so the panel pays off over many rows (a prompt's).
//!
//! Result per (weight row, activation row) pair: one fused multiply-add chain over the
//! columns in order, starting from 0, the same operations whatever the tile shape or the
//! other rows of the call. It differs from the scalar dot product (and
//! from the dtype table's `vec_dot`) by its order of additions only.
//!
//! The safe entry point is handed out only after AVX2, FMA and F16C were detected at
//! run time (`super::kernel`).

// The tile loops index accumulators and row pointers by the same counters over constant
// bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::simd::x86_avx2_util::{widen1, widen8};

/// Weight rows per panel: two 8-lane vectors per column.
const PANEL_ROWS: usize = 16;
/// Activation rows per tile: 2 × 6 accumulators, 2 panel vectors and a broadcast fill 15
/// of the 16 ymm registers.
const NR: usize = 6;

thread_local! {
    /// Per thread, reused from call to call: the panel `[n_cols, 2]` of 8-lane vectors.
    static PANEL: RefCell<Vec<__m256>> = const { RefCell::new(Vec::new()) };
}

/// The 8 × 8 block `rows` transposed: lane `j` of result `i` is lane `i` of `rows[j]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(rows: [__m256; 8]) -> [__m256; 8] {
    let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
    // Pairs of rows interleaved, then quads: lane halves hold columns (c, c + 4).
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Widens and transposes `n_rows` ≤ 16 rows of `n_cols` 16-bit floats (bf16 where `BF16`,
/// else f16; `w`: the rows, one after another) into `panel`: `[n_cols, 2]` vectors, lane
/// `j` of vector `2k + g` the value of row `8g + j` at column `k`; rows past `n_rows` are 0.
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_panel<const BF16: bool>(w: &[u8], n_rows: usize, n_cols: usize, panel: &mut Vec<__m256>) {
    // Every vector below `2 · n_cols` is written here, so old contents need no clearing.
    panel.resize(n_cols * 2, _mm256_setzero_ps());
    let row_bytes = n_cols * 2;
    let n_rows = match w.len().checked_div(row_bytes) {
        Some(fit) => n_rows.min(fit).min(PANEL_ROWS),
        None => return, // no columns: an empty panel
    };
    let whole = n_cols / 8 * 8;
    let out = panel.as_mut_ptr();
    for g in 0..2 {
        // The group's rows; those past `n_rows` read the last one and are masked to 0.
        let valid = n_rows.saturating_sub(8 * g).min(8);
        if valid == 0 {
            for k in 0..n_cols {
                panel[k * 2 + g] = _mm256_setzero_ps();
            }
            continue;
        }
        let mut rows = [w.as_ptr(); 8];
        for j in 0..8 {
            rows[j] = w[(8 * g + j.min(valid - 1)) * row_bytes..].as_ptr();
        }
        let mut lane_bits = [0i32; 8];
        for j in 0..valid {
            lane_bits[j] = -1;
        }
        // SAFETY: `lane_bits` is 8 readable i32.
        let mask = _mm256_castsi256_ps(unsafe { _mm256_loadu_si256(lane_bits.as_ptr().cast()) });
        for k0 in (0..whole).step_by(8) {
            let mut block = [_mm256_setzero_ps(); 8];
            for j in 0..8 {
                // SAFETY: each row pointer starts a whole row of `w` (n_rows fits it), and
                // columns k0 .. k0 + 8 ≤ n_cols are 16 bytes in it; no alignment needed.
                block[j] = unsafe { widen8::<BF16>(rows[j].add(2 * k0)) };
            }
            let columns = transpose8(block);
            for i in 0..8 {
                // SAFETY: (k0 + i) · 2 + g < 2 · n_cols, the panel's length.
                unsafe { *out.add((k0 + i) * 2 + g) = _mm256_and_ps(columns[i], mask) };
            }
        }
        for k in whole..n_cols {
            let mut lanes = [0.0f32; 8];
            for j in 0..valid {
                let at = (8 * g + j) * row_bytes + 2 * k;
                if let Some(&[b0, b1]) = w.get(at..at + 2) {
                    lanes[j] = widen1::<BF16>(u16::from_le_bytes([b0, b1]));
                }
            }
            // SAFETY: `lanes` is 8 readable f32.
            panel[k * 2 + g] = unsafe { _mm256_loadu_ps(lanes.as_ptr()) };
        }
    }
}

/// One tile over `n_cols` columns: `acc[r][g]` lane `j` = Σ_k panel[k][8g + j] · x[r][k],
/// one fused multiply-add per column in column order, from 0.
///
/// # Safety
/// `panel` holds `2 · n_cols` vectors; `x.add(r * x_stride)` (r < N) points to `n_cols`
/// readable f32 (any alignment).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const N: usize>(
    n_cols: usize,
    panel: *const __m256,
    x: *const f32,
    x_stride: usize,
) -> [[__m256; 2]; NR] {
    let mut acc = [[_mm256_setzero_ps(); 2]; NR];
    let xr: [*const f32; N] = std::array::from_fn(|r| x.wrapping_add(r * x_stride));
    for k in 0..n_cols {
        // SAFETY: column k < n_cols of the panel and of every activation row (caller).
        unsafe {
            let w0 = *panel.add(2 * k);
            let w1 = *panel.add(2 * k + 1);
            for r in 0..N {
                let b = _mm256_set1_ps(xr[r].add(k).read_unaligned());
                acc[r][0] = _mm256_fmadd_ps(w0, b, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(w1, b, acc[r][1]);
            }
        }
    }
    acc
}

/// Runs [`tile`] for `nr` (1..=6) activation rows; rows past `nr` are 0.
///
/// # Safety
/// As [`tile`] with N = `nr`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_rows(
    nr: usize,
    n_cols: usize,
    panel: *const __m256,
    x: *const f32,
    x_stride: usize,
) -> [[__m256; 2]; NR] {
    // SAFETY: the caller's guarantee, for the row count it names.
    unsafe {
        match nr {
            6 => tile::<6>(n_cols, panel, x, x_stride),
            5 => tile::<5>(n_cols, panel, x, x_stride),
            4 => tile::<4>(n_cols, panel, x, x_stride),
            3 => tile::<3>(n_cols, panel, x, x_stride),
            2 => tile::<2>(n_cols, panel, x, x_stride),
            _ => tile::<1>(n_cols, panel, x, x_stride),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn half_gemm<const BF16: bool>(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    out: &mut [f32],
    panel: &mut Vec<__m256>,
) {
    let (w_row, x_row) = (n_cols * 2, n_cols * 4);
    // Zero-width rows (n_cols = 0) all fit.
    let n_w = w
        .len()
        .checked_div(w_row)
        .map_or(n_w_rows, |n| n.min(n_w_rows));
    let n_x = x
        .len()
        .checked_div(x_row)
        .map_or(n_x_rows, |n| n.min(n_x_rows));
    for p0 in (0..n_w).step_by(PANEL_ROWS) {
        let rows = (n_w - p0).min(PANEL_ROWS);
        pack_panel::<BF16>(&w[p0 * w_row..(p0 + rows) * w_row], rows, n_cols, panel);
        for r0 in (0..n_x).step_by(NR) {
            let nr = (n_x - r0).min(NR);
            // SAFETY: the panel holds 2 · n_cols vectors; activation rows r0 .. r0 + nr
            // ≤ n_x are whole rows of `x` (n_x fits it), read unaligned.
            let acc = unsafe {
                tile_rows(
                    nr,
                    n_cols,
                    panel.as_ptr(),
                    x.as_ptr().cast::<f32>().add(r0 * n_cols),
                    n_cols,
                )
            };
            for r in 0..nr {
                let at = (r0 + r) * n_w_rows + p0;
                if let Some(dst) = out
                    .get_mut(at..at + PANEL_ROWS)
                    .filter(|_| rows == PANEL_ROWS)
                {
                    // SAFETY: `dst` is 16 writable f32.
                    unsafe {
                        _mm256_storeu_ps(dst.as_mut_ptr(), acc[r][0]);
                        _mm256_storeu_ps(dst.as_mut_ptr().add(8), acc[r][1]);
                    }
                } else if let Some(dst) = out.get_mut(at..at + rows) {
                    let mut sums = [0.0f32; PANEL_ROWS];
                    // SAFETY: `sums` is 16 writable f32.
                    unsafe {
                        _mm256_storeu_ps(sums.as_mut_ptr(), acc[r][0]);
                        _mm256_storeu_ps(sums.as_mut_ptr().add(8), acc[r][1]);
                    }
                    dst.copy_from_slice(&sums[..rows]);
                }
            }
        }
    }
}

pub(crate) fn gemm_f16_f32(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    _x_tables: &[f32],
    out: &mut [f32],
) {
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        // SAFETY: handed out only when AVX2, FMA and F16C were detected at run time.
        unsafe { half_gemm::<false>(n_cols, w, n_w_rows, x, n_x_rows, out, &mut panel) }
    });
}

pub(crate) fn gemm_bf16_f32(
    n_cols: usize,
    w: &[u8],
    n_w_rows: usize,
    x: &[u8],
    n_x_rows: usize,
    _x_tables: &[f32],
    out: &mut [f32],
) {
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        // SAFETY: handed out only when AVX2, FMA and F16C were detected at run time.
        unsafe { half_gemm::<true>(n_cols, w, n_w_rows, x, n_x_rows, out, &mut panel) }
    });
}

#[cfg(test)]
mod tests {
    use crate::matmul::{matmul, Activations, WeightMatrix};
    use crate::{DType, ThreadPool};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Matrix products of F16 and BF16 weights on 1, 2 and 3 threads, with weight rows that leave
    /// a partial panel and activation rows that leave a partial tile and more than one
    /// task of activation rows: the same bits whatever the thread count, each row the same
    /// bits as in a product of that row twice (the smallest product that takes the tiled
    /// kernel), and within 2·γ_k·Σ|w_i·x_i| (k = n_cols + 3) of an f64 reference.
    #[test]
    fn f16_products_do_not_depend_on_threads_or_other_rows() {
        for dtype in [DType::F16, DType::BF16] {
            half_products_do_not_depend_on_threads_or_other_rows(dtype);
        }
    }

    fn half_products_do_not_depend_on_threads_or_other_rows(dtype: DType) {
        let mut seed = 5u64;
        let (n_rows, n_cols) = (45, 70);
        let w_f32: Vec<f32> = (0..n_rows * n_cols).map(|_| lcg(&mut seed)).collect();
        let mut w_bytes = vec![0u8; n_rows * n_cols * 2];
        (dtype.traits().from_f32.unwrap())(&w_f32, &mut w_bytes);
        let w = WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).unwrap();
        let mut w_wide = vec![0.0; n_rows * n_cols];
        (dtype.traits().to_f32)(&w_bytes, &mut w_wide);
        let pools: Vec<ThreadPool> = (1..=3).map(|n| ThreadPool::new(n).unwrap()).collect();
        let product = |pool: &ThreadPool, x: &[f32], n_x: usize| {
            let mut out = vec![f32::NAN; n_x * n_rows];
            let mut scratch = Vec::new();
            matmul(
                pool,
                &w,
                x,
                n_x,
                &mut out,
                &mut scratch,
                Activations::Quantized,
            );
            out
        };
        for n_x in [2, 7, 515] {
            let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
            let out = product(&pools[0], &x, n_x);
            for pool in &pools[1..] {
                let again = product(pool, &x, n_x);
                let same = out
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dtype} {n_x} rows on {} threads", pool.n_threads());
            }
            for r in (0..n_x).step_by(1 + n_x / 16).chain([n_x - 1]) {
                let row = &x[r * n_cols..(r + 1) * n_cols];
                let twice: Vec<f32> = row.iter().chain(row).copied().collect();
                let alone = product(&pools[2], &twice, 2);
                for o in 0..n_rows {
                    let got = out[r * n_rows + o];
                    let what = format!("{dtype} {n_x} rows: ({r},{o})");
                    assert_eq!(got.to_bits(), alone[o].to_bits(), "{what}");
                    let w_row = &w_wide[o * n_cols..(o + 1) * n_cols];
                    let terms = w_row.iter().zip(row).map(|(a, b)| *a as f64 * *b as f64);
                    let exact: f64 = terms.clone().sum();
                    let m: f64 = terms.map(f64::abs).sum();
                    let ku = (n_cols + 3) as f64 * f32::EPSILON as f64 / 2.0;
                    let bound = 2.0 * ku / (1.0 - ku) * m;
                    assert!((got as f64 - exact).abs() <= bound, "{what}");
                }
            }
        }
    }
}
