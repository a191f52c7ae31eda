//! DeepSeek-V3 / Kimi K2 hyper-parameters, from a Hugging Face `config.json`
//! (`model_type: "deepseek_v3"`) or GGUF `deepseek2.*` keys.

use wazn_formats::GgufFile;

use crate::error::ModelError;
use crate::gguf_keys::ArchKeys;
use crate::hf_config::HfConfig;
use crate::layers::checked_layer_count;
use crate::rope_scaling::Yarn;

/// YaRN's magnitude correction `0.1 · m · ln(factor) + 1` (1 for no extension).
pub(crate) fn yarn_mscale(factor: f64, m: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * m * factor.ln() + 1.0
    }
}

#[derive(Clone, Debug)]
pub struct DeepSeek2Config {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Rank of the query's compression (None: a direct query projection).
    pub q_lora_rank: Option<usize>,
    /// Width of the cached latent.
    pub kv_lora_rank: usize,
    /// Per head: the query/key part without position, the RoPE part (shared by all
    /// heads on the key side), and the value.
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    /// Width of the dense layers' hidden layer.
    pub n_ff: usize,
    /// The first `n_dense_layers` layers are dense, the rest mixtures of experts.
    pub n_dense_layers: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff_expert: usize,
    /// Shared experts (one dense layer of `n_shared_experts * n_ff_expert`).
    pub n_shared_experts: usize,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
    pub rope_theta: f64,
    pub yarn: Option<Yarn>,
    /// Multiplies `q·k` before the softmax: `(qk_nope + qk_rope)^-½`, times YaRN's
    /// `mscale²` where the context is extended.
    pub attention_scale: f32,
    pub rms_eps: f32,
}

impl DeepSeek2Config {
    /// Width of one head's query and key (before absorption).
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// Width of one cached row: the latent and the RoPE key.
    pub fn cache_width(&self) -> usize {
        self.kv_lora_rank + self.qk_rope_head_dim
    }

    fn check(self) -> Result<Self, String> {
        if self.n_head == 0 || self.kv_lora_rank == 0 || self.v_head_dim == 0 {
            return Err(format!(
                "{} heads, latent of {}, values of {}",
                self.n_head, self.kv_lora_rank, self.v_head_dim
            ));
        }
        if self.qk_rope_head_dim == 0 || !self.qk_rope_head_dim.is_multiple_of(2) {
            return Err(format!(
                "RoPE head dim {} must be even and non-zero",
                self.qk_rope_head_dim
            ));
        }
        if self.q_lora_rank == Some(0) {
            return Err("q_lora_rank 0".into());
        }
        if self.n_dense_layers < self.n_layer {
            if self.n_expert_used == 0 || self.n_expert_used > self.n_expert {
                return Err(format!(
                    "{} experts per token out of {}",
                    self.n_expert_used, self.n_expert
                ));
            }
            let groups_ok = self.n_group > 0
                && self.n_expert.is_multiple_of(self.n_group)
                && (1..=self.n_group).contains(&self.topk_group)
                && (self.n_group == 1 || self.n_expert / self.n_group >= 2);
            if !groups_ok {
                return Err(format!(
                    "{} experts in {} groups, {} groups chosen",
                    self.n_expert, self.n_group, self.topk_group
                ));
            }
            if self.topk_group * (self.n_expert / self.n_group) < self.n_expert_used {
                return Err(format!(
                    "{} groups of {} experts cannot give {} experts",
                    self.topk_group,
                    self.n_expert / self.n_group,
                    self.n_expert_used
                ));
            }
        }
        if !(self.attention_scale.is_finite() && self.attention_scale > 0.0) {
            return Err(format!("attention scale {}", self.attention_scale));
        }
        Ok(self)
    }

    /// From a Hugging Face `config.json`.
    pub(crate) fn from_hf(cfg: &HfConfig<'_>) -> Result<Self, ModelError> {
        let n_layer = checked_layer_count(cfg.usize("num_hidden_layers")?)?;
        if let Some(func) = cfg.get("scoring_func").and_then(|v| v.as_str()) {
            if func != "sigmoid" {
                return Err(cfg.error(format!("expert scoring \"{func}\" is not supported")));
            }
        }
        if cfg.opt_usize("moe_layer_freq")?.is_some_and(|f| f != 1) {
            return Err(cfg.error("\"moe_layer_freq\" other than 1 is not supported".into()));
        }
        let (qk_nope, qk_rope) = (
            cfg.usize("qk_nope_head_dim")?,
            cfg.usize("qk_rope_head_dim")?,
        );
        let (yarn, mscale_all_dim) = match cfg.rope_type() {
            None => (None, 0.0),
            Some("yarn") => {
                let need = |key: &str| {
                    cfg.rope_f64(key)?
                        .ok_or_else(|| cfg.error(format!("YaRN RoPE scaling needs \"{key}\"")))
                };
                let factor = need("factor")?;
                let mscale = cfg.rope_f64("mscale")?.unwrap_or(0.0);
                let mscale_all_dim = cfg.rope_f64("mscale_all_dim")?.unwrap_or(0.0);
                // As transformers: cos and sin carry mscale over mscale_all_dim when
                // both are given, and the score scale carries mscale_all_dim² below.
                let attention_factor = match cfg.rope_f64("attention_factor")? {
                    Some(f) => f,
                    None if mscale != 0.0 && mscale_all_dim != 0.0 => {
                        yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
                    }
                    None => yarn_mscale(factor, 1.0),
                };
                let beta = |key: &str, default: f64| -> Result<f64, ModelError> {
                    Ok(cfg.rope_f64(key)?.filter(|&b| b != 0.0).unwrap_or(default))
                };
                let truncate = cfg
                    .rope_parameters()
                    .and_then(|p| p.get("truncate"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true);
                let yarn = Yarn {
                    factor,
                    original_context: need("original_max_position_embeddings")?,
                    beta_fast: beta("beta_fast", 32.0)?,
                    beta_slow: beta("beta_slow", 1.0)?,
                    truncate,
                    attention_factor: Some(attention_factor),
                };
                (Some(yarn), mscale_all_dim)
            }
            Some(other) => {
                return Err(cfg.error(format!(
                    "RoPE scaling '{other}' is not supported for DeepSeek-V3"
                )))
            }
        };
        let mut attention_scale = 1.0 / ((qk_nope + qk_rope) as f64).sqrt();
        if let Some(yarn) = &yarn {
            if mscale_all_dim != 0.0 {
                let m = yarn_mscale(yarn.factor, mscale_all_dim);
                attention_scale *= m * m;
            }
        }
        let n_expert = cfg.opt_usize("n_routed_experts")?.unwrap_or(0);
        DeepSeek2Config {
            n_vocab: cfg.usize("vocab_size")?,
            n_ctx_train: cfg.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            n_embd: cfg.usize("hidden_size")?,
            n_layer,
            n_head: cfg.usize("num_attention_heads")?,
            q_lora_rank: cfg.opt_usize("q_lora_rank")?,
            kv_lora_rank: cfg.usize("kv_lora_rank")?,
            qk_nope_head_dim: qk_nope,
            qk_rope_head_dim: qk_rope,
            v_head_dim: cfg.usize("v_head_dim")?,
            n_ff: cfg.usize("intermediate_size")?,
            n_dense_layers: if n_expert == 0 {
                n_layer
            } else {
                cfg.opt_usize("first_k_dense_replace")?
                    .unwrap_or(0)
                    .min(n_layer)
            },
            n_expert,
            n_expert_used: cfg.opt_usize("num_experts_per_tok")?.unwrap_or(0),
            n_ff_expert: cfg.opt_usize("moe_intermediate_size")?.unwrap_or(0),
            n_shared_experts: cfg.opt_usize("n_shared_experts")?.unwrap_or(0),
            n_group: cfg.opt_usize("n_group")?.unwrap_or(1),
            topk_group: cfg.opt_usize("topk_group")?.unwrap_or(1),
            norm_topk_prob: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
            routed_scaling_factor: cfg.opt_f64("routed_scaling_factor")?.unwrap_or(1.0) as f32,
            rope_theta: cfg.rope_theta()?.unwrap_or(10000.0),
            yarn,
            attention_scale: attention_scale as f32,
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        }
        .check()
        .map_err(|reason| cfg.error(reason))
    }

    /// From the `deepseek2.*` keys of a GGUF file, read as llama.cpp reads them.
    pub(crate) fn from_gguf(file: &GgufFile, n_vocab: usize) -> Result<Self, ModelError> {
        let keys = ArchKeys::new(file.metadata(), "deepseek2");
        let bad = |what: String| ModelError::BadHyperParameter(what);
        let n_layer = checked_layer_count(keys.usize("block_count")?)?;
        let n_head = keys.usize("attention.head_count")?;
        let kv_lora_rank = keys.usize("attention.kv_lora_rank")?;
        let qk_rope = keys.usize("rope.dimension_count")?;
        // Files written for absorbed attention give the per-head query/key and value
        // widths as `*_length_mla` (their `*_length` then describe the latent).
        let key_length = match keys.opt_usize("attention.key_length_mla")? {
            Some(k) => k,
            None => keys.usize("attention.key_length")?,
        };
        let v_head_dim = match keys.opt_usize("attention.value_length_mla")? {
            Some(v) => v,
            None => keys.usize("attention.value_length")?,
        };
        let qk_nope = key_length
            .checked_sub(qk_rope)
            .ok_or_else(|| bad(format!("key length {key_length} < RoPE dims {qk_rope}")))?;
        let yarn = match keys.opt_str("rope.scaling.type")? {
            None | Some("none") => None,
            Some("yarn") => {
                let factor = keys.f32("rope.scaling.factor")? as f64;
                Some(Yarn {
                    factor,
                    original_context: keys.usize("rope.scaling.original_context_length")? as f64,
                    beta_fast: keys.opt_f32("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0) as f64,
                    beta_slow: keys.opt_f32("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0) as f64,
                    truncate: true,
                    // llama.cpp keeps cos and sin unscaled for DeepSeek (mscale equal to
                    // mscale_all_dim, as the released configs have it).
                    attention_factor: Some(1.0),
                })
            }
            Some(other) => {
                return Err(bad(format!(
                    "RoPE scaling '{other}' is not supported for deepseek2"
                )))
            }
        };
        let mut attention_scale = 1.0 / (key_length as f64).sqrt();
        if let Some(yarn) = &yarn {
            // llama.cpp: mscale = 1 + yarn_log_multiplier · ln(factor), on q·k squared.
            let log_mul = keys
                .opt_f32("rope.scaling.yarn_log_multiplier")?
                .unwrap_or(0.0) as f64;
            let m = 1.0 + log_mul * yarn.factor.ln();
            attention_scale *= m * m;
        }
        let n_expert = keys.opt_usize("expert_count")?.unwrap_or(0);
        if let Some(func) = keys.opt_usize("expert_gating_func")? {
            // llama.cpp: 1 softmax, 2 sigmoid.
            if func != 2 {
                return Err(bad(format!(
                    "deepseek2.expert_gating_func = {func} (only sigmoid routing is supported)"
                )));
            }
        }
        let q_lora_rank = keys.opt_usize("attention.q_lora_rank")?.filter(|&r| r > 0);
        DeepSeek2Config {
            n_vocab,
            n_ctx_train: keys.opt_usize("context_length")?.unwrap_or(4096),
            n_embd: keys.usize("embedding_length")?,
            n_layer,
            n_head,
            q_lora_rank,
            kv_lora_rank,
            qk_nope_head_dim: qk_nope,
            qk_rope_head_dim: qk_rope,
            v_head_dim,
            n_ff: keys.usize("feed_forward_length")?,
            n_dense_layers: if n_expert == 0 {
                n_layer
            } else {
                keys.opt_usize("leading_dense_block_count")?
                    .unwrap_or(0)
                    .min(n_layer)
            },
            n_expert,
            n_expert_used: keys.opt_usize("expert_used_count")?.unwrap_or(0),
            n_ff_expert: keys.opt_usize("expert_feed_forward_length")?.unwrap_or(0),
            n_shared_experts: keys.opt_usize("expert_shared_count")?.unwrap_or(0),
            n_group: keys.opt_usize("expert_group_count")?.unwrap_or(1).max(1),
            topk_group: keys
                .opt_usize("expert_group_used_count")?
                .unwrap_or(1)
                .max(1),
            norm_topk_prob: keys.opt_bool("expert_weights_norm")?.unwrap_or(false),
            routed_scaling_factor: keys.opt_f32("expert_weights_scale")?.unwrap_or(1.0),
            rope_theta: keys.opt_f32("rope.freq_base")?.unwrap_or(10000.0) as f64,
            yarn,
            attention_scale: attention_scale as f32,
            rms_eps: keys.f32("attention.layer_norm_rms_epsilon")?,
        }
        .check()
        .map_err(bad)
    }
}
