//! The type of each tensor in a quantized file: llama-quantize's mixes, rule for rule
//! (`llama_tensor_get_type` and `llama_tensor_get_type_impl` in llama.cpp's
//! `llama-quant.cpp`), so that the same input and file type give the same file.
//!
//! The rules depend on the order tensors are visited in (attn_v "more bits" layers are
//! counted, not read from names, in dense models), so [`choose_types`] takes the tensors in
//! llama.cpp's order ([`crate::plan::llama_order`]). Only the rules of the file types wazn
//! writes are here; the i-quant branches never fire for them.

use wazn_formats::GgmlType;

use crate::error::QuantError;
use crate::file_type::FileType;
use crate::model_shape::ModelShape;
use crate::tensor_role::{allows_quantization, block_index, TensorCategory};

/// The user's choices that shape the mix (llama-quantize's flags of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixOptions {
    pub file_type: FileType,
    /// False with `--leave-output-tensor`: output.weight keeps its type.
    pub quantize_output_tensor: bool,
    /// `--output-tensor-type`.
    pub output_tensor_type: Option<GgmlType>,
    /// `--token-embedding-type`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--pure`: every quantized tensor gets the file type's own type (shape fallbacks
    /// still apply).
    pub pure: bool,
}

impl MixOptions {
    /// The plain mix of `file_type`, as llama-quantize without flags.
    pub fn new(file_type: FileType) -> MixOptions {
        MixOptions {
            file_type,
            quantize_output_tensor: true,
            output_tensor_type: None,
            token_embedding_type: None,
            pure: false,
        }
    }
}

/// One tensor as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    pub name: String,
    /// The type it has in the input.
    pub ggml_type: GgmlType,
    /// ne[] with trailing ones dropped ([`crate::tensor_role::ggml_dims`]).
    pub dims: Vec<u64>,
}

/// The target type of every tensor of `tensors`, given in llama.cpp's order, and how many
/// of them fell back to another type because their rows do not split into the blocks of
/// the type the mix chose.
pub fn choose_types(
    shape: &ModelShape,
    tensors: &[TensorDesc],
    options: &MixOptions,
) -> Result<(Vec<GgmlType>, usize), QuantError> {
    let categories: Vec<TensorCategory> = tensors
        .iter()
        .map(|t| TensorCategory::of(&t.name))
        .collect();
    let mut chooser = Chooser {
        shape,
        options,
        n_attention_wv: categories
            .iter()
            .filter(|c| c.is_attention_v_like())
            .count() as i64,
        i_attention_wv: 0,
        n_ffn: i64::from(shape.n_layer_all),
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
        // Tied embeddings (no output.weight): the token embedding takes the output's rules.
        has_tied_embeddings: !categories.contains(&TensorCategory::Output),
        n_fallback: 0,
    };
    let types = tensors
        .iter()
        .zip(&categories)
        .map(|(t, &category)| chooser.choose(t, category))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((types, chooser.n_fallback))
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third in
/// between, get more bits in the _M mixes.
fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// The counters llama.cpp's `quantize_state_impl` keeps while it walks the tensors.
struct Chooser<'a> {
    shape: &'a ModelShape,
    options: &'a MixOptions,
    n_attention_wv: i64,
    i_attention_wv: i64,
    n_ffn: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
    has_tied_embeddings: bool,
    n_fallback: usize,
}

impl Chooser<'_> {
    /// `llama_tensor_get_type`: overrides first, then the mix, then the shape fallback.
    fn choose(&mut self, t: &TensorDesc, category: TensorCategory) -> Result<GgmlType, QuantError> {
        let options = self.options;
        if !allows_quantization(
            &t.name,
            t.dims.len(),
            &self.shape.arch,
            options.quantize_output_tensor,
        ) {
            return Ok(t.ggml_type);
        }
        if let Some(forced) = options.token_embedding_type {
            if category == TensorCategory::TokenEmbedding {
                return Ok(forced);
            }
        }
        if let Some(forced) = options.output_tensor_type {
            if category == TensorCategory::Output {
                return Ok(forced);
            }
        }
        let default_type = options.file_type.default_type();
        if !default_type.is_quantized() {
            return Ok(default_type);
        }
        let mut new_type = default_type;
        if !options.pure {
            new_type = self.mix_rule(new_type, t, category)?;
        }
        self.fallback(t, new_type)
    }

    /// `llama_tensor_get_type_impl`: the type the mix gives a tensor of this role and
    /// layer, starting from the file type's default.
    fn mix_rule(
        &mut self,
        mut new_type: GgmlType,
        t: &TensorDesc,
        category: TensorCategory,
    ) -> Result<GgmlType, QuantError> {
        use FileType as F;
        use GgmlType as G;
        use TensorCategory as C;
        let ftype = self.options.file_type;
        let shape = self.shape;
        let arch = shape.arch.as_str();
        let falcon = arch == "falcon";
        let name = t.name.as_str();

        // GLM-5-next keeps its low-rank attention projections at Q8_0 at least.
        if arch == "glm5-next"
            && ["attn_q_a", "attn_q_b", "nextn.eh_proj"]
                .iter()
                .any(|n| name.contains(n))
            && !matches!(new_type, G::F32 | G::BF16 | G::F16)
        {
            return Ok(G::Q8_0);
        }

        if category == C::Output || (self.has_tied_embeddings && category == C::TokenEmbedding) {
            if let Some(forced) = self.options.output_tensor_type {
                new_type = forced;
            } else {
                let nx = t.dims.first().copied().unwrap_or(1);
                if ftype == F::MXFP4_MOE || falcon || nx % new_type.block_size() != 0 {
                    new_type = G::Q8_0;
                } else if new_type != G::Q8_0 {
                    new_type = G::Q6_K;
                }
            }
        } else if ftype == F::MXFP4_MOE {
            // Expert stacks (3-D) to MXFP4, everything else to Q8_0. Bailing-MoE 3's MLA
            // projections are 3-D too, so there only the FFN roles count as experts.
            let n_experts_in_tensor = t.dims.get(2).copied().unwrap_or(1);
            let is_ffn = matches!(category, C::FfnUp | C::FfnGate | C::FfnDown);
            new_type = if n_experts_in_tensor > 1 && (arch != "bailingmoe3" || is_ffn) {
                G::MXFP4
            } else {
                G::Q8_0
            };
        } else if category == C::TokenEmbedding {
            if let Some(forced) = self.options.token_embedding_type {
                new_type = forced;
            }
        } else if category.is_attention_v_like() {
            let (i, n) = (self.i_attention_wv, self.n_attention_wv);
            if ftype == F::Q2_K {
                new_type = if shape.n_gqa() >= 4 { G::Q4_K } else { G::Q3_K };
            } else if ftype == F::Q3_K_M {
                new_type = if i < 2 { G::Q5_K } else { G::Q4_K };
            } else if ftype == F::Q3_K_L {
                new_type = G::Q5_K;
            } else if matches!(ftype, F::Q4_K_M | F::Q5_K_M) && use_more_bits(i, n) {
                new_type = G::Q6_K;
            } else if ftype == F::Q4_K_S && i < 4 {
                new_type = G::Q5_K;
            }
            // A 70B model's attn_v is 8x smaller than its attn_q (8 heads share it), so
            // more bits there cost little.
            if shape.is_70b() && matches!(new_type, G::Q3_K | G::Q4_K) {
                new_type = G::Q5_K;
            }
            if shape.n_expert == 8 {
                new_type = G::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if category == C::AttentionK {
            if shape.n_expert == 8 {
                new_type = G::Q8_0;
            }
        } else if category == C::FfnDown {
            let (i_layer, n_layer) = self.layer_of(self.i_ffn_down, name)?;
            let more_bits = use_more_bits(i_layer, n_layer);
            match ftype {
                F::Q2_K => new_type = G::Q3_K,
                F::Q3_K_M => {
                    new_type = if i_layer < n_layer / 16 {
                        G::Q5_K
                    } else if !falcon || more_bits {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                F::Q3_K_L => new_type = if falcon { G::Q4_K } else { G::Q5_K },
                F::Q4_K_M => {
                    if falcon {
                        new_type = if i_layer < n_layer / 16 {
                            G::Q6_K
                        } else if more_bits {
                            G::Q5_K
                        } else {
                            G::Q4_K
                        };
                    } else if more_bits {
                        new_type = G::Q6_K;
                    }
                }
                F::Q5_K_M if more_bits => new_type = G::Q6_K,
                F::Q4_K_S if !falcon && i_layer < n_layer / 8 => new_type = G::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if category == C::AttentionOutput {
            if !falcon {
                if shape.n_expert == 8 {
                    if matches!(
                        ftype,
                        F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M
                    ) {
                        new_type = G::Q5_K;
                    }
                } else {
                    match ftype {
                        F::Q2_K => new_type = G::Q3_K,
                        F::Q3_K_M => new_type = G::Q4_K,
                        F::Q3_K_L => new_type = G::Q5_K,
                        _ => {}
                    }
                }
            } else if ftype == F::Q3_K_L {
                new_type = G::Q4_K;
            }
        } else if category == C::FfnGate {
            // Only the i-quants change gate and up, but the layer is still checked (a MoE
            // tensor without a block number is an error in llama.cpp too).
            self.layer_of(self.i_ffn_gate, name)?;
            self.i_ffn_gate += 1;
        } else if category == C::FfnUp {
            self.layer_of(self.i_ffn_up, name)?;
            self.i_ffn_up += 1;
        }
        // llama.cpp has a branch for attn_qkv after these, but attn_qkv is attention-V-like
        // and never reaches it.
        Ok(new_type)
    }

    /// The layer of an FFN tensor: the running count in a dense model; in a MoE model the
    /// block number in its name, because expert tensors need not come in layer order.
    fn layer_of(&self, counter: i64, name: &str) -> Result<(i64, i64), QuantError> {
        let n_layer = self.n_ffn;
        if self.shape.n_expert <= 1 {
            return Ok((counter, n_layer));
        }
        let bad = |reason: String| QuantError::BadTensor {
            tensor: name.to_string(),
            reason,
        };
        let i_layer = block_index(name).ok_or_else(|| {
            bad("cannot tell its layer: the name does not start with blk.N".into())
        })?;
        if !(0..n_layer).contains(&i_layer) {
            return Err(bad(format!("layer {i_layer} is not in [0, {n_layer})")));
        }
        Ok((i_layer, n_layer))
    }

    /// `tensor_type_fallback`: a type whose block does not divide the row length is replaced
    /// by a 32-element type of about the same size, or F16 when not even that fits.
    fn fallback(&mut self, t: &TensorDesc, target: GgmlType) -> Result<GgmlType, QuantError> {
        use GgmlType as G;
        let ncols = t.dims.first().copied().unwrap_or(1);
        if ncols % target.block_size() == 0 {
            return Ok(target);
        }
        self.n_fallback += 1;
        let mut fallback = match target {
            G::IQ1_S
            | G::IQ1_M
            | G::IQ2_XXS
            | G::IQ2_XS
            | G::IQ2_S
            | G::IQ3_XXS
            | G::IQ3_S
            | G::IQ4_XS => G::IQ4_NL,
            G::Q2_K | G::Q3_K | G::TQ1_0 | G::TQ2_0 => G::Q4_0,
            G::Q4_K => G::Q5_0,
            G::Q5_K => G::Q5_1,
            G::Q6_K => G::Q8_0,
            // Already a 32-element type: nothing smaller to go to; F16 below.
            other if other.block_size() <= 32 => other,
            other => return Err(QuantError::NoFallback { ggml_type: other }),
        };
        if ncols % fallback.block_size() != 0 {
            fallback = G::F16;
        }
        Ok(fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_of_a_32_layer_model() {
        let layers: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            layers,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }
}
