//! BGP-4 message codec (RFC 4271, RFC 4760, RFC 6793, RFC 1997), written for a route
//! originator: it encodes what we send and decodes anything a peer may send without
//! panicking. Our own codec rather than netgauze-bgp-pkt: we need a handful of messages,
//! a decoder whose every error maps to the NOTIFICATION to send back, and no large
//! dependency tree in the node binary.

mod open;
mod reader;
mod update;

#[cfg(test)]
pub(crate) mod tests;

pub use open::{Capability, Open};
pub use update::{AsSegment, Attribute, Update, AS_SEQUENCE, AS_SET, ORIGIN_IGP};

use crate::error::BgpError;
use reader::Reader;

/// Length of the fixed header: 16-byte marker, 2-byte length, 1-byte type.
pub const HEADER_LEN: usize = 19;
/// Largest message allowed without the extended-message capability (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The 2-byte placeholder ASN sent in OPEN when the real ASN needs four octets (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// Address family identifiers (IANA) used in the multiprotocol capability and attributes.
pub const AFI_IPV4: u16 = 1;
/// IPv6 address family identifier.
pub const AFI_IPV6: u16 = 2;
/// Unicast subsequent address family identifier.
pub const SAFI_UNICAST: u8 = 1;
/// Well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326).
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;

/// NOTIFICATION error codes and the subcodes we emit (RFC 4271 §4.5, §6; RFC 4486).
pub mod notif {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// Header subcode: Connection Not Synchronized (bad marker).
    pub const HEADER_NOT_SYNC: u8 = 1;
    /// Header subcode: Bad Message Length.
    pub const HEADER_BAD_LENGTH: u8 = 2;
    /// Header subcode: Bad Message Type.
    pub const HEADER_BAD_TYPE: u8 = 3;
    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// OPEN subcode: Unsupported Version Number.
    pub const OPEN_BAD_VERSION: u8 = 1;
    /// OPEN subcode: Bad Peer AS.
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    /// OPEN subcode: Bad BGP Identifier.
    pub const OPEN_BAD_ID: u8 = 3;
    /// OPEN subcode: Unsupported Optional Parameter.
    pub const OPEN_BAD_PARAM: u8 = 4;
    /// OPEN subcode: Unacceptable Hold Time.
    pub const OPEN_BAD_HOLD: u8 = 6;
    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// UPDATE subcode: Malformed Attribute List.
    pub const UPDATE_MALFORMED_ATTRS: u8 = 1;
    /// UPDATE subcode: Attribute Length Error.
    pub const UPDATE_ATTR_LENGTH: u8 = 5;
    /// UPDATE subcode: Invalid ORIGIN Attribute.
    pub const UPDATE_BAD_ORIGIN: u8 = 6;
    /// UPDATE subcode: Invalid NEXT_HOP Attribute.
    pub const UPDATE_BAD_NEXT_HOP: u8 = 8;
    /// UPDATE subcode: Optional Attribute Error.
    pub const UPDATE_OPTIONAL_ATTR: u8 = 9;
    /// UPDATE subcode: Invalid Network Field.
    pub const UPDATE_BAD_NETWORK: u8 = 10;
    /// UPDATE subcode: Malformed AS_PATH.
    pub const UPDATE_BAD_AS_PATH: u8 = 11;
    /// Hold Timer Expired.
    pub const HOLD_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// Cease subcode: Administrative Shutdown (RFC 4486).
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    /// Cease subcode: Connection Rejected (RFC 4486).
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
}

/// One BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN: first message on a connection.
    Open(Open),
    /// UPDATE: route announcements and withdrawals.
    Update(Update),
    /// NOTIFICATION: an error; the sender closes the connection after it.
    Notification(Notification),
    /// KEEPALIVE: liveness, and the acknowledgement of an OPEN.
    Keepalive,
}

/// NOTIFICATION body: error code, subcode and diagnostic data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code (see [`notif`]).
    pub code: u8,
    /// Error subcode, 0 when unspecific.
    pub subcode: u8,
    /// Diagnostic data whose meaning depends on the code.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with no diagnostic data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NOTIFICATION {}/{}", self.code, self.subcode)?;
        if !self.data.is_empty() {
            write!(f, " ({} data bytes)", self.data.len())?;
        }
        Ok(())
    }
}

/// Session-dependent encoding choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecOptions {
    /// Both sides advertised the 4-octet ASN capability: AS_PATH carries 4-byte ASNs.
    /// Without it, AS_PATH carries 2-byte ASNs and larger ones are written as AS_TRANS.
    pub four_octet_as: bool,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            four_octet_as: true,
        }
    }
}

/// Decodes one message from the front of `buf`, assuming 4-octet AS_PATHs.
///
/// Returns `Ok(None)` when `buf` holds only part of a message, and the message with the
/// number of bytes it used otherwise. Never panics; every error carries the NOTIFICATION
/// to send to the peer.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, BgpError> {
    decode_with(buf, CodecOptions::default())
}

/// [`decode`] with explicit session options.
pub fn decode_with(buf: &[u8], opts: CodecOptions) -> Result<Option<(Message, usize)>, BgpError> {
    // Reject a bad marker as soon as we see it rather than waiting for 19 bytes.
    let seen = buf.len().min(16);
    if buf[..seen].iter().any(|&b| b != 0xFF) {
        return Err(malformed(
            "bad marker",
            notif::HEADER,
            notif::HEADER_NOT_SYNC,
            Vec::new(),
        ));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let kind = buf[18];
    let min = match kind {
        TYPE_OPEN => 29,
        TYPE_UPDATE => 23,
        TYPE_NOTIFICATION => 21,
        TYPE_KEEPALIVE => HEADER_LEN,
        _ => {
            return Err(malformed(
                "unknown message type",
                notif::HEADER,
                notif::HEADER_BAD_TYPE,
                vec![kind],
            ))
        }
    };
    let bad_len = len < min || len > MAX_MESSAGE_LEN || (kind == TYPE_KEEPALIVE && len != min);
    if bad_len {
        return Err(malformed(
            "bad message length",
            notif::HEADER,
            notif::HEADER_BAD_LENGTH,
            buf[16..18].to_vec(),
        ));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[HEADER_LEN..len];
    let msg = match kind {
        TYPE_OPEN => Message::Open(Open::decode(body)?),
        TYPE_UPDATE => Message::Update(Update::decode(body, opts)?),
        TYPE_NOTIFICATION => {
            let mut r = Reader::new(body);
            let code = r.u8(NOTIF_ERR)?;
            let subcode = r.u8(NOTIF_ERR)?;
            Message::Notification(Notification {
                code,
                subcode,
                data: r.rest().to_vec(),
            })
        }
        _ => Message::Keepalive,
    };
    Ok(Some((msg, len)))
}

/// NOTIFICATION bodies are length-checked by the header, so this cannot fire; it is
/// only here so the reader has an error to return.
const NOTIF_ERR: (&str, u8, u8) = (
    "short NOTIFICATION",
    notif::HEADER,
    notif::HEADER_BAD_LENGTH,
);

impl Message {
    /// Encodes with 4-octet AS_PATHs.
    pub fn encode(&self) -> Result<Vec<u8>, BgpError> {
        self.encode_with(CodecOptions::default())
    }

    /// Encodes with explicit session options. Fails only if the message exceeds 4096 bytes.
    pub fn encode_with(&self, opts: CodecOptions) -> Result<Vec<u8>, BgpError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0xFF; 16]);
        out.extend_from_slice(&[0, 0]);
        match self {
            Message::Open(open) => {
                out.push(TYPE_OPEN);
                open.encode_body(&mut out)?;
            }
            Message::Update(update) => {
                out.push(TYPE_UPDATE);
                update.encode_body(&mut out, opts)?;
            }
            Message::Notification(n) => {
                out.push(TYPE_NOTIFICATION);
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
            }
            Message::Keepalive => out.push(TYPE_KEEPALIVE),
        }
        let len = out.len();
        if len > MAX_MESSAGE_LEN {
            return Err(BgpError::TooLong { len });
        }
        // len <= 4096, so it fits in u16.
        out[16..18].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(out)
    }
}

/// Builds a decode error carrying the NOTIFICATION to answer with.
pub(crate) fn malformed(reason: &'static str, code: u8, subcode: u8, data: Vec<u8>) -> BgpError {
    BgpError::Malformed {
        reason,
        notification: Notification {
            code,
            subcode,
            data,
        },
    }
}
