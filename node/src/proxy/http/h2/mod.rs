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
