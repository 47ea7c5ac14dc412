//! The client socket before its protocol is known, and under HTTP/2: the HTTP/2 preface
//! is told from HTTP/1 here, and reads time out per the node's header-read and idle
//! timeouts.
//!
//! - a new connection's first bytes must arrive within `header_read_timeout`;
//! - an HTTP/2 connection with no request in flight is closed after `http_idle_timeout`;
//! - while a request is in flight nothing times out here: the backend timeout applies.
//!
//! A timeout is an `io::ErrorKind::TimedOut` read error, which ends the connection.

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

/// The HTTP/2 connection preface: an h2c client (prior knowledge) is not HTTP/1.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection's requests tell its socket wrapper.
#[derive(Debug)]
pub(crate) struct ConnShared {
    start: Instant,
    in_flight: AtomicU32,
    /// When the last in-flight request finished, in ms since `start`.
    idle_since_ms: AtomicU64,
    /// Requests started so far.
    served: AtomicU64,
    /// The task reading the socket, woken when the connection turns idle so it arms the
    /// idle timer.
    reader: AtomicWaker,
    /// Whether `idle_since_ms` is kept (for [`ClientIo`]'s idle timeout; our HTTP/1
    /// server keeps its own, and saves the clock reading per request).
    stamps: AtomicBool,
}

impl ConnShared {
    pub(crate) fn new() -> Arc<Self> {
        ConnShared::with(0, true)
    }

    /// The state of an HTTP/1 connection that has served `served` requests and has none
    /// in flight (one coming back from the idle set: see `conn::Asleep`).
    pub(crate) fn resumed(served: u64) -> Arc<Self> {
        ConnShared::with(served, false)
    }

    fn with(served: u64, stamps: bool) -> Arc<Self> {
        Arc::new(ConnShared {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicU64::new(served),
            reader: AtomicWaker::new(),
            stamps: AtomicBool::new(stamps),
        })
    }

    /// The connection went to our HTTP/1 server, which times idleness itself: requests
    /// no longer stamp when they end.
    pub(crate) fn stop_stamping(&self) {
        self.stamps.store(false, Ordering::Relaxed);
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

    pub(crate) fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.stamps.load(Ordering::Relaxed)
        {
            let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.0.idle_since_ms.store(ms, Ordering::Release);
            self.0.reader.wake();
        }
    }
}

/// Timeouts of a client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head must be complete this long after its first byte.
    pub head: Duration,
    /// A connection without a request in flight closes after this.
    pub idle: Duration,
}

/// The client socket until its protocol is known, and for HTTP/2 after: reads time out
/// when no request is in flight for the idle timeout. (HTTP/1 connections are handed to
/// our HTTP/1 server, which keeps its own timers: see `h1::server`.)
pub(crate) struct ClientIo<S> {
    io: S,
    shared: Arc<ConnShared>,
    /// Read while the protocol was being detected, handed out first.
    buf: BytesMut,
    eof: bool,
    timeouts: Timeouts,
    /// Made the first time a read has to wait (most first flights are there at once).
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    peer: std::net::SocketAddr,
}

impl<S> ClientIo<S> {
    /// Wraps `io`.
    pub(crate) fn new(
        io: S,
        shared: Arc<ConnShared>,
        timeouts: Timeouts,
        peer: std::net::SocketAddr,
    ) -> Self {
        ClientIo {
            io,
            shared,
            buf: BytesMut::new(),
            eof: false,
            timeouts,
            sleep: None,
            armed: None,
            peer,
        }
    }

    /// The socket and what was read from it so far.
    pub(crate) fn into_parts(self) -> (S, BytesMut) {
        (self.io, self.buf)
    }

    /// When the pending read must give up, if at all: the first request is due within
    /// the header timeout (detection), later ones within the idle timeout of the last.
    fn deadline(&self) -> Option<Instant> {
        if self.shared.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.shared.served.load(Ordering::Relaxed) == 0 && !self.detected() {
            return Some(self.shared.start + self.timeouts.head);
        }
        Some(self.shared.idle_since() + self.timeouts.idle)
    }

    /// Whether enough was read to tell HTTP/2's preface from HTTP/1.
    fn detected(&self) -> bool {
        let n = self.buf.len().min(H2_PREFACE.len());
        self.eof || n == H2_PREFACE.len() || self.buf[..n] != H2_PREFACE[..n]
    }

    /// Called when the socket has nothing: arms the timer for the current deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(Err(self.timed_out()));
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if self.armed != Some(deadline) {
            sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out(&self) -> io::Error {
        let first = self.shared.served.load(Ordering::Relaxed) == 0;
        let what = if first {
            "request head not received in time"
        } else {
            "idle timeout"
        };
        tracing::debug!(client = %self.peer, what, "closing client connection");
        if first {
            metrics::counter!("fiberlb_http_header_timeouts_total").increment(1);
        }
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<S: AsyncRead + Unpin> ClientIo<S> {
    /// Reads until the protocol is known: `true` for the HTTP/2 preface (h2c by prior
    /// knowledge), `false` for anything else. The bytes stay buffered.
    pub(crate) fn poll_detect(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if self.detected() {
                return Poll::Ready(Ok(self.buf.starts_with(H2_PREFACE)));
            }
            // One read takes the whole first flight (an HTTP/1 head, usually), so the
            // server that takes over does not need another system call for it.
            // Uninitialised: zeroing 8 KiB per connection shows in profiles.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    std::task::ready!(self.poll_deadline(cx))?;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if rb.filled().is_empty() {
                self.eof = true;
            } else {
                self.buf.extend_from_slice(rb.filled());
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
        if !this.buf.is_empty() {
            let n = this.buf.len().min(out.remaining());
            out.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            if this.buf.is_empty() {
                this.buf = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_read(cx, out) {
            Poll::Pending => this.poll_deadline(cx),
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        (ClientIo::new(io, shared.clone(), t, peer), shared)
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_after_the_header_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(server, 100, 10_000);
        let started = tokio::time::Instant::now();
        let err = io.detect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_preface_is_told_from_http1_and_the_bytes_stay() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(server, 1000, 1000);
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        assert!(io.detect().await.unwrap());
        let mut got = vec![0u8; H2_PREFACE.len()];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, H2_PREFACE);

        let (mut client, server) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(server, 1000, 1000);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(!io.detect().await.unwrap());
        let (_, buf) = io.into_parts();
        assert!(b"GET / HTTP/1.1\r\n".starts_with(&buf));
    }

    #[tokio::test]
    async fn idle_http2_uses_the_idle_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut io, shared) = wrap(server, 10, 300);
        client.write_all(H2_PREFACE).await.unwrap();
        assert!(io.detect().await.unwrap());
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], H2_PREFACE);
        drop(shared.begin());
        let started = tokio::time::Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // The idle timeout (300 ms) applies, not the 10 ms header timeout.
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
