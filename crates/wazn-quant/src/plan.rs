//! Everything about the output file that is known before any data is converted: the tensor
//! order, each tensor's target type and shape, and the metadata — so the header can be
//! written first and the data streamed after it.

use std::cmp::Ordering;

use wazn_formats::{GgmlType, GgufFile, MetaValue, TensorInfo, TensorSpec};

use crate::error::QuantError;
use crate::file_type::FileType;
use crate::model_shape::ModelShape;
use crate::tensor_role::{block_index, ggml_dims};
use crate::type_choice::{choose_types, MixOptions, TensorDesc};

/// ggml's quantization format version (`GGML_QNT_VERSION`), written as
/// `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Keys of split files that a single output file must not carry.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// One tensor of the output.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    /// The tensor in the input file.
    pub input: TensorInfo,
    /// Its type in the output.
    pub target: GgmlType,
    /// ne[] as written (trailing ones dropped, as ggml writes it).
    pub dims: Vec<u64>,
}

impl PlannedTensor {
    /// Whether the data changes (else it is copied as it is).
    pub fn is_converted(&self) -> bool {
        self.target != self.input.ggml_type
    }
}

/// The whole output file but its data.
#[derive(Clone, Debug)]
pub struct QuantPlan {
    pub file_type: FileType,
    /// In the order written.
    pub metadata: Vec<(String, MetaValue)>,
    /// In the order written (llama.cpp's, see [`llama_order`]).
    pub tensors: Vec<PlannedTensor>,
    /// Tensors whose row length made the mix's type impossible.
    pub n_fallback: usize,
}

impl QuantPlan {
    /// Plans the quantization of `input` with `options`. Requantizing (a quantized input
    /// tensor that would change type) is refused unless `allow_requantize`.
    pub fn new(
        input: &GgufFile,
        options: &MixOptions,
        allow_requantize: bool,
    ) -> Result<QuantPlan, QuantError> {
        let shape = ModelShape::from_metadata(input.metadata())?;
        let mut infos: Vec<&TensorInfo> = input.tensors().iter().collect();
        infos.sort_by(|a, b| llama_order(&a.name, &b.name));
        let descs: Vec<TensorDesc> = infos
            .iter()
            .map(|t| TensorDesc {
                name: t.name.clone(),
                ggml_type: t.ggml_type,
                dims: ggml_dims(&t.dims),
            })
            .collect();
        let (targets, n_fallback) = choose_types(&shape, &descs, options)?;
        let tensors: Vec<PlannedTensor> = infos
            .into_iter()
            .zip(descs)
            .zip(targets)
            .map(|((info, desc), target)| PlannedTensor {
                input: info.clone(),
                target,
                dims: desc.dims,
            })
            .collect();
        if !allow_requantize {
            if let Some(t) = tensors
                .iter()
                .find(|t| t.is_converted() && t.input.ggml_type.is_quantized())
            {
                return Err(QuantError::Requantize {
                    tensor: t.input.name.clone(),
                    from: t.input.ggml_type,
                });
            }
        }
        Ok(QuantPlan {
            file_type: options.file_type,
            metadata: output_metadata(input, options.file_type),
            tensors,
            n_fallback,
        })
    }

    /// The tensor infos of the output header, in order.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        self.tensors
            .iter()
            .map(|t| TensorSpec::new(t.input.name.clone(), t.target, &t.dims))
            .collect()
    }
}

/// The input's metadata in its order, without split keys, with the quantization version and
/// the file type moved to the end (llama.cpp sets them after copying, which appends them).
fn output_metadata(input: &GgufFile, file_type: FileType) -> Vec<(String, MetaValue)> {
    const VERSION_KEY: &str = "general.quantization_version";
    const FILE_TYPE_KEY: &str = "general.file_type";
    let mut metadata: Vec<(String, MetaValue)> = input
        .metadata()
        .iter()
        .filter(|(k, _)| !SPLIT_KEYS.contains(k) && *k != VERSION_KEY && *k != FILE_TYPE_KEY)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    metadata.push((
        VERSION_KEY.to_string(),
        MetaValue::U32(QUANTIZATION_VERSION),
    ));
    metadata.push((FILE_TYPE_KEY.to_string(), MetaValue::U32(file_type.id())));
    metadata
}

/// llama.cpp's tensor order (its loader keeps weights in a map sorted this way): tensors
/// outside blocks first, then block by block, by name within each.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    let layer = |name: &str| block_index(name).unwrap_or(-1);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_first_then_blocks_in_number_order() {
        let mut names = vec![
            "blk.10.attn_q.weight",
            "token_embd.weight",
            "blk.2.ffn_up.weight",
            "blk.2.attn_norm.weight",
            "output.weight",
            "output_norm.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.attn_norm.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight",
            ]
        );
    }
}
