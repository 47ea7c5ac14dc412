//! Opens and closes listener sockets as the configuration changes.
//!
//! The manager diffs the set of wanted sockets against the running ones on every snapshot
//! change (and periodically, to retry binds that failed). Closing a listener stops
//! accepting only: connections already accepted finish on the snapshot they started
//! with, so a configuration change drops nothing. TCP listeners get one `SO_REUSEPORT`
//! socket per core, each with its own accept loop.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::ListenerProtocol;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::context::ProxyContext;
use super::{passthrough, tcp, udp};

/// Failed binds are retried this often.
const RETRY: Duration = Duration::from_secs(5);
/// Listen backlog.
const BACKLOG: i32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Bind {
    addr: SocketAddr,
    udp: bool,
}

struct Running {
    bind: Bind,
    protocol: ListenerProtocol,
    stop: CancellationToken,
}

/// Where a listener of a load balancer with `vip` binds.
pub fn bind_ip(override_ip: Option<IpAddr>, vip: Option<IpAddr>) -> IpAddr {
    override_ip.or(vip).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Keeps listener sockets in step with the snapshot until `stop` turns true.
pub async fn run(ctx: ProxyContext, bind_override: Option<IpAddr>, mut stop: watch::Receiver<bool>) {
    let mut changed = ctx.cell.subscribe();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        reconcile(&ctx, bind_override, &mut running);
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = retry.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, r) in running.drain() {
        r.stop.cancel();
    }
}

fn reconcile(ctx: &ProxyContext, bind_override: Option<IpAddr>, running: &mut HashMap<String, Running>) {
    let snapshot = ctx.cell.load();
    // Wanted sockets, in id order so that a clash is resolved the same way every time.
    let mut wanted: BTreeMap<&str, (Bind, ListenerProtocol)> = BTreeMap::new();
    for id in snapshot.listeners.keys() {
        let Some((l, lb)) = snapshot.active_listener(id) else { continue };
        if matches!(l.protocol, ListenerProtocol::Http | ListenerProtocol::Https) {
            // Served by the L7 data plane, which this build does not contain yet.
            continue;
        }
        let addr = SocketAddr::new(bind_ip(bind_override, lb.vip), l.port);
        wanted.insert(id.as_str(), (Bind { addr, udp: l.protocol.is_udp() }, l.protocol));
    }
    let mut taken: HashMap<Bind, &str> = HashMap::new();
    wanted.retain(|id, (bind, _)| match taken.get(bind) {
        Some(other) => {
            tracing::error!(listener = id, other, addr = %bind.addr, "two listeners want the same address; keeping the first");
            false
        }
        None => {
            taken.insert(*bind, id);
            true
        }
    });
    running.retain(|id, r| {
        let keep = wanted.get(id.as_str()).is_some_and(|(b, p)| *b == r.bind && *p == r.protocol);
        if !keep {
            tracing::info!(listener = %id, addr = %r.bind.addr, "listener closed");
            r.stop.cancel();
        }
        keep
    });
    for (id, (bind, protocol)) in wanted {
        if running.contains_key(id) {
            continue;
        }
        let stop = CancellationToken::new();
        let started = if bind.udp {
            start_udp(ctx, id, bind.addr, stop.clone())
        } else {
            start_tcp(ctx, id, bind.addr, protocol, stop.clone())
        };
        match started {
            Ok(()) => {
                tracing::info!(listener = %id, addr = %bind.addr, ?protocol, "listener open");
                running.insert(id.to_string(), Running { bind, protocol, stop });
            }
            Err(e) => {
                metrics::counter!("fiberlb_listener_bind_failures_total", "listener" => id.to_string()).increment(1);
                tracing::error!(listener = %id, addr = %bind.addr, error = %e, "cannot open listener; will retry");
            }
        }
    }
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    if !addr.ip().is_unspecified() {
        // A VIP may not be on an interface yet (BGP adds it); bind anyway.
        let _ = s.set_ip_transparent_v4(false);
        let _ = s.set_freebind_v4(true);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

fn start_tcp(
    ctx: &ProxyContext,
    id: &str,
    addr: SocketAddr,
    protocol: ListenerProtocol,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let s = socket(addr, Type::STREAM, Protocol::TCP)?;
        s.listen(BACKLOG)?;
        listeners.push(TcpListener::from_std(s.into())?);
    }
    let open = Arc::new(AtomicU32::new(0));
    for listener in listeners {
        let (ctx, id, stop, open) = (ctx.clone(), id.to_string(), stop.clone(), open.clone());
        tokio::spawn(async move { accept_loop(ctx, id, listener, protocol, stop, open).await });
    }
    Ok(())
}

struct OpenGuard(Arc<AtomicU32>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    ctx: ProxyContext,
    id: String,
    listener: TcpListener,
    protocol: ListenerProtocol,
    stop: CancellationToken,
    open: Arc<AtomicU32>,
) {
    let id: Arc<str> = id.into();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let limit = ctx.cell.load().listeners.get(&*id).and_then(|l| l.connection_limit);
        let now = open.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = OpenGuard(open.clone());
        if limit.is_some_and(|max| now > max) {
            metrics::counter!("fiberlb_connections_rejected_total", "listener" => id.to_string(), "reason" => "limit").increment(1);
            continue;
        }
        let (ctx, id) = (ctx.clone(), id.clone());
        tokio::spawn(async move {
            let _guard = guard;
            match protocol {
                ListenerProtocol::TcpTls => passthrough::handle(&ctx, &id, stream, peer).await,
                _ => tcp::handle(&ctx, &id, stream, peer).await,
            }
        });
    }
}

fn start_udp(ctx: &ProxyContext, id: &str, addr: SocketAddr, stop: CancellationToken) -> std::io::Result<()> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    let socket = Arc::new(UdpSocket::from_std(s.into())?);
    tokio::spawn(udp::serve(ctx.clone(), id.to_string(), socket, stop));
    Ok(())
}
