//! From a score to a verdict: a null distribution of scores between models known to be
//! unrelated, a z-score against it, and fixed rules.
//!
//! The null is made here: random models with the shapes of the compared models, initialised
//! independently from seeds, each scored against one of the two. To keep
//! its cost near one comparison's, a random pair is scored on [`NULL_LAYERS`] layers spread
//! over the depth rather than all of them: a mean over fewer layers spreads wider, so the null
//! is if anything too wide and the z-score too small, never too large. Models given by the
//! user as known-unrelated are scored in full and join the same sample.
//!
//! Random models are the easiest unrelated models; trained models that share nothing can still
//! look alike (similar data, similar recipes). So besides the z-score a `derived` verdict needs
//! a score far above what AWM measured on 90 pairs of independently trained LLMs (mean 0.00375,
//! sd 0.0028 of this same statistic, from AWM's published evaluation), and a score within a few
//! of those standard deviations of their mean is `independent` whatever the z-score.

use std::fmt;

use serde::Serialize;

use crate::alignment::Alignment;
use crate::compare::{score_aligned, score_pair, Detail, PairOutcome, Progress};
use crate::error::FingerprintError;
use crate::random::RandomModel;
use crate::source::WeightSource;

/// Random models in the null by default.
pub const DEFAULT_NULL_MODELS: usize = 8;
/// Layers a random pair is scored on.
pub const NULL_LAYERS: usize = 4;

/// AWM's independently trained pairs: mean and sd of the mean WqWkᵀ unbiased CKA.
pub const AWM_INDEPENDENT_MEAN: f64 = 0.00375;
pub const AWM_INDEPENDENT_SD: f64 = 0.0028;

/// z-scores at or above this (and a score [`DERIVED_SDS`] AWM sds above AWM's mean) say
/// `derived`.
pub const Z_DERIVED: f64 = 6.0;
/// z-scores below this say `independent`.
pub const Z_INDEPENDENT: f64 = 3.0;
pub const DERIVED_SDS: f64 = 10.0;
pub const INDEPENDENT_SDS: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Derived,
    Independent,
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Derived => "derived",
            Verdict::Independent => "independent",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// Scores of unrelated pairs.
#[derive(Clone, Debug, Serialize)]
pub struct NullDistribution {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    #[serde(skip)]
    pub scores: Vec<f64>,
}

impl NullDistribution {
    pub fn from_scores(scores: Vec<f64>) -> NullDistribution {
        let n = scores.len();
        let mean = scores.iter().sum::<f64>() / n.max(1) as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        NullDistribution {
            n,
            mean,
            sd: var.sqrt(),
            scores,
        }
    }

    /// How many null standard deviations `score` lies above the null mean.
    pub fn z(&self, score: f64) -> f64 {
        // A null of identical scores would make every difference infinite; a floor far below
        // any real spread keeps z finite.
        (score - self.mean) / self.sd.max(1e-9)
    }
}

/// The verdict for `score` with z-score `z`.
pub fn verdict(score: f64, z: f64) -> Verdict {
    let literature_z = (score - AWM_INDEPENDENT_MEAN) / AWM_INDEPENDENT_SD;
    if z >= Z_DERIVED && literature_z >= DERIVED_SDS {
        Verdict::Derived
    } else if z < Z_INDEPENDENT || literature_z < INDEPENDENT_SDS {
        Verdict::Independent
    } else {
        Verdict::Inconclusive
    }
}

/// The layers random pair `index` is scored on: [`NULL_LAYERS`] spread over `n_layer`,
/// shifted by `index` so the random pairs together cover the depth.
pub fn null_layers(n_layer: usize, index: usize) -> Vec<usize> {
    let m = NULL_LAYERS.min(n_layer);
    let mut layers: Vec<usize> = (0..m)
        .map(|k| (index + k * n_layer / m) % n_layer)
        .collect();
    layers.sort_unstable();
    layers.dedup();
    layers
}

/// Scores `n_models` random models against the anchors in turn (seeds 1, 2, ...), and each
/// of `unrelated` against the first anchor in full.
pub fn null_distribution(
    anchors: &[&dyn WeightSource],
    n_models: usize,
    unrelated: &[&dyn WeightSource],
    n_threads: usize,
    progress: &dyn Progress,
) -> Result<NullDistribution, FingerprintError> {
    let mut scores = Vec::new();
    for i in 0..n_models {
        progress.stage("null: random models", i, n_models);
        let Some(anchor) = anchors.get(i % anchors.len().max(1)) else {
            break;
        };
        // A random model's attention weights are independent of its embedding and its hidden
        // dimensions exchangeable, so every alignment (the assignment's included) leaves them
        // i.i.d. and the score has the same distribution: the identity is used, and the
        // assignment's cost saved.
        let random = RandomModel::new(anchor.facts(), Vec::new(), i as u64 + 1);
        let n = anchor.facts().n_embd;
        let identity = Alignment {
            a_dims: (0..n).collect(),
            b_dims: (0..n).collect(),
            b_signs: vec![1.0; n],
            mean_abs_cosine: 0.0,
        };
        let layers = null_layers(anchor.facts().n_layer, i);
        let s = score_aligned(
            *anchor,
            &random,
            &identity,
            Some(&layers),
            Detail::ScoreOnly,
            n_threads,
            &NullQuiet,
        )?;
        scores.push(s.score);
    }
    for (i, model) in unrelated.iter().enumerate() {
        progress.stage("null: given models", i, unrelated.len());
        let Some(anchor) = anchors.first() else {
            break;
        };
        if let PairOutcome::Scored(s) = score_pair(*anchor, *model, None, n_threads, &NullQuiet)? {
            scores.push(s.score);
        }
    }
    Ok(NullDistribution::from_scores(scores))
}

/// The null's pairs report through the caller's stages, not their own.
struct NullQuiet;
impl Progress for NullQuiet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(verdict(0.9, 500.0), Verdict::Derived);
        assert_eq!(verdict(0.001, 0.5), Verdict::Independent);
        // Far from random, but within AWM's spread of unrelated trained models.
        assert_eq!(verdict(0.008, 40.0), Verdict::Independent);
        assert_eq!(verdict(0.02, 40.0), Verdict::Inconclusive);
        assert_eq!(verdict(0.9, 4.0), Verdict::Inconclusive);
    }

    #[test]
    fn null_layers_spread_and_shift() {
        assert_eq!(null_layers(30, 0), vec![0, 7, 15, 22]);
        assert_eq!(null_layers(4, 1), vec![0, 1, 2, 3]);
        assert_eq!(null_layers(30, 1), vec![1, 8, 16, 23]);
    }
}
