//! Every streaming API begins its stream as soon as the engine admits a request, not after the
//! prompt has been read: a scripted model held at a gate computes nothing until the test lets
//! it, and each stream must already have begun (headers, and the first event where the API has
//! one).

mod common;

use std::io::Read;

use common::{scripted, send};
use serde_json::json;

/// Reads from `stream` until `marker` has come, or fails after 20 s without it.
fn read_until(stream: &mut std::net::TcpStream, marker: &str) -> String {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no {marker:?} yet ({e}); read so far: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn streams_begin_before_the_prompt_is_read() {
    // The model computes nothing until the gate opens, as while a long prompt is read: each
    // API's stream must already have begun (Claude Code gives up on a stream that has not
    // begun after 300 s, and an agent's prompt takes that long on a small machine).
    let chat = json!({"model": "scripted", "stream": true, "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hello."}]});
    let responses = json!({"model": "scripted", "stream": true, "input": "Say hello."});
    for (path, body, first_words, last_words) in [
        (
            "/v1/messages",
            &chat,
            "event: message_start",
            "message_stop",
        ),
        ("/v1/chat/completions", &chat, "HTTP/1.1 200", "[DONE]"),
        (
            "/v1/responses",
            &responses,
            "event: response.created",
            "response.completed",
        ),
        ("/api/chat", &chat, "HTTP/1.1 200", "\"done\":true"),
    ] {
        let gate = scripted::Gate::default();
        let template = scripted::qwen3_template();
        let (server, _) = scripted::start_gated(&template, "Hello.", gate.clone());
        let mut stream = send(server.addr, "POST", path, &[], body.to_string().as_bytes());
        let begun = read_until(&mut stream, first_words);
        assert!(begun.starts_with("HTTP/1.1 200"), "{path}: {begun}");
        // The scripted vocabulary is bytes: the reply's first token is "H".
        assert!(
            !begun.contains("\"H\""),
            "{path}: a token came through the gate"
        );
        gate.open();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let whole = begun + &String::from_utf8_lossy(&rest);
        assert!(whole.contains("\"H\""), "{path}: {whole}");
        assert!(whole.contains(last_words), "{path}: {whole}");
    }
}
