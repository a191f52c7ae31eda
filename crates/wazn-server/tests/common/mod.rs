//! A real server on a free loopback port, and a small HTTP/1.1 client for it.

#![allow(dead_code)]

pub mod embedding;
pub mod messages;
pub mod scripted;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use wazn_engine::{Engine, EngineOptions};
use wazn_kernels::Activations;
use wazn_models::ModelOptions;
use wazn_server::{
    AppState, CorsOrigins, HttpLimits, ServerOptions, TlsConfig, DEFAULT_BODY_LIMIT_BYTES,
};

pub const N_CTX: usize = 512;

pub fn default_model_path() -> PathBuf {
    let path = wazn_formats::model_cache::default_model_path().expect("HOME or WAZN_CACHE_DIR");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-default-model",
        path.display()
    );
    path
}

pub struct Config {
    pub api_key: Option<String>,
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub kv_blocks: usize,
    pub activations: Activations,
    pub limits: HttpLimits,
    /// Serve HTTPS with this configuration.
    pub tls: Option<TlsConfig>,
    pub cors_origins: CorsOrigins,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: None,
            max_concurrent: 4,
            max_queued: 16,
            kv_blocks: 4 * N_CTX / wazn_engine::KV_BLOCK_SIZE,
            activations: Activations::Quantized,
            limits: HttpLimits::default(),
            tls: None,
            cors_origins: CorsOrigins::None,
        }
    }
}

/// A server running on its own thread until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// The default model's server of one test binary, shared by its tests one at a time.
pub fn shared_server() -> MutexGuard<'static, TestServer> {
    static SERVER: OnceLock<Mutex<TestServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| Mutex::new(TestServer::start(Config::default())))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub const MODEL_ID: &str = "SmolLM2-135M-Instruct.Q4_1";

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        let options = EngineOptions {
            n_ctx: N_CTX,
            n_threads: 2,
            n_batch: 512,
            model: ModelOptions {
                activations: config.activations,
            },
        };
        let engine = Engine::load(&default_model_path(), options).expect("load the model");
        TestServer::start_with(engine, MODEL_ID, config)
    }

    /// A server around `engine`, serving it as `model_id`.
    pub fn start_with(mut engine: Engine, model_id: &str, config: Config) -> TestServer {
        engine.set_kv_blocks(config.kv_blocks).expect("kv blocks");
        let state = AppState::new(
            engine,
            ServerOptions {
                model_id: model_id.into(),
                api_key: config.api_key,
                max_concurrent: config.max_concurrent,
                max_queued: config.max_queued,
                body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
                reasoning_effort: Default::default(),
                tool_format: None,
                cors_origins: config.cors_origins,
            },
        )
        .expect("engine thread");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let limits = config.limits;
        let tls = config.tls;
        let thread = std::thread::spawn(move || {
            runtime.block_on(wazn_server::serve_with_limits(
                listener,
                served,
                limits,
                tls,
                async move {
                    let _ = stopped.await;
                },
            ))
        });
        TestServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server as a signal would and waits (bounded) for it to return.
    pub fn shutdown(&mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.is_finished() && matches!(thread.join(), Ok(Ok(())))
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        request(self.addr, "POST", path, &[], body.to_string().as_bytes())
    }

    /// `body` with `"stream": true`, posted; the answer must be a 200.
    pub fn post_streamed(&self, path: &str, body: &Value) -> Response {
        let mut streamed = body.clone();
        streamed["stream"] = Value::Bool(true);
        let response = self.post(path, &streamed);
        assert_eq!(response.status, 200, "{}", response.text());
        response
    }

    /// The value of one metric line `name value` (no labels), parsed.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// Waits (at most 20 s) until no sequence runs or waits and no KV block is held.
    pub fn wait_idle(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.metric("wazn_kv_blocks_used") == 0.0
                && self.metric("wazn_running_sequences") == 0.0
                && self.metric("wazn_queue_depth") == 0.0
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON of each `data:` line of an event stream, and whether it ended with
    /// `data: [DONE]`.
    pub fn sse(&self) -> (Vec<Value>, bool) {
        let mut chunks = Vec::new();
        let mut done = false;
        for line in self.text().lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    chunks.push(serde_json::from_str(data).expect("chunk JSON"));
                }
            }
        }
        (chunks, done)
    }
}

/// Writes one request on a new connection.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    // A server may answer (413) before reading a large body; a failed write is fine.
    let _ = stream.write_all(body);
    stream
}

/// One request and its whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = send(addr, method, path, headers, body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

/// A connection that reads with a short timeout, for clients that watch the server close it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    stream
}

/// Whether the server has closed `stream` (EOF or a reset), reading what it sent meanwhile.
pub fn closed_by_server(stream: &mut TcpStream, answer: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            answer.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    body
}
