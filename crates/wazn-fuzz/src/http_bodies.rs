//! The request bodies of every API the server speaks, through the real router and engine.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;
use wazn_server::{router, AppState, CorsOrigins, ServerOptions, DEFAULT_BODY_LIMIT_BYTES};

use crate::scripted;

/// The routes that read a body.
const ROUTES: [&str; 13] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
];

/// What the scripted models answer: plain text, a think block, a tool call, JSON.
const REPLIES: [&str; 4] = [
    "Hello there! How can I help?",
    "<think>The user greets me.</think>Hello!",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "{\"answer\": 42, \"unit\": \"°C\"}",
];

/// The longest a request may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// Sends an arbitrary body to a route of a server over a scripted model. The first byte picks
/// the route, the second the model's reply, the rest is the body. The server must answer every
/// body with a status below 500 (or 501, for what it does not do), within the deadline, and
/// its answer must be well formed: a JSON body is JSON, a server-sent event stream carries
/// JSON or `[DONE]` in each `data:` line, and an NDJSON stream is JSON on each line.
pub fn http_bodies(data: &[u8]) {
    let [route, reply, body @ ..] = data else {
        return;
    };
    let route = ROUTES[usize::from(*route) % ROUTES.len()];
    let app = servers()[usize::from(*reply) % REPLIES.len()].clone();
    let request = Request::builder()
        .method(Method::POST)
        .uri(route)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let (status, content_type, answer) = runtime().block_on(async move {
        let answered = async {
            let response = app.oneshot(request).await.expect("the router answers");
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let answer = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the body is read to its end");
            (status, content_type, answer)
        };
        tokio::time::timeout(DEADLINE, answered)
            .await
            .unwrap_or_else(|_| panic!("{route}: no whole answer within {DEADLINE:?}"))
    });
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        status.as_u16() < 500 || status == StatusCode::NOT_IMPLEMENTED,
        "{route}: {status} {answer}"
    );
    if content_type.starts_with("application/json") {
        assert_json(route, &answer);
    } else if content_type.starts_with("text/event-stream") {
        for line in answer.lines() {
            if let Some(data) = line.strip_prefix("data:") {
                let data = data.trim_start();
                if data != "[DONE]" {
                    assert_json(route, data);
                }
            }
        }
    } else if content_type.starts_with("application/x-ndjson") {
        for line in answer.lines().filter(|l| !l.is_empty()) {
            assert_json(route, line);
        }
    }
}

fn assert_json(route: &str, text: &str) {
    if let Err(e) = serde_json::from_str::<Value>(text) {
        panic!("{route}: not JSON ({e}): {text}");
    }
}

/// One router per reply, all over Qwen3's chat template.
fn servers() -> &'static [Router] {
    static SERVERS: OnceLock<Vec<Router>> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let template = qwen3_template();
        REPLIES
            .iter()
            .map(|reply| {
                let engine = scripted::engine(&template, reply);
                let options = ServerOptions {
                    model_id: "scripted".into(),
                    api_key: None,
                    max_concurrent: 4,
                    max_queued: 4,
                    body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
                    reasoning_effort: Default::default(),
                    tool_format: None,
                    cors_origins: CorsOrigins::None,
                };
                let state: Arc<AppState> = AppState::new(engine, options).expect("engine thread");
                router(state)
            })
            .collect()
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Qwen3's own chat template (checked against transformers in wazn-text's tests).
fn qwen3_template() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wazn-text/tests/data/tool_chat_templates.json"
    );
    let text = std::fs::read_to_string(path).expect("wazn-text's template fixture");
    let fixture: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    fixture["templates"]
        .as_array()
        .and_then(|templates| templates.iter().find(|t| t["name"] == "qwen3"))
        .and_then(|t| t["template"].as_str())
        .expect("the Qwen3 template")
        .to_string()
}
