//! Reading the TLS ClientHello of a connection *without* terminating TLS, so a TLS
//! passthrough listener can route by SNI (and ALPN) and then replay every byte it read to
//! the chosen backend, which performs the real handshake.
//!
//! [`parse`] is a pure function over the bytes received so far: it reassembles the
//! ClientHello handshake message from one or more TLS records, validates the structure
//! the routing depends on (record framing, message lengths, extension framing, the
//! `server_name` and ALPN extensions) and ignores the rest (cipher suites, key shares),
//! which the backend will judge. It never panics, never reads out of bounds, and refuses
//! to buffer more than [`MAX_BYTES`]. [`peek_client_hello`] drives it off a socket.
//!
//! Out of scope: SSLv2-compatible hellos (no SNI possible, refused as [`HelloError::NotTls`]),
//! DTLS, QUIC, and encrypted ClientHello (ECH: the outer SNI is what we see and route on).

mod parse;
mod read;

#[cfg(test)]
mod tests;

pub use parse::parse;
pub use read::peek_client_hello;

/// TLS record header: content type, legacy version, length.
pub const RECORD_HEADER_LEN: usize = 5;

/// Largest ClientHello handshake message (4-byte header included) we accept: one full
/// TLS record. Real hellos are 200 B to 2 KiB (a post-quantum key share adds ~1.2 KiB).
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// Most bytes [`parse`] will ask for: the largest hello plus the headers of up to 64
/// records, for clients that split the hello into small records.
pub const MAX_BYTES: usize = MAX_HELLO_LEN + 64 * RECORD_HEADER_LEN;

/// What the router needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// The `server_name` host name, lower-cased, without a trailing dot; `None` when the
    /// client sent none or sent an IP literal (which RFC 6066 forbids; ignored like rustls).
    pub sni: Option<String>,
    /// ALPN protocol names in the client's order of preference (e.g. `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
    /// `legacy_version` of the hello (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
}

/// Result of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A valid prefix of a ClientHello; the buffer must hold at least `needed_at_least`
    /// bytes in total (always more than now, never more than [`MAX_BYTES`]) to go on.
    Incomplete {
        /// Lower bound on the total buffer length needed.
        needed_at_least: usize,
    },
    /// The complete ClientHello.
    Hello(ClientHelloInfo),
}

/// Why a connection's first bytes were not accepted as a TLS ClientHello.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The bytes do not start with a TLS handshake record (plain HTTP, SSH, SSLv2, …).
    #[error("not a TLS handshake")]
    NotTls,
    /// A record other than handshake arrived before the ClientHello was complete.
    #[error("TLS record of content type {0} before the ClientHello was complete")]
    UnexpectedRecord(u8),
    /// The first handshake message is not a ClientHello.
    #[error("first TLS handshake message has type {0}, not ClientHello")]
    NotClientHello(u8),
    /// The hello, or the records carrying it, exceed [`MAX_HELLO_LEN`] / [`MAX_BYTES`].
    #[error("TLS ClientHello larger than {MAX_HELLO_LEN} bytes")]
    TooLarge,
    /// Framing or a length field that does not add up.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// A `server_name` that is not a valid DNS host name.
    #[error("TLS server_name is not a valid host name")]
    InvalidSni,
    /// The client did not send a complete hello within the timeout.
    #[error("timed out waiting for the TLS ClientHello")]
    Timeout,
    /// The client closed the connection before the hello was complete.
    #[error("connection closed before the TLS ClientHello was complete")]
    Eof,
    /// Reading from the connection failed.
    #[error("reading the TLS ClientHello: {0}")]
    Io(#[from] std::io::Error),
}
