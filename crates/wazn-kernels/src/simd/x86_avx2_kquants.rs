//! AVX2 dot products of the K-quant weight types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with Q8_K
//! activation rows, one row or four at a time, and the Q8_K activation quantizer.
//!
//! They equal the scalar reference (`crate::dtype`, `k_quants_dot`) bit for bit. Per
//! super-block the reference forms two integers, `scaled = Σ_j scale[j]·Σ_{i∈j} qw[i]·qx[i]`
//! and `mins = Σ_j min[j]·(Q8_K code sums of j)`, and then adds
//! `(dx·dw)·scaled - (dx·dmin)·mins` to an f32 running sum. The vector units compute the two
//! integers (exact in any order: no partial sum leaves i16 / i32, see below); the f32 step
//! is the reference's own expression, block after block, in its order.
//!
//! Integer products: weight codes are made non-negative (u8) and multiplied with the i8
//! activation codes by `maddubs` (pairs of products summed into i16), then `madd` with
//! the sub-block scales (i16) sums pairs into i32. The largest pair is 2·63·128 = 16128
//! (Q6_K codes stored plus 32), so `maddubs` never saturates, for any activation code
//! including -128. Types whose codes are signed (Q3_K: q - 4, Q6_K: q - 32) subtract the
//! offset times the activation codes, also by `maddubs`, from the codes themselves rather
//! than from the stored Q8_K sums, so the result does not depend on those sums agreeing.
//!
//! The quantizer equals the reference bit for bit too: the same f32 products, rounded half
//! to even by the vector unit, NaN and out-of-range values mapped as Rust's `as i32` and
//! the clamp map them.
//!
//! The safe entry points may be called only on a CPU with AVX2, FMA and F16C:
//! `super::Isa::Avx2` hands them out only after checking that at run time.

use std::arch::x86_64::*;

use super::x86_avx2_util::{block, entry, f16_at, load16_at, load32_at};

/// Elements per super-block.
const QK_K: usize = 256;
const Q2_K_BYTES: usize = 84;
const Q3_K_BYTES: usize = 110;
const Q4_K_BYTES: usize = 144;
const Q5_K_BYTES: usize = 176;
const Q6_K_BYTES: usize = 210;
/// Q8_K: `f32 d; i8 qs[256]; i16 bsums[16]`.
const Q8_K_BYTES: usize = 292;
const Q8_K_CODES: usize = 4;
const Q8_K_SUMS: usize = 260;

// ---------------------------------------------------------------------------------------
// Loads and small helpers (inlined into the callers, which carry the target features)

/// The little-endian u32 at `bytes[offset..offset + 4]` (0 if short).
#[inline]
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    match bytes.get(offset..offset + 4) {
        Some(&[b0, b1, b2, b3]) => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    }
}

/// The Q8_K block's scale d.
#[inline]
fn q8_k_d(xb: &[u8]) -> f32 {
    f32::from_bits(u32_at(xb, 0))
}

/// The lane sums of 4 vectors of 8 i32, in order. Exact: the reference's bounds keep
/// every partial sum in i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sums4(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The shuffle that copies i16 element `k` of each 128-bit lane to the whole lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pick_i16(table: __m256i, k: usize) -> __m256i {
    let byte = 2 * k as i16;
    _mm256_shuffle_epi8(table, _mm256_set1_epi16(((byte + 1) << 8) | byte))
}

/// Scales of 16-element sub-blocks (16 i8 in `packed`) arranged for [`pick_i16`]: the low
/// lane holds the even sub-blocks' scales as i16, the high lane the odd ones', so picking
/// element v scales the 32 codes of sub-blocks 2v (i16 lanes 0..8) and 2v + 1 (8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales16_table(packed: __m128i) -> __m256i {
    let even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(packed, even_odd))
}

/// Scales of 32-element sub-blocks (8 u8 in the low half of `packed`) arranged for
/// [`pick_i16`]: both lanes hold the 8 scales as i16, so picking element k scales all 32
/// codes of sub-block k.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales32_table(packed: __m128i) -> __m256i {
    _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(packed))
}

/// The i32 partial sums of Σ scale·(qw·qx) over 32 elements: `codes` u8 (< 64), `x` i8,
/// `scales` i16 per 16 elements.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled_dot(codes: __m256i, x: __m256i, scales: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(codes, x), scales)
}

/// As [`scaled_dot`] with the weight codes lowered by the u8 `offset`: Σ scale·((qw - o)·qx).
/// |pair| ≤ 2·63·128 + 2·32·128 < 2^15, so the i16 difference is exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled_dot_offset(codes: __m256i, offset: __m256i, x: __m256i, scales: __m256i) -> __m256i {
    let pairs = _mm256_sub_epi16(
        _mm256_maddubs_epi16(codes, x),
        _mm256_maddubs_epi16(offset, x),
    );
    _mm256_madd_epi16(pairs, scales)
}

/// 0xFF in the bytes of `v` where `bit` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bit_mask(v: __m256i, bit: usize) -> __m256i {
    let b = _mm256_set1_epi8((1u8 << bit) as i8);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, b), b)
}

/// Σ_j min[j]·(Q8_K code sums of sub-block j) for the stored i16 sums of `xb` and 16 i16
/// weights `mins16` (one per 16 elements). |product pair| ≤ 2·2^15·63 < 2^31.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mins_dot(xb: &[u8; Q8_K_BYTES], mins16: __m256i) -> __m256i {
    _mm256_madd_epi16(load32_at(xb, Q8_K_SUMS), mins16)
}

/// The reference's per-block f32 term `(dx·dw)·scaled - (dx·dmin)·mins` for 4 (block,
/// row) pairs at once: the same IEEE operations, each rounded once, in the same order
/// (no fused multiply-add).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn terms4(dx: __m128, dw: __m128, dmin: __m128, scaled: __m128i, mins: __m128i) -> __m128 {
    _mm_sub_ps(
        _mm_mul_ps(_mm_mul_ps(dx, dw), _mm_cvtepi32_ps(scaled)),
        _mm_mul_ps(_mm_mul_ps(dx, dmin), _mm_cvtepi32_ps(mins)),
    )
}

// ---------------------------------------------------------------------------------------
// Per-type super-blocks: the integers (scaled, mins) of one weight block against R
// activation blocks. The weight codes of each 32 elements are unpacked once for all R.

/// Integer sums of one weight block with R activation blocks, as 8 i32 partial sums each
/// (reduced by the caller, several blocks or rows at once).
struct BlockSums<const R: usize> {
    scaled: [__m256i; R],
    mins: [__m256i; R],
}

/// Q4_K / Q5_K 6-bit scales and mins (12 packed bytes at `wb[4..16]`): 16 bytes, the 8
/// scales then the 8 mins. Bytes 0..4 hold scales 0..4 in their low 6 bits, bytes 4..8 the
/// mins 0..4; scales / mins 4..8 take their low 4 bits from the low / high nibbles of bytes
/// 8..12 and their top 2 bits from the top bits of bytes 0..4 / 4..8. Done 4 bytes at once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_mins_k4(wb: &[u8]) -> __m128i {
    let (a0, a1, a2) = (u32_at(wb, 4), u32_at(wb, 8), u32_at(wb, 12));
    let low6 = 0x3F3F_3F3F;
    let low4 = 0x0F0F_0F0F;
    let top2 = 0x0303_0303;
    let scales = [a0 & low6, (a2 & low4) | (((a0 >> 6) & top2) << 4)];
    let mins = [a1 & low6, ((a2 >> 4) & low4) | (((a1 >> 6) & top2) << 4)];
    _mm_setr_epi32(
        scales[0] as i32,
        scales[1] as i32,
        mins[0] as i32,
        mins[1] as i32,
    )
}

/// The 8 mins (bytes 8..16 of `scales_mins`), each repeated for the two 16-element code
/// sums of its sub-block, as i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_mins16(scales_mins: __m128i) -> __m256i {
    let twice = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scales_mins, twice))
}

/// Q4_K: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`; in chunk c (64 elements) the low
/// nibbles of qs[32c..32c+32] are elements 64c.., the high nibbles 64c+32...
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_block<const R: usize>(wb: &[u8; Q4_K_BYTES], xbs: [&[u8; Q8_K_BYTES]; R]) -> BlockSums<R> {
    let scales_mins = scales_mins_k4(wb);
    let table = scales32_table(scales_mins);
    let nibble = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_si256(); R];
    for c in 0..4 {
        let packed = load32_at(wb, 16 + 32 * c);
        let low = _mm256_and_si256(packed, nibble);
        let high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble);
        let (s_low, s_high) = (pick_i16(table, 2 * c), pick_i16(table, 2 * c + 1));
        for (a, xb) in acc.iter_mut().zip(xbs) {
            let x_low = load32_at(xb, Q8_K_CODES + 64 * c);
            let x_high = load32_at(xb, Q8_K_CODES + 64 * c + 32);
            let products = _mm256_add_epi32(
                scaled_dot(low, x_low, s_low),
                scaled_dot(high, x_high, s_high),
            );
            *a = _mm256_add_epi32(*a, products);
        }
    }
    let mins16 = k4_mins16(scales_mins);
    BlockSums {
        scaled: acc,
        mins: std::array::from_fn(|r| mins_dot(xbs[r], mins16)),
    }
}

/// Q5_K: Q4_K with `u8 qh[32]` before qs: element i adds 16 if bit i/32 of qh[i % 32] is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_block<const R: usize>(wb: &[u8; Q5_K_BYTES], xbs: [&[u8; Q8_K_BYTES]; R]) -> BlockSums<R> {
    let scales_mins = scales_mins_k4(wb);
    let table = scales32_table(scales_mins);
    let nibble = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let qh = load32_at(wb, 16);
    let mut acc = [_mm256_setzero_si256(); R];
    for c in 0..4 {
        let packed = load32_at(wb, 48 + 32 * c);
        let low = _mm256_or_si256(
            _mm256_and_si256(packed, nibble),
            _mm256_and_si256(bit_mask(qh, 2 * c), sixteen),
        );
        let high = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble),
            _mm256_and_si256(bit_mask(qh, 2 * c + 1), sixteen),
        );
        let (s_low, s_high) = (pick_i16(table, 2 * c), pick_i16(table, 2 * c + 1));
        for (a, xb) in acc.iter_mut().zip(xbs) {
            let x_low = load32_at(xb, Q8_K_CODES + 64 * c);
            let x_high = load32_at(xb, Q8_K_CODES + 64 * c + 32);
            let products = _mm256_add_epi32(
                scaled_dot(low, x_low, s_low),
                scaled_dot(high, x_high, s_high),
            );
            *a = _mm256_add_epi32(*a, products);
        }
    }
    let mins16 = k4_mins16(scales_mins);
    BlockSums {
        scaled: acc,
        mins: std::array::from_fn(|r| mins_dot(xbs[r], mins16)),
    }
}

/// Q6_K: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`. In half h, element 128h + 32k + l
/// takes its low 4 bits from ql[64h + 32(k%2) + l] (low nibble for k < 2, high for k ≥ 2)
/// and its top 2 bits from bits 2k.. of qh[32h + l]; codes are stored plus 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_block<const R: usize>(wb: &[u8; Q6_K_BYTES], xbs: [&[u8; Q8_K_BYTES]; R]) -> BlockSums<R> {
    let table = scales16_table(load16_at(wb, 192));
    let nibble = _mm256_set1_epi8(0x0F);
    let offset = _mm256_set1_epi8(32);
    let mut acc = [_mm256_setzero_si256(); R];
    for h in 0..2 {
        let ql_a = load32_at(wb, 64 * h);
        let ql_b = load32_at(wb, 64 * h + 32);
        let qh = load32_at(wb, 128 + 32 * h);
        // The top 2 bits of code k, moved to bits 4..6.
        let top = [
            _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(0x03))),
            _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C))),
            _mm256_and_si256(qh, _mm256_set1_epi8(0x30)),
            _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0xC0u8 as i8))),
        ];
        let low = [
            _mm256_and_si256(ql_a, nibble),
            _mm256_and_si256(ql_b, nibble),
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql_a), nibble),
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql_b), nibble),
        ];
        for k in 0..4 {
            let codes = _mm256_or_si256(low[k], top[k]);
            let scales = pick_i16(table, 4 * h + k);
            for (a, xb) in acc.iter_mut().zip(xbs) {
                let x = load32_at(xb, Q8_K_CODES + 128 * h + 32 * k);
                *a = _mm256_add_epi32(*a, scaled_dot_offset(codes, offset, x, scales));
            }
        }
    }
    BlockSums {
        scaled: acc,
        mins: [_mm256_setzero_si256(); R],
    }
}

/// Q3_K's 16 6-bit scales (12 packed bytes at `wb[96..108]`), as i8 (stored minus 32).
/// The low 4 bits of scale j are the low nibble of byte j (j < 8) or the high nibble of
/// byte j - 8; its top 2 bits are bits 2(j/4).. of byte 8 + j%4. Done 4 scales at once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_scales(wb: &[u8]) -> __m128i {
    let (a0, a1, a2) = (u32_at(wb, 96), u32_at(wb, 100), u32_at(wb, 104));
    let low4 = 0x0F0F_0F0F;
    let top2 = 0x0303_0303;
    let lows = [a0 & low4, a1 & low4, (a0 >> 4) & low4, (a1 >> 4) & low4];
    let s: [i32; 4] = std::array::from_fn(|q| (lows[q] | (((a2 >> (2 * q)) & top2) << 4)) as i32);
    _mm_sub_epi8(_mm_setr_epi32(s[0], s[1], s[2], s[3]), _mm_set1_epi8(32))
}

/// Q3_K: `u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d`. Element 128h + 32s + l takes 2 bits
/// from bits 2s.. of qs[32h + l] and is lowered by 4 where bit 4h + s of hmask[l] is clear.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_block<const R: usize>(wb: &[u8; Q3_K_BYTES], xbs: [&[u8; Q8_K_BYTES]; R]) -> BlockSums<R> {
    let table = scales16_table(q3_k_scales(wb));
    let hmask = load32_at(wb, 0);
    let three = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let mut acc = [_mm256_setzero_si256(); R];
    for h in 0..2 {
        let packed = load32_at(wb, 32 + 32 * h);
        let low = [
            _mm256_and_si256(packed, three),
            _mm256_and_si256(_mm256_srli_epi16::<2>(packed), three),
            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), three),
            _mm256_and_si256(_mm256_srli_epi16::<6>(packed), three),
        ];
        for (s, &low_s) in low.iter().enumerate() {
            let v = 4 * h + s;
            // Codes + 4 (0..7): the hmask bit adds 4.
            let codes = _mm256_or_si256(low_s, _mm256_and_si256(bit_mask(hmask, v), four));
            let scales = pick_i16(table, v);
            for (a, xb) in acc.iter_mut().zip(xbs) {
                let x = load32_at(xb, Q8_K_CODES + 32 * v);
                *a = _mm256_add_epi32(*a, scaled_dot_offset(codes, four, x, scales));
            }
        }
    }
    BlockSums {
        scaled: acc,
        mins: [_mm256_setzero_si256(); R],
    }
}

/// Q2_K: `u8 scales[16]; u8 qs[64]; f16 d; f16 dmin`; sub-block j (16 elements) has scale =
/// low nibble and min = high nibble of scales[j]; codes are 2-bit, laid out as in Q3_K.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_block<const R: usize>(wb: &[u8; Q2_K_BYTES], xbs: [&[u8; Q8_K_BYTES]; R]) -> BlockSums<R> {
    let packed_scales = load16_at(wb, 0);
    let nibble128 = _mm_set1_epi8(0x0F);
    let table = scales16_table(_mm_and_si128(packed_scales, nibble128));
    let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed_scales), nibble128));
    let three = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_si256(); R];
    for h in 0..2 {
        let packed = load32_at(wb, 16 + 32 * h);
        let codes = [
            _mm256_and_si256(packed, three),
            _mm256_and_si256(_mm256_srli_epi16::<2>(packed), three),
            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), three),
            _mm256_and_si256(_mm256_srli_epi16::<6>(packed), three),
        ];
        for (s, &codes_s) in codes.iter().enumerate() {
            let v = 4 * h + s;
            let scales = pick_i16(table, v);
            for (a, xb) in acc.iter_mut().zip(xbs) {
                let x = load32_at(xb, Q8_K_CODES + 32 * v);
                *a = _mm256_add_epi32(*a, scaled_dot(codes_s, x, scales));
            }
        }
    }
    BlockSums {
        scaled: acc,
        mins: std::array::from_fn(|r| mins_dot(xbs[r], mins16)),
    }
}

// ---------------------------------------------------------------------------------------
// Rows

/// `$one` (one activation row) and `$four` (four rows) for a weight type of `$bytes` per
/// super-block, decoded by `$block`, with its f16 d at `$d` and dmin at `$dmin` (None: 0).
///
/// One row takes 4 super-blocks at a time, reduces their integers together and forms
/// their 4 f32 terms in one vector, then adds the terms to the running sum one by one in
/// block order, as the reference does. Four rows share each weight block and keep one
/// running sum per row in the lanes of a vector.
macro_rules! k_quant_rows {
    ($one:ident, $four:ident, $bytes:expr, $block:ident, $d:expr, $dmin:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $one(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let n_blocks = n / QK_K;
            let dmin_at: Option<usize> = $dmin;
            let dmin = |wb: &[u8]| dmin_at.map_or(0.0, |offset| f16_at(wb, offset));
            let mut sum = 0.0f32;
            let mut i = 0;
            while i + 4 <= n_blocks {
                let wbs = [i, i + 1, i + 2, i + 3].map(|b| block::<$bytes>(w, b));
                let xbs = [i, i + 1, i + 2, i + 3].map(|b| block::<Q8_K_BYTES>(x, b));
                let (
                    [Some(w0), Some(w1), Some(w2), Some(w3)],
                    [Some(x0), Some(x1), Some(x2), Some(x3)],
                ) = (wbs, xbs)
                else {
                    break;
                };
                let b = [
                    $block(w0, [x0]),
                    $block(w1, [x1]),
                    $block(w2, [x2]),
                    $block(w3, [x3]),
                ];
                let scaled = sums4([
                    b[0].scaled[0],
                    b[1].scaled[0],
                    b[2].scaled[0],
                    b[3].scaled[0],
                ]);
                let mins = sums4([b[0].mins[0], b[1].mins[0], b[2].mins[0], b[3].mins[0]]);
                let dx = _mm_setr_ps(q8_k_d(x0), q8_k_d(x1), q8_k_d(x2), q8_k_d(x3));
                let dw = _mm_setr_ps(
                    f16_at(w0, $d),
                    f16_at(w1, $d),
                    f16_at(w2, $d),
                    f16_at(w3, $d),
                );
                let dm = _mm_setr_ps(dmin(w0), dmin(w1), dmin(w2), dmin(w3));
                let mut t = [0.0f32; 4];
                // SAFETY: `t` is 4 writable f32; storeu has no alignment requirement.
                unsafe { _mm_storeu_ps(t.as_mut_ptr(), terms4(dx, dw, dm, scaled, mins)) };
                for term in t {
                    sum += term;
                }
                i += 4;
            }
            while i < n_blocks {
                let (Some(wb), Some(xb)) = (block::<$bytes>(w, i), block::<Q8_K_BYTES>(x, i))
                else {
                    break;
                };
                let b = $block(wb, [xb]);
                let zero = _mm256_setzero_si256();
                let scaled = sums4([b.scaled[0], zero, zero, zero]);
                let mins = sums4([b.mins[0], zero, zero, zero]);
                let dx = _mm_set_ss(q8_k_d(xb));
                let dw = _mm_set_ss(f16_at(wb, $d));
                let dm = _mm_set_ss(dmin(wb));
                sum += _mm_cvtss_f32(terms4(dx, dw, dm, scaled, mins));
                i += 1;
            }
            sum
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $four(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
            let dmin_at: Option<usize> = $dmin;
            let mut sums = _mm_setzero_ps();
            for i in 0..n / QK_K {
                let Some(wb) = block::<$bytes>(w, i) else {
                    break;
                };
                let [Some(x0), Some(x1), Some(x2), Some(x3)] =
                    xs.map(|x| block::<Q8_K_BYTES>(x, i))
                else {
                    break;
                };
                let b = $block(wb, [x0, x1, x2, x3]);
                let scaled = sums4(b.scaled);
                let mins = sums4(b.mins);
                let dx = _mm_setr_ps(q8_k_d(x0), q8_k_d(x1), q8_k_d(x2), q8_k_d(x3));
                let dw = _mm_set1_ps(f16_at(wb, $d));
                let dm = _mm_set1_ps(dmin_at.map_or(0.0, |offset| f16_at(wb, offset)));
                sums = _mm_add_ps(sums, terms4(dx, dw, dm, scaled, mins));
            }
            let mut out = [0.0f32; 4];
            // SAFETY: `out` is 4 writable f32; storeu has no alignment requirement.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), sums) };
            out
        }
    };
}

k_quant_rows!(
    q2_k_q8_k,
    q2_k_q8_k_x4,
    Q2_K_BYTES,
    q2_k_block,
    80,
    Some(82)
);
k_quant_rows!(q3_k_q8_k, q3_k_q8_k_x4, Q3_K_BYTES, q3_k_block, 108, None);
k_quant_rows!(q4_k_q8_k, q4_k_q8_k_x4, Q4_K_BYTES, q4_k_block, 0, Some(2));
k_quant_rows!(q5_k_q8_k, q5_k_q8_k_x4, Q5_K_BYTES, q5_k_block, 0, Some(2));
k_quant_rows!(q6_k_q8_k, q6_k_q8_k_x4, Q6_K_BYTES, q6_k_block, 208, None);

// ---------------------------------------------------------------------------------------
// The Q8_K quantizer (activations)

/// The element of `x` (256 values) of largest magnitude, the first one on ties, as the
/// reference picks it (NaN never wins: it compares false). Returns +0.0 when every element
/// is zero or NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_max(x: &[f32; QK_K]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut max_abs = _mm256_setzero_ps();
    for chunk in x.chunks_exact(8) {
        // SAFETY: `chunk` is 8 readable f32; loadu has no alignment requirement.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        // max_ps returns its second operand when either is NaN, so NaN is skipped.
        max_abs = _mm256_max_ps(_mm256_andnot_ps(sign, v), max_abs);
    }
    let pair = _mm_max_ps(
        _mm256_castps256_ps128(max_abs),
        _mm256_extractf128_ps::<1>(max_abs),
    );
    let quad = _mm_max_ps(pair, _mm_movehl_ps(pair, pair));
    let top = _mm_cvtss_f32(_mm_max_ss(quad, _mm_shuffle_ps::<0b01>(quad, quad)));
    if top == 0.0 {
        return 0.0;
    }
    // The first element of that magnitude carries the sign.
    x.iter().copied().find(|v| v.abs() == top).unwrap_or(0.0)
}

/// The codes of 8 values: round_ties_even(iscale·v) clamped to [-128, 127], and 0 for NaN
/// (as the reference's `as i32` casts it), as i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn codes8(values: &[f32], iscale: __m256) -> __m256i {
    let chunk: &[f32; 8] = values.first_chunk::<8>().unwrap_or(&[0.0; 8]);
    // SAFETY: `chunk` is 8 readable f32; loadu has no alignment requirement.
    let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
    let scaled = _mm256_mul_ps(v, iscale);
    let not_nan = _mm256_cmp_ps::<_CMP_ORD_Q>(scaled, scaled);
    let rounded = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm256_and_ps(scaled, not_nan),
    );
    let clamped = _mm256_min_ps(
        _mm256_max_ps(rounded, _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    );
    _mm256_cvtps_epi32(clamped)
}

/// Q8_K, as the scalar reference: max = the signed element of largest magnitude (first on
/// ties), iscale = -127/max, q = min(127, round_half_even(iscale·x)), d = 1/iscale, and the
/// code sums per 16 elements; an all-zero block gets d = 0 and zero codes.
#[target_feature(enable = "avx2,fma,f16c")]
fn from_f32_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q8_K_BYTES)) {
        let (Some(x), Some(block)) = (
            x.first_chunk::<QK_K>(),
            block.first_chunk_mut::<Q8_K_BYTES>(),
        ) else {
            continue;
        };
        let max = signed_max(x);
        if max == 0.0 {
            block.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        block[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        let iscale_v = _mm256_set1_ps(iscale);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for quarter in 0..4 {
            let values = &x[64 * quarter..64 * (quarter + 1)];
            let q: [__m256i; 8] = std::array::from_fn(|k| codes8(&values[8 * k..], iscale_v));
            for half in 0..2 {
                let q = &q[4 * half..4 * half + 4];
                let bytes = _mm256_permutevar8x32_epi32(
                    _mm256_packs_epi16(
                        _mm256_packs_epi32(q[0], q[1]),
                        _mm256_packs_epi32(q[2], q[3]),
                    ),
                    order,
                );
                let offset = Q8_K_CODES + 64 * quarter + 32 * half;
                if let Some(out) = block.get_mut(offset..offset + 32) {
                    // SAFETY: `out` is 32 writable bytes; storeu has no alignment
                    // requirement.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), bytes) };
                }
            }
            // The 4 code sums of these 64 elements (|sum| ≤ 16·128 fits i16).
            let sums = sums4(std::array::from_fn(|k| {
                _mm256_add_epi32(q[2 * k], q[2 * k + 1])
            }));
            let sums16 = _mm_packs_epi32(sums, sums);
            let offset = Q8_K_SUMS + 8 * quarter;
            block[offset..offset + 8]
                .copy_from_slice(&(_mm_cvtsi128_si64(sums16) as u64).to_le_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Safe entry points for the dtype table

entry!(vec_dot_q2_k_q8_k => q2_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q2_k_q8_k_x4 => q2_k_q8_k_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q3_k_q8_k => q3_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q3_k_q8_k_x4 => q3_k_q8_k_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q4_k_q8_k => q4_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q4_k_q8_k_x4 => q4_k_q8_k_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q5_k_q8_k => q5_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q5_k_q8_k_x4 => q5_k_q8_k_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q6_k_q8_k => q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q6_k_q8_k_x4 => q6_k_q8_k_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(quantize_q8_k => from_f32_q8_k(src: &[f32], dst: &mut [u8]) -> ());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn layout_constants_match_the_dtype_table() {
        assert_eq!(DType::Q4_K.block_size(), QK_K);
        for (dtype, bytes) in [
            (DType::Q2_K, Q2_K_BYTES),
            (DType::Q3_K, Q3_K_BYTES),
            (DType::Q4_K, Q4_K_BYTES),
            (DType::Q5_K, Q5_K_BYTES),
            (DType::Q6_K, Q6_K_BYTES),
            (DType::Q8_K, Q8_K_BYTES),
        ] {
            assert_eq!(dtype.type_size(), bytes, "{dtype}");
        }
        assert_eq!(Q8_K_SUMS, Q8_K_CODES + QK_K);
    }
}
