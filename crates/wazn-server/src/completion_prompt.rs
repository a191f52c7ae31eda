//! The `prompt` of a text completion, as OpenAI and vLLM take it: a string, a list of
//! strings, a list of token ids, or a list of lists of token ids (several prompts answer
//! with their choices one prompt after the other). A `suffix` makes each prompt a
//! fill-in-the-middle prompt where the vocabulary has the tokens for it.

use serde_json::Value;
use wazn_text::Tokenizer;

use crate::error::ApiError;
use crate::AppState;

/// One prompt, ready for the engine.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// What `echo` puts in front of the answer: the prompt as written, or its ids decoded.
    pub text: String,
}

impl Prompt {
    /// A prompt that is never echoed (chats).
    pub fn ids(ids: Vec<u32>) -> Prompt {
        Prompt {
            ids,
            text: String::new(),
        }
    }
}

/// A prompt as the request wrote it.
enum Written<'a> {
    Text(&'a str),
    Ids(Vec<u32>),
}

const SHAPE: &str = "prompt must be a string, a list of strings, a list of token ids, \
                     or a list of lists of token ids";

/// The prompts of a completion request, each with the suffix, if any, filled in.
pub fn completion_prompts(
    state: &AppState,
    prompt: &Value,
    suffix: Option<&str>,
) -> Result<Vec<Prompt>, ApiError> {
    // Ids the model has and the tokenizer can spell.
    let n_vocab = state.n_vocab.min(state.tokenizer.vocab_size());
    let written = match prompt {
        Value::String(text) => vec![Written::Text(text)],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid_param(
                "prompt",
                "prompt is an empty list; give at least one prompt or token",
            ))
        }
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|item| Written::Text(item.as_str().unwrap_or_default()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![Written::Ids(token_ids("prompt", items, n_vocab)?)]
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let ids = item.as_array().map(Vec::as_slice).unwrap_or_default();
                let name = format!("prompt[{i}]");
                if ids.is_empty() {
                    return Err(ApiError::invalid_param(
                        "prompt",
                        format!("{name} is an empty list of token ids"),
                    ));
                }
                if !ids.iter().all(Value::is_number) {
                    return Err(ApiError::invalid_param("prompt", SHAPE));
                }
                token_ids(&name, ids, n_vocab).map(Written::Ids)
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::invalid_param("prompt", SHAPE)),
    };
    let tokenizer = &state.tokenizer;
    let suffix = suffix.filter(|s| !s.is_empty());
    written
        .into_iter()
        .map(|w| match suffix {
            None => plain(tokenizer, w),
            Some(suffix) => fill_in_the_middle(tokenizer, w, suffix),
        })
        .collect()
}

/// Token ids written as JSON numbers: whole, not negative, in the vocabulary.
fn token_ids(name: &str, items: &[Value], n_vocab: usize) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .map(|v| match v.as_u64() {
            Some(id) if id < n_vocab as u64 => Ok(id as u32),
            Some(id) => Err(ApiError::invalid_param(
                "prompt",
                format!("{name}: token {id} is outside the vocabulary (0..{n_vocab})"),
            )),
            None => Err(ApiError::invalid_param(
                "prompt",
                format!("{name}: {v} is not a token id (a whole number from 0 to {n_vocab} - 1)"),
            )),
        })
        .collect()
}

fn encode(tokenizer: &Tokenizer, text: &str, add_special: bool) -> Result<Vec<u32>, ApiError> {
    tokenizer
        .encode(text, add_special, true)
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))
}

fn plain(tokenizer: &Tokenizer, written: Written<'_>) -> Result<Prompt, ApiError> {
    match written {
        Written::Text(text) => Ok(Prompt {
            ids: encode(tokenizer, text, true)?,
            text: text.to_string(),
        }),
        Written::Ids(ids) => {
            let text = tokenizer
                .decode(&ids, false)
                .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))?;
            Ok(Prompt { ids, text })
        }
    }
}

/// `PRE prefix SUF suffix MID` (llama.cpp's order, the one these models were trained on),
/// with BOS in front of a written prefix where the model wants one.
fn fill_in_the_middle(
    tokenizer: &Tokenizer,
    written: Written<'_>,
    suffix: &str,
) -> Result<Prompt, ApiError> {
    let fim = tokenizer.fim_tokens().ok_or_else(|| {
        ApiError::invalid_param(
            "suffix",
            "suffix needs a model with fill-in-the-middle tokens (such as <fim_prefix>, \
             <fim_suffix> and <fim_middle>); this model's vocabulary has none",
        )
    })?;
    let (mut ids, prefix, text) = match written {
        Written::Text(text) => {
            let bos = match (tokenizer.adds_bos(), tokenizer.bos_id()) {
                (true, Some(bos)) => vec![bos],
                _ => Vec::new(),
            };
            (bos, encode(tokenizer, text, false)?, text.to_string())
        }
        Written::Ids(ids) => (Vec::new(), ids, String::new()),
    };
    ids.push(fim.prefix);
    ids.extend(prefix);
    ids.push(fim.suffix);
    ids.extend(encode(tokenizer, suffix, false)?);
    ids.push(fim.middle);
    Ok(Prompt { ids, text })
}
