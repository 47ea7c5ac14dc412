//! Reading a ClientHello off a connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{parse, ClientHelloInfo, HelloError, Parsed, MAX_BYTES};

/// Bytes asked of the socket per read: a typical hello (and its records) in one go.
const READ_CHUNK: usize = 4096;

/// Reads from `r` until a complete ClientHello has arrived (or `timeout` passes) and
/// returns what it says together with *every* byte read, which the caller must send to
/// the backend first: the backend does the real handshake and needs the hello verbatim.
/// Never buffers more than [`MAX_BYTES`].
///
/// To peek after a PROXY header, chain the header's leftover bytes in front of the
/// stream (`std::io::Cursor::new(leftover).chain(stream)`).
pub async fn peek_client_hello<R: AsyncRead + Unpin>(
    r: &mut R,
    timeout: Duration,
) -> Result<(ClientHelloInfo, Vec<u8>), HelloError> {
    tokio::time::timeout(timeout, read_untimed(r))
        .await
        .map_err(|_| HelloError::Timeout)?
}

async fn read_untimed<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(ClientHelloInfo, Vec<u8>), HelloError> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        let needed = match parse(&buf)? {
            Parsed::Hello(info) => return Ok((info, buf)),
            Parsed::Incomplete { needed_at_least } => needed_at_least,
        };
        let old = buf.len();
        // `parse` never asks for more than MAX_BYTES, so this always reads at least one byte.
        buf.resize(needed.max(old + READ_CHUNK).min(MAX_BYTES), 0);
        let n = r.read(&mut buf[old..]).await?;
        buf.truncate(old + n);
        if n == 0 {
            return Err(HelloError::Eof);
        }
    }
}
