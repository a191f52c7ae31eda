//! Time and memory of a comparison at a real model's shapes, without its files: two random
//! models with Llama-3.1-8B's attention and embedding shapes (hidden 4096, 32 layers, 32 query
//! and 8 key heads of 128, a 4,096-token sketch), generated layer by layer as a file would be
//! dequantized, then the comparison and its null as `wazn fingerprint compare` runs them.
//!
//!   cargo run --release -p wazn-fingerprint --example compare_speed -- [THREADS] [N_LAYER]
//!
//! It measures the statistics' cost; reading and dequantizing real files adds to it. The
//! seconds spent in each stage (alignment, layers, null) go to stderr.

use std::sync::Mutex;
use std::time::Instant;

use wazn_fingerprint::{
    null_distribution, score_pair, ModelFacts, PairOutcome, Progress, RandomModel, WeightSource,
    DEFAULT_NULL_MODELS, SKETCH_TOKENS,
};

/// Prints how long each stage took when the next one begins.
struct StageTimes {
    current: Mutex<Option<(String, Instant)>>,
}

impl StageTimes {
    fn finish(&self) {
        if let Ok(mut current) = self.current.lock() {
            if let Some((what, since)) = current.take() {
                eprintln!("  {what}: {:.1} s", since.elapsed().as_secs_f64());
            }
        }
    }
}

impl Progress for StageTimes {
    fn stage(&self, what: &str, _done: usize, _total: usize) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if current.as_ref().is_some_and(|(w, _)| w == what) {
            return;
        }
        if let Some((previous, since)) = current.take() {
            eprintln!("  {previous}: {:.1} s", since.elapsed().as_secs_f64());
        }
        *current = Some((what.to_string(), Instant::now()));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let n_layer: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let facts = ModelFacts {
        architecture: "llama".into(),
        origin: "random".into(),
        n_embd: 4096,
        n_layer,
        n_head: 32,
        n_kv_head: 8,
        head_dim: 128,
        n_vocab: 128_256,
        vocabulary_hash: String::new(),
        declared: Vec::new(),
        latent: None,
    };
    let tokens: Vec<u64> = (0..SKETCH_TOKENS as u64).collect();
    let a = RandomModel::new(&facts, tokens.clone(), 1001);
    let b = RandomModel::new(&facts, tokens, 1002);
    let times = StageTimes {
        current: Mutex::new(None),
    };
    let start = Instant::now();
    times.stage("sketches and shared tokens", 0, 1);
    let PairOutcome::Scored(s) = score_pair(&a, &b, None, n_threads, &times)? else {
        return Err("the two models share no tokens".into());
    };
    times.finish();
    let pair_s = start.elapsed().as_secs_f64();
    let anchors: [&dyn WeightSource; 2] = [&a, &b];
    let null = null_distribution(&anchors, DEFAULT_NULL_MODELS, &[], n_threads, &times)?;
    times.finish();
    let total_s = start.elapsed().as_secs_f64();
    println!(
        "{n_layer} layers, {n_threads} threads: pair {pair_s:.1} s (score {:.4}), null of {} {:.1} s, total {total_s:.1} s",
        s.score,
        null.n,
        total_s - pair_s
    );
    Ok(())
}
