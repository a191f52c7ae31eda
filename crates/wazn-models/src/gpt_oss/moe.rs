//! gpt-oss's mixture of experts: a biased router picks the top-k experts of each row
//! from its raw logits and weights them by a softmax over those k logits; each expert
//! is a biased SwiGLU with clamps, and the rows are summed back by those weights.
//!
//! The rows of a batch are grouped by expert, and the experts of a step run as two
//! grouped products ([`matmul_gathered`]): every chosen expert's gate and up matrices
//! at once, then every chosen expert's down matrix, each over the rows routed to it.
//! So each chosen expert's matrices are read once per forward pass, experts nobody
//! chose are not read at all, and the threads share the work by (expert, row block).

use wazn_kernels::ops::add_assign;
use wazn_kernels::pool::SyncMutPtr;
use wazn_kernels::{matmul_gathered, GatherScratch, GatheredProduct};

use crate::layers::{Compute, Linear};
use crate::weights::MatrixRef;

/// The first expert layer (`[n_ff]` gate and `[n_ff]` up outputs per expert).
pub(crate) enum GateUp {
    /// One stack `[n_expert, 2 * n_ff, n_embd]` whose rows interleave gate (even) and
    /// up (odd), bias `[n_expert, 2 * n_ff]` likewise (Hugging Face).
    Interleaved { weight: MatrixRef, bias: Vec<f32> },
    /// One stack `[n_expert, 2 * n_ff, n_embd]`, each expert's gate rows then its up
    /// rows, bias `[n_expert, 2 * n_ff]` likewise (GGUF's fused `ffn_gate_up_exps`).
    Concatenated { weight: MatrixRef, bias: Vec<f32> },
    /// Separate stacks `[n_expert, n_ff, n_embd]`, biases `[n_expert, n_ff]` (GGUF).
    Split {
        gate: MatrixRef,
        gate_bias: Vec<f32>,
        up: MatrixRef,
        up_bias: Vec<f32>,
    },
}

pub(crate) struct Moe {
    /// `[n_expert, n_embd]` + bias.
    pub router: Linear,
    pub gate_up: GateUp,
    /// `[n_expert, n_embd, n_ff]`.
    pub down: MatrixRef,
    /// `[n_expert, n_embd]`.
    pub down_bias: Vec<f32>,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff: usize,
    pub swiglu_limit: f32,
    pub swiglu_alpha: f32,
}

/// The buffers of [`Moe::forward`], kept between passes.
#[derive(Default)]
pub(crate) struct MoeBuffers {
    /// `[n, n_expert]`: the router's logits.
    logits: Vec<f32>,
    /// Per expert: the rows routed to it and their weights.
    routed: Vec<Vec<(usize, f32)>>,
    /// Per expert: the rows routed to it.
    rows: Vec<Vec<usize>>,
    /// `0, 1, 2, …`: the slots of the down products, each expert's a contiguous run.
    slots: Vec<usize>,
    /// Per slot: its expert.
    slot_expert: Vec<usize>,
    /// `[slots, 2 * n_ff]` (gate and up in one stack) or `[slots, n_ff]` (gate).
    h: Vec<f32>,
    /// `[slots, n_ff]`: up (split stacks).
    u: Vec<f32>,
    /// `[slots, n_ff]`: the SwiGLU outputs.
    act: Vec<f32>,
    /// `[slots, n_embd]`: the experts' outputs.
    y: Vec<f32>,
    /// Router activations.
    scratch: Vec<u8>,
    gather: GatherScratch,
}

/// `(up + 1) * g * sigmoid(alpha * g)` with `g = min(gate, limit)` and `up` clamped
/// to `[-limit, limit]`.
#[inline]
fn swiglu_oai(gate: f32, up: f32, limit: f32, alpha: f32) -> f32 {
    let g = gate.min(limit);
    let u = up.clamp(-limit, limit);
    let glu = g / (1.0 + (-(g * alpha)).exp());
    (u + 1.0) * glu
}

/// The `k` largest of `logits` (ties: the lower index first) and their softmax weights.
pub(crate) fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(k);
    let max = order.first().map_or(0.0, |&e| logits[e]);
    let exps: Vec<f32> = order.iter().map(|&e| (logits[e] - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    order
        .into_iter()
        .zip(exps)
        .map(|(e, x)| (e, x / sum))
        .collect()
}

/// `buf` cut into consecutive slices of `sizes`.
fn split_runs(mut buf: &mut [f32], sizes: impl Iterator<Item = usize>) -> Vec<&mut [f32]> {
    let mut runs = Vec::new();
    for size in sizes {
        let (run, rest) = std::mem::take(&mut buf).split_at_mut(size);
        runs.push(run);
        buf = rest;
    }
    runs
}

/// Slots per SwiGLU task.
const SWIGLU_SLOTS_PER_TASK: usize = 8;

impl Moe {
    /// `out` (`[n, n_embd]`) = the mixture of experts of each row of `x` (`[n, n_embd]`).
    pub fn forward(
        &self,
        compute: &Compute<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        buf: &mut MoeBuffers,
    ) {
        let d = self.down.n_rows / self.n_expert.max(1);
        let (n_ff, n_expert) = (self.n_ff, self.n_expert);
        let MoeBuffers {
            logits,
            routed,
            rows,
            slots,
            slot_expert,
            h,
            u,
            act,
            y,
            scratch,
            gather,
        } = buf;
        logits.resize(n * n_expert, 0.0); // [n, n_expert]
        compute.linear(&self.router, x, n, logits, scratch);
        routed.resize_with(n_expert, Vec::new);
        routed.iter_mut().for_each(Vec::clear);
        for (row, row_logits) in logits.chunks_exact(n_expert).enumerate() {
            for (expert, weight) in route(row_logits, self.n_expert_used) {
                routed[expert].push((row, weight));
            }
        }
        rows.resize_with(n_expert, Vec::new);
        slot_expert.clear();
        for (expert, (expert_rows, picks)) in rows.iter_mut().zip(routed.iter()).enumerate() {
            expert_rows.clear();
            expert_rows.extend(picks.iter().map(|&(row, _)| row));
            slot_expert.extend(std::iter::repeat_n(expert, picks.len()));
        }
        let n_slots = slot_expert.len();
        slots.clear();
        slots.extend(0..n_slots);
        let rows = &*rows;
        let active: Vec<usize> = (0..n_expert).filter(|&e| !rows[e].is_empty()).collect();
        let w = compute.weights;

        // Gate and up of every chosen expert, over its rows of `x`.
        let fused = !matches!(self.gate_up, GateUp::Split { .. });
        let h_width = if fused { 2 * n_ff } else { n_ff };
        h.resize(n_slots * h_width, 0.0); // [slots, h_width]
        u.resize(if fused { 0 } else { n_slots * n_ff }, 0.0); // [slots, n_ff]
        let active = &active;
        let sizes = |width: usize| active.iter().map(move |&e| rows[e].len() * width);
        let mut products: Vec<GatheredProduct<'_, '_>> = Vec::with_capacity(2 * active.len());
        match &self.gate_up {
            GateUp::Interleaved { weight, .. } | GateUp::Concatenated { weight, .. } => {
                for (&e, out) in active.iter().zip(split_runs(h, sizes(h_width))) {
                    let w = w.expert_view(weight, e, 2 * n_ff);
                    products.push(GatheredProduct {
                        w,
                        rows: &rows[e],
                        out,
                    });
                }
            }
            GateUp::Split { gate, up, .. } => {
                let runs = split_runs(h, sizes(n_ff))
                    .into_iter()
                    .zip(split_runs(u, sizes(n_ff)));
                for (&e, (gate_out, up_out)) in active.iter().zip(runs) {
                    let (gate_w, up_w) = (w.expert_view(gate, e, n_ff), w.expert_view(up, e, n_ff));
                    products.push(GatheredProduct {
                        w: gate_w,
                        rows: &rows[e],
                        out: gate_out,
                    });
                    products.push(GatheredProduct {
                        w: up_w,
                        rows: &rows[e],
                        out: up_out,
                    });
                }
            }
        }
        let d_in = x.len() / n.max(1);
        matmul_gathered(
            compute.pool,
            &mut products,
            x,
            d_in,
            gather,
            compute.activations,
        );
        drop(products);

        // Biases and SwiGLU, slot by slot.
        act.resize(n_slots * n_ff, 0.0); // [slots, n_ff]
        let (limit, alpha) = (self.swiglu_limit, self.swiglu_alpha);
        let (h, u, slot_expert) = (&*h, &*u, &*slot_expert);
        let act_ptr = SyncMutPtr::new(act);
        compute
            .pool
            .run_chunks(n_slots, SWIGLU_SLOTS_PER_TASK, &|start, end| {
                for slot in start..end {
                    let e = slot_expert[slot];
                    // SAFETY: each task writes the act rows of its own slots.
                    let a_row = unsafe { act_ptr.slice_mut(slot * n_ff, n_ff) };
                    let h_row = &h[slot * h_width..(slot + 1) * h_width];
                    match &self.gate_up {
                        GateUp::Interleaved { bias, .. } => {
                            let bias = &bias[e * 2 * n_ff..(e + 1) * 2 * n_ff];
                            for ((a, pair), b) in a_row
                                .iter_mut()
                                .zip(h_row.chunks_exact(2))
                                .zip(bias.chunks_exact(2))
                            {
                                *a = swiglu_oai(pair[0] + b[0], pair[1] + b[1], limit, alpha);
                            }
                        }
                        GateUp::Concatenated { bias, .. } => {
                            let (gate, up) = h_row.split_at(n_ff);
                            let (gate_b, up_b) =
                                bias[e * 2 * n_ff..(e + 1) * 2 * n_ff].split_at(n_ff);
                            for (i, a) in a_row.iter_mut().enumerate() {
                                *a = swiglu_oai(gate[i] + gate_b[i], up[i] + up_b[i], limit, alpha);
                            }
                        }
                        GateUp::Split {
                            gate_bias, up_bias, ..
                        } => {
                            let up = &u[slot * n_ff..(slot + 1) * n_ff];
                            let gate_b = &gate_bias[e * n_ff..(e + 1) * n_ff];
                            let up_b = &up_bias[e * n_ff..(e + 1) * n_ff];
                            for (i, a) in a_row.iter_mut().enumerate() {
                                *a =
                                    swiglu_oai(h_row[i] + gate_b[i], up[i] + up_b[i], limit, alpha);
                            }
                        }
                    }
                }
            });

        // Down of every chosen expert, over its slots.
        y.resize(n_slots * d, 0.0); // [slots, n_embd]
        let mut products: Vec<GatheredProduct<'_, '_>> = Vec::with_capacity(active.len());
        let mut first_slot = 0;
        for (&e, out) in active.iter().zip(split_runs(y, sizes(d))) {
            let m = rows[e].len();
            let w = w.expert_view(&self.down, e, d);
            products.push(GatheredProduct {
                w,
                rows: &slots[first_slot..first_slot + m],
                out,
            });
            first_slot += m;
        }
        matmul_gathered(
            compute.pool,
            &mut products,
            act,
            n_ff,
            gather,
            compute.activations,
        );
        drop(products);

        out.fill(0.0);
        let mut slot = 0;
        for (expert, picks) in routed.iter().enumerate() {
            let down_bias = &self.down_bias[expert * d..(expert + 1) * d];
            for &(row, weight) in picks {
                let y_row = &mut y[slot * d..(slot + 1) * d];
                add_assign(y_row, down_bias);
                for (o, &v) in out[row * d..(row + 1) * d].iter_mut().zip(y_row.iter()) {
                    *o += v * weight;
                }
                slot += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_picks_the_top_k_and_softmaxes_them() {
        let picks = route(&[0.0, 3.0, -1.0, 2.0, 1.0], 2);
        assert_eq!(picks.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
        let e = (-1.0f32).exp();
        assert!((picks[0].1 - 1.0 / (1.0 + e)).abs() < 1e-6);
        assert!((picks[1].1 - e / (1.0 + e)).abs() < 1e-6);
    }

    #[test]
    fn swiglu_clamps_gate_above_and_up_both_ways() {
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        // gate 10 -> 7; up -9 -> -7
        let want = (-7.0 + 1.0) * 7.0 * sig(1.702 * 7.0);
        assert!((swiglu_oai(10.0, -9.0, 7.0, 1.702) - want).abs() < 1e-5);
        // a very negative gate is not clamped
        let want = (0.5 + 1.0) * -9.0 * sig(1.702 * -9.0);
        assert!((swiglu_oai(-9.0, 0.5, 7.0, 1.702) - want).abs() < 1e-7);
    }
}
