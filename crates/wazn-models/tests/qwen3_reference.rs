//! Tiny random Qwen3 (tied embeddings, per-head q/k norms, heads wider than
//! hidden / n_head) and Qwen3-MoE (8 experts, top-2, experts stored one tensor each as
//! the released checkpoints do) against Hugging Face transformers, from the Hugging
//! Face folder and from the GGUF llama.cpp's converter made of the same weights. The
//! fixtures and references are written by `scripts/reference/qwen3_tiny.py`.

mod common;

use common::arch_checks::{self, check_logits, data_dir, Format};
use common::hf_reference::{Prompt, Reference};
use serde_json::Value;
use wazn_kernels::Activations;
use wazn_models::{load_model_from, ModelOptions, ModelSource};

#[test]
fn qwen3_logits_match_transformers_from_both_formats() {
    arch_checks::check_f32_both_formats("qwen3", "qwen3");
}

#[test]
fn qwen3_greedy_tokens_match_transformers() {
    arch_checks::check_greedy_both_formats("qwen3");
}

#[test]
fn qwen3_batched_and_incremental_rows_equal_a_full_pass() {
    arch_checks::check_batched_and_incremental("qwen3");
}

#[test]
fn qwen3_prefix_reuse_and_truncation_keep_the_logits() {
    arch_checks::check_prefix_reuse("qwen3");
}

#[test]
fn qwen3_formats_agree_and_the_output_is_tied() {
    arch_checks::check_formats_agree("qwen3");
    let file = wazn_formats::GgufFile::open(data_dir("qwen3").join("tiny.gguf")).unwrap();
    assert!(file.tensor("output.weight").is_none());
}

#[test]
fn qwen3moe_logits_match_transformers_from_both_formats() {
    arch_checks::check_f32_both_formats("qwen3moe", "qwen3moe");
}

#[test]
fn qwen3moe_greedy_tokens_match_transformers() {
    arch_checks::check_greedy_both_formats("qwen3moe");
}

#[test]
fn qwen3moe_batched_and_incremental_rows_equal_a_full_pass() {
    arch_checks::check_batched_and_incremental("qwen3moe");
}

#[test]
fn qwen3moe_prefix_reuse_and_truncation_keep_the_logits() {
    arch_checks::check_prefix_reuse("qwen3moe");
}

#[test]
fn qwen3moe_formats_agree() {
    arch_checks::check_formats_agree("qwen3moe");
}

/// With `norm_topk_prob: false` the k weights keep the softmax over all experts: the
/// folder with that one key changed gives transformers' logits for that setting.
#[test]
fn qwen3moe_without_norm_topk_prob_keeps_the_full_softmax_weights() {
    let dir = data_dir("qwen3moe");
    let folder = arch_checks::edited_folder("qwen3moe", "no-norm-topk", |config| {
        assert_eq!(config["norm_topk_prob"], Value::Bool(true));
        config["norm_topk_prob"] = Value::Bool(false);
    });
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let prompts: Vec<Prompt> =
        serde_json::from_value(json["prompts_norm_topk_prob_false"].clone()).unwrap();
    assert!(!prompts.is_empty());
    let reference = Reference { prompts };
    let source = ModelSource::open(&folder).unwrap();
    let options = ModelOptions {
        activations: Activations::F32,
    };
    let model = load_model_from(&source, &options).unwrap();
    check_logits(model.as_ref(), &reference, "qwen3moe norm_topk_prob=false");
    // And it is a different model: the renormalized one does not pass this reference.
    let renormalized = arch_checks::load(&dir, Format::Hf, Activations::F32);
    let pool = wazn_kernels::ThreadPool::new(2).unwrap();
    let a = arch_checks::compare(renormalized.as_ref(), &pool, &reference);
    assert!(a.max_abs_diff > 1e-2, "{}", a.max_abs_diff);
}
