//! Our HTTP/2 server (RFC 9113), for h2c by prior knowledge and h2 by ALPN.
//!
//! Why not hyper's: hyper serves each HTTP/2 request in a task of its own and the `h2`
//! crate behind it writes each response as it is handed over. Measured at 64
//! connections x 10 streams through one worker, that cost 15.5 µs of CPU per request
//! against HAProxy's 11.2: about 2 µs more in user space (a spawned task, a stream
//! store behind a lock, header maps converted twice) and 2 µs more in the kernel (a
//! `writev` for every two responses, where HAProxy writes a whole turn's worth at once).
//! Here a connection is one task that polls its requests' handlers itself and writes
//! what they produced in one go.
//!
//! - [`frame`]: frame parsing and writing;
//! - [`hpack`]: header blocks (decoding with loona-hpack, encoding without a dynamic
//!   table), and the request checks of RFC 9113 section 8;
//! - [`recv`]: request bodies, with flow control as back-pressure;
//! - [`server`]: the connection.

pub(crate) mod frame;
pub(crate) mod hpack;
pub(crate) mod recv;
pub(crate) mod server;
#[cfg(test)]
mod tests;

pub use recv::RecvBody;

/// Runs what reads a client's bytes (the frame parser, then the header-block decoder
/// over each complete HEADERS/CONTINUATION block, as a request or as trailers) over
/// `data` as it would arrive after the preface, delivered in two reads split at `split`.
/// Returns one line per frame or block and ends at the first connection error. For
/// fuzzing: the result must not depend on where the bytes were split.
pub fn decode_client_bytes(data: &[u8], split: usize) -> Vec<String> {
    let split = split.min(data.len());
    let mut out = Vec::new();
    let mut buf = bytes::BytesMut::new();
    let mut decoder = hpack::Decoder::new(16 << 10);
    let mut block: Option<(u32, bytes::BytesMut)> = None;
    let mut opened = std::collections::HashSet::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let f = match frame::parse(&mut buf, frame::DEFAULT_MAX_FRAME) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error {e}"));
                    return out;
                }
            };
            let (stream, fragment, end) = match &f {
                frame::Frame::Headers {
                    stream,
                    block,
                    end_headers,
                    ..
                } => (*stream, block.clone(), *end_headers),
                frame::Frame::Continuation {
                    stream,
                    block,
                    end_headers,
                } => (*stream, block.clone(), *end_headers),
                other => {
                    out.push(format!("{other:?}"));
                    continue;
                }
            };
            let whole = block.get_or_insert_with(|| (stream, bytes::BytesMut::new()));
            whole.1.extend_from_slice(&fragment);
            if !end {
                continue;
            }
            let Some((stream, whole)) = block.take() else {
                continue;
            };
            if opened.insert(stream) {
                out.push(format!("request {stream} {:?}", decoder.request(&whole)));
            } else {
                out.push(format!("trailers {stream} {:?}", decoder.trailers(&whole)));
            }
        }
    }
    out
}

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::service::ConnCtx;

/// Serves one HTTP/2 connection until the client is done with it, it fails, or the
/// listener stops (`stop`: GOAWAY, open streams finish) or the node shuts down
/// (`shutdown`: closed at once).
pub(crate) async fn serve<S>(
    io: S,
    conn: Arc<ConnCtx>,
    stop: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), server::ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: the connection's state is large, and the task holding it lives as long.
    let mut server = Box::new(server::Server::new(io, conn));
    tokio::select! {
        r = server.as_mut() => r,
        _ = stop.cancelled() => {
            server.graceful();
            tokio::select! {
                r = server.as_mut() => r,
                _ = shutdown.cancelled() => Ok(()),
            }
        }
        _ = shutdown.cancelled() => Ok(()),
    }
}
