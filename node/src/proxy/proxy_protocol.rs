//! HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as specified in
//! <https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>.
//!
//! The data plane *sends* a header to backends that want the client's address
//! ([`encode`], [`encode_with`], [`encode_local_v2`]) and *accepts* one from a trusted
//! front (another LB, a CDN) on listeners configured for it ([`decode`], [`read_header`]).
//!
//! The decoder is a pure function over bytes: it never panics, never reads outside the
//! buffer, does work bounded by the header size (at most 107 bytes for v1,
//! [`V2_MAX_LEN`] for v2), and says how many bytes it needs when the buffer is short, so
//! callers can read exactly that much and never swallow application bytes they cannot
//! give back. Anything the spec calls invalid is refused with a [`ProxyError`]; the
//! connection should then be closed, as the spec requires.
//!
//! Not handled on purpose: the UNIX socket addresses of v2 (reported as `None`: an LB
//! cannot use a peer's filesystem path) and interpretation of TLVs (returned raw, except
//! that a CRC32C TLV is verified).

mod decode;
mod encode;
mod read;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use decode::decode;
pub use encode::{encode, encode_local_v2, encode_v2_with_tlvs, encode_with};
pub use read::read_header;

/// The 12-byte signature that starts every v2 header. It contains `\r\n\r\n\0`, so no
/// v1 parser or HTTP server can mistake it for a valid request.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest v1 header including the CRLF (spec §2.1: 107 bytes for the worst case TCP6).
pub const V1_MAX_LEN: usize = 107;

/// Shortest possible v1 header, `PROXY UNKNOWN\r\n`.
pub const V1_MIN_LEN: usize = 15;

/// Fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_HEADER_LEN: usize = 16;

/// Largest v2 header (fixed part, addresses and TLVs) we accept. The wire allows 64 KiB;
/// real senders (HAProxy, AWS NLB, GCP) stay far below 1 KiB even with SSL TLVs, and a
/// bound keeps a hostile peer from making us buffer 64 KiB before it says anything.
pub const V2_MAX_LEN: usize = 4096;

/// PROXY protocol version to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Human-readable `PROXY TCP4 …\r\n` line; TCP only.
    V1,
    /// Binary header; TCP and UDP, extensible with TLVs.
    V2,
}

/// Transport protocol announced in a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (`SOCK_STREAM`).
    Stream,
    /// UDP (`SOCK_DGRAM`); v2 only.
    Dgram,
}

/// Result of [`decode`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer is a valid prefix of a header but too short to finish it. More bytes
    /// are needed: the buffer must hold at least `needed_at_least` bytes in total
    /// (always more than it holds now) before decoding can make progress.
    Incomplete {
        /// Lower bound on the total buffer length needed.
        needed_at_least: usize,
    },
    /// A complete, valid header.
    Header {
        /// Original client address; `None` for v1 UNKNOWN, v2 LOCAL, UNSPEC and UNIX
        /// (the connection's own peer address should then be used).
        src: Option<SocketAddr>,
        /// Original destination address; `None` exactly when `src` is.
        dst: Option<SocketAddr>,
        /// Bytes of the buffer taken by the header; application data starts there.
        len: usize,
        /// v2 TLVs as `(type, value)` in wire order (empty for v1 and v2 LOCAL).
        tlvs: Vec<(u8, Vec<u8>)>,
    },
}

/// Why a PROXY header was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start with neither the v1 `PROXY ` nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NoSignature,
    /// No CRLF within the first 107 bytes of a v1 header.
    #[error("PROXY v1 header has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// v2 version nibble other than 2.
    #[error("unsupported PROXY v2 version nibble {0:#x}")]
    V2Version(u8),
    /// v2 command other than LOCAL (0) or PROXY (1).
    #[error("unsupported PROXY v2 command {0:#x}")]
    V2Command(u8),
    /// v2 family/transport byte outside the seven the spec defines.
    #[error("invalid PROXY v2 address family/transport byte {0:#04x}")]
    V2Family(u8),
    /// v2 length too small for the addresses of the announced family.
    #[error("PROXY v2 length {len} is shorter than the {needed}-byte address block")]
    V2AddressLength {
        /// Length announced in the header.
        len: usize,
        /// Bytes the family's addresses take.
        needed: usize,
    },
    /// v2 header longer than [`V2_MAX_LEN`].
    #[error("PROXY v2 header of {0} bytes exceeds the {V2_MAX_LEN}-byte limit")]
    V2TooLong(usize),
    /// A TLV that overruns the header, or a failed CRC32C check.
    #[error("malformed PROXY v2 TLV: {0}")]
    V2Tlv(&'static str),
    /// Asked to encode something the requested version cannot express.
    #[error("cannot encode: {0}")]
    Unsupported(&'static str),
    /// The peer did not send a complete header within the timeout.
    #[error("timed out waiting for the PROXY header")]
    Timeout,
    /// The peer closed the connection before the header was complete.
    #[error("connection closed before the PROXY header was complete")]
    Eof,
    /// Reading from the connection failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}
