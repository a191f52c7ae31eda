//! AVX2 dot products of the 5-bit 32-element block types with their 8-bit activation
//! partners: Q5_0 · Q8_0 and Q5_1 · Q8_1, one row or four at a time. (Small models whose
//! rows are not a whole number of 256-element super-blocks, such as SmolLM2's 576, get
//! Q5_0 / Q5_1 in place of Q4_K / Q5_K in llama.cpp's K-quant mixes.)
//!
//! They equal the scalar reference (`crate::dtype`, `q4_q5_q8`) bit for bit: per block the
//! integer sum Σ qw·qx is exact in any order, and the f32 step is the reference's own
//! expression — Q5_0: `sum += (dw·dx)·isum`; Q5_1: `sum += (dw·dx)·isum + m·s` — each
//! operation rounded once (no fused multiply-add), block after block in order.
//!
//! Integer products: the 5-bit codes (0..32) are u8 for `maddubs`; Q5_0's offset of 16 is
//! taken off with a second `maddubs` of 16 by the activation codes, so the sums are exact
//! for any activation code, -128 included (|pair| ≤ 2·31·128 + 2·16·128 < 2^15).
//!
//! The safe entry points may be called only on a CPU with AVX2, FMA and F16C:
//! `super::Isa::Avx2` hands them out only after checking that at run time.

use std::arch::x86_64::*;

use super::x86_avx2_util::{block, entry, f16_at, load32_at};

use crate::dtype::{Q8_0_BYTES, Q8_1_BYTES, QK};

const Q5_0_BYTES: usize = 22;
const Q5_1_BYTES: usize = 24;

/// The 32 5-bit codes of a block whose little-endian u32 of 5th bits is at `qh` and whose
/// 16 nibble bytes are at `qs`: element j < 16 is the low nibble of byte j, element j ≥ 16
/// the high nibble of byte j - 16, and bit j of the u32 adds 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn codes5<const N: usize>(wb: &[u8; N], qh: usize, qs: usize) -> __m256i {
    let packed: &[u8; 16] = wb
        .get(qs..qs + 16)
        .and_then(|b| b.try_into().ok())
        .unwrap_or(&[0; 16]);
    // SAFETY: `packed` is exactly 16 readable bytes; loadu has no alignment requirement.
    let both = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(packed.as_ptr().cast()) });
    let nibbles = _mm256_and_si256(
        _mm256_blend_epi32::<0xF0>(both, _mm256_srli_epi16::<4>(both)),
        _mm256_set1_epi8(0x0F),
    );
    let bits = match wb.get(qh..qh + 4) {
        Some(&[b0, b1, b2, b3]) => i32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    };
    // Byte j takes byte j/8 of the u32, then tests its bit j%8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(16)))
}

/// Σ qw·qx (Q5_1: codes as stored) as 8 i32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn products(codes: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(codes, x), _mm256_set1_epi16(1))
}

/// Σ (qw - 16)·qx (Q5_0) as 8 i32 partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn products_offset16(codes: __m256i, x: __m256i) -> __m256i {
    let pairs = _mm256_sub_epi16(
        _mm256_maddubs_epi16(codes, x),
        _mm256_maddubs_epi16(_mm256_set1_epi8(16), x),
    );
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// The lane sums of 4 vectors of 8 i32, in order, as f32 (exact: |sum| < 2^24).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sums4(v: [__m256i; 4]) -> __m128 {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_cvtepi32_ps(_mm_add_epi32(
        _mm256_castsi256_si128(h),
        _mm256_extracti128_si256::<1>(h),
    ))
}

/// `sum` plus the first `count` lanes of `t`, one after another (block order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_in_order(sum: f32, t: __m128, count: usize) -> f32 {
    let mut terms = [0.0f32; 4];
    // SAFETY: `terms` is 4 writable f32; storeu has no alignment requirement.
    unsafe { _mm_storeu_ps(terms.as_mut_ptr(), t) };
    let mut sum = sum;
    for term in terms.into_iter().take(count) {
        sum += term;
    }
    sum
}

/// The 4 consecutive blocks `i..i + 4` of `w` (`W` bytes each) and `x` (`X` bytes each),
/// or None past the end of either.
#[inline]
#[allow(clippy::type_complexity)]
fn blocks4<'a, const W: usize, const X: usize>(
    w: &'a [u8],
    x: &'a [u8],
    i: usize,
) -> Option<([&'a [u8; W]; 4], [&'a [u8; X]; 4])> {
    Some((
        [
            block(w, i)?,
            block(w, i + 1)?,
            block(w, i + 2)?,
            block(w, i + 3)?,
        ],
        [
            block(x, i)?,
            block(x, i + 1)?,
            block(x, i + 2)?,
            block(x, i + 3)?,
        ],
    ))
}

/// Q5_0 row · Q8_0 row; 4 blocks at a time share one reduction and one vector of f32 terms
/// (dw·dx)·isum, added to the sum in block order.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = n / QK;
    let mut sum = 0.0f32;
    let mut i = 0;
    while i + 4 <= n_blocks {
        let Some((wb, xb)) = blocks4::<Q5_0_BYTES, Q8_0_BYTES>(w, x, i) else {
            break;
        };
        let isums = sums4([
            products_offset16(codes5(wb[0], 2, 6), load32_at(xb[0], 2)),
            products_offset16(codes5(wb[1], 2, 6), load32_at(xb[1], 2)),
            products_offset16(codes5(wb[2], 2, 6), load32_at(xb[2], 2)),
            products_offset16(codes5(wb[3], 2, 6), load32_at(xb[3], 2)),
        ]);
        let dw = _mm_setr_ps(
            f16_at(wb[0], 0),
            f16_at(wb[1], 0),
            f16_at(wb[2], 0),
            f16_at(wb[3], 0),
        );
        let dx = _mm_setr_ps(
            f16_at(xb[0], 0),
            f16_at(xb[1], 0),
            f16_at(xb[2], 0),
            f16_at(xb[3], 0),
        );
        sum = add_in_order(sum, _mm_mul_ps(_mm_mul_ps(dw, dx), isums), 4);
        i += 4;
    }
    while i < n_blocks {
        let (Some(wb), Some(xb)) = (block::<Q5_0_BYTES>(w, i), block::<Q8_0_BYTES>(x, i)) else {
            break;
        };
        let zero = _mm256_setzero_si256();
        let isum = sums4([
            products_offset16(codes5(wb, 2, 6), load32_at(xb, 2)),
            zero,
            zero,
            zero,
        ]);
        let d = _mm_mul_ss(_mm_set_ss(f16_at(wb, 0)), _mm_set_ss(f16_at(xb, 0)));
        sum = add_in_order(sum, _mm_mul_ss(d, isum), 1);
        i += 1;
    }
    sum
}

/// Q5_0 row · 4 Q8_0 rows: each weight block is unpacked once for the four; lane r of
/// the f32 vector is row r's running sum.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    let mut sums = _mm_setzero_ps();
    for i in 0..n / QK {
        let Some(wb) = block::<Q5_0_BYTES>(w, i) else {
            break;
        };
        let [Some(x0), Some(x1), Some(x2), Some(x3)] = xs.map(|x| block::<Q8_0_BYTES>(x, i)) else {
            break;
        };
        let codes = codes5(wb, 2, 6);
        let isums = sums4([
            products_offset16(codes, load32_at(x0, 2)),
            products_offset16(codes, load32_at(x1, 2)),
            products_offset16(codes, load32_at(x2, 2)),
            products_offset16(codes, load32_at(x3, 2)),
        ]);
        let dx = _mm_setr_ps(f16_at(x0, 0), f16_at(x1, 0), f16_at(x2, 0), f16_at(x3, 0));
        let d = _mm_mul_ps(_mm_set1_ps(f16_at(wb, 0)), dx);
        sums = _mm_add_ps(sums, _mm_mul_ps(d, isums));
    }
    let mut out = [0.0f32; 4];
    // SAFETY: `out` is 4 writable f32; storeu has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), sums) };
    out
}

/// Q5_1 row · Q8_1 row: per block (dw·dx)·isum + m·s, 4 blocks' terms in one vector.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = n / QK;
    let mut sum = 0.0f32;
    let mut i = 0;
    while i + 4 <= n_blocks {
        let Some((wb, xb)) = blocks4::<Q5_1_BYTES, Q8_1_BYTES>(w, x, i) else {
            break;
        };
        let isums = sums4([
            products(codes5(wb[0], 4, 8), load32_at(xb[0], 4)),
            products(codes5(wb[1], 4, 8), load32_at(xb[1], 4)),
            products(codes5(wb[2], 4, 8), load32_at(xb[2], 4)),
            products(codes5(wb[3], 4, 8), load32_at(xb[3], 4)),
        ]);
        let at = |b: [&[u8; Q5_1_BYTES]; 4], offset| {
            _mm_setr_ps(
                f16_at(b[0], offset),
                f16_at(b[1], offset),
                f16_at(b[2], offset),
                f16_at(b[3], offset),
            )
        };
        let (dw, m) = (at(wb, 0), at(wb, 2));
        let dx = _mm_setr_ps(
            f16_at(xb[0], 0),
            f16_at(xb[1], 0),
            f16_at(xb[2], 0),
            f16_at(xb[3], 0),
        );
        let s = _mm_setr_ps(
            f16_at(xb[0], 2),
            f16_at(xb[1], 2),
            f16_at(xb[2], 2),
            f16_at(xb[3], 2),
        );
        let t = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(dw, dx), isums), _mm_mul_ps(m, s));
        sum = add_in_order(sum, t, 4);
        i += 4;
    }
    while i < n_blocks {
        let (Some(wb), Some(xb)) = (block::<Q5_1_BYTES>(w, i), block::<Q8_1_BYTES>(x, i)) else {
            break;
        };
        let zero = _mm256_setzero_si256();
        let isum = sums4([
            products(codes5(wb, 4, 8), load32_at(xb, 4)),
            zero,
            zero,
            zero,
        ]);
        let d = _mm_mul_ss(_mm_set_ss(f16_at(wb, 0)), _mm_set_ss(f16_at(xb, 0)));
        let offset = _mm_mul_ss(_mm_set_ss(f16_at(wb, 2)), _mm_set_ss(f16_at(xb, 2)));
        sum = add_in_order(sum, _mm_add_ss(_mm_mul_ss(d, isum), offset), 1);
        i += 1;
    }
    sum
}

/// Q5_1 row · 4 Q8_1 rows; lane r of the f32 vector is row r's running sum.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_q8_1_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    let mut sums = _mm_setzero_ps();
    for i in 0..n / QK {
        let Some(wb) = block::<Q5_1_BYTES>(w, i) else {
            break;
        };
        let [Some(x0), Some(x1), Some(x2), Some(x3)] = xs.map(|x| block::<Q8_1_BYTES>(x, i)) else {
            break;
        };
        let codes = codes5(wb, 4, 8);
        let isums = sums4([
            products(codes, load32_at(x0, 4)),
            products(codes, load32_at(x1, 4)),
            products(codes, load32_at(x2, 4)),
            products(codes, load32_at(x3, 4)),
        ]);
        let dx = _mm_setr_ps(f16_at(x0, 0), f16_at(x1, 0), f16_at(x2, 0), f16_at(x3, 0));
        let s = _mm_setr_ps(f16_at(x0, 2), f16_at(x1, 2), f16_at(x2, 2), f16_at(x3, 2));
        let dw = _mm_set1_ps(f16_at(wb, 0));
        let m = _mm_set1_ps(f16_at(wb, 2));
        let t = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(dw, dx), isums), _mm_mul_ps(m, s));
        sums = _mm_add_ps(sums, t);
    }
    let mut out = [0.0f32; 4];
    // SAFETY: `out` is 4 writable f32; storeu has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), sums) };
    out
}

// ---------------------------------------------------------------------------------------
// Safe entry points for the dtype table

entry!(vec_dot_q5_0_q8_0 => q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q5_0_q8_0_x4 => q5_0_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q5_1_q8_1 => q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q5_1_q8_1_x4 => q5_1_q8_1_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn layout_constants_match_the_dtype_table() {
        assert_eq!(DType::Q5_0.type_size(), Q5_0_BYTES);
        assert_eq!(DType::Q5_1.type_size(), Q5_1_BYTES);
    }
}
