//! wazn's OpenAI-compatible HTTP server (axum): routes, wire types, server-sent
//! events, errors, auth and metrics. The model runs on the engine thread of
//! `wazn_engine::service`; this crate only talks to it over channels.

mod anthropic;
mod anthropic_blocks;
mod anthropic_request;
mod chat_run;
mod completion_echo;
mod completion_prompt;
mod completions_logprobs;
mod cors;
pub mod embeddings;
mod embeddings_route;
pub mod error;
mod generate;
mod harmony_answer;
pub mod harmony_request;
mod listener;
pub mod metrics;
pub mod model_facts;
mod ollama;
mod ollama_embed;
mod ollama_info;
mod ollama_request;
mod preparing;
pub mod response_store;
mod responses;
mod responses_output;
mod routes;
mod structured;
mod text_reply;
mod tls;
mod tokenize_routes;
mod tool_request;
pub mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tracing::Instrument;
use wazn_engine::{
    EmbeddingSupport, Engine, EngineHandle, GrammarCompiler, GrammarError, ServiceOptions,
};
use wazn_text::harmony::ReasoningEffort;
use wazn_text::think;
use wazn_text::tool_calls::ToolFormat;
use wazn_text::{ChatFormat, Tokenizer};

pub use crate::cors::{CorsOriginError, CorsOrigins};
pub use crate::listener::HttpLimits;
use crate::preparing::PrepareSlots;
pub use crate::tls::{TlsConfig, TlsError};

use crate::error::{AnthropicError, ApiError, OllamaError};
use crate::metrics::Metrics;
use crate::model_facts::ModelFacts;
use crate::response_store::ResponseStore;

/// Largest request body accepted, in bytes.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 1 << 20;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The name `/v1/models` lists and requests must use.
    pub model_id: String,
    /// Required as `Authorization: Bearer <key>` (or `x-api-key: <key>`) on every route but
    /// `/health`.
    pub api_key: Option<String>,
    /// Sequences computed together at most.
    pub max_concurrent: usize,
    /// Requests that may wait for a place; more get 429.
    pub max_queued: usize,
    pub body_limit_bytes: usize,
    /// Harmony models: the reasoning effort of requests that give no `reasoning_effort`.
    pub reasoning_effort: ReasoningEffort,
    /// How the model writes function calls; `None`: told from its chat template and
    /// vocabulary.
    pub tool_format: Option<ToolFormat>,
    /// Web origins whose pages may call the server (CORS); none by default.
    pub cors_origins: CorsOrigins,
}

/// What every handler shares.
pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    /// The model's chat template or harmony; `None`: completions only.
    pub chat_format: Option<ChatFormat>,
    pub model_id: String,
    pub n_ctx: usize,
    pub n_vocab: usize,
    /// Sequences that may be in flight at once: running plus waiting.
    pub max_sequences: usize,
    pub api_key: Option<String>,
    pub metrics: Metrics,
    pub body_limit_bytes: usize,
    pub reasoning_effort: ReasoningEffort,
    /// The model writes its reasoning between `<think>` and `</think>` (both are tokens
    /// of its vocabulary): chat answers give it as `reasoning_content`.
    pub thinks: bool,
    /// How the model writes function calls (template models).
    pub tool_format: ToolFormat,
    /// Unix seconds at start, reported as the model's `created`.
    pub created: u64,
    /// The vocabulary prepared for constrained decoding, on the first request that needs it.
    pub grammars: OnceLock<Result<Arc<GrammarCompiler>, GrammarError>>,
    /// Recent Responses API conversations, for `previous_response_id`.
    pub responses: ResponseStore,
    /// What the routes that describe the model tell of it.
    pub model_facts: ModelFacts,
    /// Whether the model embeds (its file declares a pooling), and how.
    pub embedding: EmbeddingSupport,
    /// The width of the model's final hidden states, the vectors it embeds into.
    pub embedding_width: Option<usize>,
    /// Web origins whose pages may call the server.
    pub cors_origins: CorsOrigins,
    /// Renders and tokenizings running at once, bounded.
    pub(crate) preparing: PrepareSlots,
    next_id: AtomicU64,
}

impl AppState {
    /// Starts the engine thread around `engine`.
    pub fn new(engine: Engine, options: ServerOptions) -> std::io::Result<Arc<AppState>> {
        let tokenizer = engine.shared_tokenizer();
        let thinks = writes_think_blocks(&tokenizer);
        let chat_format = engine.chat_format().cloned();
        let template_source = engine.chat_template().map(|t| t.source().to_string());
        let tool_format = options
            .tool_format
            .unwrap_or_else(|| ToolFormat::detect(template_source.as_deref(), &tokenizer));
        let n_ctx = engine.options().n_ctx;
        let n_vocab = engine.model().info().n_vocab;
        let model_facts = ModelFacts::of_engine(&engine);
        let embedding = engine.embedding_support().clone();
        let embedding_width = engine.model().hidden_width();
        let handle = EngineHandle::spawn(
            engine,
            ServiceOptions {
                max_running: options.max_concurrent,
                max_queued: options.max_queued,
            },
        )?;
        Ok(Arc::new(AppState {
            engine: handle,
            tokenizer,
            chat_format,
            model_id: options.model_id,
            n_ctx,
            n_vocab,
            max_sequences: options.max_concurrent.max(1) + options.max_queued,
            api_key: options.api_key,
            metrics: Metrics::default(),
            body_limit_bytes: options.body_limit_bytes,
            reasoning_effort: options.reasoning_effort,
            thinks,
            tool_format,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            grammars: OnceLock::new(),
            responses: ResponseStore::default(),
            model_facts,
            embedding,
            embedding_width,
            cors_origins: options.cors_origins,
            preparing: PrepareSlots::for_this_machine(),
            next_id: AtomicU64::new(1),
        }))
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether `<think>` and `</think>` are each one token of the vocabulary, as in the
/// models that reason in such blocks.
fn writes_think_blocks(tokenizer: &Tokenizer) -> bool {
    [think::THINK_OPEN, think::THINK_CLOSE]
        .iter()
        .all(|tag| tokenizer.single_token(tag).is_some())
}

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    // Outermost, so that a browser's preflight (which carries no API key) is answered
    // before the key is checked.
    let cors = state.cors_origins.layer();
    let routes = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/responses", post(responses::create_response))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/embeddings", post(embeddings_route::create_embeddings))
        .route("/v1/models", get(routes::models))
        .route("/tokenize", post(tokenize_routes::tokenize))
        .route("/detokenize", post(tokenize_routes::detokenize))
        .route("/tokenizer_info", get(tokenize_routes::tokenizer_info))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama_embed::embed))
        .route("/api/embeddings", post(ollama_embed::embeddings))
        .route("/api/tags", get(ollama_info::tags))
        .route("/api/ps", get(ollama_info::ps))
        .route("/api/show", post(ollama_info::show))
        .route("/api/version", get(ollama_info::version))
        .route("/api/pull", post(ollama_info::manage_models))
        .route("/api/push", post(ollama_info::manage_models))
        .route("/api/create", post(ollama_info::manage_models))
        .route("/api/copy", post(ollama_info::manage_models))
        .route(
            "/api/delete",
            axum::routing::delete(ollama_info::manage_models),
        )
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth_and_count,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit_bytes))
        .with_state(state);
    match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
}

/// Checks the API key (every route but `/health`) and counts the answer by route
/// and status.
async fn auth_and_count(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let route = match path.as_str() {
        "/v1/chat/completions"
        | "/v1/completions"
        | "/v1/responses"
        | "/v1/messages"
        | "/v1/messages/count_tokens"
        | "/v1/embeddings"
        | "/v1/models"
        | "/health"
        | "/metrics"
        | "/tokenize"
        | "/detokenize"
        | "/tokenizer_info"
        | "/api/chat"
        | "/api/generate"
        | "/api/embed"
        | "/api/embeddings"
        | "/api/tags"
        | "/api/ps"
        | "/api/show"
        | "/api/version" => path.as_str(),
        _ => "other",
    }
    .to_string();
    let method = request.method().clone();
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id);
    let mut unanswered = Unanswered {
        state: &state,
        route: &route,
        method: &method,
        path: &path,
        span: &span,
        started: Instant::now(),
        answered: false,
    };
    let response = if path != "/health" && !authorized(&state, &request) {
        error_in_route_shape(&path, ApiError::unauthorized())
    } else {
        next.run(request).instrument(span.clone()).await
    };
    unanswered.answered = true;
    let status = response.status().as_u16();
    state.metrics.record_request(&route, status);
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status,
            ms = unanswered.started.elapsed().as_millis() as u64,
            "request"
        )
    });
    response
}

/// Numbers the requests in the log, so a route's warnings can be told apart by request.
static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// The status counted for a request whose client went away before its answer (nginx's).
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Counts and logs a request whose client went away before it was answered: its future is
/// dropped at the await, so nothing after it runs.
struct Unanswered<'a> {
    state: &'a AppState,
    route: &'a str,
    method: &'a axum::http::Method,
    path: &'a str,
    span: &'a tracing::Span,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.state
            .metrics
            .record_request(self.route, CLIENT_CLOSED_REQUEST);
        self.span.in_scope(|| {
            tracing::info!(
                method = %self.method,
                path = self.path,
                status = CLIENT_CLOSED_REQUEST,
                ms = self.started.elapsed().as_millis() as u64,
                "request ended by the client before its answer"
            )
        });
    }
}

/// An error in the shape of the API that `path` belongs to.
fn error_in_route_shape(path: &str, err: ApiError) -> Response {
    if path.starts_with("/v1/messages") {
        AnthropicError(err).into_response()
    } else if path.starts_with("/api/") {
        OllamaError(err).into_response()
    } else {
        err.into_response()
    }
}

/// The key comes as `Authorization: Bearer <key>` (OpenAI, Ollama) or `x-api-key: <key>`
/// (Anthropic's clients).
fn authorized(state: &AppState, request: &Request) -> bool {
    let Some(key) = &state.api_key else {
        return true;
    };
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    [bearer, x_api_key]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.trim().as_bytes(), key.as_bytes()))
}

/// Compares secrets without an early exit that would leak their common prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves on `listener`, under the default [`HttpLimits`], until `shutdown` resolves; then
/// cancels what is in flight, lets the open answers end (for a bounded time), and stops the
/// engine thread.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, state, HttpLimits::default(), None, shutdown).await
}

/// [`serve`] with the given limits on what each client may cost, over TLS when `tls` is
/// given (plain HTTP otherwise).
pub async fn serve_with_limits(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    listener::serve_connections(listener, app, limits, tls, shutdown, move || {
        state.engine.shutdown()
    })
    .await
}
