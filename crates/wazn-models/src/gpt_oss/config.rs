//! gpt-oss hyper-parameters, from a Hugging Face `config.json` or GGUF `gpt-oss.*` keys.

use wazn_formats::{GgufFile, Metadata};

use crate::error::ModelError;
use crate::hf_config::HfConfig;
use crate::layers::checked_layer_count;
use crate::rope_scaling::Yarn;

#[derive(Clone, Debug)]
pub struct GptOssConfig {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_expert: usize,
    /// Experts each token is routed to (top-k).
    pub n_expert_used: usize,
    /// Width of one expert's hidden layer.
    pub n_ff_expert: usize,
    /// Keys a sliding-window layer's query sees, itself included.
    pub sliding_window: usize,
    /// Per layer: whether it attends over the sliding window only.
    pub sliding_layers: Vec<bool>,
    pub rope_theta: f64,
    pub yarn: Option<Yarn>,
    pub rms_eps: f32,
    /// SwiGLU clamp: gate at most this, up within ±this.
    pub swiglu_limit: f32,
    /// SwiGLU: `gate * sigmoid(alpha * gate)`.
    pub swiglu_alpha: f32,
}

/// The released models alternate: even layers slide, odd layers see everything.
fn alternating(n_layer: usize) -> Vec<bool> {
    (0..n_layer).map(|i| i % 2 == 0).collect()
}

impl GptOssConfig {
    pub fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    fn check(self) -> Result<Self, String> {
        let GptOssConfig {
            n_head,
            n_kv_head,
            head_dim,
            n_expert,
            n_expert_used,
            ..
        } = self;
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(format!(
                "{n_head} attention heads cannot share {n_kv_head} key/value heads"
            ));
        }
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(format!("head_dim {head_dim} must be even and non-zero"));
        }
        if n_expert_used == 0 || n_expert_used > n_expert {
            return Err(format!(
                "{n_expert_used} experts per token out of {n_expert}"
            ));
        }
        if self.sliding_window == 0 && self.sliding_layers.iter().any(|&s| s) {
            return Err("sliding window of 0 positions".into());
        }
        if self.sliding_layers.len() != self.n_layer {
            return Err(format!(
                "{} layer types for {} layers",
                self.sliding_layers.len(),
                self.n_layer
            ));
        }
        Ok(self)
    }

    /// From a Hugging Face `config.json` (`model_type: "gpt_oss"`).
    pub(crate) fn from_hf(cfg: &HfConfig<'_>) -> Result<Self, ModelError> {
        let n_layer = checked_layer_count(cfg.usize("num_hidden_layers")?)?;
        let sliding_layers = match cfg.get("layer_types") {
            None => alternating(n_layer),
            Some(types) => {
                let types = types
                    .as_array()
                    .ok_or_else(|| cfg.error("\"layer_types\" is not a list".into()))?;
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("sliding_attention") => Ok(true),
                        Some("full_attention") => Ok(false),
                        _ => Err(cfg.error(format!("unknown layer type {t} in \"layer_types\""))),
                    })
                    .collect::<Result<Vec<bool>, ModelError>>()?
            }
        };
        let yarn = match cfg.rope_type() {
            None => None,
            Some("yarn") => {
                let factor = cfg
                    .rope_f64("factor")?
                    .ok_or_else(|| cfg.error("YaRN RoPE scaling needs \"factor\"".into()))?;
                let original_context = cfg
                    .rope_f64("original_max_position_embeddings")?
                    .or(cfg.opt_f64("initial_context_length")?)
                    .ok_or_else(|| {
                        cfg.error(
                            "YaRN RoPE scaling needs \"original_max_position_embeddings\"".into(),
                        )
                    })?;
                let truncate = match cfg.rope_parameters().and_then(|p| p.get("truncate")) {
                    None => true,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        cfg.error(format!("RoPE \"truncate\" = {v} is not true or false"))
                    })?,
                };
                // The reference treats 0 like absent for the betas.
                let beta = |key: &str, default: f64| -> Result<f64, ModelError> {
                    Ok(cfg.rope_f64(key)?.filter(|&b| b != 0.0).unwrap_or(default))
                };
                if cfg.rope_f64("mscale")?.is_some() || cfg.rope_f64("mscale_all_dim")?.is_some() {
                    return Err(cfg.error("YaRN with mscale is not supported for gpt-oss".into()));
                }
                Some(Yarn {
                    factor,
                    original_context,
                    beta_fast: beta("beta_fast", 32.0)?,
                    beta_slow: beta("beta_slow", 1.0)?,
                    truncate,
                    attention_factor: cfg.rope_f64("attention_factor")?,
                })
            }
            Some(other) => {
                return Err(cfg.error(format!(
                    "RoPE scaling '{other}' is not supported for gpt-oss"
                )))
            }
        };
        let n_expert_used = match cfg.opt_usize("num_experts_per_tok")? {
            Some(k) => k,
            None => cfg.usize("experts_per_token")?,
        };
        let n_embd = cfg.usize("hidden_size")?;
        let n_head = cfg.usize("num_attention_heads")?;
        if cfg.opt_bool("tie_word_embeddings")? == Some(true) {
            return Err(cfg.error("gpt-oss with tied embeddings is not supported".into()));
        }
        GptOssConfig {
            n_vocab: cfg.usize("vocab_size")?,
            n_ctx_train: cfg.opt_usize("max_position_embeddings")?.unwrap_or(131072),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_head),
            head_dim: cfg.opt_usize("head_dim")?.unwrap_or(n_embd / n_head.max(1)),
            n_expert: cfg.usize("num_local_experts")?,
            n_expert_used,
            n_ff_expert: cfg.usize("intermediate_size")?,
            sliding_window: cfg.opt_usize("sliding_window")?.unwrap_or(128),
            sliding_layers,
            rope_theta: cfg.rope_theta()?.unwrap_or(150000.0),
            yarn,
            rms_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-5) as f32,
            swiglu_limit: cfg.opt_f64("swiglu_limit")?.unwrap_or(7.0) as f32,
            swiglu_alpha: cfg.opt_f64("swiglu_alpha")?.unwrap_or(1.702) as f32,
        }
        .check()
        .map_err(|reason| cfg.error(reason))
    }

    /// From the `gpt-oss.*` keys of a GGUF file; `n_vocab` from the embedding's shape.
    pub(crate) fn from_gguf(file: &GgufFile, n_vocab: usize) -> Result<Self, ModelError> {
        let md: &Metadata = file.metadata();
        let key = |name: &str| format!("gpt-oss.{name}");
        let optional = |name: &str| -> Result<Option<usize>, ModelError> {
            match md.get_u64(&key(name))? {
                None => Ok(None),
                Some(v) => usize::try_from(v)
                    .map(Some)
                    .map_err(|_| ModelError::BadHyperParameter(format!("gpt-oss.{name} = {v}"))),
            }
        };
        let required = |name: &str| -> Result<usize, ModelError> {
            optional(name)?.ok_or(ModelError::MissingKey { key: key(name) })
        };
        let f32_key =
            |name: &str| -> Result<Option<f32>, ModelError> { Ok(md.get_f32(&key(name))?) };
        let n_layer = checked_layer_count(required("block_count")?)?;
        let n_embd = required("embedding_length")?;
        let n_head = required("attention.head_count")?;
        let head_dim = optional("attention.key_length")?.unwrap_or(n_embd / n_head.max(1));
        if optional("attention.value_length")?.is_some_and(|v| v != head_dim) {
            return Err(ModelError::BadHyperParameter(
                "key and value lengths differ".into(),
            ));
        }
        // llama.cpp's pattern: with period p, layer i slides when i % p < p - 1.
        let period = optional("attention.sliding_window_pattern")?.unwrap_or(2);
        let sliding_layers = (0..n_layer)
            .map(|i| period == 0 || i % period < period - 1)
            .collect();
        let yarn = match md.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => None,
            Some("yarn") => Some(Yarn {
                factor: f32_key("rope.scaling.factor")?.ok_or(ModelError::MissingKey {
                    key: key("rope.scaling.factor"),
                })? as f64,
                original_context: required("rope.scaling.original_context_length")? as f64,
                beta_fast: f32_key("rope.scaling.yarn_beta_fast")?
                    .filter(|&b| b != 0.0)
                    .unwrap_or(32.0) as f64,
                beta_slow: f32_key("rope.scaling.yarn_beta_slow")?
                    .filter(|&b| b != 0.0)
                    .unwrap_or(1.0) as f64,
                // gpt-oss was trained with the unrounded correction range (its reference
                // implementation and transformers); llama.cpp rounds it, which is an
                // approximation of the model, not a property of the file.
                truncate: false,
                attention_factor: None,
            }),
            Some(other) => {
                return Err(ModelError::BadHyperParameter(format!(
                    "RoPE scaling '{other}' is not supported for gpt-oss"
                )))
            }
        };
        GptOssConfig {
            n_vocab,
            n_ctx_train: optional("context_length")?.unwrap_or(131072),
            n_embd,
            n_layer,
            n_head,
            n_kv_head: optional("attention.head_count_kv")?.unwrap_or(n_head),
            head_dim,
            n_expert: required("expert_count")?,
            n_expert_used: required("expert_used_count")?,
            n_ff_expert: match optional("expert_feed_forward_length")? {
                Some(n) => n,
                None => required("feed_forward_length")?,
            },
            sliding_window: optional("attention.sliding_window")?.unwrap_or(128),
            sliding_layers,
            rope_theta: f32_key("rope.freq_base")?.unwrap_or(150000.0) as f64,
            yarn,
            rms_eps: f32_key("attention.layer_norm_rms_epsilon")?.ok_or(
                ModelError::MissingKey {
                    key: key("attention.layer_norm_rms_epsilon"),
                },
            )?,
            swiglu_limit: 7.0,
            swiglu_alpha: 1.702,
        }
        .check()
        .map_err(ModelError::BadHyperParameter)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn released_models_slide_on_even_layers() {
        assert_eq!(super::alternating(4), vec![true, false, true, false]);
    }
}
