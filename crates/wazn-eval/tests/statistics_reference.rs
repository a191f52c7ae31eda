//! Perplexity and KL-divergence statistics on fixed logit arrays against numpy
//! (tests/data/statistics_reference.json, written by tests/gen_statistics_reference.py
//! from the same LCG-made logits): the stored 16-bit base rows bit for bit, every
//! statistic to a relative 1e-5 (f64 sums in another order).

use serde::Deserialize;
use wazn_eval::logits_file::BaseRow;
use wazn_eval::statistics::{compare_with_base, ComparisonSums, Estimate, NllSums};

#[derive(Deserialize)]
struct Reference {
    n_vocab: usize,
    n_tokens: usize,
    base_rows_sha256: String,
    base_scales: Vec<f32>,
    base_min_log_probs: Vec<f32>,
    ppl: f64,
    ppl_se: f64,
    comparison: Comparison,
}

#[derive(Deserialize)]
struct Comparison {
    ppl: [f64; 2],
    ppl_base: [f64; 2],
    ln_ppl_ratio: [f64; 2],
    delta_ppl: [f64; 2],
    kld: [f64; 2],
    kld_max: f64,
    kld_p99: f64,
    kld_p90: f64,
    kld_median: f64,
    kld_p10: f64,
    kld_min: f64,
    delta_p: [f64; 2],
    delta_p_rms: [f64; 2],
    same_top_p: [f64; 2],
}

/// The script's generator: a 32-bit LCG giving 24-bit fractions, exact in f32.
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 / 16_777_216.0
    }
}

fn logits_arrays(n_tokens: usize, n_vocab: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<u32>) {
    let (mut base_stream, mut noise_stream, mut token_stream) = (Lcg(1), Lcg(2), Lcg(3));
    let (mut base, mut other, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..n_tokens {
        let sharp = if t % 5 == 0 { 8.0 } else { 1.0 };
        let (mut b_row, mut o_row) = (Vec::new(), Vec::new());
        for _ in 0..n_vocab {
            let b = (base_stream.next() * 6.0 - 3.0) * sharp;
            b_row.push(b);
            o_row.push(b + (noise_stream.next() * 2.0 - 1.0));
        }
        base.push(b_row);
        other.push(o_row);
        tokens.push((token_stream.next() * n_vocab as f32) as u32 % n_vocab as u32);
    }
    (base, other, tokens)
}

fn close(what: &str, got: f64, want: f64) {
    let tolerance = 1e-5 * want.abs().max(1e-3);
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} vs numpy {want}"
    );
}

fn close_estimate(what: &str, got: Estimate, want: [f64; 2]) {
    close(what, got.value, want[0]);
    close(&format!("{what} (standard error)"), got.se, want[1]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn statistics_match_numpy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/statistics_reference.json"
    );
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (base, other, tokens) = logits_arrays(reference.n_tokens, reference.n_vocab);

    // The base rows, as stored.
    let mut rows = Vec::new();
    let mut q_bytes = Vec::new();
    let mut plain = NllSums::default();
    for (t, (row, &token)) in base.iter().zip(&tokens).enumerate() {
        let mut stored = BaseRow::default();
        BaseRow::quantize(row, token, &mut stored);
        if let (Some(&scale), Some(&min)) = (
            reference.base_scales.get(t),
            reference.base_min_log_probs.get(t),
        ) {
            assert_eq!(stored.scale(), scale, "row {t} scale");
            assert!(
                (stored.min_log_prob() - min).abs() <= 1e-6 * min.abs(),
                "row {t} minimum"
            );
        }
        q_bytes.extend(stored.values().iter().flat_map(|q| q.to_le_bytes()));
        rows.push(stored);
        // Perplexity of the base alone.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
        plain.add(-(f64::from(row[token as usize] - max) - sum.ln()));
    }
    assert_eq!(
        sha256_hex(&q_bytes),
        reference.base_rows_sha256,
        "base rows"
    );
    let (ppl, ppl_se) = plain.ppl_with_se();
    close("ppl", ppl, reference.ppl);
    close("ppl se", ppl_se, reference.ppl_se);

    // The other model against the base.
    let mut sums = ComparisonSums::default();
    for ((row, stored), &token) in other.iter().zip(&rows).zip(&tokens) {
        sums.add(&compare_with_base(row, stored, token));
    }
    let report = sums.report().expect("tokens were compared");
    let want = &reference.comparison;
    close_estimate("ppl", report.ppl, want.ppl);
    close_estimate("ppl_base", report.ppl_base, want.ppl_base);
    close_estimate("ln_ppl_ratio", report.ln_ppl_ratio, want.ln_ppl_ratio);
    close_estimate("delta_ppl", report.delta_ppl, want.delta_ppl);
    close("kld mean", report.kld.mean, want.kld[0]);
    close("kld se", report.kld.se, want.kld[1]);
    close("kld max", report.kld.max, want.kld_max);
    close("kld p99", report.kld.p99, want.kld_p99);
    close("kld p90", report.kld.p90, want.kld_p90);
    close("kld median", report.kld.median, want.kld_median);
    close("kld p10", report.kld.p10, want.kld_p10);
    close("kld min", report.kld.min, want.kld_min);
    close("delta_p mean", report.delta_p.mean, want.delta_p[0]);
    close("delta_p se", report.delta_p.mean_se, want.delta_p[1]);
    close("delta_p rms", report.delta_p.rms, want.delta_p_rms[0]);
    close("delta_p rms se", report.delta_p.rms_se, want.delta_p_rms[1]);
    close_estimate("same_top_p", report.same_top_p, want.same_top_p);
}
