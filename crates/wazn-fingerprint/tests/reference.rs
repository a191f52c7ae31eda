//! wazn's fingerprint statistics against scripts/reference/fingerprint_pairs.py (numpy,
//! float64, dense Gram matrices, scipy's linear assignment) on tiny random Llama folders (a
//! base; copies permuted, noisy, pruned, with norms absorbed and Wq/Wk rescaled, with its
//! vocabulary extended; independent inits):
//! the same alignment, every per-layer CKA within 1e-4, the right verdict for each pair, and
//! the invariances exactly.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wazn_fingerprint::{
    null_distribution, score_pair, verdict, write_wfp, AttentionLayer, Matrix, ModelWeights,
    NoProgress, PairOutcome, PairScore, RandomModel, Verdict, WeightSource, WfpFile, WfpStorage,
    DEFAULT_NULL_MODELS,
};

const TOLERANCE: f64 = 1e-4;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fingerprint")
}

fn model(name: &str) -> ModelWeights {
    ModelWeights::open(&data().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn scored(a: &dyn WeightSource, b: &dyn WeightSource) -> PairScore {
    match score_pair(a, b, None, 2, &NoProgress).unwrap() {
        PairOutcome::Scored(s) => s,
        other => panic!("not scored: {other:?}"),
    }
}

fn reference() -> Vec<Value> {
    let text = std::fs::read_to_string(data().join("reference.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["pairs"].as_array().unwrap().clone()
}

fn close(what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no reference value"));
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{what}: wazn {got}, reference {want}"
    );
}

#[test]
fn statistics_match_the_reference() {
    for pair in reference() {
        let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
        let s = scored(&model(a), &model(b));
        let label = format!("{a} vs {b}");
        assert_eq!(
            s.shared_tokens as u64,
            pair["shared_tokens"].as_u64().unwrap(),
            "{label}"
        );
        let dims = |key: &str| -> Vec<usize> {
            pair[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        };
        assert_eq!(
            s.alignment.a_dims,
            dims("a_dims"),
            "{label}: A's dimensions"
        );
        // Independent pairs have no true alignment: near-ties may be broken differently by two
        // exact solvers on float32 vs float64 cosines; derived pairs must agree exactly.
        if !b.starts_with("independent") {
            assert_eq!(
                s.alignment.b_dims,
                dims("b_dims"),
                "{label}: B's dimensions"
            );
            let signs: Vec<f32> = pair["b_signs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(s.alignment.b_signs, signs, "{label}: signs");
        }
        let layers = pair["per_layer"].as_array().unwrap();
        assert_eq!(s.per_layer.len(), layers.len(), "{label}");
        for (got, want) in s.per_layer.iter().zip(layers) {
            let at = format!("{label}, layers {}→{}", got.a, got.b);
            assert_eq!(got.a as u64, want["a"].as_u64().unwrap(), "{at}");
            assert_eq!(got.b as u64, want["b"].as_u64().unwrap(), "{at}");
            if b.starts_with("independent") && s.alignment.b_dims != dims("b_dims") {
                continue;
            }
            close(&format!("{at} Wq"), got.wq, &want["wq"]);
            close(&format!("{at} Wk"), got.wk, &want["wk"]);
            close(&format!("{at} WqWkᵀ"), got.wq_wk, &want["wq_wk"]);
            match (got.parameter_cosine, &want["parameter_cosine"]) {
                (Some(c), w) => close(&format!("{at} cosine"), c, w),
                (None, w) => assert!(w.is_null(), "{at}: cosine"),
            }
        }
        if !b.starts_with("independent") || s.alignment.b_dims == dims("b_dims") {
            close(&format!("{label} score"), s.score, &pair["score"]);
        }
        // HuRef's terms need no alignment, so every pair is held to the reference.
        let want = &pair["invariants"];
        let got = s
            .invariants
            .as_ref()
            .expect("both models have invariant terms");
        assert_eq!(
            got.shared_tokens as u64,
            want["shared_tokens"].as_u64().unwrap(),
            "{label}"
        );
        close(&format!("{label} invariants"), got.score, &want["score"]);
        let layers = want["per_layer"].as_array().unwrap();
        assert_eq!(
            got.per_layer.len(),
            layers.len(),
            "{label} invariant layers"
        );
        for (g, w) in got.per_layer.iter().zip(layers) {
            let at = format!("{label}, invariant terms of layers {}→{}", g.a, g.b);
            assert_eq!(
                (g.a as u64, g.b as u64),
                (w["a"].as_u64().unwrap(), w["b"].as_u64().unwrap()),
                "{at}"
            );
            close(&format!("{at}: attention"), g.attention, &w["attention"]);
            let vo = g
                .value_output
                .expect("a Llama layer has a value/output term");
            close(&format!("{at}: value/output"), vo, &w["value_output"]);
        }
    }
}

#[test]
fn every_pair_gets_the_right_verdict() {
    let base = model("base");
    let cases = [
        ("base", "hidden_permuted", Verdict::Derived),
        ("base", "permuted", Verdict::Derived),
        ("base", "noisy", Verdict::Derived),
        ("base", "dropped", Verdict::Derived),
        ("base", "absorbed", Verdict::Derived),
        ("base", "extended", Verdict::Derived),
        ("base", "independent_1", Verdict::Independent),
        ("base", "independent_2", Verdict::Independent),
        ("independent_1", "independent_2", Verdict::Independent),
    ];
    for (a, b, want) in cases {
        let (ma, mb) = (if a == "base" { None } else { Some(model(a)) }, model(b));
        let ma: &dyn WeightSource = ma.as_ref().map_or(&base, |m| m);
        let s = scored(ma, &mb);
        let null = null_distribution(&[ma, &mb], DEFAULT_NULL_MODELS, &[], 2, &NoProgress).unwrap();
        let z = null.z(s.score);
        assert_eq!(
            verdict(s.score, z),
            want,
            "{a} vs {b}: score {}, z {z}",
            s.score
        );
    }
}

#[test]
fn hidden_permutations_and_sign_flips_change_nothing() {
    let base = model("base");
    let itself = scored(&base, &base);
    let moved = scored(&base, &model("hidden_permuted"));
    assert!(moved.alignment.sign_flips() > 0);
    for (x, y) in itself.per_layer.iter().zip(&moved.per_layer) {
        // Once aligned, B's matrices are A's to the bit: every number is the same.
        assert_eq!((x.wq, x.wk, x.wq_wk), (y.wq, y.wk, y.wq_wk));
    }
    assert_eq!(itself.score, moved.score);
    // HuRef's terms are invariant by construction, with no alignment: equal to rounding.
    let (own, other) = (
        itself.invariants.as_ref().unwrap(),
        moved.invariants.as_ref().unwrap(),
    );
    assert!(
        (own.score - other.score).abs() < 1e-9,
        "{} vs {}",
        own.score,
        other.score
    );
    // The plain cosine does not see it: that is what the alignment is for.
    assert!(
        moved.cosine_baseline.unwrap().abs() < 0.2,
        "{:?}",
        moved.cosine_baseline
    );

    // Permuted heads reorder the rows of Wq and Wk: the same sums in another order.
    let heads = scored(&base, &model("permuted"));
    for (x, y) in itself.per_layer.iter().zip(&heads.per_layer) {
        for (p, q) in [(x.wq, y.wq), (x.wk, y.wk), (x.wq_wk, y.wq_wk)] {
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fingerprint")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_wfp_file_reads_back_and_refuses_damage() {
    let base = model("base");
    let path = scratch("wfp").join("base.wfp");
    write_wfp(&base, &path, WfpStorage::Q8_0, &NoProgress).unwrap();
    let saved = WfpFile::open(&path).unwrap();
    assert_eq!(saved.facts(), base.facts());
    let s = scored(&base, &saved);
    // Q8_0 blocks round each value by at most half a step of 1/127 of its block's largest;
    // over a matrix that moves a CKA by far less than 1e-4.
    assert!((s.score - 1.0).abs() < 1e-4, "{}", s.score);
    let noisy = model("noisy");
    let (direct, through_wfp) = (scored(&base, &noisy), scored(&saved, &noisy));
    for (x, y) in direct.per_layer.iter().zip(&through_wfp.per_layer) {
        for (p, q) in [(x.wq, y.wq), (x.wk, y.wk), (x.wq_wk, y.wq_wk)] {
            assert!(
                (p - q).abs() < 1e-4,
                "layer {}: {p} vs {q} through the .wfp",
                x.a
            );
        }
    }
    // f16 storage rounds each value by at most 2⁻¹¹ of itself.
    let f16_path = scratch("wfp").join("base-f16.wfp");
    write_wfp(&base, &f16_path, WfpStorage::F16, &NoProgress).unwrap();
    let f16_size = std::fs::metadata(&f16_path).unwrap().len();
    let q8_size = std::fs::metadata(&path).unwrap().len();
    assert!(q8_size < f16_size, "{q8_size} vs {f16_size} bytes");
    let in_f16 = scored(&WfpFile::open(&f16_path).unwrap(), &noisy);
    assert!(
        (in_f16.score - direct.score).abs() < 1e-5,
        "{}",
        in_f16.score
    );
    // The invariant terms are kept in f32, as computed.
    let (saved_sketch, base_sketch) = (saved.sketch().unwrap(), base.sketch().unwrap());
    assert_eq!(
        saved.invariants(&saved_sketch).unwrap(),
        base.invariants(&base_sketch).unwrap()
    );
    let terms = s
        .invariants
        .as_ref()
        .expect("the .wfp keeps the invariant terms");
    assert!((terms.score - 1.0).abs() < 1e-9, "{}", terms.score);

    let bytes = std::fs::read(&path).unwrap();
    let truncated = path.with_file_name("truncated.wfp");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = WfpFile::open(&truncated).err().unwrap().to_string();
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&truncated, &bytes[..10]).unwrap();
    let err = WfpFile::open(&truncated).err().unwrap().to_string();
    assert!(err.contains("not a wazn fingerprint"), "{err}");

    let mut corrupt = bytes.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let corrupt_path = path.with_file_name("corrupt.wfp");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    let err = WfpFile::open(&corrupt_path).err().unwrap().to_string();
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn a_version_1_wfp_without_invariant_terms_still_reads() {
    // A source with no invariant terms writes what version 1 wrote but for the version and
    // three header fields at their defaults; relabel it and recompute its checksum.
    let base = model("base");
    let random = RandomModel::new(base.facts(), base.sketch().unwrap().hashes, 9);
    let path = scratch("wfp").join("version1.wfp");
    write_wfp(&random, &path, WfpStorage::F16, &NoProgress).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let body = bytes.len() - 8;
    let mut checksum: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &bytes[..body] {
        checksum = (checksum ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    bytes[body..].copy_from_slice(&checksum.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let old = WfpFile::open(&path).unwrap();
    assert!(old.invariants(&old.sketch().unwrap()).unwrap().is_none());
    assert_eq!(
        old.layer(1).unwrap(),
        random.layer(1).map(|l| rounded(&l)).unwrap()
    );
}

/// A layer as f16 storage gives it back.
fn rounded(layer: &AttentionLayer) -> AttentionLayer {
    let round = |m: &Matrix| Matrix {
        rows: m.rows,
        cols: m.cols,
        data: m
            .data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect(),
    };
    AttentionLayer {
        wq: round(&layer.wq),
        wk: round(&layer.wk),
        form_query: layer.form_query.as_ref().map(round),
    }
}

/// A copy of the base folder with its config or tokenizer rewritten.
fn altered_copy(name: &str, edit: impl Fn(&Path)) -> PathBuf {
    let dir = scratch(name);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(data().join("base").join(file), dir.join(file)).unwrap();
    }
    edit(&dir);
    dir
}

#[test]
fn no_shared_vocabulary_is_said_not_guessed() {
    let other = altered_copy("renamed_vocabulary", |dir| {
        let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
        std::fs::write(dir.join("tokenizer.json"), text.replace("\"tok", "\"other")).unwrap();
    });
    let outcome = score_pair(
        &model("base"),
        &ModelWeights::open(&other).unwrap(),
        None,
        1,
        &NoProgress,
    )
    .unwrap();
    assert!(
        matches!(
            outcome,
            PairOutcome::NoSharedVocabulary { shared_tokens: 0 }
        ),
        "{outcome:?}"
    );
}

#[test]
fn an_unsupported_architecture_is_named() {
    let other = altered_copy("gpt2", |dir| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        std::fs::write(
            dir.join("config.json"),
            text.replace("\"llama\"", "\"gpt2\""),
        )
        .unwrap();
    });
    let err = ModelWeights::open(&other).err().unwrap().to_string();
    assert!(err.contains("gpt2") && err.contains("supported"), "{err}");
}
