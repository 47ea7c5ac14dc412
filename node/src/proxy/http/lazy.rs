//! A client socket registered with the reactor only once it has to wait (see
//! `proxy::accept`): reads and writes go straight to the non-blocking socket until one
//! would block; then the socket is handed to tokio, and everything after goes through
//! tokio. A short connection served without waiting is closed without ever having been
//! in epoll (two `epoll_ctl` calls fewer).

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// See the module documentation.
#[derive(Debug)]
pub enum LazyTcp {
    /// Not registered yet.
    Plain(std::net::TcpStream),
    /// Registered with the current worker's reactor.
    Tokio(TcpStream),
    /// Registration failed; the error was returned once.
    Gone,
}

impl LazyTcp {
    /// A non-blocking socket, not registered yet.
    pub fn new(stream: std::net::TcpStream) -> Self {
        LazyTcp::Plain(stream)
    }

    /// The socket as tokio's, registering it first if need be.
    pub fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if let LazyTcp::Plain(_) = self {
            let LazyTcp::Plain(s) = std::mem::replace(self, LazyTcp::Gone) else {
                unreachable!("matched just above");
            };
            *self = LazyTcp::Tokio(TcpStream::from_std(s)?);
        }
        match self {
            LazyTcp::Tokio(s) => Ok(s),
            _ => Err(io::Error::other(
                "the client socket could not be registered",
            )),
        }
    }

    /// The plain non-blocking socket, taken out of the reactor if it was registered.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        match self {
            LazyTcp::Plain(s) => Ok(s),
            LazyTcp::Tokio(s) => s.into_std(),
            LazyTcp::Gone => Err(io::Error::other("the client socket is gone")),
        }
    }

    /// Waits until a read would make progress (registering the socket).
    pub async fn readable(&mut self) -> io::Result<()> {
        self.registered()?.readable().await
    }
}

/// `Ready` with the result, or `None` when the plain socket would block.
fn unless_blocked<T>(r: io::Result<T>) -> Option<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(r),
    }
}

impl AsyncRead for LazyTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let LazyTcp::Plain(s) = this {
            let sock = socket2::SockRef::from(&*s);
            // SAFETY: `recv` writes at most the bytes it returns, so they are initialised.
            if let Some(r) = unless_blocked(sock.recv(unsafe { buf.unfilled_mut() })) {
                return Poll::Ready(r.map(|n| {
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                }));
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LazyTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let LazyTcp::Plain(s) = this {
            if let Some(r) = unless_blocked(s.write(data)) {
                return Poll::Ready(r);
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write(cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let LazyTcp::Plain(s) = this {
            if let Some(r) = unless_blocked(s.write_vectored(bufs)) {
                return Poll::Ready(r);
            }
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LazyTcp::Plain(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            LazyTcp::Tokio(s) => Pin::new(s).poll_shutdown(cx),
            LazyTcp::Gone => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (LazyTcp, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let s = s.into_std().unwrap();
        (LazyTcp::new(s), client)
    }

    #[tokio::test]
    async fn data_already_there_is_read_without_registering() {
        let (mut s, mut client) = pair().await;
        client.write_all(b"hello").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        s.write_all(b"world").await.unwrap();
        assert!(matches!(s, LazyTcp::Plain(_)), "never had to wait");
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"world");
    }

    #[tokio::test]
    async fn a_read_that_has_to_wait_registers_and_is_woken() {
        let (mut s, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await.unwrap();
            (buf[..n].to_vec(), matches!(s, LazyTcp::Tokio(_)))
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        client.write_all(b"late").await.unwrap();
        let (got, registered) = reader.await.unwrap();
        assert_eq!(got, b"late");
        assert!(registered);
    }
}
