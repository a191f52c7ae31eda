//! Attention in one pass over the key blocks with an online softmax.
//!
//! For each query `i` the state keeps the largest score seen `m_i`, the sum
//! `l_i = Σ_j exp(s_ij - m_i)` and the weighted values `a_i = Σ_j exp(s_ij - m_i) · v_j`.
//! A block of keys raises `m_i` to `m'`; what was summed before is rescaled by
//! `exp(m_i - m')`. At the end `out_i = a_i / l_i`, or with a sink logit `σ_i`,
//! `out_i = a_i · e^(m_i - t) / (l_i · e^(m_i - t) + e^(σ_i - t))` with
//! `t = max(m_i, σ_i)`: the same weights as the two-pass softmax with the sink in the
//! denominator. Two states over disjoint keys merge the same way (split-KV).
//!
//! The queries fed together all read the same KV head: the query heads of its group,
//! for one or a few rows of a sequence. Each may see its own range of keys (causal
//! end, sliding window); keys outside it are masked in the block's scores.

use std::ops::Range;

use super::{AttentionShape, KvBlocks, KvElement};
use crate::simd::Isa;

/// Feeds the keys in `keys` (intersected with each query's own range) to `state`: the
/// whole pass over the key blocks, for one instruction set and cache number type.
pub(crate) type AttendKeysFn<T> = fn(
    shape: &AttentionShape,
    kv: &KvBlocks<'_, T>,
    queries: &GroupQueries<'_>,
    keys: Range<usize>,
    state: &mut FlashState,
);

/// The pass over the key blocks for one instruction set and cache number type.
#[derive(Clone, Copy)]
pub struct BlockKernels<T> {
    pub(crate) attend_keys: AttendKeysFn<T>,
}

impl<T: KvElement> BlockKernels<T> {
    /// The plain-Rust pass (every target).
    pub(crate) fn scalar() -> Self {
        BlockKernels {
            attend_keys: attend_keys_scalar::<T>,
        }
    }
}

fn scores_scalar<T: KvElement>(
    q: &[f32],
    head_dim: usize,
    k: &[T],
    stride: usize,
    n_rows: usize,
    scale: f32,
    scores: &mut [f32],
) {
    // Each key row is widened once for all the queries.
    let mut k_row = vec![0.0f32; head_dim];
    for j in 0..n_rows {
        T::widen(&k[j * stride..][..head_dim], &mut k_row);
        for (i, q_row) in q.chunks_exact(head_dim).enumerate() {
            let dot: f32 = q_row.iter().zip(&k_row).map(|(a, b)| a * b).sum();
            scores[i * n_rows + j] = dot * scale;
        }
    }
}

fn accumulate_scalar<T: KvElement>(
    p: &[f32],
    n_rows: usize,
    v: &[T],
    stride: usize,
    head_dim: usize,
    acc: &mut [f32],
) {
    let mut v_row = vec![0.0f32; head_dim];
    for j in 0..n_rows {
        T::widen(&v[j * stride..][..head_dim], &mut v_row);
        for (i, acc_row) in acc.chunks_exact_mut(head_dim).enumerate() {
            let pj = p[i * n_rows + j];
            if pj == 0.0 {
                continue;
            }
            for (a, x) in acc_row.iter_mut().zip(&v_row) {
                *a += pj * x;
            }
        }
    }
}

fn exp_sum_scalar(x: &mut [f32], max: f32) -> f32 {
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// The online-softmax state of `n_q` queries of `head_dim` values each.
#[derive(Clone, Debug)]
pub struct FlashState {
    pub(crate) head_dim: usize,
    /// `[n_q]`: the largest score seen (-inf before any key).
    pub(crate) max: Vec<f32>,
    /// `[n_q]`: `Σ exp(s - max)`.
    pub(crate) sum: Vec<f32>,
    /// `[n_q, head_dim]`: `Σ exp(s - max) · v`.
    pub(crate) acc: Vec<f32>,
    /// Scratch: `[n_q, keys of one block or panel]` scores, then weights.
    pub(crate) scores: Vec<f32>,
    /// Scratch of the SIMD kernels: one panel of keys, transposed, and of values,
    /// widened; per query, the factor of its sums at the current panel.
    pub(crate) keys_t: Vec<f32>,
    pub(crate) values_f32: Vec<f32>,
    pub(crate) factors: Vec<f32>,
}

impl FlashState {
    /// A state that has seen no key.
    pub fn new(n_q: usize, head_dim: usize) -> Self {
        FlashState {
            head_dim,
            max: vec![f32::NEG_INFINITY; n_q],
            sum: vec![0.0; n_q],
            acc: vec![0.0; n_q * head_dim],
            scores: Vec::new(),
            keys_t: Vec::new(),
            values_f32: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// Queries tracked.
    pub fn n_q(&self) -> usize {
        self.max.len()
    }

    /// Folds in `other`, a state of the same queries over other keys.
    pub fn merge(&mut self, other: &FlashState) {
        let hd = self.head_dim;
        for i in 0..self.n_q().min(other.n_q()) {
            let (m_a, m_b) = (self.max[i], other.max[i]);
            if m_b == f32::NEG_INFINITY {
                continue;
            }
            let top = m_a.max(m_b);
            let f_a = if m_a == f32::NEG_INFINITY {
                0.0
            } else {
                (m_a - top).exp()
            };
            let f_b = (m_b - top).exp();
            self.max[i] = top;
            self.sum[i] = self.sum[i] * f_a + other.sum[i] * f_b;
            let acc_b = &other.acc[i * hd..(i + 1) * hd];
            for (a, &b) in self.acc[i * hd..(i + 1) * hd].iter_mut().zip(acc_b) {
                *a = *a * f_a + b * f_b;
            }
        }
    }

    /// `out[i]` (`[n_q, head_dim]`): the attention output of query `i`, with the sink
    /// logit `sinks[i]` (not scaled) in its denominator when given. A query that saw
    /// no key gets zeros.
    pub fn finish(&self, sinks: Option<&[f32]>, out: &mut [f32]) {
        let hd = self.head_dim;
        for (i, out_row) in out.chunks_exact_mut(hd).enumerate().take(self.n_q()) {
            let (m, l) = (self.max[i], self.sum[i]);
            if m == f32::NEG_INFINITY || l == 0.0 {
                out_row.fill(0.0);
                continue;
            }
            let (keep, denom) = match sinks.and_then(|s| s.get(i)) {
                Some(&sink) => {
                    let top = m.max(sink);
                    let keep = (m - top).exp();
                    (keep, l * keep + (sink - top).exp())
                }
                None => (1.0, l),
            };
            let factor = keep / denom;
            for (o, &a) in out_row.iter_mut().zip(&self.acc[i * hd..(i + 1) * hd]) {
                *o = a * factor;
            }
        }
    }
}

/// Where the queries fed together read the cache.
pub(crate) struct GroupQueries<'q> {
    /// `[n_q, head_dim]`.
    pub q: &'q [f32],
    /// `[n_q]`: the keys each query sees.
    pub keys: &'q [Range<usize>],
    /// Offset of their KV head in a cache row (`kv_head * head_dim`).
    pub kv_offset: usize,
}

/// Feeds the keys in `keys` (intersected with each query's own range) to `state`, with
/// the plain-Rust block kernels.
pub(crate) fn attend_keys_scalar<T: KvElement>(
    shape: &AttentionShape,
    kv: &KvBlocks<'_, T>,
    queries: &GroupQueries<'_>,
    keys: Range<usize>,
    state: &mut FlashState,
) {
    let hd = shape.head_dim;
    let kv_width = shape.n_kv_head * hd;
    let n_q = queries.keys.len();
    let lo = queries.keys.iter().map(|r| r.start).min().unwrap_or(0);
    let hi = queries.keys.iter().map(|r| r.end).max().unwrap_or(0);
    let (lo, hi) = (lo.max(keys.start), hi.min(keys.end));
    let bs = kv.block_size.max(1);
    state.scores.resize(n_q * bs, 0.0);
    let mut pos = lo;
    while pos < hi {
        let block = pos / bs;
        let first_row = pos % bs;
        let end = ((block + 1) * bs).min(hi);
        let n_rows = end - pos;
        let at = first_row * kv_width + queries.kv_offset;
        let need = (n_rows - 1) * kv_width + hd;
        let (Some(k), Some(v)) = (
            kv.keys.get(block).and_then(|b| b.get(at..at + need)),
            kv.values.get(block).and_then(|b| b.get(at..at + need)),
        ) else {
            // A freed block lies before every window that could see it.
            pos = end;
            continue;
        };
        let scores = &mut state.scores[..n_q * n_rows];
        scores_scalar(queries.q, hd, k, kv_width, n_rows, shape.scale, scores);
        for (i, range) in queries.keys.iter().enumerate() {
            let row = &mut scores[i * n_rows..(i + 1) * n_rows];
            if range.start > pos || range.end < end {
                for (j, s) in row.iter_mut().enumerate() {
                    if !range.contains(&(pos + j)) {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            let block_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if block_max == f32::NEG_INFINITY {
                row.fill(0.0);
                continue;
            }
            let old = state.max[i];
            let new = old.max(block_max);
            let block_sum = exp_sum_scalar(row, new);
            if old == f32::NEG_INFINITY {
                state.sum[i] = block_sum;
            } else if new > old {
                let f = (old - new).exp();
                state.sum[i] = state.sum[i] * f + block_sum;
                state.acc[i * hd..(i + 1) * hd]
                    .iter_mut()
                    .for_each(|a| *a *= f);
            } else {
                state.sum[i] += block_sum;
            }
            state.max[i] = new;
        }
        accumulate_scalar(scores, n_rows, v, kv_width, hd, &mut state.acc);
        pos = end;
    }
}

/// [`super::attend_reference`] for one row (every head) by the fast kernel: the
/// same result up to the order of f32 sums. `q`, `out`: `[n_head, head_dim]`.
pub fn attend<T: KvElement>(
    shape: &AttentionShape,
    q: &[f32],
    kv: &KvBlocks<'_, T>,
    keys: Range<usize>,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    attend_with(Isa::best(), shape, q, kv, keys, sinks, out);
}

/// [`attend`] with the kernels of `isa` (the scalar ones if `isa` is not available).
pub(crate) fn attend_with<T: KvElement>(
    isa: Isa,
    shape: &AttentionShape,
    q: &[f32],
    kv: &KvBlocks<'_, T>,
    keys: Range<usize>,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let kernels = T::block_kernels(isa);
    let hd = shape.head_dim;
    let group = shape.n_head / shape.n_kv_head.max(1);
    let ranges = vec![keys.clone(); group];
    for g in 0..shape.n_kv_head {
        let heads = g * group * hd..(g + 1) * group * hd;
        let queries = GroupQueries {
            q: &q[heads.clone()],
            keys: &ranges,
            kv_offset: g * hd,
        };
        let mut state = FlashState::new(group, hd);
        (kernels.attend_keys)(shape, kv, &queries, keys.clone(), &mut state);
        let group_sinks = sinks.and_then(|s| s.get(g * group..(g + 1) * group));
        state.finish(group_sinks, &mut out[heads]);
    }
}
