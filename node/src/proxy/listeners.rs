//! Opens and closes listener sockets as the configuration changes.
//!
//! The manager diffs the set of wanted sockets against the running ones on every snapshot
//! change (and periodically, to retry binds that failed). Closing a listener stops
//! accepting only: connections already accepted finish on the snapshot they started
//! with, so a configuration change drops nothing. TCP listeners get one `SO_REUSEPORT`
//! socket per data-plane worker (see [`super::workers`]), each with its own accept loop
//! on that worker.
//!
//! HTTPS listeners also get their TLS configuration here, off the hot path: it is built
//! when the listener opens and rebuilt only when the listener or a certificate changed
//! (so an unrelated configuration change keeps the TLS session caches), then swapped in
//! for new handshakes. A listener whose TLS configuration cannot be built is logged and
//! not served (an open one is closed). The build needs `[proxy.tls]`, which the snapshot
//! builder does not have; that is why it lives here rather than in the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use fiberlb_api::model::{Listener, ListenerProtocol};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::accept::Acceptor;
use super::context::ProxyContext;
use super::workers::Workers;
use super::{http, passthrough, tcp, tls_termination, udp};
use crate::snapshot::Snapshot;

/// Failed binds are retried this often.
const RETRY: Duration = Duration::from_secs(5);
/// Listen backlog.
const BACKLOG: i32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Bind {
    addr: SocketAddr,
    udp: bool,
}

/// The TLS configuration new handshakes of an HTTPS listener use.
type TlsSlot = Arc<ArcSwap<rustls::ServerConfig>>;

struct Running {
    bind: Bind,
    protocol: ListenerProtocol,
    stop: CancellationToken,
    /// TCP: a duplicate of each worker's listening socket, to stop them all at once.
    sockets: Vec<std::net::TcpListener>,
    /// HTTPS: the current TLS configuration and the fingerprint it was built from.
    tls: Option<(TlsSlot, u64)>,
}

impl Running {
    /// Stops accepting, on every worker's socket within microseconds of each other.
    ///
    /// Each accept loop closes its socket when it sees `stop`, but on its own worker and
    /// at its own time: while one socket of the `SO_REUSEPORT` group is closed and another
    /// still listens, the kernel resets the connections queued on the first and hands new
    /// ones to the second, so a client sees "refused" and then "accepted" again. Shutting
    /// the sockets down here, one after the other on this thread, takes them out of the
    /// group together (`shutdown(SHUT_RD)` on a listening socket stops it on Linux).
    fn close(&self) {
        self.stop.cancel();
        for s in &self.sockets {
            if let Err(e) = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Both) {
                tracing::debug!(addr = %self.bind.addr, error = %e, "listener shutdown");
            }
        }
    }
}

/// What changes an HTTPS listener's TLS configuration: the listener itself and the
/// certificates (the SNI resolver may pick any certificate of the tenant).
fn tls_fingerprint(l: &Listener, snapshot: &Snapshot) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&l.id, l.revision, l.updated_at).hash(&mut h);
    let mut certs: Vec<(&String, u64, u64)> = snapshot
        .certificates
        .values()
        .map(|c| (&c.id, c.revision, c.updated_at))
        .collect();
    certs.sort_unstable();
    certs.hash(&mut h);
    h.finish()
}

/// Where a listener of a load balancer with `vip` binds.
pub fn bind_ip(override_ip: Option<IpAddr>, vip: Option<IpAddr>) -> IpAddr {
    override_ip
        .or(vip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Keeps listener sockets in step with the snapshot until `stop` turns true.
pub async fn run(
    ctx: ProxyContext,
    bind_override: Option<IpAddr>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changed = ctx.cell.subscribe();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut tls_failed: HashMap<String, u64> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        reconcile(&ctx, bind_override, &workers, &mut running, &mut tls_failed);
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = retry.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, r) in running.drain() {
        r.close();
    }
}

/// The TLS configuration of HTTPS listener `l`: `Some((config, fingerprint))` when it
/// must be (re)installed, `None` when the running one is current. `Err` when it cannot be
/// built (logged once per fingerprint).
#[allow(clippy::type_complexity)]
fn tls_for(
    ctx: &ProxyContext,
    l: &Listener,
    snapshot: &Snapshot,
    running: Option<&Running>,
    failed: &mut HashMap<String, u64>,
) -> Result<Option<(Arc<rustls::ServerConfig>, u64)>, ()> {
    let fp = tls_fingerprint(l, snapshot);
    if running
        .and_then(|r| r.tls.as_ref())
        .is_some_and(|(_, have)| *have == fp)
    {
        return Ok(None);
    }
    match tls_termination::build(l, &snapshot.certificates, &ctx.http.tls_defaults) {
        Ok(t) => {
            failed.remove(&l.id);
            Ok(Some((t.config, fp)))
        }
        Err(e) => {
            if failed.insert(l.id.clone(), fp) != Some(fp) {
                metrics::counter!("fiberlb_listener_tls_errors_total", "listener" => l.id.clone())
                    .increment(1);
                tracing::error!(listener = %l.id, name = %l.name, error = %e, "TLS configuration cannot be built; listener not served");
            }
            Err(())
        }
    }
}

fn reconcile(
    ctx: &ProxyContext,
    bind_override: Option<IpAddr>,
    workers: &Workers,
    running: &mut HashMap<String, Running>,
    tls_failed: &mut HashMap<String, u64>,
) {
    let snapshot = ctx.cell.load();
    ctx.http.retain(&snapshot);
    // TLS configurations to install, by listener id.
    let mut new_tls: HashMap<&str, (Arc<rustls::ServerConfig>, u64)> = HashMap::new();
    // Wanted sockets, in id order so that a clash is resolved the same way every time.
    let mut wanted: BTreeMap<&str, (Bind, ListenerProtocol)> = BTreeMap::new();
    for id in snapshot.listeners.keys() {
        let Some((l, lb)) = snapshot.active_listener(id) else {
            continue;
        };
        if l.protocol == ListenerProtocol::Https {
            match tls_for(ctx, l, &snapshot, running.get(id.as_str()), tls_failed) {
                Ok(Some(t)) => {
                    new_tls.insert(id.as_str(), t);
                }
                Ok(None) => {}
                Err(()) => continue,
            }
        }
        let addr = SocketAddr::new(bind_ip(bind_override, lb.vip), l.port);
        wanted.insert(
            id.as_str(),
            (
                Bind {
                    addr,
                    udp: l.protocol.is_udp(),
                },
                l.protocol,
            ),
        );
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
        let keep = wanted
            .get(id.as_str())
            .is_some_and(|(b, p)| *b == r.bind && *p == r.protocol);
        if !keep {
            tracing::info!(listener = %id, addr = %r.bind.addr, "listener closed");
            r.close();
        }
        keep
    });
    for (id, (bind, protocol)) in wanted {
        if let Some(r) = running.get_mut(id) {
            if let (Some((slot, fp)), Some((config, new_fp))) = (r.tls.as_mut(), new_tls.remove(id))
            {
                slot.store(config);
                *fp = new_fp;
                tracing::info!(listener = %id, "TLS configuration updated");
            }
            continue;
        }
        let built = match new_tls.remove(id) {
            Some(t) => Some(t),
            // Reopened (new address) with an unchanged configuration: build it afresh.
            None if protocol == ListenerProtocol::Https => {
                let Some(l) = snapshot.listeners.get(id) else {
                    continue;
                };
                match tls_for(ctx, l, &snapshot, None, tls_failed) {
                    Ok(t) => t,
                    Err(()) => continue,
                }
            }
            None => None,
        };
        let tls = built.map(|(config, fp)| (Arc::new(ArcSwap::new(config)), fp));
        // A child of the node's shutdown: a connection waiting on its listener's token
        // also ends at shutdown, with one waiter instead of two (an idle keep-alive
        // connection's task carries every future it waits on).
        let stop = ctx.shutdown.child_token();
        let started = if bind.udp {
            start_udp(ctx, workers, id, bind.addr, stop.clone()).map(|()| Vec::new())
        } else {
            start_tcp(
                ctx,
                workers,
                id,
                bind.addr,
                protocol,
                tls.as_ref().map(|(slot, _)| slot.clone()),
                stop.clone(),
            )
        };
        match started {
            Ok(sockets) => {
                tracing::info!(listener = %id, addr = %bind.addr, ?protocol, "listener open");
                running.insert(
                    id.to_string(),
                    Running {
                        bind,
                        protocol,
                        stop,
                        sockets,
                        tls,
                    },
                );
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

/// How long the kernel holds a connection whose client has sent nothing yet.
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

/// `TCP_DEFER_ACCEPT`: the listener wakes for a connection only once its first bytes (the
/// request, the ClientHello) are there, or after [`DEFER_ACCEPT_SECONDS`] without any.
///
/// Accepted earlier, a connection's first read finds nothing: the socket must be
/// registered with epoll, waited on, and deregistered before it closes, three system
/// calls and a worker wake-up that a short HTTP connection otherwise never needs
/// (measured: 1.35 `epoll_ctl` and 0.67 empty `recv` per connection at 64 new
/// connections per request). nginx's `deferred` and HAProxy's `defer-accept` do the same.
/// Only for protocols whose client speaks first; a server-first protocol behind a plain TCP
/// listener would wait for nothing.
fn defer_accept(s: &Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = DEFER_ACCEPT_SECONDS;
    // SAFETY: a valid socket descriptor and a pointer to a c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn start_tcp(
    ctx: &ProxyContext,
    workers: &Workers,
    id: &str,
    addr: SocketAddr,
    protocol: ListenerProtocol,
    tls: Option<TlsSlot>,
    stop: CancellationToken,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    // One acceptor per worker (`[proxy] worker_threads`): the kernel spreads new
    // connections over the SO_REUSEPORT sockets, so no thread is a hand-off point, and a
    // connection stays on the worker that accepted it.
    let mut listeners = Vec::with_capacity(workers.handles().len());
    let mut dups = Vec::with_capacity(workers.handles().len());
    for worker in workers.handles() {
        let s = socket(addr, Type::STREAM, Protocol::TCP)?;
        // Accepted sockets inherit these on Linux: no per-connection setsockopt calls.
        s.set_tcp_nodelay(ctx.sockets.nodelay)?;
        if let Some(idle) = ctx.sockets.keepalive {
            s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?;
        }
        if protocol.client_speaks_first() {
            defer_accept(&s)?;
        }
        s.listen(BACKLOG)?;
        dups.push(s.try_clone()?.into());
        // Registered with the worker's reactor, where its accept loop runs.
        let _on = worker.enter();
        listeners.push((worker, Acceptor::new(s.into())?));
    }
    let open = Arc::new(AtomicU32::new(0));
    for (worker, listener) in listeners {
        let (ctx, id, stop, open, tls) = (
            ctx.clone(),
            id.to_string(),
            stop.clone(),
            open.clone(),
            tls.clone(),
        );
        worker
            .spawn(async move { accept_loop(ctx, id, listener, protocol, tls, stop, open).await });
    }
    Ok(dups)
}

async fn accept_loop(
    ctx: ProxyContext,
    id: String,
    listener: Acceptor,
    protocol: ListenerProtocol,
    tls: Option<TlsSlot>,
    stop: CancellationToken,
    open: Arc<AtomicU32>,
) {
    let id: Arc<str> = id.into();
    // What the listener's connections share (they keep it for their whole life).
    let http_ctx = Arc::new(ctx.clone());
    // Made once: a `cancelled()` future made per accept would register with the token
    // (its lock, twice) for every connection.
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Shut down by `Running::close` before this loop saw the stop.
                Err(_) if stop.is_cancelled() => return,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.as_mut() => return,
        };
        let limit = ctx
            .cell
            .load()
            .listeners
            .get(&*id)
            .and_then(|l| l.connection_limit);
        let now = open.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = super::context::OpenGuard::new(open.clone());
        if limit.is_some_and(|max| now > max) {
            metrics::counter!("fiberlb_connections_rejected_total", "listener" => id.to_string(), "reason" => "limit").increment(1);
            continue;
        }
        // The shared context (a pointer), not a copy: a task keeps what it captures for
        // its whole life.
        let (ctx, id) = (http_ctx.clone(), id.clone());
        // One spawn per protocol: a task is as large as its future, so a plain TCP
        // connection must not carry the (much larger) HTTP or TLS-peek state machine.
        match protocol {
            ListenerProtocol::TcpTls => {
                let Some(stream) = registered(stream, &id) else {
                    continue;
                };
                tokio::spawn(async move {
                    let _guard = guard;
                    passthrough::handle(&ctx, &id, stream, peer).await
                });
            }
            ListenerProtocol::Http | ListenerProtocol::Https => {
                // New handshakes use the TLS configuration current at accept time.
                let tls = tls.as_ref().map(|slot| slot.load_full());
                let stop = stop.clone();
                // The guard goes with the connection (HTTPS: into the task HTTP/1 continues in).
                // Registered with the reactor only if it has to wait (`http::LazyTcp`).
                let stream = http::LazyTcp::new(stream);
                tokio::spawn(http::serve(ctx, id, stream, peer, tls, stop, guard));
            }
            _ => {
                let Some(stream) = registered(stream, &id) else {
                    continue;
                };
                tokio::spawn(async move {
                    let _guard = guard;
                    tcp::handle(&ctx, &id, stream, peer).await
                });
            }
        }
    }
}

/// An accepted socket registered with the current worker's reactor (L4: both directions
/// wait on it from the start).
fn registered(stream: std::net::TcpStream, listener: &str) -> Option<TcpStream> {
    match TcpStream::from_std(stream) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(listener = %listener, error = %e, "could not register a connection");
            None
        }
    }
}

fn start_udp(
    ctx: &ProxyContext,
    workers: &Workers,
    id: &str,
    addr: SocketAddr,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // One socket (its flow table is the listener's), on a worker chosen by the listener
    // id so that several UDP listeners spread over the workers.
    let handles = workers.handles();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let worker = &handles[(h.finish() % handles.len() as u64) as usize];
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    let _on = worker.enter();
    let socket = Arc::new(UdpSocket::from_std(s.into())?);
    worker.spawn(udp::serve(ctx.clone(), id.to_string(), socket, stop));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sockets of one `SO_REUSEPORT` group whose accept loops have not yet seen the
    /// stop (nobody closes them): after `close`, every connect is refused, none reaches
    /// the socket still open on a slow worker.
    #[test]
    fn close_stops_every_socket_of_the_group_at_once() {
        let first = socket("127.0.0.1:0".parse().unwrap(), Type::STREAM, Protocol::TCP).unwrap();
        first.listen(16).unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        let second = socket(addr, Type::STREAM, Protocol::TCP).unwrap();
        second.listen(16).unwrap();
        // What the accept loops hold: they close these only when their worker runs them.
        let held: Vec<std::net::TcpListener> = vec![first.into(), second.into()];
        let running = Running {
            bind: Bind { addr, udp: false },
            protocol: ListenerProtocol::Tcp,
            stop: CancellationToken::new(),
            sockets: held.iter().map(|s| s.try_clone().unwrap()).collect(),
            tls: None,
        };
        assert!(std::net::TcpStream::connect(addr).is_ok());
        running.close();
        for _ in 0..50 {
            let e = std::net::TcpStream::connect(addr).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        drop(held);
    }

    /// What HTTP/HTTPS/TLS-passthrough listeners rely on: a connection that has sent
    /// nothing is not handed to accept; its first bytes make it acceptable, with them
    /// already readable.
    #[test]
    fn deferred_listeners_hand_over_connections_with_their_first_bytes() {
        use std::io::{Read, Write};
        let s = socket("127.0.0.1:0".parse().unwrap(), Type::STREAM, Protocol::TCP).unwrap();
        defer_accept(&s).unwrap();
        s.listen(16).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let l: std::net::TcpListener = s.into();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            l.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "a connection without data was handed over"
        );
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (mut conn, _) = loop {
            match l.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "never accepted");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        conn.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            conn.read(&mut buf).unwrap(),
            16,
            "the request is there at accept"
        );
        assert!(ListenerProtocol::Http.client_speaks_first());
        assert!(ListenerProtocol::TcpTls.client_speaks_first());
        assert!(!ListenerProtocol::Tcp.client_speaks_first());
    }
}
