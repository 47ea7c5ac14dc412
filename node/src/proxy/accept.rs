//! Accepting connections without registering them with the reactor.
//!
//! tokio's `TcpListener::accept` registers every accepted socket with epoll at once
//! (`epoll_ctl` ADD, and DEL when it is dropped). A short HTTP connection whose request is
//! already there when it is accepted, and whose response fits the socket buffer, never has
//! to wait on its client socket: it needs neither call (HAProxy does the same, "speculative
//! I/O"). So the listening socket is polled through [`AsyncFd`] and accepted sockets come
//! out as plain non-blocking `std` sockets; each protocol decides when to register them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// A listening socket polled by the current worker's reactor.
pub struct Acceptor(AsyncFd<std::net::TcpListener>);

impl Acceptor {
    /// Wraps a non-blocking listening socket; must run inside the runtime that accepts.
    pub fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        // SAFETY: the descriptor is the listener's, which the `AsyncFd` owns and never
        // replaces: it stays open, and the same, until the `AsyncFd` is dropped.
        let fd = unsafe {
            AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE)
                .map_err(|e| e.into_parts().1)?
        };
        Ok(Acceptor(fd))
    }

    /// The next connection: a non-blocking socket not registered with any reactor.
    pub async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|l| accept4(l.get_ref())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the socket is ready for non-blocking use
/// without another system call.
fn accept4(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let fd = listener.as_raw_fd();
    // SAFETY: `try_init` hands a zeroed `sockaddr_storage` and its length, which is what
    // accept4 fills; the returned descriptor is new and owned by nobody else.
    let (raw, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let rc = libc::accept4(
                fd,
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(rc)
            }
        })?
    };
    // SAFETY: `raw` is a descriptor accept4 just returned to us.
    let stream = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a socket that is not TCP/IP"))?;
    Ok((stream, peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn accepted_sockets_are_non_blocking_and_carry_their_peer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let acceptor = Acceptor::new(l).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (mut s, peer) = acceptor.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let mut buf = [0u8; 4];
        // Nothing sent yet: a blocking socket would hang here.
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.write_all(b"ping").unwrap();
        client.flush().unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            match s.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"ping");
    }
}
