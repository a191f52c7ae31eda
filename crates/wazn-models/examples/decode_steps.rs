//! Time of single-token decode steps, as `wazn bench`'s tg test runs them, with the
//! calling thread's CPU time beside the wall time.
//!
//! Run: `cargo run --release -p wazn-models --example decode_steps -- MODEL.gguf [THREADS] [STEPS] [REPS]`
//! (defaults: 1 thread, 128 steps, 5 repetitions). Each repetition decodes STEPS
//! tokens of one fresh sequence, one forward pass each; prints per repetition the
//! tokens per second (wall) and the calling thread's CPU milliseconds per token, then
//! the best of each. With one thread the CPU time is the step's whole cost, which a
//! busy machine inflates far less than the wall time.

use std::sync::Arc;
use std::time::Instant;

use wazn_formats::GgufFile;
use wazn_kernels::ThreadPool;
use wazn_models::{load_model, Batch, ModelOptions};

/// Seconds this thread has run on a CPU (its schedstat), or None where the kernel does
/// not say.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: decode_steps MODEL.gguf [THREADS] [STEPS] [REPS]")?;
    let arg = |i: usize, default: usize| -> Result<usize, std::num::ParseIntError> {
        args.get(i).map_or(Ok(default), |s| s.parse())
    };
    let (n_threads, n_steps, n_reps) = (arg(1, 1)?, arg(2, 128)?, arg(3, 5)?);
    let file = Arc::new(GgufFile::open(path)?);
    let model = load_model(file, &ModelOptions::default())?;
    let pool = ThreadPool::new(n_threads)?;
    let n_vocab = model.info().n_vocab as u32;
    let (mut best_tps, mut best_cpu) = (0.0f64, f64::INFINITY);
    for rep in 0..n_reps {
        let mut kv = model.new_kv_cache(n_steps + 1);
        let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
        for pos in 0..n_steps {
            let token = ((pos * 104_729 + 7919) as u32) % n_vocab;
            let logits = model.forward(&Batch::for_sequence(0, pos, &[token]), &mut kv, &pool)?;
            std::hint::black_box(logits);
        }
        let tps = n_steps as f64 / start.elapsed().as_secs_f64();
        let cpu_ms = cpu_start
            .zip(thread_cpu_seconds())
            .map_or(f64::NAN, |(a, b)| (b - a) * 1e3 / n_steps as f64);
        println!("rep {rep}: {tps:.1} tok/s, caller cpu {cpu_ms:.3} ms/token");
        best_tps = best_tps.max(tps);
        best_cpu = best_cpu.min(cpu_ms);
    }
    println!(
        "threads {n_threads}: best {best_tps:.1} tok/s, best caller cpu {best_cpu:.3} ms/token"
    );
    Ok(())
}
