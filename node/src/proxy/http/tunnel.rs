//! Upgraded connections (WebSocket and any other `Upgrade`): once the backend answered
//! `101 Switching Protocols`, both sides are taken over (the client's from our HTTP/1
//! server, the backend's from hyper's client) and bytes are copied
//! both ways until either side closes, nothing moves for the listener's client timeout,
//! the backend is cut off (drain deadline) or the node shuts down. Bytes are counted as
//! they move (`fiberlb_bytes_in_total`/`_out_total` of the request's LB, listener and
//! backend, and `fiberlb_tunnel_bytes_total`), so a WebSocket shows while it is open and
//! counts however it ends.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::Active;

/// Copies between the two upgraded sides in a task of its own.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    client: super::h1::OnUpgrade,
    backend: OnUpgrade,
    idle: Duration,
    shutdown: CancellationToken,
    close: CancellationToken,
    active: Active,
    peer: SocketAddr,
    backend_addr: SocketAddr,
    counters: Counters,
) {
    tokio::spawn(async move {
        let _active = active;
        let (c, b) = match tokio::join!(client.wait(), backend) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) => {
                tracing::debug!(client = %peer, backend = %backend_addr, error = %e, "upgrade failed");
                return;
            }
            (_, Err(e)) => {
                tracing::debug!(client = %peer, backend = %backend_addr, error = %e, "upgrade failed");
                return;
            }
        };
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let mut c = Touch {
            io: c,
            start,
            last: last.clone(),
            counters,
        };
        let mut b = TokioIo::new(b);
        let end = tokio::select! {
            r = tokio::io::copy_bidirectional(&mut c, &mut b) => match r {
                Ok(_) => "closed",
                Err(_) => "error",
            },
            _ = idle_for(start, &last, idle) => "idle timeout",
            _ = shutdown.cancelled() => "node shutdown",
            _ = close.cancelled() => "backend closed",
        };
        tracing::debug!(client = %peer, backend = %backend_addr, end, "tunnel ended");
    });
}

/// Resolves once nothing moved for `idle`.
async fn idle_for(start: Instant, last: &AtomicU64, idle: Duration) {
    loop {
        let seen = last.load(Ordering::Relaxed);
        tokio::time::sleep_until(start + Duration::from_millis(seen) + idle).await;
        if last.load(Ordering::Relaxed) == seen {
            return;
        }
    }
}

/// Stamps the time of every read and write on the client side (both directions pass it)
/// and counts the bytes.
struct Touch<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
    counters: Counters,
}

/// Where a tunnel's bytes are counted (registered once per tunnel).
pub struct Counters {
    tunnel_in: metrics::Counter,
    tunnel_out: metrics::Counter,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

impl Counters {
    /// The counters of a tunnel through listener `listener` of `lb` to `backend`.
    pub fn new(lb: &str, listener: &str, backend: &str) -> Self {
        let labels = [
            ("lb", lb.to_string()),
            ("listener", listener.to_string()),
            ("backend", backend.to_string()),
        ];
        Counters {
            tunnel_in: metrics::counter!("fiberlb_tunnel_bytes_total", "direction" => "in"),
            tunnel_out: metrics::counter!("fiberlb_tunnel_bytes_total", "direction" => "out"),
            bytes_in: metrics::counter!("fiberlb_bytes_in_total", &labels),
            bytes_out: metrics::counter!("fiberlb_bytes_out_total", &labels),
        }
    }
}

impl<T> Touch<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if r.is_ready() {
            self.touch();
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                self.counters.tunnel_in.increment(n);
                self.counters.bytes_in.increment(n);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(res) = &r {
            self.touch();
            if let Ok(n) = res {
                self.counters.tunnel_out.increment(*n as u64);
                self.counters.bytes_out.increment(*n as u64);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
