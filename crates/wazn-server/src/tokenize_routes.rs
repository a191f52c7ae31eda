//! vLLM's tokenizer routes: `POST /tokenize`, `POST /detokenize` and `GET /tokenizer_info`.
//! Clients that count tokens before they ask for log-probabilities use them instead of a
//! tokenizer of their own (lm-evaluation-harness's `local-completions` looks for them and
//! then needs no Hugging Face tokenizer), so the ids they send are the server's own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use wazn_text::ChatFormat;

use crate::error::ApiError;
use crate::routes::{body_bytes, check_model_name};
use crate::wire;
use crate::AppState;

#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    /// BOS (and EOS) as the model adds them to a prompt (vLLM's default: true).
    #[serde(default = "yes")]
    add_special_tokens: bool,
    #[serde(default)]
    return_token_strs: bool,
    messages: Option<Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<i64>,
}

/// `{"count", "max_model_len", "tokens", "token_strs"}` of a prompt, as `/v1/completions`
/// reads a string prompt (control-token texts are their tokens).
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: TokenizeRequest = wire::parse_body(&body)?;
    check_model_name(&state, request.model.as_deref())?;
    if request.messages.is_some() {
        return Err(ApiError::invalid_param(
            "messages",
            "only prompt is supported here; render the chat first",
        ));
    }
    let Some(prompt) = request.prompt else {
        return Err(ApiError::invalid_param("prompt", "prompt is missing"));
    };
    let ids = state
        .tokenizer
        .encode(&prompt, request.add_special_tokens, true)
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
    let token_strs = request.return_token_strs.then(|| {
        ids.iter()
            .map(|&id| {
                state
                    .tokenizer
                    .token_text(id)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({
        "count": ids.len(),
        "max_model_len": state.n_ctx,
        "tokens": ids,
        "token_strs": token_strs,
    })))
}

/// `{"prompt"}`: the text of token ids.
pub async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: DetokenizeRequest = wire::parse_body(&body)?;
    check_model_name(&state, request.model.as_deref())?;
    let n_vocab = state.tokenizer.vocab_size();
    let ids = request
        .tokens
        .iter()
        .map(|&id| {
            u32::try_from(id)
                .ok()
                .filter(|&id| (id as usize) < n_vocab)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "tokens",
                        format!("token {id} is outside the vocabulary (0..{n_vocab})"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = state
        .tokenizer
        .decode(&ids, false)
        .map_err(|e| ApiError::invalid_param("tokens", e.to_string()))?;
    Ok(Json(json!({ "prompt": text })))
}

/// The tokenizer's special tokens and chat template, under Hugging Face's names.
pub async fn tokenizer_info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let tokenizer = &state.tokenizer;
    let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id));
    let chat_template = match &state.chat_format {
        Some(ChatFormat::Template(template)) => Some(template.source().to_string()),
        _ => None,
    };
    Json(json!({
        "tokenizer_class": "wazn",
        "bos_token": text(tokenizer.bos_id()),
        "eos_token": text(tokenizer.eos_id()),
        "pad_token": Value::Null,
        "add_bos_token": tokenizer.adds_bos(),
        "vocab_size": tokenizer.vocab_size(),
        "model_max_length": state.n_ctx,
        "chat_template": chat_template,
    }))
}
