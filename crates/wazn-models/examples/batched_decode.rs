//! Cost of one decode step over many sequences against one step over a single sequence.
//!
//! Run: `cargo run --release -p wazn-models --example batched_decode -- MODEL.gguf [THREADS] [N_SEQ]`
//! (defaults: 1 thread, 8 sequences). Each sequence is prefilled with 32 tokens, then
//! steps of 1 row (sequence 0 alone) and of N_SEQ rows (one per sequence, every row
//! asking for logits, as a server's decode step does) alternate, so both see the same
//! cache lengths and machine load. Prints the median milliseconds of each kind of step
//! and their ratio (with one thread also the median CPU time of the calling thread,
//! which a busy machine does not inflate); the weights are read once per step either way.

use std::sync::Arc;
use std::time::Instant;

use wazn_formats::GgufFile;
use wazn_kernels::ThreadPool;
use wazn_models::{load_model, Batch, BatchRow, ModelOptions};

const PREFILL: usize = 32;
const STEPS: usize = 24;

/// Seconds this thread has run on a CPU (its schedstat), or None where the kernel does
/// not say. With one thread the caller runs every task, so this is the step's CPU time,
/// which other processes on a busy machine do not inflate.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// Runs `f`, returning its wall seconds and the calling thread's CPU seconds.
fn timed(
    f: impl FnOnce() -> Result<(), wazn_models::ModelError>,
) -> Result<(f64, f64), wazn_models::ModelError> {
    let (t, cpu) = (Instant::now(), thread_cpu_seconds());
    f()?;
    let cpu = cpu.zip(thread_cpu_seconds()).map_or(0.0, |(a, b)| b - a);
    Ok((t.elapsed().as_secs_f64(), cpu))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: batched_decode MODEL.gguf [THREADS] [N_SEQ]")?;
    let n_threads: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let n_seq: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let file = Arc::new(GgufFile::open(path)?);
    let model = load_model(file, &ModelOptions::default())?;
    let pool = ThreadPool::new(n_threads)?;
    let n_vocab = model.info().n_vocab as u32;
    let mut kv = model.new_kv_cache(PREFILL + 2 * STEPS + 8);
    let token = |s: usize, p: usize| ((s * 7919 + p * 104_729) as u32) % n_vocab;

    for s in 0..n_seq {
        let tokens: Vec<u32> = (0..PREFILL).map(|p| token(s, p)).collect();
        model.forward(&Batch::for_sequence(s as u32, 0, &tokens), &mut kv, &pool)?;
    }
    let mut pos = vec![PREFILL; n_seq];
    let (mut one, mut many) = (Vec::new(), Vec::new());
    let (mut one_cpu, mut many_cpu) = (Vec::new(), Vec::new());
    for _ in 0..STEPS {
        let batch = Batch {
            rows: vec![BatchRow {
                seq_id: 0,
                pos: pos[0],
                token: token(0, pos[0]),
                wants_logits: true,
                wants_hidden: false,
            }],
        };
        let (wall, cpu) = timed(|| model.forward(&batch, &mut kv, &pool).map(drop))?;
        one.push(wall);
        one_cpu.push(cpu);
        pos[0] += 1;

        let rows = (0..n_seq)
            .map(|s| BatchRow {
                seq_id: s as u32,
                pos: pos[s],
                token: token(s, pos[s]),
                wants_logits: true,
                wants_hidden: false,
            })
            .collect();
        let batch = Batch { rows };
        let (wall, cpu) = timed(|| model.forward(&batch, &mut kv, &pool).map(drop))?;
        many.push(wall);
        many_cpu.push(cpu);
        pos.iter_mut().for_each(|p| *p += 1);
    }
    let (one, many) = (median(one) * 1e3, median(many) * 1e3);
    println!(
        "threads {n_threads}: 1 row {one:.2} ms, {n_seq} rows {many:.2} ms, ratio {:.2}",
        many / one
    );
    if n_threads == 1 {
        let (one, many) = (median(one_cpu) * 1e3, median(many_cpu) * 1e3);
        println!(
            "  cpu time: 1 row {one:.2} ms, {n_seq} rows {many:.2} ms, ratio {:.2}",
            many / one
        );
    }
    Ok(())
}
