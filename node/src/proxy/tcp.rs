//! L4 TCP (and the splice half of TLS passthrough): pick a backend, connect, optionally
//! send a PROXY protocol header, then copy bytes both ways until both sides are done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::{Listener, LoadBalancer, ProxyProtocolVersion};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::conn_metrics::ConnMetrics;
use super::connect::{connect, BackendConn};
use super::context::ProxyContext;
use super::copy::{splice, CopyEnd, CopyOptions, Transferred};
use super::proxy_protocol;

/// Handles one accepted TCP connection of a `Tcp` listener.
pub async fn handle(ctx: &ProxyContext, listener_id: &str, client: TcpStream, peer: SocketAddr) {
    let snapshot = ctx.cell.load();
    let Some((l, lb)) = snapshot.active_listener(listener_id) else {
        return;
    };
    let pool = l
        .default_pool_id
        .as_deref()
        .or(lb.default_pool_id.as_deref());
    // The connect timeout may change on reload: one atomic load per connection.
    let sockets = ctx.sockets_now();
    let backend = match connect(&snapshot, pool, peer, &ctx.resolver, sockets).await {
        Ok(b) => b,
        Err(e) => {
            super::connect::reject(&l.id, peer, e.reason(), &e);
            return;
        }
    };
    let conf = RelayConf::new(l, lb, &backend);
    drop(snapshot);
    relay(ctx, conf, client, peer, backend, &[]).await;
}

/// What a relayed connection keeps of its listener and load balancer: their metric
/// handles and the idle timeout. Not the objects themselves, so that the snapshot can go
/// (a long connection would otherwise pin every configuration it started under) without
/// copying them (their strings, rules and tags cost a dozen allocations per connection).
pub struct RelayConf {
    metrics: Arc<ConnMetrics>,
    idle: Duration,
}

impl RelayConf {
    /// For a connection of listener `l` (of `lb`) to `backend`.
    pub fn new(l: &Listener, lb: &LoadBalancer, backend: &BackendConn) -> Self {
        let b = &backend.plan.backends[backend.index];
        RelayConf {
            metrics: super::conn_metrics::get(&lb.id, &l.id, &b.id),
            idle: Duration::from_millis(u64::from(l.timeout_client_ms.max(1))),
        }
    }
}

/// Sends the PROXY header and `preface` (bytes already read from the client), then splices.
pub async fn relay(
    ctx: &ProxyContext,
    conf: RelayConf,
    client: TcpStream,
    peer: SocketAddr,
    mut backend: BackendConn,
    preface: &[u8],
) {
    let RelayConf { metrics: m, idle } = conf;
    m.total.increment(1);
    m.active.increment(1.0);
    let mut header = Vec::new();
    if let Some(v) = backend.plan.pool.proxy_protocol {
        let local = client.local_addr().unwrap_or(peer);
        header = match v {
            ProxyProtocolVersion::V1 => {
                proxy_protocol::encode(proxy_protocol::Version::V1, peer, local)
            }
            ProxyProtocolVersion::V2 => {
                proxy_protocol::encode(proxy_protocol::Version::V2, peer, local)
            }
        };
    }
    header.extend_from_slice(preface);
    let moved = Transferred::counting(&m.bytes_in, &m.bytes_out);
    let result = async {
        if !header.is_empty() {
            backend.stream.write_all(&header).await?;
            // The client's bytes read before the relay (a TLS ClientHello), not the
            // PROXY header, which is ours.
            m.bytes_in.increment(preface.len() as u64);
        }
        let cancel = backend.state.close_token();
        tokio::select! {
            r = splice(&client, &backend.stream, CopyOptions { buf_size: ctx.buffer_size, zero_copy: ctx.zero_copy, idle }, &cancel, &moved) => r,
            _ = ctx.shutdown.cancelled() => Ok(CopyEnd::Cancelled),
        }
    }
    .await;
    m.active.decrement(1.0);
    let (to_b, to_c) = (moved.to_backend.into_inner(), moved.to_client.into_inner());
    match result {
        Ok(end) => {
            tracing::debug!(client = %peer, backend = %backend.addr, ?end, to_b, to_c, "connection closed")
        }
        Err(e) => {
            tracing::debug!(client = %peer, backend = %backend.addr, error = %e, "connection ended with an error")
        }
    }
}
