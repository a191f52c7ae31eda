//! Model provenance from weights: is this model derived from that one?
//!
//! The method is AWM's (Zeng et al. 2025, "AWM: Accurate Weight-Matrix Fingerprint for Large
//! Language Models"): the embedding rows of the tokens two models share align their hidden
//! dimensions (a linear assignment on 1 − |cos| undoes permutations and sign flips), then
//! each layer's Wq, Wk and attention form WqWkᵀ are compared with unbiased CKA, which is
//! invariant to orthogonal changes of the features (head permutations, rotations within
//! heads) and to scale. Two additions: GGUF's RoPE row permutation is undone so GGUF and
//! Hugging Face files read alike, and the attention norm's gains are folded into Wq and Wk
//! so absorbing them into the matrices changes nothing. Beside it, HuRef's invariant terms of
//! the last layers ([`compare_invariants`]), which need no alignment. Latent attention
//! (DeepSeek-V2/V3, Kimi K2) is read through its low-rank factors.
//!
//! - [`WeightSource`]: a model as the statistics read it, from [`ModelWeights`] (GGUF or a
//!   Hugging Face folder, any dtype wazn reads), [`WfpFile`] (a saved fingerprint) or
//!   [`RandomModel`] (the null's independent models, made from a seed).
//! - [`score_pair`]: the per-layer similarities and the summary score of two models.
//! - [`null_distribution`], [`verdict`]: the z-score against unrelated models and the verdict.
//! - [`write_wfp`]: the `.wfp` file (Q8_0 or f16 matrices, the invariant terms in f32).
//!
//! It reads weights and never runs a model.

mod alignment;
mod cka;
mod compare;
mod error;
mod facts;
mod huref;
mod latent;
mod matrix;
mod model;
mod pages;
mod random;
mod sketch;
mod source;
mod verdict;
mod wfp;

use std::path::Path;

pub use alignment::{align_hidden, Alignment};
pub use cka::{unbiased_cka, Prepared, Representation};
pub use compare::{
    attention_factors, attention_form, cosine, monotone_matching, score_aligned, score_pair,
    Detail, LayerSimilarity, NoProgress, PairOutcome, PairScore, Progress, MIN_SHARED_TOKENS,
};
pub use error::FingerprintError;
pub use huref::{
    compare_invariants, compute_invariants, InvariantLayer, InvariantScore, Invariants,
    LayerInvariants, ValueOutput, INVARIANT_LAYERS, INVARIANT_TOKENS,
};
pub use matrix::Matrix;
pub use model::{undo_rope_permutation, ModelWeights};
pub use random::RandomModel;
pub use sketch::{shared_rows, token_hash, TokenSketch, SKETCH_TOKENS};
pub use source::{AttentionLayer, LatentShape, ModelFacts, WeightSource};
pub use verdict::{
    null_distribution, null_layers, verdict, NullDistribution, Verdict, AWM_INDEPENDENT_MEAN,
    AWM_INDEPENDENT_SD, DEFAULT_NULL_MODELS, NULL_LAYERS,
};
pub use wfp::{looks_like_wfp, write_wfp, WfpFile, WfpStorage, WFP_MAGIC, WFP_VERSION};

/// Opens a model (GGUF file or Hugging Face folder) or a `.wfp` fingerprint.
pub fn open_source(path: &Path) -> Result<Box<dyn WeightSource>, FingerprintError> {
    if path.is_file() && looks_like_wfp(path) {
        Ok(Box::new(WfpFile::open(path)?))
    } else {
        Ok(Box::new(ModelWeights::open(path)?))
    }
}
