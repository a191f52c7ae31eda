//! Picks the architecture of a model file.

use std::sync::Arc;

use wazn_formats::GgufFile;

use crate::error::ModelError;
use crate::llama::Llama;
use crate::{Model, ModelOptions};

/// `general.architecture` values wazn can run.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Loads the model a GGUF file describes.
pub fn load_model(
    file: Arc<GgufFile>,
    options: &ModelOptions,
) -> Result<Box<dyn Model>, ModelError> {
    let arch = file.architecture()?.to_string();
    match arch.as_str() {
        "llama" => Ok(Box::new(Llama::load(file, options)?)),
        _ => Err(ModelError::UnsupportedArchitecture(arch)),
    }
}
