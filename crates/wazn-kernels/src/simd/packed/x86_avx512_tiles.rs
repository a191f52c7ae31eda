//! What the AVX-512 packed kernels share (`x86_avx512` for the 32-code types,
//! `x86_avx512_kquants` for the K-quants): a tile is the same group blocks of two groups of
//! 8 packed rows (lane `j` of a 512-bit vector: row `j` of the first group, lane `8 + j`: of
//! the second) against up to [`NR`] activation rows; the loads that fill such vectors; and
//! [`packed_gemm`], which runs a type's tiles over a product.
//!
//! Everything here requires AVX2, FMA, F16C, AVX512F, AVX512BW, AVX512VL and AVX512VNNI;
//! [`entry`] is handed out only after they were detected at run time (`super::kernel`).

use std::arch::x86_64::*;

use crate::packed::GROUP_ROWS;

/// Activation rows per tile.
pub(super) const NR: usize = 8;

/// One tile's activation rows: each row's blocks and its `[n_blocks, 2]` scale table.
pub(super) struct XRows {
    pub(super) codes: [*const u8; NR],
    pub(super) scales: [*const f32; NR],
}

/// The two groups of a tile: the same group block of each is read at once.
#[derive(Clone, Copy)]
pub(super) struct Groups(pub(super) *const u8, pub(super) *const u8);

impl Groups {
    /// Both groups advanced by `bytes`.
    pub(super) fn add(self, bytes: usize) -> Groups {
        Groups(self.0.wrapping_add(bytes), self.1.wrapping_add(bytes))
    }
}

/// The 32 bytes at `g.0` in the low half, those at `g.1` in the high half.
///
/// # Safety
/// Both point to 32 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn load32x2(g: Groups) -> __m512i {
    // SAFETY: the caller's; the loads are unaligned.
    unsafe {
        let low = _mm512_castsi256_si512(_mm256_loadu_si256(g.0.cast()));
        _mm512_inserti64x4::<1>(low, _mm256_loadu_si256(g.1.cast()))
    }
}

/// The 16 bytes at `g.0` in the low half, those at `g.1` in the high half.
///
/// # Safety
/// Both point to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn load16x2(g: Groups) -> __m256i {
    // SAFETY: the caller's; the loads are unaligned.
    unsafe {
        let low = _mm256_castsi128_si256(_mm_loadu_si128(g.0.cast()));
        _mm256_inserti128_si256::<1>(low, _mm_loadu_si128(g.1.cast()))
    }
}

/// The 16 f16 at `g.0` and `g.1` (8 each), widened.
///
/// # Safety
/// Both point to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn f16x2(g: Groups) -> __m512 {
    // SAFETY: the caller's.
    _mm512_cvtph_ps(unsafe { load16x2(g) })
}

/// The 4 bytes at `at` (4 activation codes, or a pair of i16 code sums) in every lane.
///
/// # Safety
/// `at` points to 4 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn broadcast4(at: *const u8) -> __m512i {
    // SAFETY: the caller's; the read is unaligned.
    _mm512_set1_epi32(unsafe { at.cast::<i32>().read_unaligned() })
}

/// A vector whose four 128-bit lanes are `bytes`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn every_lane(bytes: [i8; 16]) -> __m512i {
    // SAFETY: `bytes` is 16 readable bytes.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) })
}

/// A packed weight type at this level: its block sizes and its tile.
pub(super) trait Tile {
    /// Values per block.
    const BLOCK_VALUES: usize;
    /// Bytes of a group block (8 rows' blocks).
    const GROUP_BLOCK: usize;
    /// Bytes of one block of the activation type.
    const X_BLOCK: usize;

    /// Two packed groups (`n_blocks` group blocks at each of `w`) · the first `N` rows of
    /// `x`: lane `j` of `acc[r]` is `vec_dot(w.0 row j, x row r)`, lane `8 + j` that of
    /// `w.1`'s row `j`.
    ///
    /// # Safety
    /// The features of this module are available; both of `w` point to `n_blocks` group
    /// blocks; for r < N, `x.codes[r]` to `n_blocks` activation blocks and `x.scales[r]`
    /// to `2 · n_blocks` f32.
    unsafe fn tile<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR];
}

/// The tiles of a product: activation row tiles outside, pairs of groups inside (the
/// call's groups stay in L1/L2 while the activation tiles pass).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn packed_gemm<T: Tile>(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    let width = n_groups * GROUP_ROWS;
    let n_blocks = n_cols / T::BLOCK_VALUES;
    if n_blocks == 0 {
        let n = (n_x_rows * width).min(out.len());
        out[..n].fill(0.0);
        return;
    }
    let (group_bytes, x_row, scales_row) = (
        n_blocks * T::GROUP_BLOCK,
        n_blocks * T::X_BLOCK,
        2 * n_blocks,
    );
    let n_g = n_groups.min(w.len() / group_bytes);
    let n_x = n_x_rows
        .min(x.len() / x_row)
        .min(x_scales.len() / scales_row);
    for r0 in (0..n_x).step_by(NR) {
        let nr = (n_x - r0).min(NR);
        // A ragged tile runs as the next power of two of rows: the rows past the last
        // one repeat it, and their results are not stored.
        let row = |r: usize| r0 + r.min(nr - 1);
        let rows = XRows {
            codes: std::array::from_fn(|r| x[row(r) * x_row..].as_ptr()),
            scales: std::array::from_fn(|r| x_scales[row(r) * scales_row..].as_ptr()),
        };
        for g in (0..n_g).step_by(2) {
            // An odd last group is paired with itself; its second results are dropped.
            let second = (g + 1).min(n_g - 1);
            let pair = Groups(
                w[g * group_bytes..].as_ptr(),
                w[second * group_bytes..].as_ptr(),
            );
            // SAFETY: this function's features are the tile's; both groups hold n_blocks
            // group blocks (n_g groups fit `w`), and every activation pointer starts a
            // whole row of `x` (n_x rows fit it) or its row of the scale table.
            let acc = unsafe {
                match nr {
                    1 => T::tile::<1>(n_blocks, pair, &rows),
                    2 => T::tile::<2>(n_blocks, pair, &rows),
                    3 | 4 => T::tile::<4>(n_blocks, pair, &rows),
                    _ => T::tile::<8>(n_blocks, pair, &rows),
                }
            };
            let n_rows = if second > g {
                2 * GROUP_ROWS
            } else {
                GROUP_ROWS
            };
            for (r, lanes) in acc.iter().enumerate().take(nr) {
                let start = (r0 + r) * width + g * GROUP_ROWS;
                if let Some(dst) = out.get_mut(start..start + n_rows) {
                    let mut results = [0f32; 2 * GROUP_ROWS];
                    // SAFETY: `results` is 16 writable f32.
                    unsafe { _mm512_storeu_ps(results.as_mut_ptr(), *lanes) };
                    dst.copy_from_slice(&results[..n_rows]);
                }
            }
        }
    }
}

/// The packed kernel of `T` ([`super::PackedFn`]).
pub(super) fn entry<T: Tile>(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    // SAFETY: handed out by `super::kernel` only when AVX2, FMA, F16C, AVX512F, AVX512BW,
    // AVX512VL and AVX512VNNI were detected at run time.
    unsafe { packed_gemm::<T>(n_cols, w, n_groups, x, n_x_rows, x_scales, out) }
}
