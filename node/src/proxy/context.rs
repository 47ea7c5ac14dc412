//! What every connection handler needs: the snapshot, the resolver and the socket settings.

use std::sync::Arc;
use std::time::Duration;

use super::connect::SocketOptions;
use crate::resolve::Resolver;
use crate::settings::ProxySettings;
use crate::snapshot::SnapshotCell;

/// Shared by all listeners of a node.
#[derive(Debug, Clone)]
pub struct ProxyContext {
    /// Current configuration.
    pub cell: Arc<SnapshotCell>,
    /// Backend address resolution.
    pub resolver: Resolver,
    /// Socket options for both sides.
    pub sockets: SocketOptions,
    /// Copy buffer size.
    pub buffer_size: usize,
    /// How long a TLS passthrough client may take to send its ClientHello.
    pub hello_timeout: Duration,
    /// Cancelled at the end of the shutdown grace period: closes every connection.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The L7 data plane's limits, backend clients and persistence tables.
    pub http: Arc<super::http::HttpShared>,
}

impl ProxyContext {
    /// Builds the context from `[proxy]` settings.
    pub fn new(cell: Arc<SnapshotCell>, resolver: Resolver, s: &ProxySettings) -> Self {
        let sockets = SocketOptions {
            nodelay: s.tcp_nodelay,
            keepalive: s.tcp_keepalive(),
            connect_timeout: s.connection_timeout(),
        };
        Self {
            cell,
            resolver,
            sockets,
            buffer_size: s.recv_buffer_size.clamp(4096, 1 << 20),
            hello_timeout: s.header_read_timeout(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            http: Arc::new(super::http::HttpShared::new(s, sockets)),
        }
    }
}
