//! The checks every architecture's tiny reference checkpoint goes through (written by
//! `scripts/reference/*_tiny.py`: a Hugging Face folder `hf/`, the GGUF llama.cpp's
//! converter made of it `tiny.gguf`, and transformers' outputs `reference.json`):
//! logits from both formats against transformers, greedy tokens, batched and
//! incremental rows against one full pass, and prefix reuse against one full pass.

use std::path::{Path, PathBuf};

use wazn_kernels::{Activations, ThreadPool};
use wazn_models::{load_model_from, Batch, Logits, Model, ModelOptions, ModelSource};

use super::argmax;
use super::hf_reference::{full_pass, read_reference, Reference};

/// With f32 activations both sides compute the same sums in a different order (and
/// the reference stores 6 significant digits).
pub const F32_MAX_ABS_LOGIT_DIFF: f32 = 1e-3;

/// Each row's arithmetic does not depend on the other rows of a batch or on how the
/// cache was filled, up to the order of f32 sums in attention.
pub const SAME_PASS_MAX_ABS_DIFF: f32 = 1e-5;

#[derive(Clone, Copy, Debug)]
pub enum Format {
    Hf,
    Gguf,
}

pub const BOTH_FORMATS: [Format; 2] = [Format::Hf, Format::Gguf];

/// `crates/wazn-models/tests/data/{name}`.
pub fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A fresh copy of `name`'s Hugging Face folder under the target's scratch directory,
/// with `config.json` edited by `edit`.
pub fn edited_folder(name: &str, test: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(data_dir(name).join("hf")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

/// Rewrites the safetensors header of `dir/model.safetensors` with `edit`.
pub fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut json = serde_json::to_vec(&header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
}

pub fn model_path(dir: &Path, format: Format) -> PathBuf {
    match format {
        Format::Hf => dir.join("hf"),
        Format::Gguf => dir.join("tiny.gguf"),
    }
}

pub fn load(dir: &Path, format: Format, activations: Activations) -> Box<dyn Model> {
    let path = model_path(dir, format);
    let source = ModelSource::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    load_model_from(&source, &ModelOptions { activations })
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

/// Largest |Δlogit| over the full vocabulary at the reference's positions, the
/// largest |logit| of the reference, and the positions whose top-1 differs (prompt,
/// position, the reference's top1 - top2 margin there).
pub struct Agreement {
    pub max_abs_diff: f32,
    pub max_abs_logit: f32,
    pub top1_mismatches: Vec<(usize, usize, f32)>,
}

pub fn compare(model: &dyn Model, pool: &ThreadPool, reference: &Reference) -> Agreement {
    let mut agreement = Agreement {
        max_abs_diff: 0.0,
        max_abs_logit: 0.0,
        top1_mismatches: Vec::new(),
    };
    for (p, prompt) in reference.prompts.iter().enumerate() {
        let ours = full_pass(model, pool, &prompt.input_ids);
        for (&pos, want) in prompt.logit_positions.iter().zip(&prompt.logits) {
            let got = &ours[pos];
            assert_eq!(got.len(), want.len(), "vocabulary size");
            for (&g, &w) in got.iter().zip(want) {
                agreement.max_abs_diff = agreement.max_abs_diff.max((g - w).abs());
                agreement.max_abs_logit = agreement.max_abs_logit.max(w.abs());
            }
            if argmax(got) != argmax(want) {
                let mut sorted = want.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                agreement
                    .top1_mismatches
                    .push((p, pos, sorted[0] - sorted[1]));
            }
        }
    }
    agreement
}

/// The model's f32 logits within [`F32_MAX_ABS_LOGIT_DIFF`] of `reference` at every
/// stored position, with the same top-1.
pub fn check_logits(model: &dyn Model, reference: &Reference, what: &str) {
    let pool = ThreadPool::new(2).unwrap();
    let a = compare(model, &pool, reference);
    println!(
        "{what}: max |Δlogit| = {:.3e} (largest |logit| {:.2})",
        a.max_abs_diff, a.max_abs_logit
    );
    assert!(
        a.max_abs_diff <= F32_MAX_ABS_LOGIT_DIFF,
        "{what}: max |Δlogit| {} > {F32_MAX_ABS_LOGIT_DIFF}",
        a.max_abs_diff
    );
    assert!(
        a.top1_mismatches.is_empty(),
        "{what}: {:?}",
        a.top1_mismatches
    );
}

/// Both formats of `name` on the f32 path against `reference.json`, and the
/// architecture each reports.
pub fn check_f32_both_formats(name: &str, architecture: &str) {
    let dir = data_dir(name);
    let reference = read_reference(&dir);
    for format in BOTH_FORMATS {
        let model = load(&dir, format, Activations::F32);
        assert_eq!(model.info().architecture, architecture, "{format:?}");
        check_logits(
            model.as_ref(),
            &reference,
            &format!("{name} {format:?} f32"),
        );
    }
}

/// Greedy decoding, one token per forward after the prompt, gives the reference's
/// continuation, from both formats.
pub fn check_greedy_both_formats(name: &str) {
    for format in BOTH_FORMATS {
        check_greedy(&data_dir(name), format);
    }
}

/// Greedy decoding of the model in `dir`, one token per forward after each prompt of
/// its reference, gives the reference's continuation.
pub fn check_greedy(dir: &Path, format: Format) {
    let reference = read_reference(dir);
    let pool = ThreadPool::new(2).unwrap();
    let model = load(dir, format, Activations::F32);
    for prompt in &reference.prompts {
        let n_new = prompt.greedy_ids.len();
        let mut kv = model.new_kv_cache(prompt.input_ids.len() + n_new);
        let batch = Batch::for_sequence(0, 0, &prompt.input_ids);
        let mut next = argmax(model.forward(&batch, &mut kv, &pool).unwrap().row(0));
        let mut ours = vec![next];
        while ours.len() < n_new {
            let pos = prompt.input_ids.len() + ours.len() - 1;
            let batch = Batch::for_sequence(0, pos, &[next]);
            next = argmax(model.forward(&batch, &mut kv, &pool).unwrap().row(0));
            ours.push(next);
        }
        assert_eq!(ours, prompt.greedy_ids, "{} {format:?}", dir.display());
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Two sequences interleaved in one batch, then decoded one token per step together,
/// give the logits of a full pass of each alone, with f32 and 8-bit activations.
pub fn check_batched_and_incremental(name: &str) {
    let dir = data_dir(name);
    let pool = ThreadPool::new(2).unwrap();
    let reference = read_reference(&dir);
    let long = &reference.prompts[2].input_ids; // 300 tokens
    let short = &reference.prompts[1].input_ids; // 150 tokens
    for activations in [Activations::F32, Activations::Quantized] {
        let model = load(&dir, Format::Hf, activations);
        let want_long = full_pass(model.as_ref(), &pool, long);
        let want_short = full_pass(model.as_ref(), &pool, short);
        let mut kv = model.new_kv_cache(long.len());
        let (pre_long, pre_short) = (140, 100);
        let mut batch = Batch::new();
        batch.push_tokens(7, 0, &long[..pre_long], true);
        batch.push_tokens(3, 0, &short[..pre_short], true);
        let logits = model.forward(&batch, &mut kv, &pool).unwrap();
        let mut worst = 0.0f32;
        for (i, want) in want_long[..pre_long].iter().enumerate() {
            worst = worst.max(max_abs_diff(logits.row(i), want));
        }
        for (i, want) in want_short[..pre_short].iter().enumerate() {
            worst = worst.max(max_abs_diff(logits.row(pre_long + i), want));
        }
        for step in 0..(short.len() - pre_short) {
            let (pl, ps) = (pre_long + step, pre_short + step);
            let mut batch = Batch::new();
            batch.push_tokens(3, ps, &short[ps..ps + 1], true);
            batch.push_tokens(7, pl, &long[pl..pl + 1], true);
            let logits = model.forward(&batch, &mut kv, &pool).unwrap();
            worst = worst.max(max_abs_diff(logits.row(0), &want_short[ps]));
            worst = worst.max(max_abs_diff(logits.row(1), &want_long[pl]));
        }
        println!(
            "{name} {activations:?}: batched/incremental vs full pass max |Δlogit| = {worst:.3e}"
        );
        assert!(
            worst <= SAME_PASS_MAX_ABS_DIFF,
            "{name} {activations:?}: {worst}"
        );
    }
}

/// A prompt that starts with another sequence's cached blocks, and a sequence cut back
/// and continued, give the logits of a full pass.
pub fn check_prefix_reuse(name: &str) {
    let dir = data_dir(name);
    let pool = ThreadPool::new(2).unwrap();
    let model = load(&dir, Format::Hf, Activations::F32);
    let tokens = &read_reference(&dir).prompts[2].input_ids; // 300 tokens
    let want = full_pass(model.as_ref(), &pool, tokens);
    let mut kv = model.new_kv_cache(tokens.len());
    let mut worst = 0.0f32;
    let mut check_rows = |logits: &Logits, start: usize| {
        for i in 0..logits.n_rows() {
            worst = worst.max(max_abs_diff(logits.row(i), &want[start + i]));
        }
    };

    let mut batch = Batch::new();
    batch.push_tokens(1, 0, &tokens[..200], false);
    model.forward(&batch, &mut kv, &pool).unwrap();
    kv.register_tokens(1, &tokens[..200]);

    let reused = kv.attach_prefix(2, tokens);
    assert!(reused > 128, "only {reused} positions reused");
    let mut batch = Batch::new();
    batch.push_tokens(2, reused, &tokens[reused..], true);
    check_rows(&model.forward(&batch, &mut kv, &pool).unwrap(), reused);

    kv.truncate(2, 250);
    let kept = kv.seq_len(2);
    assert!(kept <= 250);
    let mut batch = Batch::new();
    batch.push_tokens(2, kept, &tokens[kept..], true);
    check_rows(&model.forward(&batch, &mut kv, &pool).unwrap(), kept);
    println!(
        "{name}: prefix reuse ({reused} positions) and truncation: max |Δlogit| = {worst:.3e}"
    );
    assert!(worst <= SAME_PASS_MAX_ABS_DIFF, "{name}: {worst}");
}

/// Both formats load the same model: architecture, vocabulary, layers, cache width.
pub fn check_formats_agree(name: &str) {
    let dir = data_dir(name);
    let hf = load(&dir, Format::Hf, Activations::F32);
    let gguf = load(&dir, Format::Gguf, Activations::F32);
    let (a, b) = (hf.info(), gguf.info());
    assert_eq!(
        (&a.architecture, a.n_vocab, a.n_layer, a.kv_width),
        (&b.architecture, b.n_vocab, b.n_layer, b.kv_width)
    );
}
