//! AVX2 + FMA + F16C kernels for x86-64: integer dot products of the 32-element block
//! types with their 8-bit activation partners, f32 / f16 dot products, and the Q8_0 / Q8_1
//! activation quantizers.
//!
//! Every function here has a scalar reference in `crate::dtype` and is tested against it:
//! the block dot products and the quantizers equal it bit for bit, the float dot products
//! up to the order of their f32 sums.
//! The public-in-crate wrappers are safe to call only on a CPU with AVX2, FMA and F16C:
//! `super::Isa::Avx2` hands them out only after checking that at run time.
//!
//! Integer products use `maddubs` (u8 × i8 pairs → i16) then `madd` with ones (→ i32).
//! A signed × signed product goes through the sign trick: |w| × (x · sign(w)). That is
//! exact as long as the activation code is not -128, which no quantizer writes (codes are
//! round(x/d) with |x/d| ≤ 127); the sums of two products (≤ 2·128·127) never saturate i16.

use std::arch::x86_64::*;

use super::x86_avx2_util::{
    block_sum, block_sums4, block_sums4_vec, entry, f16_first, hsum_ps, load32, prefetch_ahead,
    widen1, widen8,
};

use crate::dtype::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK};

// ---------------------------------------------------------------------------------------
// Small helpers (inlined into the callers, which carry the target features)

/// The 32 4-bit codes of 16 packed bytes at `bytes[0..16]`, as u8 in element order
/// (low nibbles are elements 0..16, high nibbles 16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles32(bytes: &[u8]) -> __m256i {
    let bytes: &[u8; 16] = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .unwrap_or(&[0; 16]);
    // SAFETY: `bytes` is exactly 16 readable bytes; loadu has no alignment requirement.
    let packed = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
    // Both halves hold the 16 bytes (a load, no shuffle); the high half takes the
    // shifted copy by a blend, which is cheaper than inserting a 128-bit lane.
    let both = _mm256_broadcastsi128_si256(packed);
    let halves = _mm256_blend_epi32::<0xF0>(both, _mm256_srli_epi16::<4>(both));
    _mm256_and_si256(halves, _mm256_set1_epi8(0x0F))
}

/// Unsigned × signed byte dot product, as 8 i32 lanes of partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Signed × signed byte dot product (sign trick; `x` must not hold -128), as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8_i8(w: __m256i, x: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

// ---------------------------------------------------------------------------------------
// Block dot products
//
// These equal the scalar reference bit for bit: the integer sum of each block is exact
// whatever the order, and the f32 part is the reference's own arithmetic in its own
// order, per block `sum += (dw·dx)·isum (+ m·s)`. The vector units compute the integer
// sums of four blocks at a time; the f32 chain is short next to them. A row's result
// is then the same on every CPU and for any number of rows computed together.

/// The two f16 values stored little-endian at `bytes[0..4]`, widened into lanes 0 and 1
/// (lanes 2 and 3 are 0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16x2(bytes: &[u8]) -> __m128 {
    let bits = match *bytes {
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    };
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

/// `sum + (dw·dx)·isum + m·s` for a Q4_1 block `wb` and a Q8_1 block `xb`, rounded as the
/// scalar reference rounds. Both blocks start with an f16 pair ((dw, m) and (dx, s)), so
/// one product gives (dw·dx, m·s).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_add_block(sum: f32, wb: &[u8], xb: &[u8], isum: i32) -> f32 {
    let scales = _mm_mul_ps(f16x2(wb), f16x2(xb));
    let (d, offset) = (
        _mm_cvtss_f32(scales),
        _mm_cvtss_f32(_mm_movehdup_ps(scales)),
    );
    sum + (d * isum as f32 + offset)
}

/// The codes of 4 consecutive Q4_1 blocks at `wc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_codes4(wc: &[u8]) -> [__m256i; 4] {
    // Written out: closures in target-feature functions are not always inlined.
    [
        nibbles32(&wc[4..]),
        nibbles32(&wc[Q4_1_BYTES + 4..]),
        nibbles32(&wc[2 * Q4_1_BYTES + 4..]),
        nibbles32(&wc[3 * Q4_1_BYTES + 4..]),
    ]
}

/// The f16 pairs at the start of 4 blocks `block_bytes` apart, widened:
/// [a0, b0, a1, b1, a2, b2, a3, b3].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_pairs4(bytes: &[u8], block_bytes: usize) -> __m256 {
    let pair = |b: usize| match bytes.get(b * block_bytes..b * block_bytes + 4) {
        Some(&[b0, b1, b2, b3]) => i32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0,
    };
    _mm256_cvtph_ps(_mm_setr_epi32(pair(0), pair(1), pair(2), pair(3)))
}

/// 4 Q4_1 blocks (codes `qw`, scale pairs `w_scales` from [`f16_pairs4`]) · 4 Q8_1
/// blocks (`xc`) added to `sum`.
///
/// Per block, as the reference: t = (dw·dx)·isum + m·s, then sum += t. The products
/// (dw·dx, m·s) of the 4 blocks come from one vector product of the f16 pairs; isum and
/// 1 are interleaved so one more product gives ((dw·dx)·isum, m·s), and a pairwise add
/// gives t, each rounded once as in the reference.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1_group(qw: [__m256i; 4], w_scales: __m256, xc: &[u8], mut sum: f32) -> f32 {
    let isums = _mm_cvtepi32_ps(block_sums4_vec([
        dot_u8_i8(qw[0], load32(&xc[4..])),
        dot_u8_i8(qw[1], load32(&xc[Q8_1_BYTES + 4..])),
        dot_u8_i8(qw[2], load32(&xc[2 * Q8_1_BYTES + 4..])),
        dot_u8_i8(qw[3], load32(&xc[3 * Q8_1_BYTES + 4..])),
    ]));
    let scales = _mm256_mul_ps(w_scales, f16_pairs4(xc, Q8_1_BYTES));
    let one = _mm_set1_ps(1.0);
    let isums_and_ones = _mm256_set_m128(_mm_unpackhi_ps(isums, one), _mm_unpacklo_ps(isums, one));
    let products = _mm256_mul_ps(scales, isums_and_ones);
    // [t0, t1, t0, t1 | t2, t3, t2, t3]
    let terms = _mm256_hadd_ps(products, products);
    let low = _mm256_castps256_ps128(terms);
    let high = _mm256_extractf128_ps::<1>(terms);
    sum += _mm_cvtss_f32(low);
    sum += _mm_cvtss_f32(_mm_movehdup_ps(low));
    sum += _mm_cvtss_f32(high);
    sum += _mm_cvtss_f32(_mm_movehdup_ps(high));
    sum
}

/// One Q4_1 block (`qw`, `wb`) · one Q8_1 block (`xb`) added to `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1_one(qw: __m256i, wb: &[u8], xb: &[u8], sum: f32) -> f32 {
    q4_1_add_block(sum, wb, xb, block_sum(dot_u8_i8(qw, load32(&xb[4..]))))
}

/// Q4_1 (w = d·q + m) · Q8_1 (x = d·q, s = d·Σq): per block (dw·dx)·Σ qw·qx + m·s.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = (n / QK).min(w.len() / Q4_1_BYTES).min(x.len() / Q8_1_BYTES);
    let (w, x) = (&w[..n_blocks * Q4_1_BYTES], &x[..n_blocks * Q8_1_BYTES]);
    let mut sum = 0.0f32;
    let mut w_groups = w.chunks_exact(4 * Q4_1_BYTES);
    let mut x_groups = x.chunks_exact(4 * Q8_1_BYTES);
    for (wc, xc) in (&mut w_groups).zip(&mut x_groups) {
        let w_scales = f16_pairs4(wc, Q4_1_BYTES);
        sum = q4_1_q8_1_group(q4_1_codes4(wc), w_scales, xc, sum);
    }
    let w_rest = w_groups.remainder().chunks_exact(Q4_1_BYTES);
    for (wb, xb) in w_rest.zip(x_groups.remainder().chunks_exact(Q8_1_BYTES)) {
        sum = q4_1_q8_1_one(nibbles32(&wb[4..]), wb, xb, sum);
    }
    sum
}

/// Q4_1 row · 4 Q8_1 rows: each weight block is loaded and unpacked once for the four.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_q8_1_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    let n_blocks = (n / QK)
        .min(w.len() / Q4_1_BYTES)
        .min(xs.iter().map(|x| x.len() / Q8_1_BYTES).min().unwrap_or(0));
    let mut sums = [0.0f32; 4];
    let (w_group, x_group) = (4 * Q4_1_BYTES, 4 * Q8_1_BYTES);
    for g in 0..n_blocks / 4 {
        let wc = &w[g * w_group..(g + 1) * w_group];
        let qw = q4_1_codes4(wc);
        let w_scales = f16_pairs4(wc, Q4_1_BYTES);
        for (sum, x) in sums.iter_mut().zip(xs) {
            *sum = q4_1_q8_1_group(qw, w_scales, &x[g * x_group..(g + 1) * x_group], *sum);
        }
    }
    for i in n_blocks / 4 * 4..n_blocks {
        let wb = &w[i * Q4_1_BYTES..(i + 1) * Q4_1_BYTES];
        let qw = nibbles32(&wb[4..]);
        for (sum, x) in sums.iter_mut().zip(xs) {
            *sum = q4_1_q8_1_one(qw, wb, &x[i * Q8_1_BYTES..(i + 1) * Q8_1_BYTES], *sum);
        }
    }
    sums
}

/// `sum + (dw·dx)·isum` for blocks that start with their f16 scale (Q4_0, Q8_0), rounded
/// as the scalar reference rounds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled_add_block(sum: f32, wb: &[u8], xb: &[u8], isum: i32) -> f32 {
    sum + (f16_first(wb) * f16_first(xb)) * isum as f32
}

/// A Q8_0 weight block's codes prepared for the sign trick: (|qw|, qw).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_codes(wb: &[u8]) -> (__m256i, __m256i) {
    let qw = load32(&wb[2..]);
    (_mm256_sign_epi8(qw, qw), qw)
}

/// The 8 i32 partial sums of Σ qw·qx for prepared Q8_0 weight codes and a Q8_0 block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_products(codes: (__m256i, __m256i), xb: &[u8]) -> __m256i {
    let (abs_w, qw) = codes;
    dot_u8_i8(abs_w, _mm256_sign_epi8(load32(&xb[2..]), qw))
}

/// 4 Q8_0 weight blocks (`codes`, `wc`) · 4 Q8_0 blocks (`xc`) added to `sum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_q8_0_group(codes: [(__m256i, __m256i); 4], wc: &[u8], xc: &[u8], mut sum: f32) -> f32 {
    let isums = block_sums4([
        q8_0_products(codes[0], xc),
        q8_0_products(codes[1], &xc[Q8_0_BYTES..]),
        q8_0_products(codes[2], &xc[2 * Q8_0_BYTES..]),
        q8_0_products(codes[3], &xc[3 * Q8_0_BYTES..]),
    ]);
    for (b, isum) in isums.into_iter().enumerate() {
        sum = scaled_add_block(sum, &wc[b * Q8_0_BYTES..], &xc[b * Q8_0_BYTES..], isum);
    }
    sum
}

/// The prepared codes of 4 consecutive Q8_0 blocks at `wc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_codes4(wc: &[u8]) -> [(__m256i, __m256i); 4] {
    [
        q8_0_codes(wc),
        q8_0_codes(&wc[Q8_0_BYTES..]),
        q8_0_codes(&wc[2 * Q8_0_BYTES..]),
        q8_0_codes(&wc[3 * Q8_0_BYTES..]),
    ]
}

/// Q8_0 · Q8_0: per block (dw·dx)·Σ qw·qx.
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = (n / QK).min(w.len() / Q8_0_BYTES).min(x.len() / Q8_0_BYTES);
    let (w, x) = (&w[..n_blocks * Q8_0_BYTES], &x[..n_blocks * Q8_0_BYTES]);
    let mut sum = 0.0f32;
    let mut w_groups = w.chunks_exact(4 * Q8_0_BYTES);
    let mut x_groups = x.chunks_exact(4 * Q8_0_BYTES);
    for (wc, xc) in (&mut w_groups).zip(&mut x_groups) {
        sum = q8_0_q8_0_group(q8_0_codes4(wc), wc, xc, sum);
    }
    let w_rest = w_groups.remainder().chunks_exact(Q8_0_BYTES);
    for (wb, xb) in w_rest.zip(x_groups.remainder().chunks_exact(Q8_0_BYTES)) {
        let isum = block_sum(q8_0_products(q8_0_codes(wb), xb));
        sum = scaled_add_block(sum, wb, xb, isum);
    }
    sum
}

/// Q8_0 row · 4 Q8_0 rows: each weight block is loaded and prepared once for the four.
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4] {
    let n_blocks = (n / QK)
        .min(w.len() / Q8_0_BYTES)
        .min(xs.iter().map(|x| x.len() / Q8_0_BYTES).min().unwrap_or(0));
    let mut sums = [0.0f32; 4];
    let group = 4 * Q8_0_BYTES;
    for g in 0..n_blocks / 4 {
        let wc = &w[g * group..(g + 1) * group];
        let codes = q8_0_codes4(wc);
        for (sum, x) in sums.iter_mut().zip(xs) {
            *sum = q8_0_q8_0_group(codes, wc, &x[g * group..(g + 1) * group], *sum);
        }
    }
    for i in n_blocks / 4 * 4..n_blocks {
        let wb = &w[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        let codes = q8_0_codes(wb);
        for (sum, x) in sums.iter_mut().zip(xs) {
            let xb = &x[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
            *sum = scaled_add_block(*sum, wb, xb, block_sum(q8_0_products(codes, xb)));
        }
    }
    sums
}

/// The 8 i32 partial sums of Σ (qw - 8)·qx for a Q4_0 block and a Q8_0 block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_products(wb: &[u8], xb: &[u8]) -> __m256i {
    let qw = _mm256_sub_epi8(nibbles32(&wb[2..]), _mm256_set1_epi8(8));
    dot_i8_i8(qw, load32(&xb[2..]))
}

/// Q4_0 (w = d·(q - 8)) · Q8_0: per block (dw·dx)·Σ (qw - 8)·qx.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n_blocks = (n / QK).min(w.len() / Q4_0_BYTES).min(x.len() / Q8_0_BYTES);
    let (w, x) = (&w[..n_blocks * Q4_0_BYTES], &x[..n_blocks * Q8_0_BYTES]);
    let mut sum = 0.0f32;
    let mut w_groups = w.chunks_exact(4 * Q4_0_BYTES);
    let mut x_groups = x.chunks_exact(4 * Q8_0_BYTES);
    for (wc, xc) in (&mut w_groups).zip(&mut x_groups) {
        let wb: [&[u8]; 4] = [
            wc,
            &wc[Q4_0_BYTES..],
            &wc[2 * Q4_0_BYTES..],
            &wc[3 * Q4_0_BYTES..],
        ];
        let xb: [&[u8]; 4] = [
            xc,
            &xc[Q8_0_BYTES..],
            &xc[2 * Q8_0_BYTES..],
            &xc[3 * Q8_0_BYTES..],
        ];
        let isums = block_sums4([
            q4_0_products(wb[0], xb[0]),
            q4_0_products(wb[1], xb[1]),
            q4_0_products(wb[2], xb[2]),
            q4_0_products(wb[3], xb[3]),
        ]);
        for (b, isum) in isums.into_iter().enumerate() {
            sum = scaled_add_block(sum, wb[b], xb[b], isum);
        }
    }
    let w_rest = w_groups.remainder().chunks_exact(Q4_0_BYTES);
    for (wb, xb) in w_rest.zip(x_groups.remainder().chunks_exact(Q8_0_BYTES)) {
        sum = scaled_add_block(sum, wb, xb, block_sum(q4_0_products(wb, xb)));
    }
    sum
}

// ---------------------------------------------------------------------------------------
// Float dot products

/// Σ w·x over f32 rows, 32 lanes of partial sums (4 independent FMA chains).
#[target_feature(enable = "avx2,fma,f16c")]
fn f32_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n = n.min(w.len() / 4).min(x.len() / 4);
    let (w, x) = (&w[..n * 4], &x[..n * 4]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut w_chunks = w.chunks_exact(128);
    let mut x_chunks = x.chunks_exact(128);
    for (wc, xc) in (&mut w_chunks).zip(&mut x_chunks) {
        for k in 0..4 {
            let wv = load8_f32(&wc[k * 32..]);
            let xv = load8_f32(&xc[k * 32..]);
            acc[k] = _mm256_fmadd_ps(wv, xv, acc[k]);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum_ps(sum);
    for (we, xe) in w_chunks
        .remainder()
        .chunks_exact(4)
        .zip(x_chunks.remainder().chunks_exact(4))
    {
        total += f32_le(we) * f32_le(xe);
    }
    total
}

/// Σ w·x with 16-bit float weights (bf16 where `BF16`, else f16) and f32 activations, 32
/// lanes of partial sums.
#[target_feature(enable = "avx2,fma,f16c")]
fn half_f32<const BF16: bool>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let n = n.min(w.len() / 2).min(x.len() / 4);
    let (w, x) = (&w[..n * 2], &x[..n * 4]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut w_chunks = w.chunks_exact(64);
    let mut x_chunks = x.chunks_exact(128);
    for (wc, xc) in (&mut w_chunks).zip(&mut x_chunks) {
        prefetch_ahead::<64>(wc.as_ptr());
        for k in 0..4 {
            // SAFETY: the chunk holds 64 bytes, so 16 at k · 16 for k < 4.
            let wv = unsafe { widen8::<BF16>(wc.as_ptr().add(k * 16)) };
            acc[k] = _mm256_fmadd_ps(wv, load8_f32(&xc[k * 32..]), acc[k]);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum_ps(sum);
    for (we, xe) in w_chunks
        .remainder()
        .chunks_exact(2)
        .zip(x_chunks.remainder().chunks_exact(4))
    {
        total += widen1::<BF16>(u16::from_le_bytes([we[0], we[1]])) * f32_le(xe);
    }
    total
}

/// 8 f32 from the 32 bytes at `bytes[0..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8_f32(bytes: &[u8]) -> __m256 {
    _mm256_castsi256_ps(load32(bytes))
}

fn f32_le(bytes: &[u8]) -> f32 {
    match *bytes {
        [b0, b1, b2, b3, ..] => f32::from_le_bytes([b0, b1, b2, b3]),
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------------------
// Activation quantizers (bit-exact with the scalar reference)

/// The i8 codes (in i32 lanes) of `v`·`id`: rounded half away from zero as `f32::round`
/// does, NaN to 0 and saturated to -128..=127 as the float -> i8 cast does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_to_code(v: __m256, id: __m256) -> __m256i {
    let sign_bit = _mm256_set1_ps(-0.0);
    let scaled = _mm256_mul_ps(v, id);
    let truncated = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(scaled);
    // |scaled - trunc| is exact; at or past one half, step away from zero.
    let frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(scaled, truncated));
    let at_least_half = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5));
    let away = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(scaled, sign_bit));
    let rounded = _mm256_add_ps(truncated, _mm256_and_ps(away, at_least_half));
    let not_nan = _mm256_cmp_ps::<_CMP_ORD_Q>(scaled, scaled);
    let clamped = _mm256_min_ps(
        _mm256_max_ps(_mm256_and_ps(rounded, not_nan), _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    );
    _mm256_cvttps_epi32(clamped)
}

/// One block of 32 f32 -> (d unrounded, Σ codes, 32 codes packed as i8 into `codes`).
///
/// Matches `quantize_8bit` of the scalar reference bit for bit: the same max|x| (max is
/// exact, NaNs are skipped as `f32::max` skips them), the same d = amax/127 and 1/d, the
/// same products x·(1/d), then rounding half away from zero as `f32::round` does, and the
/// saturating float -> i8 cast (NaN -> 0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block_8bit(x: &[f32], codes: &mut [u8]) -> (f32, i32) {
    let Some(x) = x.get(..QK).and_then(|x| <&[f32; QK]>::try_from(x).ok()) else {
        return (0.0, 0);
    };
    // SAFETY: `x` is exactly 32 readable f32, so each of the 4 loads of 8 is in bounds;
    // loadu has no alignment requirement.
    let v = unsafe {
        let p = x.as_ptr();
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    };
    let sign_bit = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_setzero_ps();
    for vk in v {
        // max(|v|, acc) returns acc when |v| is NaN.
        amax = _mm256_max_ps(_mm256_andnot_ps(sign_bit, vk), amax);
    }
    let pair = _mm_max_ps(
        _mm256_castps256_ps128(amax),
        _mm256_extractf128_ps::<1>(amax),
    );
    let quad = _mm_max_ps(pair, _mm_movehl_ps(pair, pair));
    let amax = _mm_cvtss_f32(_mm_max_ss(quad, _mm_shuffle_ps::<0b01>(quad, quad)));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let lanes = [
        round_to_code(v[0], idv),
        round_to_code(v[1], idv),
        round_to_code(v[2], idv),
        round_to_code(v[3], idv),
    ];
    // i32 -> i16 -> i8 packs work within 128-bit halves; the permute restores order.
    let words01 = _mm256_packs_epi32(lanes[0], lanes[1]);
    let words23 = _mm256_packs_epi32(lanes[2], lanes[3]);
    let bytes = _mm256_packs_epi16(words01, words23);
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let Some(out) = codes
        .get_mut(..QK)
        .and_then(|out| <&mut [u8; QK]>::try_from(out).ok())
    else {
        return (d, 0);
    };
    // SAFETY: `out` is exactly 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), bytes) };
    let sums = lanes
        .iter()
        .fold(_mm256_setzero_si256(), |a, &l| _mm256_add_epi32(a, l));
    let pair = _mm_add_epi32(
        _mm256_castsi256_si128(sums),
        _mm256_extracti128_si256::<1>(sums),
    );
    let quad = _mm_add_epi32(pair, _mm_shuffle_epi32::<0b01_00_11_10>(pair));
    let single = _mm_add_epi32(quad, _mm_shuffle_epi32::<0b10_11_00_01>(quad));
    (d, _mm_cvtsi128_si32(single))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn from_f32_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let (d, _) = quantize_block_8bit(x, &mut block[2..]);
        block[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn from_f32_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let (d, code_sum) = quantize_block_8bit(x, &mut block[4..]);
        block[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        // s uses the unrounded d, as the scalar reference does.
        block[2..4].copy_from_slice(&half::f16::from_f32(code_sum as f32 * d).to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Safe entry points for the dtype table

entry!(vec_dot_q4_1_q8_1 => q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q4_1_q8_1_x4 => q4_1_q8_1_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q8_0_q8_0 => q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_q8_0_q8_0_x4 => q8_0_q8_0_x4(n: usize, w: &[u8], xs: [&[u8]; 4]) -> [f32; 4]);
entry!(vec_dot_q4_0_q8_0 => q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_f32_f32 => f32_f32(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_f16_f32 => half_f32::<false>(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(vec_dot_bf16_f32 => half_f32::<true>(n: usize, w: &[u8], x: &[u8]) -> f32);
entry!(quantize_q8_0 => from_f32_q8_0(src: &[f32], dst: &mut [u8]) -> ());
entry!(quantize_q8_1 => from_f32_q8_1(src: &[f32], dst: &mut [u8]) -> ());

/// The sum of `data`'s 64-bit words (a tail shorter than 32 bytes is not read), read as
/// the packed kernels read weights: 32-byte loads, prefetched the same distance ahead.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn read_stream_avx2(data: &[u8]) -> u64 {
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut blocks = data.chunks_exact(128);
    for block in &mut blocks {
        prefetch_ahead::<128>(block.as_ptr());
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_epi64(*a, load32(&block[32 * k..]));
        }
    }
    for chunk in blocks.remainder().chunks_exact(32) {
        acc[0] = _mm256_add_epi64(acc[0], load32(chunk));
    }
    let sum = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
    lanes.iter().fold(0, |a, &b| a.wrapping_add(b))
}

entry!(
    /// [`read_stream_avx2`] behind the run-time check.
    read_stream => read_stream_avx2(data: &[u8]) -> u64
);
