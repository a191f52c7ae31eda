//! Where wazn keeps the models it fetches: `$WAZN_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/wazn`, else `~/.cache/wazn` (the rule `scripts/fetch-default-model`
//! follows too), with the model files in its `models/` folder.

use std::path::PathBuf;

/// File name of the default model: SmolLM2-135M-Instruct in Q4_1.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// wazn's cache folder, or `None` when no variable says where it is.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WAZN_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wazn"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wazn"))
}

/// Where the default model is (or would be, once fetched).
pub fn default_model_path() -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join("models").join(DEFAULT_MODEL_FILE))
}
