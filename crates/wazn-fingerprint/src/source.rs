//! What a fingerprint reads from a model, whatever holds it: a GGUF file, a Hugging Face
//! folder, a `.wfp` file or a random model made here. Every source hands out the same
//! things, in the same conventions, one layer at a time.

use serde::{Deserialize, Serialize};

use crate::error::FingerprintError;
use crate::huref::Invariants;
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
    /// The shapes of multi-head latent attention (DeepSeek-V2/V3, Kimi K2); None for
    /// attention with one Wq and Wk.
    #[serde(default)]
    pub latent: Option<LatentShape>,
}

/// Multi-head latent attention's low-rank projections. A layer's Wq is the query's down
/// projection (or the full query projection where there is none) and its Wk the joint
/// key/value down projection, whose first `kv_rank` rows are the latent and the last
/// `rope_dim` the key's RoPE part shared by every head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentShape {
    /// Rows of the query's down projection; None where the query is projected at full rank.
    pub q_rank: Option<usize>,
    pub kv_rank: usize,
    /// Per head: the query and key dimensions without RoPE, and with it.
    pub nope_dim: usize,
    pub rope_dim: usize,
}

impl ModelFacts {
    /// Rows of Wq.
    pub fn q_rows(&self) -> usize {
        match &self.latent {
            Some(latent) => latent
                .q_rank
                .unwrap_or(self.n_head * (latent.nope_dim + latent.rope_dim)),
            None => self.n_head * self.head_dim,
        }
    }

    /// Rows of Wk.
    pub fn k_rows(&self) -> usize {
        match &self.latent {
            Some(latent) => latent.kv_rank + latent.rope_dim,
            None => self.n_kv_head * self.head_dim,
        }
    }

    /// Rows of the attention form's query factor where a layer carries it
    /// ([`AttentionLayer::form_query`]): the latent layout's Wk rows.
    pub fn form_rows(&self) -> Option<usize> {
        self.latent.as_ref().map(|_| self.k_rows())
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
        if let Some(latent) = &self.latent {
            let dims = [
                latent.q_rank.unwrap_or(1),
                latent.kv_rank,
                latent.nope_dim,
                latent.rope_dim,
            ];
            if dims.iter().any(|&d| d == 0 || d > MAX_DIM)
                || self.q_rows() > MAX_DIM
                || self.k_rows() > MAX_DIM
            {
                return bad(format!(
                    "latent attention shapes {latent:?} are out of range"
                ));
            }
        }
        Ok(())
    }
}

/// The attention projections of one layer, in Hugging Face's row order (GGUF's RoPE row
/// permutation undone), with the attention norm's gains folded into their columns (so a copy
/// whose gains were absorbed into the matrices reads the same).
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionLayer {
    /// `[q_rows, n_embd]` ([`ModelFacts::q_rows`]).
    pub wq: Matrix,
    /// `[k_rows, n_embd]`.
    pub wk: Matrix,
    /// Latent attention's query factor P (`[k_rows, n_embd]`), with PᵀWk the layer's whole
    /// attention form summed over heads; None where the form follows from Wq and Wk by heads.
    pub form_query: Option<Matrix>,
}

impl AttentionLayer {
    /// The layer with its hidden dimensions (columns) put in another model's order.
    pub fn gathered(&self, columns: &[usize], signs: &[f32]) -> AttentionLayer {
        AttentionLayer {
            wq: self.wq.gather_columns(columns, signs),
            wk: self.wk.gather_columns(columns, signs),
            form_query: self
                .form_query
                .as_ref()
                .map(|p| p.gather_columns(columns, signs)),
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

    /// HuRef's invariant terms of the last layers, `sketch` being this source's own
    /// ([`WeightSource::sketch`], passed in so that a caller holding it does not make it
    /// twice); None where the source has none (the null's random models, `.wfp` files
    /// written before they were kept).
    fn invariants(&self, _sketch: &TokenSketch) -> Result<Option<Invariants>, FingerprintError> {
        Ok(None)
    }
}
