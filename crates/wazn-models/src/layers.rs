//! The pieces of a forward pass that the architectures share: checking a batch
//! against the cache, the token embedding, biased linear layers, self-attention over
//! the paged cache (grouped-query heads, optional per-head q/k norms, sliding window,
//! sinks and post-norm), gated feed-forward layers, the outputs (logits and final
//! hidden states), and the buffers a model keeps between its forward passes.

use std::sync::{Mutex, TryLockError};

use half::f16;

use wazn_kernels::attention::{attend_rows, AttendOptions, AttentionShape, KvBlocks, QueryRow};
use wazn_kernels::ops::{add_assign, gated_on, rms_norm, rms_norm_in_place, GatedActivation, Rope};
use wazn_kernels::{matmul, matmul_shared_input, Activations, ThreadPool, WeightMatrix};

use crate::batch::{Batch, HiddenStates, Logits, Outputs, SeqId};
use crate::error::ModelError;
use crate::kv_cache::{KvCache, LayerBlocks, LayerKv, KV_BLOCK_SIZE};
use crate::weights::{MatrixRef, Weights};

/// The most layers a model file may declare. Published models have far fewer (Llama 3.1
/// 405B: 126, DeepSeek-V3 and Kimi K2: 61); a larger count in a file is hostile or broken,
/// and is refused before it sizes any allocation or loop.
pub(crate) const MAX_LAYERS: usize = 1024;

/// `n_layer` from a model's metadata or config, if a model can have that many layers.
pub(crate) fn checked_layer_count(n_layer: usize) -> Result<usize, ModelError> {
    if n_layer == 0 || n_layer > MAX_LAYERS {
        return Err(ModelError::BadHyperParameter(format!(
            "{n_layer} layers (a model has 1 to {MAX_LAYERS})"
        )));
    }
    Ok(n_layer)
}

/// The start of a forward pass: checks the batch against the cache and takes the
/// blocks it needs, or fails having taken none. Returns each sequence's length after
/// the pass, which [`end_pass`] records once the pass has written the cache.
pub(crate) fn begin_pass(
    batch: &Batch,
    kv: &mut KvCache,
    n_vocab: usize,
) -> Result<Vec<(SeqId, usize)>, ModelError> {
    let new_lengths = check_batch(batch, kv, n_vocab)?;
    reserve_cache(kv, &new_lengths)?;
    Ok(new_lengths)
}

/// The end of a forward pass: the cache holds the batch's positions.
pub(crate) fn end_pass(kv: &mut KvCache, new_lengths: &[(SeqId, usize)]) {
    for &(seq_id, n_pos) in new_lengths {
        kv.set_len(seq_id, n_pos);
    }
}

/// Checks the batch against the cache: known tokens, positions that continue each
/// sequence, room in the context. Returns each sequence's length after the batch.
fn check_batch(
    batch: &Batch,
    kv: &KvCache,
    n_vocab: usize,
) -> Result<Vec<(SeqId, usize)>, ModelError> {
    let mut next_pos: Vec<(SeqId, usize)> = Vec::new();
    for row in &batch.rows {
        if row.token as usize >= n_vocab {
            return Err(ModelError::TokenOutOfRange {
                token: row.token,
                n_vocab,
            });
        }
        let index = match next_pos.iter().position(|(s, _)| *s == row.seq_id) {
            Some(index) => index,
            None => {
                next_pos.push((row.seq_id, kv.seq_len(row.seq_id)));
                next_pos.len() - 1
            }
        };
        let entry = &mut next_pos[index];
        if row.pos != entry.1 {
            return Err(ModelError::PositionGap {
                seq_id: row.seq_id,
                pos: row.pos,
                cached: entry.1,
            });
        }
        entry.1 += 1;
        if entry.1 > kv.n_ctx() {
            return Err(ModelError::ContextFull {
                seq_id: row.seq_id,
                needed: entry.1,
                n_ctx: kv.n_ctx(),
            });
        }
    }
    Ok(next_pos)
}

/// Takes the cache blocks the batch needs, or fails without taking any.
fn reserve_cache(kv: &mut KvCache, new_lengths: &[(SeqId, usize)]) -> Result<(), ModelError> {
    let blocks_needed: usize = new_lengths
        .iter()
        .map(|&(seq_id, n_pos)| kv.blocks_needed(seq_id, n_pos))
        .sum();
    if blocks_needed > kv.n_blocks_available() {
        let &(seq_id, needed) = new_lengths.first().unwrap_or(&(0, 0));
        return Err(ModelError::ContextFull {
            seq_id,
            needed,
            n_ctx: kv.seq_len(seq_id) + kv.n_blocks_available() * KV_BLOCK_SIZE,
        });
    }
    for &(seq_id, n_pos) in new_lengths {
        kv.reserve(seq_id, n_pos);
    }
    Ok(())
}

/// The Hugging Face name, under `model.layers.{i}.`, of a block tensor's GGUF short name
/// (`attn_q` → `self_attn.q_proj`), for the names the Llama-shaped families share; an
/// architecture maps its own names before asking here. Unknown names come back as given.
pub(crate) fn hf_block_name(gguf: &str) -> &str {
    match gguf {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "ffn_gate_inp" => "mlp.gate",
        other => other,
    }
}

/// `hidden` (`[n, d]`, resized) = the embedding row of each row's token.
pub(crate) fn embed_into(
    weights: &Weights,
    table: &MatrixRef,
    batch: &Batch,
    hidden: &mut Vec<f32>,
) {
    let d = table.n_cols;
    hidden.resize(batch.len() * d, 0.0);
    let embd = weights.view(table);
    for (row, h) in batch.rows.iter().zip(hidden.chunks_exact_mut(d)) {
        embd.dequantize_row_into(row.token as usize, h);
    }
}

/// A model's buffers for its forward passes, kept between passes: once they have
/// grown to a batch size, passes of that size allocate nothing for them.
pub(crate) struct Reusable<W>(Mutex<W>);

impl<W: Default> Default for Reusable<W> {
    fn default() -> Self {
        Reusable(Mutex::new(W::default()))
    }
}

impl<W: Default> Reusable<W> {
    /// Runs `f` on the kept buffers, or on fresh ones while another pass of the same
    /// model (on another thread) holds them: passes never wait for each other.
    pub fn with<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        match self.0.try_lock() {
            Ok(mut kept) => f(&mut kept),
            // A pass that panicked leaves buffers that the next pass resizes and
            // overwrites before reading, like any others.
            Err(TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => f(&mut W::default()),
        }
    }
}

/// `y = W x (+ b)`: a weight matrix and its optional bias.
pub(crate) struct Linear {
    pub weight: MatrixRef,
    /// `[n_rows]`.
    pub bias: Option<Vec<f32>>,
}

/// One layer's attention: the pre-norm gain `[d]` and the projections `q`
/// `[n_head * head_dim, d]`, `k` and `v` `[n_kv_head * head_dim, d]`, `o`
/// `[d, n_head * head_dim]`.
pub(crate) struct AttentionWeights {
    pub norm: Vec<f32>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// `[head_dim]` each: RMSNorm gains applied to every query and key head before
    /// RoPE (Qwen3, Gemma 3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[d]`: an RMSNorm of the sublayer's output before it joins the residual stream
    /// (Gemma's post-attention norm).
    pub post_norm: Option<Vec<f32>>,
}

/// A gated feed-forward layer: `down(act(gate x) ⊙ up x)`, with an optional RMSNorm
/// of its output (Gemma's post-feed-forward norm).
pub(crate) struct FeedForward {
    /// `[n_ff, d]` each.
    pub gate: MatrixRef,
    pub up: MatrixRef,
    /// `[d, n_ff]`.
    pub down: MatrixRef,
    pub activation: GatedActivation,
    /// `[d]`.
    pub post_norm: Option<Vec<f32>>,
}

impl FeedForward {
    pub fn n_ff(&self) -> usize {
        self.gate.n_rows
    }

    pub fn matrices(&self) -> [MatrixRef; 3] {
        [self.gate, self.up, self.down]
    }
}

/// The buffers of [`Compute::feed_forward`].
#[derive(Default)]
pub(crate) struct FfnBuffers {
    /// `[n, n_ff]` each.
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// `x[r][h] = rms_norm(x[r][h]) * gain` for every `[head_dim]` head of every row
/// (`gain.len()` is the head width).
pub(crate) fn norm_heads(x: &mut [f32], gain: &[f32], eps: f32) {
    for head in x.chunks_exact_mut(gain.len()) {
        rms_norm_in_place(head, gain, eps);
    }
}

/// The buffers of one forward pass over `n` rows, sized at its start
/// ([`LayerBuffers::resize`]) and reused by every layer, and by the next passes.
#[derive(Default)]
pub(crate) struct LayerBuffers {
    /// `[n, d]`: the residual stream normed for the next sublayer.
    pub normed: Vec<f32>,
    /// `[n, n_head * head_dim]`.
    pub q: Vec<f32>,
    /// `[n, n_kv_head * head_dim]`.
    pub k: Vec<f32>,
    /// `[n, n_kv_head * head_dim]`.
    pub v: Vec<f32>,
    /// `[n, n_head * head_dim]`: the attention output before its projection.
    pub attn: Vec<f32>,
    /// `[n, d]`: a sublayer's output before it joins the residual stream.
    pub proj: Vec<f32>,
    /// Activations quantized for the matrix products.
    pub scratch: Vec<u8>,
    /// The query rows of one layer's attention.
    pub query_rows: Vec<QueryRow>,
    /// `[n_out, d]`: the final norm of the rows that want logits.
    pub out_normed: Vec<f32>,
}

impl LayerBuffers {
    /// Sizes every buffer for `n` rows (contents are overwritten before they are
    /// read).
    pub fn resize(&mut self, batch: &Batch, d: usize, shape: &AttentionShape) {
        let n = batch.len();
        let q_width = shape.n_head * shape.head_dim;
        let kv_width = shape.n_kv_head * shape.head_dim;
        self.normed.resize(n * d, 0.0);
        self.q.resize(n * q_width, 0.0);
        self.k.resize(n * kv_width, 0.0);
        self.v.resize(n * kv_width, 0.0);
        self.attn.resize(n * q_width, 0.0);
        self.proj.resize(n * d, 0.0);
    }
}

/// RoPE's cos and sin at each row's position (`[n, n_pairs]` each), computed once per
/// pass and read by every layer that rotates with that [`Rope`].
#[derive(Default)]
pub(crate) struct RopeTables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTables {
    /// Fills the tables for the positions of `batch`'s rows.
    pub fn fill(&mut self, batch: &Batch, rope: &Rope) {
        let n_pairs = rope.n_pairs();
        let n = batch.len();
        self.cos.resize(n * n_pairs, 0.0);
        self.sin.resize(n * n_pairs, 0.0);
        if n_pairs > 0 {
            let tables = self
                .cos
                .chunks_exact_mut(n_pairs)
                .zip(self.sin.chunks_exact_mut(n_pairs));
            for (row, (cos, sin)) in batch.rows.iter().zip(tables) {
                rope.angles_into(row.pos, cos, sin);
            }
        }
    }

    /// Row `i`'s cos and sin.
    pub fn row(&self, i: usize, n_pairs: usize) -> (&[f32], &[f32]) {
        let range = i * n_pairs..(i + 1) * n_pairs;
        (&self.cos[range.clone()], &self.sin[range])
    }
}

/// `out[r] = rms_norm(x[r]) * gain` for every `[d]` row of `x`.
pub(crate) fn norm_rows(x: &[f32], gain: &[f32], eps: f32, out: &mut [f32]) {
    let d = gain.len();
    for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_norm(x, gain, eps, out);
    }
}

/// How the matrix products of a forward pass run.
pub(crate) struct Compute<'a> {
    pub pool: &'a ThreadPool,
    pub weights: &'a Weights,
    pub activations: Activations,
}

impl Compute<'_> {
    /// `out[r] = W x[r] + b` for the `n` rows of `x` (`[n, n_cols]` → `[n, n_rows]`).
    pub fn linear(
        &self,
        layer: &Linear,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) {
        self.matmul(&layer.weight, x, n, out, scratch);
        if let Some(bias) = &layer.bias {
            for row in out.chunks_exact_mut(bias.len()) {
                add_assign(row, bias);
            }
        }
    }

    /// Several linear layers of the same input (q, k and v): as [`Compute::linear`] for
    /// each, the products as [`Compute::matmuls_of`] computes them.
    pub fn linears_of<const N: usize>(
        &self,
        layers: [&Linear; N],
        x: &[f32],
        n: usize,
        mut outs: [&mut [f32]; N],
        scratch: &mut Vec<u8>,
    ) {
        let weights = layers.map(|layer| &layer.weight);
        self.matmuls_of(weights, x, n, &mut outs, scratch);
        for (layer, out) in layers.iter().zip(outs) {
            if let Some(bias) = &layer.bias {
                for row in out.chunks_exact_mut(bias.len()) {
                    add_assign(row, bias);
                }
            }
        }
    }

    /// Several matrices times the same input (q, k and v; gate and up): as
    /// [`Compute::matmul`] for each, with the input quantized once and the products run
    /// as one op of the pool where the matrices allow ([`matmul_shared_input`]).
    pub fn matmuls_of<const N: usize>(
        &self,
        ms: [&MatrixRef; N],
        x: &[f32],
        n: usize,
        outs: &mut [&mut [f32]; N],
        scratch: &mut Vec<u8>,
    ) {
        let views = ms.map(|m| self.weights.view(m));
        matmul_shared_input(self.pool, &views, x, n, outs, scratch, self.activations);
    }

    pub fn matmul(
        &self,
        m: &MatrixRef,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) {
        self.matmul_view(&self.weights.view(m), x, n, out, scratch);
    }

    pub fn matmul_view(
        &self,
        w: &WeightMatrix<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) {
        matmul(self.pool, w, x, n, out, scratch, self.activations);
    }

    /// One pre-norm attention sublayer of layer `layer`:
    /// `hidden += o(attention(q, k, v of rms_norm(hidden)))`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_block(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        layer: usize,
        new_lengths: &[(SeqId, usize)],
        params: &AttentionParams<'_>,
        w: &AttentionWeights,
        eps: f32,
        hidden: &mut [f32],
        buf: &mut LayerBuffers,
    ) {
        let n = batch.len();
        norm_rows(hidden, &w.norm, eps, &mut buf.normed);
        self.linears_of(
            [&w.q, &w.k, &w.v],
            &buf.normed,
            n,
            [&mut buf.q, &mut buf.k, &mut buf.v],
            &mut buf.scratch,
        );
        if let Some(gain) = &w.q_norm {
            norm_heads(&mut buf.q, gain, eps);
        }
        if let Some(gain) = &w.k_norm {
            norm_heads(&mut buf.k, gain, eps);
        }
        self_attention(self.pool, batch, kv, layer, new_lengths, params, buf);
        self.linear(&w.o, &buf.attn, n, &mut buf.proj, &mut buf.scratch);
        join_residual(hidden, &mut buf.proj, w.post_norm.as_deref(), eps);
    }

    /// One pre-norm feed-forward sublayer: `hidden += ffn(rms_norm(hidden) * norm)`.
    #[allow(clippy::too_many_arguments)]
    pub fn feed_forward_block(
        &self,
        norm: &[f32],
        ffn: &FeedForward,
        eps: f32,
        n: usize,
        hidden: &mut [f32],
        buf: &mut LayerBuffers,
        ffn_buf: &mut FfnBuffers,
    ) {
        norm_rows(hidden, norm, eps, &mut buf.normed);
        self.feed_forward(
            ffn,
            &buf.normed,
            n,
            &mut buf.proj,
            &mut buf.scratch,
            ffn_buf,
        );
        join_residual(hidden, &mut buf.proj, ffn.post_norm.as_deref(), eps);
    }

    /// `out` (`[n, d]`) = `down(act(gate x) ⊙ up x)` for the `n` rows of `x`, without
    /// the post-norm.
    pub fn feed_forward(
        &self,
        ffn: &FeedForward,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Vec<u8>,
        buf: &mut FfnBuffers,
    ) {
        let n_ff = ffn.n_ff();
        buf.gate.resize(n * n_ff, 0.0);
        buf.up.resize(n * n_ff, 0.0);
        self.matmuls_of(
            [&ffn.gate, &ffn.up],
            x,
            n,
            &mut [&mut buf.gate, &mut buf.up],
            scratch,
        );
        gated_on(self.pool, ffn.activation, &mut buf.gate, &buf.up);
        self.matmul(&ffn.down, &buf.gate, n, out, scratch);
    }

    /// Final norm of the rows that want logits, then the output projection
    /// (`[n_out, n_vocab]`); and the final norm alone of the rows that want their hidden
    /// state (`[n_hidden, d]`). A row that wants only its hidden state costs no product
    /// with the output matrix.
    pub fn outputs(
        &self,
        batch: &Batch,
        hidden: &[f32],
        norm: &[f32],
        eps: f32,
        output: &MatrixRef,
        buf: &mut LayerBuffers,
    ) -> Outputs {
        let d = norm.len();
        let n_out = batch.n_logit_rows();
        buf.out_normed.resize(n_out * d, 0.0);
        let logit_rows = batch
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.wants_logits);
        for ((i, _), out) in logit_rows.zip(buf.out_normed.chunks_exact_mut(d)) {
            rms_norm(&hidden[i * d..(i + 1) * d], norm, eps, out);
        }
        // The buffers of a pass that are not kept: the caller owns the outputs.
        let mut logits = vec![0.0f32; n_out * output.n_rows];
        if n_out > 0 {
            self.matmul(
                output,
                &buf.out_normed,
                n_out,
                &mut logits,
                &mut buf.scratch,
            );
        }
        let mut states = vec![0.0f32; batch.n_hidden_rows() * d];
        let hidden_rows = batch
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.wants_hidden);
        for ((i, _), out) in hidden_rows.zip(states.chunks_exact_mut(d)) {
            rms_norm(&hidden[i * d..(i + 1) * d], norm, eps, out);
        }
        Outputs {
            logits: Logits {
                n_vocab: output.n_rows,
                data: logits,
            },
            hidden: HiddenStates {
                n_embd: d,
                data: states,
            },
        }
    }
}

/// `hidden += post_norm(proj)` (just `proj` without a post-norm), row by row.
fn join_residual(hidden: &mut [f32], proj: &mut [f32], post_norm: Option<&[f32]>, eps: f32) {
    if let Some(gain) = post_norm {
        for row in proj.chunks_exact_mut(gain.len()) {
            rms_norm_in_place(row, gain, eps);
        }
    }
    add_assign(hidden, proj);
}

/// What one layer's attention needs besides its inputs.
pub(crate) struct AttentionParams<'a> {
    pub shape: AttentionShape,
    pub rope: &'a Rope,
    /// `rope`'s angles at the batch's positions.
    pub rope_tables: &'a RopeTables,
    /// Keys a query sees, itself included (None: every earlier position).
    pub window: Option<usize>,
    /// A learned logit per query head in each softmax denominator.
    pub sinks: Option<&'a [f32]>,
}

/// Rotates `buf.q` (`[n, n_head * head_dim]`) and `buf.k` (`[n, n_kv_head *
/// head_dim]`) by position (`params`' RoPE tables), writes `k` and `buf.v` to the cache
/// of `layer`, and attends each row over its sequence into `buf.attn` (`[n, n_head *
/// head_dim]`).
pub(crate) fn self_attention(
    pool: &ThreadPool,
    batch: &Batch,
    kv: &mut KvCache,
    layer: usize,
    new_lengths: &[(SeqId, usize)],
    params: &AttentionParams<'_>,
    buf: &mut LayerBuffers,
) {
    let shape = &params.shape;
    let q_width = shape.n_head * shape.head_dim;
    let kv_width = shape.n_kv_head * shape.head_dim;
    let n_pairs = params.rope.n_pairs();
    let (q, k, v) = (&mut buf.q, &mut buf.k, &buf.v);
    for (i, row) in batch.rows.iter().enumerate() {
        let (cos, sin) = params.rope_tables.row(i, n_pairs);
        let q_row = &mut q[i * q_width..(i + 1) * q_width];
        params.rope.apply_angles(q_row, shape.head_dim, cos, sin);
        let k_row = &mut k[i * kv_width..(i + 1) * kv_width];
        params.rope.apply_angles(k_row, shape.head_dim, cos, sin);
        kv.write(
            row.seq_id,
            layer,
            row.pos,
            k_row,
            &v[i * kv_width..(i + 1) * kv_width],
        );
    }
    // Each sequence's cache blocks in this layer, read in place.
    let layer_kv = layer_kvs(kv, layer, new_lengths);
    query_rows(batch, new_lengths, params.window, &mut buf.query_rows);
    let options = AttendOptions::default();
    let (f32_blocks, f16_blocks) = split_blocks(&layer_kv);
    // A cache holds one number type: every sequence's blocks are in one of the lists.
    if f16_blocks.is_empty() {
        attend_rows(
            pool,
            &options,
            shape,
            &buf.q,
            &buf.query_rows,
            &f32_blocks,
            params.sinks,
            &mut buf.attn,
        );
    } else {
        attend_rows(
            pool,
            &options,
            shape,
            &buf.q,
            &buf.query_rows,
            &f16_blocks,
            params.sinks,
            &mut buf.attn,
        );
    }
}

/// Each sequence's cache blocks in `layer`, in `new_lengths`' order.
pub(crate) fn layer_kvs<'a>(
    kv: &'a KvCache,
    layer: usize,
    new_lengths: &[(SeqId, usize)],
) -> Vec<LayerKv<'a>> {
    new_lengths
        .iter()
        .map(|&(seq_id, n_pos)| kv.layer_blocks(seq_id, layer, n_pos))
        .collect()
}

/// `rows` = the query row of each batch row: its sequence (index in `new_lengths`) and
/// the cached positions it sees (causal, within `window` when given).
pub(crate) fn query_rows(
    batch: &Batch,
    new_lengths: &[(SeqId, usize)],
    window: Option<usize>,
    rows: &mut Vec<QueryRow>,
) {
    rows.clear();
    rows.extend(batch.rows.iter().map(|row| {
        let end = row.pos + 1; // causal: this position and those before it
        let start = window.map_or(0, |w| end.saturating_sub(w));
        QueryRow {
            // Every row's sequence has its blocks (check_batch); an unknown one
            // would read no keys.
            seq: new_lengths
                .iter()
                .position(|&(s, _)| s == row.seq_id)
                .unwrap_or(usize::MAX),
            keys: start..end,
        }
    }));
}

/// The sequences' blocks as kernel operands: all in the f32 list or all in the f16
/// list, as the cache stores one number type.
#[allow(clippy::type_complexity)]
pub(crate) fn split_blocks<'a>(
    layer_kv: &'a [LayerKv<'a>],
) -> (Vec<KvBlocks<'a, f32>>, Vec<KvBlocks<'a, f16>>) {
    fn blocks<'a, T>(layer: &'a LayerBlocks<'a, T>) -> KvBlocks<'a, T> {
        KvBlocks {
            block_size: KV_BLOCK_SIZE,
            keys: &layer.keys,
            values: &layer.values,
        }
    }
    let f32_blocks = layer_kv
        .iter()
        .filter_map(|l| match l {
            LayerKv::F32(b) => Some(blocks(b)),
            LayerKv::F16(_) => None,
        })
        .collect();
    let f16_blocks = layer_kv
        .iter()
        .filter_map(|l| match l {
            LayerKv::F16(b) => Some(blocks(b)),
            LayerKv::F32(_) => None,
        })
        .collect();
    (f32_blocks, f16_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_buffers_are_reused_and_a_second_holder_gets_fresh_ones() {
        let kept: Reusable<Vec<u32>> = Reusable::default();
        kept.with(|v| v.extend([1, 2, 3]));
        kept.with(|outer| {
            assert_eq!(outer, &[1, 2, 3]);
            // A pass that starts while another holds the buffers must not wait.
            kept.with(|inner| assert!(inner.is_empty()));
        });
        assert_eq!(kept.with(|v| v.len()), 3);
    }
}
