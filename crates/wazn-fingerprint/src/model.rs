//! A model file or folder as a [`WeightSource`]: GGUF (any type in wazn's dtype table) or a
//! Hugging Face folder (F32, F16, BF16 safetensors). Each matrix is dequantized when asked
//! for and dropped by the caller, so memory holds one layer at a time.

use std::path::Path;

use serde_json::Value;
use wazn_formats::{GgufFile, HfFolder, SafeDtype};
use wazn_kernels::dtype::{dequantize_row, DType};

use crate::error::FingerprintError;
use crate::matrix::Matrix;
use crate::sketch::{sketch_ids, vocabulary_hash, TokenSketch};
use crate::source::{AttentionLayer, ModelFacts, WeightSource};

/// Larger `tokenizer.json` files are refused before reading them.
const MAX_TOKENIZER_JSON_BYTES: u64 = 256 << 20;

enum Holder {
    Gguf(GgufFile),
    Hf(HfFolder),
}

/// A model read from its file(s).
pub struct ModelWeights {
    holder: Holder,
    facts: ModelFacts,
    /// The token string of each id (None where the vocabulary has no string for it).
    tokens: Vec<Option<String>>,
}

/// A tensor's bytes and type, checked to hold `rows × cols` values.
struct RawTensor<'a> {
    name: String,
    dtype: DType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

impl RawTensor<'_> {
    fn row_into(&self, row: usize, out: &mut [f32]) -> Result<(), FingerprintError> {
        let bytes = self
            .data
            .get(row * self.row_bytes..(row + 1) * self.row_bytes)
            .ok_or_else(|| self.bad(format!("row {row} is past the end of its data")))?;
        dequantize_row(self.dtype, bytes, out).map_err(|e| self.bad(e.to_string()))
    }

    fn to_matrix(&self) -> Result<Matrix, FingerprintError> {
        let mut m = Matrix::zeros(self.rows, self.cols);
        for (row, out) in m.data.chunks_exact_mut(self.cols).enumerate() {
            self.row_into(row, out)?;
        }
        Ok(m)
    }

    fn bad(&self, reason: String) -> FingerprintError {
        FingerprintError::BadTensor {
            name: self.name.clone(),
            reason,
        }
    }
}

impl ModelWeights {
    /// Opens `path`: a directory as a Hugging Face folder, a file as GGUF.
    pub fn open(path: &Path) -> Result<ModelWeights, FingerprintError> {
        if path.is_dir() {
            let folder = HfFolder::open(path)?;
            let tokens = hf_tokens(path)?;
            let facts = hf_facts(&folder, &tokens)?;
            let model = ModelWeights {
                holder: Holder::Hf(folder),
                facts,
                tokens,
            };
            model.finish()
        } else {
            let file = GgufFile::open(path)?;
            let md = file.metadata();
            let tokens: Vec<Option<String>> = md
                .get_str_array("tokenizer.ggml.tokens")?
                .unwrap_or_default()
                .into_iter()
                .map(|t| Some(t.to_string()))
                .collect();
            let facts = gguf_facts(&file, &tokens)?;
            let model = ModelWeights {
                holder: Holder::Gguf(file),
                facts,
                tokens,
            };
            model.finish()
        }
    }

    fn finish(mut self) -> Result<ModelWeights, FingerprintError> {
        self.facts.check()?;
        // The embedding's row count is the vocabulary that has weights.
        let embedding = self.tensor(self.embedding_name(), None, self.facts.n_embd)?;
        self.facts.n_vocab = embedding.rows;
        Ok(self)
    }

    fn embedding_name(&self) -> &'static str {
        match self.holder {
            Holder::Gguf(_) => "token_embd.weight",
            Holder::Hf(_) => "model.embed_tokens.weight",
        }
    }

    /// Tensor `name` as `[rows, cols]` (any row count where `rows` is None).
    fn tensor(
        &self,
        name: &str,
        rows: Option<usize>,
        cols: usize,
    ) -> Result<RawTensor<'_>, FingerprintError> {
        let missing = || FingerprintError::MissingTensor {
            name: name.to_string(),
        };
        let (dtype, shape, data): (DType, Vec<u64>, &[u8]) = match &self.holder {
            Holder::Gguf(file) => {
                let info = file.tensor(name).ok_or_else(missing)?;
                let dtype = DType::from_ggml_id(info.ggml_type.id()).ok_or_else(|| {
                    FingerprintError::BadTensor {
                        name: name.to_string(),
                        reason: format!("wazn cannot read {} tensors", info.ggml_type.name()),
                    }
                })?;
                let shape = info.dims.iter().rev().copied().collect();
                (dtype, shape, file.tensor_data(info))
            }
            Holder::Hf(folder) => {
                let view = folder.tensor(name).ok_or_else(missing)?;
                let dtype = match view.dtype {
                    SafeDtype::F32 => DType::F32,
                    SafeDtype::F16 => DType::F16,
                    SafeDtype::BF16 => DType::BF16,
                    other => {
                        return Err(FingerprintError::BadTensor {
                            name: name.to_string(),
                            reason: format!("wazn cannot read {other} tensors here"),
                        })
                    }
                };
                (dtype, view.shape.to_vec(), view.data)
            }
        };
        let bad = |reason: String| FingerprintError::BadTensor {
            name: name.to_string(),
            reason,
        };
        let (n_rows, n_cols) = match shape.as_slice() {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            _ => return Err(bad(format!("shape {shape:?} is not a matrix"))),
        };
        let n_rows = usize::try_from(n_rows).map_err(|_| bad("too many rows".into()))?;
        if n_cols != cols as u64 || rows.is_some_and(|r| r != n_rows) {
            return Err(bad(format!(
                "shape {shape:?}, expected [{}, {cols}]",
                rows.map_or("any".to_string(), |r| r.to_string())
            )));
        }
        let row_bytes = dtype
            .row_bytes(cols)
            .ok_or_else(|| bad(format!("a row of {cols} is not whole {dtype} blocks")))?;
        let needed = row_bytes
            .checked_mul(n_rows)
            .ok_or_else(|| bad("size overflows".into()))?;
        if data.len() < needed {
            return Err(bad(format!(
                "{} bytes where {needed} are needed",
                data.len()
            )));
        }
        Ok(RawTensor {
            name: name.to_string(),
            dtype,
            rows: n_rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// The attention norm's gains of layer `index`.
    fn norm_gains(&self, index: usize) -> Result<Vec<f32>, FingerprintError> {
        let name = match self.holder {
            Holder::Gguf(_) => format!("blk.{index}.attn_norm.weight"),
            Holder::Hf(_) => format!("model.layers.{index}.input_layernorm.weight"),
        };
        let raw = self.tensor(&name, Some(1), self.facts.n_embd)?;
        let mut gains = vec![0f32; self.facts.n_embd];
        raw.row_into(0, &mut gains)?;
        Ok(gains)
    }

    /// One projection of layer `index`, in Hugging Face's row order, gains folded in.
    fn projection(
        &self,
        index: usize,
        which: char,
        n_heads: usize,
        gains: &[f32],
    ) -> Result<Matrix, FingerprintError> {
        let (gguf_name, hf_name) = match which {
            'q' => (
                format!("blk.{index}.attn_q.weight"),
                format!("model.layers.{index}.self_attn.q_proj.weight"),
            ),
            _ => (
                format!("blk.{index}.attn_k.weight"),
                format!("model.layers.{index}.self_attn.k_proj.weight"),
            ),
        };
        let rows = n_heads * self.facts.head_dim;
        let mut m = match &self.holder {
            Holder::Gguf(_) => {
                let m = self
                    .tensor(&gguf_name, Some(rows), self.facts.n_embd)?
                    .to_matrix()?;
                if self.facts.architecture == "llama" {
                    undo_rope_permutation(&m, n_heads, self.facts.head_dim)
                } else {
                    m
                }
            }
            Holder::Hf(_) => self
                .tensor(&hf_name, Some(rows), self.facts.n_embd)?
                .to_matrix()?,
        };
        for row in m.data.chunks_exact_mut(m.cols) {
            for (v, &g) in row.iter_mut().zip(gains) {
                *v *= g;
            }
        }
        Ok(m)
    }
}

/// llama.cpp's converter reorders each head's rows of Wq and Wk from the half-split RoPE
/// pairing (x[i], x[i + d/2]) to adjacent pairs (x[2i], x[2i + 1]): GGUF row `2i + j` of a
/// head is Hugging Face row `j·d/2 + i`. This puts them back.
pub fn undo_rope_permutation(m: &Matrix, n_heads: usize, head_dim: usize) -> Matrix {
    let mut out = Matrix::zeros(m.rows, m.cols);
    let half = head_dim / 2;
    for head in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf_row = head * head_dim + 2 * i + j;
                let hf_row = head * head_dim + j * half + i;
                out.data[hf_row * m.cols..(hf_row + 1) * m.cols].copy_from_slice(m.row(gguf_row));
            }
        }
    }
    out
}

impl WeightSource for ModelWeights {
    fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    fn sketch(&self) -> Result<TokenSketch, FingerprintError> {
        let embedding = self.tensor(self.embedding_name(), None, self.facts.n_embd)?;
        let kept = sketch_ids(
            self.tokens
                .iter()
                .enumerate()
                .take(embedding.rows)
                .filter_map(|(id, t)| t.as_deref().map(|t| (id, t))),
        );
        let mut rows = Matrix::zeros(kept.len(), self.facts.n_embd);
        for ((_, id), out) in kept
            .iter()
            .zip(rows.data.chunks_exact_mut(self.facts.n_embd))
        {
            embedding.row_into(*id, out)?;
        }
        Ok(TokenSketch {
            hashes: kept.iter().map(|(h, _)| *h).collect(),
            rows,
        })
    }

    fn layer(&self, index: usize) -> Result<AttentionLayer, FingerprintError> {
        let gains = self.norm_gains(index)?;
        Ok(AttentionLayer {
            wq: self.projection(index, 'q', self.facts.n_head, &gains)?,
            wk: self.projection(index, 'k', self.facts.n_kv_head, &gains)?,
        })
    }
}

fn gguf_facts(file: &GgufFile, tokens: &[Option<String>]) -> Result<ModelFacts, FingerprintError> {
    let md = file.metadata();
    let arch = file.architecture()?.to_string();
    if !matches!(arch.as_str(), "llama" | "qwen3" | "qwen3moe") {
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
    let file_type = file
        .tensor("blk.0.attn_q.weight")
        .map_or("?".to_string(), |t| t.ggml_type.name().to_string());
    Ok(ModelFacts {
        origin: format!("GGUF ({file_type} attention)"),
        n_embd,
        n_layer: need("block_count")?,
        n_head,
        n_kv_head: get("attention.head_count_kv")?.unwrap_or(n_head),
        head_dim: get("attention.key_length")?.unwrap_or(n_embd / n_head.max(1)),
        n_vocab: 0,
        vocabulary_hash: format!(
            "{:016x}",
            vocabulary_hash(tokens.iter().map(|t| t.as_deref().unwrap_or("")))
        ),
        declared,
        architecture: arch,
    })
}

fn hf_facts(folder: &HfFolder, tokens: &[Option<String>]) -> Result<ModelFacts, FingerprintError> {
    let cfg = folder.config();
    let model_type = folder.model_type().unwrap_or("");
    let arch = match model_type {
        "llama" => "llama",
        "qwen3" => "qwen3",
        "qwen3_moe" => "qwen3moe",
        other => {
            return Err(FingerprintError::UnsupportedArchitecture(format!(
                "model_type {other}"
            )))
        }
    };
    let get = |key: &str| {
        cfg.get(key)
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
    Ok(ModelFacts {
        architecture: arch.to_string(),
        origin: "Hugging Face folder".to_string(),
        n_embd,
        n_layer: need("num_hidden_layers")?,
        n_head,
        n_kv_head: get("num_key_value_heads").unwrap_or(n_head),
        head_dim: get("head_dim").unwrap_or(n_embd / n_head.max(1)),
        n_vocab: 0,
        vocabulary_hash: format!(
            "{:016x}",
            vocabulary_hash(tokens.iter().map(|t| t.as_deref().unwrap_or("")))
        ),
        declared,
    })
}

/// The token strings of a folder's `tokenizer.json`, by id: `model.vocab` (an object of
/// string → id, or Unigram's list of [string, score]) and `added_tokens`.
fn hf_tokens(dir: &Path) -> Result<Vec<Option<String>>, FingerprintError> {
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
