//! A minimal HTTP/1.1 client exchange: one `GET`, one response read completely (length,
//! chunked or close-delimited body), 2xx required.
//!
//! Why not a client library: the tool needs exact control of the connection (its source
//! address, when it closes, that it is held open afterwards) and nothing else of HTTP.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::args::HttpTarget;
use crate::sock;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line accepted.
const MAX_LINE: usize = 1024;
/// Read size.
const CHUNK: usize = 8 * 1024;

/// The request bytes: `GET path` with `Host`, and `Connection: close` when `close`.
pub fn request(t: &HttpTarget, close: bool) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: connrate\r\nAccept: */*\r\n{}\r\n",
        t.path,
        t.host,
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes.
    Close,
}

/// Status and body framing of a complete response head (`head` ends with CRLF CRLF).
fn parse_head(head: &[u8]) -> io::Result<(u16, Framing)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!(
            "not an HTTP/1.x response: {status_line:?}"
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((status, framing))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Buffered reading of one response from a stream.
struct Incoming<'a, S> {
    s: &'a mut S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + Unpin> Incoming<'_, S> {
    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = self.s.read(&mut self.buf[old..]).await?;
        self.buf.truncate(old + n);
        Ok(n)
    }

    async fn fill_or_eof_error(&mut self, what: &str) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed in the {what}"),
            ));
        }
        Ok(())
    }

    /// The bytes up to CRLF (excluded), consumed with the CRLF.
    async fn line(&mut self, max: usize, what: &str) -> io::Result<Vec<u8>> {
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail.windows(2).position(|w| w == b"\r\n") {
                let line = avail[..i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if avail.len() > max {
                return Err(invalid(format!("{what} longer than {max} bytes")));
            }
            self.fill_or_eof_error(what).await?;
        }
    }

    /// Consumes `n` bytes.
    async fn skip(&mut self, mut n: u64, what: &str) -> io::Result<()> {
        loop {
            let avail = (self.buf.len() - self.pos) as u64;
            let take = avail.min(n);
            self.pos += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill_or_eof_error(what).await?;
        }
    }

    /// Consumes everything until the peer closes. A TLS peer that closes without
    /// close_notify (`UnexpectedEof` from the TLS layer) counts as closed: the response
    /// is over either way, and some servers skip the alert.
    async fn drain_to_eof(&mut self) -> io::Result<()> {
        self.pos = self.buf.len();
        loop {
            match self.fill().await {
                Ok(0) => return Ok(()),
                Ok(_) => self.pos = self.buf.len(),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// After a complete response to `Connection: close`: waits for the server to close.
    /// A reset also ends it (the response was complete).
    async fn wait_close(&mut self) -> io::Result<()> {
        match self.drain_to_eof().await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            r => r,
        }
    }

    /// The response head (through CRLF CRLF).
    async fn head(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = avail[..i + 4].to_vec();
                self.pos += i + 4;
                return Ok(head);
            }
            if avail.len() > MAX_HEAD {
                return Err(invalid(format!(
                    "response head longer than {MAX_HEAD} bytes"
                )));
            }
            self.fill_or_eof_error("response head").await?;
        }
    }

    /// A chunked body with its trailer section.
    async fn chunked(&mut self) -> io::Result<()> {
        loop {
            let line = self.line(MAX_LINE, "chunk size line").await?;
            let size = std::str::from_utf8(&line)
                .ok()
                .map(|l| l.split(';').next().unwrap_or_default().trim())
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| invalid("bad chunk size line"))?;
            if size == 0 {
                // Trailer fields, then an empty line.
                while !self.line(MAX_HEAD, "trailer").await?.is_empty() {}
                return Ok(());
            }
            self.skip(size, "chunk").await?;
            if !self.line(2, "chunk end").await?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }
}

/// Sends `req` on `s` and reads the whole response; a non-2xx status is an error. With
/// `close` (the request asked for it) it then waits for the server to close, so that the
/// server, not this client, closes first and keeps the TIME_WAIT state.
pub async fn exchange<S>(s: &mut S, req: &[u8], close: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(req).await?;
    s.flush().await?;
    let mut r = Incoming {
        s,
        buf: Vec::with_capacity(CHUNK),
        pos: 0,
    };
    let head = r.head().await?;
    let (status, framing) = parse_head(&head)?;
    if !(200..300).contains(&status) {
        return Err(io::Error::other(format!("HTTP status {status}")));
    }
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => r.skip(n, "response body").await?,
        Framing::Chunked => r.chunked().await?,
        Framing::Close => return r.drain_to_eof().await,
    }
    if close {
        r.wait_close().await?;
    }
    Ok(())
}

/// Connects and makes one keep-alive request; returns the open connection.
pub async fn keepalive_get(
    addr: SocketAddr,
    src: Option<IpAddr>,
    req: &[u8],
) -> io::Result<TcpStream> {
    let exchange = async {
        let mut s = sock::connect(addr, src).await?;
        exchange(&mut s, req, false).await?;
        Ok(s)
    };
    match tokio::time::timeout(sock::ROUND_TRIP_TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect + HTTP request timed out",
        )),
    }
}

/// Connects, makes one request with `Connection: close` and waits for the server to close.
pub async fn close_get(addr: SocketAddr, src: Option<IpAddr>, req: &[u8]) -> io::Result<()> {
    let exchange = async {
        let mut s = sock::connect(addr, src).await?;
        exchange(&mut s, req, true).await
    };
    match tokio::time::timeout(sock::ROUND_TRIP_TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect + HTTP request timed out",
        )),
    }
}

/// A tiny HTTP/1.1 server for the tests: answers every request on a connection with
/// `body`, as given by `framing` ("length", "chunked" or "close"), or with `status`.
#[cfg(test)]
pub mod testserver {
    use super::*;
    use tokio::net::TcpListener;

    pub async fn spawn(status: u16, framing: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(serve(s, status, framing));
            }
        });
        addr
    }

    async fn serve(mut s: TcpStream, status: u16, framing: &'static str) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let close = String::from_utf8_lossy(&buf[..i])
                    .to_ascii_lowercase()
                    .contains("connection: close");
                buf.drain(..i + 4);
                let resp = match framing {
                    "chunked" => format!(
                        "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
                    ),
                    "close" => format!("HTTP/1.1 {status} X\r\nConnection: close\r\n\r\nabcde"),
                    _ => format!("HTTP/1.1 {status} X\r\nContent-Length: 5\r\n\r\nabcde"),
                };
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                if close || framing == "close" {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target() -> HttpTarget {
        HttpTarget {
            path: "/x".into(),
            host: "bench.local".into(),
        }
    }

    #[test]
    fn parses_heads() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\n";
        assert_eq!(parse_head(h).unwrap(), (200, Framing::Length(12)));
        let h = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        assert_eq!(parse_head(h).unwrap(), (200, Framing::Chunked));
        let h = b"HTTP/1.0 204 No Content\r\n\r\n";
        assert_eq!(parse_head(h).unwrap(), (204, Framing::Empty));
        let h = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(parse_head(h).unwrap(), (200, Framing::Close));
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
    }

    #[test]
    fn request_asks_to_close_only_when_told() {
        let r = String::from_utf8(request(&target(), true)).unwrap();
        assert!(r.starts_with("GET /x HTTP/1.1\r\nHost: bench.local\r\n"));
        assert!(r.ends_with("Connection: close\r\n\r\n"));
        let r = String::from_utf8(request(&target(), false)).unwrap();
        assert!(!r.contains("Connection"));
    }

    #[tokio::test]
    async fn reads_every_framing_and_keeps_the_connection() {
        for framing in ["length", "chunked"] {
            let addr = testserver::spawn(200, framing).await;
            let req = request(&target(), false);
            let mut s =
                tokio::time::timeout(Duration::from_secs(10), keepalive_get(addr, None, &req))
                    .await
                    .unwrap()
                    .unwrap();
            // The connection is still usable: a second request on it works.
            tokio::time::timeout(Duration::from_secs(10), exchange(&mut s, &req, false))
                .await
                .unwrap()
                .unwrap();
        }
        for framing in ["length", "chunked", "close"] {
            let addr = testserver::spawn(200, framing).await;
            let req = request(&target(), true);
            tokio::time::timeout(Duration::from_secs(10), close_get(addr, None, &req))
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_non_2xx_status_is_an_error() {
        let addr = testserver::spawn(503, "length").await;
        let req = request(&target(), false);
        let e = tokio::time::timeout(Duration::from_secs(10), keepalive_get(addr, None, &req))
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
    }
}
