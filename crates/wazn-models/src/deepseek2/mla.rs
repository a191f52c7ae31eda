//! Multi-head latent attention, computed on the latent.
//!
//! Per position the layer keeps one row: `c = RMSNorm(W_kva n)[..kv_lora_rank]` (the
//! latent) and `k_r = RoPE(W_kva n)[kv_lora_rank..]` (one RoPE key shared by every
//! head). Head h's key and value would be `[W_kb_h c, k_r]` and `W_vb_h c`; instead
//! the up-projections are absorbed:
//!   q_h · k_h = (W_kb_hᵀ q_nope_h) · c + q_rope_h · k_r
//!   Σ p v_h   = W_vb_h (Σ p c)
//! so every head attends over the cached rows themselves with the query
//! `[W_kb_hᵀ q_nope_h, q_rope_h]`, and its latent output goes through `W_vb_h`. The
//! cache holds `kv_lora_rank + qk_rope_head_dim` values per position and layer, and
//! prompts and decode steps run the same way.
//!
//! The absorbed matrices are stacks of per-head matrices: `k_b` `[n_head, kv_lora_rank,
//! qk_nope]` (each head's `W_kbᵀ`) and `v_b` `[n_head, v_head_dim, kv_lora_rank]`. GGUF
//! files from llama.cpp's converter store them so (`attn_k_b`, `attn_v_b`); from the
//! joint `kv_b_proj` (`[n_head · (qk_nope + v), kv_lora_rank]`, Hugging Face and older
//! GGUF files) they are cut and transposed at load.

use wazn_kernels::attention::{attend_latent_rows, LatentShape};
use wazn_kernels::ops::{rms_norm_in_place, Rope};
use wazn_kernels::{matmul_gathered, GatherScratch, GatheredProduct};

use super::config::DeepSeek2Config;
use crate::batch::{Batch, SeqId};
use crate::error::ModelError;
use crate::kv_cache::KvCache;
use crate::layers::{
    layer_kvs, norm_rows, query_rows, split_blocks, Compute, LayerBuffers, RopeTables,
};
use crate::weights::{MatrixRef, Weights};

/// How the query is made.
pub(crate) enum QueryProjection {
    /// `W_q n`.
    Direct(MatrixRef),
    /// `W_qb RMSNorm(W_qa n)` (DeepSeek-V3, Kimi K2).
    LowRank {
        a: MatrixRef,
        norm: Vec<f32>,
        b: MatrixRef,
    },
}

/// One layer's attention weights.
pub(crate) struct MlaWeights {
    pub norm: Vec<f32>,
    pub q: QueryProjection,
    /// `[kv_lora_rank + qk_rope, d]`.
    pub kv_a: MatrixRef,
    /// `[kv_lora_rank]`.
    pub kv_a_norm: Vec<f32>,
    /// `[n_head · kv_lora_rank, qk_nope]`: each head's `W_kbᵀ`.
    pub k_b: MatrixRef,
    /// `[n_head · v_head_dim, kv_lora_rank]`: each head's `W_vb`.
    pub v_b: MatrixRef,
    /// `[d, n_head · v_head_dim]`.
    pub o: MatrixRef,
}

impl MlaWeights {
    pub fn matrices(&self) -> Vec<MatrixRef> {
        let mut all = match &self.q {
            QueryProjection::Direct(q) => vec![*q],
            QueryProjection::LowRank { a, b, .. } => vec![*a, *b],
        };
        all.extend([self.kv_a, self.k_b, self.v_b, self.o]);
        all
    }
}

/// `k_b` and `v_b` cut from the joint `kv_b` (`[n_head · (qk_nope + v), kv_lora_rank]`).
pub(crate) fn split_kv_b(
    w: &mut Weights,
    kv_b: &MatrixRef,
    cfg: &DeepSeek2Config,
) -> (MatrixRef, MatrixRef) {
    let (nope, v, rank) = (cfg.qk_nope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank);
    let joint = w.to_f32(kv_b);
    let mut k_b = vec![0.0f32; cfg.n_head * rank * nope];
    let mut v_b = Vec::with_capacity(cfg.n_head * v * rank);
    for (h, head) in joint.chunks_exact((nope + v) * rank).enumerate() {
        let (k_rows, v_rows) = head.split_at(nope * rank);
        let k_head = &mut k_b[h * rank * nope..(h + 1) * rank * nope];
        for (i, k_row) in k_rows.chunks_exact(rank).enumerate() {
            for (c, &x) in k_row.iter().enumerate() {
                k_head[c * nope + i] = x;
            }
        }
        v_b.extend_from_slice(v_rows);
    }
    (
        w.owned_f32(&k_b, cfg.n_head * rank, nope),
        w.owned_f32(&v_b, cfg.n_head * v, rank),
    )
}

/// The buffers of [`attention_block`], kept between passes.
#[derive(Default)]
pub(crate) struct MlaBuffers {
    /// `[n, q_lora_rank]`.
    q_a: Vec<f32>,
    /// `[n, n_head · (qk_nope + qk_rope)]`.
    q: Vec<f32>,
    /// `[n, kv_lora_rank + qk_rope]`: the cache rows.
    kv_a: Vec<f32>,
    /// `[n · n_head, qk_nope]`.
    q_nope: Vec<f32>,
    /// `[n_head, n, kv_lora_rank]`: absorbed queries, head by head.
    q_latent: Vec<f32>,
    /// `[n, n_head, kv_lora_rank + qk_rope]`.
    q_full: Vec<f32>,
    /// `[n, n_head, kv_lora_rank]`.
    latent_out: Vec<f32>,
    /// `[n_head, n, v_head_dim]`.
    v_out: Vec<f32>,
    /// `0, n_head, 2 n_head, …` shifted per head: each head's rows of `[n · n_head, _]`.
    head_rows: Vec<Vec<usize>>,
    gather: GatherScratch,
}

/// `[n · n_head, width]` rows `r · n_head + h` for each head `h`.
fn fill_head_rows(head_rows: &mut Vec<Vec<usize>>, n: usize, n_head: usize) {
    head_rows.resize_with(n_head, Vec::new);
    for (h, rows) in head_rows.iter_mut().enumerate() {
        rows.clear();
        rows.extend((0..n).map(|r| r * n_head + h));
    }
}

/// One pre-norm attention sublayer of layer `layer`: `hidden += o(MLA(rms_norm(hidden)))`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_block(
    compute: &Compute<'_>,
    cfg: &DeepSeek2Config,
    batch: &Batch,
    kv: &mut KvCache,
    layer: usize,
    new_lengths: &[(SeqId, usize)],
    w: &MlaWeights,
    rope: (&Rope, &RopeTables),
    hidden: &mut [f32],
    buf: &mut LayerBuffers,
    mla: &mut MlaBuffers,
) {
    let n = batch.len();
    let (n_head, nope, r, rank, vd) = (
        cfg.n_head,
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.kv_lora_rank,
        cfg.v_head_dim,
    );
    let (qk, cache_width) = (nope + r, rank + r);
    norm_rows(hidden, &w.norm, cfg.rms_eps, &mut buf.normed);

    // The query and the cache rows.
    mla.q.resize(n * n_head * qk, 0.0);
    mla.kv_a.resize(n * cache_width, 0.0);
    match &w.q {
        QueryProjection::Direct(q) => compute.matmuls_of(
            [q, &w.kv_a],
            &buf.normed,
            n,
            &mut [&mut mla.q, &mut mla.kv_a],
            &mut buf.scratch,
        ),
        QueryProjection::LowRank { a, norm, b } => {
            mla.q_a.resize(n * a.n_rows, 0.0);
            compute.matmuls_of(
                [a, &w.kv_a],
                &buf.normed,
                n,
                &mut [&mut mla.q_a, &mut mla.kv_a],
                &mut buf.scratch,
            );
            for row in mla.q_a.chunks_exact_mut(a.n_rows) {
                rms_norm_in_place(row, norm, cfg.rms_eps);
            }
            compute.matmul(b, &mla.q_a, n, &mut mla.q, &mut buf.scratch);
        }
    }
    let (rope, tables) = rope;
    let n_pairs = rope.n_pairs();
    for (i, row) in batch.rows.iter().enumerate() {
        let (cos, sin) = tables.row(i, n_pairs);
        let cache_row = &mut mla.kv_a[i * cache_width..(i + 1) * cache_width];
        let (latent, k_rope) = cache_row.split_at_mut(rank);
        rms_norm_in_place(latent, &w.kv_a_norm, cfg.rms_eps);
        rope.apply_angles(k_rope, r, cos, sin);
        kv.write(row.seq_id, layer, row.pos, cache_row, &[]);
        for q_head in mla.q[i * n_head * qk..(i + 1) * n_head * qk].chunks_exact_mut(qk) {
            rope.apply_angles(&mut q_head[nope..], r, cos, sin);
        }
    }

    // Absorb W_kb into each head's query: q_latent_h = W_kb_hᵀ q_nope_h.
    mla.q_nope.resize(n * n_head * nope, 0.0);
    for (dst, q_head) in mla
        .q_nope
        .chunks_exact_mut(nope)
        .zip(mla.q.chunks_exact(qk))
    {
        dst.copy_from_slice(&q_head[..nope]);
    }
    fill_head_rows(&mut mla.head_rows, n, n_head);
    mla.q_latent.resize(n_head * n * rank, 0.0);
    let weights = compute.weights;
    let mut products: Vec<GatheredProduct<'_, '_>> = mla
        .q_latent
        .chunks_exact_mut(n * rank)
        .zip(&mla.head_rows)
        .enumerate()
        .map(|(h, (out, rows))| GatheredProduct {
            w: weights.expert_view(&w.k_b, h, rank),
            rows,
            out,
        })
        .collect();
    matmul_gathered(
        compute.pool,
        &mut products,
        &mla.q_nope,
        nope,
        &mut mla.gather,
        compute.activations,
    );
    drop(products);
    mla.q_full.resize(n * n_head * cache_width, 0.0);
    for (slot, full) in mla.q_full.chunks_exact_mut(cache_width).enumerate() {
        let (i, h) = (slot / n_head, slot % n_head);
        full[..rank].copy_from_slice(&mla.q_latent[(h * n + i) * rank..(h * n + i + 1) * rank]);
        full[rank..].copy_from_slice(&mla.q[slot * qk + nope..(slot + 1) * qk]);
    }

    // Every head over the cached rows, in latent space.
    let layer_kv = layer_kvs(kv, layer, new_lengths);
    query_rows(batch, new_lengths, None, &mut buf.query_rows);
    let shape = LatentShape {
        n_head,
        key_dim: cache_width,
        value_dim: rank,
        scale: cfg.attention_scale,
    };
    mla.latent_out.resize(n * n_head * rank, 0.0);
    let (f32_blocks, f16_blocks) = split_blocks(&layer_kv);
    if f16_blocks.is_empty() {
        let (q, rows, out) = (&mla.q_full, &buf.query_rows, &mut mla.latent_out);
        attend_latent_rows(compute.pool, &shape, q, rows, &f32_blocks, out);
    } else {
        let (q, rows, out) = (&mla.q_full, &buf.query_rows, &mut mla.latent_out);
        attend_latent_rows(compute.pool, &shape, q, rows, &f16_blocks, out);
    }

    // Each head's latent output through W_vb, then the output projection.
    mla.v_out.resize(n_head * n * vd, 0.0);
    let mut products: Vec<GatheredProduct<'_, '_>> = mla
        .v_out
        .chunks_exact_mut(n * vd)
        .zip(&mla.head_rows)
        .enumerate()
        .map(|(h, (out, rows))| GatheredProduct {
            w: weights.expert_view(&w.v_b, h, vd),
            rows,
            out,
        })
        .collect();
    matmul_gathered(
        compute.pool,
        &mut products,
        &mla.latent_out,
        rank,
        &mut mla.gather,
        compute.activations,
    );
    drop(products);
    buf.attn.resize(n * n_head * vd, 0.0);
    for (slot, dst) in buf.attn.chunks_exact_mut(vd).enumerate() {
        let (i, h) = (slot / n_head, slot % n_head);
        dst.copy_from_slice(&mla.v_out[(h * n + i) * vd..(h * n + i + 1) * vd]);
    }
    compute.matmul(&w.o, &buf.attn, n, &mut buf.proj, &mut buf.scratch);
    wazn_kernels::ops::add_assign(hidden, &buf.proj);
}

/// Checks that `k_b` and `v_b` have the shapes of `cfg`.
pub(crate) fn check_absorbed(
    k_b: &MatrixRef,
    v_b: &MatrixRef,
    cfg: &DeepSeek2Config,
) -> Result<(), ModelError> {
    let want_k = (cfg.n_head * cfg.kv_lora_rank, cfg.qk_nope_head_dim);
    let want_v = (cfg.n_head * cfg.v_head_dim, cfg.kv_lora_rank);
    if (k_b.n_rows, k_b.n_cols) != want_k || (v_b.n_rows, v_b.n_cols) != want_v {
        return Err(ModelError::BadHyperParameter(format!(
            "absorbed key/value matrices {}x{} and {}x{}, expected {}x{} and {}x{}",
            k_b.n_rows, k_b.n_cols, v_b.n_rows, v_b.n_cols, want_k.0, want_k.1, want_v.0, want_v.1
        )));
    }
    Ok(())
}
