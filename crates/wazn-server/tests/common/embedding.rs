//! The tiny Qwen3 embedding model of `scripts/reference/qwen3_embedding_tiny.py` (last-token
//! pooling, `<|endoftext|>` appended) served for the embedding tests, and its
//! sentence-transformers reference vectors.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde::Deserialize;
use serde_json::Value;
use wazn_engine::{Engine, EngineOptions};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

use super::{Config, TestServer};

pub const MODEL: &str = "qwen3-embedding-tiny";
pub const MAX_ABS_DIFF: f32 = 1e-3;
pub const MIN_COSINE: f64 = 0.9999;

#[derive(Deserialize)]
pub struct Reference {
    pub hidden_size: usize,
    pub truncate_dim: usize,
    pub inputs: Vec<Input>,
}

#[derive(Deserialize)]
pub struct Input {
    pub text: Option<String>,
    pub input_ids: Vec<u32>,
    pub embedding: Vec<f32>,
    pub embedding_16: Option<Vec<f32>>,
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-models/tests/data/qwen3_embedding"
    ))
}

pub fn reference() -> Reference {
    let text = std::fs::read_to_string(data_dir().join("reference.json")).expect("reference");
    serde_json::from_str(&text).expect("parse the reference")
}

/// The embedding model's server, shared by a test file's tests one at a time.
pub fn server() -> MutexGuard<'static, TestServer> {
    static SERVER: OnceLock<Mutex<TestServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let options = EngineOptions {
                n_ctx: super::N_CTX,
                n_threads: 2,
                n_batch: 64,
                model: ModelOptions {
                    activations: Activations::F32,
                },
            };
            let engine = Engine::load(&data_dir().join("tiny.gguf"), options).expect("load");
            Mutex::new(TestServer::start_with(engine, MODEL, Config::default()))
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn texts(reference: &Reference) -> Vec<&Input> {
    reference
        .inputs
        .iter()
        .filter(|i| i.text.is_some())
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// Checks a vector against its reference, and that it has unit length.
pub fn check_vector(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: width");
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let cos = cosine(got, want);
    assert!(
        max_abs <= MAX_ABS_DIFF && cos >= MIN_COSINE,
        "{what}: max |diff| {max_abs:.2e}, cosine {cos:.6}"
    );
    let norm = got
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{what}: norm {norm}");
}

pub fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("a list of floats")
        .iter()
        .map(|v| v.as_f64().expect("a float") as f32)
        .collect()
}
