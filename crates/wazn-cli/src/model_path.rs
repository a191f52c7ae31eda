//! Where the model comes from: `--model`, or the default model in wazn's cache.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// wazn's cache folder: `$WAZN_CACHE_DIR`, else `$XDG_CACHE_HOME/wazn`, else `~/.cache/wazn`
/// (the same rule as `scripts/fetch-default-model`).
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WAZN_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wazn"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wazn"))
}

/// The path of the default model, whether or not it is there.
pub fn default_model_path() -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join("models").join(DEFAULT_MODEL_FILE))
}

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
