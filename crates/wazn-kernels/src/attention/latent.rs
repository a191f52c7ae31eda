//! Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) over a cache of one row per
//! position: the compressed latent `c` (`value_dim` values) then the shared RoPE key
//! (the rest of `key_dim`). With the key and value up-projections absorbed into the
//! query and the output, every head attends over those rows as if they were one
//! shared key/value head: its score is `q_h · [c, k_rope]` and its output the
//! softmax-weighted sum of the `c`s, still in latent space.
//!
//! Online softmax as in [`super::flash`], one key row at a time: each cached row is
//! widened once for all the heads of a task. A task is one query row and a run of its
//! heads, so a decode step's heads spread over the threads too.

use std::ops::Range;

use super::{KvBlocks, KvElement, QueryRow};
use crate::ops::dot;
use crate::pool::{SyncMutPtr, ThreadPool};

/// Shapes of one latent attention call.
#[derive(Clone, Copy, Debug)]
pub struct LatentShape {
    pub n_head: usize,
    /// Width of a query head and of a cached row: latent plus RoPE key.
    pub key_dim: usize,
    /// Width of the latent, the leading part of a cached row, and of an output head.
    pub value_dim: usize,
    /// Multiplies `q·k` before the softmax.
    pub scale: f32,
}

/// Heads per task.
const HEADS_PER_TASK: usize = 8;

/// `out[r]` (`[n, n_head, value_dim]`): latent attention of query row `r` (`q`:
/// `[n, n_head, key_dim]`) over the cached rows `rows[r].keys` of `kv[rows[r].seq]`
/// (its key blocks, `[block_size, key_dim]` each; values are not read). A row that
/// sees no key gets zeros.
pub fn attend_latent_rows<T: KvElement>(
    pool: &ThreadPool,
    shape: &LatentShape,
    q: &[f32],
    rows: &[QueryRow],
    kv: &[KvBlocks<'_, T>],
    out: &mut [f32],
) {
    let (n_head, kd, vd) = (shape.n_head, shape.key_dim, shape.value_dim);
    let chunks = n_head.div_ceil(HEADS_PER_TASK);
    let out_ptr = SyncMutPtr::new(out);
    pool.run(rows.len() * chunks, &|task| {
        let (r, chunk) = (task / chunks, task % chunks);
        let heads = chunk * HEADS_PER_TASK..((chunk + 1) * HEADS_PER_TASK).min(n_head);
        let q_rows = &q[(r * n_head + heads.start) * kd..(r * n_head + heads.end) * kd];
        // SAFETY: each task writes the output heads of its own (row, head run).
        let out = unsafe { out_ptr.slice_mut((r * n_head + heads.start) * vd, heads.len() * vd) };
        let row = &rows[r];
        match kv.get(row.seq) {
            Some(blocks) => attend_heads(shape, q_rows, blocks, row.keys.clone(), out),
            None => out.fill(0.0),
        }
    });
}

/// The heads of `q` (`[h, key_dim]`) of one row over `keys` of `kv`, into `out`
/// (`[h, value_dim]`).
fn attend_heads<T: KvElement>(
    shape: &LatentShape,
    q: &[f32],
    kv: &KvBlocks<'_, T>,
    keys: Range<usize>,
    out: &mut [f32],
) {
    let (kd, vd) = (shape.key_dim, shape.value_dim);
    let n_q = q.len() / kd.max(1);
    let mut max = vec![f32::NEG_INFINITY; n_q];
    let mut sum = vec![0.0f32; n_q];
    out.fill(0.0); // the weighted latents, rescaled as the max rises
    let mut row = vec![0.0f32; kd];
    let bs = kv.block_size.max(1);
    for pos in keys {
        let Some(cached) = kv
            .keys
            .get(pos / bs)
            .and_then(|b| b.get((pos % bs) * kd..(pos % bs + 1) * kd))
        else {
            continue; // a freed block lies before every window that could see it
        };
        T::widen(cached, &mut row);
        let latent = &row[..vd];
        for (i, q_head) in q.chunks_exact(kd).enumerate() {
            let s = dot(q_head, &row) * shape.scale;
            let acc = &mut out[i * vd..(i + 1) * vd];
            let w = if s > max[i] {
                let f = (max[i] - s).exp(); // 0 for the first key
                sum[i] *= f;
                acc.iter_mut().for_each(|a| *a *= f);
                max[i] = s;
                1.0
            } else {
                (s - max[i]).exp()
            };
            sum[i] += w;
            for (a, &c) in acc.iter_mut().zip(latent) {
                *a += w * c;
            }
        }
    }
    for (i, acc) in out.chunks_exact_mut(vd).enumerate() {
        let inv = if sum[i] > 0.0 { 1.0 / sum[i] } else { 0.0 };
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-pass softmax written plainly, over an unblocked cache.
    fn reference(shape: &LatentShape, q: &[f32], cache: &[f32], keys: Range<usize>) -> Vec<f32> {
        let (kd, vd) = (shape.key_dim, shape.value_dim);
        let mut out = Vec::new();
        for q_head in q.chunks_exact(kd) {
            let scores: Vec<f64> = keys
                .clone()
                .map(|p| {
                    let k = &cache[p * kd..(p + 1) * kd];
                    q_head
                        .iter()
                        .zip(k)
                        .map(|(a, b)| (a * b) as f64)
                        .sum::<f64>()
                        * shape.scale as f64
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..vd {
                let v: f64 = keys
                    .clone()
                    .zip(&e)
                    .map(|(p, w)| w * cache[p * kd + c] as f64)
                    .sum();
                out.push((v / z) as f32);
            }
        }
        out
    }

    #[test]
    fn latent_attention_equals_the_two_pass_softmax() {
        let shape = LatentShape {
            n_head: 11,
            key_dim: 20,
            value_dim: 16,
            scale: 0.3,
        };
        let n_pos = 37;
        let value = |i: usize| (i as f32 * 0.731).sin() * 2.0;
        let cache: Vec<f32> = (0..n_pos * shape.key_dim).map(value).collect();
        let blocks: Vec<&[f32]> = cache.chunks(5 * shape.key_dim).collect();
        let kv = [KvBlocks {
            block_size: 5,
            keys: &blocks,
            values: &[],
        }];
        let rows = vec![
            QueryRow {
                seq: 0,
                keys: 0..n_pos,
            },
            QueryRow {
                seq: 0,
                keys: 9..23,
            },
            QueryRow { seq: 0, keys: 0..1 },
        ];
        let q: Vec<f32> = (0..rows.len() * shape.n_head * shape.key_dim)
            .map(|i| value(i + 1000))
            .collect();
        let mut out = vec![f32::NAN; rows.len() * shape.n_head * shape.value_dim];
        let pool = ThreadPool::new(3).unwrap();
        attend_latent_rows(&pool, &shape, &q, &rows, &kv, &mut out);
        let per_row = shape.n_head * shape.key_dim;
        for (r, row) in rows.iter().enumerate() {
            let want = reference(
                &shape,
                &q[r * per_row..(r + 1) * per_row],
                &cache,
                row.keys.clone(),
            );
            let got = &out[r * shape.n_head * shape.value_dim..][..want.len()];
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "row {r}: {g} vs {w}");
            }
        }
    }
}
