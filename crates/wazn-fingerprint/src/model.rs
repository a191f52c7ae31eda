//! A model file or folder as a [`WeightSource`]: GGUF (any type in wazn's dtype table) or a
//! Hugging Face folder (F32, F16, BF16 safetensors). Each matrix is dequantized when asked
//! for and dropped by the caller, so memory holds one layer at a time.

use std::path::Path;

use wazn_formats::{GgufFile, HfFolder, SafeDtype};
use wazn_kernels::dtype::{dequantize_row, DType};

use crate::error::FingerprintError;
use crate::facts::{gguf_facts, hf_facts, hf_tokens, Layout};
use crate::huref::{compute_invariants, Invariants, ValueOutput};
use crate::latent::{latent_layer, LatentWeights};
use crate::matrix::Matrix;
use crate::sketch::{sketch_ids, TokenSketch};
use crate::source::{AttentionLayer, LatentShape, ModelFacts, WeightSource};

enum Holder {
    Gguf(GgufFile),
    Hf(HfFolder),
}

/// A model read from its file(s).
pub struct ModelWeights {
    holder: Holder,
    facts: ModelFacts,
    layout: Layout,
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
            let (facts, layout) = hf_facts(&folder, &tokens)?;
            let model = ModelWeights {
                holder: Holder::Hf(folder),
                facts,
                layout,
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
            let (facts, layout) = gguf_facts(&file, &tokens)?;
            let model = ModelWeights {
                holder: Holder::Gguf(file),
                facts,
                layout,
                tokens,
            };
            model.finish()
        }
    }

    fn finish(mut self) -> Result<ModelWeights, FingerprintError> {
        self.facts.check()?;
        // The embedding's row count is the vocabulary that has weights.
        let embedding = self.tensor(&self.layout.embedding(), None, self.facts.n_embd)?;
        self.facts.n_vocab = embedding.rows;
        Ok(self)
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
        // A stack of matrices (GGUF's per-head key up projections) reads as their rows.
        let (n_rows, n_cols) = match shape.as_slice() {
            [h, r, c] => (
                h.checked_mul(*r)
                    .ok_or_else(|| bad("too many rows".into()))?,
                *c,
            ),
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

    /// Layer `index`'s norm gains of `len` values, the layout's offset added.
    fn gains(
        &self,
        index: usize,
        gguf: &str,
        hf: &str,
        len: usize,
    ) -> Result<Vec<f32>, FingerprintError> {
        let name = self.layout.layer_tensor(index, gguf, hf);
        let raw = self.tensor(&name, Some(1), len)?;
        let mut gains = vec![0f32; len];
        raw.row_into(0, &mut gains)?;
        for g in &mut gains {
            *g += self.layout.norm_offset;
        }
        Ok(gains)
    }

    /// Layer `index`'s matrix `[rows, cols]` (any row count where `rows` is None).
    fn layer_matrix(
        &self,
        index: usize,
        gguf: &str,
        hf: &str,
        rows: Option<usize>,
        cols: usize,
    ) -> Result<Matrix, FingerprintError> {
        let name = self.layout.layer_tensor(index, gguf, hf);
        self.tensor(&name, rows, cols)?.to_matrix()
    }

    /// Wq or Wk of an attention layer with one of each, in Hugging Face's row order.
    fn projection(
        &self,
        index: usize,
        (gguf, hf): (&str, &str),
        n_heads: usize,
    ) -> Result<Matrix, FingerprintError> {
        let rows = n_heads * self.facts.head_dim;
        let m = self.layer_matrix(index, gguf, hf, Some(rows), self.facts.n_embd)?;
        Ok(if self.layout.rope_rows_permuted {
            undo_rope_permutation(&m, n_heads, self.facts.head_dim)
        } else {
            m
        })
    }

    /// A latent attention layer, its norms' gains applied (`attention_gains` on the columns).
    fn latent_layer(
        &self,
        index: usize,
        shape: &LatentShape,
        attention_gains: &[f32],
    ) -> Result<AttentionLayer, FingerprintError> {
        let n = self.facts.n_embd;
        let n_head = self.facts.n_head;
        let head_rows = shape.nope_dim + shape.rope_dim;
        let (mut query, query_up) = match shape.q_rank {
            Some(rank) => {
                let mut down =
                    self.layer_matrix(index, "attn_q_a", "self_attn.q_a_proj", Some(rank), n)?;
                let gains = self.gains(index, "attn_q_a_norm", "self_attn.q_a_layernorm", rank)?;
                scale_rows(&mut down, &gains);
                let up = self.layer_matrix(
                    index,
                    "attn_q_b",
                    "self_attn.q_b_proj",
                    Some(n_head * head_rows),
                    rank,
                )?;
                (down, Some(up))
            }
            None => (
                self.layer_matrix(
                    index,
                    "attn_q",
                    "self_attn.q_proj",
                    Some(n_head * head_rows),
                    n,
                )?,
                None,
            ),
        };
        scale_columns(&mut query, attention_gains);
        let mut key_value = self.layer_matrix(
            index,
            "attn_kv_a_mqa",
            "self_attn.kv_a_proj_with_mqa",
            Some(shape.kv_rank + shape.rope_dim),
            n,
        )?;
        let gains = self.gains(
            index,
            "attn_kv_a_norm",
            "self_attn.kv_a_layernorm",
            shape.kv_rank,
        )?;
        let mut row_gains = gains;
        row_gains.resize(key_value.rows, 1.0);
        scale_rows(&mut key_value, &row_gains);
        scale_columns(&mut key_value, attention_gains);
        let key_up_t = self.key_up_transposed(index, shape)?;
        Ok(latent_layer(
            LatentWeights {
                query,
                query_up,
                key_value,
                key_up_t,
            },
            shape,
            n_head,
        ))
    }

    /// Each head's key up projection, transposed and stacked: `[n_head · kv_rank, nope]`.
    /// GGUF files store it so (`attn_k_b`); older GGUF files and Hugging Face folders keep the
    /// joint key/value up projection, `[n_head · (nope + v), kv_rank]`, whose first `nope`
    /// rows per head are the key's.
    fn key_up_transposed(
        &self,
        index: usize,
        shape: &LatentShape,
    ) -> Result<Matrix, FingerprintError> {
        let n_head = self.facts.n_head;
        let split = self
            .layout
            .layer_tensor(index, "attn_k_b", "self_attn.k_b_proj");
        if self.layout.hf_prefix.is_none() && self.has_tensor(&split) {
            return self
                .tensor(&split, Some(n_head * shape.kv_rank), shape.nope_dim)?
                .to_matrix();
        }
        let joint = self.layer_matrix(
            index,
            "attn_kv_b",
            "self_attn.kv_b_proj",
            None,
            shape.kv_rank,
        )?;
        let per_head = joint.rows / n_head.max(1);
        if joint.rows % n_head.max(1) != 0 || per_head < shape.nope_dim {
            return Err(FingerprintError::BadTensor {
                name: self
                    .layout
                    .layer_tensor(index, "attn_kv_b", "self_attn.kv_b_proj"),
                reason: format!(
                    "{} rows do not split into {n_head} heads of {} key rows and more",
                    joint.rows, shape.nope_dim
                ),
            });
        }
        let mut out = Matrix::zeros(n_head * shape.kv_rank, shape.nope_dim);
        for h in 0..n_head {
            for d in 0..shape.nope_dim {
                let row = joint.row(h * per_head + d);
                for (r, &v) in row.iter().enumerate() {
                    out.data[(h * shape.kv_rank + r) * shape.nope_dim + d] = v;
                }
            }
        }
        Ok(out)
    }

    /// Layer `index`'s value projection (gains folded) and output projection with the query
    /// heads of each key group summed; None for latent attention.
    fn value_output(&self, index: usize) -> Result<Option<ValueOutput>, FingerprintError> {
        let f = &self.facts;
        if f.latent.is_some() {
            return Ok(None);
        }
        let n = f.n_embd;
        let gains = self.gains(index, "attn_norm", "input_layernorm", n)?;
        let kv_rows = f.k_rows();
        let mut value = self.layer_matrix(index, "attn_v", "self_attn.v_proj", Some(kv_rows), n)?;
        scale_columns(&mut value, &gains);
        // Wo is `[n_embd, n_head · head_dim]`: column h·d + i belongs to query head h.
        let output = self.layer_matrix(
            index,
            "attn_output",
            "self_attn.o_proj",
            Some(n),
            f.q_rows(),
        )?;
        let group = f.n_head / f.n_kv_head.max(1);
        let mut output_summed = Matrix::zeros(kv_rows, n);
        for (e, row) in output.data.chunks_exact(output.cols).enumerate() {
            for (column, &v) in row.iter().enumerate() {
                let (head, i) = (column / f.head_dim, column % f.head_dim);
                let kv_row = (head / group.max(1)) * f.head_dim + i;
                output_summed.data[kv_row * n + e] += v;
            }
        }
        Ok(Some(ValueOutput {
            value,
            output_summed,
        }))
    }

    fn has_tensor(&self, name: &str) -> bool {
        match &self.holder {
            Holder::Gguf(file) => file.tensor(name).is_some(),
            Holder::Hf(folder) => folder.tensor(name).is_some(),
        }
    }
}

/// Multiplies each column `j` of `m` by `gains[j]`.
fn scale_columns(m: &mut Matrix, gains: &[f32]) {
    for row in m.data.chunks_exact_mut(m.cols.max(1)) {
        for (v, &g) in row.iter_mut().zip(gains) {
            *v *= g;
        }
    }
}

/// Multiplies each row `i` of `m` by `gains[i]`.
fn scale_rows(m: &mut Matrix, gains: &[f32]) {
    for (row, &g) in m.data.chunks_exact_mut(m.cols.max(1)).zip(gains) {
        for v in row {
            *v *= g;
        }
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
        let embedding = self.tensor(&self.layout.embedding(), None, self.facts.n_embd)?;
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

    fn invariants(&self, sketch: &TokenSketch) -> Result<Option<Invariants>, FingerprintError> {
        compute_invariants(self, sketch, |index| self.value_output(index)).map(Some)
    }

    fn layer(&self, index: usize) -> Result<AttentionLayer, FingerprintError> {
        let n = self.facts.n_embd;
        let gains = self.gains(index, "attn_norm", "input_layernorm", n)?;
        if let Some(shape) = &self.facts.latent {
            return self.latent_layer(index, shape, &gains);
        }
        let mut wq = self.projection(index, ("attn_q", "self_attn.q_proj"), self.facts.n_head)?;
        let mut wk =
            self.projection(index, ("attn_k", "self_attn.k_proj"), self.facts.n_kv_head)?;
        scale_columns(&mut wq, &gains);
        scale_columns(&mut wk, &gains);
        Ok(AttentionLayer {
            wq,
            wk,
            form_query: None,
        })
    }
}
