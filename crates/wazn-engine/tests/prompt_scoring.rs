//! Prompt scoring on the default model: the log-probability of each prompt token equals
//! the one the model gives that token when it is generated after the same prefix, and
//! neither chunked prompts, batching with other sequences, the prefix cache nor
//! preemption change a score or repeat one.

mod common;

use common::default_model_path;
use wazn_engine::{
    Engine, EngineOptions, FinishReason, PromptScoring, PromptTokenScore, Request, SamplerParams,
};

fn engine(n_batch: usize) -> Engine {
    let options = EngineOptions {
        n_ctx: 512,
        n_batch,
        n_threads: 2,
        ..EngineOptions::default()
    };
    Engine::load(&default_model_path(), options).expect("load the default model")
}

fn prompt(engine: &Engine, text: &str) -> Vec<u32> {
    engine.tokenizer().encode(text, true, false).unwrap()
}

const TEXT: &str = "The river rose through the night, and by morning the old stone bridge \
    was under water. Farmers moved their animals to the hills while the town council met \
    in the school hall to decide what to do about the road to the market.";

fn scoring(from: usize, top_logprobs: usize, raw_logits: bool) -> Request {
    let mut request = Request::new(Vec::new(), SamplerParams::greedy(), 0);
    request.prompt_scoring = Some(PromptScoring {
        from,
        top_logprobs,
        raw_logits,
    });
    request
}

/// Runs the requests together; returns each one's scores and how it finished.
fn run(engine: &mut Engine, requests: Vec<Request>) -> Vec<(Vec<PromptTokenScore>, FinishReason)> {
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| engine.add_request(r).unwrap())
        .collect();
    let mut out: Vec<(Vec<PromptTokenScore>, Option<FinishReason>)> =
        ids.iter().map(|_| (Vec::new(), None)).collect();
    while engine.has_work() {
        for event in engine.step().unwrap() {
            let i = ids.iter().position(|&id| id == event.seq_id).unwrap();
            assert!(out[i].1.is_none(), "an event after the end");
            out[i].0.extend(event.prompt_scores);
            out[i].1 = event.finished.or(out[i].1);
        }
    }
    out.into_iter()
        .map(|(scores, finish)| {
            let n = scores.len();
            (
                scores,
                finish.unwrap_or_else(|| panic!("every request ends ({n} scores)")),
            )
        })
        .collect()
}

fn with_prompt(mut request: Request, prompt: &[u32]) -> Request {
    request.prompt_ids = prompt.to_vec();
    request
}

#[test]
fn a_prompt_token_scores_as_the_same_token_generated_after_its_prefix() {
    let mut engine = engine(512);
    let ids = prompt(&engine, TEXT);
    let (scores, finish) = run(&mut engine, vec![with_prompt(scoring(1, 5, true), &ids)])
        .pop()
        .unwrap();
    assert_eq!(
        finish,
        FinishReason::Length,
        "max_tokens 0 ends after the prompt"
    );
    let positions: Vec<usize> = scores.iter().map(|s| s.pos).collect();
    assert_eq!(positions, (1..ids.len()).collect::<Vec<_>>());

    for &pos in &[1, 7, ids.len() / 2, ids.len() - 1] {
        let score = &scores[pos - 1];
        assert_eq!(score.token, ids[pos]);
        // The generation path: the prefix as prompt, one greedy token with its logprobs.
        let mut request = Request::new(ids[..pos].to_vec(), SamplerParams::greedy(), 1);
        request.top_logprobs = 5;
        let id = engine.add_request(request).unwrap();
        let mut generated = None;
        while engine.has_work() {
            for event in engine.step().unwrap() {
                if event.seq_id == id && event.token.is_some() {
                    generated = Some(event);
                }
            }
        }
        let generated = generated.expect("a generated token");
        // Same distribution: the same best five with the same log-probabilities.
        assert_eq!(generated.top_logprobs.len(), 5);
        for ((a, la), (b, lb)) in generated.top_logprobs.iter().zip(&score.top_logprobs) {
            assert_eq!(a, b, "position {pos}");
            assert!((la - lb).abs() < 1e-4, "position {pos}: {la} vs {lb}");
        }
        // The token's own log-probability, from the raw logits.
        let logits = score.logits.as_ref().expect("raw logits were asked for");
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        let expected = f64::from(logits[ids[pos] as usize] - max) - sum.ln();
        let expected = expected as f32;
        assert!(
            (score.logprob - expected).abs() < 1e-4,
            "{} vs {expected}",
            score.logprob
        );
        assert_eq!(score.is_greedy, generated.token == Some(ids[pos]));
    }
}

#[test]
fn chunks_batching_prefix_cache_and_from_change_no_score() {
    let mut whole = engine(512);
    let ids = prompt(&whole, TEXT);
    let reference = run(&mut whole, vec![with_prompt(scoring(1, 0, false), &ids)])
        .pop()
        .unwrap()
        .0;

    // Prompt chunks of 7 rows, next to another sequence that generates.
    let mut chunked = engine(7);
    let mut other = Request::new(
        prompt(&chunked, "Once upon a time"),
        SamplerParams::greedy(),
        20,
    );
    other.ignore_eos = true;
    let from = 20;
    let out = run(
        &mut chunked,
        vec![other, with_prompt(scoring(from, 0, false), &ids)],
    );
    let (scores, _) = &out[1];
    assert_eq!(scores.len(), ids.len() - from);
    for score in scores {
        let expected = &reference[score.pos - 1];
        assert_eq!((score.pos, score.token), (expected.pos, expected.token));
        assert!(
            (score.logprob - expected.logprob).abs() < 2e-3,
            "position {}: {} vs {}",
            score.pos,
            score.logprob,
            expected.logprob
        );
    }

    // The same prompt again: the prefix cache holds it, yet every score is computed.
    let again = run(&mut whole, vec![with_prompt(scoring(1, 0, false), &ids)])
        .pop()
        .unwrap()
        .0;
    assert_eq!(again.len(), reference.len());
    for (a, b) in again.iter().zip(&reference) {
        assert_eq!(a.pos, b.pos);
        assert!((a.logprob - b.logprob).abs() < 2e-3);
    }
}

#[test]
fn preempted_sequences_score_each_token_once() {
    let mut engine = engine(512);
    let ids = prompt(&engine, TEXT);
    // The older sequence generates past its prompt's blocks; the younger one, another text
    // of the same length (so that the prefix cache shares nothing), starts scoring in the
    // blocks left, is preempted when the older one needs them, and is computed again.
    let n_generated = 20;
    let blocks = (ids.len() + n_generated).div_ceil(wazn_engine::KV_BLOCK_SIZE);
    engine.set_kv_blocks(blocks).unwrap();
    let mut generating = Request::new(ids.clone(), SamplerParams::greedy(), n_generated);
    generating.ignore_eos = true;
    let mut other = ids.clone();
    other.reverse();
    let out = run(
        &mut engine,
        vec![generating, with_prompt(scoring(1, 0, false), &other)],
    );
    assert!(
        engine.profile().n_rows > 2 * ids.len() + n_generated,
        "the younger sequence was computed again: {} rows for {} prompt tokens",
        engine.profile().n_rows,
        ids.len()
    );
    assert_eq!(out[0].1, FinishReason::Length);
    let (scores, finish) = &out[1];
    assert_eq!(*finish, FinishReason::Length);
    let positions: Vec<usize> = scores.iter().map(|s| s.pos).collect();
    assert_eq!(positions, (1..ids.len()).collect::<Vec<_>>());
}
