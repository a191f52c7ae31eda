//! The paged KV cache under the engine: a pool too small for every sequence at once
//! (sequences give their blocks back and compute again later), prefix reuse, and the
//! same greedy tokens in every case as a sequence alone with room to spare.

mod common;

use common::{default_model_path, reference};
use wazn_engine::{Engine, EngineError, EngineOptions, Request, SamplerParams, KV_BLOCK_SIZE};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;

fn engine(kv_blocks: usize) -> Engine {
    let options = EngineOptions {
        n_ctx: 256,
        n_threads: 2,
        n_batch: 64,
        model: ModelOptions {
            activations: Activations::Quantized,
        },
    };
    let mut engine = Engine::load(&default_model_path(), options).expect("load the default model");
    engine.set_kv_blocks(kv_blocks).expect("kv blocks");
    engine
}

fn prompts() -> Vec<Vec<u32>> {
    reference()
        .entries
        .into_iter()
        .map(|e| e.prompt_ids)
        .collect()
}

fn greedy(prompt: &[u32], max_tokens: usize) -> Request {
    let mut request = Request::new(prompt.to_vec(), SamplerParams::greedy(), max_tokens);
    request.ignore_eos = true;
    request
}

/// Runs the requests together to the end; each one's tokens, in order.
fn run_all(engine: &mut Engine, requests: Vec<Request>) -> Vec<Vec<u32>> {
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| engine.add_request(r).expect("add"))
        .collect();
    let mut out = vec![Vec::new(); ids.len()];
    let mut steps = 0;
    while engine.has_work() {
        steps += 1;
        assert!(steps < 10_000, "the engine does not finish");
        for event in engine.step().expect("step") {
            let i = ids.iter().position(|&id| id == event.seq_id).expect("id");
            out[i].extend(event.token);
        }
    }
    out
}

#[test]
fn a_small_pool_gives_the_same_tokens_as_ample_room() {
    let prompts = prompts();
    let n_new = 24;
    let mut roomy = engine(1024);
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| run_all(&mut roomy, vec![greedy(p, n_new)]).remove(0))
        .collect();
    // Room for the longest sequence alone, far from all eight at once.
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) + n_new;
    let mut tight = engine(longest.div_ceil(KV_BLOCK_SIZE) + 2);
    let together = run_all(
        &mut tight,
        prompts.iter().map(|p| greedy(p, n_new)).collect(),
    );
    assert_eq!(alone, together);
    assert_eq!(tight.kv_usage().blocks_used, 0);
    assert_eq!(roomy.kv_usage().blocks_used, 0);
}

#[test]
fn a_repeated_prompt_reuses_its_cached_blocks() {
    let prompt = prompts().into_iter().max_by_key(Vec::len).expect("prompts");
    let mut e = engine(256);
    let first = run_all(&mut e, vec![greedy(&prompt, 8)]);
    let before = e.kv_usage();
    let second = run_all(&mut e, vec![greedy(&prompt, 8)]);
    let after = e.kv_usage();
    assert_eq!(first, second);
    let reusable = (prompt.len() - 1) / KV_BLOCK_SIZE * KV_BLOCK_SIZE;
    assert!(reusable > 0);
    assert_eq!(
        after.prefix_hit_tokens - before.prefix_hit_tokens,
        reusable as u64
    );
    assert_eq!(after.blocks_used, 0);
    assert!(after.blocks_cached > 0);
}

#[test]
fn a_prompt_larger_than_the_pool_is_refused() {
    let prompt = prompts().into_iter().max_by_key(Vec::len).expect("prompts");
    let mut e = engine(1);
    let err = e.add_request(greedy(&prompt, 4)).expect_err("too large");
    assert!(matches!(err, EngineError::CacheTooSmall { .. }), "{err}");
}
