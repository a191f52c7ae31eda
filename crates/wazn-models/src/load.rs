//! Picks the architecture of a model file or folder.

use std::path::Path;
use std::sync::Arc;

use wazn_formats::{GgufFile, HfFolder};

use crate::deepseek2::DeepSeek2;
use crate::error::ModelError;
use crate::gemma3::Gemma3;
use crate::gpt_oss::GptOss;
use crate::hf_config::HfConfig;
use crate::llama::Llama;
use crate::qwen3::Qwen3;
use crate::{Model, ModelOptions};

/// Architectures wazn can run, as GGUF's `general.architecture` names them (a Hugging
/// Face folder's `model_type` `gpt_oss` is `gpt-oss`, `qwen3_moe` is `qwen3moe`, `gemma3_text` is `gemma3`, `deepseek_v3` is `deepseek2`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama",
    "gpt-oss",
    "qwen3",
    "qwen3moe",
    "gemma3",
    "deepseek2",
];

/// Where a model's weights come from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// One GGUF file.
    Gguf(Arc<GgufFile>),
    /// A Hugging Face folder: `config.json` and safetensors.
    HfFolder(Arc<HfFolder>),
}

impl ModelSource {
    /// Opens `path`: a directory as a Hugging Face folder, a file as GGUF.
    pub fn open(path: &Path) -> Result<ModelSource, ModelError> {
        if path.is_dir() {
            Ok(ModelSource::HfFolder(Arc::new(HfFolder::open(path)?)))
        } else {
            Ok(ModelSource::Gguf(Arc::new(GgufFile::open(path)?)))
        }
    }
}

/// Loads the model a GGUF file describes.
pub fn load_model(
    file: Arc<GgufFile>,
    options: &ModelOptions,
) -> Result<Box<dyn Model>, ModelError> {
    let arch = file.architecture()?.to_string();
    match arch.as_str() {
        "llama" => Ok(Box::new(Llama::load(file, options)?)),
        "gpt-oss" => Ok(Box::new(GptOss::load(file, options)?)),
        "qwen3" | "qwen3moe" => Ok(Box::new(Qwen3::load(file, options)?)),
        "gemma3" => Ok(Box::new(Gemma3::load(file, options)?)),
        "deepseek2" => Ok(Box::new(DeepSeek2::load(file, options)?)),
        _ => Err(ModelError::UnsupportedArchitecture(arch)),
    }
}

/// Loads the model of a GGUF file or a Hugging Face folder.
pub fn load_model_from(
    source: &ModelSource,
    options: &ModelOptions,
) -> Result<Box<dyn Model>, ModelError> {
    match source {
        ModelSource::Gguf(file) => load_model(Arc::clone(file), options),
        ModelSource::HfFolder(folder) => {
            let cfg = HfConfig::new(folder);
            let Some(model_type) = folder.model_type() else {
                return Err(cfg.error("no \"model_type\": cannot tell the architecture".into()));
            };
            match model_type {
                "llama" => Ok(Box::new(Llama::load_hf(Arc::clone(folder), options)?)),
                "gpt_oss" => Ok(Box::new(GptOss::load_hf(Arc::clone(folder), options)?)),
                "qwen3" | "qwen3_moe" => Ok(Box::new(Qwen3::load_hf(Arc::clone(folder), options)?)),
                "deepseek_v3" | "kimi_k2" => {
                    Ok(Box::new(DeepSeek2::load_hf(Arc::clone(folder), options)?))
                }
                "gemma3" | "gemma3_text" => {
                    Ok(Box::new(Gemma3::load_hf(Arc::clone(folder), options)?))
                }
                other => Err(ModelError::InFile {
                    path: folder.dir().join(wazn_formats::CONFIG_FILE),
                    source: Box::new(ModelError::UnsupportedArchitecture(format!(
                        "model_type {other}"
                    ))),
                }),
            }
        }
    }
}
