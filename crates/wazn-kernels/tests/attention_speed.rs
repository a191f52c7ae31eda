//! Timings of the attention kernels, to choose the tile size and the split-KV
//! threshold (not run by default: they assert nothing about speed).
//!
//! cargo test -p wazn-kernels --release --test attention_speed -- --ignored --nocapture
//!
//! Shapes are SmolLM2-135M's (9 query heads, 3 KV heads of 64) unless noted.

use std::time::Instant;

use half::f16;
use wazn_kernels::attention::{
    attend_reference, attend_rows, AttendOptions, AttentionShape, KvBlocks, KvElement, QueryRow,
    SplitKv,
};
use wazn_kernels::pool::SyncMutPtr;
use wazn_kernels::{Isa, ThreadPool};

const BLOCK: usize = 16;

/// Thread counts to time: `ATTENTION_SPEED_THREADS` (comma-separated), else 1 and 2.
fn thread_counts() -> Vec<usize> {
    std::env::var("ATTENTION_SPEED_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

const SHAPE: AttentionShape = AttentionShape {
    n_head: 9,
    n_kv_head: 3,
    head_dim: 64,
    scale: 0.125,
};

fn blocks_of<T: KvElement>(n_pos: usize, kv_width: usize, seed: u32) -> Vec<Vec<T>> {
    (0..n_pos.div_ceil(BLOCK))
        .map(|b| {
            (0..BLOCK * kv_width)
                .map(|i| {
                    T::from_f32((((b * BLOCK * kv_width + i) as u32 ^ seed) as f32 * 0.37).sin())
                })
                .collect()
        })
        .collect()
}

/// Best of `reps` runs of `f`, in milliseconds.
fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// Causal attention of a whole prompt, as one forward pass runs it in each layer.
#[test]
#[ignore]
fn prompt_attention_speed() {
    let n = 512;
    let kv_width = SHAPE.n_kv_head * SHAPE.head_dim;
    let q_width = SHAPE.n_head * SHAPE.head_dim;
    let q: Vec<f32> = (0..n * q_width).map(|i| (i as f32 * 0.11).cos()).collect();
    let rows: Vec<QueryRow> = (0..n)
        .map(|p| QueryRow {
            seq: 0,
            keys: 0..p + 1,
        })
        .collect();
    let k32 = blocks_of::<f32>(n, kv_width, 1);
    let v32 = blocks_of::<f32>(n, kv_width, 2);
    let k16 = blocks_of::<f16>(n, kv_width, 1);
    let v16 = blocks_of::<f16>(n, kv_width, 2);
    let (kr32, vr32): (Vec<&[f32]>, Vec<&[f32]>) = (
        k32.iter().map(|b| b.as_slice()).collect(),
        v32.iter().map(|b| b.as_slice()).collect(),
    );
    let (kr16, vr16): (Vec<&[f16]>, Vec<&[f16]>) = (
        k16.iter().map(|b| b.as_slice()).collect(),
        v16.iter().map(|b| b.as_slice()).collect(),
    );
    let kv32 = [KvBlocks {
        block_size: BLOCK,
        keys: &kr32[..],
        values: &vr32[..],
    }];
    let kv16 = [KvBlocks {
        block_size: BLOCK,
        keys: &kr16[..],
        values: &vr16[..],
    }];
    let mut out = vec![0.0f32; n * q_width];
    for threads in thread_counts() {
        let pool = ThreadPool::new(threads).unwrap();
        let reference = best_ms(3, || {
            let ptr = SyncMutPtr::new(&mut out);
            pool.run(n, &|i| {
                // SAFETY: task i writes row i only.
                let o = unsafe { ptr.slice_mut(i * q_width, q_width) };
                let q_row = &q[i * q_width..(i + 1) * q_width];
                attend_reference(&SHAPE, q_row, &kv32[0], 0..i + 1, None, o, &mut Vec::new());
            });
        });
        println!(
            "pp{n} t{threads}: two-pass reference, f32 cache, row per task: {reference:.2} ms"
        );
        for isa in Isa::available() {
            for rows_per_task in [1, 4, 8, 16] {
                let options = AttendOptions {
                    isa,
                    split: SplitKv::Never,
                    rows_per_task,
                };
                let f32_ms = best_ms(3, || {
                    attend_rows(&pool, &options, &SHAPE, &q, &rows, &kv32, None, &mut out)
                });
                let f16_ms = best_ms(3, || {
                    attend_rows(&pool, &options, &SHAPE, &q, &rows, &kv16, None, &mut out)
                });
                println!(
                    "pp{n} t{threads}: {isa:?} rows/task {rows_per_task}: f32 cache {f32_ms:.2} ms, \
                     f16 cache {f16_ms:.2} ms ({:.1}x the reference)",
                    reference / f16_ms
                );
            }
        }
    }
}

/// One decode row over a long context: one pass per KV head vs split-KV pieces.
#[test]
#[ignore]
fn decode_attention_speed() {
    let kv_width = SHAPE.n_kv_head * SHAPE.head_dim;
    let q_width = SHAPE.n_head * SHAPE.head_dim;
    let q: Vec<f32> = (0..q_width).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut out = vec![0.0f32; q_width];
    for threads in thread_counts() {
        let pool = ThreadPool::new(threads).unwrap();
        for n_keys in [128, 256, 512, 1024, 2048, 4096, 8192] {
            let k16 = blocks_of::<f16>(n_keys, kv_width, 1);
            let v16 = blocks_of::<f16>(n_keys, kv_width, 2);
            let kr: Vec<&[f16]> = k16.iter().map(|b| b.as_slice()).collect();
            let vr: Vec<&[f16]> = v16.iter().map(|b| b.as_slice()).collect();
            let kv = [KvBlocks {
                block_size: BLOCK,
                keys: &kr[..],
                values: &vr[..],
            }];
            let rows = [QueryRow {
                seq: 0,
                keys: 0..n_keys,
            }];
            let k32 = blocks_of::<f32>(n_keys, kv_width, 1);
            let v32 = blocks_of::<f32>(n_keys, kv_width, 2);
            let kr32: Vec<&[f32]> = k32.iter().map(|b| b.as_slice()).collect();
            let vr32: Vec<&[f32]> = v32.iter().map(|b| b.as_slice()).collect();
            let kv32 = KvBlocks {
                block_size: BLOCK,
                keys: &kr32[..],
                values: &vr32[..],
            };
            let reference_us = 1e3
                * best_ms(5, || {
                    attend_reference(
                        &SHAPE,
                        &q,
                        &kv32,
                        0..n_keys,
                        None,
                        &mut out,
                        &mut Vec::new(),
                    )
                });
            let mut line = format!(
                "decode over {n_keys} keys, t{threads}: two-pass f32 {reference_us:.1} µs,"
            );
            for split in [
                SplitKv::Never,
                SplitKv::Pieces(2),
                SplitKv::Pieces(4),
                SplitKv::Auto,
            ] {
                let options = AttendOptions {
                    split,
                    ..AttendOptions::default()
                };
                let us = 1e3
                    * best_ms(20, || {
                        attend_rows(&pool, &options, &SHAPE, &q, &rows, &kv, None, &mut out)
                    });
                line += &format!(" {split:?} {us:.1} µs,");
            }
            println!("{line}");
        }
    }
}
