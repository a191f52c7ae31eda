//! A tiny random Gemma 3 (local sliding-window and global layers with their own RoPE,
//! q/k norms, norms before and after each sublayer with (1 + w) gains, GeGLU, scaled
//! embeddings, a final logit soft cap) against Hugging Face transformers, from the
//! Hugging Face folder and from the GGUF llama.cpp's converter made of the same
//! weights. The fixture and reference are written by
//! `scripts/reference/gemma3_tiny.py`.

mod common;

use std::path::PathBuf;

use common::arch_checks::{self, check_logits, data_dir};
use common::hf_reference::read_reference;
use serde_json::Value;
use wazn_formats::{GgufFile, GgufWriter, MetaValue};
use wazn_kernels::Activations;
use wazn_models::gemma3::Gemma3Config;
use wazn_models::{load_model_from, ModelOptions, ModelSource};

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

/// The multimodal checkpoints (Gemma 3 4B and up): `model_type` `gemma3` with the text
/// model's settings under `text_config`, and the language model's tensors under
/// `language_model.model.` as released. The same weights so laid out give the same
/// logits.
#[test]
fn the_text_part_of_a_multimodal_checkpoint_gives_the_same_logits() {
    let folder = arch_checks::edited_folder("gemma3", "multimodal", |config| {
        let text = config.clone();
        *config = serde_json::json!({
            "architectures": ["Gemma3ForConditionalGeneration"],
            "model_type": "gemma3",
            "text_config": text,
        });
    });
    arch_checks::edit_header(&folder, |header| {
        let renamed: serde_json::Map<String, Value> = std::mem::take(header)
            .into_iter()
            .map(|(name, info)| match name.strip_prefix("model.") {
                Some(rest) => (format!("language_model.model.{rest}"), info),
                None => (name, info),
            })
            .collect();
        *header = renamed;
    });

    let source = ModelSource::open(&folder).unwrap();
    let model = load_model_from(
        &source,
        &ModelOptions {
            activations: Activations::F32,
        },
    )
    .unwrap();
    assert_eq!(model.info().architecture, "gemma3");
    check_logits(
        model.as_ref(),
        &read_reference(&data_dir("gemma3")),
        "gemma3 multimodal layout",
    );
}

/// tiny.gguf with `gemma3.attention.sliding_window_pattern` set to `value`, written as `name`.
fn tiny_gguf_with_pattern(name: &str, value: MetaValue) -> PathBuf {
    let file = GgufFile::open(data_dir("gemma3").join("tiny.gguf")).unwrap();
    let mut writer = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        writer = writer.metadata(k, v.clone());
    }
    writer = writer.metadata("gemma3.attention.sliding_window_pattern", value);
    for info in file.tensors() {
        writer = writer.tensor(
            &info.name,
            info.ggml_type,
            &info.dims,
            file.tensor_data(info),
        );
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    writer.write_file(&path).unwrap();
    path
}

/// The layer pattern as one flag per layer (true: sliding), as newer converters write it,
/// in place of a period: read flag for flag, and refused, naming the key, when the array
/// holds anything but BOOL.
#[test]
fn a_per_layer_sliding_pattern_is_read_from_gguf() {
    let flags = vec![true, false, true, false, true, true, true, false];
    let path = tiny_gguf_with_pattern("gemma3-flags.gguf", MetaValue::from(flags.clone()));
    let cfg = Gemma3Config::from_gguf(&GgufFile::open(&path).unwrap(), 256).unwrap();
    assert_eq!(cfg.sliding_layers, flags);
    std::fs::remove_file(path).unwrap();

    let path = tiny_gguf_with_pattern("gemma3-bytes.gguf", MetaValue::from(vec![1u8; 8]));
    let e = Gemma3Config::from_gguf(&GgufFile::open(&path).unwrap(), 256).unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata key \"gemma3.attention.sliding_window_pattern\" has type ARRAY of UINT8, \
         expected ARRAY of BOOL"
    );
    std::fs::remove_file(path).unwrap();
}
