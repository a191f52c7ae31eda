//! HTTPS on loopback with a certificate made in the test: requests are answered over TLS, a
//! handshake that never finishes is cut off at the header deadline, a plain-HTTP client on the
//! TLS port is turned away without harm, and bad certificate or key files are clear errors.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{closed_by_server, connect, scripted, Config};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::json;
use wazn_server::{HttpLimits, TlsConfig, TlsError};

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";

/// A self-signed certificate for `localhost`, as PEM, and its DER for the client to trust.
struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
}

fn self_signed() -> SelfSigned {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a self-signed certificate");
    SelfSigned {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        cert_der: made.cert.der().clone(),
    }
}

/// A directory of this test's own, removed when dropped. Tests run in parallel in one process,
/// so each directory also carries a counter: two servers never share (and race on) a key file.
struct TempDir(PathBuf);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wazn-tls-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn limits(header_seconds: u64) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(header_seconds),
        body_timeout: Duration::from_secs(5),
        max_connections: 64,
        shutdown_grace: Duration::from_secs(1),
    }
}

/// A scripted server over TLS with `certificate`, its configuration read from PEM files.
fn start_tls(certificate: &SelfSigned, header_seconds: u64) -> common::TestServer {
    let dir = TempDir::new("serve");
    let cert = dir.write("cert.pem", certificate.cert_pem.as_bytes());
    let key = dir.write("key.pem", certificate.key_pem.as_bytes());
    let tls = TlsConfig::from_pem_files(&cert, &key).expect("the certificate and key load");
    let config = Config {
        limits: limits(header_seconds),
        tls: Some(tls),
        ..Config::default()
    };
    scripted::start_configured(TEMPLATE, "hi there", config).0
}

/// A TLS client that trusts `certificate` alone.
fn client_config(certificate: &SelfSigned) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(certificate.cert_der.clone())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One request over TLS on a new connection, and its whole answer.
fn https_request(
    addr: SocketAddr,
    certificate: &SelfSigned,
    method: &str,
    path: &str,
    body: &[u8],
) -> common::Response {
    let name = ServerName::try_from("localhost").expect("server name");
    let connection = ClientConnection::new(client_config(certificate), name).expect("client");
    let socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut stream = StreamOwned::new(connection, socket);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write the head");
    stream.write_all(body).expect("write the body");
    let mut raw = Vec::new();
    // The server may close without close_notify once the answer is whole; what came counts.
    let _ = stream.read_to_end(&mut raw);
    assert!(
        stream.conn.alpn_protocol().is_none_or(|p| p == b"http/1.1"),
        "negotiated {:?}",
        stream.conn.alpn_protocol()
    );
    common::parse_response(&raw)
}

#[test]
fn requests_are_answered_over_tls() {
    let certificate = self_signed();
    let s = start_tls(&certificate, 30);
    let health = https_request(s.addr, &certificate, "GET", "/health", b"");
    assert_eq!(health.status, 200, "{}", health.text());
    let body = json!({
        "model": "scripted",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 8,
    });
    let answer = https_request(
        s.addr,
        &certificate,
        "POST",
        "/v1/chat/completions",
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let content = answer.json()["choices"][0]["message"]["content"].clone();
    assert_eq!(content, "hi there");
}

#[test]
fn a_client_that_never_starts_the_handshake_is_cut_off() {
    let certificate = self_signed();
    let s = start_tls(&certificate, 1);
    let mut stream = connect(s.addr);
    let started = Instant::now();
    let mut answer = Vec::new();
    while !closed_by_server(&mut stream, &mut answer) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a silent client is still connected"
        );
    }
    assert!(answer.is_empty(), "a silent client got {answer:?}");
    let health = https_request(s.addr, &certificate, "GET", "/health", b"");
    assert_eq!(health.status, 200);
}

#[test]
fn a_client_hello_trickled_a_byte_at_a_time_is_cut_off() {
    let certificate = self_signed();
    let s = start_tls(&certificate, 1);
    // A real ClientHello, as the bytes a client would put on the wire.
    let name = ServerName::try_from("localhost").expect("server name");
    let mut client =
        ClientConnection::new(client_config(&certificate), name).expect("client connection");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("a ClientHello");
    assert!(hello.len() > 100, "a ClientHello of {} bytes", hello.len());

    let mut stream = connect(s.addr);
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed = false;
    // One byte every 100 ms (the read timeout): the hello is never whole before the deadline.
    for byte in &hello {
        if stream.write_all(&[*byte]).is_err() || closed_by_server(&mut stream, &mut answer) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the handshake was still open after the whole hello");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut off only after {:?}",
        started.elapsed()
    );
    let health = https_request(s.addr, &certificate, "GET", "/health", b"");
    assert_eq!(health.status, 200);
}

#[test]
fn plain_http_on_the_tls_port_is_turned_away_and_the_server_goes_on() {
    let certificate = self_signed();
    let s = start_tls(&certificate, 30);
    let mut stream = connect(s.addr);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    while !closed_by_server(&mut stream, &mut answer) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a plain-HTTP client is still connected"
        );
    }
    // At most a TLS alert record (content type 21), never an HTTP answer.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "a plain-HTTP client got {:?}",
        String::from_utf8_lossy(&answer)
    );
    let health = https_request(s.addr, &certificate, "GET", "/health", b"");
    assert_eq!(health.status, 200);
}

#[test]
fn shutdown_does_not_wait_on_a_half_done_handshake() {
    let certificate = self_signed();
    // The handshake may take a minute here, so only the shutdown can end this client.
    let mut s = start_tls(&certificate, 60);
    let mut stream = connect(s.addr);
    stream
        .write_all(&[22, 3, 1, 0, 200, 1])
        .expect("the start of a ClientHello");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(s.shutdown(), "the server did not stop");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        started.elapsed()
    );
    let mut answer = Vec::new();
    let closed = (0..50).any(|_| closed_by_server(&mut stream, &mut answer));
    assert!(closed, "the half-done handshake is still open");
}

/// The error `TlsConfig::from_pem_files` gives for these files, as its one-line message.
fn load_error(cert: &Path, key: &Path) -> (TlsError, String) {
    let error = TlsConfig::from_pem_files(cert, key).expect_err("the files are refused");
    let message = error.to_string();
    assert!(!message.contains('\n'), "more than one line: {message}");
    (error, message)
}

#[test]
fn bad_certificate_and_key_files_are_one_line_errors() {
    let certificate = self_signed();
    let other = self_signed();
    let dir = TempDir::new("bad-files");
    let cert = dir.write("cert.pem", certificate.cert_pem.as_bytes());
    let key = dir.write("key.pem", certificate.key_pem.as_bytes());
    let other_key = dir.write("other-key.pem", other.key_pem.as_bytes());
    let empty = dir.write("empty.pem", b"");
    let garbage = dir.write(
        "garbage.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    );
    let unterminated = dir.write("unterminated.pem", b"-----BEGIN PRIVATE KEY-----\nMIIB\n");
    let missing = dir.0.join("missing.pem");

    let (error, message) = load_error(&missing, &key);
    assert!(matches!(error, TlsError::Read { .. }), "{message}");
    assert!(message.contains("missing.pem"), "{message}");

    let (error, message) = load_error(&empty, &key);
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{message}");
    assert!(message.contains("empty.pem"), "{message}");

    // The certificate given as the key: PEM, but no key in it.
    let (error, message) = load_error(&cert, &cert);
    assert!(matches!(error, TlsError::NoKey { .. }), "{message}");

    let (error, message) = load_error(&garbage, &key);
    assert!(matches!(error, TlsError::BadPem { .. }), "{message}");
    assert!(message.contains("garbage.pem"), "{message}");

    let (error, message) = load_error(&cert, &unterminated);
    assert!(matches!(error, TlsError::BadPem { .. }), "{message}");

    // A key that is not the certificate's.
    let (error, message) = load_error(&cert, &other_key);
    assert!(matches!(error, TlsError::Rejected(_)), "{message}");

    // A file far larger than any certificate is not read whole.
    let huge = dir.write("huge.pem", &vec![b'A'; 2 << 20]);
    let (error, message) = load_error(&huge, &key);
    assert!(matches!(error, TlsError::TooLarge { .. }), "{message}");

    // And the right pair loads.
    assert!(TlsConfig::from_pem_files(&cert, &key).is_ok());
}
