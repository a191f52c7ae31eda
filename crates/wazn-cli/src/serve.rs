//! `wazn serve`: the OpenAI-compatible HTTP server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use wazn_server::model_facts::FileFacts;
use wazn_server::{
    AppState, CorsOrigins, HttpLimits, ServerOptions, TlsConfig, DEFAULT_BODY_LIMIT_BYTES,
};
use wazn_text::tool_calls::ToolFormat;

use crate::model_path;
use crate::options::{reasoning_effort, ModelArgs, Reasoning};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer <key>` (or `x-api-key: <key>`) on every route but
    /// /health.
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Sequences computed together at most.
    #[arg(long = "max-concurrent", default_value_t = 8)]
    pub max_concurrent: usize,
    /// Requests that may wait for a place; beyond that the server answers 429.
    #[arg(long = "max-queued", default_value_t = 64)]
    pub max_queued: usize,
    /// KV cache blocks of 16 positions shared by all sequences (0 = enough for
    /// --max-concurrent full contexts; memory is taken as blocks are first used).
    #[arg(long = "kv-blocks", default_value_t = 0)]
    pub kv_blocks: usize,
    /// Reasoning effort of a harmony model (gpt-oss) for requests that give no
    /// `reasoning_effort`; an error for other models [default: medium].
    #[arg(long, value_enum)]
    pub reasoning: Option<Reasoning>,
    /// How the model writes function calls: hermes, llama3_json or mistral [default: told
    /// from the chat template and the vocabulary].
    #[arg(long = "tool-format", value_name = "FORMAT")]
    pub tool_format: Option<String>,
    /// Seconds a client has to send a request's headers, and then its body; an idle
    /// kept-alive connection is closed after as long.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long = "max-body", value_name = "BYTES", default_value_t = DEFAULT_BODY_LIMIT_BYTES)]
    pub max_body: usize,
    /// Connections open at once; more wait in the listen queue [default: 4096, or fewer if
    /// the open-file limit is lower].
    #[arg(long = "max-connections")]
    pub max_connections: Option<usize>,
    /// Serve HTTPS with this PEM private key (PKCS#8, PKCS#1 or SEC1); needs
    /// --ssl-cert-file.
    #[arg(long = "ssl-key-file", value_name = "KEY", requires = "ssl_cert_file")]
    pub ssl_key_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain, the server's own certificate first;
    /// needs --ssl-key-file.
    #[arg(long = "ssl-cert-file", value_name = "CERT", requires = "ssl_key_file")]
    pub ssl_cert_file: Option<PathBuf>,
    /// Let web pages from this origin (scheme://host[:port]) call the server from a
    /// browser; repeatable, `*` for any. Without it no CORS headers are sent.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// How the log on stderr is written: text lines, or one JSON object per line.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The tool-call format a `--tool-format` value names.
pub fn tool_format(name: &str) -> Result<ToolFormat> {
    ToolFormat::from_name(name).with_context(|| {
        let names: Vec<&str> = ToolFormat::ALL.iter().map(|f| f.name()).collect();
        format!(
            "unknown tool-call format `{name}`; use one of {}",
            names.join(", ")
        )
    })
}

pub fn serve(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    // Read before the model, so a wrong path is told at once, not after a long load.
    let tls = match (&args.ssl_cert_file, &args.ssl_key_file) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cors_origins = CorsOrigins::parse(&args.cors_origin)?;
    let path = model_path::resolve(args.model.model.clone())?;
    let model_id = model_id(&path);
    let mut engine = args.model.load()?;
    let effort = reasoning_effort(&engine, args.reasoning)?;
    let n_ctx = engine.options().n_ctx;
    let kv_blocks = if args.kv_blocks == 0 {
        args.max_concurrent.max(1) * n_ctx.div_ceil(wazn_engine::KV_BLOCK_SIZE)
    } else {
        args.kv_blocks
    };
    engine.set_kv_blocks(kv_blocks)?;
    let options = ServerOptions {
        model_id: model_id.clone(),
        api_key: args.api_key.filter(|k| !k.is_empty()),
        max_concurrent: args.max_concurrent,
        max_queued: args.max_queued,
        body_limit_bytes: args.max_body,
        reasoning_effort: effort,
        tool_format: args.tool_format.as_deref().map(tool_format).transpose()?,
        cors_origins,
    };
    if args.timeout == 0 {
        anyhow::bail!("--timeout must be at least 1 second");
    }
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(args.timeout),
        body_timeout: Duration::from_secs(args.timeout),
        max_connections: connection_cap(args.max_connections)?,
        ..HttpLimits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr: SocketAddr = listener.local_addr()?;
        let state = AppState::new(engine, options).context("cannot start the engine thread")?;
        match FileFacts::read(&path) {
            Ok(facts) => state.model_facts.set_file(facts),
            // Only the routes that describe the model (Ollama's show and tags) lose detail.
            Err(e) => tracing::warn!("cannot read the model's metadata for /api/show: {e}"),
        }
        println!("wazn serving {model_id} on {scheme}://{addr}");
        std::io::stdout().flush()?;
        wazn_server::serve_with_limits(listener, state, limits, tls, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Open files the process keeps for itself beyond its connections: the model, the log,
/// the runtime's own descriptors.
const RESERVED_FILES: u64 = 64;

/// How many connections may be open at once. The soft open-file limit is raised to the hard
/// one first (often 1024 against 1M or more), as every connection holds one descriptor and
/// running out would stop the server from answering anyone.
fn connection_cap(asked: Option<usize>) -> Result<usize> {
    let files = open_file_limit();
    let room = files.saturating_sub(RESERVED_FILES);
    let cap = match asked {
        Some(0) => anyhow::bail!("--max-connections must be at least 1"),
        Some(n) if n as u64 > room => anyhow::bail!(
            "--max-connections {n} leaves no room under the open-file limit of {files}; \
             use at most {room} or raise the limit (ulimit -n)"
        ),
        Some(n) => n,
        None => room.min(HttpLimits::default().max_connections as u64) as usize,
    };
    if cap == 0 {
        anyhow::bail!("the open-file limit of {files} leaves no room for connections");
    }
    Ok(cap)
}

#[cfg(unix)]
fn open_file_limit() -> u64 {
    // Raising the soft limit is allowed without privileges; when it fails the current one
    // still holds, and that is what the cap is measured against.
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

#[cfg(not(unix))]
fn open_file_limit() -> u64 {
    u64::MAX
}

/// The server's log goes to stderr: one line per request and the warnings of the routes, at
/// `info` unless `RUST_LOG` says otherwise (e.g. `RUST_LOG=wazn_server=debug`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Set once per process; a second call (never made by the CLI) keeps the first.
    let _ = match format {
        LogFormat::Text => log.try_init(),
        LogFormat::Json => log.json().try_init(),
    };
}

/// The name clients use for the model: its file name without `.gguf`.
fn model_id(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
        .unwrap_or_else(|| "model".to_string())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
