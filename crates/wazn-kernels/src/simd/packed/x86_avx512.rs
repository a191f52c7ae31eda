//! AVX-512 kernels (F, BW, VL and VNNI) for packed weights of 32-code blocks: Q8_0, Q4_0,
//! Q5_0 and MXFP4 against Q8_0 activations, Q4_1 and Q5_1 against Q8_1.
//!
//! The tiles of the sibling `x86_avx2`, laid out as `x86_avx512_tiles` describes: a 512-bit
//! vector holds the same bytes of two groups of 8 packed
//! rows (lane `j`: row `j` of the first group, lane `8 + j`: of the second), a tile is
//! those 16 rows against up to 8 activation rows, and `vpdpbusd` adds 4 products of
//! unsigned weight codes and signed activation codes into each i32 lane.
//!
//! Every type's block is 8 code vectors, vector `k` holding codes `4k .. 4k + 4` of each
//! row (nibble pair `p` gives vectors `2p` and `2p + 1`; Q8_0's code step `k` is vector
//! `k`), so vector `k` meets activation codes `4k .. 4k + 4`. The codes are unsigned:
//! nibbles (Q4_0, Q4_1), widened by their 5th bits (Q5_0, Q5_1), MXFP4's doubled E2M1
//! value + 12 by a table lookup, and Q8_0's i8 code + 128 (`xor 0x80`). Where that offsets
//! the value (Q4_0: 8, Q5_0: 16, MXFP4: 12, Q8_0: 128) the lanes sum Σ u·x and the offset
//! times the block's activation code sum is taken off by one `fnmadd`: every operand and
//! the exact result are integers below 2^24 in magnitude (|Σ u·x| ≤ 32·255·128), so it
//! rounds nothing and gives the reference's `isum as f32` (+0 for a zero sum). The f32
//! step per block is then the reference's expression, as in `x86_avx2`: every lane equals
//! the scalar `vec_dot` bit for bit.
//!
//! The safe entry points are handed out only after AVX2, FMA, F16C, AVX512F, AVX512BW,
//! AVX512VL and AVX512VNNI were detected at run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, code vectors) by the same
// counters, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::x86_avx512_tiles::{
    broadcast4, entry, every_lane, f16x2, load32x2, Groups, Tile, XRows, NR,
};
use super::PackedFn;
use crate::dtype::{
    DType, KVALUES, MXFP4_BYTES, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK,
};
use crate::packed::GROUP_ROWS;
use crate::simd::x86_avx2_util::prefetch_ahead_to_l2;

const Q5_0_BYTES: usize = 22;
const Q5_1_BYTES: usize = 24;

/// A packed weight type of 32-code blocks: where its fields are and how they are read.
///
/// Every method requires the features of this module's tiles; those that take `block`
/// read the group blocks at both of its pointers (`8 · W_BLOCK` readable bytes each).
trait Blocks {
    /// Bytes of one stored weight block (a group block is 8 of them).
    const W_BLOCK: usize;
    /// Bytes of one activation block (Q8_0 or Q8_1).
    const X_BLOCK: usize;
    /// Where an activation block's codes start.
    const X_CODES: usize;
    /// What the integer values are below the unsigned codes `u` (the code sum times it
    /// is taken off), 0 for Q4_1 / Q5_1.
    const OFFSET: f32;
    /// Whether a block has an offset `m` after its scale `d` (Q4_1, Q5_1), whose term
    /// `m·s` the block adds.
    const HAS_M: bool = false;

    /// The 8 code vectors of the block.
    unsafe fn codes(block: Groups) -> [__m512i; 8];

    /// The 16 rows' scales `d` (each group block's first 16 bytes) and offsets `m` (the
    /// next 16), or zeros where the type has none.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales(block: Groups) -> (__m512, __m512) {
        // SAFETY: the scales are the first 16 or 32 bytes of each group block (caller).
        unsafe {
            let m = if Self::HAS_M {
                f16x2(block.add(16))
            } else {
                _mm512_setzero_ps()
            };
            (f16x2(block), m)
        }
    }

    /// `acc` plus one block's term, the reference's expression: `(dw·dx)·isum`, plus
    /// `m·s` for the types with `m`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn add_block(
        acc: __m512,
        (dw, m): (__m512, __m512),
        (dx, s): (__m512, __m512),
        isum: __m512,
    ) -> __m512 {
        let scaled = _mm512_mul_ps(_mm512_mul_ps(dw, dx), isum);
        if Self::HAS_M {
            _mm512_add_ps(acc, _mm512_add_ps(scaled, _mm512_mul_ps(m, s)))
        } else {
            _mm512_add_ps(acc, scaled)
        }
    }
}

/// The code vectors of the 4 nibble pairs at `block + at`.
///
/// # Safety
/// Both group blocks hold 128 readable bytes at `at`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn nibble_codes(block: Groups, at: usize) -> [__m512i; 8] {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the 4 pairs are the caller's 128 bytes.
    let pairs: [__m512i; 4] = std::array::from_fn(|p| unsafe { load32x2(block.add(at + 32 * p)) });
    std::array::from_fn(|k| {
        let v = pairs[k / 2];
        if k % 2 == 0 {
            _mm512_and_si512(v, low)
        } else {
            _mm512_and_si512(_mm512_srli_epi16::<4>(v), low)
        }
    })
}

/// [`nibble_codes`] with bit 4 of each code from the 32 bytes of 5th bits at
/// `block + bits_at`: bits `2p` and `2p + 1` of each byte for pair `p`'s two vectors, moved
/// to bit 4 of the same byte by a 16-bit shift.
///
/// # Safety
/// Both group blocks hold 32 readable bytes at `bits_at` and 128 at `pairs_at`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn nibble_codes5(block: Groups, bits_at: usize, pairs_at: usize) -> [__m512i; 8] {
    // SAFETY: the caller's bytes.
    let (bits, mut codes) =
        unsafe { (load32x2(block.add(bits_at)), nibble_codes(block, pairs_at)) };
    let moved = [
        _mm512_slli_epi16::<4>(bits),
        _mm512_slli_epi16::<3>(bits),
        _mm512_slli_epi16::<2>(bits),
        _mm512_slli_epi16::<1>(bits),
        bits,
        _mm512_srli_epi16::<1>(bits),
        _mm512_srli_epi16::<2>(bits),
        _mm512_srli_epi16::<3>(bits),
    ];
    let bit4 = _mm512_set1_epi8(0x10);
    for k in 0..8 {
        codes[k] = _mm512_or_si512(codes[k], _mm512_and_si512(moved[k], bit4));
    }
    codes
}

/// Q4_0 · Q8_0: values `d·(u - 8)`.
struct Q4_0;
/// Q4_1 · Q8_1.
struct Q4_1;
/// Q5_0 · Q8_0: values `d·(u - 16)`.
struct Q5_0;
/// Q5_1 · Q8_1.
struct Q5_1;
/// MXFP4 · Q8_0: codes looked up as the doubled E2M1 value + 12.
struct Mxfp4;
/// Q8_0 · Q8_0: codes `c + 128`.
struct Q8_0;

impl Blocks for Q4_0 {
    const W_BLOCK: usize = Q4_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const OFFSET: f32 = 8.0;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        // SAFETY: the pairs are bytes 16..144 of each group block (caller).
        unsafe { nibble_codes(block, 16) }
    }
}

impl Blocks for Q4_1 {
    const W_BLOCK: usize = Q4_1_BYTES;
    const X_BLOCK: usize = Q8_1_BYTES;
    const X_CODES: usize = 4;
    const OFFSET: f32 = 0.0;
    const HAS_M: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        // SAFETY: the pairs are bytes 32..160 (caller).
        unsafe { nibble_codes(block, 32) }
    }
}

impl Blocks for Q5_0 {
    const W_BLOCK: usize = Q5_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const OFFSET: f32 = 16.0;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        // SAFETY: the 5th bits are bytes 16..48, the pairs 48..176 (caller).
        unsafe { nibble_codes5(block, 16, 48) }
    }
}

impl Blocks for Q5_1 {
    const W_BLOCK: usize = Q5_1_BYTES;
    const X_BLOCK: usize = Q8_1_BYTES;
    const X_CODES: usize = 4;
    const OFFSET: f32 = 0.0;
    const HAS_M: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        // SAFETY: the 5th bits are bytes 32..64, the pairs 64..192 (caller).
        unsafe { nibble_codes5(block, 32, 64) }
    }
}

/// MXFP4's unsigned codes: the doubled E2M1 values ([`KVALUES`]) + 12, by 4-bit code.
const MXFP4_TABLE: [i8; 16] = {
    let mut table = [0; 16];
    let mut code = 0;
    while code < 16 {
        table[code] = KVALUES[code] + 12;
        code += 1;
    }
    table
};

impl Blocks for Mxfp4 {
    const W_BLOCK: usize = MXFP4_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const OFFSET: f32 = 12.0;

    /// `e8m0_half_scale` of the 16 exponents, as the AVX2 module computes it: `(e - 1) <<
    /// 23` for e ≥ 2 (a saturating `e - 1`), `0x0040_0000 >> (1 - e)` for e = 0, 1 (shift
    /// counts of 32 and more give 0), joined by an `or`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales(block: Groups) -> (__m512, __m512) {
        // SAFETY: the exponents are each group block's first 8 bytes (caller).
        let (e0, e1) = unsafe {
            (
                _mm_loadl_epi64(block.0.cast()),
                _mm_loadl_epi64(block.1.cast()),
            )
        };
        let e = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(e0, e1));
        let one = _mm512_set1_epi32(1);
        let normal = _mm512_slli_epi32::<23>(_mm512_subs_epu16(e, one));
        let tiny = _mm512_srlv_epi32(_mm512_set1_epi32(0x0040_0000), _mm512_sub_epi32(one, e));
        let bits = _mm512_or_si512(normal, tiny);
        (_mm512_castsi512_ps(bits), _mm512_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        let table = every_lane(MXFP4_TABLE);
        // SAFETY: the pairs are bytes 8..136 of each group block (caller).
        unsafe { nibble_codes(block, 8) }.map(|nibbles| _mm512_shuffle_epi8(table, nibbles))
    }

    /// The reference's operand order: `(dx·dw)·isum`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn add_block(
        acc: __m512,
        (dw, _m): (__m512, __m512),
        (dx, _s): (__m512, __m512),
        isum: __m512,
    ) -> __m512 {
        _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(dx, dw), isum))
    }
}

impl Blocks for Q8_0 {
    const W_BLOCK: usize = Q8_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const OFFSET: f32 = 128.0;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn codes(block: Groups) -> [__m512i; 8] {
        let flip = _mm512_set1_epi8(-128);
        // SAFETY: the 8 code steps are bytes 16..272 of each group block (caller).
        std::array::from_fn(|k| _mm512_xor_si512(unsafe { load32x2(block.add(16 + 32 * k)) }, flip))
    }
}

/// Two packed groups of `T` (`n_blocks` group blocks at each of `w`) · the first `N` rows
/// of `x`: lane `j` of `acc[r]` is `vec_dot(w.0 row j, x row r)`, lane `8 + j` that of
/// `w.1`'s row `j`.
///
/// # Safety
/// Both of `w` point to `n_blocks · 8 · W_BLOCK` readable bytes; for r < N, `x.codes[r]`
/// to `n_blocks · X_BLOCK` bytes and `x.scales[r]` to `2 · n_blocks` f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_blocks<T: Blocks, const N: usize>(
    n_blocks: usize,
    w: Groups,
    x: &XRows,
) -> [__m512; NR] {
    let zero = _mm512_setzero_si512();
    let offset = _mm512_set1_ps(T::OFFSET);
    let mut acc = [_mm512_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): group block b of both groups and block b
        // of each activation row are in bounds (caller), and the CPU has the features
        // `T`'s methods need (this function's).
        let block = w.add(b * GROUP_ROWS * T::W_BLOCK);
        prefetch_ahead_to_l2::<{ GROUP_ROWS * Q8_0_BYTES }>(block.0);
        prefetch_ahead_to_l2::<{ GROUP_ROWS * Q8_0_BYTES }>(block.1);
        let w_scales = unsafe { T::scales(block) };
        let codes = unsafe { T::codes(block) };
        let xb = x
            .codes
            .map(|row| row.wrapping_add(b * T::X_BLOCK + T::X_CODES));
        // With one or two rows, the 8 `vpdpbusd` of a row would form one chain of
        // dependent additions: even and odd code vectors go to two chains instead,
        // joined by an i32 add (exact, so the lanes are unchanged).
        let chains = if N <= 2 { 2 } else { 1 };
        let mut sums = [[zero; NR]; 2];
        for k in 0..QK / 4 {
            let chain = k % chains;
            for r in 0..N {
                let xv = unsafe { broadcast4(xb[r].add(4 * k)) };
                sums[chain][r] = _mm512_dpbusd_epi32(sums[chain][r], codes[k], xv);
            }
        }
        let sums: [__m512i; NR] = std::array::from_fn(|r| {
            if chains == 2 {
                _mm512_add_epi32(sums[0][r], sums[1][r])
            } else {
                sums[0][r]
            }
        });
        for r in 0..N {
            let dx = _mm512_set1_ps(unsafe { *x.scales[r].add(2 * b) });
            let s = _mm512_set1_ps(unsafe { *x.scales[r].add(2 * b + 1) });
            let mut isum = _mm512_cvtepi32_ps(sums[r]);
            if T::OFFSET != 0.0 {
                // Q8_0 activations: `s` is the block's code sum; exact (module doc).
                isum = _mm512_fnmadd_ps(offset, s, isum);
            }
            acc[r] = unsafe { T::add_block(acc[r], w_scales, (dx, s), isum) };
        }
    }
    acc
}

impl<T: Blocks> Tile for T {
    const BLOCK_VALUES: usize = QK;
    const GROUP_BLOCK: usize = GROUP_ROWS * T::W_BLOCK;
    const X_BLOCK: usize = <T as Blocks>::X_BLOCK;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: Groups, x: &XRows) -> [__m512; NR] {
        // SAFETY: the caller's contract, which is `tile_blocks`'.
        unsafe { tile_blocks::<T, N>(n_blocks, w, x) }
    }
}

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(dtype: DType) -> Option<PackedFn> {
    match dtype {
        DType::Q4_0 => Some(entry::<Q4_0>),
        DType::Q4_1 => Some(entry::<Q4_1>),
        DType::Q5_0 => Some(entry::<Q5_0>),
        DType::Q5_1 => Some(entry::<Q5_1>),
        DType::Mxfp4 => Some(entry::<Mxfp4>),
        DType::Q8_0 => Some(entry::<Q8_0>),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::e8m0_half_scale;
    use crate::simd::Isa;

    /// Every exponent byte, subnormal and 255 included, in both groups, against the
    /// scalar scale.
    #[test]
    fn mxfp4_scales_are_the_scalar_ones() {
        if !Isa::Avx512.is_available() {
            return;
        }
        for first in (0..256).step_by(2 * GROUP_ROWS) {
            let mut blocks = [[0u8; GROUP_ROWS * MXFP4_BYTES]; 2];
            for (g, block) in blocks.iter_mut().enumerate() {
                for (j, e) in block.iter_mut().take(GROUP_ROWS).enumerate() {
                    *e = (first + GROUP_ROWS * g + j) as u8;
                }
            }
            let mut lanes = [0f32; 2 * GROUP_ROWS];
            let pair = Groups(blocks[0].as_ptr(), blocks[1].as_ptr());
            // SAFETY: the features are available and both are whole group blocks; `lanes`
            // is 16 writable f32.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), Mxfp4::scales(pair).0) };
            for (i, lane) in lanes.iter().enumerate() {
                let want = e8m0_half_scale((first + i) as u8);
                assert_eq!(lane.to_bits(), want.to_bits(), "e = {}", first + i);
            }
        }
    }

    /// The AVX2 module's extreme-code check, for these tiles.
    #[test]
    fn extreme_codes_give_exact_sums() {
        if Isa::Avx512.is_available() {
            super::super::x86_avx2::tests::extreme_codes_match(kernel);
        }
    }
}
