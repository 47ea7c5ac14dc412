//! Record reassembly and ClientHello decoding (RFC 8446 §4.1.2, §5.1; RFC 6066 §3;
//! RFC 7301 §3.1).

use std::borrow::Cow;
use std::net::IpAddr;

use super::{ClientHelloInfo, HelloError, Parsed, MAX_BYTES, MAX_HELLO_LEN, RECORD_HEADER_LEN};

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest plaintext record fragment (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const NAME_TYPE_HOST: u8 = 0;

/// Parses the ClientHello at the start of `buf`, which may span several handshake
/// records. Bytes after the ClientHello message are ignored.
pub fn parse(buf: &[u8]) -> Result<Parsed, HelloError> {
    let mut handshake: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut at = 0;
    // What the records seen so far already prove is needed.
    let mut floor = RECORD_HEADER_LEN + 1;
    loop {
        let rest = &buf[at..];
        check_record_header(rest, at == 0)?;
        let Some(header) = rest.get(..RECORD_HEADER_LEN) else {
            return incomplete(floor);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let end = at + RECORD_HEADER_LEN + len;
        if end > MAX_BYTES {
            return Err(HelloError::TooLarge);
        }
        let Some(fragment) = buf.get(at + RECORD_HEADER_LEN..end) else {
            // Judge the handshake header as soon as it shows, without copying.
            let partial = &buf[at + RECORD_HEADER_LEN..];
            let mut probe = [0u8; HANDSHAKE_HEADER_LEN];
            let mut n = 0;
            for (slot, byte) in probe.iter_mut().zip(handshake.iter().chain(partial)) {
                *slot = *byte;
                n += 1;
            }
            message_len(&probe[..n])?;
            return incomplete(end.max(floor));
        };
        if handshake.is_empty() {
            handshake = Cow::Borrowed(fragment);
        } else {
            handshake.to_mut().extend_from_slice(fragment);
        }
        at = end;
        let missing = match message_len(&handshake)? {
            Some(len) => {
                let total = HANDSHAKE_HEADER_LEN + len;
                if let Some(message) = handshake.get(HANDSHAKE_HEADER_LEN..total) {
                    return parse_hello(message).map(Parsed::Hello);
                }
                total - handshake.len()
            }
            None => HANDSHAKE_HEADER_LEN - handshake.len(),
        };
        // Every missing byte of the message comes after at least one more record header.
        floor = at + RECORD_HEADER_LEN + missing;
        if floor > MAX_BYTES {
            return Err(HelloError::TooLarge);
        }
    }
}

fn incomplete(needed_at_least: usize) -> Result<Parsed, HelloError> {
    debug_assert!(needed_at_least <= MAX_BYTES);
    Ok(Parsed::Incomplete { needed_at_least })
}

/// Checks as much of a record header as `rest` holds. The first record decides whether
/// this is TLS at all; a later one can only be the wrong kind of record.
fn check_record_header(rest: &[u8], first: bool) -> Result<(), HelloError> {
    if let Some(&kind) = rest.first() {
        if kind != CONTENT_HANDSHAKE {
            return Err(if first {
                HelloError::NotTls
            } else {
                HelloError::UnexpectedRecord(kind)
            });
        }
    }
    // legacy_record_version: 3.0 (SSL 3) to 3.4; anything else is not TLS.
    let version_ok =
        rest.get(1).is_none_or(|&major| major == 3) && rest.get(2).is_none_or(|&minor| minor <= 4);
    if !version_ok {
        return Err(if first {
            HelloError::NotTls
        } else {
            HelloError::Malformed("record version is not 3.x")
        });
    }
    if let Some(&[hi, lo]) = rest.get(3..5) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if len > MAX_FRAGMENT {
            return Err(HelloError::Malformed("record longer than 2^14 bytes"));
        }
    }
    Ok(())
}

/// Length of the handshake message whose first bytes are `head`, once its header is
/// complete; refuses anything but a ClientHello of acceptable size.
fn message_len(head: &[u8]) -> Result<Option<usize>, HelloError> {
    match head.first() {
        Some(&HANDSHAKE_CLIENT_HELLO) | None => {}
        Some(&other) => return Err(HelloError::NotClientHello(other)),
    }
    let Some(&[_, a, b, c]) = head.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if HANDSHAKE_HEADER_LEN + len > MAX_HELLO_LEN {
        return Err(HelloError::TooLarge);
    }
    Ok(Some(len))
}

/// A cursor over TLS vectors: every read is checked, so a lying length is an error.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let len = self.u8(what)?;
        self.take(usize::from(len), what).map(Reader)
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self, what: &'static str) -> Result<Reader<'a>, HelloError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what).map(Reader)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self, what: &'static str) -> Result<(), HelloError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(HelloError::Malformed(what))
        }
    }
}

/// The ClientHello body, without the handshake header.
fn parse_hello(message: &[u8]) -> Result<ClientHelloInfo, HelloError> {
    let mut r = Reader(message);
    let legacy_version = r.u16("truncated legacy_version")?;
    if legacy_version >> 8 != 3 {
        return Err(HelloError::Malformed("legacy_version is not 3.x"));
    }
    r.take(32, "truncated random")?;
    if r.vec8("truncated session id")?.0.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16("truncated cipher suites")?.0;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher suite list length"));
    }
    if r.vec8("truncated compression methods")?.is_empty() {
        return Err(HelloError::Malformed("no compression method"));
    }
    let mut info = ClientHelloInfo {
        legacy_version,
        ..ClientHelloInfo::default()
    };
    // Pre-TLS-1.2 clients may end the hello here, without extensions.
    if r.is_empty() {
        return Ok(info);
    }
    let mut extensions = r.vec16("truncated extensions")?;
    r.end("bytes after the extensions")?;
    let mut seen = Vec::new();
    while !extensions.is_empty() {
        let kind = extensions.u16("truncated extension type")?;
        let data = extensions.vec16("truncated extension")?;
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => info.sni = parse_sni(data)?,
            EXT_ALPN => info.alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    // RFC 8446 §4.2: no extension type may appear twice. At most 4096 of them fit.
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(HelloError::Malformed("duplicate extension"));
    }
    Ok(info)
}

fn parse_sni(mut data: Reader<'_>) -> Result<Option<String>, HelloError> {
    let mut list = data.vec16("truncated server name list")?;
    data.end("bytes after the server name list")?;
    if list.is_empty() {
        return Err(HelloError::Malformed("empty server name list"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("truncated server name")?;
        let name = list.vec16("truncated server name")?;
        if name_type == NAME_TYPE_HOST {
            // RFC 6066 §3: at most one name of each type.
            if host.is_some() {
                return Err(HelloError::Malformed("two host names"));
            }
            host = Some(name.0);
        }
    }
    host.map_or(Ok(None), host_name)
}

/// Validates a `server_name` host name (LDH labels, `_` allowed as rustls does) and
/// normalises it for routing: lower case, no trailing dot.
fn host_name(raw: &[u8]) -> Result<Option<String>, HelloError> {
    let name = std::str::from_utf8(raw).map_err(|_| HelloError::InvalidSni)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    if name.is_empty() || name.len() > 253 {
        return Err(HelloError::InvalidSni);
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(HelloError::InvalidSni);
    }
    Ok(Some(name.to_ascii_lowercase()))
}

fn parse_alpn(mut data: Reader<'_>) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut list = data.vec16("truncated ALPN list")?;
    data.end("bytes after the ALPN list")?;
    if list.is_empty() {
        return Err(HelloError::Malformed("empty ALPN list"));
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let name = list.vec8("truncated ALPN protocol")?;
        if name.is_empty() {
            return Err(HelloError::Malformed("empty ALPN protocol name"));
        }
        protocols.push(name.0.to_vec());
    }
    Ok(protocols)
}
