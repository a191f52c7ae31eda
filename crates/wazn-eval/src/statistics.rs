//! The statistics llama-perplexity reports, computed the same way: perplexity with its
//! standard error, and against a base, KL divergence per token with its percentiles,
//! the change in the probability of the right token (Δp), how often both models agree
//! on the most likely token, and the perplexity ratio with its correlated uncertainty.

use serde::Serialize;

use crate::logits_file::BaseRow;

/// Sums over the scored tokens of a perplexity run.
#[derive(Clone, Copy, Debug, Default)]
pub struct NllSums {
    pub sum: f64,
    pub sum_sq: f64,
    pub count: usize,
}

impl NllSums {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum_sq += nll * nll;
        self.count += 1;
    }

    /// Perplexity so far.
    pub fn ppl(&self) -> f64 {
        (self.sum / self.count.max(1) as f64).exp()
    }

    /// Perplexity and its standard error (exp of the mean NLL; the error of the mean
    /// carried through exp), as llama-perplexity's final estimate.
    pub fn ppl_with_se(&self) -> (f64, f64) {
        let n = self.count as f64;
        let mean = self.sum / n;
        let ppl = mean.exp();
        let var = self.sum_sq / n - mean * mean;
        let se = if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * ppl
        } else {
            0.0
        };
        (ppl, se)
    }
}

/// What one scored token contributes when compared with the base.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenComparison {
    pub nll: f64,
    pub nll_base: f64,
    pub kld: f64,
    /// p(token) − p_base(token).
    pub p_diff: f32,
    pub same_top: bool,
}

/// Compares this model's `logits` for one position with the base's stored row, for the
/// right token `token`, in llama-perplexity's arithmetic (f32 per token, f64 sums).
pub fn compare_with_base(logits: &[f32], base: &BaseRow, token: u32) -> TokenComparison {
    let mut max_logit = logits[0];
    let mut imax = 0;
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max_logit {
            max_logit = l;
            imax = i;
        }
    }
    let sum_exp: f64 = logits
        .iter()
        .map(|&l| f64::from((l - max_logit).exp()))
        .sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let tok = token as usize;
    let nll = max_logit + log_sum_exp - logits[tok];
    let nll_base = -base.log_prob(tok);

    let log_norm = max_logit + log_sum_exp;
    let mut kld = 0.0f64;
    let mut imax_base = 0;
    let mut best_base = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        let log_p_base = base.log_prob(i);
        if i == 0 || log_p_base > best_base {
            best_base = log_p_base;
            imax_base = i;
        }
        // Tokens the base gives less than e^-16 add nothing worth the exp.
        if log_p_base > -16.0 {
            let p_base = log_p_base.exp();
            kld += f64::from(p_base * (log_p_base - l + log_norm));
        }
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    TokenComparison {
        nll: f64::from(nll),
        nll_base: f64::from(nll_base),
        kld,
        p_diff,
        same_top: imax == imax_base,
    }
}

/// Sums over the compared tokens, and each token's KLD and Δp for the percentiles.
#[derive(Clone, Debug, Default)]
pub struct ComparisonSums {
    nll: f64,
    nll_sq: f64,
    nll_base: f64,
    nll_base_sq: f64,
    nll_nll_base: f64,
    kld: f64,
    kld_sq: f64,
    p_diff: f64,
    p_diff_sq: f64,
    p_diff_4: f64,
    n_same_top: usize,
    count: usize,
    kld_values: Vec<f32>,
    p_diff_values: Vec<f32>,
}

/// A value and its standard error.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub se: f64,
}

/// Percentiles of the per-token KL divergence, named as in the `--json` output.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct KldSummary {
    pub mean: f64,
    pub se: f64,
    pub max: f64,
    pub p99_9: f64,
    pub p99: f64,
    pub p95: f64,
    pub p90: f64,
    pub median: f64,
    pub p10: f64,
    pub p5: f64,
    pub p1: f64,
    pub p0_1: f64,
    pub min: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct DeltaP {
    pub mean: f64,
    pub mean_se: f64,
    pub rms: f64,
    pub rms_se: f64,
    pub max: f64,
    pub median: f64,
    pub min: f64,
}

/// Everything a comparison with a base reports.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ComparisonReport {
    pub ppl: Estimate,
    pub ppl_base: Estimate,
    /// Correlation of the two models' per-token NLL.
    pub nll_correlation: f64,
    /// ln(PPL / PPL_base).
    pub ln_ppl_ratio: Estimate,
    pub ppl_ratio: Estimate,
    pub delta_ppl: Estimate,
    pub kld: KldSummary,
    pub delta_p: DeltaP,
    pub same_top_p: Estimate,
    pub count: usize,
}

/// Mean and standard error of the mean from a sum and a sum of squares; 0 for the error
/// with 10 values or fewer, as llama-perplexity.
fn mean_and_uncertainty(sum: f64, sum_sq: f64, count: usize) -> Estimate {
    if count < 1 {
        return Estimate {
            value: 0.0,
            se: 0.0,
        };
    }
    let n = count as f64;
    let value = sum / n;
    let var = sum_sq / n - value * value;
    let se = if var > 0.0 && count > 10 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Estimate { value, se }
}

fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// Linear interpolation between the two nearest ranks, in f32 as llama-perplexity.
fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return sorted[0];
    }
    if fraction >= 1.0 {
        return sorted[sorted.len() - 1];
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let ip = p as usize;
    let frac = p - ip as f32;
    (1.0 - frac) * sorted[ip] + frac * sorted[(ip + 1).min(sorted.len() - 1)]
}

fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n.is_multiple_of(2) {
        0.5 * (sorted[n / 2] + sorted[n / 2 - 1])
    } else {
        sorted[n / 2]
    }
}

impl ComparisonSums {
    pub fn add(&mut self, c: &TokenComparison) {
        self.nll += c.nll;
        self.nll_sq += c.nll * c.nll;
        self.nll_base += c.nll_base;
        self.nll_base_sq += c.nll_base * c.nll_base;
        self.nll_nll_base += c.nll * c.nll_base;
        self.kld += c.kld;
        self.kld_sq += c.kld * c.kld;
        let p_diff = f64::from(c.p_diff);
        self.p_diff += p_diff;
        let p_diff_sq = p_diff * p_diff;
        self.p_diff_sq += p_diff_sq;
        self.p_diff_4 += p_diff_sq * p_diff_sq;
        self.n_same_top += usize::from(c.same_top);
        self.count += 1;
        self.kld_values.push(c.kld as f32);
        self.p_diff_values.push(c.p_diff);
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The report so far; `None` before any token.
    pub fn report(&self) -> Option<ComparisonReport> {
        if self.count == 0 {
            return None;
        }
        let count = self.count;
        let log_ppl = mean_and_uncertainty(self.nll, self.nll_sq, count);
        let log_ppl_base = mean_and_uncertainty(self.nll_base, self.nll_base_sq, count);
        let cov = covariance(self.nll, self.nll_base, self.nll_nll_base, count);
        let ppl = Estimate {
            value: log_ppl.value.exp(),
            se: log_ppl.value.exp() * log_ppl.se,
        };
        let ppl_base = Estimate {
            value: log_ppl_base.value.exp(),
            se: log_ppl_base.value.exp() * log_ppl_base.se,
        };
        let ln_ratio = Estimate {
            value: log_ppl.value - log_ppl_base.value,
            se: (log_ppl.se * log_ppl.se + log_ppl_base.se * log_ppl_base.se - 2.0 * cov)
                .max(0.0)
                .sqrt(),
        };
        let ppl_cov = ppl.value * ppl_base.value * cov;
        let delta_ppl = Estimate {
            value: ppl.value - ppl_base.value,
            se: (ppl.se * ppl.se + ppl_base.se * ppl_base.se - 2.0 * ppl_cov)
                .max(0.0)
                .sqrt(),
        };
        let correlation = if log_ppl.se > 0.0 && log_ppl_base.se > 0.0 {
            cov / (log_ppl.se * log_ppl_base.se)
        } else {
            0.0
        };

        let mut kld_sorted = self.kld_values.clone();
        kld_sorted.sort_by(f32::total_cmp);
        let mut p_diff_sorted = self.p_diff_values.clone();
        p_diff_sorted.sort_by(f32::total_cmp);
        let kl = mean_and_uncertainty(self.kld, self.kld_sq, count);
        let at = |f: f32| f64::from(percentile(&kld_sorted, f));
        let kld = KldSummary {
            mean: kl.value,
            se: kl.se,
            max: at(1.0),
            p99_9: at(0.999),
            p99: at(0.99),
            p95: at(0.95),
            p90: at(0.90),
            median: f64::from(median(&kld_sorted)),
            p10: at(0.10),
            p5: at(0.05),
            p1: at(0.01),
            p0_1: at(0.001),
            min: at(0.0),
        };
        let p_diff = mean_and_uncertainty(self.p_diff, self.p_diff_sq, count);
        let p_diff_mse = mean_and_uncertainty(self.p_diff_sq, self.p_diff_4, count);
        let rms = p_diff_mse.value.sqrt();
        let delta_p = DeltaP {
            mean: p_diff.value,
            mean_se: p_diff.se,
            rms,
            rms_se: if rms > 0.0 {
                0.5 / rms * p_diff_mse.se
            } else {
                0.0
            },
            max: f64::from(percentile(&p_diff_sorted, 1.0)),
            median: f64::from(median(&p_diff_sorted)),
            min: f64::from(percentile(&p_diff_sorted, 0.0)),
        };
        let same = self.n_same_top as f64 / count as f64;
        let same_top_p = Estimate {
            value: same,
            se: if count > 1 {
                (same * (1.0 - same) / (count - 1) as f64).sqrt()
            } else {
                0.0
            },
        };
        Some(ComparisonReport {
            ppl,
            ppl_base,
            nll_correlation: correlation,
            ln_ppl_ratio: ln_ratio,
            ppl_ratio: Estimate {
                value: ln_ratio.value.exp(),
                se: ln_ratio.value.exp() * ln_ratio.se,
            },
            delta_ppl,
            kld,
            delta_p,
            same_top_p,
            count,
        })
    }
}
