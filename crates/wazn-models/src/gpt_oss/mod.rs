//! OpenAI's gpt-oss, from a Hugging Face folder (`model_type: "gpt_oss"`, MXFP4
//! experts) or GGUF (`general.architecture = "gpt-oss"`).
//!
//! Pre-norm decoder blocks:
//!   h = h + W_o · Attention(RoPE(W_q n + b_q), RoPE(W_k n + b_k), W_v n + b_v) + b_o
//!   h = h + MoE(n),                                      n = RMSNorm(h) before each
//! then a final RMSNorm and an untied output matrix.
//!
//! Attention: grouped-query heads of `head_dim` (the heads' width need not be the
//! hidden width), half-split RoPE with YaRN angles and YaRN's factor on cos and sin,
//! one learned sink logit per head in each softmax denominator, and on the layers
//! marked sliding a window of the last `sliding_window` positions; the cache frees
//! those layers' older blocks (see `kv_cache`).

mod config;

use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder};
use wazn_kernels::attention::AttentionShape;
use wazn_kernels::ops::{add_assign, Rope, RopeLayout};
use wazn_kernels::{Activations, ThreadPool};

pub use config::GptOssConfig;

use crate::batch::{Batch, Logits, Outputs};
use crate::error::ModelError;
use crate::gguf_keys::gguf_n_vocab;
use crate::hf_config::HfConfig;
use crate::kv_cache::{KvCache, KvDtype};
use crate::layers::{
    self, norm_rows, AttentionParams, AttentionWeights, Compute, LayerBuffers, Linear, Reusable,
    RopeTables,
};
use crate::load::ModelSource;
use crate::moe::{ExpertActivation, GateUp, Moe, MoeBuffers, Routing};
use crate::rope_scaling::plain_inv_freq;
use crate::weights::{MatrixRef, Weights};
use crate::{Model, ModelInfo, ModelOptions};

/// The weights of one decoder block.
struct Block {
    attn: AttentionWeights,
    /// `[n_head]`: each head's sink logit.
    sinks: Vec<f32>,
    mlp_norm: Vec<f32>,
    moe: Moe,
}

pub struct GptOss {
    cfg: GptOssConfig,
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

/// The buffers of one forward pass over `n` rows.
#[derive(Default)]
struct PassBuffers {
    /// `[n, d]`: the residual stream.
    hidden: Vec<f32>,
    layer: LayerBuffers,
    rope: RopeTables,
    moe: MoeBuffers,
}

/// Which file format the tensor names follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Gguf,
    Hf,
}

impl GptOss {
    /// gpt-oss from a GGUF file.
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let n_vocab = gguf_n_vocab(&file)?;
        let cfg = GptOssConfig::from_gguf(&file, n_vocab)?;
        Self::build(
            cfg,
            Weights::new(ModelSource::Gguf(file)),
            Format::Gguf,
            options,
        )
    }

    /// gpt-oss from a Hugging Face folder.
    pub fn load_hf(folder: Arc<HfFolder>, options: &ModelOptions) -> Result<Self, ModelError> {
        let cfg = GptOssConfig::from_hf(&HfConfig::new(&folder))?;
        Self::build(
            cfg,
            Weights::new(ModelSource::HfFolder(folder)),
            Format::Hf,
            options,
        )
    }

    fn build(
        cfg: GptOssConfig,
        mut w: Weights,
        format: Format,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let (d, n_vocab) = (cfg.n_embd, cfg.n_vocab);
        let (qw, kvw, n_ff, n_expert) =
            (cfg.q_width(), cfg.kv_width(), cfg.n_ff_expert, cfg.n_expert);
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
            let hf_name = |t: &str| format!("model.layers.{i}.{t}");
            let gguf_name = |t: &str| format!("blk.{i}.{t}");
            // The block's tensor for a Hugging Face name and a GGUF name.
            let name =
                |hf_t: &str, gguf_t: &str| if hf { hf_name(hf_t) } else { gguf_name(gguf_t) };
            let linear = |w: &mut Weights, hf_base: &str, gguf_base: &str, rows, cols| {
                let weight = w.linear_matrix(
                    &name(&format!("{hf_base}.weight"), &format!("{gguf_base}.weight")),
                    rows,
                    cols,
                )?;
                let bias = w.vector(
                    &name(&format!("{hf_base}.bias"), &format!("{gguf_base}.bias")),
                    rows,
                )?;
                Ok::<Linear, ModelError>(Linear {
                    weight,
                    bias: Some(bias),
                })
            };
            let q = linear(&mut w, "self_attn.q_proj", "attn_q", qw, d)?;
            let k = linear(&mut w, "self_attn.k_proj", "attn_k", kvw, d)?;
            let v = linear(&mut w, "self_attn.v_proj", "attn_v", kvw, d)?;
            let o = linear(&mut w, "self_attn.o_proj", "attn_output", d, qw)?;
            let router = linear(&mut w, "mlp.router", "ffn_gate_inp", n_expert, d)?;
            // Hugging Face interleaves gate and up rows in one stack; GGUF splits them or
            // (newer converters) concatenates them per expert.
            let gate_up = if hf {
                let base = hf_name("mlp.experts.gate_up_proj");
                GateUp::Interleaved {
                    weight: w.experts(&base, n_expert, 2 * n_ff, d)?,
                    bias: Some(w.tensor_f32(&format!("{base}_bias"), &[n_expert, 2 * n_ff])?),
                }
            } else if w.has(&gguf_name("ffn_gate_up_exps.weight")) {
                // Newer converters fuse the two stacks: each expert's gate rows, then its
                // up rows.
                let fused = |t: &str| gguf_name(&format!("ffn_gate_up_exps.{t}"));
                let bias = if w.has(&fused("bias")) {
                    w.tensor_f32(&fused("bias"), &[n_expert, 2 * n_ff])?
                } else {
                    let bias = |t: &str| {
                        w.tensor_f32(&gguf_name(&format!("ffn_{t}_exps.bias")), &[n_expert, n_ff])
                    };
                    let (gate, up) = (bias("gate")?, bias("up")?);
                    gate.chunks_exact(n_ff)
                        .zip(up.chunks_exact(n_ff))
                        .flat_map(|(g, u)| g.iter().chain(u).copied())
                        .collect()
                };
                GateUp::Concatenated {
                    weight: w.experts(&fused("weight"), n_expert, 2 * n_ff, d)?,
                    bias: Some(bias),
                }
            } else {
                let exps = |t: &str| gguf_name(&format!("ffn_{t}_exps"));
                GateUp::Split {
                    gate: w.experts(&format!("{}.weight", exps("gate")), n_expert, n_ff, d)?,
                    gate_bias: Some(
                        w.tensor_f32(&format!("{}.bias", exps("gate")), &[n_expert, n_ff])?,
                    ),
                    up: w.experts(&format!("{}.weight", exps("up")), n_expert, n_ff, d)?,
                    up_bias: Some(
                        w.tensor_f32(&format!("{}.bias", exps("up")), &[n_expert, n_ff])?,
                    ),
                }
            };
            let (down_name, down_bias_name) = if hf {
                let base = hf_name("mlp.experts.down_proj");
                (base.clone(), format!("{base}_bias"))
            } else {
                let base = gguf_name("ffn_down_exps");
                (format!("{base}.weight"), format!("{base}.bias"))
            };
            blocks.push(Block {
                attn: AttentionWeights {
                    norm: w.vector(&name("input_layernorm.weight", "attn_norm.weight"), d)?,
                    q,
                    k,
                    v,
                    o,
                    q_norm: None,
                    k_norm: None,
                    post_norm: None,
                },
                sinks: w.vector(&name("self_attn.sinks", "attn_sinks.weight"), cfg.n_head)?,
                mlp_norm: w.vector(
                    &name(
                        "post_attention_layernorm.weight",
                        "post_attention_norm.weight",
                    ),
                    d,
                )?,
                moe: Moe {
                    router,
                    gate_up,
                    down: w.experts(&down_name, n_expert, d, n_ff)?,
                    down_bias: Some(w.tensor_f32(&down_bias_name, &[n_expert, d])?),
                    n_expert,
                    n_expert_used: cfg.n_expert_used,
                    n_ff,
                    routing: Routing::Softmax { renormalize: true },
                    activation: ExpertActivation::ClampedSwiglu {
                        limit: cfg.swiglu_limit,
                        alpha: cfg.swiglu_alpha,
                    },
                },
            });
        }
        let output_norm = w.vector(norm_name, d)?;
        let output = w.linear_matrix(output_name, n_vocab, d)?;

        let (inv_freq, cos_sin_scale) = match &cfg.yarn {
            Some(yarn) => yarn.inv_freq(cfg.rope_theta, cfg.head_dim),
            None => (plain_inv_freq(cfg.rope_theta, cfg.head_dim), 1.0),
        };
        let rope =
            Rope::from_inv_freq(RopeLayout::HalfSplit, cfg.head_dim, inv_freq, cos_sin_scale);

        // Bytes read per token: every dense matrix, and k experts of each layer.
        let weight_bytes: usize = blocks
            .iter()
            .map(|b| {
                let attn = [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o];
                attn.iter().map(|l| l.weight.n_bytes()).sum::<usize>() + b.moe.bytes_per_token()
            })
            .sum::<usize>()
            + output.n_bytes();
        let info = ModelInfo {
            architecture: "gpt-oss".to_string(),
            n_vocab,
            n_ctx_train: cfg.n_ctx_train,
            n_layer: cfg.n_layer,
            kv_width: cfg.kv_width(),
            weight_bytes: weight_bytes as u64,
        };
        let kv_weights: Vec<_> = blocks
            .iter()
            .flat_map(|b| [b.attn.k.weight.dtype, b.attn.v.weight.dtype])
            .collect();
        Ok(GptOss {
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

    pub fn config(&self) -> &GptOssConfig {
        &self.cfg
    }
}

impl Model for GptOss {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A cache whose sliding-window layers keep only about the window, in the number
    /// type chosen at load ([`ModelOptions::kv_dtype`]).
    fn new_kv_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::with_sliding_window(
            self.cfg.n_layer,
            self.cfg.kv_width(),
            n_ctx,
            &self.cfg.sliding_layers,
            self.cfg.sliding_window,
        )
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

impl GptOss {
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
        let shape = AttentionShape {
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        };
        let PassBuffers {
            hidden,
            layer: buf,
            rope,
            moe,
        } = buffers;
        rope.fill(batch, &self.rope);
        // [n, d]: the residual stream, starting from the token embeddings.
        layers::embed_into(&self.weights, &self.token_embd, batch, hidden);
        buf.resize(batch, d, &shape);

        for (layer, blk) in self.blocks.iter().enumerate() {
            let params = AttentionParams {
                shape,
                rope: &self.rope,
                rope_tables: rope,
                window: cfg.sliding_layers[layer].then_some(cfg.sliding_window),
                sinks: Some(&blk.sinks),
            };
            compute.attention_block(
                batch,
                kv,
                layer,
                &new_lengths,
                &params,
                &blk.attn,
                cfg.rms_eps,
                hidden,
                buf,
            );

            norm_rows(hidden, &blk.mlp_norm, cfg.rms_eps, &mut buf.normed);
            blk.moe
                .forward(&compute, &buf.normed, n, &mut buf.proj, moe);
            add_assign(hidden, &buf.proj);
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
