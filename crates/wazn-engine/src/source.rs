//! Where a model comes from: a GGUF file, or a Hugging Face folder (`config.json`,
//! safetensors, `tokenizer.json`). The weights go to `wazn_models`; the tokenizer and chat
//! format to `wazn_text`.

use std::path::Path;

use wazn_models::{
    embedding_support, load_model_from, EmbeddingSupport, Model, ModelOptions, ModelSource,
};
use wazn_text::ModelText;

use crate::error::EngineError;

/// A loaded model and its text side.
pub(crate) struct LoadedModel {
    pub model: Box<dyn Model>,
    pub text: ModelText,
    /// Whether the file declares a pooling, which makes it an embedding model.
    pub embedding: EmbeddingSupport,
}

/// Opens `path`: a folder is read as a Hugging Face folder, a file as GGUF.
pub(crate) fn open(path: &Path, options: &ModelOptions) -> Result<LoadedModel, EngineError> {
    let source = ModelSource::open(path)?;
    let model = load_model_from(&source, options)?;
    let embedding = embedding_support(&source)?;
    let text = match &source {
        ModelSource::Gguf(file) => ModelText::from_gguf_metadata(file.metadata())?,
        ModelSource::HfFolder(_) => ModelText::from_hf_folder(path)?,
    };
    Ok(LoadedModel {
        model,
        text,
        embedding,
    })
}
