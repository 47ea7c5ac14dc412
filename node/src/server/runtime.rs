//! The node's runtime state as the API sees it. Health (the full `HealthStatus`) and
//! circuit state come from the backends' runtime state, which the health checker, passive
//! reports and circuit breakers keep (see `crate::health`); a backend the data plane has
//! not loaded yet is reported as its pool's default (serving without an active check, not
//! yet checked with one).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use fiberlb_api::model::{now_ms, Backend, CircuitState, HealthStatus, Pool};
use fiberlb_api::runtime::{NodeInfo, RuntimeView, StaticRuntime};

use crate::settings::Settings;
use crate::snapshot::SnapshotCell;
use crate::state::RuntimeState;

/// Node-wide flags and facts.
pub struct NodeRuntime {
    info: NodeInfo,
    ready: AtomicBool,
    store_up: AtomicBool,
    health: StaticRuntime,
    data_plane: OnceLock<(Arc<RuntimeState>, Arc<SnapshotCell>)>,
    gossip: OnceLock<fiberlb_gossip::Gossip>,
    anycast: OnceLock<super::bgp::AnycastView>,
    probes: OnceLock<crate::fleet::ProbeShard>,
}

impl NodeRuntime {
    /// For a node with these settings and bound addresses.
    pub fn new(settings: &Settings, grpc: SocketAddr, admin: SocketAddr) -> Self {
        Self {
            info: NodeInfo {
                node_id: settings.cluster.node_id.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                grpc_addr: grpc.to_string(),
                admin_addr: admin.to_string(),
                started_at: now_ms(),
                ..Default::default()
            },
            ready: AtomicBool::new(false),
            store_up: AtomicBool::new(true),
            health: StaticRuntime::default(),
            data_plane: OnceLock::new(),
            gossip: OnceLock::new(),
            anycast: OnceLock::new(),
            probes: OnceLock::new(),
        }
    }

    /// Marks the node ready (or not) for traffic: `/ready` and `NodeStatus.ready`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the node is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The data plane's runtime state and snapshot, once attached.
    pub fn data_plane(&self) -> Option<(Arc<RuntimeState>, Arc<SnapshotCell>)> {
        self.data_plane.get().cloned()
    }

    /// Connects the gossip driver, once.
    pub fn attach_gossip(&self, g: fiberlb_gossip::Gossip) {
        let _ = self.gossip.set(g);
    }

    /// The gossip driver, when this node is in a fleet.
    pub fn gossip(&self) -> Option<fiberlb_gossip::Gossip> {
        self.gossip.get().cloned()
    }

    /// Connects the health checker's probe assignment (`probes_owned`), once.
    pub fn attach_probes(&self, shard: crate::fleet::ProbeShard) {
        let _ = self.probes.set(shard);
    }

    /// Connects the BGP speaker's view and the VIP pool, once.
    pub fn attach_anycast(&self, view: super::bgp::AnycastView) {
        let _ = self.anycast.set(view);
    }

    /// Connects the data plane's runtime state and snapshot, once.
    pub fn attach(&self, state: Arc<RuntimeState>, cell: Arc<SnapshotCell>) {
        let _ = self.data_plane.set((state, cell));
    }

    /// Records whether the last store access worked.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::SeqCst);
    }
}

impl RuntimeView for NodeRuntime {
    fn bgp(&self) -> fiberlb_api::runtime::BgpView {
        self.anycast.get().map(|a| a.view()).unwrap_or_default()
    }

    fn vip_pool(&self) -> Option<ipnet::IpNet> {
        self.anycast.get().and_then(|a| a.vip_pool())
    }

    fn backend_health(&self, pool: &Pool, backend: &Backend) -> HealthStatus {
        match self.data_plane.get().and_then(|(s, _)| s.get(&backend.id)) {
            Some(b) => b.health_status(pool.has_active_check()),
            None => self.health.backend_health(pool, backend),
        }
    }

    fn circuit_state(&self, backend_id: &str) -> CircuitState {
        match self.data_plane.get().and_then(|(s, _)| s.get(backend_id)) {
            Some(b) => b.circuit_state(),
            None => self.health.circuit_state(backend_id),
        }
    }

    fn active_connections(&self, backend_id: &str) -> u64 {
        self.data_plane
            .get()
            .and_then(|(s, _)| s.get(backend_id))
            .map(|b| b.stats.active.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn members(&self) -> Vec<fiberlb_api::runtime::MemberInfo> {
        use fiberlb_api::runtime::{MemberInfo, MemberState as S};
        use fiberlb_gossip::MemberState as G;
        let Some(g) = self.gossip.get() else {
            return Vec::new();
        };
        g.members()
            .into_iter()
            .enumerate()
            .map(|(i, m)| MemberInfo {
                node_id: m.id,
                state: match m.state {
                    G::Alive => S::Alive,
                    G::Suspect => S::Suspect,
                    G::Down => S::Down,
                },
                api_addr: m.api_addr.to_string(),
                gossip_addr: m.gossip_addr.to_string(),
                generation: m.generation,
                // The driver lists this node first.
                is_self: i == 0,
            })
            .collect()
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            ready: self.is_ready(),
            gossip_members: self
                .gossip
                .get()
                .map(|g| {
                    g.members()
                        .iter()
                        .filter(|m| m.state == fiberlb_gossip::MemberState::Alive)
                        .count() as u32
                })
                .unwrap_or(0),
            snapshot_revision: self
                .data_plane
                .get()
                .map(|(_, c)| c.load().revision)
                .unwrap_or(0),
            store_up: self.store_up.load(Ordering::SeqCst),
            probes_owned: self.probes.get().map(|p| p.owned()).unwrap_or(0),
            ..self.info.clone()
        }
    }
}
