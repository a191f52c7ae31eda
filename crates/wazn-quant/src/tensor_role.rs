//! What a tensor is, read from its GGUF name as llama-quantize reads it: its broad role in
//! the model (token embedding, attention V, FFN down, ...), whether it is quantized at all,
//! and the block number in its name.
//!
//! These are substring tests on the name, not an architecture's tensor table, because the
//! mixes are defined that way (`tensor_get_category`, `tensor_allows_quantization` in
//! llama.cpp's `llama-quant.cpp`); matching them exactly is what makes the same input give
//! the same file.

/// A tensor's role, as far as the quantization mixes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorCategory {
    TokenEmbedding,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

impl TensorCategory {
    /// The category of the tensor named `name`; the first rule that matches wins.
    pub fn of(name: &str) -> TensorCategory {
        use TensorCategory::*;
        if name == "output.weight" {
            return Output;
        }
        if is_token_embedding(name) {
            return TokenEmbedding;
        }
        let rules = [
            ("attn_qkv.weight", AttentionQkv),
            ("attn_kv_b.weight", AttentionKvB),
            ("attn_v.weight", AttentionV),
            ("attn_k.weight", AttentionK),
            ("attn_q.weight", AttentionQ),
            ("attn_output.weight", AttentionOutput),
            ("ffn_up", FfnUp),
            ("ffn_gate", FfnGate),
            ("ffn_down", FfnDown),
        ];
        rules
            .into_iter()
            .find(|(needle, _)| name.contains(needle))
            .map_or(Other, |(_, category)| category)
    }

    /// The attention-V-like tensors: they take the "more bits" rules of attn_v and count
    /// in the same layer counter.
    pub fn is_attention_v_like(self) -> bool {
        matches!(
            self,
            TensorCategory::AttentionV
                | TensorCategory::AttentionQkv
                | TensorCategory::AttentionKvB
        )
    }
}

fn is_token_embedding(name: &str) -> bool {
    name == "token_embd.weight" || name == "per_layer_token_embd.weight"
}

/// Substrings of tensors that are never quantized, whatever the architecture: norms, expert
/// routers, small convolutions and mixing weights, positional tables, multimodal parts.
const NEVER_QUANTIZED: [&str; 37] = [
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
    // Whole names: BERT-style position and token-type tables (llama.cpp asks the
    // architecture's tensor table for these two names; no architecture uses them for
    // anything else).
    "\0position_embd.weight",
    "\0token_types.weight",
];

/// More small tensors that GLM-5-next keeps as they are.
const NEVER_QUANTIZED_GLM5_NEXT: [&str; 14] = [
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
];

/// Whether a tensor named `name` with `n_dims` dimensions (trailing ones dropped) of a model
/// of architecture `arch` may change type: only 2-D and 3-D (expert) weights may, and not
/// the ones listed above; `output.weight` only when `quantize_output` holds
/// (`--leave-output-tensor` clears it).
pub fn allows_quantization(name: &str, n_dims: usize, arch: &str, quantize_output: bool) -> bool {
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    if !quantize_output && name == "output.weight" {
        return false;
    }
    let listed = |needle: &str| match needle.strip_prefix('\0') {
        Some(whole) => name == whole,
        None => name.contains(needle),
    };
    if NEVER_QUANTIZED.iter().any(|n| listed(n)) {
        return false;
    }
    !(arch == "glm5-next" && NEVER_QUANTIZED_GLM5_NEXT.iter().any(|n| listed(n)))
}

/// The block number of a tensor named "blk.N....", read as C's `sscanf(name, "blk.%d.")`
/// reads it (optional sign, then digits); `None` when the name does not start that way.
pub fn block_index(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let n_digits = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n_digits == 0 {
        return None;
    }
    // Absurd numbers saturate: they still sort after every real block and fail the layer
    // range check, without overflowing.
    let value = digits[..n_digits].bytes().fold(0i64, |acc, d| {
        acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    });
    Some(if negative { -value } else { value })
}

/// ne[] as ggml keeps it: at least one dimension, trailing ones dropped (`ggml_n_dims`). A
/// GGUF tensor info with dims [576, 1] is written back as [576].
pub fn ggml_dims(dims: &[u64]) -> Vec<u64> {
    let mut dims = if dims.is_empty() {
        vec![1]
    } else {
        dims.to_vec()
    };
    while dims.len() > 1 && dims.last() == Some(&1) {
        dims.pop();
    }
    dims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_the_first_matching_rule() {
        use TensorCategory::*;
        assert_eq!(TensorCategory::of("output.weight"), Output);
        assert_eq!(TensorCategory::of("token_embd.weight"), TokenEmbedding);
        assert_eq!(TensorCategory::of("blk.3.attn_v.weight"), AttentionV);
        assert_eq!(TensorCategory::of("blk.3.attn_qkv.weight"), AttentionQkv);
        assert_eq!(TensorCategory::of("blk.3.attn_kv_b.weight"), AttentionKvB);
        assert_eq!(TensorCategory::of("blk.3.ffn_down_exps.weight"), FfnDown);
        assert_eq!(TensorCategory::of("blk.3.ffn_gate_up_exps.weight"), FfnGate);
        assert_eq!(TensorCategory::of("blk.3.ffn_gate_inp.weight"), FfnGate);
        assert_eq!(TensorCategory::of("blk.3.attn_norm.weight"), Other);
        assert!(AttentionQkv.is_attention_v_like() && !AttentionK.is_attention_v_like());
    }

    #[test]
    fn only_matrices_that_are_not_listed_are_quantized() {
        assert!(allows_quantization("blk.0.attn_q.weight", 2, "llama", true));
        assert!(allows_quantization(
            "blk.0.ffn_up_exps.weight",
            3,
            "qwen3moe",
            true
        ));
        assert!(!allows_quantization(
            "blk.0.attn_norm.weight",
            1,
            "llama",
            true
        ));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2, "llama", true));
        assert!(!allows_quantization(
            "blk.0.ffn_gate_inp.weight",
            2,
            "qwen3moe",
            true
        ));
        assert!(!allows_quantization(
            "blk.0.attn_q_norm.weight",
            2,
            "qwen3",
            true
        ));
        assert!(!allows_quantization("output.weight", 2, "llama", false));
        assert!(allows_quantization("output.weight", 2, "llama", true));
        assert!(!allows_quantization(
            "position_embd.weight",
            2,
            "gpt2",
            true
        ));
        assert!(!allows_quantization(
            "v.position_embd.weight",
            2,
            "clip",
            true
        ));
        assert!(allows_quantization(
            "enc_position_embd.weight",
            2,
            "x",
            true
        ));
        assert!(!allows_quantization(
            "blk.0.hc_mix.weight",
            2,
            "glm5-next",
            true
        ));
        assert!(allows_quantization("blk.0.hc_mix.weight", 2, "llama", true));
    }

    #[test]
    fn block_numbers_read_as_sscanf_reads_them() {
        assert_eq!(block_index("blk.12.attn_v.weight"), Some(12));
        assert_eq!(block_index("blk.7"), Some(7));
        assert_eq!(block_index("blk.-1.x"), Some(-1));
        assert_eq!(block_index("blk.x.attn"), None);
        assert_eq!(block_index("output.weight"), None);
        assert_eq!(block_index("blk.99999999999999999999999.x"), Some(i64::MAX));
    }

    #[test]
    fn trailing_unit_dimensions_are_dropped() {
        assert_eq!(ggml_dims(&[576, 1]), vec![576]);
        assert_eq!(ggml_dims(&[576, 1, 3]), vec![576, 1, 3]);
        assert_eq!(ggml_dims(&[]), vec![1]);
        assert_eq!(ggml_dims(&[1, 1]), vec![1]);
    }
}
