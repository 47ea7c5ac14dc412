//! Choosing a backend of a pool and connecting to it, trying other backends when a
//! connect fails (a refused or timed-out connect is safe to retry: nothing was sent).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::balance::PickContext;
use crate::health::{self, Outcome};
use crate::resolve::{Lookup, Resolver};
use crate::snapshot::{PoolPlan, Snapshot};
use crate::state::BackendState;

/// Connect attempts per client connection (distinct backends).
const MAX_ATTEMPTS: usize = 3;

/// Why no backend connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The listener has no pool to send to.
    #[error("no pool configured")]
    NoPool,
    /// The pool does not exist or is disabled.
    #[error("pool {0} is missing or disabled")]
    PoolUnavailable(String),
    /// No backend is eligible.
    #[error("no healthy backend in pool {0}")]
    NoHealthyBackend(String),
    /// Backends are healthy, but every one has reached its `max_connections`.
    #[error("pool {0} is at capacity: every backend has reached its max_connections")]
    AtCapacity(String),
    /// Every attempt failed; the last error.
    #[error("connecting to backends of pool {pool} failed: {last}")]
    Failed {
        /// Pool id.
        pool: String,
        /// The last failure.
        last: String,
    },
}

impl ConnectError {
    /// The `reason` label of `fiberlb_connections_rejected_total` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoPool => "no_pool",
            Self::PoolUnavailable(_) => "pool_unavailable",
            Self::NoHealthyBackend(_) => "no_healthy_backend",
            Self::AtCapacity(_) => "at_capacity",
            Self::Failed { .. } => "connect_failed",
        }
    }
}

/// Counts a client connection (or UDP flow) that got no backend, and says why in the
/// log: at WARN at most once a second per process, DEBUG otherwise, so a dead or full
/// pool under load does not flood the log; the counter has every one.
pub fn reject(listener: &str, client: SocketAddr, reason: &'static str, e: &dyn std::fmt::Display) {
    use std::sync::atomic::AtomicU64;
    static LAST_WARN_MS: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("fiberlb_connections_rejected_total", "listener" => listener.to_string(), "reason" => reason).increment(1);
    let now = fiberlb_api::model::now_ms();
    let last = LAST_WARN_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LAST_WARN_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(listener, %client, error = %e, "no backend for connection (more within 1 s are logged at DEBUG; see fiberlb_connections_rejected_total)");
    } else {
        tracing::debug!(listener, %client, error = %e, "no backend for connection");
    }
}

/// A connected backend, holding its active-connection count until dropped.
#[derive(Debug)]
pub struct BackendConn {
    /// The socket.
    pub stream: TcpStream,
    /// The pool it came from (same snapshot as the choice).
    pub plan: Arc<PoolPlan>,
    /// Index of the backend in `plan`.
    pub index: usize,
    /// Where it connected.
    pub addr: SocketAddr,
    /// Its runtime state.
    pub state: Arc<BackendState>,
}

impl Drop for BackendConn {
    fn drop(&mut self) {
        self.state.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Socket options applied to both sides of a proxied connection.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_KEEPALIVE idle time.
    pub keepalive: Option<Duration>,
    /// Backend connect timeout.
    pub connect_timeout: Duration,
}

/// Opens a TCP connection to `addr` with `opts` already set, in fewer system calls than
/// `TcpStream::connect` + setting options afterwards: the socket is created non-blocking
/// in one call, and success is read off the readiness event instead of asking the kernel
/// with `getsockopt(SO_ERROR)` (which is then only done on failure, for the message).
/// At tens of thousands of new connections per second every call shows.
pub async fn open(addr: SocketAddr, opts: SocketOptions) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    if opts.nodelay {
        sock.set_tcp_nodelay(true)?;
    }
    if let Some(idle) = opts.keepalive {
        sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle))?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    let ready = stream
        .ready(tokio::io::Interest::WRITABLE | tokio::io::Interest::ERROR)
        .await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream.take_error()?.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection failed")
        }));
    }
    Ok(stream)
}

/// Outcome of one pick.
pub enum Picked {
    /// Backend index and the address to use.
    Addr(usize, SocketAddr),
    /// A backend was picked but has no usable address (why); it is now excluded.
    Unusable(String),
    /// Nothing eligible is left.
    Nothing,
}

/// Picks an eligible backend with room for one more connection and resolves it (from
/// cache, never waiting); the picked backend is removed from `eligible` so a retry picks
/// another. A backend at its `max_connections` is skipped (and counted) here rather than
/// in [`PoolPlan::eligible`], so only the chosen backend's count is read per pick.
pub fn pick_addr(
    plan: &PoolPlan,
    eligible: &mut [bool],
    ctx: &PickContext,
    resolver: &Resolver,
) -> Picked {
    let i = loop {
        let Some(i) = plan.balancer.pick(ctx, eligible) else {
            return Picked::Nothing;
        };
        eligible[i] = false;
        if plan.has_room(i) {
            break i;
        }
        count_full(plan, i);
    };
    let b = &plan.backends[i];
    match resolver.lookup(&b.address, b.port) {
        Lookup::Ready(addrs) => match addrs.first() {
            Some(a) => Picked::Addr(i, *a),
            None => Picked::Unusable(format!("backend {} resolved to no address", b.name)),
        },
        Lookup::Pending => Picked::Unusable(format!(
            "backend {} address is still being resolved",
            b.name
        )),
        Lookup::Failed(e) => Picked::Unusable(format!("backend {}: {e}", b.name)),
    }
}

/// Counts a new connection (or request) that backend `i` turned away because it had
/// reached its `max_connections`.
pub fn count_full(plan: &PoolPlan, i: usize) {
    if let Some(b) = plan.backends.get(i) {
        metrics::counter!("fiberlb_backend_max_connections_reached_total", "backend" => b.id.clone())
            .increment(1);
    }
}

/// The enabled pool `pool_id` of a snapshot.
pub fn pool_plan(
    snapshot: &Snapshot,
    pool_id: Option<&str>,
) -> Result<Arc<PoolPlan>, ConnectError> {
    let pool_id = pool_id.ok_or(ConnectError::NoPool)?;
    snapshot
        .pools
        .get(pool_id)
        .filter(|p| p.pool.enabled)
        .cloned()
        .ok_or_else(|| ConnectError::PoolUnavailable(pool_id.to_string()))
}

/// Picks a backend of `pool_id` for `client` and connects, trying up to three backends.
pub async fn connect(
    snapshot: &Snapshot,
    pool_id: Option<&str>,
    client: SocketAddr,
    resolver: &Resolver,
    opts: SocketOptions,
) -> Result<BackendConn, ConnectError> {
    let plan = pool_plan(snapshot, pool_id)?;
    let pool_id = plan.pool.id.as_str();
    let mut eligible = plan.eligible();
    let ctx = PickContext { client };
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        let (i, addr) = match pick_addr(&plan, &mut eligible, &ctx, resolver) {
            Picked::Addr(i, a) => (i, a),
            Picked::Unusable(why) => {
                last = Some(why);
                continue;
            }
            Picked::Nothing => break,
        };
        let b = &plan.backends[i];
        let state = plan.states[i].clone();
        // Takes the connection slot with one compare-and-swap: `pick_addr` saw room, but a
        // connection accepted on another thread may have taken the last slot since.
        if !state.stats.try_acquire(b.max_connections) {
            count_full(&plan, i);
            continue;
        }
        // The circuit breaker may refuse (half-open with its probe slots taken).
        let Some(admission) = health::passive::admit(&state) else {
            state.stats.active.fetch_sub(1, Ordering::Relaxed);
            last = Some(format!("{}: circuit breaker open", b.name));
            continue;
        };
        let started = Instant::now();
        match tokio::time::timeout(opts.connect_timeout, open(addr, opts)).await {
            Ok(Ok(stream)) => {
                state.stats.observe_latency(started.elapsed());
                admission.finish(Outcome::Success(started.elapsed()));
                state.stats.started.fetch_add(1, Ordering::Relaxed);
                return Ok(BackendConn {
                    stream,
                    plan: plan.clone(),
                    index: i,
                    addr,
                    state,
                });
            }
            Ok(Err(e)) => {
                let reset = e.kind() == std::io::ErrorKind::ConnectionReset;
                admission.finish(if reset {
                    Outcome::Reset
                } else {
                    Outcome::ConnectFailed
                });
                last = Some(format!("{} ({addr}): {e}", b.name));
            }
            Err(_) => {
                admission.finish(Outcome::Timeout);
                last = Some(format!(
                    "{} ({addr}): connect timed out after {:?}",
                    b.name, opts.connect_timeout
                ));
            }
        }
        state.stats.active.fetch_sub(1, Ordering::Relaxed);
        metrics::counter!("fiberlb_backend_connect_failures_total", "backend" => b.id.clone())
            .increment(1);
    }
    match last {
        Some(last) => Err(ConnectError::Failed {
            pool: pool_id.to_string(),
            last,
        }),
        None if plan.at_capacity() => Err(ConnectError::AtCapacity(pool_id.to_string())),
        None => Err(ConnectError::NoHealthyBackend(pool_id.to_string())),
    }
}
