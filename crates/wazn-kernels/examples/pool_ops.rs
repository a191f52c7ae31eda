//! Cost of one thread-pool op when the work is small: the barrier a decode step pays
//! a few hundred times per token.
//!
//! Run: `cargo run --release -p wazn-kernels --example pool_ops -- [OPS]` (default
//! 100000). For a few shapes of op (tasks × work per task) prints the mean
//! nanoseconds per op on 1, 2 and 4 threads (best of 5 runs, so a busy machine
//! inflates it less), and for 2 and 4 threads what the op takes beyond the 1-thread
//! time divided evenly over the threads: what sharing the op costs. The last shape is
//! a decode step's matrix product (36 tasks of 16 weight rows, about 0.3 µs each).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use wazn_kernels::ThreadPool;

/// About `n` iterations of dependent arithmetic: work that stays in registers.
fn busy(n: usize) -> usize {
    let mut x = 1usize;
    for i in 0..n {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// Best-of-5 nanoseconds per op for `n_ops` ops of `n_tasks` tasks of `work`
/// iterations of [`busy`] each.
fn ns_per_op(pool: &ThreadPool, n_ops: usize, n_tasks: usize, work: usize) -> f64 {
    let sink = AtomicUsize::new(0);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..n_ops {
            pool.run(n_tasks, &|i| {
                sink.fetch_add(busy(work) ^ i, Ordering::Relaxed);
            });
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e9 / n_ops as f64);
    }
    best
}

fn main() {
    let n_ops: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // Nanoseconds of one iteration of `busy`, timed alone (best of 5).
    let iters = 100_000;
    let iter_ns = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(busy(iters));
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .fold(f64::INFINITY, f64::min);
    // (tasks, nanoseconds of work per task)
    let shapes: [(usize, f64); 6] = [
        (1, 0.0),
        (2, 0.0),
        (8, 0.0),
        (2, 1000.0),
        (8, 1000.0),
        (36, 300.0),
    ];
    let pools: Vec<ThreadPool> = match [1, 2, 4].map(ThreadPool::new) {
        [Ok(a), Ok(b), Ok(c)] => vec![a, b, c],
        _ => {
            eprintln!("cannot start the pools' threads");
            return;
        }
    };
    println!(
        "tasks task_ns  1 thread ns/op  2 threads ns/op (over ideal)  4 threads ns/op (over ideal)"
    );
    for (n_tasks, task_ns) in shapes {
        let work = (task_ns / iter_ns).round() as usize;
        let ops = if work == 0 { n_ops } else { n_ops / 10 };
        let times: Vec<f64> = pools
            .iter()
            .map(|pool| ns_per_op(pool, ops, n_tasks, work))
            .collect();
        let over = |i: usize| {
            let threads = pools[i].n_threads();
            times[i] - times[0] * n_tasks.div_ceil(threads) as f64 / n_tasks as f64
        };
        println!(
            "{n_tasks:5} {task_ns:7.0}  {:14.0}  {:14.0} ({:+6.0})  {:14.0} ({:+6.0})",
            times[0],
            times[1],
            over(1),
            times[2],
            over(2)
        );
    }
}
