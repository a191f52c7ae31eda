//! The few hyper-parameters the quantization mixes look at, read from GGUF metadata as
//! llama.cpp's loader reads them: the architecture, the block count, the expert count, the
//! attention heads of the first layer, and whether llama.cpp would call the model a "70B".

use wazn_formats::{FormatError, MetaValue, Metadata};

/// What the mix rules need to know about a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// `general.architecture` ("llama", "qwen3moe", ...).
    pub arch: String,
    /// `{arch}.block_count`: every block, next-token-prediction ones included
    /// (llama.cpp's `n_layer_all`, the count the FFN layer rules divide by).
    pub n_layer_all: u32,
    /// `{arch}.nextn_predict_layers` (0 if absent).
    pub n_layer_nextn: u32,
    /// `{arch}.expert_count` (0 for a dense model).
    pub n_expert: u32,
    /// `{arch}.attention.head_count` of layer 0 (0 if absent).
    pub n_head: u32,
    /// `{arch}.attention.head_count_kv` of layer 0 (`n_head` if absent).
    pub n_head_kv: u32,
}

impl ModelShape {
    /// Reads the shape from a file's metadata. A missing architecture or block count is an
    /// error, as in llama.cpp.
    pub fn from_metadata(metadata: &Metadata) -> Result<ModelShape, FormatError> {
        let arch = metadata.require_str("general.architecture")?.to_string();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let n_layer_all = metadata.require_u32(&key("block_count"))?;
        let n_layer_nextn = metadata.get_u32(&key("nextn_predict_layers"))?.unwrap_or(0);
        let n_expert = metadata.get_u32(&key("expert_count"))?.unwrap_or(0);
        let n_head = first_layer_value(metadata, &key("attention.head_count"))?.unwrap_or(0);
        let n_head_kv =
            first_layer_value(metadata, &key("attention.head_count_kv"))?.unwrap_or(n_head);
        Ok(ModelShape {
            arch,
            n_layer_all,
            n_layer_nextn,
            n_expert,
            n_head,
            n_head_kv,
        })
    }

    /// Blocks without the next-token-prediction ones (llama.cpp's `n_layer()`).
    pub fn n_layer(&self) -> u32 {
        self.n_layer_all.saturating_sub(self.n_layer_nextn)
    }

    /// Query heads per KV head in layer 0 (0 when the KV head count is 0).
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// Whether llama.cpp's loader types this model `LLM_TYPE_70B`: the only model size the
    /// mixes look at (its attn_v gets Q5_K where others get Q3_K or Q4_K).
    pub fn is_70b(&self) -> bool {
        let n_layer = self.n_layer();
        match self.arch.as_str() {
            "llama" => self.n_expert != 8 && n_layer == 80 && self.n_head != self.n_head_kv,
            "deci" | "olmo" | "qwen2" => n_layer == 80,
            "jais2" => n_layer == 68,
            _ => false,
        }
    }
}

/// A per-layer count given as one number or as an array of one number per layer: the value
/// for layer 0.
fn first_layer_value(metadata: &Metadata, key: &str) -> Result<Option<u32>, FormatError> {
    let Some(value) = metadata.get(key) else {
        return Ok(None);
    };
    let first = match value {
        MetaValue::Array(items) => items.get(0),
        single => Some(single.clone()),
    };
    let Some(first) = first else {
        return Ok(None);
    };
    first
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| FormatError::WrongType {
            key: key.to_string(),
            expected: "an unsigned 32-bit count or an array of them",
            found: first.type_name().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(entries: &[(&str, MetaValue)]) -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in entries {
            m.insert(k.to_string(), v.clone()).unwrap();
        }
        m
    }

    #[test]
    fn reads_counts_and_per_layer_arrays() {
        let m = metadata(&[
            ("general.architecture", "llama".into()),
            ("llama.block_count", MetaValue::U32(80)),
            (
                "llama.attention.head_count",
                MetaValue::from(vec![64u32, 64]),
            ),
            ("llama.attention.head_count_kv", MetaValue::U32(8)),
        ]);
        let shape = ModelShape::from_metadata(&m).unwrap();
        assert_eq!((shape.n_head, shape.n_head_kv, shape.n_gqa()), (64, 8, 8));
        assert!(shape.is_70b());
        assert_eq!(shape.n_expert, 0);
    }

    #[test]
    fn kv_heads_default_to_heads_and_a_missing_block_count_is_an_error() {
        let m = metadata(&[
            ("general.architecture", "qwen2".into()),
            ("qwen2.block_count", MetaValue::U32(28)),
            ("qwen2.attention.head_count", MetaValue::U32(12)),
        ]);
        let shape = ModelShape::from_metadata(&m).unwrap();
        assert_eq!((shape.n_head_kv, shape.n_gqa()), (12, 1));
        assert!(!shape.is_70b());
        let m = metadata(&[("general.architecture", "qwen2".into())]);
        let err = ModelShape::from_metadata(&m).unwrap_err().to_string();
        assert!(err.contains("qwen2.block_count"), "{err}");
    }
}
