//! A tiny random Gemma 3 (local sliding-window and global layers with their own RoPE,
//! q/k norms, norms before and after each sublayer with (1 + w) gains, GeGLU, scaled
//! embeddings, a final logit soft cap) against Hugging Face transformers, from the
//! Hugging Face folder and from the GGUF llama.cpp's converter made of the same
//! weights. The fixture and reference are written by
//! `scripts/reference/gemma3_tiny.py`.

mod common;

use common::arch_checks::{self, data_dir};

#[test]
fn gemma3_logits_match_transformers_from_both_formats() {
    arch_checks::check_f32_both_formats("gemma3", "gemma3");
}

#[test]
fn gemma3_greedy_tokens_match_transformers() {
    arch_checks::check_greedy_both_formats("gemma3");
}

#[test]
fn gemma3_batched_and_incremental_rows_equal_a_full_pass() {
    arch_checks::check_batched_and_incremental("gemma3");
}

#[test]
fn gemma3_prefix_reuse_and_truncation_keep_the_logits() {
    arch_checks::check_prefix_reuse("gemma3");
}

#[test]
fn gemma3_formats_agree() {
    arch_checks::check_formats_agree("gemma3");
    let file = wazn_formats::GgufFile::open(data_dir("gemma3").join("tiny.gguf")).unwrap();
    assert_eq!(file.architecture().unwrap(), "gemma3");
}
