//! The common case of top-p without a sort of the bucketed prefix and without a libm
//! `exp` per token.
//!
//! [`super::top_p_keep`] spends most of its time in one call of the platform's `expf` per
//! token and in a scattered add per token into its buckets. Here the weights come from an
//! `exp` written as straight-line arithmetic, which the compiler turns into vector code,
//! and the threshold is found with masked sums, which also vectorize: first the
//! narrowest of a few bands below the best logit that holds the cut, then bisection
//! over that band's tokens. Only the tokens above the threshold are sorted and their
//! weights taken from the exact `weight`.
//!
//! The result must be the exact one, which depends on the total mass summed with the
//! exact `weight` in id order. That total is not computed here; the fast one lies within
//! [`MASS_TOLERANCE`] of it, so a cut whose running share clears `top_p` by more than that
//! on both sides is the exact cut. When it does not (rarely: the share of one token at
//! the cut is usually far wider than the tolerance), the caller falls back to the exact
//! computation.

/// Relative distance allowed between the fast total mass and the exact one, with room to
/// spare: a fast weight is within 2.5 ulp of the true value (within 2 ulp of the nearest
/// f32, which the tests check), or 0 where the true value is below 2^-125; a platform
/// `expf` is within 1 ulp (glibc's within 0.502); an ulp is at most 2^-23 ≈ 1.2e-7 of a
/// weight, so the weights differ by at most 4.2e-7 of each; the two sums of f64, in
/// different orders over at most a few hundred thousand terms, round apart by far less
/// than 1e-9 of the total, which is at least 1 (the best token's weight).
const MASS_TOLERANCE: f64 = 5e-7;

/// Bisection steps on the threshold: its bracket starts as wide as the band it lies in
/// (at most 32 logits) and ends under 1/32 of a logit wide.
const BISECTION_STEPS: usize = 10;

/// Bands below the best logit, narrowest first, whose mass is tried in turn: the cut
/// usually lies within the first few logits, and the narrowest band that holds it lets
/// the rest of the work look at a few hundred tokens instead of the whole vocabulary.
const BAND_WIDTHS: [f32; 4] = [4.0, 6.0, 8.0, 12.0];

/// Tokens looked at together when picking those of a band: a group with none in the band
/// is skipped at the cost of one vectorized count.
const GROUP: usize = 16;

/// Scratch of the fast path, kept by the sampler.
#[derive(Clone, Debug, Default)]
pub(crate) struct FastScratch {
    /// exp(l - max) of each token, in f32.
    weights: Vec<f32>,
    /// The tokens of the band that holds the cut: ids, logits and weights.
    band_ids: Vec<u32>,
    band_logits: Vec<f32>,
    band_weights: Vec<f32>,
}

/// What the fast path found.
pub(crate) enum Outcome {
    /// `cands` holds the exact answer.
    Decided,
    /// Too close to call within the tolerance: compute it exactly.
    Undecided,
}

/// Like [`super::top_p_keep`] (same arguments and result), or [`Outcome::Undecided`] when
/// the fast total mass cannot settle the cut.
pub(crate) fn top_p_keep_fast(
    logits: &[f32],
    max: f32,
    top_p: f64,
    min_logit: f32,
    weight: impl Fn(f32, f32) -> f64,
    scratch: &mut FastScratch,
    cands: &mut Vec<(u32, f32)>,
) -> Outcome {
    let weights = &mut scratch.weights;
    // Every entry is written below; only a change of length costs a fill.
    weights.resize(logits.len(), 0.0);
    let mass_total = fill_weights(logits, max, weights);
    // Aim a little above top_p so that the approximate masked sums below do not leave the
    // cut just outside the candidates.
    let aim = (top_p + (1.0 - top_p) * 0.02) * mass_total;
    let band = BAND_WIDTHS
        .into_iter()
        .find(|&width| mass_at_or_above(logits, weights, max - width) >= aim);
    let (ids, band_logits, band_weights) = (
        &mut scratch.band_ids,
        &mut scratch.band_logits,
        &mut scratch.band_weights,
    );
    ids.clear();
    band_logits.clear();
    band_weights.clear();
    let (floor_of_search, width) = match band {
        Some(width) => (max - width, width),
        None => (f32::NEG_INFINITY, 32.0),
    };
    collect_band(
        logits,
        weights,
        floor_of_search,
        ids,
        band_logits,
        band_weights,
    );
    let mut lo = max - width;
    let mut hi = max;
    let threshold = if mass_at_or_above(band_logits, band_weights, lo) < aim {
        f32::NEG_INFINITY
    } else {
        for _ in 0..BISECTION_STEPS {
            let mid = lo + (hi - lo) * 0.5;
            if mass_at_or_above(band_logits, band_weights, mid) >= aim {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    };
    // The band's tokens are every finite one at or above `floor_of_search`, so the tokens
    // kept are all those at or above `floor`: a best-first prefix of the whole row.
    let searched = threshold.max(floor_of_search);
    let floor = searched.max(min_logit);
    cands.clear();
    cands.extend(
        ids.iter()
            .zip(band_logits.iter())
            .filter(|&(_, &l)| l >= floor)
            .map(|(&i, &l)| (i, l)),
    );
    cands.sort_unstable_by(super::best_first);
    let low = top_p * (1.0 - MASS_TOLERANCE);
    let high = top_p * (1.0 + MASS_TOLERANCE);
    let mut cumulative = 0.0;
    for (i, &(_, l)) in cands.iter().enumerate() {
        cumulative += weight(l, max) / mass_total;
        if cumulative >= low {
            if cumulative >= high {
                cands.truncate(i + 1);
                return Outcome::Decided;
            }
            return Outcome::Undecided;
        }
    }
    // Never reached top_p: the answer is every token that survives min-p, if all of them
    // are here.
    if searched <= min_logit {
        Outcome::Decided
    } else {
        Outcome::Undecided
    }
}

/// Appends the finite tokens with a logit of at least `floor` to `ids`, `band_logits` and
/// `band_weights`, in id order.
fn collect_band(
    logits: &[f32],
    weights: &[f32],
    floor: f32,
    ids: &mut Vec<u32>,
    band_logits: &mut Vec<f32>,
    band_weights: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe {
                collect_band_avx2(logits, weights, floor, ids, band_logits, band_weights)
            };
        }
    }
    collect_band_portable(logits, weights, floor, ids, band_logits, band_weights)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn collect_band_avx2(
    logits: &[f32],
    weights: &[f32],
    floor: f32,
    ids: &mut Vec<u32>,
    band_logits: &mut Vec<f32>,
    band_weights: &mut Vec<f32>,
) {
    collect_band_portable(logits, weights, floor, ids, band_logits, band_weights)
}

#[inline(always)]
fn collect_band_portable(
    logits: &[f32],
    weights: &[f32],
    floor: f32,
    ids: &mut Vec<u32>,
    band_logits: &mut Vec<f32>,
    band_weights: &mut Vec<f32>,
) {
    for (g, group) in logits.chunks(GROUP).enumerate() {
        // A count rather than a maximum or `any`: it vectorizes.
        if group.iter().map(|&l| u32::from(l >= floor)).sum::<u32>() == 0 {
            continue;
        }
        let base = g * GROUP;
        for (j, &l) in group.iter().enumerate() {
            if l >= floor && l.is_finite() {
                ids.push((base + j) as u32);
                band_logits.push(l);
                band_weights.push(weights[base + j]);
            }
        }
    }
}

/// Sum of the weights of the tokens whose logit is at least `threshold`, in f32 lanes (an
/// estimate, used only to place the threshold).
fn mass_at_or_above(logits: &[f32], weights: &[f32], threshold: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { mass_at_or_above_avx2(logits, weights, threshold) };
        }
    }
    mass_at_or_above_portable(logits, weights, threshold)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mass_at_or_above_avx2(logits: &[f32], weights: &[f32], threshold: f32) -> f64 {
    mass_at_or_above_portable(logits, weights, threshold)
}

#[inline(always)]
fn mass_at_or_above_portable(logits: &[f32], weights: &[f32], threshold: f32) -> f64 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let mut l_chunks = logits.chunks_exact(LANES);
    let mut w_chunks = weights.chunks_exact(LANES);
    for (ls, ws) in (&mut l_chunks).zip(&mut w_chunks) {
        for ((acc, &l), &w) in lanes.iter_mut().zip(ls).zip(ws) {
            *acc += if l >= threshold { w } else { 0.0 };
        }
    }
    let mut sum: f64 = lanes.iter().map(|&x| f64::from(x)).sum();
    for (&l, &w) in l_chunks.remainder().iter().zip(w_chunks.remainder()) {
        if l >= threshold {
            sum += f64::from(w);
        }
    }
    sum
}

/// Writes exp(l - max) of every token to `weights` and returns their sum in f64.
fn fill_weights(logits: &[f32], max: f32, weights: &mut [f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { fill_weights_avx2(logits, max, weights) };
        }
    }
    fill_weights_portable(logits, max, weights)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_weights_avx2(logits: &[f32], max: f32, weights: &mut [f32]) -> f64 {
    fill_weights_portable(logits, max, weights)
}

#[inline(always)]
fn fill_weights_portable(logits: &[f32], max: f32, weights: &mut [f32]) -> f64 {
    // Two simple loops, a map and a sum, which the compiler vectorizes; fused, it did not.
    for (w, &l) in weights.iter_mut().zip(logits) {
        *w = exp_f32(l - max);
    }
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    let mut chunks = weights.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (acc, &w) in lanes.iter_mut().zip(chunk) {
            *acc += f64::from(w);
        }
    }
    let sum: f64 = lanes.iter().sum();
    sum + chunks
        .remainder()
        .iter()
        .map(|&w| f64::from(w))
        .sum::<f64>()
}

/// e^x for x <= 0 (or -inf) in f32 arithmetic, within 2 ulp of the nearest f32; 0
/// below -87 (where e^x < 2^-125, a negligible share of a total mass of at least 1).
///
/// x = k·ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two so that k·ln 2 loses nothing),
/// e^r from its Taylor series to degree 7 (the first term left out is below 6e-9 of the
/// sum), and 2^k written into an f32's exponent field. Only adds, multiplies, compares and
/// integer bit moves, so that it vectorizes.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const FLOOR: f32 = -87.0;
    // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits so that k·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let below = x < FLOOR;
    // Clamping also turns -inf into a finite number the bit tricks below can take.
    let x = if below { FLOOR } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // k is in [-126, 0]: 2^k is a normal f32, its biased exponent k + 127.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    if below {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::super::finite_entries;
    use super::*;
    use crate::sampler::Rng;

    /// Distance in ulp between two non-negative f32.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    fn weight(l: f32, max: f32) -> f64 {
        f64::from((l - max).exp())
    }

    /// On vocabulary-sized rows and top_p at, or one f32 step from, the share of a
    /// best-first prefix (where the last bits of the total decide the cut), a decided
    /// answer is the exact one, and the undecided case does occur.
    #[test]
    fn decided_cuts_equal_the_exact_ones_and_close_calls_are_left_undecided() {
        let mut rng = Rng::from_seed(41);
        let (mut decided, mut undecided) = (0, 0);
        for case in 0..30 {
            let spread = [1.0, 2.5, 4.0][case % 3];
            let row: Vec<f32> = (0..49_152)
                .map(|_| {
                    let u: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
                    (u * spread) as f32
                })
                .collect();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mass: f64 = row.iter().map(|&l| weight(l, max)).sum();
            let mut sorted: Vec<(u32, f32)> = finite_entries(&row).collect();
            sorted.sort_by(super::super::best_first);
            let rank = 1 + (rng.next_u64() % 500) as usize;
            let share: f64 = sorted[..rank]
                .iter()
                .map(|&(_, l)| weight(l, max) / mass)
                .sum();
            let near = share as f32;
            for top_p in [near, f32::from_bits(near.to_bits() + 1), 0.95] {
                let top_p = f64::from(top_p);
                let mut exact = Vec::new();
                let mut exact_scratch = super::super::TopPScratch::default();
                let min_logit = f32::NEG_INFINITY;
                super::super::top_p_keep(
                    &row,
                    max,
                    top_p,
                    min_logit,
                    weight,
                    &mut exact_scratch,
                    &mut exact,
                );
                let mut fast = Vec::new();
                let mut scratch = FastScratch::default();
                match top_p_keep_fast(&row, max, top_p, min_logit, weight, &mut scratch, &mut fast)
                {
                    Outcome::Decided => {
                        decided += 1;
                        assert_eq!(fast, exact, "case {case} top_p {top_p}");
                    }
                    Outcome::Undecided => undecided += 1,
                }
            }
        }
        assert!(
            decided > 0 && undecided > 0,
            "{decided} decided, {undecided} not"
        );
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_nearest_f32() {
        let mut worst = 0;
        let mut x = 0.0f32;
        while x > -87.0 {
            let want = f64::from(x).exp() as f32;
            worst = worst.max(ulps(exp_f32(x), want));
            x = f32::from_bits(x.to_bits() + 997).min(x - 1e-6);
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
