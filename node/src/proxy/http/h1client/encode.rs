//! Writing a request to a backend over HTTP/1.1: the head, and the body's framing.

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

use super::super::headers::Sink;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body and no `Content-Length`.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (length unknown: a streamed HTTP/1 chunked body, or
    /// an HTTP/2 client body without `content-length`).
    Chunked,
}

/// [`framing_of`] for a request with `headers`.
#[cfg(test)]
pub fn framing(
    method: &Method,
    headers: &HeaderMap,
    ended: bool,
    exact: Option<u64>,
) -> BodyFraming {
    framing_of(
        method,
        headers.contains_key(header::CONTENT_LENGTH),
        ended,
        exact,
    )
}

/// The framing for a body that is already at its end (`ended`) or of `exact` length.
/// An empty body gets `Content-Length: 0` where a body is expected (the client's request
/// had a length: `declared`, or the method is POST, PUT or PATCH), as hyper's client does.
pub fn framing_of(method: &Method, declared: bool, ended: bool, exact: Option<u64>) -> BodyFraming {
    if ended || exact == Some(0) {
        let expects_body =
            declared || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if expects_body {
            BodyFraming::Length(0)
        } else {
            BodyFraming::None
        };
    }
    match exact {
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::Chunked,
    }
}

/// Appends the request head: `target` is origin-form (path and query); `headers` are
/// the backend headers (hop-by-hop ones already removed), whose own framing headers are
/// replaced by `body`'s.
#[cfg(test)]
pub fn head(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: BodyFraming,
) {
    request_line(out, method, target);
    let mut lines = Lines(out);
    for (name, value) in headers {
        lines.put(name, value);
    }
    end_head(out, body);
}

/// Appends the request line.
pub fn request_line(out: &mut BytesMut, method: &Method, target: &str) {
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
}

/// Appends the framing header of `body` and the blank line that ends the head.
pub fn end_head(out: &mut BytesMut, body: BodyFraming) {
    match body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

/// Header lines written into a request head, between [`request_line`] and
/// [`end_head`]. The framing headers are left out: `end_head` writes the body's own.
pub struct Lines<'a>(pub &'a mut BytesMut);

impl Sink for Lines<'_> {
    fn put(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.put_bytes(name, value.as_bytes());
    }

    fn put_bytes(&mut self, name: &HeaderName, value: &[u8]) {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return;
        }
        self.0.put_slice(name.as_str().as_bytes());
        self.0.put_slice(b": ");
        self.0.put_slice(value);
        self.0.put_slice(b"\r\n");
    }
}

/// Appends one chunk of a chunked body (never an empty one: that would end the body).
pub fn chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends the end of a chunked body, with its trailers.
pub fn last_chunk(out: &mut BytesMut, trailers: Option<&HeaderMap>) {
    out.put_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn heads_carry_our_framing_only() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.test"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut out = BytesMut::new();
        head(
            &mut out,
            &Method::POST,
            "/p?q=1",
            &h,
            BodyFraming::Length(3),
        );
        assert_eq!(
            &out[..],
            b"POST /p?q=1 HTTP/1.1\r\nhost: a.test\r\ncontent-length: 3\r\n\r\n"
        );
        out.clear();
        head(
            &mut out,
            &Method::GET,
            "/",
            &HeaderMap::new(),
            BodyFraming::None,
        );
        assert_eq!(&out[..], b"GET / HTTP/1.1\r\n\r\n");
        out.clear();
        head(
            &mut out,
            &Method::PUT,
            "/",
            &HeaderMap::new(),
            BodyFraming::Chunked,
        );
        assert_eq!(
            &out[..],
            b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_the_body() {
        let none = HeaderMap::new();
        assert_eq!(
            framing(&Method::GET, &none, true, Some(0)),
            BodyFraming::None
        );
        assert_eq!(
            framing(&Method::POST, &none, true, Some(0)),
            BodyFraming::Length(0)
        );
        assert_eq!(
            framing(&Method::POST, &none, false, Some(7)),
            BodyFraming::Length(7)
        );
        assert_eq!(
            framing(&Method::POST, &none, false, None),
            BodyFraming::Chunked
        );
        let mut cl = HeaderMap::new();
        cl.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(
            framing(&Method::GET, &cl, true, Some(0)),
            BodyFraming::Length(0)
        );
    }

    #[test]
    fn chunks_and_trailers() {
        let mut out = BytesMut::new();
        chunk(&mut out, b"hello world, this is 31 bytes!!");
        chunk(&mut out, b"");
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        last_chunk(&mut out, Some(&t));
        assert_eq!(
            &out[..],
            &b"1f\r\nhello world, this is 31 bytes!!\r\n0\r\ngrpc-status: 0\r\n\r\n"[..]
        );
    }
}
