//! The lab's HTTP traffic: the backends' server (it answers with the address of the node
//! that proxied the request) and the client's one-request-per-connection GET.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::NetNs;

/// [`Lab::get`] for tasks that hold only the client namespace.
pub async fn get(client: &NetNs, vip: IpAddr) -> anyhow::Result<IpAddr> {
    request(client, vip).await.map_err(|e| anyhow!("{e}"))
}

/// How a request failed.
#[derive(Debug)]
pub enum RequestError {
    /// The connection was never established (refused, unreachable, timed out).
    Connect(String),
    /// Established, then it failed (reset, closed early, bad answer, timeout).
    Exchange(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Connect(e) => write!(f, "connect: {e}"),
            RequestError::Exchange(e) => write!(f, "after connect: {e}"),
        }
    }
}

/// One `GET /` on a new connection from `client` to `vip:80`; the node that proxied it.
pub async fn request(client: &NetNs, vip: IpAddr) -> Result<IpAddr, RequestError> {
    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";
    let mut s = client
        .connect_send(SocketAddr::new(vip, 80), REQ, Duration::from_secs(2))
        .await
        .map_err(|e| match e {
            crate::netns::ConnectError::Connect(e) => RequestError::Connect(e.to_string()),
            e => RequestError::Exchange(e.to_string()),
        })?;
    let body = tokio::time::timeout(Duration::from_secs(3), read_response(&mut s))
        .await
        .map_err(|_| RequestError::Exchange("no answer within 3 s".into()))?
        .map_err(|e| RequestError::Exchange(format!("{e:#}")))?;
    body.trim()
        .parse()
        .map_err(|_| RequestError::Exchange(format!("unexpected body {body:?}")))
}

/// Reads one HTTP/1.1 response with a Content-Length (the lab's backends, via fiberlb);
/// fails unless the status is 200. Stops at the end of the body: a reset that follows it
/// does not fail the request.
async fn read_response(s: &mut tokio::net::TcpStream) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split_whitespace().nth(1).unwrap_or("");
            if status != "200" {
                bail!("status {status}: {head}");
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or_else(|| anyhow!("no content-length: {head}"))?;
            let body_start = end + 4;
            while buf.len() < body_start + len {
                let n = s.read(&mut chunk).await.context("read body")?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned());
        }
        let n = s.read(&mut chunk).await.context("read head")?;
        if n == 0 {
            bail!("connection closed before the response");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// HTTP/1.1 keep-alive server: every request (GET/HEAD, no body) gets `peer` as its body.
pub(super) async fn serve_http(mut s: tokio::net::TcpStream, peer: IpAddr) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let body = format!("{peer}\n");
            let close = head.contains("connection: close");
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{}",
                body.len(),
                if close { "connection: close\r\n" } else { "" },
                if head.starts_with("head ") { "" } else { &body }
            );
            if s.write_all(resp.as_bytes()).await.is_err() || close {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
