//! Serving one accepted client connection: TLS handshake (HTTPS), protocol choice (ALPN,
//! or the h2c preface on plain HTTP), then hyper's HTTP/1 or HTTP/2 connection until the
//! client leaves, a timeout closes it, or the listener/node stops.
//!
//! Stopping: when the listener closes (configuration change, node drain) the connection is
//! shut down gracefully (HTTP/1: after the response in progress; HTTP/2: GOAWAY, open
//! streams finish); when the node's grace period ends (`ctx.shutdown`) it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::io::{ClientIo, ConnShared, Timeouts};
use super::service::{self, ConnCtx};
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
    ctx.sockets.apply(&stream);
    let Some(config) = tls else {
        run(ctx, listener_id, stream, peer, false, None, false, stop).await;
        return;
    };
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let stream = tokio::select! {
        r = tokio::time::timeout(ctx.http.limits.head_timeout, accept) => match r {
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
    run(ctx, listener_id, stream, peer, true, subject, h2, stop).await;
}

/// Drives a hyper connection until it ends, shutting it down gracefully on `stop`.
macro_rules! drive {
    ($conn:expr, $stop:expr, $shutdown:expr) => {{
        let mut conn = std::pin::pin!($conn);
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
    listener_id: Arc<str>,
    stream: S,
    peer: SocketAddr,
    https: bool,
    subject: Option<HeaderValue>,
    alpn_h2: bool,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.http.limits;
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
    let http = ctx.http.clone();
    let conn = Arc::new(ConnCtx {
        ctx,
        listener_id: listener_id.clone(),
        peer,
        https,
        subject,
        shared,
    });
    let svc = service_fn(move |req| service::handle(conn.clone(), req));
    let io = TokioIo::new(io);
    let result = if h2 {
        drive!(http.h2.serve_connection(io, svc), stop, shutdown)
    } else {
        drive!(
            http.h1.serve_connection(io, svc).with_upgrades(),
            stop,
            shutdown
        )
    };
    if let Err(e) = result {
        tracing::debug!(listener = %listener_id, client = %peer, error = %e, "client connection ended with an error");
    }
}
