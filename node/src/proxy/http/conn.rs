//! Serving one accepted client connection: TLS handshake (HTTPS), protocol choice (ALPN,
//! or the h2c preface on plain HTTP), then our HTTP/1 or HTTP/2 server until the client
//! leaves, a timeout closes it, or the listener/node stops.
//!
//! Stopping: when the listener closes (configuration change, node drain) the connection is
//! shut down gracefully (HTTP/1: after the response in progress; HTTP/2: GOAWAY, open
//! streams finish); when the node's grace period ends (`ctx.shutdown`) it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::h1::Outcome;
use super::io::{ClientIo, ConnShared, Timeouts};
use super::lazy::LazyTcp;
use super::service::ConnCtx;
use crate::proxy::context::{HttpConnGuard, LiveProxy, OpenGuard};
use crate::proxy::tls_termination;
use crate::proxy::ProxyContext;

/// Serves one connection of an HTTP (`tls` = None) or HTTPS listener.
/// `hold` (the listener's count of open connections) is kept until the connection ends.
pub async fn serve(
    ctx: Arc<ProxyContext>,
    listener_id: Arc<str>,
    stream: LazyTcp,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
    hold: OpenGuard,
) {
    // TCP_NODELAY and keepalive came with the socket: accepted sockets inherit them from
    // the listening socket (see `listeners::start_tcp`), no system calls per connection.
    // A node drain waits until this is dropped: the response is then fully written.
    let open = (ctx.http_connection(), hold);
    // Limits and timeouts as of now, for the whole connection (a reload changes new ones).
    let live = ctx.live();
    let Some(config) = tls else {
        // Plain HTTP/1 goes on in this task: an idle connection parks in the worker's idle
        // set without its task (`WaitReadable::sleep`), so this task's size is paid only
        // while a request is served, and a connection that makes one request costs one
        // task instead of two.
        let Some((st, stream, buf)) = run(
            ctx,
            live,
            listener_id,
            stream,
            peer,
            false,
            None,
            false,
            stop,
            open,
        )
        .await
        else {
            return;
        };
        http1(st, stream, buf, true).await;
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
        open,
    ))
    .await;
}

/// The HTTPS part of [`serve`]: handshake, then the same connection handling.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    ctx: Arc<ProxyContext>,
    live: Arc<LiveProxy>,
    listener_id: Arc<str>,
    stream: LazyTcp,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
    open: Open,
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
    let Some((st, stream, buf)) = run(
        ctx,
        live,
        listener_id,
        stream,
        peer,
        true,
        subject,
        h2,
        stop,
        open,
    )
    .await
    else {
        return;
    };
    // HTTP/1 over TLS goes on in a task of its own, sized for what a keep-alive
    // connection keeps for most of its life: the idle wait, in its task (its session
    // state cannot be parked). This task (the handshake, the protocol detection: 1.7 KiB)
    // ends here.
    tokio::spawn(http1(st, stream, buf, true));
}

/// Detects the protocol and serves HTTP/2 to its end; an HTTP/1 connection is handed
/// back (its state, socket and what was read) for the caller to serve.
#[allow(clippy::too_many_arguments)]
async fn run<S>(
    ctx: Arc<ProxyContext>,
    live: Arc<LiveProxy>,
    listener_id: Arc<str>,
    stream: S,
    peer: SocketAddr,
    https: bool,
    subject: Option<HeaderValue>,
    alpn_h2: bool,
    stop: CancellationToken,
    open: Open,
) -> Option<(Http1, S, BytesMut)>
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + Send + 'static,
{
    let limits = live.http.limits;
    let shared = ConnShared::new();
    let timeouts = Timeouts {
        head: limits.head_timeout,
        idle: limits.idle_timeout,
    };
    let mut io = ClientIo::new(stream, shared.clone(), timeouts, peer);
    let h2 = if alpn_h2 {
        true
    } else {
        tokio::select! {
            r = io.detect() => match r {
                Ok(h2) => h2,
                Err(e) => {
                    tracing::debug!(listener = %listener_id, client = %peer, error = %e, "no request");
                    return None;
                }
            },
            _ = stop.cancelled() => return None,
            _ = ctx.shutdown.cancelled() => return None,
        }
    };
    let conn = Arc::new(ConnCtx {
        ctx,
        live,
        listener_id: listener_id.clone(),
        peer,
        https,
        subject,
        shared: shared.clone(),
    });
    if h2 {
        let shutdown = conn.ctx.shutdown.clone();
        if let Err(e) = super::h2::serve(io, conn, &stop, &shutdown).await {
            tracing::debug!(listener = %listener_id, client = %peer, error = %e, "client connection ended with an error");
        }
        return None;
    }
    let (stream, buf) = io.into_parts();
    shared.stop_stamping();
    Some((Http1 { conn, stop, open }, stream, buf))
}

/// What an HTTP/1 connection's task keeps between requests.
pub(crate) struct Http1 {
    conn: Arc<ConnCtx>,
    stop: CancellationToken,
    /// Counts the connection as open (a node drain waits for it; the listener's
    /// connection limit counts it) until dropped.
    open: Open,
}

/// What counts a connection as open: for a node drain, and for its listener's
/// `connection_limit`.
type Open = (HttpConnGuard, OpenGuard);

/// An HTTP/1 connection: our HTTP/1 server serves each busy period. When the connection
/// idles with nothing buffered, the server's state is let go (its buffers freed) and the
/// bare socket waits for the next request, or for the idle timeout: a plain one in the
/// worker's idle set (this task ends; a new one starts when the socket turns readable),
/// a TLS one here. The busy period is boxed, so the task is only as large as the wait.
async fn http1<S>(mut st: Http1, mut io: S, mut buf: BytesMut, mut fresh: bool)
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + Send + 'static,
{
    loop {
        let (parked, since) =
            match Box::pin(super::h1::serve(io, buf, &st.conn, &st.stop, fresh)).await {
                Outcome::Idle { io, since } => (io, since),
                Outcome::Closed => return,
            };
        fresh = false;
        let idle_deadline = since + st.conn.timeouts().idle;
        // A plain socket waits in the worker's idle set, without this task.
        let Some((parked, st_back)) = S::sleep(parked, st, idle_deadline) else {
            return;
        };
        st = st_back;
        let mut parked = parked;
        tokio::select! {
            r = parked.wait_readable() => if r.is_err() { return },
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::debug!(client = %st.conn.peer, "closing client connection: idle timeout");
                return;
            }
            // The listener's token, a child of the node's shutdown: either ends it.
            _ = st.stop.cancelled() => return,
        }
        io = parked;
        buf = BytesMut::new();
    }
}

/// A client socket that can wait for data without a buffer.
pub(crate) trait WaitReadable: Sized {
    /// Whether ending a connection takes a shutdown before it is dropped: TLS sends its
    /// `close_notify` that way, while a plain socket's close sends the FIN by itself (a
    /// shutdown first would be one more system call per closed connection, and would not
    /// spare a client the reset that unread bytes cause at close either).
    const SHUTDOWN_TO_CLOSE: bool = true;

    /// Resolves when a read would make progress (data, EOF or an error).
    fn wait_readable(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// Hands an idle connection over to wait without its task (the task then ends), or
    /// gives it back to wait in its task (`wait_readable`) until `deadline`.
    fn sleep(parked: Self, st: Http1, _deadline: tokio::time::Instant) -> Option<(Self, Http1)> {
        Some((parked, st))
    }
}

impl WaitReadable for LazyTcp {
    const SHUTDOWN_TO_CLOSE: bool = false;

    fn wait_readable(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }

    /// Plain HTTP/1 connections wait in the worker's idle set (`idle`): an entry in its
    /// table instead of a task, a reactor registration and the connection's context
    /// objects. (A TLS connection keeps its task: its session state has to be kept
    /// either way, and tokio-rustls cannot rebuild a stream from its parts.)
    fn sleep(stream: Self, st: Http1, deadline: tokio::time::Instant) -> Option<(Self, Http1)> {
        match stream.into_std() {
            Ok(s) => super::idle::park(&IDLE, s, deadline, Asleep::new(st)),
            // Tokio could not let go of it: the socket is closed already.
            Err(e) => tracing::debug!(error = %e, "closing client connection: could not park it"),
        }
        None
    }
}

thread_local! {
    /// This worker's idle HTTP/1 connections.
    static IDLE: std::cell::RefCell<Option<Arc<super::idle::IdleSet<Asleep>>>> =
        const { std::cell::RefCell::new(None) };
}

/// A plain HTTP/1 connection parked in the idle set: what its task and `ConnCtx` held,
/// by value (the set stores it in its table: no allocation of its own while it idles).
pub(crate) struct Asleep {
    ctx: Arc<ProxyContext>,
    live: Arc<LiveProxy>,
    listener_id: Arc<str>,
    peer: SocketAddr,
    /// Requests served so far.
    served: u64,
    stop: CancellationToken,
    open: Open,
}

impl Asleep {
    fn new(st: Http1) -> Asleep {
        let Http1 { conn, stop, open } = st;
        // The context's fields are shared handles (`Arc`s): cloned, and the context
        // itself freed, so nothing allocated during the connection's requests stays.
        Asleep {
            ctx: conn.ctx.clone(),
            live: conn.live.clone(),
            listener_id: conn.listener_id.clone(),
            peer: conn.peer,
            served: conn.shared.served(),
            stop,
            open,
        }
    }
}

impl super::idle::Dormant for Asleep {
    fn wake(self, stream: std::net::TcpStream) {
        let conn = Arc::new(ConnCtx {
            ctx: self.ctx,
            live: self.live,
            listener_id: self.listener_id,
            peer: self.peer,
            // Plain HTTP only (see `WaitReadable::sleep`): no TLS, no client certificate.
            https: false,
            subject: None,
            shared: ConnShared::resumed(self.served),
        });
        let st = Http1 {
            conn,
            stop: self.stop,
            open: self.open,
        };
        tokio::spawn(http1(st, LazyTcp::new(stream), BytesMut::new(), false));
    }

    fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    fn group(&self) -> Arc<dyn std::any::Any + Send + Sync> {
        self.ctx.clone()
    }
}

impl WaitReadable for tokio_rustls::server::TlsStream<LazyTcp> {
    fn wait_readable(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        // rustls holds no undelivered plaintext here: the connection was parked only
        // after a read came back empty-handed.
        self.get_mut().0.readable()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    async fn context() -> (crate::proxy::ProxyContext, tokio::net::TcpStream) {
        let ctx = crate::proxy::ProxyContext::for_tests(&Default::default());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        (ctx, c)
    }

    fn open_guard() -> crate::proxy::context::OpenGuard {
        let open = Arc::new(std::sync::atomic::AtomicU32::new(1));
        crate::proxy::context::OpenGuard::new(open)
    }

    /// A task is as large as its future's largest state, for its whole life. HTTPS
    /// connections go on after the handshake in a task sized for the idle wait, which is
    /// what thousands of idle keep-alive TLS connections hold (1.7 KiB each before the
    /// split). A plain connection's first task serves it until it first idles (then it
    /// parks without a task), and the task woken from the idle set is the small one.
    #[tokio::test]
    async fn the_connection_tasks_stay_small() {
        let (ctx, c) = context().await;
        let peer = c.local_addr().unwrap();
        let live = ctx.live();
        let conn = Arc::new(super::ConnCtx {
            ctx: Arc::new(ctx.clone()),
            live: live.clone(),
            listener_id: Arc::from("x"),
            peer,
            https: false,
            subject: None,
            shared: super::ConnShared::new(),
        });
        let st = super::Http1 {
            conn,
            stop: tokio_util::sync::CancellationToken::new(),
            open: (ctx.http_connection(), open_guard()),
        };
        let idle = std::mem::size_of_val(&super::http1(
            st,
            super::LazyTcp::Tokio(c),
            bytes::BytesMut::new(),
            true,
        ));
        assert!(
            idle <= 640,
            "an HTTP/1 connection's task takes {idle} bytes (512 measured)"
        );

        let (ctx, c) = context().await;
        let peer = c.local_addr().unwrap();
        let first = std::mem::size_of_val(&super::serve(
            Arc::new(ctx),
            Arc::from("x"),
            super::LazyTcp::Tokio(c),
            peer,
            None,
            tokio_util::sync::CancellationToken::new(),
            open_guard(),
        ));
        assert!(first < 2560, "the accepting task takes {first} bytes");
        // What a plain connection keeps in the idle set, by value.
        let asleep = std::mem::size_of::<super::Asleep>();
        assert!(asleep <= 160, "a parked connection takes {asleep} bytes");
        println!("parked connection {asleep} bytes");
        println!("accepting task {first} bytes, HTTP/1 connection task {idle} bytes");
    }

    /// Every request's future is allocated and copied into place once (the HTTP/1 server
    /// boxes it), so its size is paid per request: rare states (dialing a backend) are
    /// boxed where they are awaited. 7.7 KiB before that, 4.4 KiB after (release).
    #[tokio::test]
    async fn a_request_future_stays_small() {
        let (ctx, c) = context().await;
        let conn = Arc::new(super::ConnCtx {
            ctx: Arc::new(ctx.clone()),
            live: ctx.live(),
            listener_id: Arc::from("x"),
            peer: c.local_addr().unwrap(),
            https: false,
            subject: None,
            shared: super::ConnShared::new(),
        });
        let req = http::Request::new(crate::proxy::http::body::ClientBody::Empty);
        let size = std::mem::size_of_val(&crate::proxy::http::service::handle(conn, req));
        println!("request future {size} bytes");
        assert!(size <= 6 * 1024, "a request's future takes {size} bytes");
    }
}
