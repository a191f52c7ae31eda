//! The reference files of the tiny Hugging Face checkpoints (written by
//! `scripts/reference/gptoss_tiny.py` and `llama_tiny.py`): transformers' logits at
//! chosen positions of each prompt and its greedy continuation.

use std::path::Path;

use serde::Deserialize;
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, Model};

#[derive(Deserialize)]
pub struct Reference {
    pub prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
pub struct Prompt {
    pub input_ids: Vec<u32>,
    /// Positions whose logits are stored, in order.
    pub logit_positions: Vec<usize>,
    /// `[logit_positions.len(), n_vocab]`.
    pub logits: Vec<Vec<f32>>,
    pub greedy_ids: Vec<u32>,
}

/// `DIR/reference.json`.
pub fn read_reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("read reference.json");
    serde_json::from_str(&text).expect("parse reference.json")
}

/// The logits of every position of `tokens`, from one forward pass of a fresh sequence.
pub fn full_pass(model: &dyn Model, pool: &ThreadPool, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut batch = Batch::new();
    batch.push_tokens(0, 0, tokens, true);
    let mut kv = model.new_kv_cache(tokens.len() + 32);
    let logits = model.forward(&batch, &mut kv, pool).expect("forward");
    (0..tokens.len()).map(|i| logits.row(i).to_vec()).collect()
}
