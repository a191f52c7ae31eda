//! What a fingerprint reads from a model, whatever holds it: a GGUF file, a Hugging Face
//! folder, a `.wfp` file or a random model made here. Every source hands out the same
//! things, in the same conventions, one layer at a time.

use serde::{Deserialize, Serialize};

use crate::error::FingerprintError;
use crate::matrix::Matrix;
use crate::sketch::TokenSketch;

/// The shapes and names of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// As GGUF's `general.architecture` names it (`llama`, `qwen3`).
    pub architecture: String,
    /// Where the weights came from (`GGUF Q4_K_M`, `Hugging Face folder`, `random seed 3`).
    pub origin: String,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    /// [`crate::sketch::vocabulary_hash`] of the whole vocabulary, as 16 hex digits.
    pub vocabulary_hash: String,
    /// The lineage the file declares about itself (GGUF `general.name`,
    /// `general.base_model.*`; `config.json` name fields), key and value.
    pub declared: Vec<(String, String)>,
}

impl ModelFacts {
    /// Rows of Wq.
    pub fn q_rows(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Rows of Wk.
    pub fn k_rows(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Checks the shapes a fingerprint relies on, so later arithmetic on them is safe.
    pub fn check(&self) -> Result<(), FingerprintError> {
        const MAX_DIM: usize = 1 << 20;
        let bad = |what: String| Err(FingerprintError::BadModel(what));
        if self.n_embd < 4 || self.n_embd > MAX_DIM {
            return bad(format!("a hidden size of {} is out of range", self.n_embd));
        }
        if self.n_layer == 0 || self.n_layer > 4096 {
            return bad(format!("{} layers is out of range", self.n_layer));
        }
        if self.n_head == 0
            || self.n_kv_head == 0
            || !self.n_head.is_multiple_of(self.n_kv_head)
            || self.head_dim == 0
            || !self.head_dim.is_multiple_of(2)
            || self.q_rows() > MAX_DIM
        {
            return bad(format!(
                "{} heads of {} over {} key/value heads is not an attention shape",
                self.n_head, self.head_dim, self.n_kv_head
            ));
        }
        Ok(())
    }
}

/// The attention projections of one layer, in Hugging Face's row order (GGUF's RoPE row
/// permutation undone), with the attention norm's gains folded into their columns (so a copy
/// whose gains were absorbed into the matrices reads the same).
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionLayer {
    /// `[n_head · head_dim, n_embd]`.
    pub wq: Matrix,
    /// `[n_kv_head · head_dim, n_embd]`.
    pub wk: Matrix,
}

impl AttentionLayer {
    /// The layer with its hidden dimensions (columns) put in another model's order.
    pub fn gathered(&self, columns: &[usize], signs: &[f32]) -> AttentionLayer {
        AttentionLayer {
            wq: self.wq.gather_columns(columns, signs),
            wk: self.wk.gather_columns(columns, signs),
        }
    }
}

/// A model as a fingerprint sees it.
pub trait WeightSource: Send + Sync {
    fn facts(&self) -> &ModelFacts;

    /// The embedding rows of the sketched tokens.
    fn sketch(&self) -> Result<TokenSketch, FingerprintError>;

    /// Layer `index` (< `facts().n_layer`).
    fn layer(&self, index: usize) -> Result<AttentionLayer, FingerprintError>;
}
