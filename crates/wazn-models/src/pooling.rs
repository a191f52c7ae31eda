//! What a model file says about sentence embeddings: how the final hidden states of an
//! input's tokens become one vector. A GGUF file says it in `{arch}.pooling_type`
//! (llama.cpp's numbering: 0 none, 1 mean, 2 cls, 3 last, 4 rank); a Hugging Face folder
//! in sentence-transformers' `modules.json`, whose Pooling module's `config.json` names
//! the mode and whose Normalize module, when one follows, makes the vector unit length.
//! A file that says neither is a language model and does not embed.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use wazn_formats::{GgufFile, HfFolder};

use crate::error::ModelError;
use crate::load::ModelSource;

/// How the hidden states of an input's tokens become its one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token of the input.
    Mean,
    /// The first token's (BERT's `[CLS]`).
    Cls,
    /// The last token's (decoder models such as Qwen3-Embedding, whose tokenizer ends
    /// every input with a special token for it).
    Last,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }
}

/// Whether, and how, a model embeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbeddingSupport {
    /// One vector per input, pooled from the final hidden states. `normalize`: the file
    /// asks for unit length (sentence-transformers' Normalize module; a GGUF file cannot
    /// say, and llama.cpp's server normalizes by default).
    Pooled { pooling: Pooling, normalize: bool },
    /// The model does not embed; the reason, as a sentence for its user.
    Unavailable(String),
}

impl EmbeddingSupport {
    pub fn pooling(&self) -> Option<Pooling> {
        match self {
            EmbeddingSupport::Pooled { pooling, .. } => Some(*pooling),
            EmbeddingSupport::Unavailable(_) => None,
        }
    }
}

/// What `source` says about embeddings. A value the file gets wrong (a pooling type out
/// of llama.cpp's range, a `modules.json` that is not a list of modules) is an error; a
/// file that declares no pooling, or one wazn does not compute, is
/// [`EmbeddingSupport::Unavailable`].
pub fn embedding_support(source: &ModelSource) -> Result<EmbeddingSupport, ModelError> {
    match source {
        ModelSource::Gguf(file) => gguf_support(file),
        ModelSource::HfFolder(folder) => hf_support(folder),
    }
}

fn unavailable(reason: impl Into<String>) -> Result<EmbeddingSupport, ModelError> {
    Ok(EmbeddingSupport::Unavailable(reason.into()))
}

fn gguf_support(file: &GgufFile) -> Result<EmbeddingSupport, ModelError> {
    let key = format!("{}.pooling_type", file.architecture()?);
    let pooling = match file.metadata().get_i64(&key)? {
        // -1 is llama.cpp's "unspecified", which a file may carry.
        None | Some(-1) => {
            return unavailable(format!(
                "the model file has no {key}: it is a language model, not an embedding model"
            ))
        }
        Some(0) => {
            return unavailable(format!(
                "{key} is 0 (none): the model gives a vector per token, not one per input"
            ))
        }
        Some(1) => Pooling::Mean,
        Some(2) => Pooling::Cls,
        Some(3) => Pooling::Last,
        Some(4) => {
            return unavailable(format!(
                "{key} is 4 (rank): the model is a reranker, which scores pairs of texts \
                 and does not embed"
            ))
        }
        Some(other) => {
            return Err(ModelError::BadHyperParameter(format!(
                "{key} = {other} (llama.cpp's pooling types are 0 none, 1 mean, 2 cls, \
                 3 last, 4 rank)"
            )))
        }
    };
    Ok(EmbeddingSupport::Pooled {
        pooling,
        normalize: true,
    })
}

/// sentence-transformers' module list, as wazn reads it.
const MODULES_FILE: &str = "modules.json";

/// One entry of `modules.json`: the module's class and its folder.
struct Module {
    kind: String,
    path: String,
}

impl Module {
    /// Whether the class is `name` (`sentence_transformers.models.Pooling` or `Pooling`).
    fn is(&self, name: &str) -> bool {
        self.kind == name || self.kind.ends_with(&format!(".{name}"))
    }
}

fn hf_support(folder: &HfFolder) -> Result<EmbeddingSupport, ModelError> {
    let modules_path = folder.dir().join(MODULES_FILE);
    if !modules_path.is_file() {
        return unavailable(
            "the model folder has no sentence-transformers modules.json: it is a language \
             model, not an embedding model",
        );
    }
    let modules = read_modules(&modules_path)?;
    let Some(at) = modules.iter().position(|m| m.is("Pooling")) else {
        return unavailable("modules.json has no Pooling module");
    };
    if let Some(other) = modules[..at].iter().find(|m| !m.is("Transformer")) {
        return unavailable(format!(
            "modules.json has a {} module before the pooling, which wazn does not run",
            other.kind
        ));
    }
    let mut normalize = false;
    for module in &modules[at + 1..] {
        if module.is("Normalize") {
            normalize = true;
        } else {
            return unavailable(format!(
                "modules.json has a {} module after the pooling, which wazn does not run",
                module.kind
            ));
        }
    }
    let config_path = folder
        .dir()
        .join(inside_folder(&modules_path, &modules[at].path)?)
        .join("config.json");
    match pooling_mode(&config_path)? {
        Ok(pooling) => Ok(EmbeddingSupport::Pooled { pooling, normalize }),
        Err(reason) => unavailable(reason),
    }
}

fn config_error(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(path, format!("cannot read it: {e}")))?;
    serde_json::from_str(&text).map_err(|e| config_error(path, format!("not valid JSON: {e}")))
}

/// The modules of `modules.json`, in their order.
fn read_modules(path: &Path) -> Result<Vec<Module>, ModelError> {
    let json = read_json(path)?;
    let Some(entries) = json.as_array() else {
        return Err(config_error(path, "not a list of modules"));
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let field = |name: &str| {
                entry[name].as_str().map(str::to_string).ok_or_else(|| {
                    config_error(path, format!("module {i} has no \"{name}\" string"))
                })
            };
            Ok(Module {
                kind: field("type")?,
                path: field("path")?,
            })
        })
        .collect()
}

/// A module folder named in `modules.json`, refused when it would leave the model folder.
fn inside_folder(modules_path: &Path, module: &str) -> Result<PathBuf, ModelError> {
    let relative = Path::new(module);
    if relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(relative.to_path_buf())
    } else {
        Err(config_error(
            modules_path,
            format!("the module path {module:?} leaves the model folder"),
        ))
    }
}

/// The mode of a Pooling module's `config.json`; `Err(reason)` for a mode wazn does not
/// compute. Old configs set one `pooling_mode_*` flag, newer ones may name the mode.
fn pooling_mode(path: &Path) -> Result<Result<Pooling, String>, ModelError> {
    let config = read_json(path)?;
    if !config.is_object() {
        return Err(config_error(path, "not a JSON object"));
    }
    if let Some(mode) = config.get("pooling_mode").filter(|v| !v.is_null()) {
        return Ok(match mode.as_str() {
            Some("mean") => Ok(Pooling::Mean),
            Some("cls") => Ok(Pooling::Cls),
            Some("lasttoken") => Ok(Pooling::Last),
            _ => Err(format!(
                "pooling mode {mode} is not one wazn computes (mean, cls, lasttoken)"
            )),
        });
    }
    let flag = |name: &str| -> Result<bool, ModelError> {
        match config.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(config_error(
                path,
                format!("\"{name}\" is {other}, not true or false"),
            )),
        }
    };
    if config.get("include_prompt") == Some(&Value::Bool(false)) {
        return Ok(Err(
            "the pooling leaves out the prompt's tokens (include_prompt false), which wazn \
             does not do"
                .into(),
        ));
    }
    let computed = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_lasttoken", Pooling::Last),
    ];
    let others = [
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
    ];
    let mut set = Vec::new();
    for (name, pooling) in computed {
        if flag(name)? {
            set.push(Ok(pooling));
        }
    }
    for name in others {
        if flag(name)? {
            set.push(Err(name));
        }
    }
    Ok(match set.as_slice() {
        [Ok(pooling)] => Ok(*pooling),
        [Err(name)] => Err(format!(
            "the pooling is {name}, which wazn does not compute"
        )),
        [] => Err("the Pooling module sets no pooling mode".into()),
        _ => Err(
            "the Pooling module sets several modes at once (their vectors concatenated), \
             which wazn does not compute"
                .into(),
        ),
    })
}
