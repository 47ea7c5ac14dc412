//! UPDATE message and the path attributes a route originator uses (RFC 4271 §4.3,
//! RFC 4760 MP_REACH/MP_UNREACH, RFC 1997 COMMUNITIES, RFC 6793 AS4_PATH). Attributes we
//! do not interpret are kept verbatim.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::reader::{ErrSpec, Reader};
use super::{malformed, notif, CodecOptions, AFI_IPV4, AFI_IPV6, AS_TRANS, SAFI_UNICAST};
use crate::error::BgpError;

const ATTR_LIST: ErrSpec = (
    "malformed attribute list",
    notif::UPDATE,
    notif::UPDATE_MALFORMED_ATTRS,
);
const ATTR_LEN: ErrSpec = (
    "attribute length error",
    notif::UPDATE,
    notif::UPDATE_ATTR_LENGTH,
);
const NETWORK: ErrSpec = (
    "invalid network field",
    notif::UPDATE,
    notif::UPDATE_BAD_NETWORK,
);
const AS_PATH: ErrSpec = (
    "malformed AS_PATH",
    notif::UPDATE,
    notif::UPDATE_BAD_AS_PATH,
);
const OPTIONAL: ErrSpec = (
    "malformed optional attribute",
    notif::UPDATE,
    notif::UPDATE_OPTIONAL_ATTR,
);

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;

const CODE_ORIGIN: u8 = 1;
const CODE_AS_PATH: u8 = 2;
const CODE_NEXT_HOP: u8 = 3;
const CODE_MED: u8 = 4;
const CODE_LOCAL_PREF: u8 = 5;
const CODE_COMMUNITIES: u8 = 8;
const CODE_MP_REACH: u8 = 14;
const CODE_MP_UNREACH: u8 = 15;
const CODE_AS4_PATH: u8 = 17;

/// AS_PATH segment type AS_SET.
pub const AS_SET: u8 = 1;
/// AS_PATH segment type AS_SEQUENCE.
pub const AS_SEQUENCE: u8 = 2;
/// ORIGIN value IGP.
pub const ORIGIN_IGP: u8 = 0;

/// UPDATE body. IPv4 unicast routes travel in `withdrawn`/`nlri`; other families in
/// [`Attribute::MpReach`] / [`Attribute::MpUnreach`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Withdrawn IPv4 prefixes.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes, in order.
    pub attributes: Vec<Attribute>,
    /// Announced IPv4 prefixes.
    pub nlri: Vec<Ipv4Net>,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    /// [`AS_SET`] or [`AS_SEQUENCE`] (or another value received from a peer).
    pub kind: u8,
    /// ASNs of the segment.
    pub asns: Vec<u32>,
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN (0 IGP, 1 EGP, 2 INCOMPLETE).
    Origin(u8),
    /// AS_PATH; ASN width depends on [`CodecOptions::four_octet_as`].
    AsPath(Vec<AsSegment>),
    /// NEXT_HOP for IPv4 NLRI.
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC.
    Med(u32),
    /// LOCAL_PREF (iBGP only).
    LocalPref(u32),
    /// COMMUNITIES, each as `asn << 16 | value`.
    Communities(Vec<u32>),
    /// MP_REACH_NLRI for IPv4 or IPv6 unicast.
    MpReach {
        /// Address family.
        afi: u16,
        /// Subsequent address family.
        safi: u8,
        /// Next hops (IPv6: global, optionally followed by link-local).
        next_hops: Vec<IpAddr>,
        /// Announced prefixes.
        nlri: Vec<IpNet>,
    },
    /// MP_UNREACH_NLRI for IPv4 or IPv6 unicast.
    MpUnreach {
        /// Address family.
        afi: u16,
        /// Subsequent address family.
        safi: u8,
        /// Withdrawn prefixes.
        withdrawn: Vec<IpNet>,
    },
    /// AS4_PATH: the real path beside a 2-byte AS_PATH (always 4-byte ASNs).
    As4Path(Vec<AsSegment>),
    /// Anything else, kept verbatim (including MP attributes of other families).
    Unknown {
        /// Flags as received (the extended-length bit is recomputed on encode).
        flags: u8,
        /// Type code.
        code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Update {
    pub(super) fn decode(body: &[u8], opts: CodecOptions) -> Result<Self, BgpError> {
        let mut r = Reader::new(body);
        let wlen = usize::from(r.u16(ATTR_LIST)?);
        let wbuf = r.take(wlen, ATTR_LIST)?;
        let alen = usize::from(r.u16(ATTR_LIST)?);
        let abuf = r.take(alen, ATTR_LIST)?;
        let withdrawn = decode_v4_prefixes(wbuf)?;
        let nlri = decode_v4_prefixes(r.rest())?;
        let mut attributes: Vec<Attribute> = Vec::new();
        let mut seen = [false; 256];
        let mut a = Reader::new(abuf);
        while !a.is_empty() {
            let flags = a.u8(ATTR_LIST)?;
            let code = a.u8(ATTR_LIST)?;
            let len = if flags & FLAG_EXTENDED != 0 {
                usize::from(a.u16(ATTR_LIST)?)
            } else {
                usize::from(a.u8(ATTR_LIST)?)
            };
            let value = a.take(len, ATTR_LIST)?;
            if std::mem::replace(&mut seen[usize::from(code)], true) {
                return Err(malformed(ATTR_LIST.0, ATTR_LIST.1, ATTR_LIST.2, Vec::new()));
            }
            attributes.push(decode_attribute(flags, code, value, opts)?);
        }
        Ok(Update {
            withdrawn,
            attributes,
            nlri,
        })
    }

    pub(super) fn encode_body(
        &self,
        out: &mut Vec<u8>,
        opts: CodecOptions,
    ) -> Result<(), BgpError> {
        let mut w = Vec::new();
        for p in &self.withdrawn {
            encode_prefix(&IpNet::V4(*p), &mut w);
        }
        put_len16(out, w.len())?;
        out.extend_from_slice(&w);
        let mut attrs = Vec::new();
        for attr in &self.attributes {
            encode_attribute(attr, &mut attrs, opts)?;
        }
        put_len16(out, attrs.len())?;
        out.extend_from_slice(&attrs);
        for p in &self.nlri {
            encode_prefix(&IpNet::V4(*p), out);
        }
        Ok(())
    }
}

fn put_len16(out: &mut Vec<u8>, len: usize) -> Result<(), BgpError> {
    let l = u16::try_from(len).map_err(|_| BgpError::TooLong { len })?;
    out.extend_from_slice(&l.to_be_bytes());
    Ok(())
}

fn decode_attribute(
    flags: u8,
    code: u8,
    value: &[u8],
    opts: CodecOptions,
) -> Result<Attribute, BgpError> {
    let attr_len_err = || malformed(ATTR_LEN.0, ATTR_LEN.1, ATTR_LEN.2, Vec::new());
    Ok(match code {
        CODE_ORIGIN => {
            let [origin] = value else {
                return Err(attr_len_err());
            };
            if *origin > 2 {
                return Err(malformed(
                    "invalid ORIGIN",
                    notif::UPDATE,
                    notif::UPDATE_BAD_ORIGIN,
                    Vec::new(),
                ));
            }
            Attribute::Origin(*origin)
        }
        CODE_AS_PATH => Attribute::AsPath(decode_as_path(value, opts.four_octet_as)?),
        CODE_AS4_PATH => Attribute::As4Path(decode_as_path(value, true)?),
        CODE_NEXT_HOP => {
            let octets: [u8; 4] = value.try_into().map_err(|_| attr_len_err())?;
            Attribute::NextHop(Ipv4Addr::from(octets))
        }
        CODE_MED | CODE_LOCAL_PREF => {
            let octets: [u8; 4] = value.try_into().map_err(|_| attr_len_err())?;
            let v = u32::from_be_bytes(octets);
            if code == CODE_MED {
                Attribute::Med(v)
            } else {
                Attribute::LocalPref(v)
            }
        }
        CODE_COMMUNITIES => {
            if !value.len().is_multiple_of(4) {
                return Err(malformed(OPTIONAL.0, OPTIONAL.1, OPTIONAL.2, Vec::new()));
            }
            Attribute::Communities(
                value
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        CODE_MP_REACH | CODE_MP_UNREACH => match decode_mp(code, value)? {
            Some(attr) => attr,
            None => unknown(flags, code, value),
        },
        _ => unknown(flags, code, value),
    })
}

fn unknown(flags: u8, code: u8, value: &[u8]) -> Attribute {
    Attribute::Unknown {
        flags: flags & !FLAG_EXTENDED,
        code,
        value: value.to_vec(),
    }
}

/// Decodes MP_REACH/MP_UNREACH for IPv4/IPv6 unicast; `None` for other families.
fn decode_mp(code: u8, value: &[u8]) -> Result<Option<Attribute>, BgpError> {
    let mut r = Reader::new(value);
    let afi = r.u16(OPTIONAL)?;
    let safi = r.u8(OPTIONAL)?;
    if safi != SAFI_UNICAST || (afi != AFI_IPV4 && afi != AFI_IPV6) {
        return Ok(None);
    }
    if code == CODE_MP_UNREACH {
        let withdrawn = decode_prefixes(afi, r.rest())?;
        return Ok(Some(Attribute::MpUnreach {
            afi,
            safi,
            withdrawn,
        }));
    }
    let nh_len = usize::from(r.u8(OPTIONAL)?);
    let nh = r.take(nh_len, OPTIONAL)?;
    let next_hops = match nh_len {
        4 => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        16 | 32 => nh
            .chunks_exact(16)
            .map(|c| {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            })
            .collect(),
        _ => {
            return Err(malformed(
                "invalid MP next hop length",
                notif::UPDATE,
                notif::UPDATE_OPTIONAL_ATTR,
                Vec::new(),
            ))
        }
    };
    let _reserved = r.u8(OPTIONAL)?;
    let nlri = decode_prefixes(afi, r.rest())?;
    Ok(Some(Attribute::MpReach {
        afi,
        safi,
        next_hops,
        nlri,
    }))
}

fn decode_as_path(value: &[u8], four: bool) -> Result<Vec<AsSegment>, BgpError> {
    let width = if four { 4 } else { 2 };
    let mut r = Reader::new(value);
    let mut segs = Vec::new();
    while !r.is_empty() {
        let kind = r.u8(AS_PATH)?;
        let count = usize::from(r.u8(AS_PATH)?);
        if count == 0 {
            return Err(malformed(AS_PATH.0, AS_PATH.1, AS_PATH.2, Vec::new()));
        }
        let bytes = r.take(count * width, AS_PATH)?;
        let asns = bytes
            .chunks_exact(width)
            .map(|c| match c {
                [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
                [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
                _ => 0,
            })
            .collect();
        segs.push(AsSegment { kind, asns });
    }
    Ok(segs)
}

fn decode_v4_prefixes(buf: &[u8]) -> Result<Vec<Ipv4Net>, BgpError> {
    Ok(decode_prefixes(AFI_IPV4, buf)?
        .into_iter()
        .filter_map(|p| match p {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect())
}

fn decode_prefixes(afi: u16, buf: &[u8]) -> Result<Vec<IpNet>, BgpError> {
    let max = if afi == AFI_IPV6 { 128u8 } else { 32 };
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while !r.is_empty() {
        let len = r.u8(NETWORK)?;
        if len > max {
            return Err(malformed(NETWORK.0, NETWORK.1, NETWORK.2, Vec::new()));
        }
        let bytes = r.take(usize::from(len).div_ceil(8), NETWORK)?;
        let net = if afi == AFI_IPV6 {
            let mut o = [0u8; 16];
            o[..bytes.len()].copy_from_slice(bytes);
            Ipv6Net::new(Ipv6Addr::from(o), len).map(|n| IpNet::V6(n.trunc()))
        } else {
            let mut o = [0u8; 4];
            o[..bytes.len()].copy_from_slice(bytes);
            Ipv4Net::new(Ipv4Addr::from(o), len).map(|n| IpNet::V4(n.trunc()))
        };
        out.push(net.map_err(|_| malformed(NETWORK.0, NETWORK.1, NETWORK.2, Vec::new()))?);
    }
    Ok(out)
}

fn encode_prefix(p: &IpNet, out: &mut Vec<u8>) {
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.push(len);
    match p.trunc().addr() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
    }
}

fn encode_as_path(segs: &[AsSegment], four: bool, out: &mut Vec<u8>) -> Result<(), BgpError> {
    for s in segs {
        let count =
            u8::try_from(s.asns.len()).map_err(|_| BgpError::TooLong { len: s.asns.len() })?;
        out.extend_from_slice(&[s.kind, count]);
        for asn in &s.asns {
            if four {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                let a2 = u16::try_from(*asn).unwrap_or(AS_TRANS);
                out.extend_from_slice(&a2.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn encode_attribute(
    attr: &Attribute,
    out: &mut Vec<u8>,
    opts: CodecOptions,
) -> Result<(), BgpError> {
    let mut v = Vec::new();
    let (flags, code) = match attr {
        Attribute::Origin(o) => {
            v.push(*o);
            (FLAG_TRANSITIVE, CODE_ORIGIN)
        }
        Attribute::AsPath(segs) => {
            encode_as_path(segs, opts.four_octet_as, &mut v)?;
            (FLAG_TRANSITIVE, CODE_AS_PATH)
        }
        Attribute::As4Path(segs) => {
            encode_as_path(segs, true, &mut v)?;
            (FLAG_OPTIONAL | FLAG_TRANSITIVE, CODE_AS4_PATH)
        }
        Attribute::NextHop(nh) => {
            v.extend_from_slice(&nh.octets());
            (FLAG_TRANSITIVE, CODE_NEXT_HOP)
        }
        Attribute::Med(m) => {
            v.extend_from_slice(&m.to_be_bytes());
            (FLAG_OPTIONAL, CODE_MED)
        }
        Attribute::LocalPref(l) => {
            v.extend_from_slice(&l.to_be_bytes());
            (FLAG_TRANSITIVE, CODE_LOCAL_PREF)
        }
        Attribute::Communities(cs) => {
            for c in cs {
                v.extend_from_slice(&c.to_be_bytes());
            }
            (FLAG_OPTIONAL | FLAG_TRANSITIVE, CODE_COMMUNITIES)
        }
        Attribute::MpReach {
            afi,
            safi,
            next_hops,
            nlri,
        } => {
            v.extend_from_slice(&afi.to_be_bytes());
            v.push(*safi);
            let mut nh = Vec::new();
            for h in next_hops {
                match h {
                    IpAddr::V4(a) => nh.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => nh.extend_from_slice(&a.octets()),
                }
            }
            let nh_len = u8::try_from(nh.len()).map_err(|_| BgpError::TooLong { len: nh.len() })?;
            v.push(nh_len);
            v.extend_from_slice(&nh);
            v.push(0);
            for p in nlri {
                encode_prefix(p, &mut v);
            }
            (FLAG_OPTIONAL, CODE_MP_REACH)
        }
        Attribute::MpUnreach {
            afi,
            safi,
            withdrawn,
        } => {
            v.extend_from_slice(&afi.to_be_bytes());
            v.push(*safi);
            for p in withdrawn {
                encode_prefix(p, &mut v);
            }
            (FLAG_OPTIONAL, CODE_MP_UNREACH)
        }
        Attribute::Unknown { flags, code, value } => {
            v.extend_from_slice(value);
            (*flags & !FLAG_EXTENDED, *code)
        }
    };
    if v.len() > 255 {
        out.extend_from_slice(&[flags | FLAG_EXTENDED, code]);
        put_len16(out, v.len())?;
    } else {
        out.extend_from_slice(&[flags, code, v.len() as u8]);
    }
    out.extend_from_slice(&v);
    Ok(())
}
