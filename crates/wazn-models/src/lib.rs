//! wazn's model architectures (Llama, gpt-oss, Qwen3 and Qwen3-MoE, Gemma 3,
//! DeepSeek-V3 and Kimi K2), from a GGUF file or a Hugging Face
//! folder ([`ModelSource`], [`load_model_from`]). Each architecture reads like the
//! paper: hyper-parameters from the file's metadata or `config.json`, the weights by
//! name, and the forward pass over a [`Batch`] of rows from any number of sequences;
//! the pieces they share (attention over the paged cache, biased linear layers,
//! logits) are in `layers`.
//!
//! This crate knows nothing of HTTP or sampling.

pub mod batch;
pub mod deepseek2;
pub mod error;
pub mod gemma3;
mod gguf_keys;
pub mod gpt_oss;
mod hf_config;
pub mod kv_cache;
mod layers;
pub mod llama;
mod load;
pub mod load_progress;
mod moe;
pub mod pooling;
pub mod qwen3;
pub mod rope_scaling;
pub mod weights;

pub use batch::{Batch, BatchRow, HiddenStates, Logits, Outputs, SeqId};
pub use error::ModelError;
pub use kv_cache::{KvCache, KvDtype};
pub use load::{load_model, load_model_from, ModelSource, SUPPORTED_ARCHITECTURES};
pub use load_progress::{observe_load, LoadProgress};
pub use pooling::{embedding_support, EmbeddingSupport, Pooling};

use wazn_kernels::{Activations, DType, ThreadPool};

/// Choices made when a model is loaded.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelOptions {
    /// How activations meet the weights in matrix products.
    pub activations: Activations,
}

impl ModelOptions {
    /// The number type of a KV cache whose keys and values come from products with
    /// weights of the types `kv_weights` (the K and V projections). f16, as llama.cpp
    /// stores its cache, where those products already round their inputs to 8 bits
    /// (quantized activations and quantized weights): the f16 rounding is far below
    /// theirs, and the cache takes half the memory and attention reads half the bytes.
    /// f32 otherwise: with f32 activations (the reference path) or float weights every
    /// number of the forward pass stays f32, and the cache does not spoil that.
    pub fn kv_dtype(&self, kv_weights: &[DType]) -> KvDtype {
        let rounded = kv_weights.iter().all(|d| d.vec_dot_type() != DType::F32);
        match self.activations {
            Activations::Quantized if rounded && !kv_weights.is_empty() => KvDtype::F16,
            _ => KvDtype::F32,
        }
    }
}

/// Facts about a loaded model that the layers above it need.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The architecture as GGUF's `general.architecture` names it (`llama`, `gpt-oss`),
    /// whichever format the model came from.
    pub architecture: String,
    pub n_vocab: usize,
    /// The context length the model was trained for.
    pub n_ctx_train: usize,
    pub n_layer: usize,
    /// Width of one position's keys (or values) in one layer: `n_kv_head * head_dim`.
    pub kv_width: usize,
    /// Bytes of weights read for one token (every matrix once).
    pub weight_bytes: u64,
}

/// A causal language model: rows of tokens in, logits out.
pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// An empty KV cache for sequences of up to `n_ctx` positions.
    fn new_kv_cache(&self, n_ctx: usize) -> KvCache {
        let info = self.info();
        KvCache::new(info.n_layer, info.kv_width, n_ctx)
    }

    /// Runs every row of `batch` through the model, appending each row's keys and
    /// values to its sequence in `kv`, and returns the logits of the rows that asked
    /// for them, in batch order. On error the cache is left as it was.
    fn forward(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Logits, ModelError>;

    /// The width (`n_embd`) of the final hidden states [`Model::forward_outputs`] hands
    /// back; `None` for a model that hands back none.
    fn hidden_width(&self) -> Option<usize> {
        None
    }

    /// As [`Model::forward`], and also the final hidden states of the rows that asked
    /// for them (`wants_hidden`), in batch order. A model that has none to give (the
    /// default) refuses a batch that asks for them before it computes anything.
    fn forward_outputs(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        pool: &ThreadPool,
    ) -> Result<Outputs, ModelError> {
        if batch.n_hidden_rows() > 0 {
            return Err(ModelError::NoHiddenStates);
        }
        Ok(Outputs {
            logits: self.forward(batch, kv, pool)?,
            hidden: HiddenStates::default(),
        })
    }
}
