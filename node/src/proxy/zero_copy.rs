//! Zero-copy forwarding for bulk TCP transfers: splice(2) moves bytes from one socket
//! into a pipe and from the pipe into the other socket, so the payload never crosses
//! into user space (HAProxy's `option splice-auto` does the same).
//!
//! A pipe costs two file descriptors and kernel memory, so it is made only for a
//! direction that has shown itself bulk (a read that filled the whole copy buffer);
//! request/response chatter and idle connections keep using the pooled buffers of
//! `copy`, which cost nothing while idle.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per splice call at most.
const CHUNK: usize = 1 << 20;
/// Pipe capacity asked for.
const PIPE_SIZE: libc::c_int = 512 * 1024;

/// A non-blocking pipe, closed on drop.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A new pipe; fails like pipe2(2) does (EMFILE when out of descriptors).
    pub fn new() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: pipe2 writes two descriptors into the two-element array it is given.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per call (the default holds 64 KiB). Best effort: an
        // unprivileged process may be held to less by fs.pipe-user-pages-soft.
        // SAFETY: fcntl on a descriptor we own; no pointers involved.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe { read, write })
    }
}

/// One non-blocking splice(2) of up to `len` bytes from `from` to `to`.
fn splice_once(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors, no offsets (sockets and pipes have none); the kernel
    // touches no memory of ours.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Moves everything `src` sends to `dst` through `pipe`, until `src` reaches end of
/// stream (`Ok`) or either side fails. `moved` is told each chunk delivered to `dst`.
pub async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    mut moved: impl FnMut(usize),
) -> io::Result<()> {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let (pipe_r, pipe_w) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing queued
        // (and clearing its readiness is right). A short splice proves nothing (the pipe
        // may have run out of slots), so no readiness is cleared on one.
        src.readable().await?;
        let n = match src.try_io(Interest::READABLE, || splice_once(src_fd, pipe_w, CHUNK)) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || splice_once(pipe_r, dst_fd, left)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => left -= k.min(left),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        moved(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::copy::tests::pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn moves_a_large_stream_byte_exact() {
        let (mut sender, src) = pair().await;
        let (dst, mut receiver) = pair().await;
        let pipe = Pipe::new().unwrap();
        let payload: Vec<u8> = (0..8_000_000u32)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect();
        let mut total = 0usize;
        let proxy = async {
            pump(&src, &dst, &pipe, |n| total += n).await.unwrap();
            drop(dst);
        };
        let send = async {
            sender.write_all(&payload).await.unwrap();
            sender.shutdown().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), (), got) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            tokio::join!(proxy, send, recv)
        })
        .await
        .unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "bytes differ");
        assert_eq!(total, payload.len());
    }
}
