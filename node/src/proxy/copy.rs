//! Bidirectional TCP splicing that holds no buffer while a connection is idle.
//!
//! Each direction waits for readability first and only then borrows a buffer from a
//! per-thread pool, so thousands of idle proxied connections cost a task and two sockets,
//! not 2 × 64 KiB. Half-close is forwarded (EOF on one side shuts down writing on the
//! other) and the copy ends on an error in either direction, on the idle timeout, or when
//! `cancel` fires (drain deadline, shutdown). A direction that turns out bulk (a read
//! fills the whole buffer) continues with splice(2) through a pipe (`zero_copy`).

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Buffers kept per thread for reuse.
const POOL_DEPTH: usize = 64;

thread_local! {
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn take_buffer(size: usize) -> Vec<u8> {
    BUFFERS
        .with(|b| b.borrow_mut().pop())
        .filter(|v| v.len() == size)
        .unwrap_or_else(|| vec![0u8; size])
}

pub(crate) fn give_buffer(buf: Vec<u8>) {
    BUFFERS.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < POOL_DEPTH {
            b.push(buf);
        }
    });
}

/// Why a copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// Both directions reached EOF.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Cancelled from outside.
    Cancelled,
}

/// Bytes moved in each direction.
#[derive(Debug, Default)]
pub struct Transferred<'a> {
    /// Client → backend.
    pub to_backend: AtomicU64,
    /// Backend → client.
    pub to_client: AtomicU64,
    /// Metric counters fed as the bytes move (client → backend, backend → client), so a
    /// long-lived connection shows up in the byte counters while it lasts, not when it ends.
    live: Option<[&'a metrics::Counter; 2]>,
}

impl<'a> Transferred<'a> {
    /// Counts into `to_backend` and `to_client` as well as into the totals.
    pub fn counting(to_backend: &'a metrics::Counter, to_client: &'a metrics::Counter) -> Self {
        Transferred {
            live: Some([to_backend, to_client]),
            ..Transferred::default()
        }
    }
}

/// One direction's byte count and its metric counter.
struct Moved<'a> {
    bytes: &'a AtomicU64,
    counter: Option<&'a metrics::Counter>,
}

impl Moved<'_> {
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = self.counter {
            c.increment(n as u64);
        }
    }
}

struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    /// Directions that reached EOF: the second one needs no `shutdown`, the sockets are
    /// about to be closed anyway (one system call fewer per connection).
    finished: std::sync::atomic::AtomicU8,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Forwards the half-close of `src` to `dst` (unless the other direction already ended:
/// the sockets are about to be closed anyway).
fn finish(dst: &TcpStream, act: &Activity) {
    if act.finished.fetch_add(1, Ordering::Relaxed) == 0 {
        // The other direction may still be talking.
        let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    }
}

async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    buf_size: usize,
    zero_copy: bool,
    moved: Moved<'_>,
    act: &Activity,
) -> io::Result<()> {
    loop {
        src.readable().await?;
        let mut buf = take_buffer(buf_size);
        let n = match read_drained(src, &mut buf) {
            Ok(0) => {
                give_buffer(buf);
                finish(dst, act);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give_buffer(buf);
                continue;
            }
            Err(e) => {
                give_buffer(buf);
                return Err(e);
            }
        };
        act.touch();
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    give_buffer(buf);
                    return Err(e);
                }
            }
        }
        give_buffer(buf);
        moved.add(n);
        act.touch();
        // A read that filled the whole buffer: a bulk transfer. The rest of this
        // direction goes through a pipe without copying (when a pipe can be had).
        if zero_copy && n == buf_size {
            if let Ok(pipe) = super::zero_copy::Pipe::new() {
                // Boxed: inline, its state would be part of every connection's task,
                // idle ones included, and only bulk directions ever get here.
                Box::pin(super::zero_copy::pump(src, dst, &pipe, |k| {
                    moved.add(k);
                    act.touch();
                }))
                .await?;
                finish(dst, act);
                return Ok(());
            }
        }
    }
}

/// Reads once. A short read means the receive queue was empty at that moment, so the
/// socket's readiness is cleared right away (as tokio's own `poll_read` does) instead of
/// finding out with one more `recv` that fails with `EAGAIN`: one system call fewer per
/// direction per burst. Safe against lost wake-ups: data arriving after the read raises a
/// new readiness event whose tick the clear does not touch, and a pending EOF keeps the
/// (never cleared) read-closed flag set.
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut short = None;
    let r = src.try_io(tokio::io::Interest::READABLE, || {
        let sock = socket2::SockRef::from(src);
        let n = (&*sock).read(buf)?;
        if n > 0 && n < buf.len() {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, short) {
        (Err(e), Some(n)) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
        (r, _) => r,
    }
}

/// How a connection's bytes are copied.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Copy buffer size (`[proxy] recv_buffer_size`).
    pub buf_size: usize,
    /// Bulk directions switch to splice(2) through a pipe (`[proxy] zero_copy`).
    pub zero_copy: bool,
    /// Nothing moving for this long ends the copy.
    pub idle: Duration,
}

/// Copies between `client` and `backend` until both sides are done, one fails, the
/// connection idles for `opts.idle`, or `cancel` fires.
pub async fn splice(
    client: &TcpStream,
    backend: &TcpStream,
    opts: CopyOptions,
    cancel: &CancellationToken,
    moved: &Transferred<'_>,
) -> io::Result<CopyEnd> {
    let CopyOptions {
        buf_size,
        zero_copy,
        idle,
    } = opts;
    let act = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        finished: std::sync::atomic::AtomicU8::new(0),
    };
    let both = futures::future::try_join(
        pump(
            client,
            backend,
            buf_size,
            zero_copy,
            Moved {
                bytes: &moved.to_backend,
                counter: moved.live.map(|l| l[0]),
            },
            &act,
        ),
        pump(
            backend,
            client,
            buf_size,
            zero_copy,
            Moved {
                bytes: &moved.to_client,
                counter: moved.live.map(|l| l[1]),
            },
            &act,
        ),
    );
    let watchdog = async {
        loop {
            let last = Duration::from_millis(act.last_ms.load(Ordering::Relaxed));
            let since = act.start.elapsed().saturating_sub(last);
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    tokio::select! {
        r = both => r.map(|_| CopyEnd::Done),
        _ = watchdog => Ok(CopyEnd::Idle),
        _ = cancel.cancelled() => Ok(CopyEnd::Cancelled),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn opts(buf_size: usize, idle: Duration) -> CopyOptions {
        CopyOptions {
            buf_size,
            zero_copy: true,
            idle,
        }
    }

    /// Both ends of a loopback TCP connection (tests of the copy paths).
    pub(crate) async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        // client_app <-> (c_near, c_far) proxy (b_near, b_far) <-> backend_app
        let (mut client_app, c_far) = pair().await;
        let (b_near, mut backend_app) = pair().await;
        let moved = Transferred::default();
        let cancel = CancellationToken::new();
        // Like the real handler, the proxy closes both sockets once the copy is done.
        let proxy = async {
            let r = splice(
                &c_far,
                &b_near,
                opts(1024, Duration::from_secs(5)),
                &cancel,
                &moved,
            )
            .await;
            drop((c_far, b_near));
            r
        };
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let apps = async {
            client_app.write_all(&payload).await.unwrap();
            client_app.shutdown().await.unwrap();
            let mut got = Vec::new();
            backend_app.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, payload);
            backend_app
                .write_all(b"reply after half-close")
                .await
                .unwrap();
            backend_app.shutdown().await.unwrap();
            let mut back = Vec::new();
            client_app.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"reply after half-close");
        };
        let (end, ()) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(proxy, apps) })
                .await
                .unwrap();
        assert_eq!(end.unwrap(), CopyEnd::Done);
        assert_eq!(
            moved.to_backend.load(Ordering::Relaxed),
            payload.len() as u64
        );
    }

    #[tokio::test]
    async fn idle_and_cancel_end_the_copy() {
        let (_client_app, c_far) = pair().await;
        let (b_near, _backend_app) = pair().await;
        let moved = Transferred::default();
        let cancel = CancellationToken::new();
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            splice(
                &c_far,
                &b_near,
                opts(1024, Duration::from_millis(100)),
                &cancel,
                &moved,
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(end, CopyEnd::Idle);
        cancel.cancel();
        let end = splice(
            &c_far,
            &b_near,
            opts(1024, Duration::from_secs(60)),
            &cancel,
            &moved,
        )
        .await
        .unwrap();
        assert_eq!(end, CopyEnd::Cancelled);
    }
}
