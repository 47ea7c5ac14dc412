//! The I/O-free gossip core: datagrams and timer events in, datagrams and timers out.
//!
//! It owns foca, the keyring and the replicated state. It has no socket, no clock and no
//! entropy of its own (the RNG is seeded by whoever builds it), so a simulation can run
//! several cores deterministically in memory.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec};
use rand010::{rngs::StdRng, Rng as _, SeedableRng as _};

use crate::broadcast::{lock, Shared, StateHandler};
use crate::identity::Identity;
use crate::state::{Entry, StateUpdate};
use crate::wire::{self, DropReason};
use crate::Keyring;

/// Timing of the SWIM protocol and of our own periodic work.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// How long a suspect member has to refute before it is declared down.
    pub suspect_to_down_after: Duration,
    /// How often membership gossip is pushed, and to how many members.
    pub gossip_every: Duration,
    /// Members per gossip round.
    pub gossip_fanout: usize,
    /// Retry period of the announce to seeds while no member is active (UDP may lose it).
    pub announce_retry: Duration,
    /// Period of the announce to seeds once joined, which heals partitions.
    pub announce_every: Duration,
    /// Period at which a node re-broadcasts all of its own entries, so late joiners and
    /// members that missed a broadcast converge.
    pub rebroadcast_every: Duration,
    /// How long a down member is remembered (blocks its old identity from reappearing).
    pub remove_down_after: Duration,
    /// How many times each update is piggybacked.
    pub max_transmissions: u8,
}

impl Timing {
    /// Tuned for a LAN: measured on loopback, a killed member is declared down in
    /// ~1-1.5 s (probe 300 ms, rtt 100 ms, suspect 600 ms, gossip 100 ms to 2 members).
    pub fn lan() -> Self {
        Self {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down_after: Duration::from_millis(600),
            gossip_every: Duration::from_millis(100),
            gossip_fanout: 2,
            announce_retry: Duration::from_millis(500),
            announce_every: Duration::from_secs(10),
            rebroadcast_every: Duration::from_secs(2),
            remove_down_after: Duration::from_secs(30),
            max_transmissions: 6,
        }
    }

    fn foca_config(&self) -> foca::Config {
        let mut c = foca::Config::new_lan(std::num::NonZeroU32::MIN.saturating_add(2));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down_after;
        c.remove_down_after = Some(self.remove_down_after);
        c.max_transmissions = NonZeroU8::new(self.max_transmissions).unwrap_or(NonZeroU8::MIN);
        c.max_packet_size = NonZeroUsize::new(wire::MAX_PAYLOAD).unwrap_or(NonZeroUsize::MIN);
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_every,
            num_members: NonZeroUsize::new(self.gossip_fanout).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}

/// Everything a core needs besides its keys.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Who we are.
    pub identity: Identity,
    /// Gossip addresses of seed peers (`[cluster] peers`); our own address is ignored.
    pub seeds: Vec<SocketAddr>,
    /// Protocol timing.
    pub timing: Timing,
    /// Seed of the RNG used by foca and for nonces; the driver takes it from the OS.
    pub rng_seed: u64,
    /// First version of our entries; the driver uses Unix microseconds so a restarted
    /// node's entries beat those of its previous run.
    pub initial_version: u64,
}

/// A timer the core asked for.
#[derive(Clone, Debug, PartialEq)]
pub enum CoreTimer {
    /// One of foca's.
    Foca(foca::Timer<Identity>),
    /// Announce to the seeds.
    Announce,
    /// Re-broadcast our own entries.
    Rebroadcast,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a sealed datagram.
    Send {
        /// Destination gossip address.
        to: SocketAddr,
        /// The datagram.
        datagram: Vec<u8>,
    },
    /// Call [`GossipCore::handle_timer`] with `timer` after `after`.
    Schedule {
        /// Delay.
        after: Duration,
        /// The event.
        timer: CoreTimer,
    },
}

/// A member's liveness as seen by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; down unless it refutes in time.
    Suspect,
    /// Declared down.
    Down,
}

/// A member of the fleet (including this node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// Liveness.
    pub state: MemberState,
    /// Advertised API address.
    pub api_addr: SocketAddr,
    /// Gossip address.
    pub gossip_addr: SocketAddr,
    /// Identity generation (bumps on rejoin).
    pub generation: u64,
}

/// Errors publishing an entry.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The backend id is longer than [`crate::state::MAX_BACKEND_ID_LEN`].
    #[error("entry exceeds the gossip size limits")]
    TooLarge,
    /// foca refused the broadcast.
    #[error("foca refused the broadcast: {0}")]
    Foca(String),
    /// The driver has stopped.
    #[error("gossip driver has stopped")]
    Stopped,
}

/// The SWIM node and its replicated state, with no I/O.
pub struct GossipCore {
    foca: Foca<Identity, PostcardCodec, StdRng, StateHandler>,
    runtime: AccumulatingRuntime<Identity>,
    keys: Keyring,
    rng: StdRng,
    shared: Arc<Mutex<Shared>>,
    node_id: String,
    seeds: Vec<SocketAddr>,
    timing: Timing,
    next_version: u64,
    outputs: Vec<Output>,
    membership_dirty: bool,
}

impl GossipCore {
    /// Builds a core and schedules its first announce and re-broadcast.
    pub fn new(config: CoreConfig, keys: Keyring) -> Self {
        let mut rng = StdRng::seed_from_u64(config.rng_seed);
        let foca_rng = StdRng::seed_from_u64(rng.next_u64());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let node_id = config.identity.node_id.clone();
        let seeds = config
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != config.identity.gossip_addr)
            .collect();
        let handler = StateHandler {
            shared: Arc::clone(&shared),
            self_id: node_id.clone(),
        };
        let foca = Foca::with_custom_broadcast(
            config.identity,
            config.timing.foca_config(),
            foca_rng,
            PostcardCodec,
            handler,
        );
        let mut core = Self {
            foca,
            runtime: AccumulatingRuntime::new(),
            keys,
            rng,
            shared,
            node_id,
            seeds,
            next_version: config.initial_version,
            outputs: vec![
                Output::Schedule {
                    after: Duration::ZERO,
                    timer: CoreTimer::Announce,
                },
                Output::Schedule {
                    after: config.timing.rebroadcast_every,
                    timer: CoreTimer::Rebroadcast,
                },
            ],
            timing: config.timing,
            membership_dirty: true,
        };
        lock(&core.shared).dirty = true;
        core.drain_runtime();
        core
    }

    /// Our current identity.
    pub fn identity(&self) -> &Identity {
        self.foca.identity()
    }

    /// Opens and handles one datagram. A datagram that fails is dropped and counted in
    /// `fiberlb_gossip_dropped_total{reason}`; the error says why.
    pub fn handle_datagram(&mut self, bytes: &[u8]) -> Result<(), DropReason> {
        let result = wire::decode_datagram(&self.keys, bytes).and_then(|payload| {
            let r = self.foca.handle_data(&payload, &mut self.runtime);
            self.drain_runtime();
            r.map_err(|e| {
                tracing::debug!(error = %e, "gossip payload rejected");
                DropReason::Payload
            })
        });
        if let Err(reason) = result {
            reason.count();
        }
        result
    }

    /// Handles a timer previously requested through [`Output::Schedule`].
    pub fn handle_timer(&mut self, timer: CoreTimer) {
        match timer {
            CoreTimer::Foca(t) => {
                if let Err(e) = self.foca.handle_timer(t, &mut self.runtime) {
                    tracing::debug!(error = %e, "foca timer");
                }
            }
            CoreTimer::Announce => {
                let joined = self.foca.num_members() > 0;
                for seed in self.seeds.clone() {
                    if let Err(e) = self.foca.announce(Identity::seed(seed), &mut self.runtime) {
                        tracing::debug!(error = %e, %seed, "announce");
                    }
                }
                let after = if joined {
                    self.timing.announce_every
                } else {
                    self.timing.announce_retry
                };
                self.outputs.push(Output::Schedule {
                    after,
                    timer: CoreTimer::Announce,
                });
            }
            CoreTimer::Rebroadcast => {
                self.rebroadcast_own();
                self.outputs.push(Output::Schedule {
                    after: self.timing.rebroadcast_every,
                    timer: CoreTimer::Rebroadcast,
                });
            }
        }
        self.drain_runtime();
    }

    /// Records a local observation and broadcasts it with the next version.
    pub fn publish(&mut self, entry: Entry) -> Result<(), PublishError> {
        let update = StateUpdate {
            origin: self.node_id.clone(),
            version: self.next_version,
            entry,
        };
        if !update.is_bounded() {
            return Err(PublishError::TooLarge);
        }
        self.next_version += 1;
        let data = postcard::to_allocvec(&update).map_err(|e| PublishError::Foca(e.to_string()))?;
        {
            let mut shared = lock(&self.shared);
            shared.state.merge(update);
            shared.dirty = true;
        }
        self.foca
            .add_broadcast(&data)
            .map_err(|e| PublishError::Foca(e.to_string()))?;
        // Push it now rather than waiting for the next probe or gossip round.
        if let Err(e) = self.foca.broadcast(&mut self.runtime) {
            tracing::debug!(error = %e, "broadcast");
        }
        self.drain_runtime();
        Ok(())
    }

    /// Leaves the cluster cleanly (peers learn it at once instead of after a timeout).
    pub fn leave(&mut self) {
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "leave");
        }
        self.drain_runtime();
    }

    /// Takes the pending outputs.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// True (once) when members or entries changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        let state_dirty = std::mem::take(&mut lock(&self.shared).dirty);
        std::mem::take(&mut self.membership_dirty) || state_dirty
    }

    /// All members, this node first; one per node id (the newest generation).
    pub fn members(&self) -> Vec<Member> {
        let me = self.foca.identity();
        let mut out = vec![Member {
            id: me.node_id.clone(),
            state: MemberState::Alive,
            api_addr: me.api_addr,
            gossip_addr: me.gossip_addr,
            generation: me.generation,
        }];
        for m in self.foca.iter_membership_state() {
            let id = m.id();
            if id.node_id == me.node_id || id.node_id.is_empty() {
                continue;
            }
            let member = Member {
                id: id.node_id.clone(),
                state: match m.state() {
                    foca::State::Alive => MemberState::Alive,
                    foca::State::Suspect => MemberState::Suspect,
                    foca::State::Down => MemberState::Down,
                },
                api_addr: id.api_addr,
                gossip_addr: id.gossip_addr,
                generation: id.generation,
            };
            match out.iter_mut().find(|o| o.id == member.id) {
                Some(o) if o.generation < member.generation => *o = member,
                Some(_) => {}
                None => out.push(member),
            }
        }
        out[1..].sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Node ids of live (alive or suspect) members including this node, sorted: the
    /// input of [`crate::probers`].
    pub fn live_member_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .members()
            .into_iter()
            .filter(|m| m.state != MemberState::Down)
            .map(|m| m.id)
            .collect();
        ids.sort();
        ids
    }

    /// Every replicated entry with its origin node id.
    pub fn snapshot(&self) -> Vec<(String, crate::Entry)> {
        lock(&self.shared).state.snapshot()
    }

    fn rebroadcast_own(&mut self) {
        let own = lock(&self.shared).state.of_origin(&self.node_id);
        for update in own {
            match postcard::to_allocvec(&update) {
                Ok(data) => {
                    if let Err(e) = self.foca.add_broadcast(&data) {
                        tracing::debug!(error = %e, "rebroadcast");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "encode rebroadcast"),
            }
        }
        if let Err(e) = self.foca.broadcast(&mut self.runtime) {
            tracing::debug!(error = %e, "broadcast");
        }
    }

    /// Moves foca's accumulated actions into our outputs, sealing datagrams and reacting
    /// to membership notifications.
    fn drain_runtime(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(n) = self.runtime.to_notify() {
                progressed = true;
                self.on_notification(n);
            }
            while let Some((to, payload)) = self.runtime.to_send() {
                progressed = true;
                let mut nonce = [0u8; 12];
                self.rng.fill_bytes(&mut nonce);
                self.outputs.push(Output::Send {
                    to: to.gossip_addr,
                    datagram: wire::seal(&self.keys, nonce, &payload),
                });
            }
            while let Some((after, timer)) = self.runtime.to_schedule() {
                progressed = true;
                self.outputs.push(Output::Schedule {
                    after,
                    timer: CoreTimer::Foca(timer),
                });
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<Identity>) {
        self.membership_dirty = true;
        match n {
            OwnedNotification::MemberUp(id) => {
                tracing::info!(node = %id.node_id, addr = %id.gossip_addr, "gossip member up");
                lock(&self.shared).state.revive_origin(&id.node_id);
            }
            OwnedNotification::MemberDown(id) => {
                let replaced = self
                    .foca
                    .iter_members()
                    .any(|m| m.id().node_id == id.node_id);
                tracing::info!(node = %id.node_id, replaced, "gossip member down");
                if !replaced {
                    let mut shared = lock(&self.shared);
                    shared.state.expire_origin(&id.node_id);
                    shared.dirty = true;
                }
            }
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(
                    generation = id.generation,
                    "declared down by peers; rejoined"
                );
                self.rebroadcast_own();
            }
            OwnedNotification::Defunct => tracing::warn!("gossip identity declared down"),
            OwnedNotification::Idle => tracing::info!("gossip: no active members"),
            OwnedNotification::Active | OwnedNotification::Rename(..) => {}
        }
    }
}
