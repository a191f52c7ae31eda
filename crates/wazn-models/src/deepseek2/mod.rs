//! DeepSeek-V3 and the models that reuse its architecture (Moonshot's Kimi K2), from
//! GGUF (`deepseek2`, llama.cpp's name for the family) or a Hugging Face folder
//! (`DeepseekV3ForCausalLM`).
//!
//! Pre-norm decoder blocks:
//!   h = h + MLA(n)                      (multi-head latent attention, see `mla`)
//!   h = h + FFN(n)                      n = RMSNorm(h) before each
//! The first `first_k_dense_replace` layers' FFN is a dense SwiGLU; the others' is a
//! mixture of experts (the grouped sigmoid routing of `moe`: scores plus a
//! correction bias choose the experts within the best groups, the unbiased scores
//! weight them, renormalized and scaled by `routed_scaling_factor`) plus shared
//! experts every token takes. RoPE (YaRN where configured) rotates adjacent pairs of
//! the `qk_rope_head_dim` part; the untied output matrix gives the logits.

mod config;
mod mla;

use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder};
use wazn_kernels::attention::AttentionShape;
use wazn_kernels::ops::{add_assign, GatedActivation, Rope, RopeLayout};
use wazn_kernels::{Activations, ThreadPool};

pub use config::DeepSeek2Config;

use crate::batch::{Batch, Logits, Outputs};
use crate::error::ModelError;
use crate::gguf_keys::gguf_n_vocab;
use crate::hf_config::HfConfig;
use crate::kv_cache::{KvCache, KvDtype};
use crate::layers::{
    self, norm_rows, Compute, FeedForward, FfnBuffers, LayerBuffers, Linear, Reusable, RopeTables,
};
use crate::load::ModelSource;
use crate::moe::{self, ExpertActivation, GroupedSigmoid, Moe, MoeBuffers, Routing};
use crate::rope_scaling::plain_inv_freq;
use crate::weights::{MatrixRef, Weights};
use crate::{Model, ModelInfo, ModelOptions};
use mla::{MlaBuffers, MlaWeights, QueryProjection};

/// A block's feed-forward layer.
enum Mlp {
    Dense(FeedForward),
    Experts {
        moe: Box<Moe>,
        shared: Option<FeedForward>,
    },
}

/// The weights of one decoder block.
struct Block {
    attn: MlaWeights,
    ffn_norm: Vec<f32>,
    mlp: Mlp,
}

pub struct DeepSeek2 {
    cfg: DeepSeek2Config,
    info: ModelInfo,
    weights: Weights,
    token_embd: MatrixRef,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    output: MatrixRef,
    rope: Rope,
    activations: Activations,
    /// The number type of its KV cache ([`ModelOptions::kv_dtype`]).
    kv_dtype: KvDtype,
    /// Buffers of the forward passes, kept between them.
    buffers: Reusable<PassBuffers>,
}

/// The buffers of one forward pass.
#[derive(Default)]
struct PassBuffers {
    /// `[n, d]`: the residual stream.
    hidden: Vec<f32>,
    layer: LayerBuffers,
    rope: RopeTables,
    mla: MlaBuffers,
    ffn: FfnBuffers,
    moe: MoeBuffers,
    /// `[n, d]`: the shared experts' output.
    shared: Vec<f32>,
}

/// Which file format the tensor names follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Gguf,
    Hf,
}

/// Block `i`'s tensor for a GGUF name (`attn_q_a.weight`, …) in `format`.
fn block_tensor(format: Format, i: usize, gguf: &str) -> String {
    if format == Format::Gguf {
        return format!("blk.{i}.{gguf}");
    }
    let (base, suffix) = gguf.rsplit_once('.').unwrap_or((gguf, "weight"));
    // The latent attention's and the shared experts' names; the rest as the Llama
    // family names them.
    let hf = match base {
        "attn_q_a" => "self_attn.q_a_proj",
        "attn_q_a_norm" => "self_attn.q_a_layernorm",
        "attn_q_b" => "self_attn.q_b_proj",
        "attn_kv_a_mqa" => "self_attn.kv_a_proj_with_mqa",
        "attn_kv_a_norm" => "self_attn.kv_a_layernorm",
        "attn_kv_b" => "self_attn.kv_b_proj",
        "exp_probs_b" => return format!("model.layers.{i}.mlp.gate.e_score_correction_bias"),
        "ffn_gate_shexp" => "mlp.shared_experts.gate_proj",
        "ffn_up_shexp" => "mlp.shared_experts.up_proj",
        "ffn_down_shexp" => "mlp.shared_experts.down_proj",
        other => layers::hf_block_name(other),
    };
    format!("model.layers.{i}.{hf}.{suffix}")
}

impl DeepSeek2 {
    /// DeepSeek-V3 / Kimi K2 from a GGUF file.
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let cfg = DeepSeek2Config::from_gguf(&file, gguf_n_vocab(&file)?)?;
        Self::build(
            cfg,
            Weights::new(ModelSource::Gguf(file)),
            Format::Gguf,
            options,
        )
    }

    /// DeepSeek-V3 / Kimi K2 from a folder (`model_type: "deepseek_v3"`).
    pub fn load_hf(folder: Arc<HfFolder>, options: &ModelOptions) -> Result<Self, ModelError> {
        let cfg = DeepSeek2Config::from_hf(&HfConfig::new(&folder))?;
        let weights = Weights::new(ModelSource::HfFolder(folder));
        Self::build(cfg, weights, Format::Hf, options)
    }

    fn build(
        cfg: DeepSeek2Config,
        mut w: Weights,
        format: Format,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let (d, n_vocab, n_head) = (cfg.n_embd, cfg.n_vocab, cfg.n_head);
        let hf = format == Format::Hf;
        let (embd_name, norm_name, output_name) = if hf {
            (
                "model.embed_tokens.weight",
                "model.norm.weight",
                "lm_head.weight",
            )
        } else {
            ("token_embd.weight", "output_norm.weight", "output.weight")
        };
        let token_embd = w.matrix(embd_name, n_vocab, d)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let name = |t: &str| block_tensor(format, i, t);
            let q_width = n_head * cfg.qk_head_dim();
            let q = match cfg.q_lora_rank {
                None => {
                    QueryProjection::Direct(w.linear_matrix(&name("attn_q.weight"), q_width, d)?)
                }
                Some(rank) => QueryProjection::LowRank {
                    a: w.linear_matrix(&name("attn_q_a.weight"), rank, d)?,
                    norm: w.vector(&name("attn_q_a_norm.weight"), rank)?,
                    b: w.linear_matrix(&name("attn_q_b.weight"), q_width, rank)?,
                },
            };
            let rank = cfg.kv_lora_rank;
            let (k_b, v_b) = if !hf && w.has(&name("attn_k_b.weight")) {
                let k_b =
                    w.experts(&name("attn_k_b.weight"), n_head, rank, cfg.qk_nope_head_dim)?;
                let v_b = w.experts(&name("attn_v_b.weight"), n_head, cfg.v_head_dim, rank)?;
                (k_b, v_b)
            } else {
                let rows = n_head * (cfg.qk_nope_head_dim + cfg.v_head_dim);
                let kv_b = w.matrix(&name("attn_kv_b.weight"), rows, rank)?;
                mla::split_kv_b(&mut w, &kv_b, &cfg)
            };
            mla::check_absorbed(&k_b, &v_b, &cfg)?;
            let attn = MlaWeights {
                norm: w.vector(&name("attn_norm.weight"), d)?,
                q,
                kv_a: w.linear_matrix(&name("attn_kv_a_mqa.weight"), cfg.cache_width(), d)?,
                kv_a_norm: w.vector(&name("attn_kv_a_norm.weight"), rank)?,
                k_b,
                v_b,
                o: w.linear_matrix(&name("attn_output.weight"), d, n_head * cfg.v_head_dim)?,
            };
            let dense = |w: &mut Weights, suffix: &str, ff: usize| {
                let t = |base: &str| name(&format!("{base}{suffix}.weight"));
                Ok::<FeedForward, ModelError>(FeedForward {
                    gate: w.linear_matrix(&t("ffn_gate"), ff, d)?,
                    up: w.linear_matrix(&t("ffn_up"), ff, d)?,
                    down: w.linear_matrix(&t("ffn_down"), d, ff)?,
                    activation: GatedActivation::Silu,
                    post_norm: None,
                })
            };
            let mlp = if i < cfg.n_dense_layers {
                Mlp::Dense(dense(&mut w, "", cfg.n_ff)?)
            } else {
                let (n_expert, n_ff) = (cfg.n_expert, cfg.n_ff_expert);
                let router = w.linear_matrix(&name("ffn_gate_inp.weight"), n_expert, d)?;
                let correction_bias = w.vector(&name("exp_probs_b.bias"), n_expert)?;
                let (gate_up, down) = if hf {
                    let prefix = format!("model.layers.{i}.mlp.experts");
                    moe::hf_expert_list(&mut w, &prefix, n_expert, n_ff, d)?
                } else {
                    moe::gguf_expert_stacks(&mut w, name, n_expert, n_ff, d)?
                };
                let shared = match cfg.n_shared_experts {
                    0 => None,
                    k => Some(dense(&mut w, "_shexp", k * n_ff)?),
                };
                Mlp::Experts {
                    moe: Box::new(Moe {
                        router: Linear {
                            weight: router,
                            bias: None,
                        },
                        routing: Routing::GroupedSigmoid(GroupedSigmoid {
                            correction_bias,
                            n_group: cfg.n_group,
                            topk_group: cfg.topk_group,
                            renormalize: cfg.norm_topk_prob,
                            scale: cfg.routed_scaling_factor,
                        }),
                        gate_up,
                        down,
                        down_bias: None,
                        activation: ExpertActivation::Silu,
                        n_expert,
                        n_expert_used: cfg.n_expert_used,
                        n_ff,
                    }),
                    shared,
                }
            };
            blocks.push(Block {
                attn,
                ffn_norm: w.vector(&name("ffn_norm.weight"), d)?,
                mlp,
            });
        }
        let output_norm = w.vector(norm_name, d)?;
        let output = w.linear_matrix(output_name, n_vocab, d)?;

        let n_rot = cfg.qk_rope_head_dim;
        let (inv_freq, cos_sin_scale) = match &cfg.yarn {
            Some(yarn) => yarn.inv_freq(cfg.rope_theta, n_rot),
            None => (plain_inv_freq(cfg.rope_theta, n_rot), 1.0),
        };
        let rope = Rope::from_inv_freq(RopeLayout::Adjacent, n_rot, inv_freq, cos_sin_scale);

        let weight_bytes: usize = blocks
            .iter()
            .map(|b| {
                let attn: usize = b.attn.matrices().iter().map(MatrixRef::n_bytes).sum();
                let ffn_bytes = |f: &FeedForward| -> usize {
                    f.matrices().iter().map(MatrixRef::n_bytes).sum()
                };
                attn + match &b.mlp {
                    Mlp::Dense(ffn) => ffn_bytes(ffn),
                    Mlp::Experts { moe, shared } => {
                        moe.bytes_per_token() + shared.as_ref().map_or(0, ffn_bytes)
                    }
                }
            })
            .sum::<usize>()
            + output.n_bytes();
        let info = ModelInfo {
            architecture: "deepseek2".to_string(),
            n_vocab,
            n_ctx_train: cfg.n_ctx_train,
            n_layer: cfg.n_layer,
            kv_width: cfg.cache_width(),
            weight_bytes: weight_bytes as u64,
        };
        let kv_weights: Vec<_> = blocks.iter().map(|b| b.attn.kv_a.dtype).collect();
        Ok(DeepSeek2 {
            cfg,
            info,
            weights: w,
            token_embd,
            blocks,
            output_norm,
            output,
            rope,
            activations: options.activations,
            kv_dtype: options.kv_dtype(&kv_weights),
            buffers: Reusable::default(),
        })
    }

    pub fn config(&self) -> &DeepSeek2Config {
        &self.cfg
    }
}

impl Model for DeepSeek2 {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A cache of one row per position and layer: the latent and the RoPE key.
    fn new_kv_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::keys_only(self.cfg.n_layer, self.cfg.cache_width(), n_ctx)
            .with_dtype(self.kv_dtype)
    }

    fn forward(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Logits, ModelError> {
        self.forward_outputs(batch, kv, pool).map(|out| out.logits)
    }

    fn hidden_width(&self) -> Option<usize> {
        Some(self.cfg.n_embd)
    }

    fn forward_outputs(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Outputs, ModelError> {
        self.buffers
            .with(|buffers| self.forward_with(batch, kv, pool, buffers))
    }
}

impl DeepSeek2 {
    fn forward_with(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
        buffers: &mut PassBuffers,
    ) -> Result<Outputs, ModelError> {
        let cfg = &self.cfg;
        let new_lengths = layers::begin_pass(batch, kv, cfg.n_vocab)?;
        let compute = Compute {
            pool,
            weights: &self.weights,
            activations: self.activations,
        };
        let n = batch.len();
        let d = cfg.n_embd;
        let PassBuffers {
            hidden,
            layer: buf,
            rope,
            mla,
            ffn,
            moe,
            shared,
        } = buffers;
        rope.fill(batch, &self.rope);
        // Sizes the shared buffers (normed, proj); MLA sizes its own.
        let shape = AttentionShape {
            n_head: cfg.n_head,
            n_kv_head: 1,
            head_dim: cfg.v_head_dim,
            scale: cfg.attention_scale,
        };
        layers::embed_into(&self.weights, &self.token_embd, batch, hidden);
        buf.resize(batch, d, &shape);

        for (layer, blk) in self.blocks.iter().enumerate() {
            mla::attention_block(
                &compute,
                cfg,
                batch,
                kv,
                layer,
                &new_lengths,
                &blk.attn,
                (&self.rope, rope),
                hidden,
                buf,
                mla,
            );
            match &blk.mlp {
                Mlp::Dense(dense) => compute.feed_forward_block(
                    &blk.ffn_norm,
                    dense,
                    cfg.rms_eps,
                    n,
                    hidden,
                    buf,
                    ffn,
                ),
                Mlp::Experts {
                    moe: experts,
                    shared: shared_ffn,
                } => {
                    norm_rows(hidden, &blk.ffn_norm, cfg.rms_eps, &mut buf.normed);
                    experts.forward(&compute, &buf.normed, n, &mut buf.proj, moe);
                    if let Some(shared_ffn) = shared_ffn {
                        shared.resize(n * d, 0.0);
                        compute.feed_forward(
                            shared_ffn,
                            &buf.normed,
                            n,
                            shared,
                            &mut buf.scratch,
                            ffn,
                        );
                        add_assign(&mut buf.proj, shared);
                    }
                    add_assign(hidden, &buf.proj);
                }
            }
        }
        layers::end_pass(kv, &new_lengths);
        Ok(compute.outputs(
            batch,
            hidden,
            &self.output_norm,
            cfg.rms_eps,
            &self.output,
            buf,
        ))
    }
}
