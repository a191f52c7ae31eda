//! Attention of SmolLM2-135M's shape (9 query heads over 3 KV heads of 64, f16 cache in
//! blocks of 16 positions): a causal prompt of 512 rows, and one decode row over 512 and
//! 4096 cached positions (split-KV where the threads ask for it), on 1 and 2 threads.
//!
//! Run: `cargo bench -p wazn-kernels --bench attention`.
//! Prints the fastest of many runs (the machine may be shared: the fastest run is the one
//! least disturbed) in microseconds, and the multiply-adds per nanosecond of `q·k` and
//! `p·v` together (causal rows counted by the keys they see).

use std::hint::black_box;
use std::time::{Duration, Instant};

use half::f16;
use wazn_kernels::attention::{attend_rows, AttendOptions, AttentionShape, KvBlocks, QueryRow};
use wazn_kernels::ThreadPool;

const BLOCK: usize = 16;
const SHAPE: AttentionShape = AttentionShape {
    n_head: 9,
    n_kv_head: 3,
    head_dim: 64,
    scale: 0.125,
};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Fastest seconds per call of `f`, run for about `budget`.
fn fastest(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let kv_width = SHAPE.n_kv_head * SHAPE.head_dim;
    let q_width = SHAPE.n_head * SHAPE.head_dim;
    let n_pos = 4096;
    let mut seed = 1u64;
    let mut block = || -> Vec<f16> {
        (0..BLOCK * kv_width)
            .map(|_| f16::from_f32(lcg(&mut seed)))
            .collect()
    };
    let keys: Vec<Vec<f16>> = (0..n_pos / BLOCK).map(|_| block()).collect();
    let values: Vec<Vec<f16>> = (0..n_pos / BLOCK).map(|_| block()).collect();
    let key_views: Vec<&[f16]> = keys.iter().map(Vec::as_slice).collect();
    let value_views: Vec<&[f16]> = values.iter().map(Vec::as_slice).collect();
    let kv = [KvBlocks {
        block_size: BLOCK,
        keys: &key_views,
        values: &value_views,
    }];
    let mut seed = 2u64;
    let q: Vec<f32> = (0..512 * q_width).map(|_| lcg(&mut seed) * 3.0).collect();
    let options = AttendOptions::default();
    let budget = Duration::from_secs(2);
    // Labels to run (all when none given), e.g. `-- prompt`.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads).expect("thread pool");
        let run = |rows: &[QueryRow], label: &str| {
            if !only.is_empty() && !only.iter().any(|o| label.contains(o.as_str())) {
                return;
            }
            let mut out = vec![0.0f32; rows.len() * q_width];
            let secs = fastest(budget, || {
                attend_rows(
                    &pool,
                    &options,
                    &SHAPE,
                    &q[..rows.len() * q_width],
                    rows,
                    &kv,
                    None,
                    &mut out,
                );
                black_box(&out);
            });
            let keys_seen: usize = rows.iter().map(|r| r.keys.len()).sum();
            let macs = 2 * keys_seen * q_width;
            println!(
                "{label:<24} {threads} thread(s): {:>9.1} µs  {:>6.2} MAC/ns",
                secs * 1e6,
                macs as f64 / secs / 1e9
            );
        };
        let prompt: Vec<QueryRow> = (0..512)
            .map(|p| QueryRow {
                seq: 0,
                keys: 0..p + 1,
            })
            .collect();
        run(&prompt, "prompt 512 rows");
        for ctx in [512, 4096] {
            let decode = [QueryRow {
                seq: 0,
                keys: 0..ctx,
            }];
            run(&decode, &format!("decode over {ctx}"));
        }
    }
}
