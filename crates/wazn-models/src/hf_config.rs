//! Typed reads of a Hugging Face `config.json`, with errors that name the file and key.

use std::path::PathBuf;

use serde_json::Value;
use wazn_formats::{HfFolder, CONFIG_FILE};

use crate::error::ModelError;

/// The `config.json` of a folder.
pub(crate) struct HfConfig<'a> {
    json: &'a Value,
    path: PathBuf,
}

impl<'a> HfConfig<'a> {
    pub fn new(folder: &'a HfFolder) -> Self {
        HfConfig {
            json: folder.config(),
            path: folder.dir().join(CONFIG_FILE),
        }
    }

    /// The object under `key` (a multimodal model's `text_config`), read the same way.
    pub fn nested(&self, key: &str) -> Option<HfConfig<'a>> {
        let json = self.get(key).filter(|v| v.is_object())?;
        Some(HfConfig {
            json,
            path: self.path.clone(),
        })
    }

    pub fn error(&self, reason: String) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            reason,
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.error(format!("\"{key}\" = {v} is not a count"))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.error(format!("\"{key}\" is missing")))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        opt_f64_in(self, self.json, key)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.error(format!("\"{key}\" = {v} is not true or false"))),
        }
    }

    /// The RoPE parameters: `rope_scaling` (older configs) or `rope_parameters` (newer),
    /// when either is an object.
    pub fn rope_parameters(&self) -> Option<&'a Value> {
        ["rope_parameters", "rope_scaling"]
            .into_iter()
            .filter_map(|k| self.get(k))
            .find(|v| v.is_object())
    }

    /// `rope_theta`, at the top level or inside the RoPE parameters.
    pub fn rope_theta(&self) -> Result<Option<f64>, ModelError> {
        if let Some(theta) = self.opt_f64("rope_theta")? {
            return Ok(Some(theta));
        }
        match self.rope_parameters() {
            Some(params) => opt_f64_in(self, params, "rope_theta"),
            None => Ok(None),
        }
    }

    /// The RoPE scaling type (`rope_type`, or the legacy `type`), None for plain RoPE.
    pub fn rope_type(&self) -> Option<&'a str> {
        let params = self.rope_parameters()?;
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))?
            .as_str()?;
        (kind != "default").then_some(kind)
    }

    /// A number inside the RoPE parameters.
    pub fn rope_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.rope_parameters() {
            Some(params) => opt_f64_in(self, params, key),
            None => Ok(None),
        }
    }
}

fn opt_f64_in(cfg: &HfConfig<'_>, obj: &Value, key: &str) -> Result<Option<f64>, ModelError> {
    match obj.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| cfg.error(format!("\"{key}\" = {v} is not a number"))),
    }
}
