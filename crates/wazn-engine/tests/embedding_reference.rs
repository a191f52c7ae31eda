//! Embeddings through the engine against sentence-transformers: a tiny random model laid
//! out as Qwen3-Embedding is (Qwen3, last-token pooling, `<|endoftext|>` appended by the
//! tokenizer, vectors made unit length), from its Hugging Face folder and from the GGUF
//! llama.cpp's converter made of it, batched, in chunks, beside a generation, in a cache too
//! small for everything at once, and again from the prefix cache. The fixture and its
//! reference are written by `scripts/reference/qwen3_embedding_tiny.py`.

mod common;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wazn_engine::{
    EmbeddingSupport, Engine, EngineError, EngineOptions, Pooling, Request, SamplerParams,
};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

/// Elementwise and cosine bounds against the reference's unit vectors.
const MAX_ABS_DIFF: f32 = 1e-3;
const MIN_COSINE: f64 = 0.9999;

#[derive(Deserialize)]
struct Reference {
    hidden_size: usize,
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    /// Absent for the input given as token ids only.
    text: Option<String>,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
    embedding_mean: Option<Vec<f32>>,
    embedding_cls: Option<Vec<f32>>,
}

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-models/tests/data/qwen3_embedding"
    ))
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(data_dir().join("reference.json")).expect("reference");
    serde_json::from_str(&text).expect("parse the reference")
}

fn engine(path: &Path, n_ctx: usize, n_batch: usize) -> Engine {
    let options = EngineOptions {
        n_ctx,
        n_threads: 2,
        n_batch,
        model: ModelOptions {
            activations: Activations::F32,
        },
    };
    Engine::load(path, options).expect("load the embedding model")
}

/// Runs the requests together to the end; the vector of each embedding request, made unit
/// length (`None` for the others).
fn run_all(engine: &mut Engine, requests: Vec<Request>) -> Vec<Option<Vec<f32>>> {
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| engine.add_request(r).expect("add"))
        .collect();
    let mut out = vec![None; ids.len()];
    let mut steps = 0;
    while engine.has_work() {
        steps += 1;
        assert!(steps < 10_000, "the engine does not finish");
        for event in engine.step().expect("step") {
            let i = ids.iter().position(|&id| id == event.seq_id).expect("id");
            if let Some(vector) = event.embedding {
                assert!(event.token.is_none(), "an embedding generated a token");
                assert!(out[i].is_none(), "two vectors for one request");
                out[i] = Some(unit(&vector));
            }
        }
    }
    assert_eq!(
        engine.kv_usage().blocks_used,
        0,
        "a sequence still holds blocks"
    );
    out
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

/// Largest elementwise difference and cosine of `got` against `want`.
fn compare(got: &[f32], want: &[f32]) -> (f32, f64) {
    assert_eq!(got.len(), want.len());
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    };
    let cosine = dot(got, want) / (dot(got, got) * dot(want, want)).sqrt();
    (max_abs, cosine)
}

/// Checks every vector against its reference; returns the worst difference and cosine.
fn check_all(what: &str, got: &[Option<Vec<f32>>], want: &[&[f32]]) -> (f32, f64) {
    let mut worst = (0.0f32, 1.0f64);
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no vector for input {i}"));
        let (max_abs, cosine) = compare(got, want);
        assert!(
            max_abs <= MAX_ABS_DIFF && cosine >= MIN_COSINE,
            "{what}, input {i}: max |diff| {max_abs:.2e}, cosine {cosine:.6}"
        );
        worst = (worst.0.max(max_abs), worst.1.min(cosine));
    }
    println!(
        "{what}: max |wazn - sentence-transformers| {:.2e}, min cosine {:.7}",
        worst.0, worst.1
    );
    worst
}

/// Each input's ids: text tokenized by wazn (checked against the reference's), or the ids.
fn prompt_ids(engine: &Engine, input: &Input) -> Vec<u32> {
    if let Some(text) = &input.text {
        let ids = engine.tokenizer().encode(text, true, true).expect("encode");
        assert_eq!(ids, input.input_ids, "tokens of {text:?}");
    }
    input.input_ids.clone()
}

#[test]
fn last_token_embeddings_match_sentence_transformers_from_both_formats() {
    let reference = reference();
    let want: Vec<&[f32]> = reference.inputs.iter().map(|i| &i.embedding[..]).collect();
    for (what, path) in [
        ("hf", data_dir().join("hf")),
        ("gguf", data_dir().join("tiny.gguf")),
    ] {
        let mut engine = engine(&path, 512, 512);
        assert_eq!(
            *engine.embedding_support(),
            EmbeddingSupport::Pooled {
                pooling: Pooling::Last,
                normalize: true
            },
            "{what}"
        );
        assert_eq!(engine.model().hidden_width(), Some(reference.hidden_size));
        let requests = reference
            .inputs
            .iter()
            .map(|input| Request::embedding(prompt_ids(&engine, input), Pooling::Last))
            .collect();
        let got = run_all(&mut engine, requests);
        check_all(what, &got, &want);
    }
}

#[test]
fn chunked_and_preempted_embeddings_beside_a_generation_then_cached_match() {
    let reference = reference();
    let want: Vec<&[f32]> = reference.inputs.iter().map(|i| &i.embedding[..]).collect();
    // Prompts in chunks of 5 rows, and fewer cache blocks than every sequence wants at once
    // (the longest input alone takes all 13): sequences give their blocks back and start
    // again.
    let mut engine = engine(&data_dir().join("tiny.gguf"), 512, 5);
    engine.set_kv_blocks(13).expect("kv blocks");
    // A generation that grows to take every block (its prompt shares no prefix with the
    // inputs): the embeddings that hold blocks when it needs one are preempted.
    let prompt: Vec<u32> = reference.inputs[1]
        .input_ids
        .iter()
        .rev()
        .copied()
        .collect();
    let mut generation = Request::new(prompt, SamplerParams::greedy(), 90);
    generation.ignore_eos = true;
    let embeddings = |engine: &Engine| -> Vec<Request> {
        reference
            .inputs
            .iter()
            .map(|input| Request::embedding(prompt_ids(engine, input), Pooling::Last))
            .collect()
    };
    let mut requests = vec![generation];
    requests.extend(embeddings(&engine));
    let n_prompt_tokens: usize = requests.iter().map(|r| r.prompt_ids.len()).sum();
    let got = run_all(&mut engine, requests);
    assert!(got[0].is_none(), "the generation got a vector");
    // Each sequence asks the prefix cache once when it starts, and again after it was
    // preempted.
    assert!(
        engine.kv_usage().prefix_lookup_tokens > n_prompt_tokens as u64,
        "no sequence was preempted"
    );
    check_all("chunked, small cache", &got[1..], &want);

    // Again: the inputs' full blocks are in the prefix cache now, and only the rows after
    // them (the pooled last one among them) are computed.
    let hits_before = engine.kv_usage().prefix_hit_tokens;
    let requests = embeddings(&engine);
    let got = run_all(&mut engine, requests);
    assert!(
        engine.kv_usage().prefix_hit_tokens > hits_before,
        "no prompt was served from the prefix cache"
    );
    check_all("from the prefix cache", &got, &want);
}

/// A copy of the Hugging Face folder whose Pooling module pools as `mode` says.
fn folder_pooling(mode: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("qwen3-embedding-{mode}"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&data_dir().join("hf"), &dir);
    let config = dir.join("1_Pooling/config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("parse");
    json["pooling_mode_lasttoken"] = false.into();
    json[format!("pooling_mode_{mode}")] = true.into();
    std::fs::write(&config, json.to_string()).expect("write");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn mean_and_cls_pooling_match_sentence_transformers() {
    let reference = reference();
    let texts: Vec<&Input> = reference
        .inputs
        .iter()
        .filter(|i| i.text.is_some())
        .collect();
    for (mode, pooling) in [("mean_tokens", Pooling::Mean), ("cls_token", Pooling::Cls)] {
        // Chunks of 5 rows: the mean gathers its rows over several steps.
        let mut engine = engine(&folder_pooling(mode), 512, 5);
        assert_eq!(
            *engine.embedding_support(),
            EmbeddingSupport::Pooled {
                pooling,
                normalize: true
            }
        );
        let want: Vec<&[f32]> = texts
            .iter()
            .map(|i| match pooling {
                Pooling::Mean => i.embedding_mean.as_deref(),
                _ => i.embedding_cls.as_deref(),
            })
            .map(|v| v.expect("a reference for this pooling"))
            .collect();
        let requests = texts
            .iter()
            .map(|input| Request::embedding(prompt_ids(&engine, input), pooling))
            .collect();
        let got = run_all(&mut engine, requests);
        check_all(mode, &got, &want);
        // Pooled differently, the vectors are different: the pooling really was applied.
        let (max_abs, _) = compare(got[0].as_deref().unwrap_or_default(), &texts[0].embedding);
        assert!(
            max_abs > 1e-2,
            "{mode} pooling gave the last token's vector"
        );
    }
}

#[test]
fn an_embedding_may_fill_the_context_and_no_more() {
    let mut engine = engine(&data_dir().join("tiny.gguf"), 16, 512);
    let ids: Vec<u32> = (0..17).collect();
    let err = engine
        .add_request(Request::embedding(ids.clone(), Pooling::Last))
        .expect_err("17 tokens in a context of 16");
    assert!(matches!(
        err,
        EngineError::PromptTooLong {
            n_prompt: 17,
            n_ctx: 16
        }
    ));
    let got = run_all(
        &mut engine,
        vec![Request::embedding(ids[..16].to_vec(), Pooling::Last)],
    );
    assert!(got[0].is_some());
    // A generation needs a position for its answer.
    let err = engine
        .add_request(Request::new(ids[..16].to_vec(), SamplerParams::greedy(), 1))
        .expect_err("no room to generate");
    assert!(matches!(err, EngineError::PromptTooLong { .. }));
}

#[test]
fn a_language_model_declares_no_pooling() {
    let options = EngineOptions {
        n_ctx: 64,
        n_threads: 2,
        n_batch: 64,
        model: ModelOptions::default(),
    };
    let engine = Engine::load(&common::default_model_path(), options).expect("default model");
    match engine.embedding_support() {
        EmbeddingSupport::Unavailable(reason) => {
            assert!(reason.contains("pooling_type"), "{reason}")
        }
        other => panic!("SmolLM2 declares {other:?}"),
    }
}
