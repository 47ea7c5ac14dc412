//! Writing responses: the head with the framing the body needs (RFC 9112 section 6), the
//! body's bytes in that framing, and the queue that gathers them into few system calls
//! (a small response's head and body leave in one `send`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::response::Parts;
use http::StatusCode;
use hyper::body::SizeHint;
use tokio::io::AsyncWrite;

/// Data at least this large is queued as it is instead of being copied.
const COPY_BELOW: usize = 8 * 1024;
/// Buffers written in one vectored call at most.
const MAX_IOV: usize = 32;

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body is sent (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`: bytes still to send.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by closing the connection (an HTTP/1.0 client, length unknown).
    Close,
}

/// What the response head depends on in its request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts {
    /// A HEAD request: the head describes a body that is not sent.
    pub head: bool,
    /// The client speaks HTTP/1.0 (no chunked coding; keep-alive must be said).
    pub http10: bool,
}

/// Appends the head of a response, choosing its framing. Clears `keep_alive` when the
/// response says `Connection: close` or its body can only end with the connection.
pub(crate) fn head(
    out: &mut Out,
    parts: &Parts,
    req: RequestFacts,
    hint: &SizeHint,
    keep_alive: &mut bool,
) -> Framing {
    let status = parts.status;
    let bodiless = req.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let b = &mut out.tail;
    b.reserve(256);
    b.put_slice(b"HTTP/1.1 ");
    b.put_slice(status.as_str().as_bytes());
    b.put_u8(b' ');
    b.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    b.put_slice(b"\r\n");
    let mut length = None;
    let mut dated = false;
    let mut says_close = false;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            // A length the body does not have would desynchronise the client: only a
            // valid one is kept, and never on answers that cannot have a body.
            let n = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if n.is_none() || status.is_informational() || status == StatusCode::NO_CONTENT {
                continue;
            }
            length = n;
        } else if name == header::DATE {
            dated = true;
        } else if name == header::CONNECTION {
            says_close |= has_token(value, b"close");
        }
        put_header(b, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        put_header(b, b"date", &http_date());
    }
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = hint.exact() {
        put_header(
            b,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        );
        Framing::Length(n)
    } else if !req.http10 {
        b.put_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else {
        Framing::Close
    };
    if says_close || framing == Framing::Close {
        *keep_alive = false;
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !*keep_alive && !says_close {
            b.put_slice(b"connection: close\r\n");
        } else if *keep_alive && req.http10 {
            b.put_slice(b"connection: keep-alive\r\n");
        }
    }
    b.put_slice(b"\r\n");
    out.recount();
    framing
}

fn put_header(b: &mut BytesMut, name: &[u8], value: &[u8]) {
    b.put_slice(name);
    b.put_slice(b": ");
    b.put_slice(value);
    b.put_slice(b"\r\n");
}

fn has_token(v: &HeaderValue, token: &[u8]) -> bool {
    v.as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Queues body `data` in `framing`. Data past a declared length is dropped, and the
/// connection closes after the response (`keep_alive` cleared).
pub(crate) fn data(out: &mut Out, framing: &mut Framing, mut data: Bytes, keep_alive: &mut bool) {
    if data.is_empty() {
        return;
    }
    match framing {
        Framing::Empty => {}
        Framing::Length(left) => {
            if data.len() as u64 > *left {
                data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                *keep_alive = false;
            }
            *left -= data.len() as u64;
            out.data(data);
        }
        Framing::Chunked => {
            chunk_size_line(&mut out.tail, data.len());
            out.data(data);
            out.small(b"\r\n");
        }
        Framing::Close => out.data(data),
    }
    out.recount();
}

/// Queues the end of the body. A body shorter than its declared length leaves the
/// connection unusable (`keep_alive` cleared: closing is how the client learns).
pub(crate) fn end(out: &mut Out, framing: Framing, keep_alive: &mut bool) {
    match framing {
        Framing::Chunked => out.small(b"0\r\n\r\n"),
        Framing::Length(n) if n > 0 => *keep_alive = false,
        _ => {}
    }
}

/// A chunk-size line: hex digits and CRLF.
fn chunk_size_line(b: &mut BytesMut, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    b.put_slice(&digits[i..]);
    b.put_slice(b"\r\n");
}

/// A response the connection writes itself (a refused request), closing the connection.
pub(crate) fn refusal(status: StatusCode) -> Bytes {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let mut b = BytesMut::with_capacity(256);
    b.put_slice(b"HTTP/1.1 ");
    b.put_slice(status.as_str().as_bytes());
    b.put_u8(b' ');
    b.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    b.put_slice(b"\r\n");
    put_header(&mut b, b"content-type", b"text/plain; charset=utf-8");
    put_header(
        &mut b,
        b"content-length",
        itoa::Buffer::new().format(text.len()).as_bytes(),
    );
    put_header(&mut b, b"connection", b"close");
    put_header(&mut b, b"date", &http_date());
    b.put_slice(b"\r\n");
    b.put_slice(text.as_bytes());
    b.freeze()
}

thread_local! {
    /// The `Date` value of the current second, per worker thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// The current time as an HTTP date (IMF-fixdate), formatted at most once a second per
/// thread. Only responses that lack a `Date` (the proxy's own) ask for it.
fn http_date() -> [u8; 29] {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            let mut bytes = [b' '; 29];
            let n = text.len().min(29);
            bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
            *cached = (secs, bytes);
        }
        cached.1
    })
}

/// Bytes waiting to be written: small pieces are gathered into one buffer (`tail`);
/// large body data is queued as it is and written with the rest in one vectored call.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pieces: VecDeque<Bytes>,
    pieces_len: usize,
    tail: BytesMut,
    len: usize,
}

impl Out {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `b`.
    pub fn small(&mut self, b: &[u8]) {
        self.tail.extend_from_slice(b);
        self.recount();
    }

    fn data(&mut self, d: Bytes) {
        if d.len() < COPY_BELOW {
            self.tail.extend_from_slice(&d);
        } else {
            self.seal();
            self.pieces_len += d.len();
            self.pieces.push_back(d);
        }
        self.recount();
    }

    /// Moves the gathered small pieces into the queue, keeping the order.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let t = self.tail.split().freeze();
            self.pieces_len += t.len();
            self.pieces.push_back(t);
        }
    }

    fn recount(&mut self) {
        self.len = self.pieces_len + self.tail.len();
    }

    /// Writes once; `Ready(Ok(n))` with the bytes written.
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let n = if self.pieces.is_empty() {
            let n = std::task::ready!(Pin::new(&mut *io).poll_write(cx, &self.tail))?;
            self.tail.advance(n);
            if self.tail.is_empty() {
                // Keeps the allocation for the next response of this busy period.
                self.tail.clear();
            }
            self.recount();
            n
        } else if io.is_write_vectored() {
            let mut slices = [io::IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for p in self.pieces.iter().take(MAX_IOV - 1) {
                slices[k] = io::IoSlice::new(p);
                k += 1;
            }
            if !self.tail.is_empty() && k == self.pieces.len() {
                slices[k] = io::IoSlice::new(&self.tail);
                k += 1;
            }
            let n = std::task::ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?;
            self.consume(n);
            n
        } else {
            let front = self.pieces.front().map(Bytes::len).unwrap_or(0);
            let n = match self.pieces.front() {
                Some(p) => std::task::ready!(Pin::new(&mut *io).poll_write(cx, p))?,
                None => 0,
            };
            self.consume(n.min(front));
            n
        };
        if n == 0 && !self.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        Poll::Ready(Ok(n))
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                let k = n.min(self.tail.len());
                self.tail.advance(k);
                break;
            };
            let k = n.min(front.len());
            front.advance(k);
            self.pieces_len -= k;
            n -= k;
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
        self.recount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn parts(status: u16, headers: &[(&str, &str)]) -> Parts {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r.into_parts().0
    }

    fn text(out: &Out) -> String {
        let mut s = String::new();
        for p in &out.pieces {
            s.push_str(&String::from_utf8_lossy(p));
        }
        s.push_str(&String::from_utf8_lossy(&out.tail));
        s
    }

    const H11: RequestFacts = RequestFacts {
        head: false,
        http10: false,
    };

    #[test]
    fn framing_follows_what_is_known() {
        let mut out = Out::default();
        let mut ka = true;
        let f = head(
            &mut out,
            &parts(200, &[("content-length", "5")]),
            H11,
            &SizeHint::default(),
            &mut ka,
        );
        assert_eq!(f, Framing::Length(5));
        assert!(ka);
        let mut out = Out::default();
        let f = head(
            &mut out,
            &parts(200, &[]),
            H11,
            &SizeHint::with_exact(3),
            &mut ka,
        );
        assert_eq!(f, Framing::Length(3));
        assert!(text(&out).contains("content-length: 3\r\n"));
        let mut out = Out::default();
        let f = head(
            &mut out,
            &parts(200, &[("transfer-encoding", "chunked")]),
            H11,
            &SizeHint::default(),
            &mut ka,
        );
        assert_eq!(f, Framing::Chunked);
        assert_eq!(text(&out).matches("transfer-encoding").count(), 1);
        let http10 = RequestFacts {
            head: false,
            http10: true,
        };
        let mut out = Out::default();
        let f = head(
            &mut out,
            &parts(200, &[]),
            http10,
            &SizeHint::default(),
            &mut ka,
        );
        assert_eq!(f, Framing::Close);
        assert!(!ka && text(&out).contains("connection: close\r\n"));
        let mut ka = true;
        let mut out = Out::default();
        head(
            &mut out,
            &parts(200, &[]),
            http10,
            &SizeHint::with_exact(0),
            &mut ka,
        );
        assert!(ka && text(&out).contains("connection: keep-alive\r\n"));
        let mut out = Out::default();
        let f = head(
            &mut out,
            &parts(204, &[("content-length", "7")]),
            H11,
            &SizeHint::default(),
            &mut ka,
        );
        assert_eq!(f, Framing::Empty);
        assert!(!text(&out).contains("content-length"));
        let mut out = Out::default();
        let head_req = RequestFacts {
            head: true,
            http10: false,
        };
        let f = head(
            &mut out,
            &parts(200, &[("content-length", "7")]),
            head_req,
            &SizeHint::default(),
            &mut ka,
        );
        assert_eq!(f, Framing::Empty);
        assert!(text(&out).contains("content-length: 7\r\n"));
        let t = text(&out);
        assert!(
            t.starts_with("HTTP/1.1 200 OK\r\n") && t.ends_with("\r\n\r\n") && t.contains("date: ")
        );
    }

    #[test]
    fn bodies_in_their_framing() {
        let mut out = Out::default();
        let mut ka = true;
        let mut f = Framing::Chunked;
        data(&mut out, &mut f, Bytes::from_static(b"hello"), &mut ka);
        data(&mut out, &mut f, Bytes::from(vec![b'x'; 20_000]), &mut ka);
        end(&mut out, f, &mut ka);
        let t = text(&out);
        assert!(t.starts_with("5\r\nhello\r\n4e20\r\nxxx"));
        assert!(t.ends_with("xxx\r\n0\r\n\r\n"));
        assert_eq!(out.len(), t.len());
        let mut out = Out::default();
        let mut f = Framing::Length(4);
        data(&mut out, &mut f, Bytes::from_static(b"abcdef"), &mut ka);
        assert_eq!(text(&out), "abcd");
        assert!(!ka, "data past the length closes the connection");
        let mut ka = true;
        end(&mut out, Framing::Length(1), &mut ka);
        assert!(!ka, "a short body closes the connection");
        let mut b = BytesMut::new();
        chunk_size_line(&mut b, 0x1f);
        assert_eq!(&b[..], b"1f\r\n");
    }

    #[tokio::test]
    async fn the_queue_writes_in_order_whatever_the_write_sizes() {
        let mut out = Out::default();
        out.small(b"head;");
        out.data(Bytes::from(vec![b'a'; 10_000]));
        out.small(b";mid;");
        out.data(Bytes::from(vec![b'b'; 9_000]));
        out.small(b";end");
        let expected = text(&out);
        let (mut w, mut r) = tokio::io::duplex(777);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got)
                .await
                .unwrap();
            got
        });
        while !out.is_empty() {
            std::future::poll_fn(|cx| out.poll_write(&mut w, cx))
                .await
                .unwrap();
        }
        drop(w);
        assert_eq!(String::from_utf8(reader.await.unwrap()).unwrap(), expected);
    }
}
