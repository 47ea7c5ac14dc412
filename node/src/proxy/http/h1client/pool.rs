//! Idle keep-alive connections to one backend, reused last-in first-out (the warmest
//! socket first; the oldest age out).
//!
//! Nobody reads an idle connection, so a backend that closed it (its keep-alive timeout)
//! is noticed from the socket's readiness: anything readable on an idle HTTP/1
//! connection (end of stream, or bytes nobody asked for) makes it unusable. The check
//! costs no system call when the socket is quiet: tokio remembers readiness from the
//! event loop, and a response read to its end by a short read has already cleared it.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::super::client::BackendStream;

/// Idle connections kept per backend at most (more are closed).
const MAX_IDLE: usize = 4096;

/// The idle connections of one backend.
#[derive(Debug)]
pub struct IdlePool {
    idle: Mutex<Vec<(BackendStream, Instant)>>,
    timeout: Duration,
}

impl IdlePool {
    /// A pool whose connections are closed after `timeout` unused.
    pub fn new(timeout: Duration) -> Self {
        IdlePool {
            idle: Mutex::new(Vec::new()),
            timeout,
        }
    }

    /// The most recently used connection that is still usable.
    pub fn take(&self) -> Option<BackendStream> {
        let now = Instant::now();
        loop {
            let (stream, since) = self.lock().pop()?;
            if now.duration_since(since) < self.timeout && quiet(&stream) {
                return Some(stream);
            }
        }
    }

    /// Parks a connection whose last response was read to its end.
    pub fn put(&self, stream: BackendStream) {
        let evicted = {
            let mut idle = self.lock();
            idle.push((stream, Instant::now()));
            (idle.len() > MAX_IDLE).then(|| idle.remove(0))
        };
        drop(evicted);
    }

    /// Closes connections idle for longer than the timeout or closed by the backend.
    pub fn purge(&self) {
        let now = Instant::now();
        let stale: Vec<_> = {
            let mut idle = self.lock();
            let (keep, stale) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|(s, since)| now.duration_since(*since) < self.timeout && quiet(s));
            *idle = keep;
            stale
        };
        drop(stale);
    }

    /// Idle connections held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(BackendStream, Instant)>> {
        // A panic while holding the lock leaves a plain Vec behind: still consistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether an idle connection has nothing to read (so the backend has not closed it).
/// Reading the TCP socket under TLS is safe here: a probe that finds bytes condemns the
/// connection anyway, and one that finds none consumed nothing.
fn quiet(stream: &BackendStream) -> bool {
    let tcp = match stream {
        BackendStream::Plain(tcp) => tcp,
        BackendStream::Tls(tls) => tls.get_ref().0,
    };
    match tcp.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        // Readiness may be stale (left by the last response's reads): ask the socket.
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}
