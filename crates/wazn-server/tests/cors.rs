//! CORS: without `--cors-origin` a browser gets no CORS header at all, so other sites' pages
//! cannot read the answers; with it, the named origins (or every one, `*`) get their
//! preflights answered, before any API key is asked for.

mod common;

use common::{request, scripted, Config, Response};
use serde_json::json;
use wazn_server::CorsOrigins;

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";
const APP: &str = "https://app.example";
const KEY: &str = "sk-test";

fn start(origins: &[&str]) -> common::TestServer {
    let config = Config {
        api_key: Some(KEY.to_string()),
        cors_origins: CorsOrigins::parse(origins).expect("origins"),
        ..Config::default()
    };
    scripted::start_configured(TEMPLATE, "hi", config).0
}

fn cors_headers(answer: &Response) -> Vec<&(String, String)> {
    answer
        .headers
        .iter()
        .filter(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-"))
        .collect()
}

/// A browser's preflight for a POST with a key and a JSON body, from `origin`.
fn preflight(s: &common::TestServer, origin: &str) -> Response {
    request(
        s.addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        b"",
    )
}

/// The chat request a page would make after its preflight, from `origin`.
fn chat(s: &common::TestServer, origin: &str) -> Response {
    let body = json!({
        "model": "scripted",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4,
    });
    let bearer = format!("Bearer {KEY}");
    request(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[("Origin", origin), ("Authorization", &bearer)],
        body.to_string().as_bytes(),
    )
}

#[test]
fn without_an_allowed_origin_no_cors_header_is_sent() {
    let s = start(&[]);
    let answer = preflight(&s, APP);
    // The preflight is an ordinary request to the route: refused for its missing key.
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert!(cors_headers(&answer).is_empty(), "{:?}", answer.headers);
    let answer = chat(&s, APP);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(cors_headers(&answer).is_empty(), "{:?}", answer.headers);
    let health = request(s.addr, "GET", "/health", &[("Origin", APP)], b"");
    assert!(cors_headers(&health).is_empty(), "{:?}", health.headers);
}

#[test]
fn a_named_origin_gets_its_preflight_and_answers_and_others_do_not() {
    let s = start(&[APP, "http://localhost:3000"]);
    let answer = preflight(&s, APP);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    let methods = answer
        .header("access-control-allow-methods")
        .expect("allowed methods");
    assert!(methods.contains("POST"), "{methods}");
    let headers = answer
        .header("access-control-allow-headers")
        .expect("allowed headers")
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(headers.contains("content-type"), "{headers}");

    let answer = chat(&s, APP);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    let vary = answer
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        vary.contains("origin"),
        "answers differ by origin: {vary:?}"
    );

    // Another site's page: answered (the server cannot stop a request), but without the
    // header, so its browser keeps the answer from the page.
    let other = "https://evil.example";
    let answer = preflight(&s, other);
    assert_eq!(answer.header("access-control-allow-origin"), None);
    let answer = chat(&s, other);
    assert_eq!(answer.header("access-control-allow-origin"), None);

    // The key is still needed for the request itself.
    let keyless = request(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[("Origin", APP)],
        b"{}",
    );
    assert_eq!(keyless.status, 401);
}

#[test]
fn a_star_allows_every_origin() {
    let s = start(&["*"]);
    let answer = preflight(&s, "https://anyone.example");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let answer = chat(&s, "https://anyone.example");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
}
