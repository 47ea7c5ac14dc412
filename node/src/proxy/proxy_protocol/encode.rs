//! Building headers to send to backends.
//!
//! When the client and the listener address are of different families (an IPv4 client
//! reaching an IPv6 listener through a dual-stack socket or the reverse), both are sent as
//! IPv6 with the IPv4 one mapped (`::ffff:a.b.c.d`), as HAProxy does: the spec requires one
//! family for both, and mapping loses nothing.

use std::net::{IpAddr, SocketAddr};

use super::{ProxyError, Transport, Version, V2_HEADER_LEN, V2_MAX_LEN, V2_SIGNATURE};

/// Version 2, command PROXY.
const V2_PROXY: u8 = 0x21;
/// Version 2, command LOCAL.
const V2_LOCAL: u8 = 0x20;

/// Header announcing a TCP connection from `src` to `dst`.
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(src, dst),
        Version::V2 => encode_v2(Transport::Stream, src, dst, &[]),
    }
}

/// Header announcing a connection over `transport` from `src` to `dst`. Fails only for
/// v1 with [`Transport::Dgram`]: the text format has no way to say UDP.
pub fn encode_with(
    version: Version,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<Vec<u8>, ProxyError> {
    match (version, transport) {
        (Version::V1, Transport::Stream) => Ok(encode_v1(src, dst)),
        (Version::V1, Transport::Dgram) => {
            Err(ProxyError::Unsupported("PROXY v1 cannot describe UDP"))
        }
        (Version::V2, transport) => Ok(encode_v2(transport, src, dst, &[])),
    }
}

/// v2 header with TLVs `(type, value)` after the addresses (e.g. `0x02` AUTHORITY with
/// the SNI of a TLS passthrough connection). Fails if the header would exceed
/// [`V2_MAX_LEN`], the most our own decoder accepts.
pub fn encode_v2_with_tlvs(
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    tlvs: &[(u8, &[u8])],
) -> Result<Vec<u8>, ProxyError> {
    let (src, dst) = same_family(src, dst);
    let addresses = if src.is_ipv4() { 12 } else { 36 };
    let total = tlvs
        .iter()
        .fold(V2_HEADER_LEN + addresses, |sum, (_, value)| {
            sum.saturating_add(3).saturating_add(value.len())
        });
    if total > V2_MAX_LEN {
        return Err(ProxyError::Unsupported(
            "PROXY v2 TLVs exceed the header size limit",
        ));
    }
    Ok(encode_v2(transport, src, dst, tlvs))
}

/// v2 LOCAL header: the connection was opened by the proxy itself (a health check), so
/// the backend must use the real connection endpoints.
pub fn encode_local_v2() -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_HEADER_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[V2_LOCAL, 0x00, 0x00, 0x00]);
    out
}

fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// Callers have checked the size (or pass no TLVs, which always fits).
fn encode_v2(
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    tlvs: &[(u8, &[u8])],
) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let transport = match transport {
        Transport::Stream => 0x1,
        Transport::Dgram => 0x2,
    };
    let mut body = Vec::with_capacity(36);
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x10
        }
        (s, d) => {
            body.extend_from_slice(&to_v6(s).octets());
            body.extend_from_slice(&to_v6(d).octets());
            0x20
        }
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut out = Vec::with_capacity(V2_HEADER_LEN + body.len());
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_PROXY);
    out.push(family | transport);
    out.extend_from_slice(&(body.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Both addresses in one family: unchanged if they already agree, else both IPv6.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (
            SocketAddr::new(IpAddr::V6(to_v6(src.ip())), src.port()),
            SocketAddr::new(IpAddr::V6(to_v6(dst.ip())), dst.port()),
        )
    }
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
