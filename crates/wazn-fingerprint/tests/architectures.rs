//! Every architecture a fingerprint reads, on the tiny checkpoints the model tests use (each a
//! Hugging Face folder and the GGUF llama.cpp's converter wrote from it): a folder and its GGUF
//! are the same model to the fingerprint, layer by layer, whatever each file's conventions
//! (Gemma's 1 + w norms, DeepSeek's split key up projection); two different checkpoints of
//! one shape are not; a saved `.wfp` reads back as its model; and a mixture of experts with
//! its experts reordered fingerprints exactly as before.

use std::path::{Path, PathBuf};

use wazn_fingerprint::{
    null_distribution, score_pair, verdict, write_wfp, ModelWeights, NoProgress, PairOutcome,
    PairScore, Verdict, WeightSource, WfpFile, WfpStorage, DEFAULT_NULL_MODELS,
};
use wazn_formats::GgufFile;

fn checkpoints() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wazn-models/tests/data")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fingerprint-architectures")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gguf(name: &str) -> ModelWeights {
    ModelWeights::open(&checkpoints().join(name).join("tiny.gguf"))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The checkpoint's folder, with a `tokenizer.json` holding its GGUF's token strings (the
/// folders are committed without one).
fn folder(name: &str) -> ModelWeights {
    let dir = scratch(name);
    let source = checkpoints().join(name).join("hf");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let file = GgufFile::open(checkpoints().join(name).join("tiny.gguf")).unwrap();
    let tokens = file
        .metadata()
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.to_string(), serde_json::Value::from(id)))
        .collect();
    let json = serde_json::json!({ "model": { "type": "BPE", "vocab": vocab } });
    std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
    ModelWeights::open(&dir).unwrap_or_else(|e| panic!("{name} folder: {e}"))
}

fn scored(a: &dyn WeightSource, b: &dyn WeightSource) -> PairScore {
    match score_pair(a, b, None, 2, &NoProgress).unwrap() {
        PairOutcome::Scored(s) => s,
        other => panic!("not scored: {other:?}"),
    }
}

fn judged(a: &dyn WeightSource, b: &dyn WeightSource) -> (PairScore, Verdict) {
    let s = scored(a, b);
    let null = null_distribution(&[a, b], DEFAULT_NULL_MODELS, &[], 2, &NoProgress).unwrap();
    let v = verdict(s.score, null.z(s.score));
    (s, v)
}

const ARCHITECTURES: [&str; 5] = ["gemma3", "gptoss", "deepseek3", "kimi_k2", "qwen3"];

#[test]
fn a_folder_and_its_gguf_are_the_same_model() {
    for name in ARCHITECTURES {
        let (a, b) = (gguf(name), folder(name));
        assert_eq!(a.facts().q_rows(), b.facts().q_rows(), "{name}");
        assert_eq!(a.facts().k_rows(), b.facts().k_rows(), "{name}");
        let (s, v) = judged(&a, &b);
        for layer in &s.per_layer {
            for (what, value) in [("wq", layer.wq), ("wk", layer.wk), ("wq_wk", layer.wq_wk)] {
                assert!(
                    (value - 1.0).abs() < 1e-4,
                    "{name} layer {}: {what} {value}",
                    layer.a
                );
            }
        }
        assert_eq!(v, Verdict::Derived, "{name}: {}", s.score);
        eprintln!("{name}: folder vs GGUF {:.6}", s.score);
    }
}

#[test]
fn different_checkpoints_of_one_shape_are_independent() {
    // Each pair: two random initialisations with the same hidden size and a shared
    // vocabulary (DeepSeek-V3's and Kimi K2's tiny checkpoints differ in their query's rank).
    for (a, b) in [("deepseek3", "kimi_k2"), ("qwen3", "qwen3moe")] {
        let (s, v) = judged(&gguf(a), &gguf(b));
        assert_eq!(v, Verdict::Independent, "{a} vs {b}: {}", s.score);
        eprintln!("{a} vs {b}: {:.4}", s.score);
    }
}

#[test]
fn a_latent_attention_wfp_reads_back() {
    let model = gguf("deepseek3");
    let path = scratch("wfp").join("deepseek3.wfp");
    write_wfp(&model, &path, WfpStorage::Q8_0, &NoProgress).unwrap();
    let saved = WfpFile::open(&path).unwrap();
    assert_eq!(saved.facts(), model.facts());
    let s = scored(&model, &saved);
    assert!((s.score - 1.0).abs() < 1e-3, "{}", s.score);
}

/// A copy of `name`'s GGUF with its experts in reverse order: every tensor with one slice
/// per expert (the experts' weights and biases, the router's rows and biases) has its slices
/// reversed, which gives the same model.
fn experts_reversed(name: &str) -> PathBuf {
    let source = checkpoints().join(name).join("tiny.gguf");
    let file = GgufFile::open(&source).unwrap();
    let arch = file.architecture().unwrap().to_string();
    let n_expert = file
        .metadata()
        .get_u64(&format!("{arch}.expert_count"))
        .unwrap()
        .unwrap();
    let mut bytes = std::fs::read(&source).unwrap();
    let mut reordered = 0;
    for info in file.tensors() {
        let per_expert = info.name.contains("_exps.") || info.name.contains("ffn_gate_inp.");
        if !per_expert || info.dims.last() != Some(&n_expert) {
            continue;
        }
        let data = file.tensor_data(info);
        let start = info.offset as usize;
        let slice = data.len() / n_expert as usize;
        let mut reversed = Vec::with_capacity(data.len());
        for chunk in data.chunks_exact(slice).rev() {
            reversed.extend_from_slice(chunk);
        }
        bytes[start..start + data.len()].copy_from_slice(&reversed);
        reordered += 1;
    }
    assert!(reordered >= 4, "{name}: {reordered} tensors reordered");
    let path = scratch("experts").join(format!("{name}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn reordering_experts_changes_nothing() {
    for name in ["gptoss", "qwen3moe"] {
        let model = gguf(name);
        let copy = ModelWeights::open(&experts_reversed(name)).unwrap();
        let (itself, with_copy) = (scored(&model, &model), scored(&model, &copy));
        assert_eq!(itself.per_layer, with_copy.per_layer, "{name}");
        assert_eq!(itself.score, with_copy.score, "{name}");
    }
}
