//! Google's Gemma 3, from GGUF (`gemma3`) or a Hugging Face folder
//! (`Gemma3ForCausalLM`, or the text part of `Gemma3ForConditionalGeneration`).
//!
//! Decoder blocks with a norm before and after each sublayer:
//!   h = h + RMSNorm(W_o · Attention(RoPE(RMSNorm_head(W_q n)), RoPE(RMSNorm_head(W_k n)), W_v n))
//!   h = h + RMSNorm(W_down · (gelu_tanh(W_gate · n) ⊙ (W_up · n)))
//! with n = RMSNorm(h) before each, every RMSNorm's gain being (1 + w) of the stored
//! w (GGUF stores 1 + w already). The embeddings are scaled by √d; the output matrix
//! is the embedding table; the logits may be soft-capped, `cap · tanh(x / cap)`.
//!
//! Five of every six layers are local: they attend over the last `sliding_window`
//! positions and rotate with their own RoPE base (10 000); the global layers see
//! everything, with base 1 M and the configured (linear) scaling. The attention
//! scale is `query_pre_attn_scalar^-½`; GGUF does not carry that scalar, so, as
//! llama.cpp, a GGUF model uses `head_dim^-½` except 27B's `(d / n_head)^-½`.

use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder};
use wazn_kernels::attention::AttentionShape;
use wazn_kernels::ops::{GatedActivation, Rope, RopeLayout};
use wazn_kernels::{Activations, ThreadPool};

use crate::batch::{Batch, Logits, Outputs};
use crate::error::ModelError;
use crate::gguf_keys::{gguf_n_vocab, ArchKeys};
use crate::hf_config::HfConfig;
use crate::kv_cache::{KvCache, KvDtype};
use crate::layers::{
    self, checked_layer_count, AttentionParams, AttentionWeights, Compute, FeedForward, FfnBuffers,
    LayerBuffers, Linear, Reusable, RopeTables,
};
use crate::load::ModelSource;
use crate::weights::{MatrixRef, Weights};
use crate::{Model, ModelInfo, ModelOptions};

/// Layers per local/global cycle when a model does not list its layer types.
const DEFAULT_SLIDING_PATTERN: usize = 6;

/// RoPE of one kind of layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma3Rope {
    pub theta: f32,
    /// Linear scaling: positions are divided by this factor.
    pub linear_factor: f32,
}

/// Hyper-parameters.
#[derive(Clone, Debug)]
pub struct Gemma3Config {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub rms_eps: f32,
    /// Keys a local layer's query sees, itself included.
    pub sliding_window: usize,
    /// Per layer: whether it is local (sliding-window).
    pub sliding_layers: Vec<bool>,
    pub global_rope: Gemma3Rope,
    pub local_rope: Gemma3Rope,
    /// Multiplies q·k.
    pub attention_scale: f32,
    /// `cap · tanh(logit / cap)` on the output logits.
    pub final_logit_softcap: Option<f32>,
}

impl Gemma3Config {
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
        if self.sliding_layers.len() != self.n_layer {
            return Err(format!(
                "{} layer types for {} layers",
                self.sliding_layers.len(),
                self.n_layer
            ));
        }
        if self.sliding_window == 0 && self.sliding_layers.iter().any(|&s| s) {
            return Err("sliding window of 0 positions".into());
        }
        for rope in [&self.global_rope, &self.local_rope] {
            if !(rope.theta > 0.0 && rope.linear_factor > 0.0) {
                return Err(format!("RoPE {rope:?}"));
            }
        }
        if !(self.attention_scale.is_finite() && self.attention_scale > 0.0) {
            return Err(format!("attention scale {}", self.attention_scale));
        }
        if self
            .final_logit_softcap
            .is_some_and(|c| c.is_nan() || c <= 0.0)
        {
            return Err(format!(
                "final logit soft cap {:?}",
                self.final_logit_softcap
            ));
        }
        Ok(self)
    }

    /// From the `gemma3.*` keys of a GGUF file, read as llama.cpp reads them.
    pub fn from_gguf(file: &GgufFile, n_vocab: usize) -> Result<Self, ModelError> {
        let keys = ArchKeys::new(file.metadata(), "gemma3");
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
        let sliding_window = keys.opt_usize("attention.sliding_window")?.unwrap_or(0);
        let md = file.metadata();
        let pattern_key = keys.key("attention.sliding_window_pattern");
        let sliding_layers = if sliding_window == 0 {
            vec![false; n_layer]
        } else if md.get(&pattern_key).and_then(|v| v.as_array()).is_some() {
            // One flag per layer (true: sliding), as newer converters write it.
            md.get_bool_array(&pattern_key)?.unwrap_or_default()
        } else {
            let every = keys
                .opt_usize("attention.sliding_window_pattern")?
                .unwrap_or(DEFAULT_SLIDING_PATTERN);
            pattern(n_layer, every)
        };
        let linear_factor = match keys.opt_str("rope.scaling.type")? {
            None | Some("none") => 1.0,
            Some("linear") => keys.opt_f32("rope.scaling.factor")?.unwrap_or(1.0),
            Some(other) => {
                return Err(ModelError::BadHyperParameter(format!(
                    "RoPE scaling '{other}' is not supported for gemma3"
                )))
            }
        };
        // llama.cpp: 27B (62 layers) scales by (d / n_head)^-½, every other size by
        // head_dim^-½ — the `query_pre_attn_scalar`s of the released models.
        let scalar = if n_layer == 62 {
            n_embd.checked_div(n_head).unwrap_or(0)
        } else {
            head_dim
        };
        Gemma3Config {
            n_vocab,
            n_ctx_train: keys.opt_usize("context_length")?.unwrap_or(131_072),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: keys.opt_usize("attention.head_count_kv")?.unwrap_or(n_head),
            head_dim,
            n_ff: keys.usize("feed_forward_length")?,
            rms_eps: keys.f32("attention.layer_norm_rms_epsilon")?,
            sliding_window,
            sliding_layers,
            global_rope: Gemma3Rope {
                theta: keys.opt_f32("rope.freq_base")?.unwrap_or(1_000_000.0),
                linear_factor,
            },
            local_rope: Gemma3Rope {
                theta: keys.opt_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
                linear_factor: 1.0,
            },
            attention_scale: 1.0 / (scalar as f32).sqrt(),
            final_logit_softcap: keys
                .opt_f32("final_logit_softcapping")?
                .filter(|&c| c != 0.0),
        }
        .check()
        .map_err(ModelError::BadHyperParameter)
    }

    /// From a Hugging Face config (`gemma3_text`, or a `gemma3` config's
    /// `text_config`). Keys a released config leaves out take transformers' defaults
    /// for Gemma 3.
    fn from_hf(cfg: &HfConfig<'_>) -> Result<Self, ModelError> {
        let n_embd = cfg.usize("hidden_size")?;
        let n_layer = checked_layer_count(cfg.usize("num_hidden_layers")?)?;
        let n_head = cfg.opt_usize("num_attention_heads")?.unwrap_or(8);
        let head_dim = cfg.opt_usize("head_dim")?.unwrap_or(256);
        if cfg.opt_f64("attn_logit_softcapping")?.is_some() {
            return Err(cfg.error("attention logit soft-capping is not supported".into()));
        }
        let sliding_window = cfg.opt_usize("sliding_window")?.unwrap_or(4096);
        let sliding_layers = match cfg.get("layer_types") {
            Some(types) => {
                let types: Vec<String> = serde_json::from_value(types.clone())
                    .map_err(|_| cfg.error(format!("\"layer_types\" = {types} is not a list")))?;
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        other => Err(cfg.error(format!("layer type \"{other}\""))),
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                let every = cfg
                    .opt_usize("sliding_window_pattern")?
                    .unwrap_or(DEFAULT_SLIDING_PATTERN);
                pattern(n_layer, every)
            }
        };
        let (global_rope, local_rope) = hf_ropes(cfg)?;
        let scalar = cfg.opt_f64("query_pre_attn_scalar")?.unwrap_or(256.0);
        Gemma3Config {
            n_vocab: cfg.opt_usize("vocab_size")?.unwrap_or(262_208),
            n_ctx_train: cfg.opt_usize("max_position_embeddings")?.unwrap_or(131_072),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: cfg.opt_usize("num_key_value_heads")?.unwrap_or(4),
            head_dim,
            n_ff: cfg.usize("intermediate_size")?,
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
            sliding_window,
            sliding_layers,
            global_rope,
            local_rope,
            attention_scale: (1.0 / scalar.sqrt()) as f32,
            final_logit_softcap: cfg.opt_f64("final_logit_softcapping")?.map(|c| c as f32),
        }
        .check()
        .map_err(|reason| cfg.error(reason))
    }
}

/// Layer `i` is local unless it ends a cycle of `every` layers (`every` 0: all local).
fn pattern(n_layer: usize, every: usize) -> Vec<bool> {
    (0..n_layer)
        .map(|i| every == 0 || i % every < every - 1)
        .collect()
}

/// The global and local RoPE of a Hugging Face config: per layer type in
/// `rope_parameters` (transformers 5), or `rope_theta` + `rope_scaling` for the global
/// layers and `rope_local_base_freq` for the local ones (the released configs).
fn hf_ropes(cfg: &HfConfig<'_>) -> Result<(Gemma3Rope, Gemma3Rope), ModelError> {
    let of = |params: &serde_json::Value, default_theta: f64| -> Result<Gemma3Rope, ModelError> {
        let number = |key: &str| -> Result<Option<f64>, ModelError> {
            match params.get(key).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| cfg.error(format!("RoPE \"{key}\" = {v} is not a number"))),
            }
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let linear_factor = match kind {
            "default" => 1.0,
            "linear" => number("factor")?.unwrap_or(1.0),
            other => {
                return Err(cfg.error(format!(
                    "RoPE scaling '{other}' is not supported for Gemma 3"
                )))
            }
        };
        Ok(Gemma3Rope {
            theta: number("rope_theta")?.unwrap_or(default_theta) as f32,
            linear_factor: linear_factor as f32,
        })
    };
    let per_type = cfg
        .get("rope_parameters")
        .filter(|p| p.get("full_attention").is_some() || p.get("sliding_attention").is_some());
    if let Some(params) = per_type {
        let null = serde_json::Value::Null;
        let global = of(params.get("full_attention").unwrap_or(&null), 1_000_000.0)?;
        let local = of(params.get("sliding_attention").unwrap_or(&null), 10_000.0)?;
        return Ok((global, local));
    }
    let null = serde_json::Value::Null;
    let mut global = of(cfg.rope_parameters().unwrap_or(&null), 1_000_000.0)?;
    global.theta = cfg.rope_theta()?.unwrap_or(1_000_000.0) as f32;
    let local = Gemma3Rope {
        theta: cfg.opt_f64("rope_local_base_freq")?.unwrap_or(10_000.0) as f32,
        linear_factor: 1.0,
    };
    Ok((global, local))
}

/// The weights of one decoder block.
struct Block {
    attn: AttentionWeights,
    ffn_norm: Vec<f32>,
    ffn: FeedForward,
}

pub struct Gemma3 {
    cfg: Gemma3Config,
    info: ModelInfo,
    weights: Weights,
    token_embd: MatrixRef,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// The token embedding (Gemma ties them) or an output matrix where a file has one.
    output: MatrixRef,
    global_rope: Rope,
    local_rope: Rope,
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
    global_rope: RopeTables,
    local_rope: RopeTables,
    ffn: FfnBuffers,
}

/// Where a format keeps its tensors.
struct Names {
    /// Before the HF names `embed_tokens.weight`, `norm.weight`, `layers.{i}.…`.
    hf_prefix: Option<String>,
}

impl Names {
    fn global(&self, gguf: &str, hf: &str) -> String {
        match &self.hf_prefix {
            None => gguf.to_string(),
            Some(prefix) => format!("{prefix}{hf}"),
        }
    }

    /// Block `i`'s tensor for a GGUF short name (`attn_q`, `post_ffw_norm`, …).
    fn block(&self, i: usize, short: &str) -> String {
        let Some(prefix) = &self.hf_prefix else {
            return format!("blk.{i}.{short}.weight");
        };
        // Gemma's four norms a block; the rest as the Llama family names them.
        let hf = match short {
            "post_attention_norm" => "post_attention_layernorm",
            "ffn_norm" => "pre_feedforward_layernorm",
            "post_ffw_norm" => "post_feedforward_layernorm",
            other => layers::hf_block_name(other),
        };
        format!("{prefix}layers.{i}.{hf}.weight")
    }
}

impl Gemma3 {
    /// Gemma 3 from a GGUF file.
    pub fn load(file: Arc<GgufFile>, options: &ModelOptions) -> Result<Self, ModelError> {
        let cfg = Gemma3Config::from_gguf(&file, gguf_n_vocab(&file)?)?;
        let weights = Weights::new(ModelSource::Gguf(file));
        Self::build(cfg, weights, &Names { hf_prefix: None }, options)
    }

    /// Gemma 3 from a folder: `model_type` `gemma3_text`, or `gemma3` (the multimodal
    /// model, whose `text_config` and language-model tensors are read).
    pub fn load_hf(folder: Arc<HfFolder>, options: &ModelOptions) -> Result<Self, ModelError> {
        let top = HfConfig::new(&folder);
        let cfg = match top.nested("text_config") {
            Some(text) => Gemma3Config::from_hf(&text)?,
            None => Gemma3Config::from_hf(&top)?,
        };
        // Gemma3ForCausalLM: `model.`; the multimodal checkpoints: `language_model.model.`
        // as released, `model.language_model.` as transformers 5 saves them.
        let prefixes = ["model.", "language_model.model.", "model.language_model."];
        let Some(prefix) = prefixes
            .iter()
            .find(|p| folder.tensor(&format!("{p}embed_tokens.weight")).is_some())
        else {
            return Err(top.error("no embed_tokens.weight under any Gemma 3 tensor prefix".into()));
        };
        let names = Names {
            hf_prefix: Some(prefix.to_string()),
        };
        let weights = Weights::new(ModelSource::HfFolder(folder));
        Self::build(cfg, weights, &names, options)
    }

    fn build(
        cfg: Gemma3Config,
        mut w: Weights,
        names: &Names,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let (n_vocab, d, qw, kvw, ff) = (
            cfg.n_vocab,
            cfg.n_embd,
            cfg.q_width(),
            cfg.kv_width(),
            cfg.n_ff,
        );
        // A Hugging Face gain w is applied as (1 + w); GGUF stores 1 + w.
        let shift = if names.hf_prefix.is_some() { 1.0 } else { 0.0 };
        let gain = |w: &Weights, name: &str, len: usize| -> Result<Vec<f32>, ModelError> {
            let mut g = w.vector(name, len)?;
            g.iter_mut().for_each(|x| *x += shift);
            Ok(g)
        };
        let token_embd = w.matrix(
            &names.global("token_embd.weight", "embed_tokens.weight"),
            n_vocab,
            d,
        )?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let name = |short: &str| names.block(i, short);
            let unbiased = |weight| Linear { weight, bias: None };
            blocks.push(Block {
                attn: AttentionWeights {
                    norm: gain(&w, &name("attn_norm"), d)?,
                    q: unbiased(w.linear_matrix(&name("attn_q"), qw, d)?),
                    k: unbiased(w.linear_matrix(&name("attn_k"), kvw, d)?),
                    v: unbiased(w.linear_matrix(&name("attn_v"), kvw, d)?),
                    o: unbiased(w.linear_matrix(&name("attn_output"), d, qw)?),
                    q_norm: Some(gain(&w, &name("attn_q_norm"), cfg.head_dim)?),
                    k_norm: Some(gain(&w, &name("attn_k_norm"), cfg.head_dim)?),
                    post_norm: Some(gain(&w, &name("post_attention_norm"), d)?),
                },
                ffn_norm: gain(&w, &name("ffn_norm"), d)?,
                ffn: FeedForward {
                    gate: w.linear_matrix(&name("ffn_gate"), ff, d)?,
                    up: w.linear_matrix(&name("ffn_up"), ff, d)?,
                    down: w.linear_matrix(&name("ffn_down"), d, ff)?,
                    activation: GatedActivation::GeluTanh,
                    post_norm: Some(gain(&w, &name("post_ffw_norm"), d)?),
                },
            });
        }
        let output_norm = gain(&w, &names.global("output_norm.weight", "norm.weight"), d)?;
        let output = if names.hf_prefix.is_none() && w.has("output.weight") {
            w.linear_matrix("output.weight", n_vocab, d)?
        } else {
            w.packed(token_embd)
        };
        let rope = |r: &Gemma3Rope| {
            let factors = vec![r.linear_factor; cfg.head_dim / 2];
            Rope::new(
                RopeLayout::HalfSplit,
                cfg.head_dim,
                r.theta,
                (r.linear_factor != 1.0).then_some(&factors[..]),
            )
        };
        let (global_rope, local_rope) = (rope(&cfg.global_rope), rope(&cfg.local_rope));

        let weight_bytes: usize = blocks
            .iter()
            .flat_map(|b| {
                [
                    b.attn.q.weight,
                    b.attn.k.weight,
                    b.attn.v.weight,
                    b.attn.o.weight,
                ]
                .into_iter()
                .chain(b.ffn.matrices())
            })
            .chain([output])
            .map(|m| m.n_bytes())
            .sum();
        let info = ModelInfo {
            architecture: "gemma3".to_string(),
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
        Ok(Gemma3 {
            cfg,
            info,
            weights: w,
            token_embd,
            blocks,
            output_norm,
            output,
            global_rope,
            local_rope,
            activations: options.activations,
            kv_dtype: options.kv_dtype(&kv_weights),
            buffers: Reusable::default(),
        })
    }

    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }
}

impl Model for Gemma3 {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A cache whose local layers keep only about the window, in the number type
    /// chosen at load ([`ModelOptions::kv_dtype`]).
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

impl Gemma3 {
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
            global_rope,
            local_rope,
            ffn,
        } = buffers;
        global_rope.fill(batch, &self.global_rope);
        local_rope.fill(batch, &self.local_rope);
        let shape = AttentionShape {
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            scale: cfg.attention_scale,
        };
        let local = AttentionParams {
            shape,
            rope: &self.local_rope,
            rope_tables: local_rope,
            window: Some(cfg.sliding_window),
            sinks: None,
        };
        let global = AttentionParams {
            shape,
            rope: &self.global_rope,
            rope_tables: global_rope,
            window: None,
            sinks: None,
        };
        // [n, d]: the residual stream, starting from the scaled token embeddings.
        layers::embed_into(&self.weights, &self.token_embd, batch, hidden);
        let embed_scale = (d as f32).sqrt();
        hidden.iter_mut().for_each(|x| *x *= embed_scale);
        buf.resize(batch, d, &shape);

        for (layer, blk) in self.blocks.iter().enumerate() {
            let params = if cfg.sliding_layers[layer] {
                &local
            } else {
                &global
            };
            compute.attention_block(
                batch,
                kv,
                layer,
                &new_lengths,
                params,
                &blk.attn,
                cfg.rms_eps,
                hidden,
                buf,
            );
            compute.feed_forward_block(&blk.ffn_norm, &blk.ffn, cfg.rms_eps, n, hidden, buf, ffn);
        }
        layers::end_pass(kv, &new_lengths);
        let mut outputs = compute.outputs(
            batch,
            hidden,
            &self.output_norm,
            cfg.rms_eps,
            &self.output,
            buf,
        );
        if let Some(cap) = cfg.final_logit_softcap {
            outputs
                .logits
                .data
                .iter_mut()
                .for_each(|x| *x = cap * (*x / cap).tanh());
        }
        Ok(outputs)
    }
}
