//! AVX-512 kernels (F, BW, VL and VNNI) for packed Q4_K, Q5_K and Q6_K weights against
//! Q8_K activations.
//!
//! The tiles of the sibling `x86_avx2_kquants`, widened and with the instructions the
//! extension adds:
//! - **Two groups to a vector**: a 512-bit vector holds the same 32 bytes of two groups
//!   of 8 packed rows (low half: group `g`, high half: group `g + 1`), so lane `j` is row
//!   `j` of the first group and lane `8 + j` row `j` of the second. Every decode step is
//!   the AVX2 one (the shuffles work within 128-bit lanes, the 64-bit permutes within
//!   256-bit halves), on twice the rows.
//! - **VNNI**: `vpdpbusd` multiplies the unsigned weight codes by the signed activation
//!   codes and adds the 4 products of each 32-bit lane into an i32 accumulator, in one
//!   instruction and without i16 limits. A sub-block's code products are summed in i32
//!   and multiplied by its scale (`vpmulld`); the mins and Q6_K's offset are `vpdpwssd`
//!   of the i16 scale pairs with the stored code sums.
//! - **32 vector registers**: a tile is 16 weight rows against up to 8 activation rows
//!   (the AVX2 tiles take 8 × 4 and still spill), so each decoded code vector serves four
//!   times as many products.
//!
//! Exactness is the AVX2 module's: every sum is an integer computed exactly (a
//! sub-block's code products are below 2^17 for Q4_K/Q5_K, 2^18 for Q6_K, times a scale
//! below 2^7, summed over at most 16 sub-blocks: below 2^29), and the f32 step per block
//! is the reference's expression, so every lane equals the scalar `vec_dot` bit for bit.
//!
//! The safe entry points are handed out only after AVX2, FMA, F16C, AVX512F, AVX512BW,
//! AVX512VL and AVX512VNNI were detected at run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, code vectors) by the same
// counters, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::x86_avx2_kquants::{
    self, Q4_K_GROUP, Q5_K_GROUP, Q6_K_GROUP, Q8_K_BYTES, Q8_K_CODES, Q8_K_SUMS, QK_K,
};
use super::x86_avx512_tiles::{
    broadcast4, entry, f16x2, load16x2, load32x2, Groups, Tile, XRows, NR,
};
use super::PackedFn;
use crate::dtype::DType;
use crate::simd::x86_avx2_util::prefetch_ahead_to_l2;

/// The AVX2 module's `dup_control` in both 256-bit halves (its lanes are those of each half
/// here).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dup_control(first: i8, step: i8) -> __m512i {
    _mm512_broadcast_i64x4(x86_avx2_kquants::dup_control(first, step))
}

/// Both 128-bit lanes of each 256-bit half of `v` set to the half's bytes `0..16`
/// (first) and to `16..32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn lanes(v: __m512i) -> [__m512i; 2] {
    [
        _mm512_permutex_epi64::<0x44>(v),
        _mm512_permutex_epi64::<0xEE>(v),
    ]
}

/// The AVX2 module's `bit_table` in both 256-bit halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bit_table(k: usize) -> __m512i {
    _mm512_broadcast_i64x4(x86_avx2_kquants::bit_table(k))
}

// ---------------------------------------------------------------------------------------
// Weight decode, once per pair of group blocks (the AVX2 module's, on two groups)

/// Q4_K/Q5_K scales and mins of the group blocks at `g`, per sub-block `s`: lane `j` of
/// `scales[s]` / `mins[s]` holds row `j`'s 6-bit scale / min in both i16. The byte
/// layout and the steps are those of the AVX2 module's `k4_scales_mins`.
///
/// # Safety
/// Both point to a whole Q4_K or Q5_K group block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_scales_mins(g: Groups) -> ([__m512i; 8], [__m512i; 8]) {
    // SAFETY: bytes 32..128 of the group blocks (caller).
    let (sl, ml, t) = unsafe {
        (
            load32x2(g.add(32)),
            load32x2(g.add(64)),
            load32x2(g.add(96)),
        )
    };
    let low = _mm512_set1_epi8(0x0F);
    let top = |bits: i8| _mm512_and_si512(t, _mm512_set1_epi8(bits));
    let scales_low = _mm512_or_si512(_mm512_and_si512(sl, low), _mm512_slli_epi16::<4>(top(0x03)));
    let scales_high = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16::<4>(sl), low),
        _mm512_slli_epi16::<2>(top(0x0C)),
    );
    let mins_low = _mm512_or_si512(_mm512_and_si512(ml, low), top(0x30));
    let mins_high = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16::<4>(ml), low),
        _mm512_srli_epi16::<2>(top(0xC0u8 as i8)),
    );
    let (s, m) = (
        [lanes(scales_low), lanes(scales_high)],
        [lanes(mins_low), lanes(mins_high)],
    );
    let by_row = [dup_control(0, 1), dup_control(8, 1)];
    let by_pair = [dup_control(0, 2), dup_control(1, 2)];
    let scales = std::array::from_fn(|k| _mm512_shuffle_epi8(s[k / 4][(k % 4) / 2], by_row[k % 2]));
    let mins = std::array::from_fn(|k| _mm512_shuffle_epi8(m[k / 4][(k % 4) / 2], by_pair[k % 2]));
    (scales, mins)
}

/// The 8 code vectors of a Q4_K chunk of both groups (nibble pairs at `g`), in the AVX2
/// module's order.
///
/// # Safety
/// Both point to 128 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_k_codes(g: Groups) -> [__m512i; 8] {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the 4 pairs are the caller's 128 bytes.
    let pairs: [__m512i; 4] = std::array::from_fn(|p| unsafe { load32x2(g.add(32 * p)) });
    std::array::from_fn(|k| {
        let v = pairs[k / 2];
        if k % 2 == 0 {
            _mm512_and_si512(v, low)
        } else {
            _mm512_and_si512(_mm512_srli_epi16::<4>(v), low)
        }
    })
}

/// As [`q4_k_codes`] for a Q5_K chunk: 32 bytes of 5th bits, then the nibble pairs.
///
/// # Safety
/// Both point to 160 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q5_k_codes(g: Groups, tables: &[__m512i; 4]) -> [__m512i; 8] {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the 5th bits and the pairs are the caller's 160 bytes.
    let (fifth, mut codes) = unsafe { (load32x2(g), q4_k_codes(g.add(32))) };
    let nibbles = [
        _mm512_and_si512(fifth, low),
        _mm512_and_si512(_mm512_srli_epi16::<4>(fifth), low),
    ];
    for k in 0..8 {
        let bit = if k == 4 {
            _mm512_and_si512(fifth, _mm512_set1_epi8(0x10))
        } else {
            _mm512_shuffle_epi8(tables[k % 4], nibbles[k / 4])
        };
        codes[k] = _mm512_or_si512(codes[k], bit);
    }
    codes
}

/// As [`q4_k_codes`] for a Q6_K chunk: 64 bytes of top bits, then the nibble pairs.
///
/// # Safety
/// Both point to 192 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6_k_codes(g: Groups) -> [__m512i; 8] {
    let bits45 = _mm512_set1_epi8(0x30);
    // SAFETY: the top bits and the pairs are the caller's 192 bytes.
    let (top, mut codes) = unsafe { ([load32x2(g), load32x2(g.add(32))], q4_k_codes(g.add(64))) };
    let moved = [
        _mm512_slli_epi16::<4>(top[0]),
        _mm512_slli_epi16::<2>(top[0]),
        top[0],
        _mm512_srli_epi16::<2>(top[0]),
        _mm512_slli_epi16::<4>(top[1]),
        _mm512_slli_epi16::<2>(top[1]),
        top[1],
        _mm512_srli_epi16::<2>(top[1]),
    ];
    for k in 0..8 {
        codes[k] = _mm512_or_si512(codes[k], _mm512_and_si512(moved[k], bits45));
    }
    codes
}

// ---------------------------------------------------------------------------------------
// Tiles

/// `sums[r] += Σ_k dpbusd(codes[k], the 4 activation codes of row r for code vector k)`
/// for code vectors `first .. first + count` of a chunk whose activation codes start at
/// `x[r] + at`.
///
/// # Safety
/// For r < N, `x[r] + at` points to the chunk's 32 activation codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn add_products<const N: usize>(
    sums: &mut [__m512i; NR],
    codes: &[__m512i; 8],
    first: usize,
    count: usize,
    x: &[*const u8; NR],
    at: usize,
) {
    for k in first..first + count {
        for r in 0..N {
            // SAFETY: code vector k < 8 meets activation codes 4k .. 4k + 4 (caller).
            let xv = unsafe { broadcast4(x[r].add(at + 4 * k)) };
            sums[r] = _mm512_dpbusd_epi32(sums[r], codes[k], xv);
        }
    }
}

/// `scaled[r] += sums[r] · scale` for r < N (i32 lanes, exact: see the module notes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn add_scaled<const N: usize>(scaled: &mut [__m512i; NR], sums: &[__m512i; NR], scale: __m512i) {
    for r in 0..N {
        scaled[r] = _mm512_add_epi32(scaled[r], _mm512_mullo_epi32(sums[r], scale));
    }
}

/// `acc[r] += (dx·dw)·scaled[r] - (dx·dmin)·mins[r]`: the reference's f32 step for
/// block `b`, one lane per weight row, each operation rounded once.
///
/// # Safety
/// For r < N, `x.scales[r]` points to at least `2b + 1` f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn add_block<const N: usize>(
    acc: &mut [__m512; NR],
    x: &XRows,
    b: usize,
    (dw, dmin): (__m512, __m512),
    scaled: &[__m512i; NR],
    mins: &[__m512i; NR],
) {
    for r in 0..N {
        // SAFETY: row r's scale of block b (caller).
        let dx = _mm512_set1_ps(unsafe { *x.scales[r].add(2 * b) });
        let term = _mm512_sub_ps(
            _mm512_mul_ps(_mm512_mul_ps(dx, dw), _mm512_cvtepi32_ps(scaled[r])),
            _mm512_mul_ps(_mm512_mul_ps(dx, dmin), _mm512_cvtepi32_ps(mins[r])),
        );
        acc[r] = _mm512_add_ps(acc[r], term);
    }
}

/// Two packed Q4_K (`FIFTH = false`) or Q5_K groups (`n_blocks` group blocks at each of
/// `w`) · the first `N` rows of `x`: lane `j` of `acc[r]` is `vec_dot(w.0 row j, x row
/// r)`, lane `8 + j` that of `w.1`'s row `j`.
///
/// # Safety
/// Both of `w` point to `n_blocks` group blocks (1152 or 1408 bytes); for r < N,
/// `x.codes[r]` to `n_blocks` Q8_K blocks and `x.scales[r]` to `2 · n_blocks` f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_k4<const FIFTH: bool, const N: usize>(
    n_blocks: usize,
    w: Groups,
    x: &XRows,
) -> [__m512; NR] {
    let (group_bytes, chunk_bytes) = if FIFTH {
        (Q5_K_GROUP, 160)
    } else {
        (Q4_K_GROUP, 128)
    };
    let zero = _mm512_setzero_si512();
    let low_half = _mm512_set1_epi32(0xFFFF);
    let tables = std::array::from_fn(|k| bit_table(k));
    let mut acc = [_mm512_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): group block b of both groups and block b
        // of each activation row are in bounds (caller); the offsets stay inside them.
        let block = w.add(b * group_bytes);
        if FIFTH {
            prefetch_ahead_to_l2::<Q5_K_GROUP>(block.0);
            prefetch_ahead_to_l2::<Q5_K_GROUP>(block.1);
        } else {
            prefetch_ahead_to_l2::<Q4_K_GROUP>(block.0);
            prefetch_ahead_to_l2::<Q4_K_GROUP>(block.1);
        }
        let xb = x.codes.map(|row| row.wrapping_add(b * Q8_K_BYTES));
        let (scales, mins16) = unsafe { k4_scales_mins(block) };
        let mut scaled = [zero; NR];
        for c in 0..QK_K / 32 {
            let at = block.add(128 + chunk_bytes * c);
            let codes = unsafe {
                if FIFTH {
                    q5_k_codes(at, &tables)
                } else {
                    q4_k_codes(at)
                }
            };
            let mut sums = [zero; NR];
            unsafe { add_products::<N>(&mut sums, &codes, 0, 8, &xb, Q8_K_CODES + 32 * c) };
            // The sub-block's scale sits in both i16 halves of its lane: keep one, as i32.
            add_scaled::<N>(&mut scaled, &sums, _mm512_and_si512(scales[c], low_half));
        }
        let mut mins = [zero; NR];
        for s in 0..QK_K / 32 {
            for r in 0..N {
                // The two stored code sums of sub-block s, against its min.
                let sums = unsafe { broadcast4(xb[r].add(Q8_K_SUMS + 4 * s)) };
                mins[r] = _mm512_dpwssd_epi32(mins[r], mins16[s], sums);
            }
        }
        let (dw, dmin) = unsafe { (f16x2(block), f16x2(block.add(16))) };
        unsafe { add_block::<N>(&mut acc, x, b, (dw, dmin), &scaled, &mins) };
    }
    acc
}

/// Two packed Q6_K groups (`n_blocks` group blocks of 1680 bytes at each of `w`) · the
/// first `N` rows of `x`.
///
/// # Safety
/// As [`tile_k4`], with Q6_K group blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_q6_k<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR] {
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): as in `tile_k4`.
        let block = w.add(b * Q6_K_GROUP);
        prefetch_ahead_to_l2::<Q6_K_GROUP>(block.0);
        prefetch_ahead_to_l2::<Q6_K_GROUP>(block.1);
        let xb = x.codes.map(|row| row.wrapping_add(b * Q8_K_BYTES));
        let mut scaled = [zero; NR];
        for c in 0..QK_K / 32 {
            // Byte 2j + t: row j's scale of sub-block 2c + t; as i16 pairs, then each
            // scale sign-extended to its i32 lane.
            let pairs = _mm512_cvtepi8_epi16(unsafe { load16x2(block.add(16 + 16 * c)) });
            let by_sub = [
                _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(pairs)),
                _mm512_srai_epi32::<16>(pairs),
            ];
            let codes = unsafe { q6_k_codes(block.add(144 + 192 * c)) };
            let x_at = Q8_K_CODES + 32 * c;
            // Sub-block 2c + t: code vectors 4t .. 4t + 4.
            for t in 0..2 {
                let mut sums = [zero; NR];
                unsafe { add_products::<N>(&mut sums, &codes, 4 * t, 4, &xb, x_at) };
                add_scaled::<N>(&mut scaled, &sums, by_sub[t]);
            }
        }
        // The codes are stored plus 32: take 32·Σ scale·(code sum) out, exactly. Done
        // after the chunks, so that its accumulators do not crowd the products' registers.
        let mut offsets = [zero; NR];
        for c in 0..QK_K / 32 {
            let pairs = _mm512_cvtepi8_epi16(unsafe { load16x2(block.add(16 + 16 * c)) });
            for r in 0..N {
                // Σ_t scale(2c + t)·(stored code sum of sub-block 2c + t).
                let sums = unsafe { broadcast4(xb[r].add(Q8_K_SUMS + 4 * c)) };
                offsets[r] = _mm512_dpwssd_epi32(offsets[r], pairs, sums);
            }
        }
        for r in 0..N {
            scaled[r] = _mm512_sub_epi32(scaled[r], _mm512_slli_epi32::<5>(offsets[r]));
        }
        let dw = unsafe { f16x2(block) };
        // Q6_K has no mins: the reference still subtracts (dx·0)·0, which can turn a
        // -0.0 term into +0.0, so the kernel does too.
        let (dmin, mins) = (_mm512_setzero_ps(), [zero; NR]);
        unsafe { add_block::<N>(&mut acc, x, b, (dw, dmin), &scaled, &mins) };
    }
    acc
}

/// Q4_K · Q8_K.
struct Q4K;
/// Q5_K · Q8_K.
struct Q5K;
/// Q6_K · Q8_K.
struct Q6K;

impl Tile for Q4K {
    const BLOCK_VALUES: usize = QK_K;
    const GROUP_BLOCK: usize = Q4_K_GROUP;
    const X_BLOCK: usize = Q8_K_BYTES;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR] {
        // SAFETY: the caller's contract, which is `tile_k4`'s.
        unsafe { tile_k4::<false, N>(n_blocks, w, x) }
    }
}

impl Tile for Q5K {
    const BLOCK_VALUES: usize = QK_K;
    const GROUP_BLOCK: usize = Q5_K_GROUP;
    const X_BLOCK: usize = Q8_K_BYTES;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR] {
        // SAFETY: the caller's contract, which is `tile_k4`'s.
        unsafe { tile_k4::<true, N>(n_blocks, w, x) }
    }
}

impl Tile for Q6K {
    const BLOCK_VALUES: usize = QK_K;
    const GROUP_BLOCK: usize = Q6_K_GROUP;
    const X_BLOCK: usize = Q8_K_BYTES;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR] {
        // SAFETY: the caller's contract, which is `tile_q6_k`'s.
        unsafe { tile_q6_k::<N>(n_blocks, w, x) }
    }
}

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(dtype: DType) -> Option<PackedFn> {
    match dtype {
        DType::Q4_K => Some(entry::<Q4K>),
        DType::Q5_K => Some(entry::<Q5K>),
        DType::Q6_K => Some(entry::<Q6K>),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;

    /// The AVX2 module's extreme-code check, for these tiles (8 activation rows).
    #[test]
    fn extreme_codes_match_the_reference() {
        if Isa::Avx512.is_available() {
            super::super::x86_avx2_kquants::tests::extreme_codes_match(kernel);
        }
    }
}
