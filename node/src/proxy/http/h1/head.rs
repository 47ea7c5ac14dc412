//! Reading a request head: `httparse` for the syntax, then the framing rules of RFC 9112
//! section 6 with the checks that stop request smuggling, into an `http::Request`.
//!
//! Request smuggling works when two parsers disagree on where a request ends. This is the
//! only parser a client's bytes meet before a backend sees them, and it refuses every
//! shape another parser could read differently: `Content-Length` together with
//! `Transfer-Encoding`, differing or malformed lengths, any transfer coding but a single
//! final `chunked`, chunked HTTP/1.0, several `Host` headers, obs-fold and invalid bytes
//! (`httparse` refuses those). A refused request is answered 400 and ends the connection,
//! so nothing after it is read as a request either.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

/// Request headers accepted; more is answered 431 (hyper's default limit too).
pub(crate) const MAX_HEADERS: usize = 100;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    None,
    /// `Content-Length` bytes (more than zero).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A complete, acceptable request head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The request, without its body.
    pub req: Request<()>,
    /// How its body is delimited.
    pub body: BodyKind,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
    /// `Connection: upgrade` with `Upgrade`: the connection may become a tunnel.
    pub upgrade: bool,
}

/// Why a head was refused, and the status that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 400, 431 or 505.
    pub status: StatusCode,
    /// Short reason for the log and the metric's label.
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

fn too_large(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason,
    }
}

/// Takes the request head at the front of `buf` when it is complete (`Ok(None)`: more
/// bytes needed). A head longer than `max_head` bytes is refused with 431.
pub(crate) fn parse(buf: &mut BytesMut, max_head: usize) -> Result<Option<Head>, Refusal> {
    // Split off and frozen (no copy) so header values and the URI can share the head's
    // bytes, while `buf` keeps the spare capacity behind them. Once the request's values
    // are gone, the next read reclaims the whole buffer: a keep-alive connection reads
    // request after request into one allocation (taking the whole buffer instead cost
    // two allocations per request: a new buffer, and the frozen one's sharing).
    let whole = buf.split().freeze();
    match parse_frozen(&whole, max_head) {
        Ok(Some((head, len))) => {
            if whole.len() > len {
                // Pipelined requests or body bytes: usually none, at most one read's worth.
                buf.extend_from_slice(&whole[len..]);
            }
            Ok(Some(head))
        }
        Ok(None) => {
            // Nothing shares the bytes yet: with the spare part let go, they turn back
            // into the one buffer, capacity and all.
            drop(std::mem::take(buf));
            *buf = whole
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            Ok(None)
        }
        Err(r) => Err(r),
    }
}

fn parse_frozen(whole: &Bytes, max_head: usize) -> Result<Option<(Head, usize)>, Refusal> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut []);
    let len = match r.parse_with_uninit_headers(whole, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if whole.len() <= max_head => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(too_large("request head too large")),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large("too many headers")),
        Err(httparse::Error::Version) => {
            return Err(Refusal {
                status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                reason: "unsupported HTTP version",
            })
        }
        Err(e) => return Err(bad(refusal_reason(e))),
    };
    if len > max_head {
        return Err(too_large("request head too large"));
    }
    let version = match r.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method =
        Method::from_bytes(r.method.unwrap_or("").as_bytes()).map_err(|_| bad("invalid method"))?;
    let target = r.path.unwrap_or("").as_bytes();

    // Framing and connection facts, from the raw headers.
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_header = false;
    let mut expect_continue = false;
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(bad("invalid Content-Length"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(bad("differing Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue;
                }
                // `chunked` must be the one and only, final coding: anything else cannot
                // be forwarded faithfully once the framing is rewritten.
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad("Transfer-Encoding other than a single final chunked"));
                }
                chunked = true;
            }
            te_seen = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_header = true;
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    if te_seen && !chunked {
        return Err(bad("Transfer-Encoding other than a single final chunked"));
    }
    if chunked && length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    if chunked && version == Version::HTTP_10 {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    // Two Host headers route differently depending on which one a reader takes.
    if hosts > 1 {
        return Err(bad("several Host headers"));
    }
    if hosts == 0 && version == Version::HTTP_11 {
        return Err(bad("no Host header"));
    }

    let uri = Uri::from_maybe_shared(whole.slice_ref(target)).map_err(|_| bad("invalid URI"))?;
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header"))?;
        let value = value(whole, h.value)?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let body = match (chunked, length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(n)) if n > 0 => BodyKind::Length(n),
        _ => BodyKind::None,
    };
    let head = Head {
        req,
        body,
        keep_alive: if version == Version::HTTP_10 {
            keep_alive_token && !close
        } else {
            !close
        },
        expect_continue: expect_continue && version == Version::HTTP_11 && body != BodyKind::None,
        upgrade: upgrade_token && upgrade_header,
    };
    Ok(Some((head, len)))
}

/// A header value sharing the head's bytes (`httparse` checked them already; the check
/// here is the `http` crate's own, and cheap).
fn value(head: &Bytes, raw: &[u8]) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_maybe_shared(head.slice_ref(raw)).map_err(|_| bad("invalid header value"))
}

/// A `Content-Length` value: digits only (no sign, no list), at most 19 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn refusal_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status | httparse::Error::Token => "invalid request line",
        _ => "malformed request head",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(input: &[u8]) -> Result<Option<Head>, Refusal> {
        parse(&mut BytesMut::from(input), 8192)
    }

    fn refused(input: &[u8]) -> &'static str {
        match head(input) {
            Err(r) => r.reason,
            Ok(h) => panic!("accepted {:?}: {h:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn a_head_is_taken_whole_and_what_follows_stays() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabcGET"[..],
        );
        let h = parse(&mut buf, 8192).unwrap().unwrap();
        assert_eq!(&buf[..], b"abcGET");
        assert_eq!(h.body, BodyKind::Length(3));
        assert!(h.keep_alive && !h.expect_continue && !h.upgrade);
        assert_eq!(h.req.method(), Method::POST);
        assert_eq!(h.req.uri().path(), "/a");
        assert_eq!(h.req.uri().query(), Some("b=c"));
        assert_eq!(h.req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(h.req.headers()["host"], "x");
        // Incomplete: nothing is taken.
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        assert!(parse(&mut buf, 8192).unwrap().is_none());
        assert_eq!(buf.len(), 25);
    }

    #[test]
    fn a_keep_alive_buffer_is_read_into_again_once_its_request_is_gone() {
        let req = &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let mut buf = BytesMut::with_capacity(1024);
        let start = buf.as_ptr() as usize;
        buf.extend_from_slice(&req[..10]);
        assert!(parse(&mut buf, 8192).unwrap().is_none());
        assert_eq!(
            buf.as_ptr() as usize,
            start,
            "a partial head stays where it was"
        );
        assert!(buf.capacity() >= 1024);
        buf.extend_from_slice(&req[10..]);
        // 100 requests of 28 bytes: the buffer fills and is reclaimed from its start.
        for _ in 0..100 {
            let h = parse(&mut buf, 8192).unwrap().unwrap();
            assert_eq!(h.req.headers()["host"], "x");
            drop(h);
            buf.extend_from_slice(req);
            let at = buf.as_ptr() as usize;
            assert!(
                (start..start + 1024).contains(&at),
                "the next request went into a new buffer"
            );
        }
    }

    #[test]
    fn connection_semantics() {
        let h = head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h =
            head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.upgrade && h.keep_alive);
        let h =
            head(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.expect_continue);
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.expect_continue, "no body: nothing to wait for");
        let h = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        let h = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::None);
    }

    #[test]
    fn smuggling_heads_are_refused() {
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            refused(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            "differing Content-Length headers"
        );
        for cl in ["+5", "-1", "5, 5", "0x5", "", "99999999999999999999"] {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(refused(req.as_bytes()), "invalid Content-Length", "{cl}");
        }
        for te in [
            "gzip",
            "chunked, gzip",
            "gzip, chunked",
            "chunked, chunked",
            "xchunked",
            "",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                refused(req.as_bytes()),
                "Transfer-Encoding other than a single final chunked",
                "{te}"
            );
        }
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in an HTTP/1.0 request"
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "several Host headers"
        );
        assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), "no Host header");
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: 1\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"),
            "invalid header value"
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
            "invalid header name"
        );
    }

    #[test]
    fn limits_and_versions() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let r = head(big.as_bytes()).unwrap_err();
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Incomplete but already too long.
        let r = head(&big.as_bytes()[..8500]).unwrap_err();
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        let r = head(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()).unwrap_err();
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let r = head(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n").unwrap_err();
        assert_eq!(r.status, StatusCode::HTTP_VERSION_NOT_SUPPORTED);
        // A blank line before the request line is tolerated (RFC 9112 section 2.2).
        assert!(head(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .is_some());
        let h = head(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.req.uri(), "*");
        let h = head(b"GET http://a.example/p HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h.req.uri().authority().map(|a| a.as_str()),
            Some("a.example")
        );
    }
}
