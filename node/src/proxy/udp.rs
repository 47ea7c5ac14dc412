//! L4 UDP: a flow per client address. The first datagram of a client picks a backend and
//! opens a connected upstream socket; replies from it are relayed back through the
//! listener's socket to that client only. Flows end after the listener's idle timeout;
//! the table is bounded so a flood of source addresses cannot exhaust memory.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::conn_metrics::ConnMetrics;
use super::connect::{pick_addr, pool_plan, Picked};
use super::context::ProxyContext;
use super::copy::{give_buffer, take_buffer};
use crate::balance::PickContext;
use crate::state::BackendState;

/// Most concurrent flows per listener socket.
pub const MAX_FLOWS: usize = 65_536;
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

struct Flow {
    upstream: Arc<UdpSocket>,
    last: AtomicU64,
    /// The flow's connection and byte counters (counted per datagram: a flow can live
    /// for as long as its client keeps talking).
    metrics: Arc<ConnMetrics>,
}

/// Serves one UDP listener socket until `stop` fires.
pub async fn serve(
    ctx: ProxyContext,
    listener_id: String,
    socket: Arc<UdpSocket>,
    stop: CancellationToken,
) {
    let flows: Arc<DashMap<SocketAddr, Arc<Flow>>> = Arc::new(DashMap::new());
    let started = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some kernels; they concern one peer only.
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let now = started.elapsed().as_millis() as u64;
        if let Some(flow) = flows.get(&client).map(|f| f.clone()) {
            flow.last.store(now, Ordering::Relaxed);
            match flow.upstream.send(&buf[..n]).await {
                Ok(_) => flow.metrics.bytes_in.increment(n as u64),
                Err(e) => tracing::debug!(%client, error = %e, "udp send to backend failed"),
            }
            continue;
        }
        if flows.len() >= MAX_FLOWS {
            metrics::counter!("fiberlb_udp_flows_dropped_total", "listener" => listener_id.clone())
                .increment(1);
            continue;
        }
        match open_flow(&ctx, &listener_id, client).await {
            Ok((flow, state, idle)) => {
                flow.last.store(now, Ordering::Relaxed);
                let m = flow.metrics.clone();
                m.total.increment(1);
                m.active.increment(1.0);
                match flow.upstream.send(&buf[..n]).await {
                    Ok(_) => m.bytes_in.increment(n as u64),
                    Err(e) => tracing::debug!(%client, error = %e, "udp send to backend failed"),
                }
                flows.insert(client, flow.clone());
                let (socket, flows, stop) = (socket.clone(), flows.clone(), stop.clone());
                tokio::spawn(async move {
                    let cancel = state.close_token();
                    let r =
                        relay_replies(&flow, &socket, client, idle, started, &cancel, &stop).await;
                    if let Err(e) = r {
                        tracing::debug!(%client, error = %e, "udp flow ended with an error");
                    }
                    flows.remove(&client);
                    state.stats.active.fetch_sub(1, Ordering::Relaxed);
                    m.active.decrement(1.0);
                });
            }
            Err(e) => super::connect::reject(&listener_id, client, "no_backend", &e),
        }
    }
}

async fn open_flow(
    ctx: &ProxyContext,
    listener_id: &str,
    client: SocketAddr,
) -> Result<(Arc<Flow>, Arc<BackendState>, Duration), String> {
    let snapshot = ctx.cell.load();
    let (l, lb) = snapshot
        .active_listener(listener_id)
        .ok_or("listener is gone")?;
    let pool = l
        .default_pool_id
        .as_deref()
        .or(lb.default_pool_id.as_deref());
    let plan = pool_plan(&snapshot, pool).map_err(|e| e.to_string())?;
    let mut eligible = plan.eligible();
    let pick_ctx = PickContext { client };
    let mut last = String::from("no healthy backend");
    for _ in 0..3 {
        let (i, addr) = match pick_addr(&plan, &mut eligible, &pick_ctx, &ctx.resolver) {
            Picked::Addr(i, a) => (i, a),
            Picked::Unusable(why) => {
                last = why;
                continue;
            }
            Picked::Nothing => break,
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let upstream = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return Err(format!("binding an upstream socket: {e}")),
        };
        if let Err(e) = upstream.connect(addr).await {
            last = format!("{addr}: {e}");
            continue;
        }
        let b = &plan.backends[i];
        // The flow's slot, in one compare-and-swap: `pick_addr` saw room, but the flow
        // opened just before this one may have taken the last slot since. The flow's task
        // gives it back when the flow ends.
        if !plan.states[i].stats.try_acquire(b.max_connections) {
            super::connect::count_full(&plan, i);
            last = format!("backend {} is at its max_connections", b.name);
            continue;
        }
        let idle = Duration::from_millis(u64::from(l.timeout_client_ms.max(1)));
        let flow = Arc::new(Flow {
            upstream: Arc::new(upstream),
            last: AtomicU64::new(0),
            metrics: super::conn_metrics::get(&lb.id, &l.id, &b.id),
        });
        return Ok((flow, plan.states[i].clone(), idle));
    }
    Err(last)
}

async fn relay_replies(
    flow: &Flow,
    socket: &UdpSocket,
    client: SocketAddr,
    idle: Duration,
    started: Instant,
    cancel: &CancellationToken,
    stop: &CancellationToken,
) -> io::Result<()> {
    loop {
        let last = Duration::from_millis(flow.last.load(Ordering::Relaxed));
        let since = started.elapsed().saturating_sub(last);
        if since >= idle {
            return Ok(());
        }
        tokio::select! {
            r = flow.upstream.readable() => {
                r?;
                // Borrow a buffer only while a reply is in hand: idle flows hold none.
                let mut buf = take_buffer(MAX_DATAGRAM);
                let n = match flow.upstream.try_recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        give_buffer(buf);
                        continue;
                    }
                    // A refused datagram (ICMP port unreachable) ends nothing: the backend may come back.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        give_buffer(buf);
                        continue;
                    }
                    Err(e) => {
                        give_buffer(buf);
                        return Err(e);
                    }
                };
                flow.last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                let sent = socket.send_to(&buf[..n], client).await;
                give_buffer(buf);
                sent?;
                flow.metrics.bytes_out.increment(n as u64);
            }
            _ = tokio::time::sleep(idle - since) => {}
            _ = cancel.cancelled() => return Ok(()),
            _ = stop.cancelled() => return Ok(()),
        }
    }
}
