//! Decoding a received header. Pure: bytes in, [`Decoded`] or [`ProxyError`] out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Decoded, ProxyError, V1_MAX_LEN, V1_MIN_LEN, V2_HEADER_LEN, V2_MAX_LEN, V2_SIGNATURE};

const V1_PREFIX: &[u8] = b"PROXY ";

/// Family/transport bytes the spec defines (§2.2); everything else must be rejected.
const V2_FAMILIES: [u8; 7] = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];

/// TLV carrying a CRC32C of the whole header.
const PP2_TYPE_CRC32C: u8 = 0x03;

/// Decodes the PROXY header at the start of `buf`: v1 if it starts with `P`, v2 if it
/// starts with the v2 signature. Bytes after the header are not looked at.
pub fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    match buf.first() {
        None => Ok(Decoded::Incomplete {
            needed_at_least: V1_MIN_LEN,
        }),
        Some(b'P') => decode_v1(buf),
        Some(b'\r') => decode_v2(buf),
        Some(_) => Err(ProxyError::NoSignature),
    }
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NoSignature);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let lf = window.iter().position(|&b| b == b'\n');
    // Refuse binary garbage as soon as it shows, instead of waiting for 107 bytes.
    let line_end = lf.unwrap_or(window.len());
    if let Some(bad) = window[..line_end]
        .iter()
        .position(|&b| !(b == b' ' || b.is_ascii_graphic()))
    {
        // A CR is fine only as the last byte seen so far or right before the LF.
        let cr_ok = window[bad] == b'\r' && bad + 1 == line_end;
        if !cr_ok {
            return Err(ProxyError::V1Malformed("non-printable byte in the line"));
        }
    }
    let Some(lf) = lf else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Decoded::Incomplete {
                needed_at_least: (buf.len() + 1).max(V1_MIN_LEN),
            })
        };
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::V1Malformed("line does not end with CRLF"))?;
    let (src, dst) = parse_v1_line(line)?;
    Ok(Decoded::Header {
        src,
        dst,
        len: lf + 1,
        tlvs: Vec::new(),
    })
}

type Endpoints = (Option<SocketAddr>, Option<SocketAddr>);

/// `line` is printable ASCII without the CRLF and starts with `PROXY `.
fn parse_v1_line(line: &[u8]) -> Result<Endpoints, ProxyError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ProxyError::V1Malformed("line is not ASCII"))?;
    let mut fields = line.split(' ');
    fields.next(); // "PROXY", checked by the caller
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // §2.1: the rest of the line up to the CRLF must be ignored.
        return Ok((None, None));
    }
    let mut next = |what: &'static str| fields.next().ok_or(ProxyError::V1Malformed(what));
    let (src_ip, dst_ip) = match family {
        "TCP4" => {
            let src = parse_v4(next("missing source address")?)?;
            let dst = parse_v4(next("missing destination address")?)?;
            (IpAddr::V4(src), IpAddr::V4(dst))
        }
        "TCP6" => {
            let src = parse_v6(next("missing source address")?)?;
            let dst = parse_v6(next("missing destination address")?)?;
            (IpAddr::V6(src), IpAddr::V6(dst))
        }
        _ => {
            return Err(ProxyError::V1Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let src_port = parse_port(next("missing source port")?)?;
    let dst_port = parse_port(next("missing destination port")?)?;
    if fields.next().is_some() {
        return Err(ProxyError::V1Malformed("extra fields after the ports"));
    }
    Ok((
        Some(SocketAddr::new(src_ip, src_port)),
        Some(SocketAddr::new(dst_ip, dst_port)),
    ))
}

fn parse_v4(s: &str) -> Result<Ipv4Addr, ProxyError> {
    s.parse()
        .map_err(|_| ProxyError::V1Malformed("invalid IPv4 address"))
}

fn parse_v6(s: &str) -> Result<Ipv6Addr, ProxyError> {
    s.parse()
        .map_err(|_| ProxyError::V1Malformed("invalid IPv6 address"))
}

/// Decimal 0..=65535 without sign or leading zeroes (§2.1), which `u16::from_str` allows.
fn parse_port(s: &str) -> Result<u16, ProxyError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyError::V1Malformed("invalid port"));
    }
    s.parse()
        .map_err(|_| ProxyError::V1Malformed("port out of range"))
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::NoSignature);
    }
    let Some(fixed) = buf.get(..V2_HEADER_LEN) else {
        return Ok(Decoded::Incomplete {
            needed_at_least: V2_HEADER_LEN,
        });
    };
    let (ver_cmd, family) = (fixed[12], fixed[13]);
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Version(ver_cmd >> 4));
    }
    let total = V2_HEADER_LEN + len;
    if total > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(total));
    }
    // Everything that can be judged from the fixed part is judged before waiting for more.
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        cmd => return Err(ProxyError::V2Command(cmd)),
    };
    let address_len = match family >> 4 {
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => 0,
    };
    if !local {
        if !V2_FAMILIES.contains(&family) {
            return Err(ProxyError::V2Family(family));
        }
        if len < address_len {
            return Err(ProxyError::V2AddressLength {
                len,
                needed: address_len,
            });
        }
    }
    let Some(header) = buf.get(..total) else {
        return Ok(Decoded::Incomplete {
            needed_at_least: total,
        });
    };
    if local {
        // §2.2: LOCAL means "use the real endpoints"; the block, family included, is ignored.
        return Ok(Decoded::Header {
            src: None,
            dst: None,
            len: total,
            tlvs: Vec::new(),
        });
    }
    let body = &header[V2_HEADER_LEN..];
    let (src, dst) = match family >> 4 {
        0x1 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        0x2 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        // UNIX: a path on the sender's host is of no use here; UNSPEC: nothing to report.
        _ => (None, None),
    };
    // With UNSPEC the block has no defined layout, so there is nothing to parse TLVs from.
    let tlvs = if family == 0x00 {
        Vec::new()
    } else {
        parse_tlvs(header, V2_HEADER_LEN + address_len)?
    };
    Ok(Decoded::Header {
        src,
        dst,
        len: total,
        tlvs,
    })
}

/// TLVs from `header[start..]`; they must fill it exactly.
fn parse_tlvs(header: &[u8], start: usize) -> Result<Vec<(u8, Vec<u8>)>, ProxyError> {
    let mut tlvs = Vec::new();
    let mut at = start;
    while at < header.len() {
        let Some(&[kind, hi, lo]) = header.get(at..at + 3) else {
            return Err(ProxyError::V2Tlv("truncated TLV header"));
        };
        at += 3;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = header
            .get(at..at + len)
            .ok_or(ProxyError::V2Tlv("TLV value runs past the header"))?;
        if kind == PP2_TYPE_CRC32C {
            check_crc32c(header, at, value)?;
        }
        tlvs.push((kind, value.to_vec()));
        at += len;
    }
    Ok(tlvs)
}

/// §2.2.5: the CRC32C (RFC 4960 appendix B) of the whole header with the checksum's own
/// four bytes taken as zero, stored big-endian.
fn check_crc32c(header: &[u8], value_at: usize, value: &[u8]) -> Result<(), ProxyError> {
    let Ok(expected) = <[u8; 4]>::try_from(value) else {
        return Err(ProxyError::V2Tlv("CRC32C value is not 4 bytes"));
    };
    let zeroed = value_at..value_at + 4;
    let bytes = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if zeroed.contains(&i) { 0 } else { b });
    if crc32c(bytes) != u32::from_be_bytes(expected) {
        return Err(ProxyError::V2Tlv("CRC32C mismatch"));
    }
    Ok(())
}

/// Bitwise CRC32C (Castagnoli). Headers are at most [`V2_MAX_LEN`] bytes, so a table
/// would buy nothing measurable.
pub(super) fn crc32c(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
