//! Ollama's embedding routes on [`embeddings::embed`]: `/api/embed` (`input` a string or a
//! list of strings; the vectors unit length, as Ollama makes them; an input past the context
//! cut to it unless `truncate` is false; `dimensions` keeps that many leading values, made
//! unit length again) and the older `/api/embeddings` (`prompt`; one vector as the model pools
//! it, which Ollama gives without normalising it). An empty input asks Ollama to load the model
//! and gets no vectors; here the model is loaded already.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::embeddings::{self, EmbedOptions, EmbeddingInput};
use crate::error::{ApiError, OllamaError};
use crate::ollama_request::{bool_field, kind_of, parse_object, requested_model, string_field};
use crate::routes::body_bytes;
use crate::AppState;

/// `/api/embed`'s answer; the vectors are serialized from `f32`, each as its shortest decimal.
#[derive(Serialize)]
pub struct EmbedAnswer {
    model: String,
    embeddings: Vec<Vec<f32>>,
    total_duration: u64,
    /// The model is loaded when the server starts; no request waits for it.
    load_duration: u64,
    prompt_eval_count: usize,
}

/// `/api/embeddings`' answer.
#[derive(Serialize)]
pub struct EmbeddingAnswer {
    embedding: Vec<f32>,
}

pub async fn embed(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EmbedAnswer>, OllamaError> {
    let received = Instant::now();
    let body = body_bytes(body, state.body_limit_bytes)?;
    let object = parse_object(&body)?;
    let model = requested_model(&state, &object, "model")?;
    let truncate = bool_field(&object, "truncate")?.unwrap_or(true);
    let dimensions = dimensions(object.get("dimensions"))?;
    check_unused_fields(&object)?;
    let inputs = inputs(object.get("input"))?;
    // A model that cannot embed is told so even when there is nothing to embed.
    let (_, width) = embeddings::embedding_model(&state)?;
    let (vectors, prompt_tokens) = if inputs.is_empty() {
        (Vec::new(), 0)
    } else {
        let options = EmbedOptions {
            // As Ollama: as many dimensions as the model has, or more, are all of them.
            dimensions: dimensions.filter(|&d| d < width),
            truncate,
            normalize: true,
        };
        let answer = embeddings::embed(&state, &inputs, options).await?;
        (answer.vectors, answer.prompt_tokens)
    };
    Ok(Json(EmbedAnswer {
        model,
        embeddings: vectors,
        total_duration: u64::try_from(received.elapsed().as_nanos()).unwrap_or(u64::MAX),
        load_duration: 0,
        prompt_eval_count: prompt_tokens,
    }))
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EmbeddingAnswer>, OllamaError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let object = parse_object(&body)?;
    requested_model(&state, &object, "model")?;
    check_unused_fields(&object)?;
    let prompt = string_field(&object, "prompt")?.unwrap_or_default();
    embeddings::embedding_model(&state)?;
    if prompt.is_empty() {
        return Ok(Json(EmbeddingAnswer {
            embedding: Vec::new(),
        }));
    }
    // Ollama's older route neither cuts a long prompt nor normalises the vector.
    let options = EmbedOptions {
        dimensions: None,
        truncate: false,
        normalize: false,
    };
    let inputs = [EmbeddingInput::Text(prompt.to_string())];
    let mut answer = embeddings::embed(&state, &inputs, options).await?;
    let embedding = answer
        .vectors
        .pop()
        .ok_or_else(|| ApiError::internal("the engine gave no vector for the prompt"))?;
    Ok(Json(EmbeddingAnswer { embedding }))
}

/// `input`: a string or a list of strings; absent, `null` or `""` is nothing to embed.
fn inputs(input: Option<&Value>) -> Result<Vec<EmbeddingInput>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![EmbeddingInput::Text(text.clone())]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(EmbeddingInput::Text(text.clone())),
                other => Err(ApiError::invalid_param(
                    "input",
                    format!("input[{i}] must be a string, not {}", kind_of(other)),
                )),
            })
            .collect(),
        Some(other) => Err(ApiError::invalid_param(
            "input",
            format!(
                "input must be a string or a list of strings, not {}",
                kind_of(other)
            ),
        )),
    }
}

/// `dimensions`: a whole number; 0 (Ollama's unset value) keeps every dimension.
fn dimensions(value: Option<&Value>) -> Result<Option<usize>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().map(usize::try_from) {
            Some(Ok(0)) => Ok(None),
            Some(Ok(d)) => Ok(Some(d)),
            _ => Err(ApiError::invalid_param(
                "dimensions",
                format!("dimensions is {v}; give a whole number of at least 1"),
            )),
        },
    }
}

/// `options` must be an object when given; what it sets up (`num_ctx`, `num_thread`...) is
/// the server's flags' to decide, so it is left without effect, as the chat routes leave it.
/// `keep_alive` is accepted too: the model stays loaded while the server runs.
fn check_unused_fields(object: &Map<String, Value>) -> Result<(), ApiError> {
    match object.get("options") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(ApiError::invalid_param(
            "options",
            format!("options must be an object, not {}", kind_of(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_is_a_string_or_strings_and_empty_is_nothing() {
        let text = |s: &str| EmbeddingInput::Text(s.into());
        assert_eq!(inputs(Some(&json!("a"))).unwrap(), [text("a")]);
        assert_eq!(
            inputs(Some(&json!(["a", ""]))).unwrap(),
            [text("a"), text("")]
        );
        assert!(inputs(None).unwrap().is_empty());
        assert!(inputs(Some(&json!(null))).unwrap().is_empty());
        assert!(inputs(Some(&json!(""))).unwrap().is_empty());
        assert!(inputs(Some(&json!([]))).unwrap().is_empty());
        for bad in [json!(["a", 1]), json!([[1, 2]]), json!(7), json!({"a": 1})] {
            let err = inputs(Some(&bad)).expect_err(&bad.to_string());
            assert_eq!(err.status.as_u16(), 400);
            assert_eq!(err.param.as_deref(), Some("input"));
        }
    }

    #[test]
    fn dimensions_are_a_whole_number_and_zero_keeps_them_all() {
        assert_eq!(dimensions(None).unwrap(), None);
        assert_eq!(dimensions(Some(&json!(0))).unwrap(), None);
        assert_eq!(dimensions(Some(&json!(16))).unwrap(), Some(16));
        for bad in [json!(-1), json!(2.5), json!("16")] {
            assert!(dimensions(Some(&bad)).is_err(), "{bad}");
        }
    }
}
