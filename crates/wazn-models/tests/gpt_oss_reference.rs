//! A tiny random gpt-oss (4 layers, 8 experts, top-4, sliding window 128, YaRN, sinks,
//! MXFP4 experts) against Hugging Face transformers, from the Hugging Face folder and
//! from the GGUF llama.cpp's converter made of the same weights. The fixtures and the
//! reference are written by `scripts/reference/gptoss_tiny.py`.
//!
//! - f32 activations: logits within 1e-3 of transformers at every stored position of
//!   prompts of 7, 150 and 300 tokens (the longer two exceed the window), and greedy
//!   decoding gives the reference's tokens;
//! - 8-bit activations (the fast path): within 1e-3 of transformers run with the same
//!   Q8_0 rounding of the expert inputs (see `q8_reference`);
//! - several sequences in one batch, and one token per forward after a prefill, give
//!   the logits of one full pass;
//! - a GGUF with fused gate/up expert stacks gives the split file's logits;
//! - broken folders are clear errors naming the file and tensor.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use wazn_formats::{GgufFile, GgufWriter};
use wazn_kernels::{Activations, ThreadPool};
use wazn_models::{load_model_from, Batch, Model, ModelError, ModelOptions, ModelSource};

use common::arch_checks::{
    self, check_logits, compare, edit_header, Format, F32_MAX_ABS_LOGIT_DIFF,
};
use common::hf_reference::{full_pass, read_reference, Prompt, Reference};

fn data_dir() -> PathBuf {
    arch_checks::data_dir("gptoss")
}

fn reference() -> Reference {
    read_reference(&data_dir())
}

fn load(format: Format, activations: Activations) -> Box<dyn Model> {
    arch_checks::load(&data_dir(), format, activations)
}

fn check_f32(format: Format) {
    let model = load(format, Activations::F32);
    assert_eq!(model.info().architecture, "gpt-oss");
    let reference = reference();
    assert!(reference.prompts.iter().any(|p| p.input_ids.len() > 128));
    check_logits(model.as_ref(), &reference, &format!("{format:?} f32"));
}

#[test]
fn hf_folder_f32_logits_match_transformers() {
    check_f32(Format::Hf);
}

#[test]
fn gguf_f32_logits_match_transformers() {
    check_f32(Format::Gguf);
}

/// The 8-bit path rounds the input of every MXFP4 expert matrix to Q8_0 (blocks of 32
/// values on a grid of max|x|/127, as llama.cpp does); the BF16 attention, router and
/// output matrices keep f32 activations. That rounding is a change of the model's
/// arithmetic, not a small error: on this random tiny model transformers itself moves
/// its logits by up to R = 1.73 when its expert inputs are rounded so (written by
/// `tests/gen_gptoss_q8_reference.py`, with those logits). So the 8-bit path is compared
/// with transformers-with-Q8_0-rounding:
/// - where no code sits on a rounding boundary they agree to ~1e-5 (measured), so the
///   7-token prompt (14k rounded values) is held to the f32 tolerance;
/// - on long prompts the two sides' f32 sums differ by ~1e-6 relative, enough to move
///   the odd value that lies on a rounding boundary to the next Q8_0 code (one step,
///   the size of the rounding itself), and that change reaches every later position
///   through attention. So the rest is held to a tenth of R: the 8-bit path must
///   reproduce at least nine tenths of what Q8_0 rounding does to transformers.
fn q8_reference() -> (Reference, f32) {
    let path = data_dir().join("../gptoss_q8_reference.json");
    let text = std::fs::read_to_string(&path).expect("read gptoss_q8_reference.json");
    let json: Value = serde_json::from_str(&text).expect("parse gptoss_q8_reference.json");
    let rounding_effect = json["max_abs_diff_vs_f32_reference"].as_f64().unwrap() as f32;
    let prompts = serde_json::from_value::<Vec<Value>>(json["prompts"].clone()).unwrap();
    let prompts = prompts
        .into_iter()
        .map(|p| Prompt {
            input_ids: serde_json::from_value(p["input_ids"].clone()).unwrap(),
            logit_positions: serde_json::from_value(p["logit_positions"].clone()).unwrap(),
            logits: serde_json::from_value(p["logits"].clone()).unwrap(),
            greedy_ids: Vec::new(),
        })
        .collect();
    (Reference { prompts }, rounding_effect)
}

fn check_q8(format: Format) {
    let model = load(format, Activations::Quantized);
    let pool = ThreadPool::new(2).unwrap();
    let (q8_reference, rounding_effect) = q8_reference();
    let a = compare(model.as_ref(), &pool, &q8_reference);
    let short = Reference {
        prompts: q8_reference.prompts.into_iter().take(1).collect(),
    };
    assert!(short.prompts[0].input_ids.len() < 10);
    let a_short = compare(model.as_ref(), &pool, &short);
    let plain = compare(model.as_ref(), &pool, &reference());
    let tolerance = 0.1 * rounding_effect;
    println!(
        "{format:?} 8-bit: max |Δlogit| vs transformers with Q8_0-rounded expert inputs: \
         {:.3e} on the 7-token prompt, {:.3e} overall (tolerance {tolerance:.3e}); \
         {:.3e} vs plain transformers (the rounding alone moves transformers by \
         {rounding_effect:.3e}); top-1 changes vs plain: {:?}",
        a_short.max_abs_diff, a.max_abs_diff, plain.max_abs_diff, plain.top1_mismatches
    );
    assert!(
        a_short.max_abs_diff <= F32_MAX_ABS_LOGIT_DIFF,
        "{format:?}: {} on the short prompt",
        a_short.max_abs_diff
    );
    assert!(
        a.max_abs_diff <= tolerance,
        "{format:?}: max |Δlogit| {} vs the Q8_0 reference",
        a.max_abs_diff
    );
}

#[test]
fn hf_folder_8bit_logits_are_close_to_transformers() {
    check_q8(Format::Hf);
}

#[test]
fn gguf_8bit_logits_are_close_to_transformers() {
    check_q8(Format::Gguf);
}

#[test]
fn hf_folder_greedy_tokens_match_transformers() {
    arch_checks::check_greedy(&data_dir(), Format::Hf);
}

#[test]
fn gguf_greedy_tokens_match_transformers() {
    arch_checks::check_greedy(&data_dir(), Format::Gguf);
}

/// Two sequences interleaved in one batch, then decoded one token per step together,
/// give the logits of a full pass of each alone.
#[test]
fn batched_and_incremental_rows_equal_a_full_pass() {
    arch_checks::check_batched_and_incremental("gptoss");
}

/// A prompt that starts with another sequence's cached blocks, and a sequence cut
/// back and continued, give the logits of a full pass (the sliding layers read the
/// window from the shared blocks).
#[test]
fn prefix_reuse_and_truncation_keep_the_logits() {
    arch_checks::check_prefix_reuse("gptoss");
}

/// The sliding layers' cache stays about one window long while the full layers' grows.
#[test]
fn sliding_layers_keep_about_one_window_of_cache() {
    let pool = ThreadPool::new(2).unwrap();
    let model = load(Format::Gguf, Activations::Quantized);
    let tokens = &reference().prompts[2].input_ids; // 300 tokens: 19 blocks of 16
    let mut kv = model.new_kv_cache(tokens.len());
    model
        .forward(&Batch::for_sequence(0, 0, tokens), &mut kv, &pool)
        .unwrap();
    // Per layer and block: keys and values of 16 positions of kv_width f32.
    let layer_block = 2 * 16 * model.info().kv_width * 4;
    // 2 full layers hold all 19 blocks; 2 sliding layers the 10 blocks from the one
    // holding position 300 - 128 - 16 = 156 on (window plus one block of slack).
    let want = (2 * 19 + 2 * 10) * layer_block;
    println!(
        "cache after 300 positions: {} bytes (all layers in full: {})",
        kv.bytes_allocated(),
        4 * 19 * layer_block
    );
    assert_eq!(kv.bytes_allocated(), want);
}

#[test]
fn a_token_outside_the_vocabulary_is_an_error() {
    let model = load(Format::Hf, Activations::F32);
    let pool = ThreadPool::new(1).unwrap();
    let n_vocab = model.info().n_vocab as u32;
    let mut kv = model.new_kv_cache(8);
    let err = model
        .forward(&Batch::for_sequence(0, 0, &[1, n_vocab]), &mut kv, &pool)
        .unwrap_err();
    assert!(matches!(err, ModelError::TokenOutOfRange { .. }), "{err}");
    assert_eq!(kv.seq_len(0), 0);
}

#[test]
fn both_formats_report_the_same_model() {
    let hf = load(Format::Hf, Activations::F32);
    let gguf = load(Format::Gguf, Activations::F32);
    let (a, b) = (hf.info(), gguf.info());
    assert_eq!(
        (&a.architecture, a.n_vocab, a.n_layer, a.kv_width),
        (&b.architecture, b.n_vocab, b.n_layer, b.kv_width)
    );
    let file = GgufFile::open(data_dir().join("tiny.gguf")).unwrap();
    assert_eq!(file.architecture().unwrap(), "gpt-oss");
}

/// `tiny.gguf` with each layer's gate and up expert stacks fused into one
/// `ffn_gate_up_exps` tensor `[n_expert, 2 n_ff, n_embd]` (each expert's gate rows,
/// then its up rows, as llama.cpp's converter fuses them and its graph splits them),
/// and their biases likewise when `fuse_bias`.
fn fused_gate_up_file(fuse_bias: bool) -> PathBuf {
    let split = GgufFile::open(data_dir().join("tiny.gguf")).unwrap();
    let mut writer = GgufWriter::new();
    for (key, value) in split.metadata().iter() {
        writer = writer.metadata(key, value.clone());
    }
    for info in split.tensors() {
        let name = info.name.as_str();
        let fused = [".weight", ".bias"]
            .into_iter()
            .filter(|s| *s == ".weight" || fuse_bias)
            .find_map(|suffix| {
                Some((
                    name.strip_suffix(&format!("ffn_gate_exps{suffix}"))?,
                    suffix,
                ))
            });
        let is_up = name.contains("ffn_up_exps") && (name.ends_with(".weight") || fuse_bias);
        if is_up {
            continue;
        }
        let Some((layer, suffix)) = fused else {
            writer = writer.tensor(name, info.ggml_type, &info.dims, split.tensor_data(info));
            continue;
        };
        let up = split
            .tensor(&format!("{layer}ffn_up_exps{suffix}"))
            .unwrap();
        let n_expert = *info.dims.last().unwrap() as usize;
        let (gate, up) = (split.tensor_data(info), split.tensor_data(up));
        let per_expert = gate.len() / n_expert;
        let data: Vec<u8> = gate
            .chunks_exact(per_expert)
            .zip(up.chunks_exact(per_expert))
            .flat_map(|(g, u)| g.iter().chain(u).copied())
            .collect();
        let mut dims = info.dims.clone();
        let rows_dim = dims.len() - 2;
        dims[rows_dim] *= 2;
        let fused_name = format!("{layer}ffn_gate_up_exps{suffix}");
        writer = writer.tensor(fused_name, info.ggml_type, &dims, data);
    }
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gptoss-fused-{fuse_bias}.gguf"));
    writer.write_file(&path).unwrap();
    path
}

/// A file with fused gate/up experts (with fused or split biases) gives the split
/// file's logits, bit for bit, on both paths.
#[test]
fn fused_gate_up_experts_read_as_the_split_ones() {
    let pool = ThreadPool::new(2).unwrap();
    let prompt = &reference().prompts[1].input_ids;
    for fuse_bias in [true, false] {
        let path = fused_gate_up_file(fuse_bias);
        let fused_file = GgufFile::open(&path).unwrap();
        assert!(fused_file.tensor("blk.0.ffn_gate_up_exps.weight").is_some());
        assert!(fused_file.tensor("blk.0.ffn_up_exps.weight").is_none());
        for activations in [Activations::F32, Activations::Quantized] {
            let options = ModelOptions { activations };
            let fused = load_model_from(&ModelSource::open(&path).unwrap(), &options).unwrap();
            let split = load(Format::Gguf, activations);
            let (want, got) = (
                full_pass(split.as_ref(), &pool, prompt),
                full_pass(fused.as_ref(), &pool, prompt),
            );
            for (w, g) in want.iter().zip(&got) {
                let same = w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "fused biases {fuse_bias}, {activations:?}");
            }
        }
    }
}

// ---- Broken folders -------------------------------------------------------------

/// A copy of the fixture folder under the target dir, for a test to break.
fn scratch_copy(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gptoss-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(data_dir().join("hf").join(name), dir.join(name)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match ModelSource::open(dir).and_then(|s| load_model_from(&s, &ModelOptions::default())) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => {
            println!("{e}");
            e.to_string()
        }
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "{msg:?} does not mention {part:?}");
    }
}

#[test]
fn a_folder_without_config_is_an_error() {
    let dir = scratch_copy("no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_mentions(&load_err(&dir), &["config.json"]);
}

#[test]
fn a_shard_missing_from_the_index_is_an_error() {
    let dir = scratch_copy("missing-shard");
    std::fs::rename(
        dir.join("model.safetensors"),
        dir.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let index = serde_json::json!({"weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_mentions(&load_err(&dir), &["model-00002-of-00002.safetensors"]);
}

#[test]
fn a_tensor_of_the_wrong_shape_is_an_error() {
    let dir = scratch_copy("wrong-shape");
    let name = "model.layers.1.self_attn.q_proj.weight";
    edit_header(&dir, |h| {
        let shape = h[name]["shape"].as_array().unwrap().clone();
        h[name]["shape"] = Value::Array(vec![shape[1].clone(), shape[0].clone()]);
    });
    assert_mentions(&load_err(&dir), &["model.safetensors", name, "shape"]);
}

#[test]
fn a_tensor_of_the_wrong_dtype_is_an_error() {
    let dir = scratch_copy("wrong-dtype");
    let name = "model.layers.0.self_attn.k_proj.weight";
    edit_header(&dir, |h| h[name]["dtype"] = Value::from("I16"));
    assert_mentions(&load_err(&dir), &["model.safetensors", name, "I16"]);
}

#[test]
fn mxfp4_blocks_without_scales_are_an_error() {
    let dir = scratch_copy("no-scales");
    let name = "model.layers.2.mlp.experts.down_proj_scales";
    edit_header(&dir, |h| {
        h.remove(name);
    });
    assert_mentions(&load_err(&dir), &["model.safetensors", name]);
}

#[test]
fn an_unknown_model_type_is_an_error() {
    let dir = scratch_copy("unknown-type");
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["model_type"] = Value::from("mamba9");
    std::fs::write(&path, config.to_string()).unwrap();
    assert_mentions(&load_err(&dir), &["config.json", "mamba9", "gpt-oss"]);
    config.as_object_mut().unwrap().remove("model_type");
    std::fs::write(&path, config.to_string()).unwrap();
    assert_mentions(&load_err(&dir), &["config.json", "model_type"]);
}
