//! Shared helpers of the engine tests: the default model and the transformers
//! reference for it.
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

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

/// `crates/wazn-models/tests/data/smollm2_reference.json`, written by
/// `scripts/reference/make_reference.py`.
#[derive(Deserialize)]
pub struct Reference {
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
pub struct Entry {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
}

pub fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-models/tests/data/smollm2_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the reference"))
        .expect("parse the reference")
}
