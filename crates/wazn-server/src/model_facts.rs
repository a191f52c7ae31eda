//! What the server can tell about the model it serves, for the routes that describe a model
//! (Ollama's tags, show and ps): the facts the engine knows (architecture, trained context,
//! layers, weight bytes) and, once read, the facts of the file or folder the model came from
//! (format, size, modification time, parameter count, quantization, and its metadata keys as
//! GGUF names them).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{Map, Value};
use wazn_engine::Engine;
use wazn_formats::{FormatError, GgufFile, HfFolder};

/// Arrays with more elements than this (vocabularies, merges) are given as `null` in
/// `model_info`, as Ollama gives them: they would make every `show` megabytes long.
pub const MAX_ARRAY_LEN: usize = 64;

/// The facts of the served model.
#[derive(Debug)]
pub struct ModelFacts {
    /// As GGUF's `general.architecture` names it.
    pub architecture: String,
    pub n_ctx_train: usize,
    pub n_layer: usize,
    pub n_vocab: usize,
    /// Bytes of weights read for one token.
    pub weight_bytes: u64,
    /// When the server loaded the model.
    pub loaded_at: SystemTime,
    file: OnceLock<FileFacts>,
}

/// Facts read from the model's file (GGUF) or folder (Hugging Face).
#[derive(Clone, Debug)]
pub struct FileFacts {
    /// "gguf" or "safetensors".
    pub format: &'static str,
    /// Bytes on disk (all safetensors shards of a folder).
    pub size_bytes: u64,
    pub modified: SystemTime,
    /// Weights in the file: `general.parameter_count` where written, else counted from the
    /// tensors.
    pub parameter_count: u64,
    /// The tensor type holding the most bytes ("Q4_K", "BF16"): the file's quantization.
    pub quantization_level: String,
    /// The metadata, keyed as GGUF keys it (`general.architecture`, `llama.context_length`),
    /// long arrays as `null`; the chat template is left out (it is shown as the template).
    pub model_info: Map<String, Value>,
}

impl ModelFacts {
    /// The facts the engine knows; the file's are added by [`ModelFacts::set_file`].
    pub fn of_engine(engine: &Engine) -> ModelFacts {
        let info = engine.model().info();
        ModelFacts {
            architecture: info.architecture.clone(),
            n_ctx_train: info.n_ctx_train,
            n_layer: info.n_layer,
            n_vocab: info.n_vocab,
            weight_bytes: info.weight_bytes,
            loaded_at: SystemTime::now(),
            file: OnceLock::new(),
        }
    }

    /// Adds the facts of the model's file; the first call wins (they do not change while the
    /// server runs).
    pub fn set_file(&self, facts: FileFacts) {
        let _ = self.file.set(facts);
    }

    pub fn file(&self) -> Option<&FileFacts> {
        self.file.get()
    }

    /// `model_info`: the file's metadata, or what the engine knows in GGUF's keys.
    pub fn model_info(&self) -> Map<String, Value> {
        if let Some(file) = self.file() {
            return file.model_info.clone();
        }
        let arch = &self.architecture;
        let mut info = Map::new();
        info.insert("general.architecture".into(), Value::from(arch.as_str()));
        info.insert(
            format!("{arch}.context_length"),
            Value::from(self.n_ctx_train),
        );
        info.insert(format!("{arch}.block_count"), Value::from(self.n_layer));
        info.insert(format!("{arch}.vocab_size"), Value::from(self.n_vocab));
        info
    }

    /// Bytes of the model: the file's size, else the bytes of its weights.
    pub fn size_bytes(&self) -> u64 {
        self.file().map_or(self.weight_bytes, |f| f.size_bytes)
    }

    /// When the model was last changed: the file's time, else the load time.
    pub fn modified(&self) -> SystemTime {
        self.file().map_or(self.loaded_at, |f| f.modified)
    }
}

impl FileFacts {
    /// Reads the facts of the model at `path`: a folder is read as a Hugging Face folder, a
    /// file as GGUF (only headers are parsed; no weight is read).
    pub fn read(path: &Path) -> Result<FileFacts, FormatError> {
        if path.is_dir() {
            FileFacts::of_folder(path)
        } else {
            FileFacts::of_gguf(path)
        }
    }

    fn of_gguf(path: &Path) -> Result<FileFacts, FormatError> {
        let file = GgufFile::open(path)?;
        let metadata = file.metadata();
        let mut model_info = Map::new();
        for (key, value) in metadata.iter() {
            if key == "tokenizer.chat_template" {
                continue;
            }
            let json = match value.as_array() {
                Some(items) if items.len() > MAX_ARRAY_LEN => Value::Null,
                _ => serde_json::to_value(value).unwrap_or(Value::Null),
            };
            model_info.insert(key.to_string(), json);
        }
        let counted: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
        let parameter_count = metadata
            .get("general.parameter_count")
            .and_then(|v| v.as_u64())
            .unwrap_or(counted);
        model_info
            .entry("general.parameter_count")
            .or_insert(Value::from(parameter_count));
        let quantization_level = dominant(
            file.tensors()
                .iter()
                .map(|t| (t.ggml_type.name(), t.n_bytes)),
        );
        Ok(FileFacts {
            format: "gguf",
            size_bytes: file.file_size(),
            modified: modified(path),
            parameter_count,
            quantization_level,
            model_info,
        })
    }

    fn of_folder(path: &Path) -> Result<FileFacts, FormatError> {
        let folder = HfFolder::open(path)?;
        let config = folder.config();
        let tensors = || {
            folder
                .shards()
                .iter()
                .flat_map(|shard| shard.header().tensors.iter())
        };
        let parameter_count: u64 = tensors().map(|t| t.n_elements()).sum();
        let quantization_level =
            dominant(tensors().map(|t| (t.dtype.name(), t.file_end.saturating_sub(t.file_start))));
        let size_bytes = folder
            .shards()
            .iter()
            .filter_map(|s| std::fs::metadata(s.path()).ok())
            .map(|m| m.len())
            .sum();
        let arch = folder.model_type().unwrap_or("unknown").to_string();
        let mut model_info = Map::new();
        model_info.insert("general.architecture".into(), Value::from(arch.as_str()));
        model_info.insert(
            "general.parameter_count".into(),
            Value::from(parameter_count),
        );
        // config.json's names for the hyper-parameters GGUF keys by architecture.
        let keys = [
            ("max_position_embeddings", "context_length"),
            ("hidden_size", "embedding_length"),
            ("num_hidden_layers", "block_count"),
            ("intermediate_size", "feed_forward_length"),
            ("num_attention_heads", "attention.head_count"),
            ("num_key_value_heads", "attention.head_count_kv"),
            ("rms_norm_eps", "attention.layer_norm_rms_epsilon"),
            ("rope_theta", "rope.freq_base"),
            ("vocab_size", "vocab_size"),
        ];
        for (hf_key, gguf_key) in keys {
            if let Some(value) = config.get(hf_key).filter(|v| v.is_number()) {
                model_info.insert(format!("{arch}.{gguf_key}"), value.clone());
            }
        }
        Ok(FileFacts {
            format: "safetensors",
            size_bytes,
            modified: modified(path),
            parameter_count,
            quantization_level,
            model_info,
        })
    }
}

/// The name holding the most bytes among `(name, bytes)` pairs ("unknown" when there are none).
fn dominant<'a>(items: impl Iterator<Item = (&'a str, u64)>) -> String {
    let mut bytes: HashMap<&str, u64> = HashMap::new();
    for (name, n) in items {
        *bytes.entry(name).or_default() += n;
    }
    bytes
        .into_iter()
        .max_by_key(|&(name, n)| (n, std::cmp::Reverse(name)))
        .map_or_else(|| "unknown".to_string(), |(name, _)| name.to_string())
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now())
}

/// A short identity of the served model (its name, size and modification time), written as
/// hex. It tells one served file from another; it is not a hash of the file's contents, which
/// would take minutes to compute for a large model.
pub fn identity_digest(model_id: &str, facts: &ModelFacts) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    model_id.hash(&mut hasher);
    facts.size_bytes().hash(&mut hasher);
    facts.modified().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A parameter count as Ollama writes it: "135M", "8.0B".
pub fn parameter_size(count: u64) -> String {
    let n = count as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.2}K", n / 1e3)
    } else {
        count.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_like_ollamas() {
        assert_eq!(parameter_size(134_515_008), "134.52M");
        assert_eq!(parameter_size(8_030_261_248), "8.0B");
        assert_eq!(parameter_size(1_500), "1.50K");
        assert_eq!(parameter_size(12), "12");
    }

    #[test]
    fn the_dominant_type_holds_the_most_bytes() {
        let items = [("Q4_1", 10), ("Q8_0", 7), ("F32", 2), ("Q8_0", 4)];
        assert_eq!(dominant(items.into_iter()), "Q8_0");
        assert_eq!(dominant(std::iter::empty()), "unknown");
    }
}
