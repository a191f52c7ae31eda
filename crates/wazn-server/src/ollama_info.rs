//! Ollama's routes that describe rather than generate: `/api/version`, `/api/tags` (the
//! models there are), `/api/ps` (the models loaded), `/api/show` (one model's template,
//! parameters, details, metadata and capabilities), and the model management routes (pull,
//! push, create, copy, delete), which this server, serving one model it was started with,
//! answers with a clear error.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use serde_json::{json, Value};
use wazn_engine::EmbeddingSupport;
use wazn_text::tool_calls::ToolFormat;
use wazn_text::ChatFormat;

use crate::error::{ApiError, OllamaError};
use crate::model_facts::{identity_digest, parameter_size};
use crate::ollama_request::{parse_object, requested_model};
use crate::routes::body_bytes;
use crate::AppState;

/// wazn's own version: clients that check Ollama's version for a feature see which server
/// they talk to instead of a version it does not have.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// The one served model.
pub async fn tags(State(state): State<Arc<AppState>>) -> Json<Value> {
    let facts = &state.model_facts;
    Json(json!({
        "models": [{
            "name": state.model_id,
            "model": state.model_id,
            "modified_at": rfc3339(facts.modified()),
            "size": facts.size_bytes(),
            "digest": identity_digest(&state.model_id, facts),
            "details": details(&state),
        }],
    }))
}

/// The served model, loaded while the server runs: it never expires, and its weights are in
/// main memory (`size_vram` 0).
pub async fn ps(State(state): State<Arc<AppState>>) -> Json<Value> {
    let facts = &state.model_facts;
    Json(json!({
        "models": [{
            "name": state.model_id,
            "model": state.model_id,
            "size": facts.size_bytes(),
            "digest": identity_digest(&state.model_id, facts),
            "details": details(&state),
            "expires_at": NEVER,
            "size_vram": 0,
            "context_length": state.n_ctx,
        }],
    }))
}

/// The time given for "never" (Ollama's clients read `expires_at` as a date).
const NEVER: &str = "9999-12-31T23:59:59Z";

pub async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OllamaError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let object = parse_object(&body)?;
    // Older clients name the model `name`.
    let field = if !object.contains_key("model") && object.contains_key("name") {
        "name"
    } else {
        "model"
    };
    let model = requested_model(&state, &object, field)?;
    let facts = &state.model_facts;
    let template = match &state.chat_format {
        Some(ChatFormat::Template(template)) => template.source().to_string(),
        _ => String::new(),
    };
    // The settings the server runs the model with, as Ollama writes a Modelfile's parameters.
    let parameters = format!("num_ctx {}", state.n_ctx);
    let modelfile = format!("FROM {model}\nPARAMETER {parameters}\n");
    Ok(Json(json!({
        "modelfile": modelfile,
        "parameters": parameters,
        "template": template,
        "details": details(&state),
        "model_info": Value::Object(facts.model_info()),
        "capabilities": capabilities(&state),
        "modified_at": rfc3339(facts.modified()),
    })))
}

/// `details` of the served model: format, family, size in parameters, quantization.
fn details(state: &AppState) -> Value {
    let facts = &state.model_facts;
    let file = facts.file();
    json!({
        "parent_model": "",
        "format": file.map_or("gguf", |f| f.format),
        "family": facts.architecture,
        "families": [facts.architecture],
        "parameter_size": file.map_or_else(String::new, |f| parameter_size(f.parameter_count)),
        "quantization_level": file.map_or("", |f| f.quantization_level.as_str()),
    })
}

/// What the model can do, in Ollama's words: `completion` always; `tools` when its chat
/// template shows it tools or its vocabulary has a call format's opening token; `thinking`
/// when it reasons (harmony, or `<think>` blocks); `insert` when it has fill-in-the-middle
/// tokens; `embedding` when its file declares a pooling (`/api/embed` answers).
fn capabilities(state: &AppState) -> Vec<&'static str> {
    let mut capabilities = vec!["completion"];
    let tools = match &state.chat_format {
        Some(ChatFormat::Harmony) => true,
        Some(ChatFormat::Template(template)) => {
            template.reads_tools()
                || ToolFormat::ALL
                    .iter()
                    .any(|f| f.trigger_token(&state.tokenizer).is_some())
        }
        None => false,
    };
    if tools {
        capabilities.push("tools");
    }
    if state.thinks || matches!(state.chat_format, Some(ChatFormat::Harmony)) {
        capabilities.push("thinking");
    }
    if state.tokenizer.fim_tokens().is_some() {
        capabilities.push("insert");
    }
    if matches!(state.embedding, EmbeddingSupport::Pooled { .. }) {
        capabilities.push("embedding");
    }
    capabilities
}

/// Pull, push, create, copy and delete: this server serves the model it was started with.
pub async fn manage_models(State(state): State<Arc<AppState>>, uri: Uri) -> OllamaError {
    OllamaError(ApiError::with_status(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{} is not supported: this server does not download or manage models; it serves {}",
            uri.path(),
            state.model_id
        ),
    ))
}

/// `t` as RFC 3339 in UTC with nanoseconds, as Ollama writes its times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
    }
}
