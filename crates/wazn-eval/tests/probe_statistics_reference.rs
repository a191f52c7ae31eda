//! The probe's statistics against scipy and statsmodels (tests/data/
//! probe_statistics_reference.json, written by tests/gen_probe_statistics_reference.py):
//! Wilson intervals, exact binomial and exact McNemar p-values, each to 1e-12 relative.

use serde::Deserialize;
use wazn_eval::binomial::{binomial_two_sided, mcnemar_exact, wilson_95};

#[derive(Deserialize)]
struct Reference {
    wilson: Vec<Wilson>,
    binomial_two_sided: Vec<Binomial>,
    mcnemar_exact: Vec<McNemar>,
}

#[derive(Deserialize)]
struct Wilson {
    k: u64,
    n: u64,
    lo: f64,
    hi: f64,
}

#[derive(Deserialize)]
struct Binomial {
    k: u64,
    n: u64,
    p: f64,
    p_value: f64,
}

#[derive(Deserialize)]
struct McNemar {
    b: u64,
    c: u64,
    p_value: f64,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/probe_statistics_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-12 * theirs.abs().max(1e-300) || ours == theirs
}

#[test]
fn wilson_intervals_match_statsmodels() {
    let reference = reference();
    assert!(reference.wilson.len() >= 10);
    for r in &reference.wilson {
        let (lo, hi) = wilson_95(r.k, r.n);
        assert!(
            (lo - r.lo).abs() < 1e-12 && (hi - r.hi).abs() < 1e-12,
            "{}/{}: ({lo}, {hi}) vs statsmodels ({}, {})",
            r.k,
            r.n,
            r.lo,
            r.hi
        );
    }
}

#[test]
fn binomial_p_values_match_scipy() {
    let reference = reference();
    for r in &reference.binomial_two_sided {
        let p = binomial_two_sided(r.k, r.n, r.p);
        assert!(
            close(p, r.p_value),
            "{}/{} at {}: {p} vs scipy {}",
            r.k,
            r.n,
            r.p,
            r.p_value
        );
    }
}

#[test]
fn mcnemar_p_values_match_statsmodels() {
    let reference = reference();
    assert!(reference.mcnemar_exact.len() >= 8);
    for r in &reference.mcnemar_exact {
        let p = mcnemar_exact(r.b, r.c);
        assert!(
            close(p, r.p_value),
            "b={} c={}: {p} vs statsmodels {}",
            r.b,
            r.c,
            r.p_value
        );
    }
}
