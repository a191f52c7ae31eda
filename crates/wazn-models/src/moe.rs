//! Mixtures of experts: a router picks k experts for each row and weights them
//! ([`Routing`]: a softmax over the router's logits as gpt-oss and Qwen3-MoE do, or
//! DeepSeek-V3's group-limited sigmoid scores); each expert is a gated feed-forward
//! layer ([`ExpertActivation`]: SwiGLU, or gpt-oss's clamped SwiGLU with biases), and
//! the rows are summed back by those weights. Shared experts, which every row takes,
//! are a dense feed-forward layer of the model's own.
//!
//! The rows of a batch are grouped by expert, and the experts of a step run as two
//! grouped products ([`matmul_gathered`]): every chosen expert's gate and up matrices
//! at once, then every chosen expert's down matrix, each over the rows routed to it.
//! So each chosen expert's matrices are read once per forward pass, experts nobody
//! chose are not read at all, and the threads share the work by (expert, row block).

use wazn_kernels::ops::{add_assign, silu};
use wazn_kernels::pool::SyncMutPtr;
use wazn_kernels::{matmul_gathered, GatherScratch, GatheredProduct};

use crate::error::ModelError;
use crate::layers::{Compute, Linear};
use crate::weights::{MatrixRef, Weights};

/// The first expert layer (`[n_ff]` gate and `[n_ff]` up outputs per expert), with
/// optional biases (gpt-oss has them).
pub(crate) enum GateUp {
    /// One stack `[n_expert, 2 * n_ff, n_embd]` whose rows interleave gate (even) and
    /// up (odd), bias `[n_expert, 2 * n_ff]` likewise (gpt-oss's Hugging Face layout).
    Interleaved {
        weight: MatrixRef,
        bias: Option<Vec<f32>>,
    },
    /// One stack `[n_expert, 2 * n_ff, n_embd]`, each expert's gate rows then its up
    /// rows, bias `[n_expert, 2 * n_ff]` likewise (GGUF's fused `ffn_gate_up_exps`).
    Concatenated {
        weight: MatrixRef,
        bias: Option<Vec<f32>>,
    },
    /// Separate stacks `[n_expert, n_ff, n_embd]`, biases `[n_expert, n_ff]`.
    Split {
        gate: MatrixRef,
        gate_bias: Option<Vec<f32>>,
        up: MatrixRef,
        up_bias: Option<Vec<f32>>,
    },
}

/// How a row's router logits choose its experts and weight them.
pub(crate) enum Routing {
    /// The k largest logits; their weights are the softmax over all experts, re-summed
    /// to 1 over the k when `renormalize` (which equals a softmax over the k logits:
    /// gpt-oss always, Qwen3-MoE with `norm_topk_prob`).
    Softmax { renormalize: bool },
    /// DeepSeek-V3 / Kimi K2.
    GroupedSigmoid(GroupedSigmoid),
}

/// DeepSeek-V3's routing: each expert's score is the sigmoid of its logit. Experts are
/// chosen on `score + correction_bias`: the experts fall in `n_group` equal groups, a
/// group counts the sum of its two best biased scores, only the experts of the
/// `topk_group` best groups compete, and the k best of those win. A winner's weight is
/// its unbiased score, divided by the k scores' sum when `renormalize`, times `scale`.
pub(crate) struct GroupedSigmoid {
    /// `[n_expert]`.
    pub correction_bias: Vec<f32>,
    pub n_group: usize,
    pub topk_group: usize,
    pub renormalize: bool,
    pub scale: f32,
}

/// What an expert computes of its gate and up outputs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ExpertActivation {
    /// `silu(gate) * up`.
    Silu,
    /// gpt-oss: `(up + 1) * g * sigmoid(alpha * g)`, `g = min(gate, limit)`, `up`
    /// clamped to `[-limit, limit]`.
    ClampedSwiglu { limit: f32, alpha: f32 },
}

impl ExpertActivation {
    #[inline]
    fn apply(self, gate: f32, up: f32) -> f32 {
        match self {
            ExpertActivation::Silu => silu(gate) * up,
            ExpertActivation::ClampedSwiglu { limit, alpha } => swiglu_oai(gate, up, limit, alpha),
        }
    }
}

pub(crate) struct Moe {
    /// `[n_expert, n_embd]`, with a bias in gpt-oss.
    pub router: Linear,
    pub routing: Routing,
    pub gate_up: GateUp,
    /// `[n_expert, n_embd, n_ff]`.
    pub down: MatrixRef,
    /// `[n_expert, n_embd]`.
    pub down_bias: Option<Vec<f32>>,
    pub activation: ExpertActivation,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff: usize,
}

/// A GGUF layer's unbiased expert stacks `blk.{i}.ffn_{gate,up,down}_exps` (or the
/// fused `ffn_gate_up_exps`), `block(t)` naming tensor `t` of the layer: the first
/// layer and the down stack.
pub(crate) fn gguf_expert_stacks(
    w: &mut Weights,
    block: impl Fn(&str) -> String,
    n_expert: usize,
    n_ff: usize,
    d: usize,
) -> Result<(GateUp, MatrixRef), ModelError> {
    let gate_up = if w.has(&block("ffn_gate_up_exps.weight")) {
        GateUp::Concatenated {
            weight: w.experts(&block("ffn_gate_up_exps.weight"), n_expert, 2 * n_ff, d)?,
            bias: None,
        }
    } else {
        GateUp::Split {
            gate: w.experts(&block("ffn_gate_exps.weight"), n_expert, n_ff, d)?,
            gate_bias: None,
            up: w.experts(&block("ffn_up_exps.weight"), n_expert, n_ff, d)?,
            up_bias: None,
        }
    };
    let down = w.experts(&block("ffn_down_exps.weight"), n_expert, d, n_ff)?;
    Ok((gate_up, down))
}

/// A Hugging Face layer's experts stored one tensor per expert
/// (`{prefix}.{e}.{gate,up,down}_proj.weight`, Qwen3-MoE and DeepSeek-V3 checkpoints),
/// stacked: the first layer and the down stack.
pub(crate) fn hf_expert_list(
    w: &mut Weights,
    prefix: &str,
    n_expert: usize,
    n_ff: usize,
    d: usize,
) -> Result<(GateUp, MatrixRef), ModelError> {
    let name = |proj: &'static str| move |e: usize| format!("{prefix}.{e}.{proj}.weight");
    let gate_up = GateUp::Split {
        gate: w.expert_list(name("gate_proj"), n_expert, n_ff, d)?,
        gate_bias: None,
        up: w.expert_list(name("up_proj"), n_expert, n_ff, d)?,
        up_bias: None,
    };
    let down = w.expert_list(name("down_proj"), n_expert, d, n_ff)?;
    Ok((gate_up, down))
}

impl Moe {
    /// Bytes of weights one row reads: the router and its `n_expert_used` experts.
    pub fn bytes_per_token(&self) -> usize {
        let per_expert = |m: &MatrixRef| m.n_bytes() / self.n_expert.max(1);
        let gate_up = match &self.gate_up {
            GateUp::Interleaved { weight, .. } | GateUp::Concatenated { weight, .. } => {
                per_expert(weight)
            }
            GateUp::Split { gate, up, .. } => per_expert(gate) + per_expert(up),
        };
        self.router.weight.n_bytes() + self.n_expert_used * (gate_up + per_expert(&self.down))
    }
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

/// The indices of the `k` largest of `values` among `candidates`, best first (ties:
/// the lower index first).
fn top_k(values: &[f32], mut candidates: Vec<usize>, k: usize) -> Vec<usize> {
    candidates.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    candidates.truncate(k);
    candidates
}

/// The `k` largest of `logits` (ties: the lower index first) and their softmax weights
/// over those k.
pub(crate) fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let order = top_k(logits, (0..logits.len()).collect(), k);
    let max = order.first().map_or(0.0, |&e| logits[e]);
    let exps: Vec<f32> = order.iter().map(|&e| (logits[e] - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    order
        .into_iter()
        .zip(exps)
        .map(|(e, x)| (e, x / sum))
        .collect()
}

/// The `k` largest of `logits` weighted by the softmax over all of them.
fn route_softmax_all(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    top_k(logits, (0..logits.len()).collect(), k)
        .into_iter()
        .map(|e| (e, exps[e] / sum))
        .collect()
}

impl GroupedSigmoid {
    /// The experts of one row and their weights ([`GroupedSigmoid`]).
    fn route(&self, logits: &[f32], k: usize) -> Vec<(usize, f32)> {
        let n_expert = logits.len();
        let scores: Vec<f32> = logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect();
        let biased: Vec<f32> = scores
            .iter()
            .zip(&self.correction_bias)
            .map(|(s, b)| s + b)
            .collect();
        let candidates: Vec<usize> = if self.n_group > 1 && self.topk_group < self.n_group {
            let per_group = n_expert / self.n_group;
            let group_scores: Vec<f32> = biased
                .chunks_exact(per_group)
                .map(|group| {
                    let best = top_k(group, (0..group.len()).collect(), 2);
                    best.iter().map(|&i| group[i]).sum()
                })
                .collect();
            let groups = top_k(&group_scores, (0..self.n_group).collect(), self.topk_group);
            let mut experts: Vec<usize> = groups
                .iter()
                .flat_map(|&g| g * per_group..(g + 1) * per_group)
                .collect();
            experts.sort_unstable();
            experts
        } else {
            (0..n_expert).collect()
        };
        let chosen = top_k(&biased, candidates, k);
        let sum: f32 = chosen.iter().map(|&e| scores[e]).sum();
        let norm = if self.renormalize { sum + 1e-20 } else { 1.0 };
        chosen
            .into_iter()
            .map(|e| (e, scores[e] / norm * self.scale))
            .collect()
    }
}

impl Routing {
    /// The `k` experts of a row with router logits `logits`, and their weights.
    pub fn route(&self, logits: &[f32], k: usize) -> Vec<(usize, f32)> {
        match self {
            Routing::Softmax { renormalize: true } => route(logits, k),
            Routing::Softmax { renormalize: false } => route_softmax_all(logits, k),
            Routing::GroupedSigmoid(grouped) => grouped.route(logits, k),
        }
    }
}

/// Expert `e`'s bias of `width` values, or none.
fn bias_of(bias: &Option<Vec<f32>>, e: usize, width: usize) -> Option<&[f32]> {
    bias.as_deref().map(|b| &b[e * width..(e + 1) * width])
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
            for (expert, weight) in self.routing.route(row_logits, self.n_expert_used) {
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

        // Biases and the activation, slot by slot.
        act.resize(n_slots * n_ff, 0.0); // [slots, n_ff]
        let activation = self.activation;
        let at = |bias: Option<&[f32]>, i: usize| bias.map_or(0.0, |b| b[i]);
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
                            let bias = bias_of(bias, e, 2 * n_ff);
                            for (i, (a, pair)) in
                                a_row.iter_mut().zip(h_row.chunks_exact(2)).enumerate()
                            {
                                let (g, u) =
                                    (pair[0] + at(bias, 2 * i), pair[1] + at(bias, 2 * i + 1));
                                *a = activation.apply(g, u);
                            }
                        }
                        GateUp::Concatenated { bias, .. } => {
                            let (gate, up) = h_row.split_at(n_ff);
                            let bias = bias_of(bias, e, 2 * n_ff);
                            for (i, a) in a_row.iter_mut().enumerate() {
                                let (g, u) = (gate[i] + at(bias, i), up[i] + at(bias, n_ff + i));
                                *a = activation.apply(g, u);
                            }
                        }
                        GateUp::Split {
                            gate_bias, up_bias, ..
                        } => {
                            let up = &u[slot * n_ff..(slot + 1) * n_ff];
                            let gate_b = bias_of(gate_bias, e, n_ff);
                            let up_b = bias_of(up_bias, e, n_ff);
                            for (i, a) in a_row.iter_mut().enumerate() {
                                let (g, u) = (h_row[i] + at(gate_b, i), up[i] + at(up_b, i));
                                *a = activation.apply(g, u);
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
            let down_bias = bias_of(&self.down_bias, expert, d);
            for &(row, weight) in picks {
                let y_row = &mut y[slot * d..(slot + 1) * d];
                if let Some(down_bias) = down_bias {
                    add_assign(y_row, down_bias);
                }
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
    fn softmax_over_all_experts_keeps_the_full_denominator() {
        let logits = [0.0, 3.0, -1.0, 2.0, 1.0];
        let all: f32 = logits.iter().map(|x: &f32| x.exp()).sum();
        let picks = route_softmax_all(&logits, 2);
        assert_eq!(picks.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((picks[0].1 - 3.0f32.exp() / all).abs() < 1e-6);
        assert!((picks[1].1 - 2.0f32.exp() / all).abs() < 1e-6);
    }

    #[test]
    fn grouped_sigmoid_routes_within_the_best_groups_on_biased_scores() {
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        // 4 groups of 2. Without the bias expert 0 would win; the bias moves the choice
        // to group 2 (experts 4, 5) and group 3 (6, 7), whose pairs sum highest.
        let logits = [4.0, -4.0, 0.0, 0.0, 1.0, 0.5, 0.2, 0.3];
        let bias = [-1.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.4, 0.4];
        let router = GroupedSigmoid {
            correction_bias: bias.to_vec(),
            n_group: 4,
            topk_group: 2,
            renormalize: true,
            scale: 2.5,
        };
        let picks = router.route(&logits, 2);
        let experts: Vec<usize> = picks.iter().map(|p| p.0).collect();
        // Biased: 6 → sig(0.2)+0.4 = 0.950, 7 → 0.974, 4 → 0.731, 5 → 0.922.
        assert_eq!(experts, vec![7, 6]);
        let (s7, s6) = (sig(0.3), sig(0.2));
        assert!((picks[0].1 - s7 / (s7 + s6) * 2.5).abs() < 1e-6);
        assert!((picks[1].1 - s6 / (s7 + s6) * 2.5).abs() < 1e-6);
        // One group (Kimi K2) and no bias: plain top-k of the scores, weights not
        // renormalized but scaled.
        let flat = GroupedSigmoid {
            correction_bias: vec![0.0; 8],
            n_group: 1,
            topk_group: 1,
            renormalize: false,
            ..router
        };
        let picks = flat.route(&logits, 2);
        assert_eq!(picks.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 4]);
        assert!((picks[0].1 - sig(4.0) * 2.5).abs() < 1e-6);
        assert!((picks[1].1 - sig(1.0) * 2.5).abs() < 1e-6);
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
