//! wazn's quantizer: turns a GGUF model into another GGUF model whose tensors have the types
//! llama-quantize would give them, byte for byte.
//!
//! - [`FileType`]: the mixes (`Q4_K_M`, `Q8_0`, `MXFP4_MOE`, ...) by name or number.
//! - [`choose_types`]: llama-quantize's per-tensor rules (which tensors are quantized at
//!   all, the output and embedding types, the "more bits" layers, fallbacks for row lengths
//!   that do not split into blocks), over a tensor list, so they can be checked without
//!   files.
//! - [`QuantPlan`]: the output's metadata, tensor order and types, known before any data is
//!   converted.
//! - [`quantize_file`]: the run, on the kernels' thread pool, streaming: the output is
//!   written as it is produced and memory stays far below the model's size.
//!
//! The numbers come from `wazn-kernels`' dtype table (`quantize_row`, `dequantize_row`): a
//! type whose quantizer is missing there is refused before anything is written.

mod convert;
mod error;
mod file_type;
mod model_shape;
mod plan;
mod quantize;
mod tensor_role;
mod type_choice;
mod validate;

pub use convert::{can_dequantize, can_quantize};
pub use error::QuantError;
pub use file_type::FileType;
pub use model_shape::ModelShape;
pub use plan::{llama_order, PlannedTensor, QuantPlan, QUANTIZATION_VERSION};
pub use quantize::{quantize_file, NoProgress, Progress, QuantizeOptions, QuantizeSummary};
pub use tensor_role::{allows_quantization, block_index, ggml_dims, TensorCategory};
pub use type_choice::{choose_types, MixOptions, TensorDesc};
