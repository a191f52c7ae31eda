//! What a model's files say about its text: the tokenizer and the chat format, from a GGUF
//! file's metadata or from a Hugging Face folder.
//!
//! gpt-oss is recognised by its architecture (`general.architecture = "gpt-oss"`, or
//! `model_type = "gpt_oss"` in `config.json`) and gets the built-in o200k_harmony tokenizer and
//! harmony, whatever else the files say: a GGUF file's end-of-generation set would include
//! `<|end|>`, which closes every message of a harmony turn, while harmony stops only at
//! `<|return|>` and `<|call|>`.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use wazn_formats::Metadata;

use crate::{ChatFormat, ChatTemplate, HfSpecialTokens, TextError, Tokenizer};

/// The tokenizer and chat format of a model (no chat format: plain completion only).
#[derive(Debug)]
pub struct ModelText {
    pub tokenizer: Tokenizer,
    pub chat_format: Option<ChatFormat>,
}

impl ModelText {
    /// From a GGUF file's metadata.
    pub fn from_gguf_metadata(md: &Metadata) -> Result<ModelText, TextError> {
        if md.get_str("general.architecture")? == Some("gpt-oss") {
            return ModelText::harmony();
        }
        let tokenizer = Tokenizer::from_gguf_metadata(md)?;
        let chat_format =
            ChatTemplate::from_metadata(md, &tokenizer)?.map(|t| ChatFormat::Template(Arc::new(t)));
        Ok(ModelText {
            tokenizer,
            chat_format,
        })
    }

    /// From a Hugging Face folder: `config.json` (`model_type`), and unless the model is
    /// gpt-oss, `tokenizer.json`, `tokenizer_config.json` (BOS/EOS, `add_bos_token`,
    /// `chat_template`, or a `chat_template.jinja` file) and `generation_config.json`
    /// (`eos_token_id`: the end-of-generation ids).
    pub fn from_hf_folder(dir: &Path) -> Result<ModelText, TextError> {
        let config = read_json(dir, "config.json")?
            .ok_or_else(|| TextError::Build(format!("{} has no config.json", dir.display())))?;
        if config.get("model_type").and_then(Value::as_str) == Some("gpt_oss") {
            return ModelText::harmony();
        }
        let json_path = dir.join("tokenizer.json");
        let json = std::fs::read_to_string(&json_path)
            .map_err(|e| TextError::Build(format!("cannot read {}: {e}", json_path.display())))?;
        let tok_config = read_json(dir, "tokenizer_config.json")?.unwrap_or(Value::Null);
        let generation = read_json(dir, "generation_config.json")?.unwrap_or(Value::Null);
        let special = HfSpecialTokens {
            bos_token: token_text(&tok_config["bos_token"]),
            eos_token: token_text(&tok_config["eos_token"]),
            add_bos: tok_config["add_bos_token"].as_bool(),
            add_eos: tok_config["add_eos_token"].as_bool(),
            eog_ids: ids_of(&generation["eos_token_id"])?,
        };
        let tokenizer = Tokenizer::from_tokenizer_json(&json, &special)?;
        let template = match chat_template_source(dir, &tok_config)? {
            None => None,
            Some(source) => {
                let bos = special.bos_token.as_deref().unwrap_or_default();
                let eos = special.eos_token.as_deref().unwrap_or_default();
                Some(ChatFormat::Template(Arc::new(ChatTemplate::new(
                    &source, bos, eos,
                )?)))
            }
        };
        Ok(ModelText {
            tokenizer,
            chat_format: template,
        })
    }

    /// o200k_harmony and harmony (gpt-oss).
    pub fn harmony() -> Result<ModelText, TextError> {
        Ok(ModelText {
            tokenizer: Tokenizer::o200k_harmony()?,
            chat_format: Some(ChatFormat::Harmony),
        })
    }
}

/// A JSON file of the folder, if it is there.
fn read_json(dir: &Path, name: &str) -> Result<Option<Value>, TextError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TextError::Build(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TextError::Build(format!("{} is not valid JSON: {e}", path.display())))
}

/// `"<s>"` or `{"content": "<s>", ...}` (an AddedToken as transformers writes it).
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

/// `eos_token_id`: one id or a list of them.
fn ids_of(value: &Value) -> Result<Vec<u32>, TextError> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                TextError::Build(format!(
                    "generation_config.json eos_token_id has {v}, which is not a token id"
                ))
            })
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// `chat_template` of `tokenizer_config.json` (a string, or a list of named templates of
/// which the one named "default" is taken), else the folder's `chat_template.jinja`.
fn chat_template_source(dir: &Path, tok_config: &Value) -> Result<Option<String>, TextError> {
    match &tok_config["chat_template"] {
        Value::String(s) => return Ok(Some(s.clone())),
        Value::Array(named) => {
            let default = named
                .iter()
                .find(|t| t["name"].as_str() == Some("default"))
                .and_then(|t| t["template"].as_str());
            if let Some(source) = default {
                return Ok(Some(source.to_string()));
            }
        }
        _ => {}
    }
    let path = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&path) {
        Ok(source) => Ok(Some(source)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TextError::Build(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
