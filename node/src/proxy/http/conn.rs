//! Serving one accepted client connection: TLS handshake (HTTPS), protocol choice (ALPN,
//! or the h2c preface on plain HTTP), then hyper's HTTP/1 or HTTP/2 connection until the
//! client leaves, a timeout closes it, or the listener/node stops.
//!
//! Stopping: when the listener closes (configuration change, node drain) the connection is
//! shut down gracefully (HTTP/1: after the response in progress; HTTP/2: GOAWAY, open
//! streams finish); when the node's grace period ends (`ctx.shutdown`) it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::io::{ClientIo, ConnShared, Timeouts};
use super::service::{self, ConnCtx};
use crate::proxy::context::LiveProxy;
use crate::proxy::tls_termination;
use crate::proxy::ProxyContext;

/// Serves one connection of an HTTP (`tls` = None) or HTTPS listener.
pub async fn serve(
    ctx: ProxyContext,
    listener_id: Arc<str>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    // TCP_NODELAY and keepalive came with the socket: accepted sockets inherit them from
    // the listening socket (see `listeners::start_tcp`), no system calls per connection.
    // A node drain waits until this is dropped: the response is then fully written.
    let _open = ctx.http_connection();
    // Limits and timeouts as of now, for the whole connection (a reload changes new ones).
    let live = ctx.live();
    let Some(config) = tls else {
        run(
            ctx,
            live,
            listener_id,
            stream,
            peer,
            false,
            None,
            false,
            stop,
        )
        .await;
        return;
    };
    // Boxed: the handshake and TLS stream state would otherwise be part of every plain
    // HTTP connection's task too (a task is as large as the largest state of its future).
    Box::pin(serve_tls(
        ctx,
        live,
        listener_id,
        stream,
        peer,
        config,
        stop,
    ))
    .await;
}

/// The HTTPS part of [`serve`]: handshake, then the same connection handling.
async fn serve_tls(
    ctx: ProxyContext,
    live: Arc<LiveProxy>,
    listener_id: Arc<str>,
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let stream = tokio::select! {
        r = tokio::time::timeout(live.http.limits.head_timeout, accept) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics::counter!("fiberlb_tls_handshake_failures_total", "listener" => listener_id.to_string()).increment(1);
                tracing::debug!(listener = %listener_id, client = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!("fiberlb_tls_handshake_failures_total", "listener" => listener_id.to_string()).increment(1);
                tracing::debug!(listener = %listener_id, client = %peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.cancelled() => return,
    };
    let (_, server) = stream.get_ref();
    let h2 = server.alpn_protocol() == Some(b"h2");
    let subject =
        tls_termination::peer_subject(server).and_then(|s| HeaderValue::from_str(&s).ok());
    run(
        ctx,
        live,
        listener_id,
        stream,
        peer,
        true,
        subject,
        h2,
        stop,
    )
    .await;
}

/// Drives a hyper connection until it ends, shutting it down gracefully on `stop`.
macro_rules! drive {
    ($conn:expr, $stop:expr, $shutdown:expr) => {{
        // `$conn` is a `Pin<Box<_>>`: hyper's connection state lives on the heap only
        // while hyper serves.
        let mut conn = $conn;
        tokio::select! {
            r = conn.as_mut() => r,
            _ = $stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = $shutdown.cancelled() => Ok(()),
                }
            }
            _ = $shutdown.cancelled() => Ok(()),
        }
    }};
}

#[allow(clippy::too_many_arguments)]
async fn run<S>(
    ctx: ProxyContext,
    live: Arc<LiveProxy>,
    listener_id: Arc<str>,
    stream: S,
    peer: SocketAddr,
    https: bool,
    subject: Option<HeaderValue>,
    alpn_h2: bool,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + Send + 'static,
{
    let limits = live.http.limits;
    let shared = ConnShared::new();
    let timeouts = Timeouts {
        head: limits.head_timeout,
        idle: limits.idle_timeout,
    };
    let mut io = ClientIo::new(
        stream,
        shared.clone(),
        limits.max_header,
        timeouts,
        alpn_h2,
        peer,
    );
    let h2 = if alpn_h2 {
        true
    } else {
        tokio::select! {
            r = io.detect() => match r {
                Ok(h2) => h2,
                Err(e) => {
                    tracing::debug!(listener = %listener_id, client = %peer, error = %e, "no request");
                    return;
                }
            },
            _ = stop.cancelled() => return,
            _ = ctx.shutdown.cancelled() => return,
        }
    };
    let shutdown = ctx.shutdown.clone();
    let builders = live.clone();
    let conn = Arc::new(ConnCtx {
        ctx,
        live,
        listener_id: listener_id.clone(),
        peer,
        https,
        subject,
        shared: shared.clone(),
    });
    // Boxed, so an idle keep-alive connection does not carry a request's (large) state
    // inline in hyper's dispatcher: it costs an allocation per request instead.
    let svc = {
        let conn = conn.clone();
        service_fn(move |req| Box::pin(service::handle(conn.clone(), req)))
    };
    // The hyper connections are boxed: inline, their state would be part of this task
    // for its whole life, parked or not (a task is as large as its largest state).
    if h2 {
        let result = drive!(
            Box::pin(builders.http.h2.serve_connection(TokioIo::new(io), svc)),
            stop,
            shutdown
        );
        if let Err(e) = result {
            tracing::debug!(listener = %listener_id, client = %peer, error = %e, "client connection ended with an error");
        }
        return;
    }
    // HTTP/1: one hyper connection per busy period. When the connection idles with
    // nothing buffered, hyper is let go (its buffers freed) and the bare socket waits here
    // for the next request, or for the idle timeout.
    loop {
        let (park_tx, park_rx) = tokio::sync::oneshot::channel();
        io.park_into(PARK_AFTER, park_tx);
        let result = drive!(
            Box::pin(
                builders
                    .http
                    .h1
                    .serve_connection(TokioIo::new(io), svc.clone())
                    .with_upgrades()
            ),
            stop,
            shutdown
        );
        if let Err(e) = result {
            tracing::debug!(listener = %listener_id, client = %peer, error = %e, "client connection ended with an error");
            return;
        }
        // Handed back only when the connection ended by parking.
        let Ok(parked) = park_rx.await else { return };
        let idle_deadline = shared.idle_since() + timeouts.idle;
        tokio::select! {
            r = parked.io.wait_readable() => if r.is_err() { return },
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::debug!(client = %peer, "closing client connection: idle timeout");
                return;
            }
            _ = stop.cancelled() => return,
            _ = shutdown.cancelled() => return,
        }
        io = ClientIo::resume(parked, shared.clone(), timeouts, peer);
    }
}

/// How long an HTTP/1 keep-alive connection idles before hyper lets go of it (see
/// `ClientIo::park_into`): long enough that a busy connection never pays for a new
/// hyper connection, short enough that idle ones cost no buffers.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// A client socket that can wait for data without a buffer.
pub(crate) trait WaitReadable {
    /// Resolves when a read would make progress (data, EOF or an error).
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

impl WaitReadable for TcpStream {
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }
}

impl WaitReadable for tokio_rustls::server::TlsStream<TcpStream> {
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        // rustls holds no undelivered plaintext here: the connection was parked only
        // after a read came back empty-handed.
        self.get_ref().0.readable()
    }
}

#[cfg(test)]
mod tests {
    /// Every client connection is one task as large as its future's largest state, for
    /// its whole life: hyper's connection state must stay boxed (1.7 KiB measured with
    /// it boxed, 4.3 KiB inline).
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let s = crate::settings::ProxySettings::default();
        let resolver = crate::resolve::Resolver::new(crate::resolve::ResolverConfig::default());
        let ctx = crate::proxy::ProxyContext::new(
            std::sync::Arc::new(crate::snapshot::SnapshotCell::default()),
            resolver,
            &s,
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let peer = c.local_addr().unwrap();
        let f = super::serve(
            ctx,
            std::sync::Arc::from("x"),
            c,
            peer,
            None,
            tokio_util::sync::CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&f);
        assert!(size < 2560, "a client connection task takes {size} bytes");
    }
}
