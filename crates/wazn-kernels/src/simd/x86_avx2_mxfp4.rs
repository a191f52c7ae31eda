//! AVX2 kernels for MXFP4 weight rows · Q8_0 activation rows (gpt-oss expert weights).
//!
//! The 4-bit codes become the doubled E2M1 integers {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, ...}
//! through a 16-entry byte lookup (`pshufb`), then go through the same `maddubs` / `madd`
//! integer path as Q4_0. Every block's integer sum is exact; the f32 part is the scalar
//! reference's own arithmetic in its own order, per block `sum += (dx·dw)·isum`, so the
//! results equal `crate::dtype`'s scalar kernel bit for bit.
//!
//! The unsigned operand of `maddubs` is |qx| (activation codes, at most 128 as u8) and the
//! signed one the weight's integer carrying qx's sign (at most 12 in magnitude): exact for
//! every byte the activations may hold, -128 included, and a pair sums to at most 3072,
//! far from i16 saturation.
//!
//! The public-in-crate wrappers are safe to call only on a CPU with AVX2, FMA and F16C:
//! `super::Isa::Avx2` hands them out only after checking that at run time.

use std::arch::x86_64::*;

use super::x86_avx2_util::{block_sum, block_sums4, f16_first, load16, load32};

use crate::dtype::{e8m0_half_scale, KVALUES, MXFP4_BYTES, Q8_0_BYTES, QK};

/// The doubled E2M1 table in both 128-bit lanes (pshufb looks up within each lane).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn kvalues_table() -> __m256i {
    let table: [u8; 16] = KVALUES.map(|k| k as u8);
    _mm256_broadcastsi128_si256(load16(&table))
}

/// The 32 doubled codes of an MXFP4 block `wb` as i8, in element order (low nibbles are
/// elements 0..16, high nibbles 16..32), and the block's 2^(e - 128).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_codes(wb: &[u8], table: __m256i) -> (__m256i, f32) {
    let Some((&e, qs)) = wb.split_first() else {
        return (_mm256_setzero_si256(), 0.0);
    };
    // Both halves hold the 16 bytes; the high half takes the shifted copy by a blend.
    let both = _mm256_broadcastsi128_si256(load16(qs));
    let halves = _mm256_blend_epi32::<0xF0>(both, _mm256_srli_epi16::<4>(both));
    let nibbles = _mm256_and_si256(halves, _mm256_set1_epi8(0x0F));
    (_mm256_shuffle_epi8(table, nibbles), e8m0_half_scale(e))
}

/// The 8 i32 partial sums of Σ kw·qx for doubled codes `kw` and a Q8_0 block `xb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn products(kw: __m256i, xb: &[u8]) -> __m256i {
    let qx = load32(&xb[2..]);
    let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(kw, qx));
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// The decoded codes and scales of 4 consecutive MXFP4 blocks at `wc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_codes4(wc: &[u8], table: __m256i) -> [(__m256i, f32); 4] {
    [
        mxfp4_codes(wc, table),
        mxfp4_codes(&wc[MXFP4_BYTES..], table),
        mxfp4_codes(&wc[2 * MXFP4_BYTES..], table),
        mxfp4_codes(&wc[3 * MXFP4_BYTES..], table),
    ]
}

/// 4 decoded MXFP4 blocks · 4 Q8_0 blocks (`xc`) added to `sum`, per block as the
/// reference: sum += (dx·dw)·isum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn group(codes: [(__m256i, f32); 4], xc: &[u8], mut sum: f32) -> f32 {
    let isums = block_sums4([
        products(codes[0].0, xc),
        products(codes[1].0, &xc[Q8_0_BYTES..]),
        products(codes[2].0, &xc[2 * Q8_0_BYTES..]),
        products(codes[3].0, &xc[3 * Q8_0_BYTES..]),
    ]);
    for (b, isum) in isums.into_iter().enumerate() {
        let dx = f16_first(&xc[b * Q8_0_BYTES..]);
        sum += (dx * codes[b].1) * isum as f32;
    }
    sum
}

/// One decoded MXFP4 block · one Q8_0 block `xb` added to `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn one(codes: (__m256i, f32), xb: &[u8], sum: f32) -> f32 {
    let isum = block_sum(products(codes.0, xb));
    sum + (f16_first(xb) * codes.1) * isum as f32
}

/// MXFP4 · Q8_0 over `n` elements.
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = (n / QK)
        .min(w.len() / MXFP4_BYTES)
        .min(x.len() / Q8_0_BYTES);
    let (w, x) = (&w[..n_blocks * MXFP4_BYTES], &x[..n_blocks * Q8_0_BYTES]);
    let table = kvalues_table();
    let mut sum = 0.0f32;
    let mut w_groups = w.chunks_exact(4 * MXFP4_BYTES);
    let mut x_groups = x.chunks_exact(4 * Q8_0_BYTES);
    for (wc, xc) in (&mut w_groups).zip(&mut x_groups) {
        sum = group(mxfp4_codes4(wc, table), xc, sum);
    }
    let w_rest = w_groups.remainder().chunks_exact(MXFP4_BYTES);
    for (wb, xb) in w_rest.zip(x_groups.remainder().chunks_exact(Q8_0_BYTES)) {
        sum = one(mxfp4_codes(wb, table), xb, sum);
    }
    sum
}

/// MXFP4 row · 4 Q8_0 rows: each weight block is loaded and decoded once for the four.
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    let n_blocks = (n / QK)
        .min(w.len() / MXFP4_BYTES)
        .min(xs.iter().map(|x| x.len() / Q8_0_BYTES).min().unwrap_or(0));
    let table = kvalues_table();
    let mut sums = [0.0f32; 4];
    let (w_group, x_group) = (4 * MXFP4_BYTES, 4 * Q8_0_BYTES);
    for g in 0..n_blocks / 4 {
        let codes = mxfp4_codes4(&w[g * w_group..(g + 1) * w_group], table);
        for (sum, x) in sums.iter_mut().zip(xs) {
            *sum = group(codes, &x[g * x_group..(g + 1) * x_group], *sum);
        }
    }
    for i in n_blocks / 4 * 4..n_blocks {
        let codes = mxfp4_codes(&w[i * MXFP4_BYTES..(i + 1) * MXFP4_BYTES], table);
        for (sum, x) in sums.iter_mut().zip(xs) {
            *sum = one(codes, &x[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES], *sum);
        }
    }
    sums
}

/// MXFP4 · Q8_0 (AVX2). Safe to call only where `Isa::Avx2` is available.
pub(crate) fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: the dtype table holds this function only when `Isa::Avx2` was detected at
    // run time (AVX2, FMA and F16C present).
    unsafe { mxfp4_q8_0(n, w, x) }
}

/// MXFP4 · 4 Q8_0 rows (AVX2). Safe to call only where `Isa::Avx2` is available.
pub(crate) fn vec_dot_mxfp4_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    // SAFETY: as for `vec_dot_mxfp4_q8_0`.
    unsafe { mxfp4_q8_0_x4(n, w, xs) }
}
