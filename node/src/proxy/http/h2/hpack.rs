//! Header blocks: a client's request head or trailers, decoded with loona-hpack and
//! checked against RFC 9113 section 8 (a malformed request is a stream error, never
//! something forwarded); and our responses, encoded here.
//!
//! The response encoder never adds to the dynamic table (every field is indexed from the
//! static table or sent as a literal without indexing), so it keeps no state and has no
//! table size to agree with the client: responses through a proxy carry few repeated
//! fields beyond `:status`, content-type and content-length, and the saving a dynamic
//! table would bring is smaller than its bookkeeping per response.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

/// Our SETTINGS_HEADER_TABLE_SIZE: the decoder's dynamic table may not grow past it.
pub(crate) const TABLE_SIZE: usize = 4096;

/// A request head as the client sent it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The declared `content-length`, checked against the DATA that follows.
    pub content_length: Option<u64>,
    /// `expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub expect_continue: bool,
}

/// Why a header block was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// The block could not be decoded: the connection's compression state is lost.
    Compression,
    /// The request is malformed (RFC 9113 section 8.1.1): reset the stream.
    Malformed(&'static str),
    /// The header list is larger than `[proxy] max_header_size_bytes`: answer 431.
    TooLarge,
}

/// The decoding side of one connection.
pub(crate) struct Decoder {
    inner: loona_hpack::Decoder<'static>,
    max_list: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_list", &self.max_list)
            .finish()
    }
}

/// What a header block held, before it is read as a request or as trailers.
#[derive(Default)]
struct Fields {
    method: Option<Method>,
    scheme: Option<http::uri::Scheme>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    /// A pseudo-header was present (trailers may have none).
    pseudo: bool,
    headers: HeaderMap,
    cookies: Vec<Bytes>,
    /// Size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (name + value + 32 per field).
    size: usize,
    error: Option<BlockError>,
    regular_seen: bool,
}

/// A decoded value as `Bytes`: Huffman-decoded and literal values arrive owned and are
/// taken as they are; values from the tables are copied.
fn owned(v: Cow<'_, [u8]>) -> Bytes {
    match v {
        Cow::Owned(v) => Bytes::from(v),
        Cow::Borrowed(b) => Bytes::copy_from_slice(b),
    }
}

impl Fields {
    fn fail(&mut self, e: BlockError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn field(&mut self, name: &[u8], value: Cow<'_, [u8]>, max_list: usize) {
        self.size += name.len() + value.len() + 32;
        if self.size > max_list {
            self.fail(BlockError::TooLarge);
        }
        if self.error.is_some() {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return self.fail(BlockError::Malformed("pseudo-header after a regular one"));
            }
            self.pseudo = true;
            let repeated = match pseudo {
                b"method" => {
                    let Ok(m) = Method::from_bytes(&value) else {
                        return self.fail(BlockError::Malformed("invalid :method"));
                    };
                    self.method.replace(m).is_some()
                }
                b"scheme" => {
                    let Ok(s) = http::uri::Scheme::try_from(&value[..]) else {
                        return self.fail(BlockError::Malformed("invalid :scheme"));
                    };
                    self.scheme.replace(s).is_some()
                }
                b"authority" => self.authority.replace(owned(value)).is_some(),
                b"path" => self.path.replace(owned(value)).is_some(),
                _ => return self.fail(BlockError::Malformed("unknown pseudo-header")),
            };
            if repeated {
                self.fail(BlockError::Malformed("repeated pseudo-header"));
            }
            return;
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return self.fail(BlockError::Malformed("uppercase header name"));
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            return self.fail(BlockError::Malformed("invalid header name"));
        };
        let Ok(value) = HeaderValue::from_maybe_shared(owned(value)) else {
            return self.fail(BlockError::Malformed("invalid header value"));
        };
        use http::header;
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == "keep-alive"
            || name == "proxy-connection"
        {
            return self.fail(BlockError::Malformed("connection-specific header"));
        }
        if name == header::TE && value != "trailers" {
            return self.fail(BlockError::Malformed("te other than trailers"));
        }
        if name == header::COOKIE {
            // Cookie crumbs are joined back into one field (RFC 9113 section 8.2.3):
            // an HTTP/1.1 backend expects a single Cookie header.
            self.cookies.push(Bytes::copy_from_slice(value.as_bytes()));
            return;
        }
        self.headers.append(name, value);
    }

    fn join_cookies(&mut self) {
        if self.cookies.is_empty() {
            return;
        }
        let joined = if self.cookies.len() == 1 {
            self.cookies.pop().unwrap_or_default()
        } else {
            let mut out = BytesMut::new();
            for (i, c) in self.cookies.iter().enumerate() {
                if i > 0 {
                    out.put_slice(b"; ");
                }
                out.put_slice(c);
            }
            out.freeze()
        };
        match HeaderValue::from_maybe_shared(joined) {
            Ok(v) => {
                self.headers.insert(http::header::COOKIE, v);
            }
            Err(_) => self.fail(BlockError::Malformed("invalid cookie")),
        }
    }
}

impl Decoder {
    /// A decoder for header lists of at most `max_list` bytes.
    pub fn new(max_list: usize) -> Self {
        let mut inner = loona_hpack::Decoder::new();
        inner.set_max_allowed_table_size(TABLE_SIZE);
        Decoder { inner, max_list }
    }

    fn fields(&mut self, block: &[u8]) -> Result<Fields, BlockError> {
        let mut f = Fields::default();
        let max = self.max_list;
        // The whole block is decoded even after a problem is found: the dynamic table
        // must see every field, or the next block would be read wrong.
        self.inner
            .decode_with_cb(block, |n, v| f.field(&n, v, max))
            .map_err(|_| BlockError::Compression)?;
        Ok(f)
    }

    /// Decodes a request's header block.
    pub fn request(&mut self, block: &[u8]) -> Result<RequestHead, BlockError> {
        let mut f = self.fields(block)?;
        f.join_cookies();
        if let Some(e) = f.error {
            return Err(e);
        }
        let method = f.method.ok_or(BlockError::Malformed("missing :method"))?;
        let mut parts = http::uri::Parts::default();
        if method == Method::CONNECT {
            // RFC 9113 section 8.5: only :authority.
            if f.scheme.is_some() || f.path.is_some() {
                return Err(BlockError::Malformed("CONNECT with :scheme or :path"));
            }
        } else {
            let scheme = f.scheme.ok_or(BlockError::Malformed("missing :scheme"))?;
            let path = f
                .path
                .filter(|p| !p.is_empty())
                .ok_or(BlockError::Malformed("missing :path"))?;
            if path.as_ref() == b"*" && method != Method::OPTIONS {
                return Err(BlockError::Malformed(":path * outside OPTIONS"));
            }
            parts.path_and_query = Some(
                http::uri::PathAndQuery::from_maybe_shared(path)
                    .map_err(|_| BlockError::Malformed("invalid :path"))?,
            );
            if f.authority.is_some() {
                parts.scheme = Some(scheme);
            }
        }
        if let Some(a) = f.authority {
            parts.authority = Some(
                http::uri::Authority::from_maybe_shared(a)
                    .map_err(|_| BlockError::Malformed("invalid :authority"))?,
            );
        } else if method == Method::CONNECT {
            return Err(BlockError::Malformed("CONNECT without :authority"));
        }
        let uri = Uri::from_parts(parts).map_err(|_| BlockError::Malformed("invalid URI"))?;
        let content_length = match f.headers.get(http::header::CONTENT_LENGTH) {
            None => None,
            Some(v) => {
                if f.headers
                    .get_all(http::header::CONTENT_LENGTH)
                    .iter()
                    .count()
                    > 1
                {
                    return Err(BlockError::Malformed("repeated content-length"));
                }
                Some(
                    v.to_str()
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or(BlockError::Malformed("invalid content-length"))?,
                )
            }
        };
        let expect_continue = f
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Ok(RequestHead {
            method,
            uri,
            headers: f.headers,
            content_length,
            expect_continue,
        })
    }

    /// Decodes a trailer block (no pseudo-headers allowed).
    pub fn trailers(&mut self, block: &[u8]) -> Result<HeaderMap, BlockError> {
        let mut f = self.fields(block)?;
        f.join_cookies();
        if let Some(e) = f.error {
            return Err(e);
        }
        if f.pseudo {
            return Err(BlockError::Malformed("pseudo-header in trailers"));
        }
        Ok(f.headers)
    }
}

/// Names of the static table (RFC 7541 Appendix A) with the index we send them by;
/// only names: values other than `:status`'s are sent as literals.
fn static_name(name: &str) -> Option<u8> {
    Some(match name {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn integer(out: &mut BytesMut, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.put_u8(first | value as u8);
        return;
    }
    out.put_u8(first | max as u8);
    value -= max;
    while value >= 128 {
        out.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.put_u8(value as u8);
}

/// A string literal without Huffman coding.
fn string(out: &mut BytesMut, s: &[u8]) {
    integer(out, 0, 7, s.len());
    out.put_slice(s);
}

/// Headers that have no meaning in HTTP/2 and must not be sent (RFC 9113 section 8.2.2).
fn connection_specific(name: &HeaderName) -> bool {
    use http::header;
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// One regular field as a literal without indexing.
fn field(out: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    match static_name(name.as_str()) {
        Some(i) => integer(out, 0x00, 4, i as usize),
        None => {
            out.put_u8(0x00);
            string(out, name.as_str().as_bytes());
        }
    }
    string(out, value.as_bytes());
}

/// Encodes a response head into `out`.
pub(crate) fn response(out: &mut BytesMut, status: StatusCode, headers: &HeaderMap) {
    let indexed = match status.as_u16() {
        200 => Some(8),
        204 => Some(9),
        206 => Some(10),
        304 => Some(11),
        400 => Some(12),
        404 => Some(13),
        500 => Some(14),
        _ => None,
    };
    match indexed {
        Some(i) => integer(out, 0x80, 7, i),
        None => {
            integer(out, 0x00, 4, 8);
            string(out, status.as_str().as_bytes());
        }
    }
    fields(out, headers);
}

/// Encodes trailers (or any list of regular fields) into `out`.
pub(crate) fn fields(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        if connection_specific(name) {
            continue;
        }
        field(out, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut enc = loona_hpack::Encoder::new();
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        enc.encode(pairs)
    }

    #[test]
    fn a_request_head_is_decoded_with_its_uri_and_joined_cookies() {
        let block = encode(&[
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com:8443"),
            (":path", "/a/b?x=1"),
            ("cookie", "a=1"),
            ("content-length", "5"),
            ("cookie", "b=2"),
            ("te", "trailers"),
        ]);
        let head = Decoder::new(16 << 10).request(&block).expect("valid");
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.to_string(), "https://example.com:8443/a/b?x=1");
        assert_eq!(head.headers["cookie"], "a=1; b=2");
        assert_eq!(head.content_length, Some(5));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let cases: &[&[(&str, &str)]] = &[
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http")],
            &[(":scheme", "http"), (":path", "/")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("Host", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "close"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                ("x", "1"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":protocol", "websocket"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("content-length", "1"),
                ("content-length", "2"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("content-length", "-1"),
            ],
            &[(":method", "GET"), (":scheme", "http"), (":path", "*")],
        ];
        for (i, fields) in cases.iter().enumerate() {
            let r = Decoder::new(16 << 10).request(&encode(fields));
            assert!(
                matches!(r, Err(BlockError::Malformed(_))),
                "case {i}: {fields:?} gave {r:?}"
            );
        }
    }

    #[test]
    fn too_large_lists_and_broken_blocks_are_told_apart() {
        let long = "v".repeat(300);
        let block = encode(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("x", &long),
        ]);
        assert_eq!(
            Decoder::new(256).request(&block).unwrap_err(),
            BlockError::TooLarge
        );
        // An index past the tables.
        assert_eq!(
            Decoder::new(256).request(&[0xff, 0x7f]).unwrap_err(),
            BlockError::Compression
        );
    }

    #[test]
    fn the_dynamic_table_carries_over_between_blocks() {
        let mut enc = loona_hpack::Encoder::new();
        let head: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b"x-custom", b"value"),
        ];
        let first = enc.encode(head.clone());
        let second = enc.encode(head);
        let mut dec = Decoder::new(16 << 10);
        assert_eq!(
            dec.request(&first).expect("first").headers["x-custom"],
            "value"
        );
        assert_eq!(
            dec.request(&second).expect("second").headers["x-custom"],
            "value"
        );
    }

    #[test]
    fn responses_decode_back_to_what_was_encoded() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-request-id", HeaderValue::from_static("abc"));
        headers.insert("connection", HeaderValue::from_static("close"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let long = "y".repeat(200);
        headers.insert("x-long", HeaderValue::from_str(&long).expect("value"));
        for status in [200u16, 404, 418, 503] {
            let mut out = BytesMut::new();
            response(
                &mut out,
                StatusCode::from_u16(status).expect("status"),
                &headers,
            );
            let got = loona_hpack::Decoder::new().decode(&out).expect("decodes");
            let got: Vec<(String, String)> = got
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            assert_eq!(got[0], (":status".into(), status.to_string()));
            assert!(got.iter().all(|(n, _)| n != "connection"));
            assert!(got.contains(&("x-long".into(), long.clone())));
            assert_eq!(got.iter().filter(|(n, _)| n == "set-cookie").count(), 2);
            assert_eq!(got.len(), 6);
        }
    }
}
