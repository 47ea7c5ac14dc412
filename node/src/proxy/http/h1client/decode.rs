//! Reading a backend's HTTP/1 response: the head (status line and headers), how its body
//! is framed (RFC 9112 §6.3), and the chunked transfer coding. Functions over the read
//! buffer and byte slices, no sockets, so every case is unit-tested.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use smallvec::SmallVec;

/// Response headers accepted (hyper's client default is 100).
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line accepted (with extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 64 * 1024;

/// The backend broke the protocol; the exchange fails with 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid response from backend: {0}")]
pub struct ProtoError(pub &'static str);

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, 1xx).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// A complete final response head.
#[derive(Debug)]
pub struct Head {
    /// Status, version and headers (hop-by-hop ones included: the caller strips them).
    pub parts: http::response::Parts,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is read.
    pub keep_alive: bool,
}

/// What a buffer holds.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim 1xx response (100 Continue, 103 Early Hints), taken off and skipped.
    Interim,
    /// The final response head.
    Final(Head),
}

/// Takes the response head off the front of `buf`, for a request with `method`: an
/// interim or final head is split off (`Partial` leaves `buf` as it was).
///
/// The header values share the head's bytes instead of each being copied: the head is
/// split off the read buffer (which then shares its allocation) and every value is a
/// slice of it. Copied, a typical response cost five allocations for its values and one
/// more where `Connection` was cloned (`clean_response`).
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Parsed, ProtoError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut r, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ProtoError("too many headers")),
        Err(_) => return Err(ProtoError("malformed response head")),
    };
    let code = r.code.ok_or(ProtoError("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| ProtoError("bad status code"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    let version = match r.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each name and value sits in the head: offsets, kept while `r` borrows `buf`.
    let base = buf.as_ptr() as usize;
    // (An empty slice need not point into `buf`: it becomes an empty span.)
    let at = |s: &[u8]| match s.len() {
        0 => (0, 0),
        n => ((s.as_ptr() as usize).wrapping_sub(base), n),
    };
    let spans: SmallVec<[[(usize, usize); 2]; 16]> = r
        .headers
        .iter()
        .map(|h| [at(h.name.as_bytes()), at(h.value)])
        .collect();
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    let within = |(at, n): (usize, usize)| at.checked_add(n).filter(|end| *end <= head.len());
    for [(n, nl), (v, vl)] in spans {
        let (Some(name_end), Some(value_end)) = (within((n, nl)), within((v, vl))) else {
            return Err(ProtoError("malformed response head"));
        };
        let name = HeaderName::from_bytes(&head[n..name_end])
            .map_err(|_| ProtoError("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v..value_end))
            .map_err(|_| ProtoError("bad header value"))?;
        headers.append(name, value);
    }
    let (framing, mut keep_alive) = framing(&headers, status, method)?;
    keep_alive &= connection_persists(&headers, version);
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Parsed::Final(Head {
        parts,
        framing,
        keep_alive,
    }))
}

/// The body framing, and whether it leaves the connection reusable (RFC 9112 §6.3).
fn framing(
    headers: &HeaderMap,
    status: StatusCode,
    method: &Method,
) -> Result<(Framing, bool), ProtoError> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Framing::Empty, false));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let last_chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|t| !t.is_empty())
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        // With a Content-Length too the message is suspect: the coding wins, and the
        // connection is not trusted with another request.
        let alone = !headers.contains_key(header::CONTENT_LENGTH);
        return Ok(if last_chunked {
            (Framing::Chunked, alone)
        } else {
            (Framing::Close, false)
        });
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(ProtoError("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtoError("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, false),
    })
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether the backend keeps the connection open: HTTP/1.1 unless `Connection: close`,
/// HTTP/1.0 only with `Connection: keep-alive`.
fn connection_persists(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunked-body decoder: the caller feeds it the front of its buffer.
#[derive(Debug)]
pub struct Chunked {
    state: State,
}

/// What the decoder found at the front of the buffer.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// This many bytes at the front are body data.
    Data(usize),
    /// This many bytes at the front are framing: drop them.
    Skip(usize),
    /// The trailer section (this many bytes); the body has ended.
    Trailers(HeaderMap, usize),
    /// The last chunk and an empty trailer section (this many bytes); the body has ended.
    End(usize),
    /// More bytes are needed.
    NeedMore,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size }
    }
}

impl Chunked {
    /// Whether the body has ended.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the front of `buf`.
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, ProtoError> {
        match self.state {
            State::Done => Ok(Step::End(0)),
            State::Size => {
                let Some(eol) = find_crlf(buf, MAX_CHUNK_LINE) else {
                    return if buf.len() > MAX_CHUNK_LINE {
                        Err(ProtoError("chunk size line too long"))
                    } else {
                        Ok(Step::NeedMore)
                    };
                };
                let line = &buf[..eol];
                let digits = line
                    .iter()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(line.len());
                // Whitespace before extensions is tolerated, as hyper does (RFC 9112 BWS).
                let rest = line[digits..].trim_ascii_start();
                if digits == 0 || digits > 16 || !(rest.is_empty() || rest[0] == b';') {
                    return Err(ProtoError("bad chunk size"));
                }
                // Extensions are dropped, but a control byte in them (a bare LF, say)
                // would end the line early for another parser: refused.
                if !rest
                    .iter()
                    .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
                {
                    return Err(ProtoError("bad chunk extension"));
                }
                let size = line[..digits].iter().fold(0u64, |n, d| {
                    (n << 4) | u64::from((*d as char).to_digit(16).unwrap_or(0))
                });
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                };
                Ok(Step::Skip(eol + 2))
            }
            State::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                Ok(Step::Data(n))
            }
            State::DataEnd => match buf {
                [b'\r', b'\n', ..] => {
                    self.state = State::Size;
                    Ok(Step::Skip(2))
                }
                [] | [b'\r'] => Ok(Step::NeedMore),
                _ => Err(ProtoError("chunk data not followed by CRLF")),
            },
            State::Trailers => {
                match buf {
                    [b'\r', b'\n', ..] => {
                        self.state = State::Done;
                        return Ok(Step::End(2));
                    }
                    [] | [b'\r'] => return Ok(Step::NeedMore),
                    _ => {}
                }
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((n, hs))) => {
                        let mut map = HeaderMap::with_capacity(hs.len());
                        for h in hs {
                            let name = HeaderName::from_bytes(h.name.as_bytes())
                                .map_err(|_| ProtoError("bad trailer name"))?;
                            let value = HeaderValue::from_bytes(h.value)
                                .map_err(|_| ProtoError("bad trailer value"))?;
                            map.append(name, value);
                        }
                        self.state = State::Done;
                        Ok(Step::Trailers(map, n))
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILERS => {
                        Ok(Step::NeedMore)
                    }
                    Ok(httparse::Status::Partial) => Err(ProtoError("trailers too large")),
                    Err(_) => Err(ProtoError("malformed trailers")),
                }
            }
        }
    }
}

/// Position of the first CRLF within the first `limit` + 2 bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(limit + 2)];
    window.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> Head {
        head_and_rest(raw, method).0
    }

    /// The head and what is left in the buffer after it.
    fn head_and_rest(raw: &str, method: Method) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(raw);
        match parse_head(&mut buf, &method) {
            Ok(Parsed::Final(h)) => (h, buf),
            other => panic!("expected a final head, got {other:?}"),
        }
    }

    #[test]
    fn length_keep_alive_and_close() {
        let (h, rest) = head_and_rest(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(&rest[..], b"hello");
        assert_eq!(h.parts.headers["x-a"], "b");
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            Method::GET,
        );
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", Method::GET);
        assert!(!h.keep_alive, "HTTP/1.0 closes by default");
        assert_eq!(h.parts.version, Version::HTTP_10);
        let h = head(
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
    }

    #[test]
    fn header_values_share_the_read_buffer() {
        let raw = "HTTP/1.1 200 OK\r\nserver: t\r\ncontent-length: 5\r\n\r\nhello";
        let mut buf = BytesMut::from(raw);
        let read = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let h = match parse_head(&mut buf, &Method::GET) {
            Ok(Parsed::Final(h)) => h,
            other => panic!("{other:?}"),
        };
        assert_eq!(&buf[..], b"hello", "the head is split off, the body stays");
        for v in h.parts.headers.values() {
            let at = v.as_bytes().as_ptr() as usize;
            assert!(
                read.contains(&at),
                "{v:?} was copied out of the read buffer"
            );
        }
        // Empty values, with and without a space.
        let h = head(
            "HTTP/1.1 204 No Content\r\nx-a:\r\nx-b: \r\nx-c: c\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.parts.headers["x-a"], "");
        assert_eq!(h.parts.headers["x-b"], "");
        assert_eq!(h.parts.headers["x-c"], "c");
    }

    #[test]
    fn bodyless_answers() {
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n",
            Method::HEAD,
        );
        assert_eq!(h.framing, Framing::Empty);
        for s in ["204 No Content", "304 Not Modified"] {
            let h = head(
                &format!("HTTP/1.1 {s}\r\ncontent-length: 9\r\n\r\n"),
                Method::GET,
            );
            assert_eq!(h.framing, Framing::Empty);
            assert!(h.keep_alive);
        }
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET);
        assert_eq!(h.framing, Framing::Empty);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
        match parse_head(&mut buf, &Method::POST) {
            Ok(Parsed::Interim) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            &buf[..],
            b"HTTP/1.1 200 OK\r\n",
            "the interim head is taken off"
        );
        assert!(matches!(
            parse_head(&mut buf, &Method::POST),
            Ok(Parsed::Partial)
        ));
        assert_eq!(buf.len(), 17, "a partial head stays");
    }

    #[test]
    fn chunked_and_close_delimited() {
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            Method::GET,
        );
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
    }

    #[test]
    fn bad_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ] {
            assert!(
                parse_head(&mut BytesMut::from(raw), &Method::GET).is_err(),
                "accepted {raw:?}"
            );
        }
        let h = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Length(5));
        let many: String = (0..200).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse_head(&mut BytesMut::from(raw.as_str()), &Method::GET).unwrap_err(),
            ProtoError("too many headers")
        );
    }

    /// Decodes `wire` fed in pieces of `piece` bytes; returns body and trailers.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, Option<HeaderMap>), ProtoError> {
        let mut c = Chunked::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut body = Vec::new();
        loop {
            match c.step(&buf)? {
                Step::Data(n) => {
                    body.extend_from_slice(&buf[..n]);
                    buf.drain(..n);
                }
                Step::Skip(n) => {
                    buf.drain(..n);
                }
                Step::Trailers(t, n) => {
                    buf.drain(..n);
                    assert!(c.is_done());
                    return Ok((body, Some(t)));
                }
                Step::End(n) => {
                    buf.drain(..n);
                    assert!(c.is_done());
                    return Ok((body, None));
                }
                Step::NeedMore => {
                    if fed == wire.len() {
                        return Err(ProtoError("truncated"));
                    }
                    let end = (fed + piece).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
        for piece in [1, 2, 3, 7, wire.len()] {
            let (body, trailers) = decode(wire, piece).unwrap();
            assert_eq!(body, b"hello world0123456789");
            assert!(trailers.is_none());
        }
        let wire = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
        for piece in [1, 5, wire.len()] {
            let (body, trailers) = decode(wire, piece).unwrap();
            assert_eq!(body, b"abc");
            let t = trailers.unwrap();
            assert_eq!(t["grpc-status"], "0");
            assert_eq!(t["grpc-message"], "ok");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"z\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(decode(wire, 1).is_err(), "accepted {wire:?}");
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode(&long, long.len()).is_err());
    }
}
