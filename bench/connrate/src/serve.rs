//! Echo backend: echoes whatever arrives and holds every connection until the peer
//! closes it (the idle test needs backends that never hang up first).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::args::ServeOpts;

/// Deep enough for connection bursts of tens of thousands a second.
const BACKLOG: u32 = 4096;
/// Read size; buffers exist only while a read is being echoed, not per idle connection.
const CHUNK: usize = 16 * 1024;

/// Binds every `--listen` address, prints `listening ADDR` for each, serves until killed.
pub fn run(o: &ServeOpts) -> io::Result<()> {
    crate::runtime(o.threads)?.block_on(async {
        let mut out = io::stdout().lock();
        for addr in &o.listen {
            let l = bind(*addr)?;
            writeln!(out, "listening {}", l.local_addr()?)?;
            tokio::spawn(accept_loop(l));
        }
        out.flush()?;
        drop(out);
        std::future::pending::<io::Result<()>>().await
    })
}

/// A listening socket with SO_REUSEADDR and a deep backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(BACKLOG)
}

/// Accepts forever; a failed accept (out of descriptors) backs off instead of spinning.
pub async fn accept_loop(l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(echo(s));
            }
            Err(e) => {
                eprintln!("connrate serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    loop {
        if s.readable().await.is_err() {
            return;
        }
        let mut buf = vec![0u8; CHUNK];
        let n = match s.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
