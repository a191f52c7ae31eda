//! Statistics of counts: the Wilson score interval of a proportion, the exact two-sided
//! binomial test, and the exact McNemar test of paired outcomes, computed as
//! statsmodels and scipy compute them (`proportion_confint(method="wilson")`,
//! `binomtest(k, n, p).pvalue`, `mcnemar(table, exact=True)`), so that a figure can be
//! checked with either.

/// The standard normal quantile of 0.975: the z of a two-sided 95 % interval
/// (`scipy.stats.norm.ppf(0.975)`).
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `k` successes in `n` trials at normal quantile `z`.
/// Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at k = 0
/// or k = n, which is where refusal rates often sit. `n = 0` gives the whole range.
pub fn wilson_interval(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n) as f64;
    let n = n as f64;
    let z2 = z * z;
    let denominator = n + z2;
    let center = (k + z2 / 2.0) / denominator;
    let half = z / denominator * (k * (n - k) / n + z2 / 4.0).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The 95 % Wilson interval.
pub fn wilson_95(k: u64, n: u64) -> (f64, f64) {
    wilson_interval(k, n, Z_95)
}

/// `ln P(X = i)` for X ~ Binomial(n, p), for every i in 0..=n. Each binomial
/// coefficient is built from the previous one, so the cost is linear in n and nothing
/// overflows.
fn binomial_log_pmf(n: u64, p: f64) -> Vec<f64> {
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let mut ln_choose = 0.0;
    (0..=n)
        .map(|i| {
            if i > 0 {
                ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            let i_f = i as f64;
            let n_f = n as f64;
            // 0 · ln 0 is 0 here: p = 0 or 1 puts all mass on one end.
            let from_p = if i == 0 { 0.0 } else { i_f * ln_p };
            let from_q = if i == n { 0.0 } else { (n_f - i_f) * ln_q };
            ln_choose + from_p + from_q
        })
        .collect()
}

/// The exact two-sided p-value of `k` successes in `n` trials under success
/// probability `p`: the probability of every outcome no more likely than the one seen
/// (scipy's `binomtest`, with its relative tolerance of 1e-7 for ties in probability).
pub fn binomial_two_sided(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let k = k.min(n);
    let log_pmf = binomial_log_pmf(n, p);
    let threshold = log_pmf[k as usize] + (1.0 + 1e-7f64).ln();
    let total: f64 = log_pmf
        .iter()
        .filter(|&&lp| lp <= threshold)
        .map(|lp| lp.exp())
        .sum();
    total.min(1.0)
}

/// The exact McNemar p-value of paired binary outcomes with `b` pairs that changed one
/// way and `c` the other (the discordant cells of the 2×2 table; the concordant pairs
/// carry no information on the change): under no change each discordant pair goes
/// either way with probability ½, and the p-value is the two-sided binomial test of
/// min(b, c) in b + c trials (statsmodels' `mcnemar(exact=True)`).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    binomial_two_sided(b.min(c), b + c, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_do_not_break() {
        assert_eq!(wilson_95(0, 0), (0.0, 1.0));
        assert_eq!(wilson_95(5, 5).1, 1.0);
        assert_eq!(wilson_95(0, 5).0, 0.0);
        assert_eq!(binomial_two_sided(0, 0, 0.5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!((binomial_two_sided(0, 4, 0.0) - 1.0).abs() < 1e-12);
        assert!(binomial_two_sided(1, 4, 0.0) < 1e-12);
        // Symmetric under swapping the two directions of change.
        assert_eq!(mcnemar_exact(9, 3), mcnemar_exact(3, 9));
    }

    #[test]
    fn large_counts_stay_finite() {
        let p = mcnemar_exact(5000, 5200);
        assert!(p.is_finite() && p > 0.0 && p < 1.0, "{p}");
        assert!(mcnemar_exact(0, 3000) <= 1e-300);
    }
}
