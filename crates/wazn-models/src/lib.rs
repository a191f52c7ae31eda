//! wazn's model architectures. Each architecture is one file that reads like the
//! paper: hyper-parameters from the file's metadata, the weights by name, and the
//! forward pass over a [`Batch`] of rows from any number of sequences.
//!
//! This crate knows nothing of HTTP or sampling.

pub mod batch;
pub mod error;
pub mod kv_cache;
pub mod llama;
mod load;
pub mod weights;

pub use batch::{Batch, BatchRow, Logits, SeqId};
pub use error::ModelError;
pub use kv_cache::KvCache;
pub use load::{load_model, SUPPORTED_ARCHITECTURES};

use wazn_kernels::{Activations, ThreadPool};

/// Choices made when a model is loaded.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelOptions {
    /// How activations meet the weights in matrix products.
    pub activations: Activations,
}

/// Facts about a loaded model that the layers above it need.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// `general.architecture` of the file, e.g. `llama`.
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
}
