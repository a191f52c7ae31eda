//! AVX2 + FMA + F16C kernels for packed Q8_0 · Q8_0 and Q4_1 · Q8_1.
//!
//! A tile is one group of 8 packed weight rows against up to 4 activation rows. Each
//! step broadcasts 4 codes of an activation row to every lane, and `maddubs` + `madd`
//! leave in lane `j` weight row `j`'s partial dot product, so after a block every lane
//! holds its pair's exact integer block sum. The block's scales (8 f16 at the head of
//! the group block, widened at once) are applied to the 8 lanes with the scalar
//! reference's products and sums in its order (plain multiplies and adds, never fused):
//! every lane equals the reference's `vec_dot` bit for bit.
//!
//! The safe entry points are handed out only after AVX2, FMA and F16C were detected at
//! run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, pointers) by the same row
// counter, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::PackedFn;
use crate::dtype::{DType, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK};
use crate::packed::GROUP_ROWS;
use crate::simd::x86_avx2_util::prefetch_ahead;

/// Activation rows per tile.
const NR: usize = 4;

/// One tile's activation rows: each row's blocks and its `[n_blocks, 2]` scale table.
struct XRows {
    codes: [*const u8; NR],
    scales: [*const f32; NR],
}

/// One packed Q4_1 group (`n_blocks` group blocks at `w`) · the first `N` rows of `x`:
/// lane `j` of `acc[r]` is `vec_dot(w row j, x row r)`.
///
/// # Safety
/// `w` points to `n_blocks · 160` readable bytes; for r < N, `x.codes[r]` to `n_blocks`
/// Q8_1 blocks and `x.scales[r]` to `2 · n_blocks` f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q4_1<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
    let ones = _mm256_set1_epi16(1);
    let low_nibbles = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): group block b and block b of each
        // activation row are in bounds (caller).
        let block = unsafe { w.add(b * GROUP_ROWS * Q4_1_BYTES) };
        prefetch_ahead::<{ GROUP_ROWS * Q4_1_BYTES }>(block);
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(block.cast()) });
        let m = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(block.add(16).cast()) });
        // u8 codes 0..=15 against i8 codes of at most 127 in magnitude: a maddubs lane
        // is at most 2·15·127, so the 8 steps of a block add up in i16 (≤ 30480).
        let mut sum16 = [_mm256_setzero_si256(); NR];
        for pair in 0..4 {
            let packed = unsafe { _mm256_loadu_si256(block.add(32 + 32 * pair).cast()) };
            let first = _mm256_and_si256(packed, low_nibbles);
            let second = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low_nibbles);
            for r in 0..N {
                let codes = unsafe { x.codes[r].add(b * Q8_1_BYTES + 4 + 8 * pair) };
                let x_first = _mm256_set1_epi32(unsafe { codes.cast::<i32>().read_unaligned() });
                let x_second =
                    _mm256_set1_epi32(unsafe { codes.add(4).cast::<i32>().read_unaligned() });
                sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(first, x_first));
                sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(second, x_second));
            }
        }
        for r in 0..N {
            let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16[r], ones));
            let dx = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b) });
            let s = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b + 1) });
            // The reference: sum += (dw·dx)·isum + m·s.
            let scaled = _mm256_mul_ps(_mm256_mul_ps(dw, dx), isum);
            acc[r] = _mm256_add_ps(acc[r], _mm256_add_ps(scaled, _mm256_mul_ps(m, s)));
        }
    }
    acc
}

/// One packed Q8_0 group (`n_blocks` group blocks at `w`) · the first `N` rows of `x`.
///
/// # Safety
/// `w` points to `n_blocks · 272` readable bytes; for r < N, `x.codes[r]` to `n_blocks`
/// Q8_0 blocks and `x.scales[r]` to `2 · n_blocks` f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q8_0<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): as in `tile_q4_1`.
        let block = unsafe { w.add(b * GROUP_ROWS * Q8_0_BYTES) };
        prefetch_ahead::<{ GROUP_ROWS * Q8_0_BYTES }>(block);
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(block.cast()) });
        let mut isum = [_mm256_setzero_si256(); NR];
        // Sign trick: |w| · (x · sign(w)); no activation code is -128. A maddubs lane
        // may reach 2·128·127, so each step widens to i32 at once.
        for step in 0..QK / 4 {
            let codes = unsafe { _mm256_loadu_si256(block.add(16 + 32 * step).cast()) };
            let magnitudes = _mm256_sign_epi8(codes, codes);
            for r in 0..N {
                let four = unsafe { x.codes[r].add(b * Q8_0_BYTES + 2 + 4 * step) };
                let xv = _mm256_set1_epi32(unsafe { four.cast::<i32>().read_unaligned() });
                let products = _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(xv, codes));
                isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(products, ones));
            }
        }
        for r in 0..N {
            let dx = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b) });
            // The reference: sum += (dw·dx)·isum.
            let scaled = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum[r]));
            acc[r] = _mm256_add_ps(acc[r], scaled);
        }
    }
    acc
}

/// The tiles of a product: activation row tiles outside, groups inside (the call's
/// groups stay in L1/L2 while the activation tiles pass).
#[target_feature(enable = "avx2,fma,f16c")]
fn packed_gemm<const Q4_1: bool>(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    let (w_block, x_block) = if Q4_1 {
        (Q4_1_BYTES, Q8_1_BYTES)
    } else {
        (Q8_0_BYTES, Q8_0_BYTES)
    };
    let width = n_groups * GROUP_ROWS;
    let n_blocks = n_cols / QK;
    if n_blocks == 0 {
        let n = (n_x_rows * width).min(out.len());
        out[..n].fill(0.0);
        return;
    }
    let (group_bytes, x_row, scales_row) = (
        n_blocks * GROUP_ROWS * w_block,
        n_blocks * x_block,
        2 * n_blocks,
    );
    let n_g = n_groups.min(w.len() / group_bytes);
    let n_x = n_x_rows
        .min(x.len() / x_row)
        .min(x_scales.len() / scales_row);
    for r0 in (0..n_x).step_by(NR) {
        let nr = (n_x - r0).min(NR);
        // Rows past the last one point at it again and are never read (N = nr).
        let row = |r: usize| r0 + r.min(nr - 1);
        let rows = XRows {
            codes: [0, 1, 2, 3].map(|r| x[row(r) * x_row..].as_ptr()),
            scales: [0, 1, 2, 3].map(|r| x_scales[row(r) * scales_row..].as_ptr()),
        };
        for g in 0..n_g {
            let group = w[g * group_bytes..].as_ptr();
            // SAFETY: group g holds n_blocks group blocks (n_g groups fit `w`), and every
            // activation pointer starts a whole row of `x` (n_x rows fit it) or its row
            // of the scale table.
            let acc = unsafe {
                match (Q4_1, nr) {
                    (true, 4) => tile_q4_1::<4>(n_blocks, group, &rows),
                    (true, 3) => tile_q4_1::<3>(n_blocks, group, &rows),
                    (true, 2) => tile_q4_1::<2>(n_blocks, group, &rows),
                    (true, _) => tile_q4_1::<1>(n_blocks, group, &rows),
                    (false, 4) => tile_q8_0::<4>(n_blocks, group, &rows),
                    (false, 3) => tile_q8_0::<3>(n_blocks, group, &rows),
                    (false, 2) => tile_q8_0::<2>(n_blocks, group, &rows),
                    (false, _) => tile_q8_0::<1>(n_blocks, group, &rows),
                }
            };
            for (r, lanes) in acc.iter().enumerate().take(nr) {
                let start = (r0 + r) * width + g * GROUP_ROWS;
                if let Some(dst) = out.get_mut(start..start + GROUP_ROWS) {
                    // SAFETY: `dst` is 8 writable f32.
                    unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), *lanes) };
                }
            }
        }
    }
}

macro_rules! packed_entry {
    ($name:ident, $q4_1:expr) => {
        fn $name(
            n_cols: usize,
            w: &[u8],
            n_groups: usize,
            x: &[u8],
            n_x_rows: usize,
            x_scales: &[f32],
            out: &mut [f32],
        ) {
            // SAFETY: handed out by `super::kernel` only when AVX2, FMA and F16C were
            // detected at run time.
            unsafe { packed_gemm::<$q4_1>(n_cols, w, n_groups, x, n_x_rows, x_scales, out) }
        }
    };
}

packed_entry!(packed_q8_0_q8_0, false);
packed_entry!(packed_q4_1_q8_1, true);

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(dtype: DType) -> Option<PackedFn> {
    match dtype {
        DType::Q8_0 => Some(packed_q8_0_q8_0),
        DType::Q4_1 => Some(packed_q4_1_q8_1),
        _ => None,
    }
}
