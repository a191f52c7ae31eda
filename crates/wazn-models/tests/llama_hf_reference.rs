//! A tiny random Llama in the Hugging Face layout (bf16 safetensors, half-split RoPE
//! pairs, grouped-query attention, untied output) against transformers' f32 forward
//! pass (fixture and reference written by `scripts/reference/llama_tiny.py`).
//!
//! - logits within 1e-3 of transformers at every stored position, with f32 and with
//!   the default activations (bf16 weights take f32 activations on both paths, so the
//!   two must agree exactly);
//! - greedy decoding, one token per forward, gives the reference's continuation;
//! - two sequences batched together give the logits of each alone.

mod common;

use std::path::{Path, PathBuf};

use wazn_kernels::{Activations, ThreadPool};
use wazn_models::{load_model_from, Batch, Model, ModelOptions, ModelSource};

use common::argmax;
use common::hf_reference::{full_pass, read_reference, Reference};

/// Both sides compute the same f32 sums in a different order (the reference stores 6
/// significant digits).
const MAX_ABS_LOGIT_DIFF: f32 = 1e-3;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama_hf")
}

fn reference() -> Reference {
    read_reference(&data_dir())
}

fn load(activations: Activations) -> Box<dyn Model> {
    let source = ModelSource::open(&data_dir().join("hf")).expect("open the folder");
    load_model_from(&source, &ModelOptions { activations }).expect("load the tiny Llama")
}

fn max_abs_diff(model: &dyn Model, pool: &ThreadPool, reference: &Reference) -> f32 {
    let mut max_diff = 0.0f32;
    for prompt in &reference.prompts {
        let ours = full_pass(model, pool, &prompt.input_ids);
        for (&pos, want) in prompt.logit_positions.iter().zip(&prompt.logits) {
            assert_eq!(ours[pos].len(), want.len(), "vocabulary size");
            assert_eq!(argmax(&ours[pos]), argmax(want), "top-1 at {pos}");
            for (g, w) in ours[pos].iter().zip(want) {
                max_diff = max_diff.max((g - w).abs());
            }
        }
    }
    max_diff
}

#[test]
fn logits_match_transformers_on_both_paths() {
    let pool = ThreadPool::new(2).unwrap();
    let reference = reference();
    let f32_model = load(Activations::F32);
    assert_eq!(f32_model.info().architecture, "llama");
    let f32_diff = max_abs_diff(f32_model.as_ref(), &pool, &reference);
    let q_diff = max_abs_diff(load(Activations::Quantized).as_ref(), &pool, &reference);
    println!("Llama HF: max |Δlogit| f32 {f32_diff:.3e}, default activations {q_diff:.3e}");
    assert!(f32_diff <= MAX_ABS_LOGIT_DIFF, "f32: {f32_diff}");
    assert!(q_diff <= MAX_ABS_LOGIT_DIFF, "default: {q_diff}");
}

#[test]
fn greedy_tokens_match_transformers() {
    let model = load(Activations::F32);
    let pool = ThreadPool::new(2).unwrap();
    for prompt in &reference().prompts {
        let n_new = prompt.greedy_ids.len();
        let mut kv = model.new_kv_cache(prompt.input_ids.len() + n_new);
        let batch = Batch::for_sequence(0, 0, &prompt.input_ids);
        let mut next = argmax(model.forward(&batch, &mut kv, &pool).unwrap().row(0));
        let mut ours = vec![next];
        while ours.len() < n_new {
            let pos = prompt.input_ids.len() + ours.len() - 1;
            next = argmax(
                model
                    .forward(&Batch::for_sequence(0, pos, &[next]), &mut kv, &pool)
                    .unwrap()
                    .row(0),
            );
            ours.push(next);
        }
        assert_eq!(ours, prompt.greedy_ids);
    }
}

#[test]
fn batched_sequences_equal_each_alone() {
    let model = load(Activations::F32);
    let pool = ThreadPool::new(2).unwrap();
    let reference = reference();
    let (a, b) = (
        &reference.prompts[1].input_ids,
        &reference.prompts[0].input_ids,
    );
    let (want_a, want_b) = (
        full_pass(model.as_ref(), &pool, a),
        full_pass(model.as_ref(), &pool, b),
    );
    let mut kv = model.new_kv_cache(a.len());
    let mut batch = Batch::new();
    batch.push_tokens(5, 0, &a[..a.len() - 1], true);
    batch.push_tokens(9, 0, b, true);
    let logits = model.forward(&batch, &mut kv, &pool).unwrap();
    let mut max_diff = 0.0f32;
    let mut diff = |x: &[f32], y: &[f32]| {
        for (p, q) in x.iter().zip(y) {
            max_diff = max_diff.max((p - q).abs());
        }
    };
    for (i, want) in want_a[..a.len() - 1].iter().enumerate() {
        diff(logits.row(i), want);
    }
    for (i, want) in want_b.iter().enumerate() {
        diff(logits.row(a.len() - 1 + i), want);
    }
    let last = a.len() - 1;
    let step = model
        .forward(&Batch::for_sequence(5, last, &a[last..]), &mut kv, &pool)
        .unwrap();
    diff(step.row(0), &want_a[last]);
    assert!(max_diff <= 1e-5, "{max_diff}");
}

/// A folder whose index or header lacks a tensor the config implies is an error
/// naming the tensor and where it was looked for.
#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama-hf-missing-tensor");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(data_dir().join("hf/config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(data_dir().join("hf/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    assert!(header.as_object_mut().unwrap().remove(name).is_some());
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    let source = ModelSource::open(&dir).unwrap();
    let err = match load_model_from(&source, &ModelOptions::default()) {
        Ok(_) => panic!("loaded without {name}"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(name) && err.contains("llama-hf-missing-tensor"),
        "{err}"
    );
}
