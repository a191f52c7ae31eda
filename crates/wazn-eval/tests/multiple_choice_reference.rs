//! `wazn eval`'s scoring against Hugging Face transformers on the default model
//! (tests/data/eval_reference.json, written by tests/gen_eval_reference.py): the same
//! context / continuation split token for token, and the same log-likelihood per choice
//! within the logits tests' tolerance. With f32 activations the logits agree to 1e-3,
//! so a token's log-probability (its logit minus the log-sum-exp) to 2e-3, and a
//! choice's sum to 2e-3 per continuation token.

use serde::Deserialize;
use wazn_engine::{Engine, EngineOptions};
use wazn_eval::multiple_choice::encode_pair;
use wazn_eval::task::{context_with_shots, parse_task};
use wazn_eval::{evaluate, EvalOptions};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

const LOGPROB_TOLERANCE_PER_TOKEN: f64 = 2e-3;

/// Items of each case scored here (f32 activations are slow; the few-shot prompts are
/// long).
const ITEMS_PER_CASE: usize = 6;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    task: String,
    shots: usize,
    items: Vec<RefItem>,
}

#[derive(Deserialize)]
struct RefItem {
    id: String,
    gold: usize,
    choices: Vec<RefChoice>,
}

#[derive(Deserialize)]
struct RefChoice {
    context_len: usize,
    continuation_ids: Vec<u32>,
    ll: f64,
    is_greedy: bool,
}

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn engine() -> Engine {
    let path = wazn_formats::model_cache::default_model_path().expect("HOME or WAZN_CACHE_DIR");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-default-model",
        path.display()
    );
    let options = EngineOptions {
        n_ctx: 2048,
        n_threads: 2,
        n_batch: 512,
        model: ModelOptions {
            activations: Activations::F32,
        },
    };
    Engine::load(&path, options).expect("load the default model")
}

#[test]
fn log_likelihoods_match_transformers() {
    let reference: Reference = serde_json::from_str(&data("eval_reference.json")).unwrap();
    let mut engine = engine();
    let mut worst = 0.0f64;
    for case in &reference.cases {
        let items = parse_task(&data(&case.task)).unwrap();
        assert_eq!(items.len(), case.items.len());
        // The split into context and continuation, token for token.
        for (index, (item, expected)) in items.iter().zip(&case.items).enumerate() {
            assert_eq!(item.id, expected.id);
            assert_eq!(item.gold, expected.gold);
            let context = context_with_shots(&items, index, case.shots);
            for (choice, want) in expected.choices.iter().enumerate() {
                let pair =
                    encode_pair(engine.tokenizer(), &context, &item.continuation(choice)).unwrap();
                assert_eq!(
                    pair.context.len(),
                    want.context_len,
                    "{} choice {choice}",
                    item.id
                );
                assert_eq!(
                    pair.continuation, want.continuation_ids,
                    "{} choice {choice}",
                    item.id
                );
            }
        }
        let options = EvalOptions {
            n_shots: case.shots,
            limit: Some(ITEMS_PER_CASE),
            max_in_flight: 16,
        };
        let report = evaluate(&mut engine, &items, &options, &mut |_| {}).unwrap();
        assert_eq!(report.items.len(), ITEMS_PER_CASE);
        for (got, want) in report.items.iter().zip(&case.items) {
            for (choice, (ll, expected)) in got.lls.iter().zip(&want.choices).enumerate() {
                let tolerance =
                    LOGPROB_TOLERANCE_PER_TOKEN * expected.continuation_ids.len() as f64;
                let diff = (ll - expected.ll).abs();
                worst = worst.max(diff);
                assert!(
                    diff <= tolerance,
                    "{} ({} shots) {} choice {choice}: {ll} vs transformers {}",
                    case.task,
                    case.shots,
                    got.id,
                    expected.ll
                );
                assert_eq!(
                    got.is_greedy[choice], expected.is_greedy,
                    "{} choice {choice}: is_greedy",
                    got.id
                );
            }
            // The prediction is the same unless two choices are within the tolerance.
            let expected_lls: Vec<f64> = want_lls(want);
            let best = expected_lls
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let runner_up = expected_lls
                .iter()
                .copied()
                .filter(|&l| l < best)
                .fold(f64::NEG_INFINITY, f64::max);
            if best - runner_up > 0.01 {
                let want_pred = expected_lls.iter().position(|&l| l == best).unwrap();
                assert_eq!(
                    got.pred, want_pred,
                    "{} ({} shots) {}",
                    case.task, case.shots, got.id
                );
            }
        }
    }
    eprintln!("largest |Δ log-likelihood| against transformers: {worst:.2e}");
}

fn want_lls(item: &RefItem) -> Vec<f64> {
    item.choices.iter().map(|c| c.ll).collect()
}
