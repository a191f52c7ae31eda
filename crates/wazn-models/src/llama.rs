//! The Llama family (Llama 2 / 3, SmolLM2, Mistral-style) as GGUF stores it.
//!
//! Pre-norm decoder blocks:
//!   h = h + W_o · Attention(RoPE(W_q · n), RoPE(W_k · n), W_v · n),  n = RMSNorm(h)
//!   h = h + W_down · (silu(W_gate · n) ⊙ (W_up · n)),                n = RMSNorm(h)
//! then a final RMSNorm and the output projection (tied to the embedding when the
//! file has no `output.weight`). Grouped-query attention; RoPE rotates adjacent
//! pairs, since GGUF's converter undoes Hugging Face's half-split permutation.

use std::sync::Arc;

use wazn_formats::{GgufFile, Metadata};
use wazn_kernels::attention::{attend, AttentionShape, KvBlocks};
use wazn_kernels::ops::{add_assign, rms_norm, swiglu, Rope, RopeLayout};
use wazn_kernels::pool::SyncMutPtr;
use wazn_kernels::{matmul, Activations, ThreadPool};

use crate::batch::{Batch, Logits, SeqId};
use crate::error::ModelError;
use crate::kv_cache::{KvCache, LayerBlocks, KV_BLOCK_SIZE};
use crate::weights::{MatrixRef, Weights};
use crate::{Model, ModelInfo, ModelOptions};

/// Hyper-parameters, from the `{arch}.*` metadata keys.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_theta: f32,
    /// Linear RoPE scaling: positions are divided by this factor.
    pub rope_linear_factor: f32,
    pub rms_eps: f32,
}

impl LlamaConfig {
    pub fn from_metadata(md: &Metadata, arch: &str, n_vocab: usize) -> Result<Self, ModelError> {
        let key = |name: &str| format!("{arch}.{name}");
        let required = |name: &str| -> Result<usize, ModelError> {
            let k = key(name);
            let v = md.get_u64(&k)?.ok_or(ModelError::MissingKey { key: k })?;
            usize::try_from(v)
                .map_err(|_| ModelError::BadHyperParameter(format!("{arch}.{name} = {v}")))
        };
        let optional = |name: &str| -> Result<Option<usize>, ModelError> {
            Ok(md.get_u64(&key(name))?.map(|v| v as usize))
        };
        let n_embd = required("embedding_length")?;
        let n_head = required("attention.head_count")?;
        let n_kv_head = optional("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(ModelError::BadHyperParameter(format!(
                "{n_head} attention heads cannot share {n_kv_head} key/value heads"
            )));
        }
        let head_dim = optional("attention.key_length")?.unwrap_or(n_embd / n_head);
        let value_dim = optional("attention.value_length")?.unwrap_or(head_dim);
        if head_dim == 0 || value_dim != head_dim {
            return Err(ModelError::BadHyperParameter(format!(
                "key length {head_dim} and value length {value_dim} must be equal and non-zero"
            )));
        }
        let n_rot = optional("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadHyperParameter(format!(
                "RoPE over {n_rot} dimensions of heads of {head_dim}"
            )));
        }
        let rope_linear_factor = match md.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => md.get_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0),
            Some(other) => {
                return Err(ModelError::BadHyperParameter(format!(
                    "RoPE scaling '{other}' is not supported for {arch}"
                )))
            }
        };
        let rms_eps = md
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or(ModelError::MissingKey {
                key: key("attention.layer_norm_rms_epsilon"),
            })?;
        Ok(LlamaConfig {
            n_vocab,
            n_ctx_train: optional("context_length")?.unwrap_or(4096),
            n_embd,
            n_layer: required("block_count")?,
            n_ff: required("feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
            rope_theta: md.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_linear_factor,
            rms_eps,
        })
    }

    fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

/// The weights of one decoder block, named as in the file.
struct Block {
    attn_norm: Vec<f32>,
    attn_q: MatrixRef,
    attn_k: MatrixRef,
    attn_v: MatrixRef,
    attn_output: MatrixRef,
    ffn_norm: Vec<f32>,
    ffn_gate: MatrixRef,
    ffn_up: MatrixRef,
    ffn_down: MatrixRef,
}

pub struct Llama {
    cfg: LlamaConfig,
    info: ModelInfo,
    weights: Weights,
    token_embd: MatrixRef,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when the embedding is tied.
    output: MatrixRef,
    rope: Rope,
    activations: Activations,
}

impl Llama {
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let arch = file.architecture()?.to_string();
        let weights = Weights::new(file);
        let embd_info = weights.file().tensor("token_embd.weight").ok_or_else(|| {
            ModelError::MissingTensor {
                name: "token_embd.weight".into(),
            }
        })?;
        let n_vocab = match embd_info.dims.as_slice() {
            [_, n] => *n as usize,
            dims => {
                return Err(ModelError::TensorShape {
                    name: "token_embd.weight".into(),
                    actual: dims.to_vec(),
                    expected: vec![0, 0],
                })
            }
        };
        let cfg = LlamaConfig::from_metadata(weights.file().metadata(), &arch, n_vocab)?;
        let (d, q, kv, ff) = (cfg.n_embd, cfg.q_width(), cfg.kv_width(), cfg.n_ff);

        let token_embd = weights.matrix("token_embd.weight", n_vocab, d)?;
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let name = |t: &str| format!("blk.{i}.{t}.weight");
                Ok(Block {
                    attn_norm: weights.vector(&name("attn_norm"), d)?,
                    attn_q: weights.matrix(&name("attn_q"), q, d)?,
                    attn_k: weights.matrix(&name("attn_k"), kv, d)?,
                    attn_v: weights.matrix(&name("attn_v"), kv, d)?,
                    attn_output: weights.matrix(&name("attn_output"), d, q)?,
                    ffn_norm: weights.vector(&name("ffn_norm"), d)?,
                    ffn_gate: weights.matrix(&name("ffn_gate"), ff, d)?,
                    ffn_up: weights.matrix(&name("ffn_up"), ff, d)?,
                    ffn_down: weights.matrix(&name("ffn_down"), d, ff)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let output_norm = weights.vector("output_norm.weight", d)?;
        let output = if weights.has("output.weight") {
            weights.matrix("output.weight", n_vocab, d)?
        } else {
            token_embd
        };

        // Llama 3's long-context scaling ships as per-pair frequency divisors.
        let mut freq_factors = if weights.has("rope_freqs.weight") {
            weights.vector("rope_freqs.weight", cfg.n_rot / 2)?
        } else {
            vec![1.0; cfg.n_rot / 2]
        };
        freq_factors
            .iter_mut()
            .for_each(|f| *f *= cfg.rope_linear_factor);
        let rope = Rope::new(
            RopeLayout::Adjacent,
            cfg.n_rot,
            cfg.rope_theta,
            Some(&freq_factors),
        );

        let matrices = blocks.iter().flat_map(|b| {
            [
                b.attn_q,
                b.attn_k,
                b.attn_v,
                b.attn_output,
                b.ffn_gate,
                b.ffn_up,
                b.ffn_down,
            ]
        });
        let weight_bytes = matrices.chain([output]).map(|m| m.n_bytes() as u64).sum();
        let info = ModelInfo {
            architecture: arch,
            n_vocab,
            n_ctx_train: cfg.n_ctx_train,
            n_layer: cfg.n_layer,
            kv_width: cfg.kv_width(),
            weight_bytes,
        };
        Ok(Llama {
            cfg,
            info,
            weights,
            token_embd,
            blocks,
            output_norm,
            output,
            rope,
            activations: options.activations,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Checks the batch against the cache: known tokens, positions that continue each
    /// sequence, room in the context. Returns each sequence's length after the batch.
    fn check_batch(&self, batch: &Batch, kv: &KvCache) -> Result<Vec<(u32, usize)>, ModelError> {
        let mut next_pos: Vec<(u32, usize)> = Vec::new();
        for row in &batch.rows {
            if row.token as usize >= self.cfg.n_vocab {
                return Err(ModelError::TokenOutOfRange {
                    token: row.token,
                    n_vocab: self.cfg.n_vocab,
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
}

impl Model for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Logits, ModelError> {
        let new_lengths = self.check_batch(batch, kv)?;
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
        for &(seq_id, n_pos) in &new_lengths {
            kv.reserve(seq_id, n_pos);
        }
        let cfg = &self.cfg;
        let w = &self.weights;
        let n = batch.len();
        let (d, q_width, kv_width) = (cfg.n_embd, cfg.q_width(), cfg.kv_width());
        let mut scratch = Vec::new();

        // [n, d]: the residual stream, starting from the token embeddings.
        let mut hidden = vec![0.0f32; n * d];
        let embd = w.view(&self.token_embd);
        for (row, h) in batch.rows.iter().zip(hidden.chunks_exact_mut(d)) {
            embd.dequantize_row_into(row.token as usize, h);
        }

        let mut normed = vec![0.0f32; n * d]; // [n, d]
        let mut q = vec![0.0f32; n * q_width]; // [n, n_head * head_dim]
        let mut k = vec![0.0f32; n * kv_width]; // [n, n_kv_head * head_dim]
        let mut v = vec![0.0f32; n * kv_width]; // [n, n_kv_head * head_dim]
        let mut attn = vec![0.0f32; n * q_width]; // [n, n_head * head_dim]
        let mut proj = vec![0.0f32; n * d]; // [n, d]
        let mut gate = vec![0.0f32; n * cfg.n_ff]; // [n, n_ff]
        let mut up = vec![0.0f32; n * cfg.n_ff]; // [n, n_ff]
        let shape = AttentionShape {
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        };

        for (layer, blk) in self.blocks.iter().enumerate() {
            // Attention.
            for (x, out) in hidden.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
                rms_norm(x, &blk.attn_norm, cfg.rms_eps, out);
            }
            matmul(
                pool,
                &w.view(&blk.attn_q),
                &normed,
                n,
                &mut q,
                &mut scratch,
                self.activations,
            );
            matmul(
                pool,
                &w.view(&blk.attn_k),
                &normed,
                n,
                &mut k,
                &mut scratch,
                self.activations,
            );
            matmul(
                pool,
                &w.view(&blk.attn_v),
                &normed,
                n,
                &mut v,
                &mut scratch,
                self.activations,
            );
            for (i, row) in batch.rows.iter().enumerate() {
                let pos = row.pos;
                self.rope
                    .apply(&mut q[i * q_width..(i + 1) * q_width], cfg.head_dim, pos);
                self.rope
                    .apply(&mut k[i * kv_width..(i + 1) * kv_width], cfg.head_dim, pos);
                kv.write(
                    row.seq_id,
                    layer,
                    pos,
                    &k[i * kv_width..(i + 1) * kv_width],
                    &v[i * kv_width..(i + 1) * kv_width],
                );
            }
            // Each sequence's cache blocks in this layer, read in place.
            let kv_blocks: Vec<(SeqId, LayerBlocks)> = new_lengths
                .iter()
                .map(|&(seq_id, n_pos)| (seq_id, kv.layer_blocks(seq_id, layer, n_pos)))
                .collect();
            let attn_out = SyncMutPtr::new(&mut attn);
            let (kv_blocks, q_ref) = (&kv_blocks, &q);
            pool.run(n, &|i| {
                let row = batch.rows[i];
                let n_keys = row.pos + 1; // causal: this position and those before it
                let Some((_, layer_blocks)) = kv_blocks.iter().find(|(s, _)| *s == row.seq_id)
                else {
                    return; // every row's sequence has its blocks (check_batch)
                };
                let blocks = KvBlocks {
                    block_size: KV_BLOCK_SIZE,
                    keys: &layer_blocks.keys,
                    values: &layer_blocks.values,
                };
                // SAFETY: task i writes only row i of the output.
                let out = unsafe { attn_out.slice_mut(i * q_width, q_width) };
                let q_row = &q_ref[i * q_width..(i + 1) * q_width];
                attend(&shape, q_row, &blocks, n_keys, out, &mut Vec::new());
            });
            matmul(
                pool,
                &w.view(&blk.attn_output),
                &attn,
                n,
                &mut proj,
                &mut scratch,
                self.activations,
            );
            add_assign(&mut hidden, &proj);

            // Feed-forward (SwiGLU).
            for (x, out) in hidden.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
                rms_norm(x, &blk.ffn_norm, cfg.rms_eps, out);
            }
            matmul(
                pool,
                &w.view(&blk.ffn_gate),
                &normed,
                n,
                &mut gate,
                &mut scratch,
                self.activations,
            );
            matmul(
                pool,
                &w.view(&blk.ffn_up),
                &normed,
                n,
                &mut up,
                &mut scratch,
                self.activations,
            );
            swiglu(&mut gate, &up);
            matmul(
                pool,
                &w.view(&blk.ffn_down),
                &gate,
                n,
                &mut proj,
                &mut scratch,
                self.activations,
            );
            add_assign(&mut hidden, &proj);
        }
        for &(seq_id, n_pos) in &new_lengths {
            kv.set_len(seq_id, n_pos);
        }

        // Logits only for the rows that want them: [n_out, n_vocab].
        let wanted: Vec<usize> = (0..n).filter(|&i| batch.rows[i].wants_logits).collect();
        let mut final_normed = vec![0.0f32; wanted.len() * d];
        for (&i, out) in wanted.iter().zip(final_normed.chunks_exact_mut(d)) {
            rms_norm(
                &hidden[i * d..(i + 1) * d],
                &self.output_norm,
                cfg.rms_eps,
                out,
            );
        }
        let mut logits = vec![0.0f32; wanted.len() * cfg.n_vocab];
        matmul(
            pool,
            &w.view(&self.output),
            &final_normed,
            wanted.len(),
            &mut logits,
            &mut scratch,
            self.activations,
        );
        Ok(Logits {
            n_vocab: cfg.n_vocab,
            data: logits,
        })
    }
}
