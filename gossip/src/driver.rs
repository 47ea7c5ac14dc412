//! The thin tokio driver: owns the UDP socket, the clock and the OS entropy, and feeds
//! a [`GossipCore`] from one task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreConfig, CoreTimer, GossipCore, Member, Output, PublishError, Timing};
use crate::identity::Identity;
use crate::keys::{KeyError, Keyring};
use crate::state::Entry;
use crate::wire::MAX_DATAGRAM;

/// Settings of a gossip node (`[cluster]`).
#[derive(Debug)]
pub struct GossipConfig {
    /// Node id.
    pub node_id: String,
    /// UDP address to bind (`[cluster] gossip_addr`); port 0 picks one.
    pub bind_addr: SocketAddr,
    /// Address peers should use, when it differs from the bound one (NAT, 0.0.0.0 bind).
    /// Defaults to the bound address.
    pub advertise_addr: Option<SocketAddr>,
    /// Advertised API address of this node.
    pub api_addr: SocketAddr,
    /// Seed peers' gossip addresses (`[cluster] peers`).
    pub seeds: Vec<SocketAddr>,
    /// Cluster key(s).
    pub keys: Keyring,
    /// Protocol timing ([`Timing::lan`] by default).
    pub timing: Timing,
}

/// Errors starting the driver.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP socket could not be bound.
    #[error("binding gossip socket {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The node id is empty or too long.
    #[error("invalid node id {0:?}")]
    NodeId(String),
}

/// What every reader sees, republished after each change.
#[derive(Debug, Default, Clone)]
pub struct GossipView {
    /// Members, this node first.
    pub members: Vec<Member>,
    /// Node ids of live members (including this node), sorted.
    pub live: Vec<String>,
    /// Replicated entries with their origin.
    pub entries: Vec<(String, Entry)>,
}

enum Command {
    Publish(Entry, oneshot::Sender<Result<(), PublishError>>),
}

/// Handle to a running gossip node. Cheap to clone; reads never touch the driver task.
#[derive(Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<GossipView>>,
    local_addr: SocketAddr,
    identity: Identity,
    task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Publishes a local observation to the fleet.
    pub async fn publish(&self, entry: Entry) -> Result<(), PublishError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(entry, tx))
            .await
            .map_err(|_| PublishError::Stopped)?;
        rx.await.map_err(|_| PublishError::Stopped)?
    }

    /// Current members, this node first.
    pub fn members(&self) -> Vec<Member> {
        self.view.borrow().members.clone()
    }

    /// Current replicated entries with their origin node id.
    pub fn snapshot(&self) -> Vec<(String, Entry)> {
        self.view.borrow().entries.clone()
    }

    /// A watch of the whole view, for consumers that rebuild on change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<GossipView>> {
        self.view.clone()
    }

    /// The bound gossip address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The identity this node started with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Stops the driver at once without leaving the cluster, as a crash would; peers
    /// find out by probing. Use the cancellation token for a clean shutdown.
    pub fn abort(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            task.abort();
        }
    }

    /// Waits for the driver task to end (after the cancellation token fired).
    pub async fn join(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            match task.await {
                Err(e) if !e.is_cancelled() => {
                    tracing::warn!(error = %e, "gossip driver task failed");
                }
                _ => {}
            }
        }
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Binds the socket and spawns the driver; it leaves the cluster and stops when `cancel`
/// fires.
pub async fn start(config: GossipConfig, cancel: CancellationToken) -> Result<Gossip, StartError> {
    if config.node_id.is_empty() || config.node_id.len() > crate::state::MAX_NODE_ID_LEN {
        return Err(StartError::NodeId(config.node_id));
    }
    let socket = UdpSocket::bind(config.bind_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.bind_addr,
            source,
        })?;
    let local_addr = socket.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind_addr,
        source,
    })?;
    let identity = Identity {
        node_id: config.node_id,
        gossip_addr: config.advertise_addr.unwrap_or(local_addr),
        api_addr: config.api_addr,
        generation: unix_micros() / 1000,
    };
    let core = GossipCore::new(
        CoreConfig {
            identity: identity.clone(),
            seeds: config.seeds,
            timing: config.timing,
            rng_seed: rand010::random(),
            initial_version: unix_micros(),
        },
        config.keys,
    );
    let (view_tx, view) = watch::channel(Arc::new(GossipView::default()));
    let (commands, command_rx) = mpsc::channel(1024);
    let task = tokio::spawn(run(core, socket, command_rx, view_tx, cancel));
    Ok(Gossip {
        commands,
        view,
        local_addr,
        identity,
        task: Arc::new(std::sync::Mutex::new(Some(task))),
    })
}

async fn run(
    mut core: GossipCore,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    view: watch::Sender<Arc<GossipView>>,
    cancel: CancellationToken,
) {
    let mut timers: Vec<(Instant, CoreTimer)> = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    flush(&mut core, &socket, &mut timers, &view).await;
    loop {
        let next = timers
            .iter()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = cancel.cancelled() => {
                core.leave();
                flush(&mut core, &socket, &mut timers, &view).await;
                break;
            }
            received = socket.recv_from(&mut buf) => match received {
                // Reading MAX_DATAGRAM + 1 bytes lets the core see (and count) oversize.
                Ok((len, from)) => {
                    if let Err(reason) = core.handle_datagram(&buf[..len]) {
                        tracing::debug!(%from, %reason, "gossip datagram dropped");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "gossip recv"),
            },
            Some(command) = commands.recv() => match command {
                Command::Publish(entry, reply) => {
                    let _ = reply.send(core.publish(entry));
                }
            },
            () = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    timers.drain(..).partition(|(at, _)| *at <= now);
                timers = later;
                for (_, timer) in due {
                    core.handle_timer(timer);
                }
            }
        }
        flush(&mut core, &socket, &mut timers, &view).await;
    }
}

async fn flush(
    core: &mut GossipCore,
    socket: &UdpSocket,
    timers: &mut Vec<(Instant, CoreTimer)>,
    view: &watch::Sender<Arc<GossipView>>,
) {
    for output in core.take_outputs() {
        match output {
            Output::Send { to, datagram } => {
                if let Err(e) = socket.send_to(&datagram, to).await {
                    tracing::debug!(error = %e, %to, "gossip send");
                }
            }
            Output::Schedule { after, timer } => timers.push((Instant::now() + after, timer)),
        }
    }
    if core.take_changed() {
        view.send_replace(Arc::new(GossipView {
            members: core.members(),
            live: core.live_member_ids(),
            entries: core.snapshot(),
        }));
    }
}
