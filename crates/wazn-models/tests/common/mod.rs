//! Shared helpers of the model tests: the default model and the reference file.
#![allow(dead_code)]

pub mod arch_checks;
pub mod hf_reference;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use wazn_formats::GgufFile;
use wazn_kernels::Activations;
use wazn_models::{load_model, Model, ModelOptions};

/// The default model, fetched by `scripts/fetch-default-model` (the test command in
/// README.md fetches it first).
pub fn default_model_path() -> PathBuf {
    let path = wazn_formats::model_cache::default_model_path().expect("HOME or WAZN_CACHE_DIR");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-default-model",
        path.display()
    );
    path
}

pub fn load_default_model(activations: Activations) -> Box<dyn Model> {
    let file = GgufFile::open(default_model_path()).expect("open the default model");
    load_model(Arc::new(file), &ModelOptions { activations }).expect("load the default model")
}

#[derive(Deserialize)]
pub struct Reference {
    pub entries: Vec<ReferenceEntry>,
}

#[derive(Deserialize)]
pub struct ReferenceEntry {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub topk: Vec<TopK>,
}

#[derive(Deserialize)]
pub struct TopK {
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
}

/// llama.cpp's top-k logits for the same token sequences as the reference.
#[derive(Deserialize)]
pub struct LlamaCppLogits {
    pub entries: Vec<LlamaCppEntry>,
}

#[derive(Deserialize)]
pub struct LlamaCppEntry {
    pub id: String,
    pub topk: Vec<TopK>,
}

impl LlamaCppLogits {
    pub fn load() -> LlamaCppLogits {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/smollm2_llamacpp_logits.json"
        );
        let text = std::fs::read_to_string(path).expect("read the llama.cpp logits");
        serde_json::from_str(&text).expect("parse the llama.cpp logits")
    }
}

impl Reference {
    pub fn load() -> Reference {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/smollm2_reference.json"
        );
        let text = std::fs::read_to_string(path).expect("read the reference");
        serde_json::from_str(&text).expect("parse the reference")
    }
}

/// Index of the largest value; the lowest index on ties, as torch.argmax.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Ids of the `k` largest values, best first.
pub fn top_ids(row: &[f32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    ids.truncate(k);
    ids
}
