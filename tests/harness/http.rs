//! A minimal HTTP/1.1 client for the admin endpoints: one `GET` per connection
//! (`Connection: close`), body read to EOF, chunked bodies decoded.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline of one admin request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status code, lower-cased headers, body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(HTTP_TIMEOUT, get_inner(addr, path))
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path} took longer than {HTTP_TIMEOUT:?}"))?
}

/// `GET path` on `addr` with extra request headers (`"name: value"` lines).
pub async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(HTTP_TIMEOUT, get_inner_with(addr, path, headers))
        .await
        .map_err(|_| anyhow!("GET http://{addr}{path} took longer than {HTTP_TIMEOUT:?}"))?
}

async fn get_inner(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    get_inner_with(addr, path, &[]).await
}

async fn get_inner_with(
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> anyhow::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body)?,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_field = std::str::from_utf8(&b[..nl])?;
        let size =
            usize::from_str_radix(size_field.split(';').next().unwrap_or_default().trim(), 16)?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn plain_and_chunked() {
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n")
                .unwrap();
        assert_eq!(
            (r.status, r.body.as_str(), r.header("content-type")),
            (200, "ok\n", Some("text/plain"))
        );
        let r = parse(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (503, "not ready"));
        assert!(parse(b"garbage").is_err());
    }
}
