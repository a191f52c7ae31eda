//! wazn's numbers: the dtype table (block layouts, dequantize, quantize, dot products),
//! matrix products over quantized weights, norms, RoPE, softmax, attention, and the
//! thread pool that runs them. A scalar reference exists for every kernel.
//!
//! This crate knows nothing of files, models or text.

pub mod attention;
pub mod dtype;
pub mod matmul;
mod matmul_gathered;
mod matmul_packed;
pub mod ops;
pub mod packed;
pub mod pool;
pub mod simd;

pub use dtype::DType;
pub use matmul::{matmul, matmul_shared_input, Activations, WeightMatrix};
pub use matmul_gathered::{matmul_gathered, GatherScratch, GatheredProduct};
pub use packed::Layout;
pub use pool::ThreadPool;
pub use simd::Isa;
