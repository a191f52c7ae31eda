//! AVX2 + FMA + F16C kernels for packed weights: Q8_0, Q4_0, Q5_0 and MXFP4 against
//! Q8_0 activations, Q4_1 and Q5_1 against Q8_1.
//!
//! A tile is one group of 8 packed weight rows against up to 4 activation rows. Each
//! step broadcasts 4 codes of an activation row to every lane, and `maddubs` + `madd`
//! leave in lane `j` weight row `j`'s partial dot product, so after a block every lane
//! holds its pair's exact integer block sum. The block's scales (8 f16 at the head of
//! the group block, widened at once; MXFP4: 8 exponents made into 8 f32 powers of two)
//! are applied to the 8 lanes with the scalar reference's products and sums in its
//! order (plain multiplies and adds, never fused): every lane equals the reference's
//! `vec_dot` bit for bit.
//!
//! Nibble types (all but Q8_0; one generic tile, [`tile_nibbles`]): a 32-byte nibble
//! pair gives two vectors of unsigned codes `u`, 4 of each row in its lane (`and 0x0F`,
//! and `srli 4` + `and`), widened to 5 bits by the 5th bits (Q5_0, Q5_1: bit `2p` /
//! `2p + 1` moved to bit 4 by a 16-bit shift and `and 0x10`) or mapped through a
//! `pshufb` table (MXFP4: the doubled E2M1 value `k` + 12, so 0..=24). A `maddubs` step
//! (u8 `u` by i8 `x`, |x| ≤ 128) puts the sum of two products in an i16 lane, at most
//! 2·max(u)·128 in magnitude, so `madd` widens the i16 sums to i32 before they could
//! saturate: after 8 steps (a whole block) for 4-bit codes (≤ 30720), after 4 for 5-bit
//! codes (≤ 31744) and MXFP4's (≤ 24576).
//!
//! Where the value is offset (Q4_0: `u - 8`, Q5_0: `u - 16`, MXFP4: `k = u - 12`) the
//! lanes sum Σ u·x, and the offset times the block's activation code sum (exact, in
//! `x_scales`) is taken off in f32 by one `fnmadd`. This is integer arithmetic, not the
//! reference's f32 expression: every operand and the exact result are integers below
//! 2^24 in magnitude, so the fused operation rounds nothing and gives the reference's
//! `isum as f32` itself (+0 for a zero sum, as `0 as f32`). Decoding costs 3 vector
//! operations per 32 weight bytes (Q4_0, Q4_1), 5 (MXFP4) or 9 (Q5_0, Q5_1), plus 2
//! `maddubs` and 2 adds per activation row.
//!
//! The safe entry points are handed out only after AVX2, FMA and F16C were detected at
//! run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, pointers) by the same row
// counter, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::PackedFn;
use crate::dtype::{
    DType, KVALUES, MXFP4_BYTES, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK,
};
use crate::packed::GROUP_ROWS;
use crate::simd::x86_avx2_util::prefetch_ahead;

/// Activation rows per tile.
const NR: usize = 4;

const Q5_0_BYTES: usize = 22;
const Q5_1_BYTES: usize = 24;

/// The largest group block of a nibble type (Q5_1). Prefetching that many bytes covers
/// any nibble type's next group blocks; for every one of them (136 to 192 bytes) it is
/// the same 3 cache lines that its own size would give.
const MAX_NIBBLE_GROUP_BLOCK: usize = GROUP_ROWS * Q5_1_BYTES;

/// One tile's activation rows: each row's blocks and its `[n_blocks, 2]` scale table.
struct XRows {
    codes: [*const u8; NR],
    scales: [*const f32; NR],
}

/// A packed weight type: its block sizes and its tile.
trait Packed {
    /// Bytes of one stored weight block (a group block is 8 of them).
    const W_BLOCK: usize;
    /// Bytes of one block of the activation type.
    const X_BLOCK: usize;

    /// One packed group (`n_blocks` group blocks at `w`) · the first `N` rows of `x`:
    /// lane `j` of `acc[r]` is `vec_dot(w row j, x row r)`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C are available; `w` points to `n_blocks · 8 · W_BLOCK`
    /// readable bytes; for r < N, `x.codes[r]` to `n_blocks · X_BLOCK` bytes and
    /// `x.scales[r]` to `2 · n_blocks` f32.
    unsafe fn tile<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR];
}

/// A type whose group block holds its scales and then 4 nibble pairs (and for Q5_0 /
/// Q5_1 the 5th bits): how its codes and scales are read, for [`tile_nibbles`].
///
/// Every method requires AVX2, FMA and F16C; those that take `block` read the group
/// block at it (`8 · W_BLOCK` readable bytes).
trait Nibbles {
    /// Bytes of one stored weight block.
    const W_BLOCK: usize;
    /// Bytes of one activation block (Q8_0 or Q8_1).
    const X_BLOCK: usize;
    /// Where an activation block's codes start.
    const X_CODES: usize;
    /// Where the nibble pairs start in a group block.
    const PAIRS: usize;
    /// What the integer values are below the unsigned codes `u` (the code sum times
    /// it is taken off), 0 for Q4_1 / Q5_1.
    const OFFSET: f32;
    /// Whether a code may exceed 15, so that an i16 accumulator takes only 4 steps.
    const WIDE: bool;

    /// The 8 rows' scales and (Q4_1, Q5_1) offsets `m`.
    unsafe fn scales(block: *const u8) -> (__m256, __m256);

    /// What every pair of the block needs besides its nibbles (the 5th bits).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn extra(_block: *const u8) -> __m256i {
        _mm256_setzero_si256()
    }

    /// Pair `pair`'s unsigned codes from its 32 bytes `packed`: row `j`'s codes
    /// `8·pair .. 8·pair + 4` in lane `j` of the first, the next 4 in the second.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(packed: __m256i, _extra: __m256i, _pair: usize) -> (__m256i, __m256i) {
        nibbles(packed)
    }

    /// `acc` plus one block's term, the reference's expression: `(dw·dx)·isum` (and
    /// `+ m·s` for the offset types).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add_block(
        acc: __m256,
        (dw, _m): (__m256, __m256),
        (dx, _s): (__m256, __m256),
        isum: __m256,
    ) -> __m256 {
        _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, dx), isum))
    }
}

/// The low and the high nibbles of `packed`, each byte's in its own byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(packed: __m256i) -> (__m256i, __m256i) {
    let low_nibbles = _mm256_set1_epi8(0x0F);
    let first = _mm256_and_si256(packed, low_nibbles);
    let second = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low_nibbles);
    (first, second)
}

/// The nibbles of `packed` with bit 4 of each code from the 5th bits `bits` of pair
/// `pair` (bits `2·pair` and `2·pair + 1` of each byte). A 16-bit shift by at most 4
/// moves each byte's bit to bit 4 of the same byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn codes5(packed: __m256i, bits: __m256i, pair: usize) -> (__m256i, __m256i) {
    let (first, second) = nibbles(packed);
    let (low, high) = match pair {
        0 => (_mm256_slli_epi16::<4>(bits), _mm256_slli_epi16::<3>(bits)),
        1 => (_mm256_slli_epi16::<2>(bits), _mm256_slli_epi16::<1>(bits)),
        2 => (bits, _mm256_srli_epi16::<1>(bits)),
        _ => (_mm256_srli_epi16::<2>(bits), _mm256_srli_epi16::<3>(bits)),
    };
    let bit4 = _mm256_set1_epi8(0x10);
    (
        _mm256_or_si256(first, _mm256_and_si256(low, bit4)),
        _mm256_or_si256(second, _mm256_and_si256(high, bit4)),
    )
}

/// The 8 f16 at `at`, widened (exact).
///
/// # Safety
/// `at` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x8(at: *const u8) -> __m256 {
    // SAFETY: 16 readable bytes (caller); loadu has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(at.cast()) })
}

/// The offset types' term: `(dw·dx)·isum + m·s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_offset_block(acc: __m256, w: (__m256, __m256), x: (__m256, __m256), isum: __m256) -> __m256 {
    let scaled = _mm256_mul_ps(_mm256_mul_ps(w.0, x.0), isum);
    _mm256_add_ps(acc, _mm256_add_ps(scaled, _mm256_mul_ps(w.1, x.1)))
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
/// Q8_0 · Q8_0.
struct Q8_0;

impl Nibbles for Q4_0 {
    const W_BLOCK: usize = Q4_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const PAIRS: usize = 16;
    const OFFSET: f32 = 8.0;
    const WIDE: bool = false;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(block: *const u8) -> (__m256, __m256) {
        // SAFETY: `d` is the group block's first 16 bytes (caller).
        (unsafe { f16x8(block) }, _mm256_setzero_ps())
    }
}

impl Nibbles for Q4_1 {
    const W_BLOCK: usize = Q4_1_BYTES;
    const X_BLOCK: usize = Q8_1_BYTES;
    const X_CODES: usize = 4;
    const PAIRS: usize = 32;
    const OFFSET: f32 = 0.0;
    const WIDE: bool = false;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(block: *const u8) -> (__m256, __m256) {
        // SAFETY: `d` and `m` are the group block's first 32 bytes (caller).
        unsafe { (f16x8(block), f16x8(block.add(16))) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add_block(
        acc: __m256,
        w: (__m256, __m256),
        x: (__m256, __m256),
        isum: __m256,
    ) -> __m256 {
        add_offset_block(acc, w, x, isum)
    }
}

impl Nibbles for Q5_0 {
    const W_BLOCK: usize = Q5_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const PAIRS: usize = 48;
    const OFFSET: f32 = 16.0;
    const WIDE: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(block: *const u8) -> (__m256, __m256) {
        // SAFETY: as for Q4_0.
        (unsafe { f16x8(block) }, _mm256_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn extra(block: *const u8) -> __m256i {
        // SAFETY: the 5th bits are bytes 16..48 of the group block (caller).
        unsafe { _mm256_loadu_si256(block.add(16).cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(packed: __m256i, extra: __m256i, pair: usize) -> (__m256i, __m256i) {
        codes5(packed, extra, pair)
    }
}

impl Nibbles for Q5_1 {
    const W_BLOCK: usize = Q5_1_BYTES;
    const X_BLOCK: usize = Q8_1_BYTES;
    const X_CODES: usize = 4;
    const PAIRS: usize = 64;
    const OFFSET: f32 = 0.0;
    const WIDE: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(block: *const u8) -> (__m256, __m256) {
        // SAFETY: as for Q4_1.
        unsafe { (f16x8(block), f16x8(block.add(16))) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn extra(block: *const u8) -> __m256i {
        // SAFETY: the 5th bits are bytes 32..64 of the group block (caller).
        unsafe { _mm256_loadu_si256(block.add(32).cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(packed: __m256i, extra: __m256i, pair: usize) -> (__m256i, __m256i) {
        codes5(packed, extra, pair)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add_block(
        acc: __m256,
        w: (__m256, __m256),
        x: (__m256, __m256),
        isum: __m256,
    ) -> __m256 {
        add_offset_block(acc, w, x, isum)
    }
}

/// MXFP4's unsigned codes: the doubled E2M1 values ([`KVALUES`]) + 12, by 4-bit code.
const MXFP4_TABLE: [u8; 16] = {
    let mut table = [0; 16];
    let mut code = 0;
    while code < 16 {
        table[code] = (KVALUES[code] + 12) as u8;
        code += 1;
    }
    table
};

impl Nibbles for Mxfp4 {
    const W_BLOCK: usize = MXFP4_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;
    const X_CODES: usize = 2;
    const PAIRS: usize = 8;
    const OFFSET: f32 = 12.0;
    const WIDE: bool = true;

    /// `e8m0_half_scale` of the 8 exponents: `(e - 1) << 23` is 2^(e - 128) for e ≥ 2
    /// (e = 255 included: 2^127), and e = 0, 1 give the subnormals `0x0040_0000 >>
    /// (1 - e)`. The first is 0 for e < 2 (a saturating `e - 1`: the high 16 bits of
    /// each lane are 0), the second for e ≥ 2 (shift counts of 32 and more), so an `or`
    /// joins them.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(block: *const u8) -> (__m256, __m256) {
        // SAFETY: the exponents are the group block's first 8 bytes (caller).
        let e = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(block.cast()) });
        let one = _mm256_set1_epi32(1);
        let normal = _mm256_slli_epi32::<23>(_mm256_subs_epu16(e, one));
        let tiny = _mm256_srlv_epi32(_mm256_set1_epi32(0x0040_0000), _mm256_sub_epi32(one, e));
        let bits = _mm256_or_si256(normal, tiny);
        (_mm256_castsi256_ps(bits), _mm256_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(packed: __m256i, _extra: __m256i, _pair: usize) -> (__m256i, __m256i) {
        // SAFETY: the table is 16 readable bytes.
        let table = unsafe { _mm_loadu_si128(MXFP4_TABLE.as_ptr().cast()) };
        // In both 128-bit lanes: pshufb looks up within each lane.
        let table = _mm256_broadcastsi128_si256(table);
        let (first, second) = nibbles(packed);
        (
            _mm256_shuffle_epi8(table, first),
            _mm256_shuffle_epi8(table, second),
        )
    }

    /// The reference's operand order: `(dx·dw)·isum`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add_block(
        acc: __m256,
        (dw, _m): (__m256, __m256),
        (dx, _s): (__m256, __m256),
        isum: __m256,
    ) -> __m256 {
        _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dx, dw), isum))
    }
}

impl<T: Nibbles> Packed for T {
    const W_BLOCK: usize = <T as Nibbles>::W_BLOCK;
    const X_BLOCK: usize = <T as Nibbles>::X_BLOCK;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
        // SAFETY: the caller's contract, which is `tile_nibbles`'.
        unsafe { tile_nibbles::<T, N>(n_blocks, w, x) }
    }
}

impl Packed for Q8_0 {
    const W_BLOCK: usize = Q8_0_BYTES;
    const X_BLOCK: usize = Q8_0_BYTES;

    #[inline]
    unsafe fn tile<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
        // SAFETY: the caller's contract, which is `tile_q8_0`'s.
        unsafe { tile_q8_0::<N>(n_blocks, w, x) }
    }
}

/// One packed group of a nibble type `T` · the first `N` rows of `x` ([`Packed::tile`]).
///
/// # Safety
/// As [`Packed::tile`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_nibbles<T: Nibbles, const N: usize>(
    n_blocks: usize,
    w: *const u8,
    x: &XRows,
) -> [__m256; NR] {
    let ones = _mm256_set1_epi16(1);
    let offset = _mm256_set1_ps(T::OFFSET);
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): group block b and block b of each
        // activation row are in bounds (caller), and the CPU has the features `T`'s
        // methods need (this function's).
        let block = unsafe { w.add(b * GROUP_ROWS * T::W_BLOCK) };
        prefetch_ahead::<MAX_NIBBLE_GROUP_BLOCK>(block);
        let w_scales = unsafe { T::scales(block) };
        let extra = unsafe { T::extra(block) };
        let mut isum = [_mm256_setzero_si256(); NR];
        let mut sum16 = [_mm256_setzero_si256(); NR];
        for pair in 0..4 {
            let packed = unsafe { _mm256_loadu_si256(block.add(T::PAIRS + 32 * pair).cast()) };
            let (first, second) = unsafe { T::codes(packed, extra, pair) };
            for r in 0..N {
                let codes = unsafe { x.codes[r].add(b * T::X_BLOCK + T::X_CODES + 8 * pair) };
                let x_first = _mm256_set1_epi32(unsafe { codes.cast::<i32>().read_unaligned() });
                let x_second =
                    _mm256_set1_epi32(unsafe { codes.add(4).cast::<i32>().read_unaligned() });
                sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(first, x_first));
                sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(second, x_second));
            }
            // Codes above 15: widen after every 4 steps (see the module doc).
            if T::WIDE && pair % 2 == 1 {
                for r in 0..N {
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(sum16[r], ones));
                    sum16[r] = _mm256_setzero_si256();
                }
            }
        }
        for r in 0..N {
            if !T::WIDE {
                isum[r] = _mm256_madd_epi16(sum16[r], ones);
            }
            let dx = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b) });
            let s = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b + 1) });
            let mut isum_f = _mm256_cvtepi32_ps(isum[r]);
            if T::OFFSET != 0.0 {
                // Q8_0 activations: `s` is the block's code sum. The exact result is
                // an integer below 2^24, so one rounding or two give it (module doc).
                isum_f = _mm256_fnmadd_ps(offset, s, isum_f);
            }
            acc[r] = unsafe { T::add_block(acc[r], w_scales, (dx, s), isum_f) };
        }
    }
    acc
}

/// One packed Q8_0 group (`n_blocks` group blocks at `w`) · the first `N` rows of `x`.
///
/// # Safety
/// As [`Packed::tile`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q8_0<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): as in `tile_nibbles`.
        let block = unsafe { w.add(b * GROUP_ROWS * Q8_0_BYTES) };
        prefetch_ahead::<{ GROUP_ROWS * Q8_0_BYTES }>(block);
        let dw = unsafe { f16x8(block) };
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
fn packed_gemm<T: Packed>(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    let width = n_groups * GROUP_ROWS;
    let n_blocks = n_cols / QK;
    if n_blocks == 0 {
        let n = (n_x_rows * width).min(out.len());
        out[..n].fill(0.0);
        return;
    }
    let (group_bytes, x_row, scales_row) = (
        n_blocks * GROUP_ROWS * T::W_BLOCK,
        n_blocks * T::X_BLOCK,
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
            // SAFETY: this function's features are the tile's; group g holds n_blocks
            // group blocks (n_g groups fit `w`), and every activation pointer starts a
            // whole row of `x` (n_x rows fit it) or its row of the scale table.
            let acc = unsafe {
                match nr {
                    4 => T::tile::<4>(n_blocks, group, &rows),
                    3 => T::tile::<3>(n_blocks, group, &rows),
                    2 => T::tile::<2>(n_blocks, group, &rows),
                    _ => T::tile::<1>(n_blocks, group, &rows),
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
    ($name:ident, $type:ty) => {
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
            unsafe { packed_gemm::<$type>(n_cols, w, n_groups, x, n_x_rows, x_scales, out) }
        }
    };
}

packed_entry!(packed_q8_0_q8_0, Q8_0);
packed_entry!(packed_q4_0_q8_0, Q4_0);
packed_entry!(packed_q4_1_q8_1, Q4_1);
packed_entry!(packed_q5_0_q8_0, Q5_0);
packed_entry!(packed_q5_1_q8_1, Q5_1);
packed_entry!(packed_mxfp4_q8_0, Mxfp4);

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(dtype: DType) -> Option<PackedFn> {
    match dtype {
        DType::Q8_0 => Some(packed_q8_0_q8_0),
        DType::Q4_0 => Some(packed_q4_0_q8_0),
        DType::Q4_1 => Some(packed_q4_1_q8_1),
        DType::Q5_0 => Some(packed_q5_0_q8_0),
        DType::Q5_1 => Some(packed_q5_1_q8_1),
        DType::Mxfp4 => Some(packed_mxfp4_q8_0),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dtype::e8m0_half_scale;
    use crate::packed::{activation_scales, pack};
    use crate::simd::Isa;

    /// Every exponent byte, subnormal and 255 included, against the scalar scale.
    #[test]
    fn mxfp4_scales_are_the_scalar_ones() {
        if !Isa::Avx2.is_available() {
            return;
        }
        for first in (0..256).step_by(GROUP_ROWS) {
            let mut block = [0u8; GROUP_ROWS * MXFP4_BYTES];
            for (j, e) in block.iter_mut().take(GROUP_ROWS).enumerate() {
                *e = (first + j) as u8;
            }
            let mut lanes = [0f32; GROUP_ROWS];
            // SAFETY: AVX2, FMA and F16C are available and `block` is a whole group
            // block; `lanes` is 8 writable f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), Mxfp4::scales(block.as_ptr()).0) };
            for (j, lane) in lanes.iter().enumerate() {
                let want = e8m0_half_scale((first + j) as u8);
                assert_eq!(lane.to_bits(), want.to_bits(), "e = {}", first + j);
            }
        }
    }

    /// The largest codes of each type (and MXFP4's smallest) against activation codes
    /// of the largest magnitude, -128 included: the i16 sums do not saturate.
    #[test]
    fn extreme_codes_give_exact_sums() {
        if Isa::Avx2.is_available() {
            extreme_codes_match(kernel);
        }
    }

    /// The check of `extreme_codes_give_exact_sums` for the kernels `kernel` gives (and
    /// Q8_0's codes of -128 and 127, against activation codes other than -128, which no
    /// Q8_0 quantizer writes), on 3 groups: whole and odd pairs of groups.
    pub(in crate::simd::packed) fn extreme_codes_match(kernel: fn(DType) -> Option<PackedFn>) {
        let one = half::f16::ONE.to_bits().to_le_bytes();
        let kinds = [
            (DType::Q4_0, 0xFF),
            (DType::Q4_1, 0xFF),
            (DType::Q5_0, 0xFF),
            (DType::Q5_1, 0xFF),
            (DType::Mxfp4, 0x77),
            (DType::Mxfp4, 0xFF),
            (DType::Q8_0, 0x80),
            (DType::Q8_0, 0x7F),
        ];
        for (dtype, code_byte) in kinds {
            let run = kernel(dtype).expect("a kernel");
            let (n_rows, n_cols) = (3 * GROUP_ROWS, 3 * QK);
            let mut w = vec![code_byte; n_rows * dtype.row_bytes(n_cols).unwrap()];
            for block in w.chunks_exact_mut(dtype.type_size()) {
                match dtype {
                    DType::Mxfp4 => block[0] = 127,
                    DType::Q4_1 | DType::Q5_1 => {
                        block[..2].copy_from_slice(&one);
                        block[2..4].copy_from_slice(&one);
                    }
                    _ => block[..2].copy_from_slice(&one),
                }
            }
            let packed = pack(dtype, &w, n_rows, n_cols).unwrap();
            let partner = dtype.scalar_traits().vec_dot_type;
            for code in [127i8, -127, -128] {
                if dtype == DType::Q8_0 && code == -128 {
                    continue;
                }
                let mut x = vec![code as u8; partner.row_bytes(n_cols).unwrap()];
                for block in x.chunks_exact_mut(partner.type_size()) {
                    block[..2].copy_from_slice(&one);
                    if partner == DType::Q8_1 {
                        let s = half::f16::from_f32(32.0 * code as f32).to_bits();
                        block[2..4].copy_from_slice(&s.to_le_bytes());
                    }
                }
                let scales = activation_scales(partner, &x, n_cols, 1);
                let mut got = [f32::NAN; 3 * GROUP_ROWS];
                run(n_cols, &packed, 3, &x, 1, &scales, &mut got);
                let row = dtype.row_bytes(n_cols).unwrap();
                let want = (dtype.scalar_traits().vec_dot)(n_cols, &w[..row], &x);
                for value in got {
                    assert_eq!(value.to_bits(), want.to_bits(), "{dtype} {code}: {value}");
                }
            }
        }
    }
}
