//! TCP check: the connect succeeds. The socket is closed at once.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::CheckError;

/// Connects to `addr` (the caller bounds the time).
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream, CheckError> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckError::Connect {
            addr,
            message: e.to_string(),
        })?;
    // A probe is one tiny request: do not let Nagle delay it.
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The TCP check.
pub(super) async fn check(addr: SocketAddr) -> Result<(), CheckError> {
    connect(addr).await.map(drop)
}
