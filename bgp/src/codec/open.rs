//! OPEN message and capabilities (RFC 4271 §4.2, RFC 5492, RFC 4760, RFC 6793).

use std::net::Ipv4Addr;

use super::reader::{ErrSpec, Reader};
use super::{malformed, notif, AS_TRANS};
use crate::error::BgpError;

const SHORT: ErrSpec = ("truncated OPEN", notif::OPEN, 0);
const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_FOUR_OCTET_AS: u8 = 65;

/// OPEN body. `asn` is the sender's real ASN: the 4-octet capability's value when
/// present, else the 2-byte field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Sender's autonomous system number.
    pub asn: u32,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// Sender's BGP identifier.
    pub router_id: Ipv4Addr,
    /// Advertised capabilities, in order.
    pub capabilities: Vec<Capability>,
}

/// A capability advertised in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions for one (AFI, SAFI) (RFC 4760).
    Multiprotocol {
        /// Address family identifier.
        afi: u16,
        /// Subsequent address family identifier.
        safi: u8,
    },
    /// Support for 4-octet ASNs, carrying the sender's ASN (RFC 6793).
    FourOctetAs(u32),
    /// Any other capability, kept verbatim.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Open {
    /// Whether the sender advertised the 4-octet ASN capability.
    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }

    /// Whether the sender can carry (afi, safi). A speaker with no multiprotocol
    /// capability at all speaks IPv4 unicast only (RFC 4760 §8).
    pub fn supports(&self, afi: u16, safi: u8) -> bool {
        let mut any_mp = false;
        for c in &self.capabilities {
            if let Capability::Multiprotocol { afi: a, safi: s } = c {
                any_mp = true;
                if (*a, *s) == (afi, safi) {
                    return true;
                }
            }
        }
        !any_mp && (afi, safi) == (super::AFI_IPV4, super::SAFI_UNICAST)
    }

    pub(super) fn decode(body: &[u8]) -> Result<Self, BgpError> {
        let mut r = Reader::new(body);
        let version = r.u8(SHORT)?;
        if version != 4 {
            // Data: the largest version we support (RFC 4271 §6.2).
            return Err(malformed(
                "unsupported BGP version",
                notif::OPEN,
                notif::OPEN_BAD_VERSION,
                vec![0, 4],
            ));
        }
        let as2 = r.u16(SHORT)?;
        let hold_time = r.u16(SHORT)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(malformed(
                "hold time 1 or 2",
                notif::OPEN,
                notif::OPEN_BAD_HOLD,
                Vec::new(),
            ));
        }
        let router_id = Ipv4Addr::from(r.u32(SHORT)?);
        let params_len = usize::from(r.u8(SHORT)?);
        let params = r.take(params_len, SHORT)?;
        if !r.is_empty() {
            return Err(malformed(
                "OPEN length mismatch",
                notif::HEADER,
                notif::HEADER_BAD_LENGTH,
                Vec::new(),
            ));
        }
        let mut capabilities = Vec::new();
        let mut p = Reader::new(params);
        while !p.is_empty() {
            let ptype = p.u8(SHORT)?;
            let plen = usize::from(p.u8(SHORT)?);
            let pval = p.take(plen, SHORT)?;
            if ptype != PARAM_CAPABILITIES {
                return Err(malformed(
                    "unsupported optional parameter",
                    notif::OPEN,
                    notif::OPEN_BAD_PARAM,
                    Vec::new(),
                ));
            }
            decode_capabilities(pval, &mut capabilities)?;
        }
        let asn = capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(as2));
        Ok(Open {
            asn,
            hold_time,
            router_id,
            capabilities,
        })
    }

    pub(super) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), BgpError> {
        out.push(4);
        let as2 = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        out.extend_from_slice(&as2.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.router_id.octets());
        let mut caps = Vec::new();
        for c in &self.capabilities {
            match c {
                Capability::Multiprotocol { afi, safi } => {
                    caps.extend_from_slice(&[CAP_MULTIPROTOCOL, 4]);
                    caps.extend_from_slice(&afi.to_be_bytes());
                    caps.extend_from_slice(&[0, *safi]);
                }
                Capability::FourOctetAs(asn) => {
                    caps.extend_from_slice(&[CAP_FOUR_OCTET_AS, 4]);
                    caps.extend_from_slice(&asn.to_be_bytes());
                }
                Capability::Unknown { code, value } => {
                    let len = u8::try_from(value.len())
                        .map_err(|_| BgpError::TooLong { len: value.len() })?;
                    caps.extend_from_slice(&[*code, len]);
                    caps.extend_from_slice(value);
                }
            }
        }
        if caps.is_empty() {
            out.push(0);
            return Ok(());
        }
        // All capabilities in one optional parameter, as current implementations do.
        let cap_len =
            u8::try_from(caps.len()).map_err(|_| BgpError::TooLong { len: caps.len() })?;
        let params_len =
            u8::try_from(caps.len() + 2).map_err(|_| BgpError::TooLong { len: caps.len() })?;
        out.extend_from_slice(&[params_len, PARAM_CAPABILITIES, cap_len]);
        out.extend_from_slice(&caps);
        Ok(())
    }
}

fn decode_capabilities(buf: &[u8], out: &mut Vec<Capability>) -> Result<(), BgpError> {
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let code = r.u8(SHORT)?;
        let len = usize::from(r.u8(SHORT)?);
        let value = r.take(len, SHORT)?;
        let cap = match (code, len) {
            (CAP_MULTIPROTOCOL, 4) => Capability::Multiprotocol {
                afi: u16::from_be_bytes([value[0], value[1]]),
                safi: value[3],
            },
            (CAP_FOUR_OCTET_AS, 4) => Capability::FourOctetAs(u32::from_be_bytes([
                value[0], value[1], value[2], value[3],
            ])),
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        out.push(cap);
    }
    Ok(())
}
