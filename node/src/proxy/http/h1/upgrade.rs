//! The client side of an upgraded connection (WebSocket and any other `Upgrade`): once
//! the `101 Switching Protocols` head is written, the connection hands its socket, with
//! whatever the client already sent past the request, to the request's tunnel.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A client socket of any kind (plain or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's connection after `101 Switching Protocols`.
pub struct Upgraded {
    /// Read from the client before the switch, not yet consumed.
    pre: Bytes,
    io: Box<dyn Io>,
}

impl Upgraded {
    pub(crate) fn new(io: Box<dyn Io>, pre: Bytes) -> Self {
        Upgraded { pre, io }
    }
}

/// The upgrade a request may get, found in its extensions (HTTP/1 requests asking for
/// one). Resolves once the 101 was written; fails if the connection ended otherwise.
/// (Shared and cloneable because request extensions must be; the first to wait takes it.)
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The connection was not upgraded.
#[derive(Debug, thiserror::Error)]
#[error("the client connection was not upgraded")]
pub struct NotUpgraded;

impl OnUpgrade {
    pub(crate) fn new(rx: oneshot::Receiver<Upgraded>) -> Self {
        OnUpgrade(Arc::new(Mutex::new(Some(rx))))
    }

    /// Waits for the upgraded connection.
    pub async fn wait(self) -> Result<Upgraded, NotUpgraded> {
        let rx = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(NotUpgraded)?;
        rx.await.map_err(|_| NotUpgraded)
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
