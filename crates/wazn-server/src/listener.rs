//! The accept loop: every connection runs under the limits of [`HttpLimits`], so that a slow or
//! idle client costs a bounded time and one connection slot, never the server.
//!
//! axum's own `serve` sets no timer on hyper, so a client sending one header byte a second, or
//! a body that never ends, held its connection forever, and nothing capped how many were held.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::tls::TlsConfig;

/// What one client may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// The time a client has to send a request's headers; on a kept-alive connection it also
    /// counts the wait for the next request, so idle connections close after it.
    pub header_timeout: Duration,
    /// The time a client has to send a whole request body, from its headers' end.
    pub body_timeout: Duration,
    /// Connections open at once; further clients wait in the listen queue.
    pub max_connections: usize,
    /// On shutdown, how long open connections may take to finish before they are dropped.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits at most
/// `limits.shutdown_grace` for open connections. `on_shutdown` runs as soon as the signal
/// comes, before that wait (the engine is stopped there, which ends running streams).
///
/// With `tls`, each connection first completes a TLS handshake, within
/// `limits.header_timeout` (a client that opens a connection and says nothing costs no more
/// than one that sends no headers), holding its connection slot meanwhile.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_shutdown: impl FnOnce(),
) -> std::io::Result<()> {
    // HTTP/1.1 only, as axum's own `serve` without its http2 feature: every client of the
    // APIs served speaks it.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.server));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Handshakes under way are no connections of hyper's yet: they stop on this instead.
    let (stopping, _) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little rather than spin, as the peer may be the cause.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
            app.clone().oneshot(request)
        });
        let builder = builder.clone();
        // Taken before the task starts, so a shutdown signalled during a handshake still
        // reaches the connection that follows it.
        let watcher = graceful.watcher();
        match &acceptor {
            None => {
                let connection = builder.serve_connection(TokioIo::new(socket), service);
                tokio::spawn(run_connection(watcher.watch(connection), slot));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(socket);
                let mut stopping = stopping.subscribe();
                let deadline = limits.header_timeout;
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        done = tokio::time::timeout(deadline, handshake) => match done {
                            Ok(Ok(stream)) => stream,
                            // A client that speaks no TLS (plain HTTP, a port scan) or
                            // gives up: its connection closes, no one else notices.
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake not done within the header timeout");
                                return;
                            }
                        },
                        _ = stopping.changed() => return,
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    run_connection(watcher.watch(connection), slot).await;
                });
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    on_shutdown();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = limits.shutdown_grace.as_secs_f32(),
            "connections still open after the shutdown grace; dropping them"
        );
    }
    Ok(())
}

/// Runs one connection to its end, then frees its slot.
async fn run_connection<E: std::fmt::Display>(
    connection: impl Future<Output = Result<(), E>>,
    slot: OwnedSemaphorePermit,
) {
    // A connection's end (a client gone, a timeout) is no error of the server's.
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended");
    }
    drop(slot);
}

/// A request body that fails once its deadline passes, however the bytes trickle in.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
        }
    }
}

/// The error a body past its deadline reads as.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout)))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(axum::BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
