//! The engine loop on the default model: greedy generation against the
//! transformers reference, and the same tokens whatever the batching.

mod common;

use common::{default_model_path, reference};
use wazn_engine::{Engine, EngineError, EngineOptions, FinishReason, Request, SamplerParams};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

fn engine(n_batch: usize, activations: Activations) -> Engine {
    let options = EngineOptions {
        n_ctx: 512,
        n_threads: 2,
        n_batch,
        model: ModelOptions { activations },
    };
    Engine::load(&default_model_path(), options).expect("load the default model")
}

fn greedy_request(prompt_ids: &[u32], max_tokens: usize) -> Request {
    let mut request = Request::new(prompt_ids.to_vec(), SamplerParams::greedy(), max_tokens);
    request.ignore_eos = true; // the reference continues past end-of-generation tokens
    request
}

/// Runs every request to the end; returns each one's tokens and text, in order.
fn run_all(engine: &mut Engine, requests: Vec<Request>) -> Vec<(Vec<u32>, String, FinishReason)> {
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| engine.add_request(r).unwrap())
        .collect();
    let mut out = vec![(Vec::new(), String::new(), FinishReason::Cancelled); ids.len()];
    while engine.has_work() {
        for event in engine.step().unwrap() {
            let i = ids.iter().position(|&id| id == event.seq_id).unwrap();
            out[i].0.extend(event.token);
            out[i].1.push_str(&event.text);
            if let Some(reason) = event.finished {
                out[i].2 = reason;
            }
        }
    }
    out
}

#[test]
fn greedy_generation_equals_transformers_with_f32_activations() {
    let mut engine = engine(512, Activations::F32);
    for entry in reference().entries {
        let n = entry.greedy_ids.len();
        let got = run_all(&mut engine, vec![greedy_request(&entry.prompt_ids, n)]);
        assert_eq!(got[0].0, entry.greedy_ids, "{}", entry.id);
        assert_eq!(got[0].2, FinishReason::Length);
    }
}

#[test]
fn chunked_prompts_and_concurrent_sequences_give_the_same_tokens() {
    let entries = reference().entries;
    let requests = || -> Vec<Request> {
        entries
            .iter()
            .take(4)
            .map(|e| greedy_request(&e.prompt_ids, 12))
            .collect()
    };
    // One at a time, whole prompts in one step.
    let mut alone = Vec::new();
    let mut single = engine(512, Activations::Quantized);
    for request in requests() {
        alone.extend(run_all(&mut single, vec![request]));
    }
    // All four together, prompts in chunks of 5 rows shared between the sequences.
    let mut shared = engine(5, Activations::Quantized);
    let together = run_all(&mut shared, requests());
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a.0, t.0);
        assert_eq!(a.1, t.1);
    }
}

#[test]
fn a_prompt_arriving_during_decodes_is_computed_in_bounded_chunks() {
    let entries = reference().entries;
    let short: Vec<Request> = entries
        .iter()
        .take(2)
        .map(|e| greedy_request(&e.prompt_ids, 24))
        .collect();
    // A prompt several chunks long, made of the other reference prompts one after
    // another (none starts like the short ones, so the prefix cache holds none of it).
    let long_prompt: Vec<u32> = entries
        .iter()
        .skip(2)
        .flat_map(|e| e.prompt_ids.iter().copied())
        .take(100)
        .collect();
    assert!(
        long_prompt.len() > 3 * 16,
        "the prompt spans several chunks"
    );
    let long = greedy_request(&long_prompt, 6);

    let mut mixed = engine(512, Activations::Quantized);
    mixed.set_prefill_rows_with_decodes(16).unwrap();
    let ids: Vec<_> = short
        .iter()
        .map(|r| mixed.add_request(r.clone()).unwrap())
        .collect();
    let mut tokens = vec![Vec::new(); 3];
    // Both prompts in the first step, which decodes nothing yet.
    record(&mut tokens, mixed.step().unwrap(), &ids);
    let long_id = mixed.add_request(long.clone()).unwrap();
    let ids = [ids[0], ids[1], long_id];
    let mut n_chunk_steps = 0;
    while tokens[2].is_empty() {
        mixed.reset_profile();
        let events = mixed.step().unwrap();
        let rows = mixed.profile().n_rows;
        // Both decoding streams advance in every step, next to at most 16 prompt rows.
        assert!(rows <= 2 + 16, "{rows} rows in one step");
        assert!(events.iter().any(|e| e.seq_id == ids[0]));
        assert!(events.iter().any(|e| e.seq_id == ids[1]));
        record(&mut tokens, events, &ids);
        n_chunk_steps += 1;
    }
    assert_eq!(n_chunk_steps, long_prompt.len().div_ceil(16));
    while mixed.has_work() {
        record(&mut tokens, mixed.step().unwrap(), &ids);
    }
    assert!(mixed.set_prefill_rows_with_decodes(0).is_err());

    // The same tokens as each request alone, its prompt in one step.
    let mut single = engine(512, Activations::Quantized);
    for (request, got) in short.into_iter().chain([long]).zip(&tokens) {
        assert_eq!(&run_all(&mut single, vec![request])[0].0, got);
    }
}

/// Appends each event's token to the tokens of its request (`ids` in request order).
fn record(tokens: &mut [Vec<u32>], events: Vec<wazn_engine::Event>, ids: &[u32]) {
    for e in events {
        let i = ids.iter().position(|&id| id == e.seq_id).unwrap();
        tokens[i].extend(e.token);
    }
}

#[test]
fn a_seed_makes_sampling_reproducible() {
    let mut engine = engine(512, Activations::Quantized);
    let prompt = engine
        .tokenizer()
        .encode("Once upon a time", true, false)
        .unwrap();
    let sample = |engine: &mut Engine, seed: u64| {
        let params = SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..SamplerParams::default()
        };
        let mut request = Request::new(prompt.clone(), params, 24);
        request.ignore_eos = true;
        run_all(engine, vec![request]).remove(0).0
    };
    let first = sample(&mut engine, 42);
    assert_eq!(first, sample(&mut engine, 42));
    assert_ne!(first, sample(&mut engine, 43));
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let mut engine = engine(512, Activations::F32);
    let entry = reference()
        .entries
        .into_iter()
        .find(|e| e.id == "numbers")
        .unwrap();
    // Greedy continues " 1, 2, 3, 4, 5, ..."; stop at ", 4".
    let mut request = greedy_request(&entry.prompt_ids, 32);
    request.stop = vec![", 4".to_string()];
    let (_, text, reason) = run_all(&mut engine, vec![request]).remove(0);
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(text, " 1, 2, 3");
}

#[test]
fn generation_ends_at_end_of_generation_tokens() {
    let mut engine = engine(512, Activations::F32);
    let entry = reference()
        .entries
        .into_iter()
        .find(|e| e.id == "capital")
        .unwrap();
    // The reference's greedy continuation reaches <|im_end|> within its 32 tokens.
    let eog_at = entry
        .greedy_ids
        .iter()
        .position(|t| engine.tokenizer().eog_ids().contains(t))
        .expect("the reference continuation has an end-of-generation token");
    let mut request = greedy_request(&entry.prompt_ids, 32);
    request.ignore_eos = false;
    let (ids, text, reason) = run_all(&mut engine, vec![request]).remove(0);
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(ids.len(), eog_at + 1);
    assert!(!text.contains("<|im_end|>"));
}

#[test]
fn requests_that_cannot_run_are_refused() {
    let mut engine = engine(512, Activations::Quantized);
    let too_long = Request::new(vec![1; 600], SamplerParams::greedy(), 4);
    assert!(matches!(
        engine.add_request(too_long),
        Err(EngineError::PromptTooLong {
            n_prompt: 600,
            n_ctx: 512
        })
    ));
    let empty = Request::new(Vec::new(), SamplerParams::greedy(), 4);
    assert!(matches!(
        engine.add_request(empty),
        Err(EngineError::EmptyPrompt)
    ));
    let bad_token = Request::new(vec![10, 1_000_000], SamplerParams::greedy(), 4);
    assert!(engine.add_request(bad_token).is_err());
    assert!(!engine.has_work());
}
