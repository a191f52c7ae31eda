//! AVX2 + FMA + F16C kernels for packed Q4_K, Q5_K and Q6_K weights against Q8_K
//! activations.
//!
//! A tile is one group of 8 packed weight rows against up to 4 activation rows, as in
//! the sibling `x86_avx2`. In a nibble-pair vector (`crate::packed::layouts`) byte
//! `4j + i` holds codes `8p + i` (low nibble) and `8p + 4 + i` (high nibble) of row
//! `j`, so the codes split by `and 0x0F` / `srli 4 + and`, and `maddubs` with 4
//! activation codes broadcast to every lane leaves row `j`'s partial sums in 32-bit
//! lane `j`: no horizontal sums. Q5_K's 5th bits come in as 0 / 16 by a `pshufb` table
//! lookup on a nibble of the 5th-bit byte, Q6_K's top bits by a 16-bit shift and a
//! mask that keeps them inside their byte. The 6-bit scales and mins are decoded once
//! per group block into one `madd` factor per sub-block (row `j`'s value in both i16
//! of lane `j`, by `vpermq` + `pshufb`); all of the weight decode is shared by the
//! tile's activation rows, so one activation row (a decode step) costs about 30 (Q4_K)
//! to 50 (Q5_K, Q6_K) vector instructions per 32 codes of the 8 rows.
//!
//! Per super-block the scalar reference (`dtype::k_quants_dot`) forms two integers,
//! `scaled = Σ_s scale[s]·Σ_{i∈s} qw[i]·qx[i]` and `mins = Σ_s min[s]·(Q8_K code sums
//! of s)`, then adds `(dx·dw)·scaled - (dx·dmin)·mins` to an f32 sum. Here lane `j`
//! computes both integers exactly for its row, and the f32 step is that expression,
//! with plain multiplies, subtracts and adds (never fused), block after block: every
//! lane equals the reference's `vec_dot` bit for bit.
//!
//! Integer bounds (activation codes `|x| ≤ 128`, so a `maddubs` pair is at most
//! `2·c·128` for weight codes `≤ c`; i16 sums wrap silently, so none may pass 32767):
//! - Q4_K (codes ≤ 15, sub-blocks of 32): the 8 `maddubs` of a sub-block sum in i16
//!   (`8·3840 = 30720`), then one `madd` with the sub-block's scale (≤ 63, in both i16
//!   halves of the lane) gives i32 `scale·Σ`.
//! - Q5_K (codes ≤ 31): 4 `maddubs` per i16 sum (`4·7936 = 31744`), 2 `madd` per
//!   sub-block. `|scaled| ≤ 8·63·32·31·128 < 2^26`.
//! - Q4_K/Q5_K mins: `madd` of the min (≤ 63, in both halves) with the two stored i16
//!   code sums of its sub-block: `≤ 2·63·2^15` per pair, `< 2^25` for the block, for any
//!   stored sums (the reference reads the same sums).
//! - Q6_K (codes 0..=63 stored plus 32, signed i8 scales, sub-blocks of 16): 2
//!   `maddubs` per i16 sum (`2·16128 = 32256`), 2 `madd` per sub-block. The offset is
//!   taken out once per block: `Σ_s s·Σ (q - 32)·x = Σ_s s·Σ q·x - 32·Σ_s s·bsum_s`,
//!   the second by `madd` of the scale pairs with the stored 16-code sums. Both terms
//!   and the difference are below `2^29` in magnitude (`16·128·16·63·128` and
//!   `32·16·128·2048`), and the difference is the reference's integer as long as the
//!   stored 16-code sums are the sums of the codes (the reference sums the codes
//!   themselves): true of every Q8_K row wazn's quantizer writes, which are the only
//!   activations the packed products see.
//!
//! The safe entry points are handed out only after AVX2, FMA and F16C were detected at
//! run time (`super::kernel`).

// The tile loops index several arrays (accumulators, rows, code vectors) by the same
// counters, over constant bounds that unroll; iterators would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::PackedFn;
use crate::dtype::DType;
use crate::packed::GROUP_ROWS;
use crate::simd::x86_avx2_util::prefetch_ahead;

/// Activation rows per tile.
const NR: usize = 4;
/// Values per super-block.
pub(super) const QK_K: usize = 256;
/// Group block bytes: 8 rows' blocks of 144, 176 and 210 bytes.
pub(super) const Q4_K_GROUP: usize = GROUP_ROWS * 144;
pub(super) const Q5_K_GROUP: usize = GROUP_ROWS * 176;
pub(super) const Q6_K_GROUP: usize = GROUP_ROWS * 210;
/// Q8_K: `f32 d` @0, `i8 qs[256]` @4, `i16 bsums[16]` @260.
pub(super) const Q8_K_BYTES: usize = 292;
pub(super) const Q8_K_CODES: usize = 4;
pub(super) const Q8_K_SUMS: usize = 260;

/// The weight types of this module, as `packed_gemm`'s const parameter.
const Q4_K: u8 = 4;
const Q5_K: u8 = 5;
const Q6_K: u8 = 6;

/// One tile's activation rows: each row's blocks and its `[n_blocks, 2]` scale table.
struct XRows {
    codes: [*const u8; NR],
    scales: [*const f32; NR],
}

// ---------------------------------------------------------------------------------------
// Loads and shuffles (inlined into the tiles, which carry the same target features)

/// 32 bytes at `at`.
///
/// # Safety
/// `at` points to 32 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32(at: *const u8) -> __m256i {
    // SAFETY: the caller's; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(at.cast()) }
}

/// 16 bytes at `at`.
///
/// # Safety
/// `at` points to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16(at: *const u8) -> __m128i {
    // SAFETY: the caller's; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(at.cast()) }
}

/// The 4 bytes at `at` (4 activation codes, or a pair of i16 code sums) in every lane.
///
/// # Safety
/// `at` points to 4 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn broadcast4(at: *const u8) -> __m256i {
    // SAFETY: the caller's; the read is unaligned.
    _mm256_set1_epi32(unsafe { at.cast::<i32>().read_unaligned() })
}

/// The `pshufb` control that, from a vector whose two 128-bit lanes are equal, writes
/// byte `first + step·j` zero-extended to both i16 halves of 32-bit lane `j`: the
/// row-`j` factor of a `madd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dup_control(first: i8, step: i8) -> __m256i {
    let mut bytes = [-128i8; 32];
    for j in 0..8 {
        let byte = first + step * j as i8;
        bytes[4 * j] = byte;
        bytes[4 * j + 2] = byte;
    }
    // SAFETY: `bytes` is 32 readable bytes.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Both 128-bit lanes of `v` set to its bytes `0..16` (first) and to `16..32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes(v: __m256i) -> [__m256i; 2] {
    [
        _mm256_permute4x64_epi64::<0x44>(v),
        _mm256_permute4x64_epi64::<0xEE>(v),
    ]
}

/// The `pshufb` control that copies i16 half `t` of each 32-bit lane to both halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_control(t: usize) -> __m256i {
    let bytes: [i8; 32] = std::array::from_fn(|i| ((i % 16) / 4 * 4 + 2 * t + i % 2) as i8);
    // SAFETY: `bytes` is 32 readable bytes.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// The `pshufb` table that maps a nibble to 16 where its bit `k` is set, else to 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn bit_table(k: usize) -> __m256i {
    let bytes: [i8; 32] = std::array::from_fn(|i| (((i % 16) >> k) as i8 & 1) << 4);
    // SAFETY: `bytes` is 32 readable bytes.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

// ---------------------------------------------------------------------------------------
// Weight decode, once per group block

/// Q4_K/Q5_K scales and mins of a group block (the 96 bytes @32), per sub-block `s`:
/// lane `j` of `scales[s]` / `mins[s]` holds row `j`'s 6-bit scale / min in both i16.
///
/// Bytes @32 (SL) hold the low 4 bits of the scales, @64 (ML) of the mins, @96 (T)
/// the top 2 bits of the four values of the same byte index, in bits 0..2 (SL low
/// nibble), 2..4 (SL high), 4..6 (ML low), 6..8 (ML high). After the masks every bit
/// stays inside its byte, so 16-bit shifts serve.
///
/// # Safety
/// `block` points to a whole Q4_K or Q5_K group block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales_mins(block: *const u8) -> ([__m256i; 8], [__m256i; 8]) {
    // SAFETY: bytes 32..128 of the group block (caller).
    let (sl, ml, t) = unsafe {
        (
            load32(block.add(32)),
            load32(block.add(64)),
            load32(block.add(96)),
        )
    };
    let low = _mm256_set1_epi8(0x0F);
    let top = |bits: i8| _mm256_and_si256(t, _mm256_set1_epi8(bits));
    // Byte 8s + j of the low table: scale s of row j (s < 4); of the high table: s + 4.
    let scales_low = _mm256_or_si256(_mm256_and_si256(sl, low), _mm256_slli_epi16::<4>(top(0x03)));
    let scales_high = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(sl), low),
        _mm256_slli_epi16::<2>(top(0x0C)),
    );
    // Byte 16q + 2j + t of the low table: min 2q + t of row j; of the high table: + 4.
    let mins_low = _mm256_or_si256(_mm256_and_si256(ml, low), top(0x30));
    let mins_high = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(ml), low),
        _mm256_srli_epi16::<2>(top(0xC0u8 as i8)),
    );
    let (s, m) = (
        [lanes(scales_low), lanes(scales_high)],
        [lanes(mins_low), lanes(mins_high)],
    );
    // Scales s and s + 1 (s even) are bytes 0..8 and 8..16 of a lane; min 2q + t (and
    // 2q + t + 4) of row j is byte 2j + t of lane q.
    let by_row = [dup_control(0, 1), dup_control(8, 1)];
    let by_pair = [dup_control(0, 2), dup_control(1, 2)];
    let scales = std::array::from_fn(|k| _mm256_shuffle_epi8(s[k / 4][(k % 4) / 2], by_row[k % 2]));
    let mins = std::array::from_fn(|k| _mm256_shuffle_epi8(m[k / 4][(k % 4) / 2], by_pair[k % 2]));
    (scales, mins)
}

/// The 8 code vectors of a Q4_K chunk (32 codes of 8 rows; nibble pairs at `at`): for
/// pair `p`, `[2p]` holds codes `8p + i` and `[2p + 1]` codes `8p + 4 + i` in byte
/// `4j + i`.
///
/// # Safety
/// `at` points to 128 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_codes(at: *const u8) -> [__m256i; 8] {
    let low = _mm256_set1_epi8(0x0F);
    // SAFETY: the 4 pairs are the caller's 128 bytes.
    let pairs: [__m256i; 4] = std::array::from_fn(|p| unsafe { load32(at.add(32 * p)) });
    std::array::from_fn(|k| {
        let v = pairs[k / 2];
        if k % 2 == 0 {
            _mm256_and_si256(v, low)
        } else {
            _mm256_and_si256(_mm256_srli_epi16::<4>(v), low)
        }
    })
}

/// As [`q4_k_codes`] for a Q5_K chunk at `at`: 32 bytes of 5th bits, then the nibble
/// pairs. Bit `k` of byte `4j + i` is bit 4 of code vector `k` (bit `2p`: the low code
/// of pair `p`, `2p + 1`: the high one); `tables[k % 4]` (of [`bit_table`]) looks it up
/// in the low or high nibble of the byte as 0 or 16.
///
/// # Safety
/// `at` points to 160 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_codes(at: *const u8, tables: &[__m256i; 4]) -> [__m256i; 8] {
    let low = _mm256_set1_epi8(0x0F);
    // SAFETY: the 5th bits and the pairs are the caller's 160 bytes.
    let (fifth, mut codes) = unsafe { (load32(at), q4_k_codes(at.add(32))) };
    let nibbles = [
        _mm256_and_si256(fifth, low),
        _mm256_and_si256(_mm256_srli_epi16::<4>(fifth), low),
    ];
    for k in 0..8 {
        let bit = if k == 4 {
            _mm256_and_si256(fifth, _mm256_set1_epi8(0x10))
        } else {
            _mm256_shuffle_epi8(tables[k % 4], nibbles[k / 4])
        };
        codes[k] = _mm256_or_si256(codes[k], bit);
    }
    codes
}

/// As [`q4_k_codes`] for a Q6_K chunk at `at`: 64 bytes of top bits, then the nibble
/// pairs. Half `h` of the top bits serves pairs `2h` and `2h + 1`: bits 0..2 / 2..4 of
/// byte `4j + i` are the top bits of pair `2h`'s low / high codes, bits 4..6 / 6..8 of
/// pair `2h + 1`'s; a 16-bit shift moves them to bits 4..6 of the same byte.
///
/// # Safety
/// `at` points to 192 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_codes(at: *const u8) -> [__m256i; 8] {
    let bits45 = _mm256_set1_epi8(0x30);
    // SAFETY: the top bits and the pairs are the caller's 192 bytes.
    let (top, mut codes) = unsafe { ([load32(at), load32(at.add(32))], q4_k_codes(at.add(64))) };
    let moved = [
        _mm256_slli_epi16::<4>(top[0]),
        _mm256_slli_epi16::<2>(top[0]),
        top[0],
        _mm256_srli_epi16::<2>(top[0]),
        _mm256_slli_epi16::<4>(top[1]),
        _mm256_slli_epi16::<2>(top[1]),
        top[1],
        _mm256_srli_epi16::<2>(top[1]),
    ];
    for k in 0..8 {
        codes[k] = _mm256_or_si256(codes[k], _mm256_and_si256(moved[k], bits45));
    }
    codes
}

// ---------------------------------------------------------------------------------------
// Tiles

/// `sum16[r] += Σ_k maddubs(codes[k], the 4 activation codes of row r for code vector
/// k)` for code vectors `first .. first + count` of a chunk whose activation codes start
/// at `x[r] + at`.
///
/// # Safety
/// For r < N, `x[r] + at` points to the chunk's 32 activation codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn add_products<const N: usize>(
    sum16: &mut [__m256i; NR],
    codes: &[__m256i; 8],
    first: usize,
    count: usize,
    x: &[*const u8; NR],
    at: usize,
) {
    for k in first..first + count {
        for r in 0..N {
            // SAFETY: code vector k < 8 meets activation codes 4k .. 4k + 4 (caller).
            let xv = unsafe { broadcast4(x[r].add(at + 4 * k)) };
            sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(codes[k], xv));
        }
    }
}

/// `acc[r] += (dx·dw)·scaled[r] - (dx·dmin)·mins[r]`: the reference's f32 step for
/// block `b`, one lane per weight row, each operation rounded once.
///
/// # Safety
/// For r < N, `x.scales[r]` points to at least `2b + 1` f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn add_block<const N: usize>(
    acc: &mut [__m256; NR],
    x: &XRows,
    b: usize,
    (dw, dmin): (__m256, __m256),
    scaled: &[__m256i; NR],
    mins: &[__m256i; NR],
) {
    for r in 0..N {
        // SAFETY: row r's scale of block b (caller).
        let dx = _mm256_set1_ps(unsafe { *x.scales[r].add(2 * b) });
        let term = _mm256_sub_ps(
            _mm256_mul_ps(_mm256_mul_ps(dx, dw), _mm256_cvtepi32_ps(scaled[r])),
            _mm256_mul_ps(_mm256_mul_ps(dx, dmin), _mm256_cvtepi32_ps(mins[r])),
        );
        acc[r] = _mm256_add_ps(acc[r], term);
    }
}

/// One packed Q4_K (`FIFTH = false`) or Q5_K group (`n_blocks` group blocks at `w`) ·
/// the first `N` rows of `x`: lane `j` of `acc[r]` is `vec_dot(w row j, x row r)`.
///
/// # Safety
/// `w` points to `n_blocks` group blocks (1152 or 1408 bytes); for r < N, `x.codes[r]`
/// to `n_blocks` Q8_K blocks and `x.scales[r]` to `2 · n_blocks` f32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_k4<const FIFTH: bool, const N: usize>(
    n_blocks: usize,
    w: *const u8,
    x: &XRows,
) -> [__m256; NR] {
    let (group_bytes, chunk_bytes) = if FIFTH {
        (Q5_K_GROUP, 160)
    } else {
        (Q4_K_GROUP, 128)
    };
    let zero = _mm256_setzero_si256();
    let tables = std::array::from_fn(|k| bit_table(k));
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): group block b and block b of each
        // activation row are in bounds (caller); the offsets below stay inside them.
        let block = unsafe { w.add(b * group_bytes) };
        if FIFTH {
            prefetch_ahead::<Q5_K_GROUP>(block);
        } else {
            prefetch_ahead::<Q4_K_GROUP>(block);
        }
        let xb = x.codes.map(|row| row.wrapping_add(b * Q8_K_BYTES));
        let (scales, mins16) = unsafe { k4_scales_mins(block) };
        let mut scaled = [zero; NR];
        for c in 0..QK_K / 32 {
            let at = unsafe { block.add(128 + chunk_bytes * c) };
            let codes = unsafe {
                if FIFTH {
                    q5_k_codes(at, &tables)
                } else {
                    q4_k_codes(at)
                }
            };
            let x_at = Q8_K_CODES + 32 * c;
            // Q4_K: the 8 products of the sub-block in one i16 sum; Q5_K: two sums of 4.
            let halves = if FIFTH { 2 } else { 1 };
            for h in 0..halves {
                let mut sum16 = [zero; NR];
                unsafe {
                    add_products::<N>(&mut sum16, &codes, 8 / halves * h, 8 / halves, &xb, x_at)
                };
                for r in 0..N {
                    let products = _mm256_madd_epi16(sum16[r], scales[c]);
                    scaled[r] = _mm256_add_epi32(scaled[r], products);
                }
            }
        }
        let mut mins = [zero; NR];
        for s in 0..QK_K / 32 {
            for r in 0..N {
                // The two stored code sums of sub-block s, against its min.
                let sums = unsafe { broadcast4(xb[r].add(Q8_K_SUMS + 4 * s)) };
                mins[r] = _mm256_add_epi32(mins[r], _mm256_madd_epi16(mins16[s], sums));
            }
        }
        let dw = _mm256_cvtph_ps(unsafe { load16(block) });
        let dmin = _mm256_cvtph_ps(unsafe { load16(block.add(16)) });
        unsafe { add_block::<N>(&mut acc, x, b, (dw, dmin), &scaled, &mins) };
    }
    acc
}

/// One packed Q6_K group (`n_blocks` group blocks of 1680 bytes at `w`) · the first `N`
/// rows of `x`.
///
/// # Safety
/// As [`tile_k4`], with Q6_K group blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q6_k<const N: usize>(n_blocks: usize, w: *const u8, x: &XRows) -> [__m256; NR] {
    let zero = _mm256_setzero_si256();
    let by_sub = [half_control(0), half_control(1)];
    let mut acc = [_mm256_setzero_ps(); NR];
    for b in 0..n_blocks {
        // SAFETY (every read of this loop body): as in `tile_k4`.
        let block = unsafe { w.add(b * Q6_K_GROUP) };
        prefetch_ahead::<Q6_K_GROUP>(block);
        let xb = x.codes.map(|row| row.wrapping_add(b * Q8_K_BYTES));
        let mut scaled = [zero; NR];
        let mut offsets = [zero; NR];
        for c in 0..QK_K / 32 {
            // Byte 2j + t: row j's scale of sub-block 2c + t.
            let scale_bytes = unsafe { load16(block.add(16 + 16 * c)) };
            let pairs = _mm256_cvtepi8_epi16(scale_bytes);
            for r in 0..N {
                // Σ_t scale(2c + t)·(stored code sum of sub-block 2c + t).
                let sums = unsafe { broadcast4(xb[r].add(Q8_K_SUMS + 4 * c)) };
                offsets[r] = _mm256_add_epi32(offsets[r], _mm256_madd_epi16(pairs, sums));
            }
            let codes = unsafe { q6_k_codes(block.add(144 + 192 * c)) };
            let x_at = Q8_K_CODES + 32 * c;
            // Sub-block 2c + t: code vectors 4t .. 4t + 4, in two i16 sums of 2.
            for t in 0..2 {
                let scale = _mm256_shuffle_epi8(pairs, by_sub[t]);
                for h in 0..2 {
                    let mut sum16 = [zero; NR];
                    unsafe { add_products::<N>(&mut sum16, &codes, 4 * t + 2 * h, 2, &xb, x_at) };
                    for r in 0..N {
                        let products = _mm256_madd_epi16(sum16[r], scale);
                        scaled[r] = _mm256_add_epi32(scaled[r], products);
                    }
                }
            }
        }
        // The codes are stored plus 32: take 32·Σ scale·(code sum) out, exactly.
        for r in 0..N {
            scaled[r] = _mm256_sub_epi32(scaled[r], _mm256_slli_epi32::<5>(offsets[r]));
        }
        let dw = _mm256_cvtph_ps(unsafe { load16(block) });
        // Q6_K has no mins: the reference still subtracts (dx·0)·0, which can turn a
        // -0.0 term into +0.0, so the kernel does too.
        let (dmin, mins) = (_mm256_setzero_ps(), [zero; NR]);
        unsafe { add_block::<N>(&mut acc, x, b, (dw, dmin), &scaled, &mins) };
    }
    acc
}

/// The tiles of a product: activation row tiles outside, groups inside (the call's
/// groups stay in L1/L2 while the activation tiles pass).
#[target_feature(enable = "avx2,fma,f16c")]
fn packed_gemm<const TYPE: u8>(
    n_cols: usize,
    w: &[u8],
    n_groups: usize,
    x: &[u8],
    n_x_rows: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    let group_block = match TYPE {
        Q4_K => Q4_K_GROUP,
        Q5_K => Q5_K_GROUP,
        _ => Q6_K_GROUP,
    };
    let width = n_groups * GROUP_ROWS;
    let n_blocks = n_cols / QK_K;
    if n_blocks == 0 {
        let n = (n_x_rows * width).min(out.len());
        out[..n].fill(0.0);
        return;
    }
    let (group_bytes, x_row, scales_row) =
        (n_blocks * group_block, n_blocks * Q8_K_BYTES, 2 * n_blocks);
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
                match (TYPE, nr) {
                    (Q4_K, 4) => tile_k4::<false, 4>(n_blocks, group, &rows),
                    (Q4_K, 3) => tile_k4::<false, 3>(n_blocks, group, &rows),
                    (Q4_K, 2) => tile_k4::<false, 2>(n_blocks, group, &rows),
                    (Q4_K, _) => tile_k4::<false, 1>(n_blocks, group, &rows),
                    (Q5_K, 4) => tile_k4::<true, 4>(n_blocks, group, &rows),
                    (Q5_K, 3) => tile_k4::<true, 3>(n_blocks, group, &rows),
                    (Q5_K, 2) => tile_k4::<true, 2>(n_blocks, group, &rows),
                    (Q5_K, _) => tile_k4::<true, 1>(n_blocks, group, &rows),
                    (_, 4) => tile_q6_k::<4>(n_blocks, group, &rows),
                    (_, 3) => tile_q6_k::<3>(n_blocks, group, &rows),
                    (_, 2) => tile_q6_k::<2>(n_blocks, group, &rows),
                    (_, _) => tile_q6_k::<1>(n_blocks, group, &rows),
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
    ($name:ident, $type:expr) => {
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

packed_entry!(packed_q4_k_q8_k, Q4_K);
packed_entry!(packed_q5_k_q8_k, Q5_K);
packed_entry!(packed_q6_k_q8_k, Q6_K);

/// This module's kernel for packed weights of `dtype`.
pub(super) fn kernel(dtype: DType) -> Option<PackedFn> {
    match dtype {
        DType::Q4_K => Some(packed_q4_k_q8_k),
        DType::Q5_K => Some(packed_q5_k_q8_k),
        DType::Q6_K => Some(packed_q6_k_q8_k),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::packed::{activation_scales, pack};

    /// A Q8_K block of scale `d` and the given codes, with its 16-code sums.
    fn q8_k_block(d: f32, codes: impl Fn(usize) -> i8) -> Vec<u8> {
        let mut block = vec![0u8; Q8_K_BYTES];
        block[..4].copy_from_slice(&d.to_le_bytes());
        for i in 0..QK_K {
            block[Q8_K_CODES + i] = codes(i) as u8;
        }
        for k in 0..16 {
            let sum: i16 = (0..16).map(|i| codes(16 * k + i) as i16).sum();
            block[Q8_K_SUMS + 2 * k..][..2].copy_from_slice(&sum.to_le_bytes());
        }
        block
    }

    /// The integer bounds at their extremes: every weight code and scale at its largest
    /// (or Q6_K's scales at -128), against activation codes of -128, 127 and both, all
    /// bit for bit as the scalar reference (no i16 sum wraps, no `maddubs` saturates).
    #[test]
    fn extreme_codes_match_the_reference() {
        if crate::simd::Isa::Avx2.is_available() {
            extreme_codes_match(kernel);
        }
    }

    /// The check of `extreme_codes_match_the_reference` for the kernels `kernel` gives.
    pub(in crate::simd::packed) fn extreme_codes_match(kernel: fn(DType) -> Option<PackedFn>) {
        let x_patterns: [fn(usize) -> i8; 4] = [
            |_| -128,
            |_| 127,
            |i| [-128, 127][i % 2],
            |i| [-128, -128, 127, -1][i % 4],
        ];
        for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            let run = kernel(dtype).unwrap();
            // 3 groups and 9 activation rows: whole and ragged tiles of every level.
            let (n_w, n_blocks, n_x) = (24, 2, 9);
            let n_cols = n_blocks * QK_K;
            let row_bytes = dtype.row_bytes(n_cols).unwrap();
            for fill in [0xFFu8, 0x80, 0x00] {
                let mut w = vec![fill; n_w * row_bytes];
                for (b, block) in w.chunks_exact_mut(dtype.type_size()).enumerate() {
                    let d = half::f16::from_f32(0.01 + 0.001 * b as f32)
                        .to_bits()
                        .to_le_bytes();
                    let at: &[usize] = if dtype == DType::Q6_K {
                        &[208]
                    } else {
                        &[0, 2]
                    };
                    for &at in at {
                        block[at..at + 2].copy_from_slice(&d);
                    }
                }
                let packed = pack(dtype, &w, n_w, n_cols).unwrap();
                for pattern in x_patterns {
                    let x: Vec<u8> = (0..n_x * n_blocks)
                        .flat_map(|b| q8_k_block(0.5 + b as f32, |i| pattern(i + b)))
                        .collect();
                    let scales = activation_scales(DType::Q8_K, &x, n_cols, n_x);
                    let mut got = vec![f32::NAN; n_w * n_x];
                    run(n_cols, &packed, n_w / 8, &x, n_x, &scales, &mut got);
                    let vec_dot = dtype.scalar_traits().vec_dot;
                    let x_row = DType::Q8_K.row_bytes(n_cols).unwrap();
                    for (i, value) in got.iter().enumerate() {
                        let (r, o) = (i / n_w, i % n_w);
                        let want = vec_dot(
                            n_cols,
                            &w[o * row_bytes..][..row_bytes],
                            &x[r * x_row..][..x_row],
                        );
                        assert_eq!(
                            value.to_bits(),
                            want.to_bits(),
                            "{dtype} {fill:#x} x row {r} w row {o}"
                        );
                    }
                }
            }
        }
    }
}
