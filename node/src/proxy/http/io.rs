//! The client side socket as hyper sees it: every byte passes the [`Framing`] scanner, and
//! reads time out per the node's header-read and idle timeouts.
//!
//! Timeouts live here rather than in hyper because hyper's single `header_read_timeout`
//! also runs while a keep-alive connection sits idle between requests, which would make
//! the idle timeout equal to the (much shorter) header timeout. Here:
//! - a new connection, and a request head once its first byte arrived, must be complete
//!   within `header_read_timeout` (slowloris);
//! - a connection with no request in flight is closed after `http_idle_timeout`;
//! - while a request is in flight (or the connection became a tunnel) nothing times out
//!   here: the backend timeout and the tunnel's own idle timeout apply.
//!
//! A timeout is an `io::ErrorKind::TimedOut` read error, which makes hyper drop the
//! connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framing, POISON_CHUNK, POISON_HEAD};

/// Bytes read from the socket per call while framing is checked.
const READ_CHUNK: usize = 8192;

/// What the connection's requests tell its socket wrapper.
#[derive(Debug)]
pub(crate) struct ConnShared {
    start: Instant,
    in_flight: AtomicU32,
    /// When the last in-flight request finished, in ms since `start`.
    idle_since_ms: AtomicU64,
    /// Requests started so far.
    served: AtomicU64,
    /// The connection was upgraded: no framing, no timeouts.
    tunnel: AtomicBool,
    /// The task reading the socket, woken when the connection turns idle so it arms the
    /// idle timer.
    reader: AtomicWaker,
}

impl ConnShared {
    pub(crate) fn new() -> Arc<Self> {
        ConnShared::resumed(0)
    }

    /// The state of a connection that has served `served` requests and has none in
    /// flight (one coming back from the idle set: see `conn::Asleep`).
    pub(crate) fn resumed(served: u64) -> Arc<Self> {
        Arc::new(ConnShared {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicU64::new(served),
            tunnel: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        })
    }

    /// Requests started so far.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    /// Marks a request as started; the connection is busy until the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The connection is becoming a tunnel (101 Switching Protocols or CONNECT).
    pub(crate) fn set_tunnel(&self) {
        self.tunnel.store(true, Ordering::Release);
    }

    pub(crate) fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.0.idle_since_ms.store(ms, Ordering::Release);
            self.0.reader.wake();
        }
    }
}

/// Timeouts of [`ClientIo`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head must be complete this long after its first byte.
    pub head: Duration,
    /// A connection without a request in flight closes after this.
    pub idle: Duration,
}

/// A keep-alive connection taken back from hyper while it idles (see
/// [`ClientIo::park_into`]): the socket and the framing state, no buffers.
pub(crate) struct Parked<S> {
    /// The client socket.
    pub io: S,
    framing: Framing,
}

impl<S> Parked<S> {
    /// A parked connection of socket `io` with the framing state it had.
    pub(crate) fn new(io: S, framing: Framing) -> Self {
        Parked { io, framing }
    }

    /// The socket and the framing state.
    pub(crate) fn into_parts(self) -> (S, Framing) {
        (self.io, self.framing)
    }
}

/// Where a parked connection is handed back, and after how much idleness.
struct Park<S> {
    after: Duration,
    to: tokio::sync::oneshot::Sender<Parked<S>>,
}

/// The client socket wrapped for hyper. See the module documentation.
pub(crate) struct ClientIo<S> {
    /// `None` only while being dropped after a park.
    io: Option<S>,
    park: Option<Park<S>>,
    /// Hyper was told EOF so that it lets go of an idle connection; the socket goes back
    /// through `park` when hyper drops this.
    parked: bool,
    /// When this continued a parked connection (parks are at least `after` apart).
    resumed_at: Option<Instant>,
    shared: Arc<ConnShared>,
    framing: Framing,
    /// Read from the socket, not yet handed on; `buf[..ready]` is validated.
    buf: BytesMut,
    ready: usize,
    /// A request was refused: what follows is read and discarded.
    poisoned: bool,
    eof: bool,
    /// When the first byte of the head being read arrived.
    head_started: Option<Instant>,
    timeouts: Timeouts,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    peer: std::net::SocketAddr,
}

impl<S> ClientIo<S> {
    /// Wraps `io`; `h2` when ALPN already chose HTTP/2 (no HTTP/1 framing to check).
    pub(crate) fn new(
        io: S,
        shared: Arc<ConnShared>,
        max_head: usize,
        timeouts: Timeouts,
        h2: bool,
        peer: std::net::SocketAddr,
    ) -> Self {
        let mut framing = Framing::new(max_head);
        if h2 {
            framing.passthrough();
        }
        ClientIo {
            io: Some(io),
            park: None,
            parked: false,
            resumed_at: None,
            shared,
            framing,
            buf: BytesMut::new(),
            ready: 0,
            poisoned: false,
            eof: false,
            head_started: None,
            timeouts,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            armed: None,
            peer,
        }
    }

    /// Continues a parked connection: the framing state is kept, the buffers are new.
    pub(crate) fn resume(
        parked: Parked<S>,
        shared: Arc<ConnShared>,
        timeouts: Timeouts,
        peer: std::net::SocketAddr,
    ) -> Self {
        let mut io = ClientIo::new(parked.io, shared, 0, timeouts, false, peer);
        io.framing = parked.framing;
        io.resumed_at = Some(Instant::now());
        io
    }

    /// Lets hyper go when the connection has idled `after` between requests with nothing
    /// buffered: hyper reads EOF and ends its connection (freeing its read and write
    /// buffers, ~16 KiB), and the socket is sent to `to` to wait for the next request
    /// without any buffer. HTTP/1 only (an HTTP/2 connection is never idle this way).
    pub(crate) fn park_into(
        &mut self,
        after: Duration,
        to: tokio::sync::oneshot::Sender<Parked<S>>,
    ) {
        self.park = Some(Park { after, to });
    }

    /// When an idle connection is handed back, if it may be.
    fn park_at(&self) -> Option<Instant> {
        let park = self.park.as_ref()?;
        let idle = !self.framing.is_passthrough()
            && !self.poisoned
            && !self.eof
            && self.buf.is_empty()
            && self.framing.between_requests()
            && self.shared.served.load(Ordering::Relaxed) > 0
            // Every head hyper got is being (or was) served: hyper holds no request it
            // has parsed but not dispatched yet (it reads ahead before it dispatches).
            && self.shared.served.load(Ordering::Acquire) == self.framing.heads()
            && self.shared.in_flight.load(Ordering::Acquire) == 0
            && !self.shared.tunnel.load(Ordering::Acquire);
        let since = match self.resumed_at {
            Some(r) => r.max(self.shared.idle_since()),
            None => self.shared.idle_since(),
        };
        idle.then(|| since + park.after)
    }

    fn io_mut(&mut self) -> io::Result<Pin<&mut S>>
    where
        S: Unpin,
    {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::other("the connection was handed back"))
    }

    /// When the pending read must give up, if at all.
    fn deadline(&self) -> Option<Instant> {
        if self.shared.tunnel.load(Ordering::Acquire)
            || self.shared.in_flight.load(Ordering::Acquire) > 0
        {
            return None;
        }
        let idle = self.shared.idle_since() + self.timeouts.idle;
        if self.framing.is_passthrough() {
            return Some(idle);
        }
        if !self.framing.between_requests() {
            return None;
        }
        let partial = self.buf.len() > self.ready;
        if partial || self.shared.served.load(Ordering::Relaxed) == 0 {
            return Some(self.head_started.unwrap_or(self.shared.start) + self.timeouts.head);
        }
        Some(idle)
    }

    /// Called when the socket has nothing: arms the timer for the current deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        // A head that is still incomplete now started arriving with the read that just
        // ran (a head that arrives whole, the common case, never gets here: no clock
        // reading per request for it).
        if self.head_started.is_none()
            && self.buf.len() > self.ready
            && self.framing.between_requests()
        {
            self.head_started = Some(now);
        }
        let park = self.park_at();
        let Some(deadline) = self.deadline().into_iter().chain(park).min() else {
            return Poll::Pending;
        };
        if park == Some(deadline) && now >= deadline {
            // EOF for hyper, which then ends the connection and drops us (see `Drop`).
            self.parked = true;
            self.eof = true;
            return Poll::Ready(Ok(()));
        }
        if now >= deadline {
            return Poll::Ready(Err(self.timed_out()));
        }
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) if park == Some(deadline) => {
                self.parked = true;
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out(&self) -> io::Error {
        let busy_head =
            self.buf.len() > self.ready || self.shared.served.load(Ordering::Relaxed) == 0;
        let what = if busy_head {
            "request head not received in time"
        } else {
            "idle timeout"
        };
        tracing::debug!(client = %self.peer, what, "closing client connection");
        if busy_head {
            metrics::counter!("fiberlb_http_header_timeouts_total").increment(1);
        }
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<S: AsyncRead + Unpin> ClientIo<S> {
    /// Hands validated bytes to `out`.
    fn hand_over(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ready.min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        self.ready -= n;
        if self.buf.is_empty() {
            // Give the allocation back: an idle keep-alive connection then holds no
            // buffer here, and the next request allocates just its own size.
            self.buf = BytesMut::new();
        }
    }

    /// Scans what was read; on a refusal swaps in a request hyper answers with 400.
    fn scan(&mut self) {
        if let Err(r) = self.framing.scan(&self.buf, &mut self.ready) {
            tracing::info!(client = %self.peer, reason = r.reason, "request refused with 400: framing could be used for smuggling");
            metrics::counter!("fiberlb_http_rejected_requests_total", "reason" => r.reason)
                .increment(1);
            self.buf.truncate(self.ready);
            self.buf
                .extend_from_slice(if r.in_head { POISON_HEAD } else { POISON_CHUNK });
            self.ready = self.buf.len();
            self.poisoned = true;
            self.framing.passthrough();
        }
        if self.buf.len() == self.ready {
            self.head_started = None;
        }
    }
}

impl<S: AsyncRead + Unpin> ClientIo<S> {
    /// Reads once from the socket into the buffer and scans it. `Ready(Ok)` when bytes
    /// arrived or the socket reached EOF; `Pending` with the deadline armed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Uninitialised: zeroing 8 KiB per read showed in profiles.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut rb = ReadBuf::uninit(&mut chunk);
        let io = match self.io_mut() {
            Ok(io) => io,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match io.poll_read(cx, &mut rb) {
            Poll::Pending => return self.poll_deadline(cx),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        let got = rb.filled();
        if got.is_empty() {
            // EOF: whatever is held goes to hyper, which sees an incomplete message.
            self.eof = true;
            if !self.poisoned {
                self.ready = self.buf.len();
            }
        } else if !self.poisoned {
            self.buf.extend_from_slice(got);
            self.scan();
        }
        Poll::Ready(Ok(()))
    }

    /// Reads until the protocol is known: `true` for the HTTP/2 preface (h2c by prior
    /// knowledge), `false` for HTTP/1. The bytes stay buffered for hyper.
    pub(crate) fn poll_detect(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        self.shared.reader.register(cx.waker());
        loop {
            if !self.framing.at_start() || self.eof {
                return Poll::Ready(Ok(self.framing.saw_h2()));
            }
            if let Err(e) = std::task::ready!(self.poll_fill(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }

    /// [`ClientIo::poll_detect`] as a future.
    pub(crate) async fn detect(&mut self) -> io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_detect(cx)).await
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.shared.reader.register(cx.waker());
        if this.shared.tunnel.load(Ordering::Acquire) && !this.framing.is_passthrough() {
            this.framing.passthrough();
            this.ready = this.buf.len();
        }
        loop {
            if this.ready > 0 {
                this.hand_over(out);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.framing.is_passthrough() && !this.poisoned && this.buf.is_empty() {
                let io = match this.io_mut() {
                    Ok(io) => io,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                return match io.poll_read(cx, out) {
                    Poll::Pending => this.poll_deadline(cx),
                    ready => ready,
                };
            }
            if let Err(e) = std::task::ready!(this.poll_fill(cx)) {
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.io_mut() {
            Ok(io) => io.poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io_mut() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io_mut() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parked {
            // Not closed: the socket goes back to wait for the next request.
            return Poll::Ready(Ok(()));
        }
        match self.io_mut() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<S> Drop for ClientIo<S> {
    fn drop(&mut self) {
        if !self.parked {
            return;
        }
        if let (Some(park), Some(io)) = (self.park.take(), self.io.take()) {
            let framing = std::mem::replace(&mut self.framing, Framing::new(0));
            // The receiver is gone only if the connection task is ending: then so is this.
            let _ = park.to.send(Parked { io, framing });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn wrap(
        io: tokio::io::DuplexStream,
        head: u64,
        idle: u64,
    ) -> (ClientIo<tokio::io::DuplexStream>, Arc<ConnShared>) {
        let shared = ConnShared::new();
        let t = Timeouts {
            head: Duration::from_millis(head),
            idle: Duration::from_millis(idle),
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        (
            ClientIo::new(io, shared.clone(), 8192, t, false, peer),
            shared,
        )
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_after_the_header_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(server, 100, 10_000);
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn idle_keep_alive_uses_the_idle_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut io, shared) = wrap(server, 10, 300);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        drop(shared.begin());
        let started = tokio::time::Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // The idle timeout (300 ms) applies, not the 10 ms header timeout.
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_refused_head_becomes_a_request_hyper_rejects() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(server, 1000, 1000);
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await
            .unwrap();
        drop(client);
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, POISON_HEAD);
    }
}
