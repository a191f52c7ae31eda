//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status code an OpenAI client expects for each kind; the same errors in the shapes of
//! Anthropic's Messages API and of Ollama, for their routes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after_s: None,
        }
    }

    /// A request that cannot be served as written (400).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// A bad value of one field (400, naming the field).
    pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
        let mut err = ApiError::bad_request(message);
        err.param = Some(param.to_string());
        err
    }

    pub fn unauthorized() -> ApiError {
        let mut err = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or invalid API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        );
        err.code = Some("invalid_api_key");
        err
    }

    pub fn model_not_found(model: &str, served: &str) -> ApiError {
        let mut err = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model `{model}` does not exist; this server serves `{served}`"),
        );
        err.param = Some("model".into());
        err.code = Some("model_not_found");
        err
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no route for {path}"),
        )
    }

    /// The queue is full: come back later (429 with Retry-After).
    pub fn busy(message: impl Into<String>) -> ApiError {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "server_busy", message);
        err.retry_after_s = Some(1);
        err
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        err.retry_after_s = Some(1);
        err
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// An error with a status chosen by the caller (e.g. 413 from a body limit).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(status, "invalid_request_error", message)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.to_json();
        with_retry_after(
            (self.status, Json(body)).into_response(),
            self.retry_after_s,
        )
    }
}

/// An error answered in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`,
/// the type named after the status as the Messages API names it.
#[derive(Debug)]
pub struct AnthropicError(pub ApiError);

impl AnthropicError {
    pub fn to_json(&self) -> serde_json::Value {
        let kind = match self.0.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            // A bad request, a method a route does not take, or another mistake of the client's.
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        json!({
            "type": "error",
            "error": { "type": kind, "message": self.0.message },
        })
    }
}

impl From<ApiError> for AnthropicError {
    fn from(err: ApiError) -> Self {
        AnthropicError(err)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let body = self.to_json();
        with_retry_after(
            (self.0.status, Json(body)).into_response(),
            self.0.retry_after_s,
        )
    }
}

/// An error answered in Ollama's shape: `{"error": "message"}`.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(err: ApiError) -> Self {
        OllamaError(err)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0.message });
        with_retry_after(
            (self.0.status, Json(body)).into_response(),
            self.0.retry_after_s,
        )
    }
}

fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
