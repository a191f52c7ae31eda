//! OpenAI's embeddings route, `POST /v1/embeddings`: `input` as a string, a list of
//! strings, a list of token ids or a list of lists of token ids; the vectors as lists of
//! floats or, with `encoding_format: "base64"`, as the base64 of their little-endian f32
//! bytes (what the openai SDK asks for by default and decodes); `dimensions` to shorten
//! them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::embeddings::{embed, EmbedOptions, EmbeddingInput};
use crate::error::ApiError;
use crate::routes::{body_bytes, check_model_name};
use crate::wire;
use crate::AppState;

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    input: Option<Value>,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<Value>,
}

/// The answer: serialized from `f32` values, so each is written as its shortest decimal.
#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Encoded,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Encoded {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

const SHAPE: &str = "input must be a string, a list of strings, a list of token ids, or a \
                     list of lists of token ids";

pub async fn create_embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: EmbeddingRequest = wire::parse_body(&body)?;
    check_model_name(&state, request.model.as_deref())?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format is {other:?}; use \"float\" or \"base64\""),
            ))
        }
    };
    let dimensions = match &request.dimensions {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "dimensions",
                        format!("dimensions is {v}; give a whole number of at least 1"),
                    )
                })?,
        ),
    };
    let inputs = parse_inputs(request.input.as_ref())?;
    let embeddings = embed(&state, &inputs, EmbedOptions::unit(dimensions)).await?;
    let data = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingData {
            object: "embedding",
            index,
            embedding: if base64 {
                Encoded::Base64(base64_f32(&vector))
            } else {
                Encoded::Float(vector)
            },
        })
        .collect();
    let answer = EmbeddingList {
        object: "list",
        data,
        model: &state.model_id,
        usage: Usage {
            prompt_tokens: embeddings.prompt_tokens,
            total_tokens: embeddings.prompt_tokens,
        },
    };
    Ok(Json(answer).into_response())
}

/// The inputs `input` gives, in order.
fn parse_inputs(input: Option<&Value>) -> Result<Vec<EmbeddingInput>, ApiError> {
    let Some(input) = input.filter(|v| !v.is_null()) else {
        return Err(ApiError::invalid_param(
            "input",
            format!("input is missing; {SHAPE}"),
        ));
    };
    Ok(match input {
        Value::String(text) => vec![EmbeddingInput::Text(text.clone())],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid_param(
                "input",
                "input is an empty list; give at least one input",
            ))
        }
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|item| EmbeddingInput::Text(item.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![EmbeddingInput::Ids(token_ids("input", items)?)]
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let ids = item.as_array().map(Vec::as_slice).unwrap_or_default();
                if !ids.iter().all(Value::is_number) {
                    return Err(ApiError::invalid_param("input", SHAPE));
                }
                token_ids(&format!("input[{i}]"), ids).map(EmbeddingInput::Ids)
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::invalid_param("input", SHAPE)),
    })
}

/// Token ids written as JSON numbers: whole and not negative (the vocabulary is checked
/// when they are embedded).
fn token_ids(name: &str, items: &[Value]) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "input",
                        format!("{name}: {v} is not a token id (a whole number from 0)"),
                    )
                })
        })
        .collect()
}

/// The base64 of the vector's little-endian f32 bytes, as the openai SDK decodes it.
fn base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_input_shape_is_read_and_others_are_refused() {
        let parse = |v: Value| parse_inputs(Some(&v));
        assert_eq!(
            parse(json!("a")).unwrap(),
            [EmbeddingInput::Text("a".into())]
        );
        assert_eq!(
            parse(json!(["a", "b"])).unwrap(),
            [
                EmbeddingInput::Text("a".into()),
                EmbeddingInput::Text("b".into())
            ]
        );
        assert_eq!(
            parse(json!([1, 2])).unwrap(),
            [EmbeddingInput::Ids(vec![1, 2])]
        );
        assert_eq!(
            parse(json!([[1], [2, 3]])).unwrap(),
            [
                EmbeddingInput::Ids(vec![1]),
                EmbeddingInput::Ids(vec![2, 3])
            ]
        );
        for bad in [
            json!([]),
            json!(["a", 1]),
            json!([[1], ["a"]]),
            json!([-1]),
            json!([1.5]),
            json!([4294967296u64]),
            json!({"text": "a"}),
            json!(7),
        ] {
            let err = parse(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(err.status.as_u16(), 400);
            assert_eq!(err.param.as_deref(), Some("input"));
        }
        assert!(parse_inputs(None).is_err());
        assert!(parse_inputs(Some(&Value::Null)).is_err());
    }

    #[test]
    fn base64_is_the_little_endian_f32_bytes() {
        // 1.0 = 00 00 80 3f, -2.0 = 00 00 00 c0
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }
}
