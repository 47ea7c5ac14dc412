//! HTTP/1 request framing checks on the raw byte stream, ahead of hyper's parser.
//!
//! Request smuggling works when two parsers disagree on where a request ends. hyper's
//! parser is strict about most things (invalid header bytes, obs-fold, differing
//! `Content-Length`s, a `Transfer-Encoding` that does not end in `chunked`), but it accepts
//! a request carrying both `Content-Length` and `Transfer-Encoding` (it silently drops the
//! length), and once a head is accepted the proxy would already have sent it to a backend
//! before a bad chunk size shows up. So every byte a client sends passes this scanner
//! first: it follows the message framing exactly as hyper will (heads via `httparse`, the
//! same parser hyper uses; bodies by length or chunk by chunk) and only hands bytes on once
//! they are validated. What it refuses never reaches hyper, so never a backend; the caller
//! substitutes a request hyper itself answers with 400 (see [`POISON_HEAD`]).
//!
//! The scanner is pure (bytes in, a position out) so it is unit-tested without sockets.

/// Request headers `httparse` may return; above hyper's own limit (100), so a head hyper
/// refuses as too large is passed through for hyper to answer 431.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// The HTTP/2 connection preface: an h2c client (prior knowledge) is not HTTP/1.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A request hyper answers with `400 Bad Request` and then closes the connection: an
/// unparsable `Content-Length`. Fed to hyper in place of a refused request head.
pub(crate) const POISON_HEAD: &[u8] = b"GET / HTTP/1.1\r\ncontent-length: refused\r\n\r\n";
/// A chunk-size line hyper's decoder refuses: fed in place of a refused chunk, so the
/// request body fails instead of ending early as if it were complete.
pub(crate) const POISON_CHUNK: &[u8] = b"zz\r\n";

/// Where the scanner is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of the connection: HTTP/1 head or the h2 preface.
    Start,
    /// Expecting (the rest of) a request head.
    Head,
    /// A body of known length: bytes left.
    Body(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data: bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Expecting trailer lines or the final empty line.
    Trailers,
    /// Not HTTP/1 framing any more (h2, an upgraded tunnel, or a head hyper will refuse
    /// by itself): everything passes.
    Passthrough,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// Short reason for logs and metrics.
    pub reason: &'static str,
    /// Whether it was found in a request head (else in a chunked body).
    pub in_head: bool,
}

/// The framing scanner of one client connection.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// Longest head passed on unchecked for hyper to refuse (431).
    max_head: usize,
    /// The connection opened with the HTTP/2 preface.
    h2: bool,
    /// Complete request heads passed so far (compared with the requests hyper has
    /// dispatched, to know that hyper holds no request that is not yet being served).
    heads: u64,
}

impl Framing {
    /// A scanner for a new connection; `max_head` is the node's header size limit.
    pub(crate) fn new(max_head: usize) -> Self {
        Framing {
            state: State::Start,
            max_head,
            h2: false,
            heads: 0,
        }
    }

    /// Stops checking: the connection speaks h2 or became a tunnel.
    pub(crate) fn passthrough(&mut self) {
        self.state = State::Passthrough;
    }

    /// Whether the first bytes of the connection are still awaited.
    pub(crate) fn at_start(&self) -> bool {
        self.state == State::Start
    }

    /// Whether the connection opened with the HTTP/2 preface (h2c prior knowledge).
    pub(crate) fn saw_h2(&self) -> bool {
        self.h2
    }

    /// Complete request heads passed to hyper so far.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether everything passes unchecked now.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether the scanner waits at a request boundary or inside a head (so the caller's
    /// header-read and idle timeouts apply), rather than inside a body.
    pub(crate) fn between_requests(&self) -> bool {
        matches!(self.state, State::Start | State::Head)
    }

    /// Validates `buf[*ready..]` as far as it goes, moving `*ready` past every byte that
    /// may be handed to hyper. Stops when it needs more bytes. On a refusal `*ready` points
    /// at the first refused byte.
    pub(crate) fn scan(&mut self, buf: &[u8], ready: &mut usize) -> Result<(), Rejection> {
        loop {
            let rest = &buf[*ready..];
            if rest.is_empty() {
                return Ok(());
            }
            match self.state {
                State::Passthrough => {
                    *ready = buf.len();
                    return Ok(());
                }
                State::Start => {
                    let n = rest.len().min(H2_PREFACE.len());
                    if rest[..n] != H2_PREFACE[..n] {
                        self.state = State::Head;
                    } else if n == H2_PREFACE.len() {
                        self.state = State::Passthrough;
                        self.h2 = true;
                    } else {
                        return Ok(());
                    }
                }
                State::Head => match self.head(rest)? {
                    Some(len) => {
                        *ready += len;
                        self.heads += 1;
                    }
                    None => return Ok(()),
                },
                State::Body(left) | State::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    *ready += take as usize;
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), n) => State::Body(n),
                        (_, 0) => State::ChunkEnd,
                        (_, n) => State::ChunkData(n),
                    };
                    if left > 0 {
                        return Ok(());
                    }
                }
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        if rest[0] != b'\r' {
                            return Err(body_err("chunk data not followed by CRLF"));
                        }
                        return Ok(());
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(body_err("chunk data not followed by CRLF"));
                    }
                    *ready += 2;
                    self.state = State::ChunkSize;
                }
                State::ChunkSize => {
                    let Some(line) = line(rest)? else {
                        return Ok(());
                    };
                    let size = chunk_size(&line[..line.len() - 2])?;
                    *ready += line.len();
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::Trailers => {
                    let Some(line) = line(rest)? else {
                        return Ok(());
                    };
                    if line.len() == 2 {
                        self.state = State::Head;
                    } else if line[0] == b' ' || line[0] == b'\t' || !line.contains(&b':') {
                        return Err(body_err("malformed trailer line"));
                    }
                    *ready += line.len();
                }
            }
        }
    }

    /// Checks one head at the start of `rest`: `Some(len)` when complete and acceptable,
    /// `None` when more bytes are needed.
    fn head(&mut self, rest: &[u8]) -> Result<Option<usize>, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(rest) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if rest.len() <= self.max_head => return Ok(None),
            // Too large, too many headers or unparsable: hyper refuses it itself (431 or
            // 400) and closes the connection, so nothing after it matters.
            _ => {
                self.state = State::Passthrough;
                return Ok(Some(rest.len()));
            }
        };
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut te_seen = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_length(h.value).ok_or(head_err("invalid Content-Length"))?;
                if content_length.is_some_and(|prev| prev != v) {
                    return Err(head_err("differing Content-Length headers"));
                }
                content_length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in h.value.split(|b| *b == b',').map(trim) {
                    if coding.is_empty() {
                        continue;
                    }
                    // `chunked` must be the one and only, final coding: anything else
                    // cannot be forwarded faithfully once the framing is rewritten.
                    if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                        return Err(head_err(
                            "Transfer-Encoding other than a single final chunked",
                        ));
                    }
                    chunked = true;
                }
                te_seen = true;
            }
        }
        if te_seen && !chunked {
            return Err(head_err(
                "Transfer-Encoding other than a single final chunked",
            ));
        }
        if chunked && content_length.is_some() {
            return Err(head_err("both Content-Length and Transfer-Encoding"));
        }
        if chunked && req.version == Some(0) {
            return Err(head_err("Transfer-Encoding in an HTTP/1.0 request"));
        }
        self.state = match (chunked, content_length) {
            (true, _) => State::ChunkSize,
            (false, Some(n)) if n > 0 => State::Body(n),
            _ => State::Head,
        };
        Ok(Some(len))
    }
}

fn head_err(reason: &'static str) -> Rejection {
    Rejection {
        reason,
        in_head: true,
    }
}

fn body_err(reason: &'static str) -> Rejection {
    Rejection {
        reason,
        in_head: false,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A `Content-Length` value: digits only (no sign, no list), at most 19 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The CRLF-terminated line at the start of `rest`, CRLF included; `None` when incomplete.
fn line(rest: &[u8]) -> Result<Option<&[u8]>, Rejection> {
    match rest.iter().position(|b| *b == b'\n') {
        Some(lf) if lf > 0 && rest[lf - 1] == b'\r' => Ok(Some(&rest[..=lf])),
        Some(_) => Err(body_err("bare LF in chunked framing")),
        None if rest.len() > MAX_LINE => Err(body_err("chunk-size or trailer line too long")),
        None => Ok(None),
    }
}

/// `HEXDIG+ [BWS ; extension]` without its CRLF.
fn chunk_size(line: &[u8]) -> Result<u64, Rejection> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(body_err("invalid chunk size"));
    }
    let rest = trim(&line[digits..]);
    if !rest.is_empty()
        && (rest[0] != b';'
            || !rest
                .iter()
                .all(|b| *b == b'\t' || (b' '..=b'~').contains(b)))
    {
        return Err(body_err("invalid chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| body_err("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| body_err("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` in one piece and in single bytes; both must agree.
    fn scan(input: &[u8]) -> (Result<(), Rejection>, usize) {
        let mut f = Framing::new(8192);
        let mut ready = 0;
        let whole = f.scan(input, &mut ready);
        let mut g = Framing::new(8192);
        let mut ready2 = 0;
        let mut piecewise = Ok(());
        for end in 1..=input.len() {
            piecewise = g.scan(&input[..end], &mut ready2);
            if piecewise.is_err() {
                break;
            }
        }
        assert_eq!(
            whole,
            piecewise,
            "piecewise scan disagrees for {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(ready, ready2);
        (whole, ready)
    }

    fn rejected(input: &[u8]) -> &'static str {
        match scan(input).0 {
            Err(r) => r.reason,
            Ok(()) => panic!("accepted: {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn pipelined_requests_pass_whole() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPUT /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\nGET /z HTTP/1.1\r\n\r\n";
        assert_eq!(scan(input), (Ok(()), input.len()));
    }

    #[test]
    fn partial_head_is_held_back() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHo";
        assert_eq!(scan(input), (Ok(()), 27));
    }

    #[test]
    fn smuggling_heads_are_refused() {
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            "differing Content-Length headers"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            "invalid Content-Length"
        );
        for te in [
            "gzip",
            "chunked, gzip",
            "gzip, chunked",
            "chunked, chunked",
            "xchunked",
            "",
        ] {
            let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                rejected(req.as_bytes()),
                "Transfer-Encoding other than a single final chunked",
                "{te}"
            );
        }
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding other than a single final chunked"
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in an HTTP/1.0 request"
        );
    }

    #[test]
    fn refused_head_stops_before_it() {
        let input = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (r, ready) = scan(input);
        assert!(r.is_err());
        assert_eq!(ready, 18);
    }

    #[test]
    fn bad_chunks_are_refused() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "zz\r\n",
            "0x5\r\n",
            "-1\r\n",
            " 5\r\n",
            "5\n",
            "11111111111111111\r\n",
            "3\r\nabcXY",
            "5;\x01\r\n",
        ] {
            let input = format!("{head}{body}");
            assert!(scan(input.as_bytes()).0.is_err(), "{body:?} accepted");
        }
        let (r, ready) = scan(format!("{head}3\r\nabc\r\nzz\r\n").as_bytes());
        assert!(r.is_err());
        assert_eq!(ready, head.len() + 8);
    }

    #[test]
    fn unparsable_heads_go_to_hyper() {
        // obs-fold and bad bytes: hyper refuses these itself with 400.
        let input = b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
        assert_eq!(scan(input), (Ok(()), input.len()));
        let mut f = Framing::new(8192);
        let mut ready = 0;
        assert_eq!(
            f.scan(b"GET / HTTP/1.1\r\nX\x01Y: 1\r\n\r\n", &mut ready),
            Ok(())
        );
        assert!(f.is_passthrough());
    }

    #[test]
    fn h2_preface_switches_to_passthrough() {
        let mut f = Framing::new(8192);
        let mut ready = 0;
        f.scan(&H2_PREFACE[..10], &mut ready).unwrap();
        assert_eq!(ready, 0);
        let mut input = H2_PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\x00anything");
        f.scan(&input, &mut ready).unwrap();
        assert_eq!(ready, input.len());
        assert!(f.is_passthrough() && f.saw_h2());
    }
}
