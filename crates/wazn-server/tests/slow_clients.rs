//! Clients that send slowly, hold connections idle, or hang on while the server stops: each
//! costs a bounded time and one connection slot.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{closed_by_server, connect, scripted};
use wazn_server::HttpLimits;

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";

fn limits(header_seconds: u64, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(header_seconds),
        body_timeout: Duration::from_secs(1),
        max_connections,
        shutdown_grace: Duration::from_secs(1),
    }
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() {
    let (s, _) = scripted::start_limited(TEMPLATE, "hi", limits(1, 64));
    let mut stream = connect(s.addr);
    let head =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    // One byte every 100 ms: well within any per-read timeout, far past the header deadline.
    for byte in head.iter().cycle().take(300) {
        if stream.write_all(&[*byte]).is_err() || closed_by_server(&mut stream, &mut answer) {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection was still open after 30 s of trickled headers"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut off only after {:?}",
        started.elapsed()
    );
    // The server still answers others.
    let health = common::request(s.addr, "GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
}

#[test]
fn a_body_that_stops_coming_gets_an_error_and_the_connection_closes() {
    let (s, _) = scripted::start_limited(TEMPLATE, "hi", limits(30, 64));
    let mut stream = connect(s.addr);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"messages\": [",
        s.addr
    );
    stream.write_all(head.as_bytes()).expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    while !closed_by_server(&mut stream, &mut answer) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no end to a body that stopped coming"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    assert!(s.wait_idle(), "KV blocks still held");
}

#[test]
fn idle_connections_past_the_cap_wait_and_a_real_request_still_gets_in() {
    let (s, _) = scripted::start_limited(TEMPLATE, "hi", limits(1, 4));
    // Four connections that never send a byte fill every slot.
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(s.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // This one waits in the listen queue until an idle one is closed for its silence.
    let answer = common::request(s.addr, "GET", "/health", &[], b"");
    assert_eq!(answer.status, 200);
    let mut ignored = Vec::new();
    for stream in &mut idle {
        let started = Instant::now();
        while !closed_by_server(stream, &mut ignored) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "an idle connection is still open"
            );
        }
    }
    assert!(ignored.is_empty(), "idle connections got an answer");
}

#[test]
fn shutdown_does_not_wait_on_a_half_sent_request() {
    // Headers may take a minute here, so only the shutdown grace can end this client.
    let (mut s, _) = scripted::start_limited(TEMPLATE, "hi", limits(60, 64));
    let mut stream = connect(s.addr);
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(s.shutdown(), "the server did not stop");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        started.elapsed()
    );
}
