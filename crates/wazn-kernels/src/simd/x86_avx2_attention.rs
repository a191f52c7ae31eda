//! AVX2 + FMA + F16C block kernels of the online-softmax attention
//! (`crate::attention`): scores `scale · q·k` of up to 4 queries against each key row,
//! the exponentials of a block's scores, and the weighted sum of value rows, for an
//! f32 or f16 cache (f16 widened with F16C as it is loaded).
//!
//! Every kernel has a scalar reference in `crate::attention::flash` and equals it up
//! to the order of f32 sums (and the exponential's last bit or so). The wrappers check
//! every slice length before the unchecked loads and fall back to the scalar kernel on
//! a shape they cannot prove in bounds. They are handed out only after AVX2, FMA and
//! F16C were detected at run time (`super::Isa::Avx2`).

use std::arch::x86_64::*;

use super::x86_avx2_util::hsum_ps;

use half::f16;

use crate::attention::{BlockKernels, KvElement};

/// The lane sums of `a`, `b`, `c`, `d`, in lanes 0..4 (one reduction for four).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4_ps(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    // [a01 a23 b01 b23 | a45 a67 b45 b67], then the same for c, d.
    let ab = _mm256_hadd_ps(a, b);
    let cd = _mm256_hadd_ps(c, d);
    // [a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567]
    let abcd = _mm256_hadd_ps(ab, cd);
    _mm_add_ps(
        _mm256_castps256_ps128(abcd),
        _mm256_extractf128_ps::<1>(abcd),
    )
}

/// 8 f32 from `p[0..8]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f32(p: *const f32) -> __m256 {
    _mm256_loadu_ps(p)
}

/// 8 f16 from `p[0..8]`, widened.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f16(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

/// `exp(x)` in each lane (Cephes' reduction and polynomial: within about 2 ulp), and
/// exactly 0 below -87.3 (where f32 `exp` turns subnormal), -inf included.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> __m256 {
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.336_55));
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.376_26));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.336_55));
    // x = n·ln2 + r, |r| <= ln2/2, with ln2 in two parts so r keeps its low bits.
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(
        y,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_and_ps(_mm256_mul_ps(y, pow2n), keep)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn exp_sum_avx2(x: &mut [f32], max: f32) -> f32 {
    let m = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    let mut chunks = x.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 8 f32.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        let e = exp8(_mm256_sub_ps(v, m));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), e) };
        sum = _mm256_add_ps(sum, e);
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut padded = [f32::NEG_INFINITY; 8];
        padded[..tail.len()].copy_from_slice(tail);
        // SAFETY: `padded` is 8 f32.
        let e = exp8(_mm256_sub_ps(
            unsafe { _mm256_loadu_ps(padded.as_ptr()) },
            m,
        ));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(padded.as_mut_ptr(), e) };
        tail.copy_from_slice(&padded[..tail.len()]);
        sum = _mm256_add_ps(sum, e);
    }
    hsum_ps(sum)
}

fn exp_sum(x: &mut [f32], max: f32) -> f32 {
    // SAFETY: handed out only where `Isa::Avx2` was detected.
    unsafe { exp_sum_avx2(x, max) }
}

/// Whether rows `0..n_rows` of `head_dim` values at stride `stride` lie in `len`.
fn rows_fit(len: usize, n_rows: usize, stride: usize, head_dim: usize) -> bool {
    n_rows == 0
        || (n_rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(head_dim))
            .is_some_and(|need| need <= len)
}

/// Calls `$f::<N>($args)` with `N = $n` in 1..=4. Queries go through the kernels four
/// at most at a time, always with the same arithmetic, so a query's result does not
/// depend on which others share its task.
macro_rules! with_n {
    ($n:expr, $f:ident, $($arg:expr),*) => {
        match $n {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            _ => $f::<4>($($arg),*),
        }
    };
}

/// The scores and accumulate kernels for cache type `$t`, loading 8 lanes with `$load`.
macro_rules! block_kernels {
    ($module:ident, $t:ty, $load:ident) => {
        mod $module {
            use super::*;

            /// `scores[(i0 + t) * n_rows + j] = scale · q[i0 + t]·k_row` for `t < N`.
            ///
            /// # Safety
            /// AVX2, FMA, F16C; `q` holds rows `i0..i0 + N` of `hd`; `k_row` holds `hd`;
            /// `scores` holds `(i0 + N) * n_rows` values, `j < n_rows`.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn dots<const N: usize>(
                q: &[f32],
                i0: usize,
                hd: usize,
                k_row: *const $t,
                scale: f32,
                scores: &mut [f32],
                n_rows: usize,
                j: usize,
            ) {
                let qp = q.as_ptr().add(i0 * hd);
                // Two sums per query (even and odd chunks), so the FMA chains are long
                // enough to hide their latency.
                let mut acc = [_mm256_setzero_ps(); N];
                let mut odd = [_mm256_setzero_ps(); N];
                let mut c = 0;
                while c + 16 <= hd {
                    let k0 = $load(k_row.add(c));
                    let k1 = $load(k_row.add(c + 8));
                    for t in 0..N {
                        let q0 = _mm256_loadu_ps(qp.add(t * hd + c));
                        let q1 = _mm256_loadu_ps(qp.add(t * hd + c + 8));
                        acc[t] = _mm256_fmadd_ps(q0, k0, acc[t]);
                        odd[t] = _mm256_fmadd_ps(q1, k1, odd[t]);
                    }
                    c += 16;
                }
                while c + 8 <= hd {
                    let k = $load(k_row.add(c));
                    for (t, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(t * hd + c)), k, *a);
                    }
                    c += 8;
                }
                // One reduction for the (at most four) queries; each lane depends on its
                // own query only.
                let sum = |t: usize| {
                    if t < N {
                        _mm256_add_ps(acc[t], odd[t])
                    } else {
                        _mm256_setzero_ps()
                    }
                };
                let mut dots = [0.0f32; 4];
                _mm_storeu_ps(dots.as_mut_ptr(), hsum4_ps(sum(0), sum(1), sum(2), sum(3)));
                for (t, &lanes) in dots.iter().enumerate().take(N) {
                    let mut dot = lanes;
                    for d in c..hd {
                        dot += *qp.add(t * hd + d) * (*k_row.add(d)).to_f32();
                    }
                    *scores.get_unchecked_mut((i0 + t) * n_rows + j) = dot * scale;
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn scores_inner(
                q: &[f32],
                hd: usize,
                k: &[$t],
                stride: usize,
                n_rows: usize,
                scale: f32,
                scores: &mut [f32],
            ) {
                let n_q = q.len() / hd;
                for j in 0..n_rows {
                    let k_row = k.as_ptr().add(j * stride);
                    let mut i0 = 0;
                    while i0 < n_q {
                        let n = (n_q - i0).min(4);
                        with_n!(n, dots, q, i0, hd, k_row, scale, scores, n_rows, j);
                        i0 += n;
                    }
                }
            }

            pub(super) fn scores(
                q: &[f32],
                hd: usize,
                k: &[$t],
                stride: usize,
                n_rows: usize,
                scale: f32,
                scores: &mut [f32],
            ) {
                let n_q = if hd == 0 { 0 } else { q.len() / hd };
                if hd == 0
                    || q.len() % hd != 0
                    || !rows_fit(k.len(), n_rows, stride, hd)
                    || scores.len() < n_q * n_rows
                {
                    let scalar = BlockKernels::<$t>::scalar();
                    return (scalar.scores)(q, hd, k, stride, n_rows, scale, scores);
                }
                // SAFETY: the lengths are checked above; AVX2 was detected.
                unsafe { scores_inner(q, hd, k, stride, n_rows, scale, scores) }
            }

            /// `acc[i0 + t][c..c + 8] += Σ_j p[(i0 + t) * n_rows + j] · v[j][c..c + 8]`.
            ///
            /// # Safety
            /// AVX2, FMA, F16C; `acc` holds rows `i0..i0 + N` of `hd`, `c + 8 <= hd`;
            /// `p` holds `(i0 + N) * n_rows`; `v` holds `n_rows` rows at `stride`.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn weighted<const N: usize>(
                p: &[f32],
                n_rows: usize,
                v: &[$t],
                stride: usize,
                hd: usize,
                acc: &mut [f32],
                i0: usize,
                c: usize,
            ) {
                let ap = acc.as_mut_ptr().add(i0 * hd + c);
                let pp = p.as_ptr().add(i0 * n_rows);
                let mut a = [_mm256_setzero_ps(); N];
                for (t, at) in a.iter_mut().enumerate() {
                    *at = _mm256_loadu_ps(ap.add(t * hd));
                }
                // A second sum per query over the odd rows (see `dots`).
                let mut odd = [_mm256_setzero_ps(); N];
                let mut j = 0;
                while j + 2 <= n_rows {
                    let x0 = $load(v.as_ptr().add(j * stride + c));
                    let x1 = $load(v.as_ptr().add((j + 1) * stride + c));
                    for t in 0..N {
                        let p0 = _mm256_set1_ps(*pp.add(t * n_rows + j));
                        let p1 = _mm256_set1_ps(*pp.add(t * n_rows + j + 1));
                        a[t] = _mm256_fmadd_ps(p0, x0, a[t]);
                        odd[t] = _mm256_fmadd_ps(p1, x1, odd[t]);
                    }
                    j += 2;
                }
                while j < n_rows {
                    let x = $load(v.as_ptr().add(j * stride + c));
                    for (t, at) in a.iter_mut().enumerate() {
                        *at = _mm256_fmadd_ps(_mm256_set1_ps(*pp.add(t * n_rows + j)), x, *at);
                    }
                    j += 1;
                }
                for (t, at) in a.iter().enumerate() {
                    _mm256_storeu_ps(ap.add(t * hd), _mm256_add_ps(*at, odd[t]));
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn accumulate_inner(
                p: &[f32],
                n_rows: usize,
                v: &[$t],
                stride: usize,
                hd: usize,
                acc: &mut [f32],
            ) {
                let n_q = acc.len() / hd;
                let mut c = 0;
                while c + 8 <= hd {
                    let mut i0 = 0;
                    while i0 < n_q {
                        let n = (n_q - i0).min(4);
                        with_n!(n, weighted, p, n_rows, v, stride, hd, acc, i0, c);
                        i0 += n;
                    }
                    c += 8;
                }
                if c < hd {
                    for (i, acc_row) in acc.chunks_exact_mut(hd).enumerate() {
                        for j in 0..n_rows {
                            let pj = p[i * n_rows + j];
                            let v_row = &v[j * stride..][..hd];
                            for d in c..hd {
                                acc_row[d] += pj * v_row[d].to_f32();
                            }
                        }
                    }
                }
            }

            pub(super) fn accumulate(
                p: &[f32],
                n_rows: usize,
                v: &[$t],
                stride: usize,
                hd: usize,
                acc: &mut [f32],
            ) {
                let n_q = if hd == 0 { 0 } else { acc.len() / hd };
                if hd == 0
                    || acc.len() % hd != 0
                    || !rows_fit(v.len(), n_rows, stride, hd)
                    || p.len() < n_q * n_rows
                {
                    let scalar = BlockKernels::<$t>::scalar();
                    return (scalar.accumulate)(p, n_rows, v, stride, hd, acc);
                }
                // SAFETY: the lengths are checked above; AVX2 was detected.
                unsafe { accumulate_inner(p, n_rows, v, stride, hd, acc) }
            }
        }
    };
}

block_kernels!(f32_cache, f32, load8_f32);
block_kernels!(f16_cache, f16, load8_f16);

/// The AVX2 block kernels for an f32 cache. Only for a CPU with AVX2, FMA and F16C.
pub(crate) fn kernels_f32() -> BlockKernels<f32> {
    BlockKernels {
        scores: f32_cache::scores,
        accumulate: f32_cache::accumulate,
        exp_sum,
    }
}

/// The AVX2 block kernels for an f16 cache. Only for a CPU with AVX2, FMA and F16C.
pub(crate) fn kernels_f16() -> BlockKernels<f16> {
    BlockKernels {
        scores: f16_cache::scores,
        accumulate: f16_cache::accumulate,
        exp_sum,
    }
}
