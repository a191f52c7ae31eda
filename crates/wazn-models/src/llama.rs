//! The Llama family (Llama 2 / 3, SmolLM2, Mistral-style), from GGUF or a Hugging
//! Face folder (`LlamaForCausalLM`).
//!
//! Pre-norm decoder blocks:
//!   h = h + W_o · Attention(RoPE(W_q · n), RoPE(W_k · n), W_v · n),  n = RMSNorm(h)
//!   h = h + W_down · (silu(W_gate · n) ⊙ (W_up · n)),                n = RMSNorm(h)
//! then a final RMSNorm and the output projection (tied to the embedding when the
//! file has no output matrix). Grouped-query attention. RoPE rotates half-split pairs
//! in Hugging Face checkpoints and adjacent pairs in GGUF, whose converter permutes
//! the rows of the query and key matrices.

use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder, Metadata};
use wazn_kernels::attention::AttentionShape;
use wazn_kernels::ops::{GatedActivation, Rope, RopeLayout};
use wazn_kernels::{Activations, ThreadPool};

use crate::batch::{Batch, Logits, Outputs};
use crate::error::ModelError;
use crate::gguf_keys::gguf_n_vocab;
use crate::hf_config::HfConfig;
use crate::kv_cache::{KvCache, KvDtype};
use crate::layers::{
    self, checked_layer_count, AttentionParams, AttentionWeights, Compute, FeedForward, FfnBuffers,
    LayerBuffers, Linear, Reusable, RopeTables,
};
use crate::load::ModelSource;
use crate::rope_scaling::Llama3Scaling;
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
    /// Llama 3's frequency schedule (Hugging Face `rope_scaling`; GGUF bakes it into
    /// `rope_freqs.weight` instead).
    pub llama3_scaling: Option<Llama3Scaling>,
    pub rms_eps: f32,
    /// The output projection is the embedding table.
    pub tied_embeddings: bool,
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
        if n_rot == 0 || n_rot > head_dim || n_rot % 2 != 0 {
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
            n_layer: checked_layer_count(required("block_count")?)?,
            n_ff: required("feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
            rope_theta: md.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_linear_factor,
            llama3_scaling: None,
            rms_eps,
            tied_embeddings: false,
        })
    }

    /// Hyper-parameters from a Hugging Face `config.json`.
    fn from_hf_config(cfg: &HfConfig<'_>) -> Result<Self, ModelError> {
        let n_embd = cfg.usize("hidden_size")?;
        let n_head = cfg.usize("num_attention_heads")?;
        let n_kv_head = cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(cfg.error(format!(
                "{n_head} attention heads cannot share {n_kv_head} key/value heads"
            )));
        }
        let head_dim = cfg.opt_usize("head_dim")?.unwrap_or(n_embd / n_head);
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(cfg.error(format!("head_dim {head_dim} must be even and non-zero")));
        }
        if cfg.opt_bool("attention_bias")? == Some(true) || cfg.opt_bool("mlp_bias")? == Some(true)
        {
            return Err(cfg.error("Llama with biases is not supported".into()));
        }
        let (mut rope_linear_factor, mut llama3_scaling) = (1.0, None);
        match cfg.rope_type() {
            None => {}
            Some("linear") => rope_linear_factor = cfg.rope_f64("factor")?.unwrap_or(1.0) as f32,
            Some("llama3") => {
                let need = |key: &str| {
                    cfg.rope_f64(key)?
                        .ok_or_else(|| cfg.error(format!("llama3 RoPE scaling needs \"{key}\"")))
                };
                llama3_scaling = Some(Llama3Scaling {
                    factor: need("factor")?,
                    low_freq_factor: need("low_freq_factor")?,
                    high_freq_factor: need("high_freq_factor")?,
                    original_context: need("original_max_position_embeddings")?,
                });
            }
            Some(other) => {
                return Err(cfg.error(format!("RoPE scaling '{other}' is not supported for llama")))
            }
        }
        Ok(LlamaConfig {
            n_vocab: cfg.usize("vocab_size")?,
            n_ctx_train: cfg.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            n_embd,
            n_layer: checked_layer_count(cfg.usize("num_hidden_layers")?)?,
            n_ff: cfg.usize("intermediate_size")?,
            n_head,
            n_kv_head,
            head_dim,
            n_rot: head_dim,
            rope_theta: cfg.rope_theta()?.unwrap_or(10000.0) as f32,
            rope_linear_factor,
            llama3_scaling,
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            tied_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        })
    }

    fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

/// The weights of one decoder block.
struct Block {
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    ffn: FeedForward,
}

/// Tensor names of one file format.
struct Names {
    token_embd: &'static str,
    output_norm: &'static str,
    output: &'static str,
    /// Block `i`'s tensor for a GGUF-style short name (`attn_q`, `ffn_norm`, ...).
    block: fn(usize, &str) -> String,
}

const GGUF_NAMES: Names = Names {
    token_embd: "token_embd.weight",
    output_norm: "output_norm.weight",
    output: "output.weight",
    block: |i, t| format!("blk.{i}.{t}.weight"),
};

const HF_NAMES: Names = Names {
    token_embd: "model.embed_tokens.weight",
    output_norm: "model.norm.weight",
    output: "lm_head.weight",
    block: |i, t| format!("model.layers.{i}.{}.weight", layers::hf_block_name(t)),
};

pub struct Llama {
    cfg: LlamaConfig,
    info: ModelInfo,
    weights: Weights,
    token_embd: MatrixRef,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// The output matrix, or the token embedding when the embedding is tied.
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
    ffn: FfnBuffers,
}

impl Llama {
    /// A Llama from a GGUF file (`general.architecture` names the family).
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let arch = file.architecture()?.to_string();
        let n_vocab = gguf_n_vocab(&file)?;
        let mut cfg = LlamaConfig::from_metadata(file.metadata(), &arch, n_vocab)?;
        cfg.tied_embeddings = file.tensor(GGUF_NAMES.output).is_none();
        let weights = Weights::new(ModelSource::Gguf(file));
        Self::build(
            cfg,
            arch,
            weights,
            &GGUF_NAMES,
            RopeLayout::Adjacent,
            options,
        )
    }

    /// A Llama from a Hugging Face folder (`model_type: "llama"`).
    pub fn load_hf(folder: Arc<HfFolder>, options: &ModelOptions) -> Result<Self, ModelError> {
        let cfg = LlamaConfig::from_hf_config(&HfConfig::new(&folder))?;
        let weights = Weights::new(ModelSource::HfFolder(folder));
        Self::build(
            cfg,
            "llama".to_string(),
            weights,
            &HF_NAMES,
            RopeLayout::HalfSplit,
            options,
        )
    }

    fn build(
        cfg: LlamaConfig,
        arch: String,
        mut weights: Weights,
        names: &Names,
        layout: RopeLayout,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let (n_vocab, d, q, kv, ff) = (
            cfg.n_vocab,
            cfg.n_embd,
            cfg.q_width(),
            cfg.kv_width(),
            cfg.n_ff,
        );
        let token_embd = weights.matrix(names.token_embd, n_vocab, d)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let name = |t: &str| (names.block)(i, t);
            // Llama's projections have no bias.
            let unbiased = |weight| Linear { weight, bias: None };
            blocks.push(Block {
                attn: AttentionWeights {
                    norm: weights.vector(&name("attn_norm"), d)?,
                    q: unbiased(weights.linear_matrix(&name("attn_q"), q, d)?),
                    k: unbiased(weights.linear_matrix(&name("attn_k"), kv, d)?),
                    v: unbiased(weights.linear_matrix(&name("attn_v"), kv, d)?),
                    o: unbiased(weights.linear_matrix(&name("attn_output"), d, q)?),
                    q_norm: None,
                    k_norm: None,
                    post_norm: None,
                },
                ffn_norm: weights.vector(&name("ffn_norm"), d)?,
                ffn: FeedForward {
                    gate: weights.linear_matrix(&name("ffn_gate"), ff, d)?,
                    up: weights.linear_matrix(&name("ffn_up"), ff, d)?,
                    down: weights.linear_matrix(&name("ffn_down"), d, ff)?,
                    activation: GatedActivation::Silu,
                    post_norm: None,
                },
            });
        }
        let output_norm = weights.vector(names.output_norm, d)?;
        let output = if cfg.tied_embeddings {
            weights.packed(token_embd)
        } else {
            weights.linear_matrix(names.output, n_vocab, d)?
        };

        let rope = if let Some(scaling) = &cfg.llama3_scaling {
            let inv_freq = scaling.inv_freq(cfg.rope_theta as f64, cfg.n_rot);
            Rope::from_inv_freq(layout, cfg.n_rot, inv_freq, 1.0)
        } else if weights.has("rope_freqs.weight") || cfg.rope_linear_factor != 1.0 {
            // Llama 3's long-context scaling ships in GGUF as per-pair frequency divisors.
            let mut freq_factors = if weights.has("rope_freqs.weight") {
                weights.vector("rope_freqs.weight", cfg.n_rot / 2)?
            } else {
                vec![1.0; cfg.n_rot / 2]
            };
            freq_factors
                .iter_mut()
                .for_each(|f| *f *= cfg.rope_linear_factor);
            Rope::new(layout, cfg.n_rot, cfg.rope_theta, Some(&freq_factors))
        } else {
            Rope::new(layout, cfg.n_rot, cfg.rope_theta, None)
        };

        let matrices = blocks.iter().flat_map(|b| {
            [
                b.attn.q.weight,
                b.attn.k.weight,
                b.attn.v.weight,
                b.attn.o.weight,
            ]
            .into_iter()
            .chain(b.ffn.matrices())
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
        let kv_weights: Vec<_> = blocks
            .iter()
            .flat_map(|b| [b.attn.k.weight.dtype, b.attn.v.weight.dtype])
            .collect();
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
            kv_dtype: options.kv_dtype(&kv_weights),
            buffers: Reusable::default(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
}

impl Model for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A cache in the number type chosen at load ([`ModelOptions::kv_dtype`]).
    fn new_kv_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(self.cfg.n_layer, self.cfg.kv_width(), n_ctx).with_dtype(self.kv_dtype)
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

impl Llama {
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
            ffn,
        } = buffers;
        rope.fill(batch, &self.rope);
        let params = AttentionParams {
            shape: AttentionShape {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: cfg.head_dim,
                scale: 1.0 / (cfg.head_dim as f32).sqrt(),
            },
            rope: &self.rope,
            rope_tables: rope,
            window: None,
            sinks: None,
        };
        // [n, d]: the residual stream, starting from the token embeddings.
        layers::embed_into(&self.weights, &self.token_embd, batch, hidden);
        buf.resize(batch, d, &params.shape);

        for (layer, blk) in self.blocks.iter().enumerate() {
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
            compute.feed_forward_block(&blk.ffn_norm, &blk.ffn, cfg.rms_eps, n, hidden, buf, ffn);
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
