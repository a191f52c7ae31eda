//! A model's shapes, names and tensor layout, read from GGUF metadata or a Hugging Face
//! folder's `config.json`, for the architectures a fingerprint knows: Llama, Qwen3 (dense and
//! MoE), Gemma 3, gpt-oss and DeepSeek-V2/V3 (Kimi K2). Only attention is read, so a mixture
//! of experts fingerprints like a dense model: its experts, in any order, play no part.

use std::path::Path;

use serde_json::Value;
use wazn_formats::{GgufFile, HfFolder};

use crate::error::FingerprintError;
use crate::sketch::vocabulary_hash;
use crate::source::{LatentShape, ModelFacts};

/// Larger `tokenizer.json` files are refused before reading them.
const MAX_TOKENIZER_JSON_BYTES: u64 = 256 << 20;

/// Where a model's tensors are and how their values read.
pub(crate) struct Layout {
    /// The tensor-name prefix of a Hugging Face folder (`model.`); None for GGUF.
    pub hf_prefix: Option<String>,
    /// Added to every stored norm gain: Gemma's Hugging Face norms scale by 1 + w (its GGUF
    /// files store 1 + w already).
    pub norm_offset: f32,
    /// GGUF Llama files reorder Wq's and Wk's rows within each head for RoPE.
    pub rope_rows_permuted: bool,
}

impl Layout {
    /// The name of layer `index`'s tensor, GGUF's `blk.N.{gguf}.weight` or Hugging Face's
    /// `{prefix}layers.N.{hf}.weight`.
    pub fn layer_tensor(&self, index: usize, gguf: &str, hf: &str) -> String {
        match &self.hf_prefix {
            None => format!("blk.{index}.{gguf}.weight"),
            Some(prefix) => format!("{prefix}layers.{index}.{hf}.weight"),
        }
    }

    pub fn embedding(&self) -> String {
        match &self.hf_prefix {
            None => "token_embd.weight".to_string(),
            Some(prefix) => format!("{prefix}embed_tokens.weight"),
        }
    }
}

/// The key heads and the per-head query/key size: as declared, or, for latent attention, one
/// key per query head of its own shape (GGUF declares the absorbed form's: one key head of the
/// latent width).
fn key_heads(
    latent: Option<&LatentShape>,
    n_head: usize,
    declared_kv_heads: usize,
    declared_head_dim: usize,
) -> (usize, usize) {
    match latent {
        Some(l) => (n_head, l.nope_dim + l.rope_dim),
        None => (declared_kv_heads, declared_head_dim),
    }
}

fn vocabulary_digest(tokens: &[Option<String>]) -> String {
    format!(
        "{:016x}",
        vocabulary_hash(tokens.iter().map(|t| t.as_deref().unwrap_or("")))
    )
}

pub(crate) fn gguf_facts(
    file: &GgufFile,
    tokens: &[Option<String>],
) -> Result<(ModelFacts, Layout), FingerprintError> {
    let md = file.metadata();
    let arch = file.architecture()?.to_string();
    if !matches!(
        arch.as_str(),
        "llama" | "qwen3" | "qwen3moe" | "gemma3" | "gpt-oss" | "deepseek2"
    ) {
        return Err(FingerprintError::UnsupportedArchitecture(arch));
    }
    let get = |name: &str| -> Result<Option<usize>, FingerprintError> {
        Ok(md
            .get_u64(&format!("{arch}.{name}"))?
            .and_then(|v| usize::try_from(v).ok()))
    };
    let need = |name: &str| -> Result<usize, FingerprintError> {
        get(name)?.ok_or_else(|| FingerprintError::BadModel(format!("no {arch}.{name}")))
    };
    let n_embd = need("embedding_length")?;
    let n_head = need("attention.head_count")?;
    let declared = md
        .iter()
        .filter(|(k, _)| {
            *k == "general.name"
                || *k == "general.organization"
                || k.starts_with("general.base_model.")
                || k.starts_with("general.source.")
        })
        .map(|(k, v)| {
            let value = v.as_str().map_or_else(|| format!("{v:?}"), str::to_string);
            (k.to_string(), value)
        })
        .collect();
    let latent = if arch == "deepseek2" {
        // Newer files give the per-head query/key size as `key_length_mla` (their
        // `key_length` is the absorbed form's); older ones as `key_length`.
        let key_length = match get("attention.key_length_mla")? {
            Some(k) => k,
            None => need("attention.key_length")?,
        };
        let rope_dim = need("rope.dimension_count")?;
        let nope_dim = key_length.checked_sub(rope_dim).ok_or_else(|| {
            FingerprintError::BadModel(format!(
                "key length {key_length} is less than the RoPE dimensions {rope_dim}"
            ))
        })?;
        Some(LatentShape {
            q_rank: get("attention.q_lora_rank")?.filter(|&r| r > 0),
            kv_rank: need("attention.kv_lora_rank")?,
            nope_dim,
            rope_dim,
        })
    } else {
        None
    };
    let q_name = if latent.as_ref().is_some_and(|l| l.q_rank.is_some()) {
        "blk.0.attn_q_a.weight"
    } else {
        "blk.0.attn_q.weight"
    };
    let file_type = file
        .tensor(q_name)
        .map_or("?".to_string(), |t| t.ggml_type.name().to_string());
    let (n_kv_head, head_dim) = key_heads(
        latent.as_ref(),
        n_head,
        get("attention.head_count_kv")?.unwrap_or(n_head),
        get("attention.key_length")?.unwrap_or(n_embd / n_head.max(1)),
    );
    let facts = ModelFacts {
        origin: format!("GGUF ({file_type} attention)"),
        n_embd,
        n_layer: need("block_count")?,
        n_head,
        n_kv_head,
        head_dim,
        n_vocab: 0,
        vocabulary_hash: vocabulary_digest(tokens),
        declared,
        latent,
        architecture: arch.clone(),
    };
    let layout = Layout {
        hf_prefix: None,
        norm_offset: 0.0,
        rope_rows_permuted: arch == "llama",
    };
    Ok((facts, layout))
}

pub(crate) fn hf_facts(
    folder: &HfFolder,
    tokens: &[Option<String>],
) -> Result<(ModelFacts, Layout), FingerprintError> {
    let model_type = folder.model_type().unwrap_or("");
    let arch = match model_type {
        "llama" => "llama",
        "qwen3" => "qwen3",
        "qwen3_moe" => "qwen3moe",
        "gemma3" | "gemma3_text" => "gemma3",
        "gpt_oss" => "gpt-oss",
        "deepseek_v3" | "kimi_k2" => "deepseek2",
        other => {
            return Err(FingerprintError::UnsupportedArchitecture(format!(
                "model_type {other}"
            )))
        }
    };
    // A multimodal Gemma 3 keeps its language model's settings in `text_config`.
    let cfg = folder.config();
    let text = cfg
        .get("text_config")
        .filter(|t| t.is_object())
        .unwrap_or(cfg);
    let get = |key: &str| {
        text.get(key)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
    };
    let need = |key: &str| {
        get(key).ok_or_else(|| FingerprintError::BadModel(format!("config.json has no {key}")))
    };
    let n_embd = need("hidden_size")?;
    let n_head = need("num_attention_heads")?;
    let declared = ["_name_or_path", "name_or_path", "base_model", "model_name"]
        .iter()
        .filter_map(|k| {
            let v = cfg.get(*k)?;
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (!text.is_empty()).then(|| (format!("config.{k}"), text))
        })
        .collect();
    let latent = if arch == "deepseek2" {
        Some(LatentShape {
            q_rank: get("q_lora_rank").filter(|&r| r > 0),
            kv_rank: need("kv_lora_rank")?,
            nope_dim: need("qk_nope_head_dim")?,
            rope_dim: need("qk_rope_head_dim")?,
        })
    } else {
        None
    };
    let (n_kv_head, head_dim) = key_heads(
        latent.as_ref(),
        n_head,
        get("num_key_value_heads").unwrap_or(n_head),
        get("head_dim").unwrap_or(n_embd / n_head.max(1)),
    );
    // Gemma3ForCausalLM names its tensors `model.…`; the multimodal checkpoints
    // `language_model.model.…` as released or `model.language_model.…` as transformers 5
    // saves them.
    let hf_prefix = ["model.", "language_model.model.", "model.language_model."]
        .into_iter()
        .find(|p| folder.tensor(&format!("{p}embed_tokens.weight")).is_some())
        .unwrap_or("model.")
        .to_string();
    let facts = ModelFacts {
        architecture: arch.to_string(),
        origin: "Hugging Face folder".to_string(),
        n_embd,
        n_layer: need("num_hidden_layers")?,
        n_head,
        n_kv_head,
        head_dim,
        n_vocab: 0,
        vocabulary_hash: vocabulary_digest(tokens),
        declared,
        latent,
    };
    let layout = Layout {
        hf_prefix: Some(hf_prefix),
        norm_offset: if arch == "gemma3" { 1.0 } else { 0.0 },
        rope_rows_permuted: false,
    };
    Ok((facts, layout))
}

/// The token strings of a folder's `tokenizer.json`, by id: `model.vocab` (an object of
/// string → id, or Unigram's list of [string, score]) and `added_tokens`.
pub(crate) fn hf_tokens(dir: &Path) -> Result<Vec<Option<String>>, FingerprintError> {
    let path = dir.join("tokenizer.json");
    let io = |source| FingerprintError::Io {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(io)?.len();
    if size > MAX_TOKENIZER_JSON_BYTES {
        return Err(FingerprintError::BadModel(format!(
            "{}: {size} bytes is too large for a tokenizer",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| {
        FingerprintError::BadModel(format!("{}: invalid JSON: {e}", path.display()))
    })?;
    let mut by_id: Vec<(usize, String)> = Vec::new();
    match json.pointer("/model/vocab") {
        Some(Value::Object(map)) => {
            for (token, id) in map {
                if let Some(id) = id.as_u64().and_then(|v| usize::try_from(v).ok()) {
                    by_id.push((id, token.clone()));
                }
            }
        }
        Some(Value::Array(list)) => {
            for (id, entry) in list.iter().enumerate() {
                if let Some(token) = entry.get(0).and_then(Value::as_str) {
                    by_id.push((id, token.to_string()));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Array(added)) = json.get("added_tokens") {
        for entry in added {
            let id = entry.get("id").and_then(Value::as_u64);
            let content = entry.get("content").and_then(Value::as_str);
            if let (Some(id), Some(content)) = (id.and_then(|v| usize::try_from(v).ok()), content) {
                by_id.push((id, content.to_string()));
            }
        }
    }
    // Ids past the file's size cannot be real; this also bounds the table below.
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let n = by_id
        .iter()
        .map(|(id, _)| id + 1)
        .filter(|&n| n <= limit)
        .max()
        .unwrap_or(0);
    let mut tokens = vec![None; n];
    for (id, token) in by_id {
        if let Some(slot) = tokens.get_mut(id) {
            *slot = Some(token);
        }
    }
    Ok(tokens)
}
