//! Qwen3 and Qwen3-MoE, from GGUF (`qwen3`, `qwen3moe`) or a Hugging Face folder
//! (`Qwen3ForCausalLM`, `Qwen3MoeForCausalLM`).
//!
//! Pre-norm decoder blocks as Llama's, with two differences:
//!   q = RMSNorm_head(W_q n), k = RMSNorm_head(W_k n)   (each head normed, then RoPE)
//!   h = h + FFN(n), FFN = SwiGLU, or in Qwen3-MoE a mixture of experts: a softmax
//!   router, the top k experts, their weights re-summed to 1 when `norm_topk_prob`.
//! Heads may be wider than `hidden / n_head`. RoPE rotates half-split pairs in both
//! formats (llama.cpp's converter does not permute Qwen's rows). The output matrix is
//! the embedding table in the small models that tie them.

use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder};
use wazn_kernels::attention::AttentionShape;
use wazn_kernels::ops::{add_assign, GatedActivation, Rope, RopeLayout};
use wazn_kernels::{Activations, ThreadPool};

use crate::batch::{Batch, Logits, Outputs};
use crate::error::ModelError;
use crate::gguf_keys::{gguf_n_vocab, ArchKeys};
use crate::hf_config::HfConfig;
use crate::kv_cache::{KvCache, KvDtype};
use crate::layers::{
    self, checked_layer_count, norm_rows, AttentionParams, AttentionWeights, Compute, FeedForward,
    FfnBuffers, LayerBuffers, Linear, Reusable, RopeTables,
};
use crate::load::ModelSource;
use crate::moe::{self, ExpertActivation, Moe, MoeBuffers, Routing};
use crate::weights::{MatrixRef, Weights};
use crate::{Model, ModelInfo, ModelOptions};

/// The mixture-of-experts part of a Qwen3-MoE configuration.
#[derive(Clone, Debug)]
pub struct Qwen3MoeConfig {
    pub n_expert: usize,
    /// Experts each token is routed to (top-k).
    pub n_expert_used: usize,
    /// Width of one expert's hidden layer.
    pub n_ff_expert: usize,
    /// The k weights are re-summed to 1 (`norm_topk_prob`).
    pub norm_topk_prob: bool,
    /// Per layer: a mixture of experts (else a dense SwiGLU of `n_ff`).
    pub moe_layers: Vec<bool>,
}

/// Hyper-parameters.
#[derive(Clone, Debug)]
pub struct Qwen3Config {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Width of the dense feed-forward layers (0 when every layer is a mixture).
    pub n_ff: usize,
    pub rope_theta: f32,
    /// Linear RoPE scaling: positions are divided by this factor.
    pub rope_linear_factor: f32,
    pub rms_eps: f32,
    /// The output projection is the embedding table.
    pub tied_embeddings: bool,
    pub moe: Option<Qwen3MoeConfig>,
}

impl Qwen3Config {
    fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    fn check(self) -> Result<Self, String> {
        let (n_head, n_kv_head, head_dim) = (self.n_head, self.n_kv_head, self.head_dim);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(format!(
                "{n_head} attention heads cannot share {n_kv_head} key/value heads"
            ));
        }
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(format!("head_dim {head_dim} must be even and non-zero"));
        }
        if self.rope_linear_factor.is_nan() || self.rope_linear_factor <= 0.0 {
            return Err(format!("RoPE scaling factor {}", self.rope_linear_factor));
        }
        if let Some(moe) = &self.moe {
            if moe.n_expert_used == 0 || moe.n_expert_used > moe.n_expert {
                return Err(format!(
                    "{} experts per token out of {}",
                    moe.n_expert_used, moe.n_expert
                ));
            }
        }
        Ok(self)
    }

    /// From the `qwen3.*` or `qwen3moe.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile, arch: &str, n_vocab: usize) -> Result<Self, ModelError> {
        let keys = ArchKeys::new(file.metadata(), arch);
        let n_embd = keys.usize("embedding_length")?;
        let n_layer = checked_layer_count(keys.usize("block_count")?)?;
        let n_head = keys.usize("attention.head_count")?;
        let head_dim = match keys.opt_usize("attention.key_length")? {
            Some(k) => k,
            None => n_embd.checked_div(n_head).unwrap_or(0),
        };
        let value_dim = keys
            .opt_usize("attention.value_length")?
            .unwrap_or(head_dim);
        if value_dim != head_dim {
            return Err(ModelError::BadHyperParameter(format!(
                "key length {head_dim} and value length {value_dim} must be equal"
            )));
        }
        let rope_linear_factor = match keys.opt_str("rope.scaling.type")? {
            None | Some("none") => 1.0,
            Some("linear") => keys.opt_f32("rope.scaling.factor")?.unwrap_or(1.0),
            Some(other) => {
                return Err(ModelError::BadHyperParameter(format!(
                    "RoPE scaling '{other}' is not supported for {arch}"
                )))
            }
        };
        let moe = if arch == "qwen3moe" {
            Some(Qwen3MoeConfig {
                n_expert: keys.usize("expert_count")?,
                n_expert_used: keys.usize("expert_used_count")?,
                n_ff_expert: keys.usize("expert_feed_forward_length")?,
                // llama.cpp re-sums the weights of every Qwen3-MoE; a file may say otherwise.
                norm_topk_prob: keys.opt_bool("expert_weights_norm")?.unwrap_or(true),
                moe_layers: vec![true; n_layer],
            })
        } else {
            None
        };
        Qwen3Config {
            n_vocab,
            n_ctx_train: keys.opt_usize("context_length")?.unwrap_or(4096),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: keys.opt_usize("attention.head_count_kv")?.unwrap_or(n_head),
            head_dim,
            n_ff: keys.opt_usize("feed_forward_length")?.unwrap_or(0),
            rope_theta: keys.opt_f32("rope.freq_base")?.unwrap_or(1_000_000.0),
            rope_linear_factor,
            rms_eps: keys.f32("attention.layer_norm_rms_epsilon")?,
            tied_embeddings: file.tensor("output.weight").is_none(),
            moe,
        }
        .check()
        .map_err(ModelError::BadHyperParameter)
    }

    /// From a Hugging Face `config.json` (`model_type` `qwen3` or `qwen3_moe`).
    fn from_hf(cfg: &HfConfig<'_>, is_moe: bool) -> Result<Self, ModelError> {
        let n_embd = cfg.usize("hidden_size")?;
        let n_head = cfg.usize("num_attention_heads")?;
        let n_layer = checked_layer_count(cfg.usize("num_hidden_layers")?)?;
        if cfg.opt_bool("use_sliding_window")? == Some(true) {
            return Err(cfg.error("Qwen3 with a sliding window is not supported".into()));
        }
        let rope_linear_factor = match cfg.rope_type() {
            None => 1.0,
            Some("linear") => cfg.rope_f64("factor")?.unwrap_or(1.0) as f32,
            Some(other) => {
                return Err(cfg.error(format!("RoPE scaling '{other}' is not supported for Qwen3")))
            }
        };
        let moe = if is_moe {
            let n_expert = cfg.usize("num_experts")?;
            let step = cfg.opt_usize("decoder_sparse_step")?.unwrap_or(1);
            let dense_layers: Vec<usize> = match cfg.get("mlp_only_layers") {
                None => Vec::new(),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| cfg.error(format!("\"mlp_only_layers\" = {v} is not a list")))?,
            };
            // As transformers: a layer is sparse unless listed, every `step`-th layer.
            let moe_layers = (0..n_layer)
                .map(|i| {
                    !dense_layers.contains(&i) && n_expert > 0 && step > 0 && (i + 1) % step == 0
                })
                .collect();
            Some(Qwen3MoeConfig {
                n_expert,
                n_expert_used: cfg.usize("num_experts_per_tok")?,
                n_ff_expert: cfg.usize("moe_intermediate_size")?,
                norm_topk_prob: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
                moe_layers,
            })
        } else {
            None
        };
        Qwen3Config {
            n_vocab: cfg.usize("vocab_size")?,
            n_ctx_train: cfg.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_head),
            head_dim: match cfg.opt_usize("head_dim")? {
                Some(d) => d,
                None => n_embd.checked_div(n_head).unwrap_or(0),
            },
            n_ff: cfg.opt_usize("intermediate_size")?.unwrap_or(0),
            rope_theta: cfg.rope_theta()?.unwrap_or(1_000_000.0) as f32,
            rope_linear_factor,
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            tied_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            moe,
        }
        .check()
        .map_err(|reason| cfg.error(reason))
    }
}

/// A block's feed-forward layer.
enum Mlp {
    Dense(FeedForward),
    Experts(Moe),
}

/// The weights of one decoder block.
struct Block {
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    mlp: Mlp,
}

/// Which file format the tensor names follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Gguf,
    Hf,
}

/// Block `i`'s tensor for a GGUF-style short name (`attn_q.weight`, `ffn_norm.weight`,
/// …) in `format`.
fn block_tensor(format: Format, i: usize, short: &str) -> String {
    if format == Format::Gguf {
        return format!("blk.{i}.{short}");
    }
    let (base, suffix) = short.rsplit_once('.').unwrap_or((short, "weight"));
    format!("model.layers.{i}.{}.{suffix}", layers::hf_block_name(base))
}

pub struct Qwen3 {
    cfg: Qwen3Config,
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

/// The buffers of one forward pass.
#[derive(Default)]
struct PassBuffers {
    /// `[n, d]`: the residual stream.
    hidden: Vec<f32>,
    layer: LayerBuffers,
    rope: RopeTables,
    ffn: FfnBuffers,
    moe: MoeBuffers,
}

impl Qwen3 {
    /// Qwen3 or Qwen3-MoE from a GGUF file.
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let arch = file.architecture()?.to_string();
        let cfg = Qwen3Config::from_gguf(&file, &arch, gguf_n_vocab(&file)?)?;
        let weights = Weights::new(ModelSource::Gguf(file));
        Self::build(cfg, arch, weights, Format::Gguf, options)
    }

    /// Qwen3 (`model_type: "qwen3"`) or Qwen3-MoE (`"qwen3_moe"`) from a folder.
    pub fn load_hf(folder: Arc<HfFolder>, options: &ModelOptions) -> Result<Self, ModelError> {
        let is_moe = folder.model_type() == Some("qwen3_moe");
        let cfg = Qwen3Config::from_hf(&HfConfig::new(&folder), is_moe)?;
        let arch = if is_moe { "qwen3moe" } else { "qwen3" };
        let weights = Weights::new(ModelSource::HfFolder(folder));
        Self::build(cfg, arch.to_string(), weights, Format::Hf, options)
    }

    fn build(
        cfg: Qwen3Config,
        arch: String,
        mut w: Weights,
        format: Format,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let (n_vocab, d, qw, kvw) = (cfg.n_vocab, cfg.n_embd, cfg.q_width(), cfg.kv_width());
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
            let name = |short: &str| block_tensor(format, i, short);
            // A projection, with its bias where the checkpoint has one.
            let linear = |w: &mut Weights, base: &str, rows, cols| {
                let weight = w.linear_matrix(&name(&format!("{base}.weight")), rows, cols)?;
                let bias_name = name(&format!("{base}.bias"));
                let bias = match w.has(&bias_name) {
                    true => Some(w.vector(&bias_name, rows)?),
                    false => None,
                };
                Ok::<Linear, ModelError>(Linear { weight, bias })
            };
            let attn = AttentionWeights {
                norm: w.vector(&name("attn_norm.weight"), d)?,
                q: linear(&mut w, "attn_q", qw, d)?,
                k: linear(&mut w, "attn_k", kvw, d)?,
                v: linear(&mut w, "attn_v", kvw, d)?,
                o: linear(&mut w, "attn_output", d, qw)?,
                q_norm: Some(w.vector(&name("attn_q_norm.weight"), cfg.head_dim)?),
                k_norm: Some(w.vector(&name("attn_k_norm.weight"), cfg.head_dim)?),
                post_norm: None,
            };
            let is_moe = cfg.moe.as_ref().is_some_and(|m| m.moe_layers[i]);
            let mlp = match &cfg.moe {
                Some(m) if is_moe => {
                    let (n_expert, n_ff) = (m.n_expert, m.n_ff_expert);
                    let router = w.linear_matrix(&name("ffn_gate_inp.weight"), n_expert, d)?;
                    let (gate_up, down) = if hf {
                        let prefix = format!("model.layers.{i}.mlp.experts");
                        moe::hf_expert_list(&mut w, &prefix, n_expert, n_ff, d)?
                    } else {
                        moe::gguf_expert_stacks(&mut w, name, n_expert, n_ff, d)?
                    };
                    Mlp::Experts(Moe {
                        router: Linear {
                            weight: router,
                            bias: None,
                        },
                        routing: Routing::Softmax {
                            renormalize: m.norm_topk_prob,
                        },
                        gate_up,
                        down,
                        down_bias: None,
                        activation: ExpertActivation::Silu,
                        n_expert,
                        n_expert_used: m.n_expert_used,
                        n_ff,
                    })
                }
                _ => {
                    let ff = cfg.n_ff;
                    Mlp::Dense(FeedForward {
                        gate: w.linear_matrix(&name("ffn_gate.weight"), ff, d)?,
                        up: w.linear_matrix(&name("ffn_up.weight"), ff, d)?,
                        down: w.linear_matrix(&name("ffn_down.weight"), d, ff)?,
                        activation: GatedActivation::Silu,
                        post_norm: None,
                    })
                }
            };
            blocks.push(Block {
                attn,
                ffn_norm: w.vector(&name("ffn_norm.weight"), d)?,
                mlp,
            });
        }
        let output_norm = w.vector(norm_name, d)?;
        // A stored output matrix is used even where the config ties it, as transformers
        // does.
        let output = if cfg.tied_embeddings && !w.has(output_name) {
            w.packed(token_embd)
        } else {
            w.linear_matrix(output_name, n_vocab, d)?
        };
        let freq_factors = vec![cfg.rope_linear_factor; cfg.head_dim / 2];
        let rope = Rope::new(
            RopeLayout::HalfSplit,
            cfg.head_dim,
            cfg.rope_theta,
            (cfg.rope_linear_factor != 1.0).then_some(&freq_factors[..]),
        );

        let weight_bytes: usize = blocks
            .iter()
            .map(|b| {
                let attn = [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o];
                let attn: usize = attn.iter().map(|l| l.weight.n_bytes()).sum();
                attn + match &b.mlp {
                    Mlp::Dense(ffn) => ffn.matrices().iter().map(MatrixRef::n_bytes).sum(),
                    Mlp::Experts(moe) => moe.bytes_per_token(),
                }
            })
            .sum::<usize>()
            + output.n_bytes();
        let info = ModelInfo {
            architecture: arch,
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
        Ok(Qwen3 {
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

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }
}

impl Model for Qwen3 {
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

impl Qwen3 {
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
        let PassBuffers {
            hidden,
            layer: buf,
            rope,
            ffn,
            moe,
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
        buf.resize(batch, cfg.n_embd, &params.shape);

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
                Mlp::Experts(experts) => {
                    norm_rows(hidden, &blk.ffn_norm, cfg.rms_eps, &mut buf.normed);
                    experts.forward(&compute, &buf.normed, n, &mut buf.proj, moe);
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
