//! gpt-oss's mixture of experts: a biased router picks the top-k experts of each row
//! from its raw logits and weights them by a softmax over those k logits; each expert
//! is a biased SwiGLU with clamps, and the rows are summed back by those weights.
//!
//! The rows of a batch are grouped by expert, so each chosen expert's matrices are
//! read once per forward pass and experts nobody chose are not read at all.

use wazn_kernels::ops::add_assign;

use crate::layers::{Compute, Linear};
use crate::weights::MatrixRef;

/// The first expert layer (`[n_ff]` gate and `[n_ff]` up outputs per expert).
pub(crate) enum GateUp {
    /// One stack `[n_expert, 2 * n_ff, n_embd]` whose rows interleave gate (even) and
    /// up (odd), bias `[n_expert, 2 * n_ff]` likewise (Hugging Face).
    Interleaved { weight: MatrixRef, bias: Vec<f32> },
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
    /// `[m, n_embd]`: the rows of one expert.
    xs: Vec<f32>,
    /// `[m, n_ff]`: one expert's SwiGLU output.
    act: Vec<f32>,
    /// `[m, 2 * n_ff]` (interleaved gate and up) or `[m, n_ff]` (up).
    h: Vec<f32>,
    /// `[m, n_embd]`: one expert's output.
    y: Vec<f32>,
    /// Activations quantized for the matrix products.
    scratch: Vec<u8>,
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
            xs,
            act,
            h,
            y,
            scratch,
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

        out.fill(0.0);
        let w = compute.weights;
        for (expert, rows) in routed.iter().enumerate() {
            let m = rows.len();
            if m == 0 {
                continue;
            }
            xs.clear(); // [m, n_embd]
            for &(row, _) in rows {
                xs.extend_from_slice(&x[row * d..(row + 1) * d]);
            }
            act.resize(m * n_ff, 0.0); // [m, n_ff]
            let (limit, alpha) = (self.swiglu_limit, self.swiglu_alpha);
            match &self.gate_up {
                GateUp::Interleaved { weight, bias } => {
                    h.resize(m * 2 * n_ff, 0.0); // [m, 2 * n_ff]
                    let view = w.expert_view(weight, expert, 2 * n_ff);
                    compute.matmul_view(&view, xs, m, h, scratch);
                    let bias = &bias[expert * 2 * n_ff..(expert + 1) * 2 * n_ff];
                    for (h_row, a_row) in
                        h.chunks_exact_mut(2 * n_ff).zip(act.chunks_exact_mut(n_ff))
                    {
                        add_assign(h_row, bias);
                        for (a, pair) in a_row.iter_mut().zip(h_row.chunks_exact(2)) {
                            *a = swiglu_oai(pair[0], pair[1], limit, alpha);
                        }
                    }
                }
                GateUp::Split {
                    gate,
                    gate_bias,
                    up,
                    up_bias,
                } => {
                    let u = &mut *h;
                    u.resize(m * n_ff, 0.0); // [m, n_ff]
                    let gate_view = w.expert_view(gate, expert, n_ff);
                    compute.matmul_view(&gate_view, xs, m, act, scratch);
                    let up_view = w.expert_view(up, expert, n_ff);
                    compute.matmul_view(&up_view, xs, m, u, scratch);
                    let gate_bias = &gate_bias[expert * n_ff..(expert + 1) * n_ff];
                    let up_bias = &up_bias[expert * n_ff..(expert + 1) * n_ff];
                    for (a_row, u_row) in act.chunks_exact_mut(n_ff).zip(u.chunks_exact(n_ff)) {
                        for (((a, &u), &gb), &ub) in
                            a_row.iter_mut().zip(u_row).zip(gate_bias).zip(up_bias)
                        {
                            *a = swiglu_oai(*a + gb, u + ub, limit, alpha);
                        }
                    }
                }
            }
            y.resize(m * d, 0.0); // [m, n_embd]
            let down_view = w.expert_view(&self.down, expert, d);
            compute.matmul_view(&down_view, act, m, y, scratch);
            let down_bias = &self.down_bias[expert * d..(expert + 1) * d];
            for (&(row, weight), y_row) in rows.iter().zip(y.chunks_exact_mut(d)) {
                add_assign(y_row, down_bias);
                for (o, &v) in out[row * d..(row + 1) * d].iter_mut().zip(y_row.iter()) {
                    *o += v * weight;
                }
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
