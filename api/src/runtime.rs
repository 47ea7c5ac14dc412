//! What the management plane reads from a node's runtime state: backend health, circuit
//! states and node status. The node implements [`RuntimeView`] over its health checker and
//! gossip state; [`StaticRuntime`] serves until those exist and in unit tests.

use crate::model::{Backend, CircuitState, HealthStatus, Pool};

/// Facts about the node answering an API call.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Software version.
    pub version: String,
    /// gRPC listen address.
    pub grpc_addr: String,
    /// Admin/metrics listen address.
    pub admin_addr: String,
    /// Start time (Unix ms).
    pub started_at: u64,
    /// Whether the node is ready for traffic.
    pub ready: bool,
    /// Store revision of the snapshot the data plane runs on.
    pub snapshot_revision: u64,
    /// Whether the configuration store answers.
    pub store_up: bool,
    /// Gossip members seen alive (0 with gossip off).
    pub gossip_members: u32,
    /// Backends this node actively probes.
    pub probes_owned: u32,
}

/// A fleet member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node id.
    pub node_id: String,
    /// `alive`, `suspect` or `down`.
    pub state: MemberState,
    /// Its gRPC API address.
    pub api_addr: String,
    /// Its gossip address.
    pub gossip_addr: String,
    /// Incarnation.
    pub generation: u64,
    /// Whether it is the node answering.
    pub is_self: bool,
}

/// Liveness of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed probes; may be down.
    Suspect,
    /// Declared down.
    Down,
}

/// State of one BGP session (RFC 4271 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BgpState {
    /// Not connected (waiting to retry, or stopped).
    #[default]
    Idle,
    /// Connecting out.
    Connect,
    /// Waiting for the peer to connect.
    Active,
    /// OPEN sent.
    OpenSent,
    /// OPEN received, waiting for its KEEPALIVE.
    OpenConfirm,
    /// Up: routes are exchanged.
    Established,
}

/// One BGP neighbor of this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpSessionInfo {
    /// Peer address and port.
    pub peer: String,
    /// Peer ASN.
    pub peer_asn: u32,
    /// Session state.
    pub state: BgpState,
    /// Seconds since the session came up; 0 when it is not up.
    pub uptime_seconds: u64,
    /// Prefixes the peer has from us.
    pub routes_announced: u32,
    /// Prefixes the peer sent us (counted, never installed).
    pub routes_received: u32,
    /// Why the last connection went down, if one did.
    pub last_error: Option<String>,
}

/// A VIP this node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedVip {
    /// The address.
    pub vip: std::net::IpAddr,
    /// The load balancer it belongs to.
    pub lb_id: String,
    /// Marked with GRACEFUL_SHUTDOWN (the node is stopping; withdrawal follows).
    pub graceful_shutdown: bool,
}

/// This node's BGP speaker as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpView {
    /// Whether `[bgp] enabled` is set.
    pub enabled: bool,
    /// Our ASN.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Option<std::net::Ipv4Addr>,
    /// Sessions, in configuration order.
    pub sessions: Vec<BgpSessionInfo>,
    /// VIPs announced now, sorted by address.
    pub announced: Vec<AnnouncedVip>,
}

/// Runtime state as seen by the API.
pub trait RuntimeView: Send + Sync + 'static {
    /// The fleet's health verdict for a backend of `pool`.
    fn backend_health(&self, pool: &Pool, backend: &Backend) -> HealthStatus;
    /// The circuit breaker state of a backend.
    fn circuit_state(&self, backend_id: &str) -> CircuitState;
    /// This node's status.
    fn node_info(&self) -> NodeInfo;
    /// Fleet members as this node's gossip sees them (empty with gossip off).
    fn members(&self) -> Vec<MemberInfo> {
        Vec::new()
    }
    /// Connections (L4) or in-flight requests (L7) this node has open to a backend.
    fn active_connections(&self, _backend_id: &str) -> u64 {
        0
    }
    /// This node's BGP sessions and announced VIPs (disabled by default).
    fn bgp(&self) -> BgpView {
        BgpView::default()
    }
    /// The anycast prefix (`[cluster] vip_pool`) a load balancer created without a VIP gets
    /// one from; `None`: VIPs are only assigned explicitly. A node setting rather than
    /// runtime state, read here because the API serves on the node that owns it.
    fn vip_pool(&self) -> Option<ipnet::IpNet> {
        None
    }
}

/// Runtime view with no observations: backends of pools without an active check are
/// healthy (they serve from the start), backends of pools with one are not yet (unknown).
#[derive(Debug, Clone, Default)]
pub struct StaticRuntime {
    /// Returned by [`RuntimeView::node_info`].
    pub info: NodeInfo,
    /// Returned by [`RuntimeView::vip_pool`].
    pub vip_pool: Option<ipnet::IpNet>,
}

impl RuntimeView for StaticRuntime {
    fn backend_health(&self, pool: &Pool, _backend: &Backend) -> HealthStatus {
        HealthStatus {
            healthy: !pool.has_active_check(),
            ..Default::default()
        }
    }

    fn circuit_state(&self, _backend_id: &str) -> CircuitState {
        CircuitState::Closed
    }

    fn node_info(&self) -> NodeInfo {
        self.info.clone()
    }

    fn vip_pool(&self) -> Option<ipnet::IpNet> {
        self.vip_pool
    }
}
