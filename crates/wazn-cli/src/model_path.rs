//! Where the model comes from: `--model`, or the default model in wazn's cache.

use std::path::PathBuf;

use anyhow::{bail, Result};
use wazn_formats::model_cache::default_model_path;

/// The model to load: the one given, or the default one if it has been fetched.
pub fn resolve(model: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = model {
        return Ok(path);
    }
    match default_model_path() {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => bail!(
            "no --model given and the default model is not at {}; fetch it with scripts/fetch-default-model",
            path.display()
        ),
        None => bail!("no --model given and no cache folder (set HOME or WAZN_CACHE_DIR)"),
    }
}
