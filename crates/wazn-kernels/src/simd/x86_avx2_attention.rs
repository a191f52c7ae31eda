//! AVX2 + FMA + F16C pass of the online-softmax attention (`crate::attention`) over
//! the key blocks, for an f32 or f16 cache (f16 widened with F16C as it is loaded).
//!
//! Keys go through in panels of [`PANEL`] positions, aligned to the cache blocks. A
//! panel's keys are transposed once (`[head_dim, 16]`, keys in lanes), so the scores
//! of several queries against all its keys are a small matrix product held in
//! registers, with no horizontal sum per key; the softmax then works on whole vectors
//! of keys, and the weighted values are a second small product (queries × value
//! lanes, one weight broadcast per key and query).
//!
//! The arithmetic of one query never depends on the others fed with it: its score
//! against a key is one chain of fused multiply-adds over the head dimensions in
//! order, its weights and sums are reduced in a fixed order within the panel, and its
//! weighted values are one chain per value lane over the panel's keys in order. The
//! register tiles only choose which chains run side by side, so a row gives the same
//! bits alone (a decode step) as in any tile of a prompt.
//!
//! Every slice is checked before the unchecked loads; a shape the kernels cannot prove
//! in bounds goes to the scalar pass. Handed out only after AVX2, FMA and F16C were
//! detected at run time (`super::Isa::Avx2`).

use std::arch::x86_64::*;
use std::ops::Range;

use half::f16;

use crate::attention::{
    attend_keys_scalar, AttentionShape, BlockKernels, FlashState, GroupQueries, KvBlocks, KvDtype,
    KvElement,
};

/// Keys per panel: two vectors of 8 lanes.
const PANEL: usize = 16;

/// Queries per register tile of the scores (times two vectors of keys: 12 sums).
const SCORE_QUERIES: usize = 6;

/// Queries and value vectors per register tile of the weighted sum (12 sums).
const VALUE_QUERIES: usize = 3;
const VALUE_VECTORS: usize = 4;

/// 8 numbers from `p[0..8]`, widened to f32.
///
/// # Safety
/// AVX2, FMA, F16C; `p[0..8]` readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<T: KvElement>(p: *const T) -> __m256 {
    match T::DTYPE {
        KvDtype::F32 => _mm256_loadu_ps(p.cast()),
        KvDtype::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
    }
}

/// `exp(x)` in each lane for `x <= 0` (the softmax's `s - max`): within about 2 ulp,
/// and exactly 0 below -87.3 (where f32 `exp` turns subnormal), -inf included, so a
/// masked key weighs exactly nothing.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> __m256 {
    const MIN_X: f32 = -87.336_55;
    // 1.5·2^23 + 127: adding it rounds x·log2(e) to the nearest integer n and leaves
    // n + 127, the biased exponent of 2^n, in the low bits.
    const ROUND_BIAS: f32 = 12_583_039.0;
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(MIN_X));
    let x = _mm256_max_ps(x, _mm256_set1_ps(MIN_X));
    let biased = _mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(ROUND_BIAS),
    );
    let n = _mm256_sub_ps(biased, _mm256_set1_ps(ROUND_BIAS));
    // x = n·ln2 + r, |r| <= ln2/2, with ln2 in two parts so r keeps its low bits.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    // e^r by Cephes' polynomial, evaluated by Horner's rule.
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
        1.0,
        1.0,
    ] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(biased)));
    _mm256_and_ps(_mm256_mul_ps(y, pow2n), keep)
}

/// Column `c` of the 8×8 matrix whose rows are `r`, in `out[c]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(r: &[__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // [r0[k] r1[k] r2[k] r3[k] | the same at k + 4], k = 0, 1, 2, 3 for u0..u3.
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `kt[d * PANEL + j] = k[(j - j0) * stride + d]` for the panel slots `j` in `j0..j1`
/// and every `d < hd`; the other slots of each half of 8 the range touches get 0 (or,
/// past the last whole 8 dimensions, keep what they held): they are masked later.
///
/// # Safety
/// AVX2, FMA, F16C; `k` holds rows `0..j1 - j0` of `hd` at `stride`; `kt` holds
/// `hd * PANEL`; `j0 < j1 <= PANEL`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose_keys<T: KvElement>(
    k: *const T,
    stride: usize,
    hd: usize,
    j0: usize,
    j1: usize,
    kt: *mut f32,
) {
    for half in (j0 / 8)..j1.div_ceil(8) {
        let mut c = 0;
        while c + 8 <= hd {
            let mut rows = [_mm256_setzero_ps(); 8];
            if j0 <= half * 8 && half * 8 + 8 <= j1 {
                let first = k.add((half * 8 - j0) * stride + c);
                for (r, row) in rows.iter_mut().enumerate() {
                    *row = load8(first.add(r * stride));
                }
            } else {
                for (r, row) in rows.iter_mut().enumerate() {
                    let j = half * 8 + r;
                    if (j0..j1).contains(&j) {
                        *row = load8(k.add((j - j0) * stride + c));
                    }
                }
            }
            for (d, col) in transpose8(&rows).iter().enumerate() {
                _mm256_storeu_ps(kt.add((c + d) * PANEL + half * 8), *col);
            }
            c += 8;
        }
    }
    for d in hd - hd % 8..hd {
        for j in j0..j1 {
            *kt.add(d * PANEL + j) = (*k.add((j - j0) * stride + d)).to_f32();
        }
    }
}

/// `raw[t * PANEL + 8 * (h0 + h)] = Σ_d q[t][d] · kt[d][8 * (h0 + h)..][..8]` for `t < N`,
/// `h < H`: one chain of fused multiply-adds over `d` in order per score.
///
/// # Safety
/// AVX2, FMA, F16C; `q` holds `N` rows of `hd`; `kt` holds `hd * PANEL`; `raw` holds
/// `N * PANEL`; `8 * (h0 + H) <= PANEL`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots<const N: usize, const H: usize>(
    q: *const f32,
    hd: usize,
    kt: *const f32,
    h0: usize,
    raw: *mut f32,
) {
    let mut acc = [[_mm256_setzero_ps(); H]; N];
    for d in 0..hd {
        let k_d = kt.add(d * PANEL + 8 * h0);
        let mut k = [_mm256_setzero_ps(); H];
        for (h, k_h) in k.iter_mut().enumerate() {
            *k_h = _mm256_loadu_ps(k_d.add(8 * h));
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let q_td = _mm256_broadcast_ss(&*q.add(t * hd + d));
            for (a, &k_h) in acc_t.iter_mut().zip(&k) {
                *a = _mm256_fmadd_ps(q_td, k_h, *a);
            }
        }
    }
    for (t, acc_t) in acc.iter().enumerate() {
        for (h, &a) in acc_t.iter().enumerate() {
            _mm256_storeu_ps(raw.add(t * PANEL + 8 * (h0 + h)), a);
        }
    }
}

/// `acc[t][c + 8u..][..8] = acc[t][..] · f[t] + Σ_{j0 <= j < j1} p[t * PANEL + j] ·
/// v[j - j0][c + 8u..][..8]` for `t < M`, `u < D`: the rescaled sum, then one chain per
/// lane over the keys in order.
///
/// # Safety
/// AVX2, FMA, F16C; `p` holds `M` rows of `PANEL`; `f` holds `M`; `acc` holds `M` rows
/// of `hd` and `c + 8 * D <= hd`; `v` holds rows `0..j1 - j0` of `hd` at `stride`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted<S: KvElement, const M: usize, const D: usize>(
    p: *const f32,
    f: *const f32,
    j0: usize,
    j1: usize,
    v: *const S,
    stride: usize,
    acc: *mut f32,
    hd: usize,
    c: usize,
) {
    let mut a = [[_mm256_setzero_ps(); D]; M];
    for (t, a_t) in a.iter_mut().enumerate() {
        let f_t = _mm256_broadcast_ss(&*f.add(t));
        for (u, a_tu) in a_t.iter_mut().enumerate() {
            *a_tu = _mm256_mul_ps(_mm256_loadu_ps(acc.add(t * hd + c + 8 * u)), f_t);
        }
    }
    for j in j0..j1 {
        // The weights first, then one value vector at a time: 12 sums, 3 weights and
        // 1 value fill the 16 registers.
        let mut p_j = [_mm256_setzero_ps(); M];
        for (t, p_tj) in p_j.iter_mut().enumerate() {
            *p_tj = _mm256_broadcast_ss(&*p.add(t * PANEL + j));
        }
        let v_j = v.add((j - j0) * stride + c);
        for u in 0..D {
            let x_u = load8(v_j.add(8 * u));
            for (a_t, &p_tj) in a.iter_mut().zip(&p_j) {
                a_t[u] = _mm256_fmadd_ps(p_tj, x_u, a_t[u]);
            }
        }
    }
    for (t, a_t) in a.iter().enumerate() {
        for (u, &a_tu) in a_t.iter().enumerate() {
            _mm256_storeu_ps(acc.add(t * hd + c + 8 * u), a_tu);
        }
    }
}

/// The scores of all `n_q` queries against panel slots `j0..j1` into `raw`
/// (`[n_q, PANEL]`, unscaled; halves of 8 slots the range misses hold -inf).
///
/// # Safety
/// As [`dots`], for `n_q` rows of `q` and `raw`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn panel_scores(
    q: *const f32,
    n_q: usize,
    hd: usize,
    kt: *const f32,
    j0: usize,
    j1: usize,
    raw: *mut f32,
) {
    let (h0, h1) = (j0 / 8, j1.div_ceil(8));
    let mut i = 0;
    while i < n_q {
        let n = (n_q - i).min(SCORE_QUERIES);
        let (q_i, raw_i) = (q.add(i * hd), raw.add(i * PANEL));
        macro_rules! run {
            ($h:literal) => {
                match n {
                    1 => dots::<1, $h>(q_i, hd, kt, h0, raw_i),
                    2 => dots::<2, $h>(q_i, hd, kt, h0, raw_i),
                    3 => dots::<3, $h>(q_i, hd, kt, h0, raw_i),
                    4 => dots::<4, $h>(q_i, hd, kt, h0, raw_i),
                    5 => dots::<5, $h>(q_i, hd, kt, h0, raw_i),
                    _ => dots::<6, $h>(q_i, hd, kt, h0, raw_i),
                }
            };
        }
        if h1 - h0 == 2 {
            run!(2);
        } else {
            run!(1);
        }
        let skipped = if h0 == 1 { 0 } else { 8 };
        if h1 - h0 == 1 {
            for t in 0..n {
                _mm256_storeu_ps(
                    raw_i.add(t * PANEL + skipped),
                    _mm256_set1_ps(f32::NEG_INFINITY),
                );
            }
        }
        i += n;
    }
}

/// `acc[i] = acc[i] · f[i] + Σ_j p[i][j] · v[j]` for all `n_q` queries over panel slots
/// `j0..j1`.
///
/// # Safety
/// As [`weighted`], for `n_q` rows of `p` and `acc`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_values<S: KvElement>(
    p: *const f32,
    f: *const f32,
    n_q: usize,
    j0: usize,
    j1: usize,
    v: *const S,
    stride: usize,
    acc: *mut f32,
    hd: usize,
) {
    let mut i = 0;
    while i < n_q {
        let m = (n_q - i).min(VALUE_QUERIES);
        let (p_i, f_i, acc_i) = (p.add(i * PANEL), f.add(i), acc.add(i * hd));
        let mut c = 0;
        while c + 8 <= hd {
            let d = ((hd - c) / 8).min(VALUE_VECTORS);
            macro_rules! run {
                ($m:literal) => {
                    match d {
                        1 => weighted::<S, $m, 1>(p_i, f_i, j0, j1, v, stride, acc_i, hd, c),
                        2 => weighted::<S, $m, 2>(p_i, f_i, j0, j1, v, stride, acc_i, hd, c),
                        3 => weighted::<S, $m, 3>(p_i, f_i, j0, j1, v, stride, acc_i, hd, c),
                        _ => weighted::<S, $m, 4>(p_i, f_i, j0, j1, v, stride, acc_i, hd, c),
                    }
                };
            }
            match m {
                1 => run!(1),
                2 => run!(2),
                _ => run!(3),
            }
            c += 8 * d;
        }
        for t in 0..m {
            for d in c..hd {
                let a = acc_i.add(t * hd + d);
                *a *= *f_i.add(t);
                for j in j0..j1 {
                    let x = (*v.add((j - j0) * stride + d)).to_f32();
                    *a = (*p_i.add(t * PANEL + j)).mul_add(x, *a);
                }
            }
        }
        i += m;
    }
}

/// `dst[(j - j0) * hd + d] = v[(j - j0) * stride + d]` widened, for `j0 <= j < j1`.
///
/// # Safety
/// AVX2, FMA, F16C; `v` holds rows `0..j1 - j0` of `hd` at `stride`; `dst` holds
/// `(j1 - j0) * hd`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_values<T: KvElement>(
    v: *const T,
    stride: usize,
    hd: usize,
    n: usize,
    dst: *mut f32,
) {
    for r in 0..n {
        let (src, out) = (v.add(r * stride), dst.add(r * hd));
        let mut c = 0;
        while c + 8 <= hd {
            _mm256_storeu_ps(out.add(c), load8(src.add(c)));
            c += 8;
        }
        for d in c..hd {
            *out.add(d) = (*src.add(d)).to_f32();
        }
    }
}

/// Lane `t` of the result: `op` over the 8 lanes of `v[t]`, by the same tree for every
/// `t`: ((x0·x2)·(x1·x3))·((x4·x6)·(x5·x7)).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce8(v: &[__m256; 8], op: impl Fn(__m256, __m256) -> __m256) -> __m256 {
    // [a0·a2 b0·b2 a1·a3 b1·b3 | a4·a6 b4·b6 a5·a7 b5·b7] for (a, b) = (v0, v1), ...
    let pair = |a: __m256, b: __m256| op(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    let (t01, t23) = (pair(v[0], v[1]), pair(v[2], v[3]));
    let (t45, t67) = (pair(v[4], v[5]), pair(v[6], v[7]));
    // [v0 v1 v2 v3 over lanes 0..4 | the same over lanes 4..8], then v4..v7.
    let quad = |a: __m256, b: __m256| {
        op(
            _mm256_shuffle_ps::<0x44>(a, b),
            _mm256_shuffle_ps::<0xee>(a, b),
        )
    };
    let (u0, u1) = (quad(t01, t23), quad(t45, t67));
    op(
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
    )
}

/// `x[i..i + n]` in lanes `0..n`, `pad` in the others (`n <= 8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_lanes(x: &[f32], i: usize, n: usize, pad: f32) -> __m256 {
    if n == 8 {
        if let Some(eight) = x.get(i..i + 8) {
            // SAFETY: `eight` is 8 f32.
            return unsafe { _mm256_loadu_ps(eight.as_ptr()) };
        }
    }
    let mut lanes = [pad; 8];
    for (lane, &v) in lanes.iter_mut().zip(x.iter().skip(i).take(n)) {
        *lane = v;
    }
    // SAFETY: `lanes` is 8 f32.
    unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
}

/// Lanes `0..n` of `v` into `x[i..i + n]`; returns all 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_lanes(x: &mut [f32], i: usize, n: usize, v: __m256) -> [f32; 8] {
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` is 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    for (out, &lane) in x.iter_mut().skip(i).take(n).zip(&lanes) {
        *out = lane;
    }
    lanes
}

/// The online-softmax step of one panel (`raw` holds the unscaled scores of every
/// query, slots `j0..j1` computed; `scale > 0`): masks each query's scores to its own
/// keys (`ranges`, in positions; slot 0 is position `base`), raises its running max,
/// leaves in `factor[i]` what its sums so far are to be multiplied by (`exp(old max -
/// new max)`: 1 if it did not rise, 0 before the first key), folds the panel into its
/// running sum, and leaves its weights `exp(scale · s - max)` in `raw` (0 where
/// masked). Queries go 8 at a time, one per lane for the maxima and sums, each with
/// the same arithmetic whichever lane it has. Returns whether any query saw a key (if
/// none did, every factor leaves the sums as they are).
///
/// # Safety
/// AVX2, FMA, F16C; `raw` holds `n_q * PANEL`; `state` tracks `n_q = ranges.len()`
/// queries; `factor` holds `n_q`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_softmax(
    raw: &mut [f32],
    scale: f32,
    ranges: &[Range<usize>],
    base: usize,
    j0: usize,
    j1: usize,
    state: &mut FlashState,
    factor: &mut [f32],
) -> bool {
    let n_q = ranges.len();
    let lane_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let lane_hi = _mm256_add_epi32(lane_lo, _mm256_set1_epi32(8));
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    let scale_v = _mm256_set1_ps(scale);
    let mut any = false;
    for g in (0..n_q).step_by(8) {
        let n = (n_q - g).min(8);
        // Each query's scores masked to its keys (-inf elsewhere), and their max.
        let mut maxima = [neg_inf; 8];
        for (t, range) in ranges[g..g + n].iter().enumerate() {
            let row = raw.as_mut_ptr().add((g + t) * PANEL);
            // The slots this query sees: its keys within the panel's computed slots.
            let lo = range.start.saturating_sub(base).max(j0);
            let hi = range.end.saturating_sub(base).min(j1);
            if lo >= hi {
                _mm256_storeu_ps(row, neg_inf);
                _mm256_storeu_ps(row.add(8), neg_inf);
                continue;
            }
            any = true;
            let mut s0 = _mm256_loadu_ps(row);
            let mut s1 = _mm256_loadu_ps(row.add(8));
            if lo > 0 || hi < PANEL {
                // Slot s is kept where lo <= s < hi, i.e. s > lo - 1 and hi > s.
                let lo_v = _mm256_set1_epi32(lo as i32 - 1);
                let hi_v = _mm256_set1_epi32(hi as i32);
                let keep0 = _mm256_and_si256(
                    _mm256_cmpgt_epi32(lane_lo, lo_v),
                    _mm256_cmpgt_epi32(hi_v, lane_lo),
                );
                let keep1 = _mm256_and_si256(
                    _mm256_cmpgt_epi32(lane_hi, lo_v),
                    _mm256_cmpgt_epi32(hi_v, lane_hi),
                );
                s0 = _mm256_blendv_ps(neg_inf, s0, _mm256_castsi256_ps(keep0));
                s1 = _mm256_blendv_ps(neg_inf, s1, _mm256_castsi256_ps(keep1));
                _mm256_storeu_ps(row, s0);
                _mm256_storeu_ps(row.add(8), s1);
            }
            maxima[t] = _mm256_max_ps(s0, s1);
        }
        // scale > 0, and rounding keeps order: the max of the scaled scores.
        let panel_max = _mm256_mul_ps(reduce8(&maxima, |a, b| _mm256_max_ps(a, b)), scale_v);
        let old = load_lanes(&state.max, g, n, f32::NEG_INFINITY);
        let new = _mm256_max_ps(old, panel_max);
        // exp(0) is exactly 1; -inf - -inf gives 0, as does exp(-inf).
        let f = exp8(_mm256_sub_ps(old, new));
        store_lanes(factor, g, n, f);
        let new = store_lanes(&mut state.max, g, n, new);
        // The weights, and their sum.
        let mut sums = [_mm256_setzero_ps(); 8];
        for (t, sum) in sums.iter_mut().enumerate().take(n) {
            let row = raw.as_mut_ptr().add((g + t) * PANEL);
            // exp(scale · s - max), the scaling fused in; -inf (masked) gives 0.
            let minus_max = _mm256_set1_ps(-new[t]);
            let p0 = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(row), scale_v, minus_max));
            let p1 = exp8(_mm256_fmadd_ps(
                _mm256_loadu_ps(row.add(8)),
                scale_v,
                minus_max,
            ));
            _mm256_storeu_ps(row, p0);
            _mm256_storeu_ps(row.add(8), p1);
            *sum = _mm256_add_ps(p0, p1);
        }
        let old_sum = load_lanes(&state.sum, g, n, 0.0);
        let sum = _mm256_add_ps(
            _mm256_mul_ps(old_sum, f),
            reduce8(&sums, |a, b| _mm256_add_ps(a, b)),
        );
        store_lanes(&mut state.sum, g, n, sum);
    }
    any
}

/// Whether rows `0..n_rows` of `head_dim` values at stride `stride` lie in `len`.
fn rows_fit(len: usize, n_rows: usize, stride: usize, head_dim: usize) -> bool {
    n_rows == 0
        || (n_rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(head_dim))
            .is_some_and(|need| need <= len)
}

/// The pass over the key blocks (see the module comment); the scalar pass where the
/// shapes do not fit.
fn attend_keys<T: KvElement>(
    shape: &AttentionShape,
    kv: &KvBlocks<'_, T>,
    queries: &GroupQueries<'_>,
    keys: Range<usize>,
    state: &mut FlashState,
) {
    let hd = shape.head_dim;
    let n_q = queries.keys.len();
    let fits = hd > 0
        && queries.q.len() == n_q * hd
        && state.max.len() == n_q
        && state.sum.len() == n_q
        && state.acc.len() == n_q * hd
        && shape
            .n_kv_head
            .checked_mul(hd)
            .is_some_and(|kv_width| queries.kv_offset + hd <= kv_width)
        && shape.scale > 0.0
        && shape.scale.is_finite()
        && hd < i32::MAX as usize;
    if !fits {
        return attend_keys_scalar(shape, kv, queries, keys, state);
    }
    // SAFETY: the shapes are checked above, each block's slices in `attend_keys_avx2`;
    // AVX2, FMA and F16C were detected.
    unsafe { attend_keys_avx2(shape, kv, queries, keys, state) }
}

/// # Safety
/// AVX2, FMA, F16C; the shapes checked in [`attend_keys`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_keys_avx2<T: KvElement>(
    shape: &AttentionShape,
    kv: &KvBlocks<'_, T>,
    queries: &GroupQueries<'_>,
    keys: Range<usize>,
    state: &mut FlashState,
) {
    let hd = shape.head_dim;
    let kv_width = shape.n_kv_head * hd;
    let n_q = queries.keys.len();
    let lo = queries.keys.iter().map(|r| r.start).min().unwrap_or(0);
    let hi = queries.keys.iter().map(|r| r.end).max().unwrap_or(0);
    let (lo, hi) = (lo.max(keys.start), hi.min(keys.end));
    let bs = kv.block_size.max(1);
    // Widening the values once pays when several query tiles read them.
    let widen = T::DTYPE == KvDtype::F16 && n_q > VALUE_QUERIES;
    let mut raw = std::mem::take(&mut state.scores);
    let mut kt = std::mem::take(&mut state.keys_t);
    let mut vf = std::mem::take(&mut state.values_f32);
    // Per query: what its sums so far are multiplied by at the current panel.
    let mut factors = std::mem::take(&mut state.factors);
    factors.resize(n_q, 0.0);
    raw.resize(n_q * PANEL, 0.0);
    kt.resize(hd * PANEL, 0.0);
    if widen {
        vf.resize(PANEL * hd, 0.0);
    }
    let mut pos = lo;
    while pos < hi {
        let in_block = pos % bs;
        // The panel's slot 0 and its end, in the block's positions.
        let panel_first = in_block / PANEL * PANEL;
        let panel_end = (panel_first + PANEL).min(bs);
        let base = pos - in_block + panel_first;
        let end = (base + panel_end - panel_first).min(hi);
        let (j0, j1) = (pos - base, end - base);
        let at = (panel_first + j0) * kv_width + queries.kv_offset;
        let n_rows = j1 - j0;
        let block = pos / bs;
        let (Some(k), Some(v)) = (
            kv.keys.get(block).and_then(|b| b.get(at..)),
            kv.values.get(block).and_then(|b| b.get(at..)),
        ) else {
            // A freed block lies before every window that could see it.
            pos = end;
            continue;
        };
        if !rows_fit(k.len(), n_rows, kv_width, hd) || !rows_fit(v.len(), n_rows, kv_width, hd) {
            pos = end;
            continue;
        }
        transpose_keys(k.as_ptr(), kv_width, hd, j0, j1, kt.as_mut_ptr());
        panel_scores(
            queries.q.as_ptr(),
            n_q,
            hd,
            kt.as_ptr(),
            j0,
            j1,
            raw.as_mut_ptr(),
        );
        if panel_softmax(
            &mut raw,
            shape.scale,
            queries.keys,
            base,
            j0,
            j1,
            state,
            &mut factors,
        ) {
            let (f, acc) = (factors.as_ptr(), state.acc.as_mut_ptr());
            if widen {
                widen_values(v.as_ptr(), kv_width, hd, n_rows, vf.as_mut_ptr());
                panel_values(raw.as_ptr(), f, n_q, j0, j1, vf.as_ptr(), hd, acc, hd);
            } else {
                panel_values(raw.as_ptr(), f, n_q, j0, j1, v.as_ptr(), kv_width, acc, hd);
            }
        }
        pos = end;
    }
    state.scores = raw;
    state.keys_t = kt;
    state.values_f32 = vf;
    state.factors = factors;
}

/// The AVX2 pass for an f32 cache. Only for a CPU with AVX2, FMA and F16C.
pub(crate) fn kernels_f32() -> BlockKernels<f32> {
    BlockKernels {
        attend_keys: attend_keys::<f32>,
    }
}

/// The AVX2 pass for an f16 cache. Only for a CPU with AVX2, FMA and F16C.
pub(crate) fn kernels_f16() -> BlockKernels<f16> {
    BlockKernels {
        attend_keys: attend_keys::<f16>,
    }
}
