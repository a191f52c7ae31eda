//! Tiny random DeepSeek-V3 (low-rank q, 4 groups of 4 experts of which 2 groups
//! compete, correction bias, a shared expert, a dense first layer, YaRN with mscale) and
//! a Kimi K2-shaped variant (one group, 4 of 16 experts, direct q, Kimi's RoPE) against
//! Hugging Face transformers, from the Hugging Face folder and from the GGUF llama.cpp's
//! converter made of the same weights (which stores the absorbed `attn_k_b` / `attn_v_b`;
//! the folder's joint `kv_b_proj` is cut at load). The fixtures and references are
//! written by `scripts/reference/deepseek3_tiny.py`.

mod common;

use common::arch_checks::{self, data_dir};
use wazn_kernels::{Activations, ThreadPool};
use wazn_models::Batch;

const MODELS: [&str; 2] = ["deepseek3", "kimi_k2"];

#[test]
fn logits_match_transformers_from_both_formats() {
    for name in MODELS {
        arch_checks::check_f32_both_formats(name, "deepseek2");
    }
}

#[test]
fn greedy_tokens_match_transformers() {
    for name in MODELS {
        arch_checks::check_greedy_both_formats(name);
    }
}

#[test]
fn batched_and_incremental_rows_equal_a_full_pass() {
    for name in MODELS {
        arch_checks::check_batched_and_incremental(name);
    }
}

#[test]
fn prefix_reuse_and_truncation_keep_the_logits() {
    for name in MODELS {
        arch_checks::check_prefix_reuse(name);
    }
}

#[test]
fn both_formats_report_the_same_model() {
    for name in MODELS {
        arch_checks::check_formats_agree(name);
    }
}

/// The cache holds one row per position and layer: the latent and the RoPE key,
/// `kv_lora_rank + qk_rope_head_dim` values, nothing per head.
#[test]
fn the_latent_cache_holds_latent_and_rope_key_only() {
    let pool = ThreadPool::new(2).unwrap();
    for format in arch_checks::BOTH_FORMATS {
        let dir = data_dir("deepseek3");
        let model = arch_checks::load(&dir, format, Activations::F32);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("hf/config.json")).unwrap())
                .unwrap();
        let width = (config["kv_lora_rank"].as_u64().unwrap()
            + config["qk_rope_head_dim"].as_u64().unwrap()) as usize;
        let n_layer = config["num_hidden_layers"].as_u64().unwrap() as usize;
        assert_eq!(model.info().kv_width, width);
        let tokens: Vec<u32> = (0..64).map(|i| (i * 7 % 200) as u32).collect(); // 4 blocks
        let mut kv = model.new_kv_cache(tokens.len());
        model
            .forward(&Batch::for_sequence(0, 0, &tokens), &mut kv, &pool)
            .unwrap();
        let f32_bytes = 4;
        assert_eq!(
            kv.bytes_allocated(),
            tokens.len() * n_layer * width * f32_bytes,
            "{format:?}"
        );
    }
}

#[test]
fn the_kimi_variant_has_one_group_and_a_direct_query() {
    let file = wazn_formats::GgufFile::open(data_dir("kimi_k2").join("tiny.gguf")).unwrap();
    assert_eq!(
        file.metadata()
            .get_u64("deepseek2.expert_group_count")
            .unwrap(),
        Some(1)
    );
    assert!(file.tensor("blk.0.attn_q.weight").is_some());
    assert!(file.tensor("blk.0.attn_q_a.weight").is_none());
}
