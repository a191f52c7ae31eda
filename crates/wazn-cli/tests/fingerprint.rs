//! `wazn fingerprint` end to end: copies of the default model made by `wazn quantize` are
//! `derived`, the tiny independent folders of wazn-fingerprint's tests are `independent`,
//! models with no shared vocabulary are `inconclusive` with a reason, a damaged `.wfp` is one
//! clear error line; and, with the pairs of scripts/reference/fingerprint_pairs.py (ignored
//! unless they were built), every verdict and per-layer number against the reference.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, wazn};
use serde_json::Value;

fn scratch_dir() -> PathBuf {
    common::scratch_dir("fingerprint")
}

fn default_model() -> PathBuf {
    common::default_model().expect("the default model is missing: run scripts/fetch-default-model")
}

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wazn-fingerprint/tests/data/fingerprint")
        .join(name)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn compare_json(a: &Path, b: &Path) -> Value {
    let (code, stdout, stderr) = wazn(&["fingerprint", "compare", "--json", "-t", "2", s(a), s(b)]);
    assert_eq!(code, 0, "compare {a:?} {b:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The requantized copy of the default model, made once.
fn quantized(file_type: &str) -> PathBuf {
    let out = scratch_dir().join(format!("default-{file_type}.gguf"));
    if !out.exists() {
        let tmp = out.with_extension("part");
        let (code, _, stderr) = wazn(&[
            "quantize",
            "--allow-requantize",
            s(&default_model()),
            s(&tmp),
            file_type,
        ]);
        assert_eq!(code, 0, "{stderr}");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

#[test]
fn requantized_copies_are_derived() {
    for file_type in ["Q8_0", "Q4_K_M"] {
        let out = compare_json(&default_model(), &quantized(file_type));
        assert_eq!(out["verdict"], "derived", "{file_type}: {out}");
        assert!(out["score"].as_f64().unwrap() > 0.9, "{file_type}: {out}");
        assert!(out["z"].as_f64().unwrap() > 10.0, "{file_type}: {out}");
        assert_eq!(out["per_layer"].as_array().unwrap().len(), 30);
        assert_eq!(out["null"]["n"], 8);
        // The declared lineage is shown beside the measurement.
        assert!(out["declared"]["a"]["general.name"].is_string(), "{out}");
    }
}

#[test]
fn independent_models_are_independent() {
    let out = compare_json(&tiny("independent_1"), &tiny("independent_2"));
    assert_eq!(out["verdict"], "independent", "{out}");
    let out = compare_json(&tiny("base"), &tiny("permuted"));
    assert_eq!(out["verdict"], "derived", "{out}");
    // The parameter cosine is blind to the permutation.
    assert!(
        out["cosine_baseline"].as_f64().unwrap().abs() < 0.2,
        "{out}"
    );
}

#[test]
fn no_shared_vocabulary_is_inconclusive_with_a_reason() {
    let out = compare_json(&default_model(), &tiny("base"));
    assert_eq!(out["verdict"], "inconclusive", "{out}");
    assert!(out["score"].is_null());
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("no shared vocabulary"),
        "{out}"
    );
    let (code, stdout, _) = wazn(&[
        "fingerprint",
        "compare",
        s(&default_model()),
        s(&tiny("base")),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("verdict: inconclusive"), "{stdout}");
}

#[test]
fn fingerprints_extract_compare_and_identify() {
    let dir = scratch_dir().join("db");
    std::fs::create_dir_all(&dir).unwrap();
    let base_wfp = dir.join("tiny-base.wfp");
    let (code, _, stderr) = wazn(&[
        "fingerprint",
        "extract",
        "-m",
        s(&tiny("base")),
        "-o",
        s(&base_wfp),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let other_wfp = dir.join("tiny-independent.wfp");
    let (code, _, stderr) = wazn(&[
        "fingerprint",
        "extract",
        "-m",
        s(&tiny("independent_1")),
        "-o",
        s(&other_wfp),
    ]);
    assert_eq!(code, 0, "{stderr}");

    let out = compare_json(&base_wfp, &tiny("noisy"));
    assert_eq!(out["verdict"], "derived", "{out}");

    let (code, stdout, stderr) = wazn(&[
        "fingerprint",
        "identify",
        "--json",
        s(&tiny("dropped")),
        "--db",
        s(&dir),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let ranking = out["ranking"].as_array().unwrap();
    assert!(
        ranking[0]["fingerprint"]
            .as_str()
            .unwrap()
            .ends_with("tiny-base.wfp"),
        "{out}"
    );
    assert_eq!(ranking[0]["verdict"], "derived", "{out}");
    assert_eq!(ranking[1]["verdict"], "independent", "{out}");

    let bytes = std::fs::read(&base_wfp).unwrap();
    let truncated = scratch_dir().join("truncated.wfp");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails_with(
        &["fingerprint", "compare", s(&truncated), s(&tiny("base"))],
        "truncated",
    );
}

#[test]
fn bad_models_are_one_clear_line() {
    let dir = scratch_dir().join("gpt2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    std::fs::copy(
        tiny("base").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        tiny("base").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    assert_fails_with(
        &["fingerprint", "compare", s(&dir), s(&tiny("base"))],
        "gpt2",
    );
    assert_fails_with(
        &["fingerprint", "extract", "-m", "/nonexistent/model.gguf"],
        "nonexistent",
    );
}

/// Where scripts/reference/fingerprint_pairs.py leaves the default model's pairs.
fn default_pairs() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/wazn/fingerprint-pairs")
}

#[test]
#[ignore = "needs the pairs of scripts/reference/fingerprint_pairs.py default (~10 minutes)"]
fn default_model_pairs_match_the_reference() {
    let dir = default_pairs();
    let text = std::fs::read_to_string(dir.join("reference.json"))
        .expect("run scripts/reference/fingerprint_pairs.py default first");
    let reference: Value = serde_json::from_str(&text).unwrap();
    for pair in reference["pairs"].as_array().unwrap() {
        let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
        let out = compare_json(&dir.join(a), &dir.join(b));
        let want = if b.starts_with("independent") {
            "independent"
        } else {
            "derived"
        };
        assert_eq!(out["verdict"], want, "{a} vs {b}: {}", out["score"]);
        let got = out["per_layer"].as_array().unwrap();
        let wanted = pair["per_layer"].as_array().unwrap();
        assert_eq!(got.len(), wanted.len(), "{a} vs {b}");
        // Only derived pairs have one right alignment to agree on.
        if want == "derived" {
            for (g, w) in got.iter().zip(wanted) {
                assert_eq!(
                    (g["a"].clone(), g["b"].clone()),
                    (w["a"].clone(), w["b"].clone())
                );
                for key in ["wq", "wk", "wq_wk"] {
                    let (x, y) = (g[key].as_f64().unwrap(), w[key].as_f64().unwrap());
                    assert!(
                        (x - y).abs() <= 1e-4,
                        "{a} vs {b} layer {} {key}: {x} vs {y}",
                        g["a"]
                    );
                }
            }
            let (x, y) = (
                out["score"].as_f64().unwrap(),
                pair["score"].as_f64().unwrap(),
            );
            assert!((x - y).abs() <= 1e-4, "{a} vs {b} score: {x} vs {y}");
        }
        // HuRef's terms need no alignment: every pair is held to the reference.
        let (x, y) = (
            out["invariants"]["score"].as_f64().unwrap(),
            pair["invariants"]["score"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-4,
            "{a} vs {b} invariant terms: {x} vs {y}"
        );
        eprintln!(
            "{a} vs {b}: score {:.4} (reference {:.4}), z {:.1}, cosine {}, {}",
            out["score"].as_f64().unwrap(),
            pair["score"].as_f64().unwrap(),
            out["z"].as_f64().unwrap(),
            out["cosine_baseline"],
            out["verdict"]
        );
    }
}
