//! Our HTTP/1.1 client towards backends, for every forwarded request that is not an
//! upgrade and not HTTP/2 (hyper's pooled client still serves those).
//!
//! Why not hyper's client: it drives each backend connection from a task of its own, so
//! every request hops from the client connection's task to the backend connection's task
//! and back (request, response head, and each body chunk through channels). Here the
//! client connection's task writes the request and reads the response itself, straight
//! from a pooled socket: one task, no channels, and the same system calls HAProxy makes
//! (measured: about 3 µs less CPU per keep-alive request on one core).
//!
//! The exchange: take an idle connection (or dial one), write the head with as much of
//! the body as is ready, keep uploading the body while watching for the response head
//! (a backend may answer early, e.g. 413, before reading it all), skip interim 1xx
//! responses, and return the head with a body that reads the rest ([`BackendBody`]).
//! A reused connection that turns out closed before any response byte came back (the
//! backend's keep-alive timeout raced us) is retried once on a fresh connection, when no
//! body byte had been taken from the client yet.

mod body;
pub(crate) mod decode;
mod encode;
mod pool;
#[cfg(test)]
mod tests;
mod upload;

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
#[cfg(test)]
use http::Request;
use http::{Method, Response};
use hyper::body::Body;

pub use body::BackendBody;
use body::Conn;
use decode::{Parsed, ProtoError};
use encode::BodyFraming;
pub use encode::Lines;
use pool::IdlePool;
use upload::Upload;

use super::body::ProxyBody;
use super::client::Connector;
#[cfg(test)]
use super::headers::Sink as _;
use super::BoxError;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the backend could be made (nothing was sent: safe to retry).
    #[error("connect: {0}")]
    Connect(io::Error),
    /// Writing the request or reading the response failed.
    #[error("{0}")]
    Io(io::Error),
    /// The backend closed the connection before a complete response head.
    #[error("connection closed before a response head")]
    Closed,
    /// The response head is not valid HTTP/1.
    #[error(transparent)]
    Protocol(#[from] ProtoError),
    /// Reading the request body from the client failed.
    #[error("request body: {0}")]
    Body(BoxError),
}

impl SendError {
    /// Whether the failure was in making the connection.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// The HTTP/1.1 client of one backend: its connector and idle connections.
#[derive(Debug)]
pub struct Client {
    connector: Connector,
    pool: Arc<IdlePool>,
}

impl Client {
    /// A client dialling with `connector`, closing connections idle for `idle`.
    pub fn new(connector: Connector, idle: Duration) -> Self {
        Client {
            connector,
            pool: Arc::new(IdlePool::new(idle)),
        }
    }

    /// Closes idle connections that timed out or that the backend closed.
    pub fn purge(&self) {
        self.pool.purge();
    }

    /// Idle connections held.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.pool.len()
    }

    /// Sends `req` (origin-form target from its URI; headers ready for the backend) and
    /// returns the response head with its streaming body.
    #[cfg(test)]
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<BackendBody>, SendError> {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let out = Outgoing::new(
            parts.method.clone(),
            target,
            parts.headers.contains_key(http::header::CONTENT_LENGTH),
            body,
            |lines| {
                for (name, value) in &parts.headers {
                    lines.put(name, value);
                }
            },
        );
        self.send_outgoing(out).await
    }

    /// Sends the request `out` and returns the response head with its streaming body.
    pub async fn send_outgoing(&self, out: Outgoing) -> Result<Response<BackendBody>, SendError> {
        let Outgoing {
            method,
            head,
            framing,
            body,
        } = out;
        let mut upload = Upload::new(head, body, framing);
        let mut retried = false;
        loop {
            let (stream, reused) = match self.pool.take() {
                Some(s) => (s, true),
                // Boxed: dialing (connect, TLS handshake) is rare on a pooled client, and
                // its state would otherwise make every request's future 1.3 KiB larger
                // (a request's future is allocated and copied once per request).
                None => (
                    Box::pin(self.connector.dial())
                        .await
                        .map_err(SendError::Connect)?,
                    false,
                ),
            };
            let mut x = Exchange {
                conn: Conn {
                    stream,
                    buf: BytesMut::new(),
                },
                upload,
                received: false,
            };
            let result = poll_fn(|cx| x.poll(cx, &method)).await;
            match result {
                Ok(head) => {
                    let body = BackendBody::new(
                        x.conn,
                        x.upload,
                        head.framing,
                        head.keep_alive,
                        self.pool.clone(),
                    );
                    return Ok(Response::from_parts(head.parts, body));
                }
                Err(e) => {
                    let stale = reused
                        && !retried
                        && !x.received
                        && !x.upload.touched
                        && matches!(e, SendError::Closed | SendError::Io(_));
                    if !stale {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "pooled backend connection was closed; retrying on a new one");
                    retried = true;
                    upload = x.upload.restart();
                }
            }
        }
    }
}

/// A request for an HTTP/1 backend, its head already written: the forwarding path writes
/// the client's headers straight into it (no header map in between).
pub struct Outgoing {
    method: Method,
    /// Request line, headers, framing header and the blank line.
    head: Bytes,
    framing: BodyFraming,
    body: ProxyBody,
}

impl Outgoing {
    /// A request for `method` and `target` (origin form) with `body`; `headers` puts the
    /// header lines (framing headers are left out: the body's own framing is written).
    /// `declared_length`: the client's request had a `Content-Length` (an empty body is
    /// then sent with `Content-Length: 0`).
    pub fn new(
        method: Method,
        target: &str,
        declared_length: bool,
        body: ProxyBody,
        headers: impl FnOnce(&mut Lines<'_>),
    ) -> Outgoing {
        let framing = encode::framing_of(
            &method,
            declared_length,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let mut head = BytesMut::with_capacity(512);
        encode::request_line(&mut head, &method, target);
        headers(&mut Lines(&mut head));
        encode::end_head(&mut head, framing);
        Outgoing {
            method,
            head: head.freeze(),
            framing,
            body,
        }
    }
}

/// One request/response exchange on one connection, up to the response head.
struct Exchange {
    conn: Conn,
    upload: Upload,
    /// A response byte came back.
    received: bool,
}

impl Exchange {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<decode::Head, SendError>> {
        loop {
            let mut progress = self.upload.poll_progress(&mut self.conn.stream, cx)?;
            match self.conn.poll_fill(cx, 8 * 1024) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(match self.upload.take_write_error() {
                        Some(e) => SendError::Io(e),
                        None => SendError::Closed,
                    }))
                }
                Poll::Ready(Ok(_)) => {
                    self.received = true;
                    progress = true;
                    loop {
                        match decode::parse_head(&mut self.conn.buf, method)? {
                            Parsed::Final(head) => return Poll::Ready(Ok(head)),
                            Parsed::Interim => {}
                            Parsed::Partial if self.conn.buf.len() > MAX_HEAD => {
                                return Poll::Ready(Err(
                                    ProtoError("response head too large").into()
                                ))
                            }
                            Parsed::Partial => break,
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// Runs what reads a backend's HTTP/1 answer to a `GET` (the head parser, interim heads
/// skipped, then the chunked decoder when the head calls for it) over `data` delivered
/// in two reads split at `split`, as the client does. Returns one line per head, body or
/// error, and ends at the first error or the end of the body. For fuzzing: it must not
/// panic, and the result must not depend on where the bytes were split.
pub fn decode_backend_bytes(data: &[u8], split: usize) -> Vec<String> {
    use bytes::Buf;
    let split = split.min(data.len());
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut body: Option<(decode::Chunked, usize)> = None;
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            if let Some((chunked, n)) = body.as_mut() {
                match chunked.step(&buf) {
                    Ok(decode::Step::Data(k)) => {
                        *n += k;
                        buf.advance(k);
                    }
                    Ok(decode::Step::Skip(k)) => buf.advance(k),
                    Ok(decode::Step::Trailers(t, _)) => {
                        out.push(format!("body {n} bytes, trailers {t:?}"));
                        return out;
                    }
                    Ok(decode::Step::End(_)) => {
                        out.push(format!("body {n} bytes"));
                        return out;
                    }
                    Ok(decode::Step::NeedMore) => break,
                    Err(e) => {
                        out.push(format!("body refused: {e}"));
                        return out;
                    }
                }
                continue;
            }
            match decode::parse_head(&mut buf, &Method::GET) {
                Ok(Parsed::Final(h)) => {
                    out.push(format!(
                        "{} {:?} {:?} {:?} keep-alive {}",
                        h.parts.status, h.parts.version, h.parts.headers, h.framing, h.keep_alive
                    ));
                    if h.framing != decode::Framing::Chunked {
                        return out;
                    }
                    body = Some((decode::Chunked::default(), 0));
                }
                Ok(Parsed::Interim) => out.push("interim".into()),
                Ok(Parsed::Partial) => break,
                Err(e) => {
                    out.push(format!("refused: {e}"));
                    return out;
                }
            }
        }
    }
    out
}
