//! Reading a header off a connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{decode, Decoded, ProxyError, V1_MAX_LEN, V2_HEADER_LEN};

/// Reads one PROXY header from `r` within `timeout` and returns the client address it
/// announces (`None` for LOCAL/UNKNOWN: use the socket's peer address) and the bytes read
/// past the header, which belong to the application stream and must be processed first.
///
/// Reads are sized so that little is read past the header: v2 reads the 16-byte fixed
/// part and then exactly the announced length, so its leftover is always empty; v1 cannot
/// know where its line ends, so it reads what is available up to the 107-byte limit and
/// hands back what followed the CRLF.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyError> {
    tokio::time::timeout(timeout, read_untimed(r))
        .await
        .map_err(|_| ProxyError::Timeout)?
}

async fn read_untimed<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyError> {
    let mut buf = Vec::with_capacity(V2_HEADER_LEN);
    loop {
        let needed = match decode(&buf)? {
            Decoded::Header { src, len, .. } => {
                let leftover = buf.split_off(len);
                return Ok((src, leftover));
            }
            Decoded::Incomplete { needed_at_least } => needed_at_least,
        };
        let limit = match buf.first() {
            None => V2_HEADER_LEN,
            Some(b'P') => V1_MAX_LEN,
            Some(_) => needed,
        };
        let old = buf.len();
        buf.resize(limit.max(needed), 0);
        let n = r.read(&mut buf[old..]).await?;
        buf.truncate(old + n);
        if n == 0 {
            return Err(ProxyError::Eof);
        }
    }
}
