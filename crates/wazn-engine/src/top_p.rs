//! top-p over a whole vocabulary without sorting it.
//!
//! top-p keeps the shortest best-first prefix of the tokens whose probability reaches
//! `top_p`. Over 49 152 tokens a sort, or even a few rounds of selection, costs more
//! than the rest of a sampling step, yet the prefix is usually a small part of the
//! vocabulary. So one pass puts every token's probability mass into buckets by how far
//! its logit lies below the best one (a bucket sort, as llama.cpp does for its top-k),
//! the buckets are summed best first until they hold `top_p` of the mass, and only the
//! tokens of those buckets (and one more, for rounding) are sorted.
//!
//! The result is exactly that of a full sort: the tokens sorted are a best-first prefix
//! of the whole order, the cumulative mass is summed over them in the same order with
//! the same operations, and when it falls short (rounding, or the catch-all last
//! bucket) the remaining tokens are ordered chunk by chunk as before. A seed therefore
//! picks the same token as with a full sort.
//!
//! [`top_p_keep_fast`] usually finds the same answer several times faster, and says
//! when it cannot be sure; this module's exact computation then decides.

use std::cmp::Ordering;

mod fast;

pub(crate) use fast::{top_p_keep_fast, FastScratch, Outcome};

/// Buckets per unit of logit below the best one.
const BUCKETS_PER_LOGIT: f32 = 32.0;
/// Buckets in all: they cover 32 logits below the best (a factor e^-32 in probability);
/// the last one also takes every token further down.
const N_BUCKETS: usize = 1024;

/// Scratch for [`top_p_keep`], kept by a sampler so that sampling does not allocate.
#[derive(Clone, Debug, Default)]
pub(crate) struct TopPScratch {
    /// Probability mass (unnormalized) of the tokens of each bucket.
    bucket_mass: Vec<f64>,
}

/// The bucket of a finite logit `l <= max`.
fn bucket(l: f32, max: f32) -> usize {
    // `as` saturates, so a distance beyond the range lands in the last bucket.
    (((max - l) * BUCKETS_PER_LOGIT) as usize).min(N_BUCKETS - 1)
}

/// Fills `cands` with the tokens of `logits` that survive min-p (`l >= min_logit`) and
/// top-p, best first (logit, then id). `max` is the highest logit of the row, which holds
/// no NaN; top-p measures mass against all tokens of the row (min-p only keeps a
/// best-first prefix, so applying it first gives the same set). `weight(l, max)` is the
/// softmax numerator at temperature 1.
pub(crate) fn top_p_keep(
    logits: &[f32],
    max: f32,
    top_p: f64,
    min_logit: f32,
    weight: impl Fn(f32, f32) -> f64,
    scratch: &mut TopPScratch,
    cands: &mut Vec<(u32, f32)>,
) {
    let mass = &mut scratch.bucket_mass;
    mass.clear();
    mass.resize(N_BUCKETS, 0.0);
    let mut mass_total = 0.0;
    for &l in logits {
        let w = weight(l, max);
        mass_total += w;
        if w > 0.0 {
            mass[bucket(l, max)] += w;
        }
    }
    // The buckets that hold top_p of the mass, plus one: the exact sum below rounds
    // differently from this one.
    let target = top_p * mass_total;
    let mut cumulative = 0.0;
    let mut last = N_BUCKETS - 1;
    for (b, &m) in mass.iter().enumerate() {
        cumulative += m;
        if cumulative >= target {
            last = (b + 1).min(N_BUCKETS - 1);
            break;
        }
    }
    cands.clear();
    cands.extend(finite_entries(logits).filter(|&(_, l)| l >= min_logit && bucket(l, max) <= last));
    cands.sort_unstable_by(best_first);
    let (keep, cumulative) = scan(cands, 0.0, mass_total, max, top_p, &weight);
    if let Some(keep) = keep {
        cands.truncate(keep);
        return;
    }
    // Rounding left the prefix short: the rest, ordered only as far as needed.
    let done = cands.len();
    cands.extend(finite_entries(logits).filter(|&(_, l)| l >= min_logit && bucket(l, max) > last));
    let keep = top_p_prefix(cands, done, cumulative, mass_total, max, top_p, &weight);
    cands.truncate(keep);
}

/// Walks `sorted` best first, adding each token's share of `mass_total` to
/// `cumulative`; returns the length of the prefix that reaches `top_p` (if any) and the
/// sum so far.
pub(crate) fn scan(
    sorted: &[(u32, f32)],
    mut cumulative: f64,
    mass_total: f64,
    max: f32,
    top_p: f64,
    weight: &impl Fn(f32, f32) -> f64,
) -> (Option<usize>, f64) {
    for (i, &(_, l)) in sorted.iter().enumerate() {
        cumulative += weight(l, max) / mass_total;
        if cumulative >= top_p {
            return (Some(i + 1), cumulative);
        }
    }
    (None, cumulative)
}

/// Length of the shortest best-first prefix of `cands` that reaches `top_p`, given that
/// `cands[..done]` is already the best-first start of it with a share of `cumulative`;
/// all of `cands` if rounding keeps it short. On return that prefix is in best-first
/// order.
///
/// Only as much is ordered as needed: the best 64 of the rest are selected and sorted,
/// then the best 128 of what remains, and so on.
pub(crate) fn top_p_prefix(
    cands: &mut [(u32, f32)],
    mut done: usize,
    mut cumulative: f64,
    mass_total: f64,
    max: f32,
    top_p: f64,
    weight: &impl Fn(f32, f32) -> f64,
) -> usize {
    let mut chunk = 64;
    while done < cands.len() {
        let rest = &mut cands[done..];
        let take = chunk.min(rest.len());
        if take < rest.len() {
            rest.select_nth_unstable_by(take - 1, best_first);
        }
        rest[..take].sort_unstable_by(best_first);
        let (keep, sum) = scan(&rest[..take], cumulative, mass_total, max, top_p, weight);
        if let Some(keep) = keep {
            return done + keep;
        }
        cumulative = sum;
        done += take;
        chunk *= 2;
    }
    cands.len()
}

/// Orders (id, logit) pairs by logit, highest first, then by id, lowest first. Logits here are
/// never NaN, so this is a total order (and -0.0 ties with 0.0).
pub(crate) fn best_first(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// The (id, logit) pairs of a row that can still be drawn.
pub(crate) fn finite_entries(logits: &[f32]) -> impl Iterator<Item = (u32, f32)> + '_ {
    logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Rng;

    fn weight(l: f32, max: f32) -> f64 {
        f64::from((l - max).exp())
    }

    /// The definition: every token that survives min-p, fully sorted best first, cut at
    /// the first place where the running share of the total mass reaches top_p.
    fn reference(logits: &[f32], top_p: f64, min_logit: f32) -> Vec<(u32, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mass_total: f64 = logits.iter().map(|&l| weight(l, max)).sum();
        let mut all: Vec<(u32, f32)> = finite_entries(logits)
            .filter(|&(_, l)| l >= min_logit)
            .collect();
        all.sort_by(best_first);
        let mut cumulative = 0.0;
        for (i, &(_, l)) in all.iter().enumerate() {
            cumulative += weight(l, max) / mass_total;
            if cumulative >= top_p {
                all.truncate(i + 1);
                break;
            }
        }
        all
    }

    fn keep(logits: &[f32], top_p: f64, min_logit: f32) -> Vec<(u32, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut cands = Vec::new();
        let mut scratch = TopPScratch::default();
        top_p_keep(
            logits,
            max,
            top_p,
            min_logit,
            weight,
            &mut scratch,
            &mut cands,
        );
        cands
    }

    /// Rows of a 49 152-token vocabulary shaped as a model's: a Gaussian spread of
    /// logits of various widths, some exact ties, some banned tokens.
    fn rows() -> Vec<Vec<f32>> {
        let mut rng = Rng::from_seed(17);
        let mut out = Vec::new();
        for &spread in &[0.05f64, 0.5, 1.5, 3.0, 6.0, 40.0] {
            let mut row: Vec<f32> = (0..49_152)
                .map(|_| {
                    // Sum of uniforms: a bell shape with a long enough tail.
                    let u: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
                    (u * spread) as f32
                })
                .collect();
            for i in (0..row.len()).step_by(997) {
                row[i] = f32::NEG_INFINITY;
            }
            // Ties at the very top and across a bucket.
            row[5] = row[3];
            row[40_000] = row[3];
            out.push(row);
        }
        // A peaked row: one token with nearly all the mass.
        let mut peaked = vec![-10.0f32; 49_152];
        peaked[123] = 15.0;
        out.push(peaked);
        // All tokens equal: the prefix is a run of ties cut by id.
        out.push(vec![0.25f32; 49_152]);
        out
    }

    #[test]
    fn equals_a_full_sort_on_vocabulary_sized_rows() {
        for (r, row) in rows().iter().enumerate() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for &top_p in &[0.01, 0.5, 0.9, 0.95, 0.999, 0.999_999_9] {
                for &min_logit in &[f32::NEG_INFINITY, max + 0.05f32.ln()] {
                    assert_eq!(
                        keep(row, top_p, min_logit),
                        reference(row, top_p, min_logit),
                        "row {r} top_p {top_p} min_logit {min_logit}"
                    );
                }
            }
        }
    }

    #[test]
    fn small_rows_with_infinite_and_equal_logits() {
        let mut rng = Rng::from_seed(3);
        for case in 0..500 {
            let n = 1 + (rng.next_u64() % 300) as usize;
            let row: Vec<f32> = (0..n)
                .map(|_| match rng.next_u64() % 8 {
                    0 => f32::NEG_INFINITY,
                    1 => 1.0,
                    _ => (rng.next_f64() * 80.0 - 40.0) as f32,
                })
                .collect();
            if row.iter().all(|l| !l.is_finite()) {
                continue;
            }
            let top_p = rng.next_f64();
            assert_eq!(
                keep(&row, top_p, f32::NEG_INFINITY),
                reference(&row, top_p, f32::NEG_INFINITY),
                "case {case}"
            );
        }
    }
}
