//! Tokio driver: one task per peer owns its TCP connection, clock and timers and runs the
//! I/O-free [`Session`](crate::fsm::Session); an optional listener hands incoming
//! connections to passive peers.

mod md5;
mod peer;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::BgpError;
use crate::fsm::State;
use crate::route::Route;

/// How long [`Speaker::shutdown`] waits for peers to send their Cease.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Speaker-wide settings.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Our ASN (4-octet capable).
    pub asn: u32,
    /// Our BGP identifier; must not be 0.0.0.0.
    pub router_id: Ipv4Addr,
    /// Where to accept connections for passive peers (usually `0.0.0.0:179`); port 0
    /// picks a free port, see [`Speaker::listen_addr`].
    pub listen: Option<SocketAddr>,
    /// Peers.
    pub peers: Vec<PeerConfig>,
}

/// One BGP neighbor.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Peer address; incoming connections are matched on it.
    pub address: IpAddr,
    /// TCP port to connect to (179 by default).
    pub port: u16,
    /// The peer's ASN; equal to ours means iBGP.
    pub asn: u32,
    /// Proposed hold time in seconds (0, or at least 3; default 90). Keepalives go out
    /// every third of the negotiated value.
    pub hold_time: u16,
    /// Wait for the peer to connect (needs [`SpeakerConfig::listen`]).
    pub passive: bool,
    /// Source address for outgoing connections.
    pub local_address: Option<IpAddr>,
    /// TCP MD5 signature key (RFC 2385), 1-80 bytes; `None`: unsigned.
    pub password: Option<String>,
}

impl PeerConfig {
    /// An active peer on port 179 with hold time 90 s.
    pub fn new(address: IpAddr, asn: u32) -> Self {
        Self {
            address,
            port: 179,
            asn,
            hold_time: 90,
            passive: false,
            local_address: None,
            password: None,
        }
    }
}

/// What the API shows about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Peer address and port.
    pub peer: SocketAddr,
    /// Peer ASN.
    pub peer_asn: u32,
    /// Session state.
    pub state: State,
    /// Time since the session reached Established; `None` when it is not.
    pub uptime: Option<Duration>,
    /// Prefixes the peer has from us.
    pub routes_announced: usize,
    /// Prefixes the peer announced to us.
    pub routes_received: Vec<ipnet::IpNet>,
    /// Why the last connection went down, if one did.
    pub last_error: Option<String>,
}

struct PeerHandle {
    info: watch::Receiver<peer::Published>,
    task: JoinHandle<()>,
}

/// A running BGP speaker. Dropping it without [`Speaker::shutdown`] aborts the sessions
/// without a Cease (the peers notice through TCP).
pub struct Speaker {
    peers: Vec<PeerHandle>,
    routes: watch::Sender<Arc<Vec<Route>>>,
    shutdown: watch::Sender<bool>,
    listener: Option<JoinHandle<()>>,
    listen_addr: Option<SocketAddr>,
}

impl Speaker {
    /// Validates the configuration, binds the listener (if any) and starts every session.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: SpeakerConfig) -> Result<Speaker, BgpError> {
        validate(&config)?;
        let (routes, routes_rx) = watch::channel(Arc::new(Vec::new()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut incoming: HashMap<IpAddr, mpsc::Sender<TcpStream>> = HashMap::new();
        let mut peers = Vec::new();
        for pc in &config.peers {
            let (tx, rx) = mpsc::channel(4);
            if pc.passive {
                incoming.insert(pc.address, tx);
            }
            let (info, task) = peer::spawn(
                &config,
                pc.clone(),
                routes_rx.clone(),
                shutdown_rx.clone(),
                rx,
            );
            peers.push(PeerHandle { info, task });
        }
        let (listener, listen_addr) = match config.listen {
            Some(addr) => {
                let l = TcpListener::bind(addr).await?;
                let bound = l.local_addr()?;
                // Passive peers with a password: the SYN must already be signed.
                for pc in config.peers.iter().filter(|p| p.passive) {
                    if let Some(key) = &pc.password {
                        md5::set_key(&l, bound, pc.address, key.as_bytes())?;
                    }
                }
                (Some(tokio::spawn(accept_loop(l, incoming))), Some(bound))
            }
            None => (None, None),
        };
        Ok(Speaker {
            peers,
            routes,
            shutdown,
            listener,
            listen_addr,
        })
    }

    /// The bound listen address (with the real port when configured with port 0).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// Replaces the set of routes to announce. Each session sends only the difference
    /// from what its peer has, and everything again after it re-establishes.
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<(), BgpError> {
        for r in &routes {
            r.validate()?;
        }
        self.routes.send_replace(Arc::new(routes));
        Ok(())
    }

    /// A snapshot of every session, in configuration order.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.peers
            .iter()
            .map(|p| p.info.borrow().to_info())
            .collect()
    }

    /// Waits until session `index` (configuration order) satisfies `pred`, for tests and
    /// start-up checks. Returns `None` if the speaker stopped first.
    pub async fn wait_session(
        &self,
        index: usize,
        mut pred: impl FnMut(&SessionInfo) -> bool,
    ) -> Option<SessionInfo> {
        let mut rx = self.peers.get(index)?.info.clone();
        loop {
            let info = rx.borrow_and_update().to_info();
            if pred(&info) {
                return Some(info);
            }
            rx.changed().await.ok()?;
        }
    }

    /// Sends NOTIFICATION Cease (administrative shutdown) on every established session,
    /// closes every connection and stops the tasks.
    pub async fn shutdown(mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        self.shutdown.send_replace(true);
        let tasks: Vec<_> = self.peers.drain(..).map(|p| p.task).collect();
        let all = futures_join(tasks);
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, all).await.is_err() {
            tracing::warn!("BGP sessions did not stop in time; aborted");
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        for p in &self.peers {
            p.task.abort();
        }
    }
}

/// Awaits every task (aborting the rest if the caller's timeout drops this future).
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    struct AbortOnDrop(Vec<JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let mut guard = AbortOnDrop(tasks);
    for t in guard.0.iter_mut() {
        let _ = t.await;
    }
}

async fn accept_loop(listener: TcpListener, peers: HashMap<IpAddr, mpsc::Sender<TcpStream>>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Usually EMFILE; back off a little instead of spinning.
                tracing::warn!(error = %e, "BGP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = canonical(from.ip());
        match peers.get(&ip) {
            Some(tx) => {
                if tx.try_send(stream).is_err() {
                    tracing::debug!(peer = %ip, "BGP connection refused: peer busy");
                }
            }
            None => tracing::info!(from = %from, "BGP connection from unknown peer refused"),
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn validate(c: &SpeakerConfig) -> Result<(), BgpError> {
    if c.asn == 0 {
        return Err(BgpError::Config("asn must not be 0".into()));
    }
    if c.router_id.is_unspecified() {
        return Err(BgpError::Config("router_id must not be 0.0.0.0".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &c.peers {
        if p.asn == 0 {
            return Err(BgpError::Config(format!(
                "peer {}: asn must not be 0",
                p.address
            )));
        }
        if p.hold_time == 1 || p.hold_time == 2 {
            return Err(BgpError::Config(format!(
                "peer {}: hold_time must be 0 or at least 3 seconds",
                p.address
            )));
        }
        if p.passive && c.listen.is_none() {
            return Err(BgpError::Config(format!(
                "peer {} is passive but no listen address is set",
                p.address
            )));
        }
        if p.password
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > md5::MAX_KEY_LEN)
        {
            return Err(BgpError::Config(format!(
                "peer {}: a TCP MD5 password has 1..=80 bytes",
                p.address
            )));
        }
        if !seen.insert(canonical(p.address)) {
            return Err(BgpError::Config(format!("peer {} listed twice", p.address)));
        }
    }
    Ok(())
}
