//! `[cluster]` and `[bgp]`: how this node finds the rest of the fleet (SWIM gossip) and
//! how it announces the load balancers' VIPs to routers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[cluster]`: fleet membership.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Unique name of this node in the fleet: 1-63 of `A-Z a-z 0-9 . _ -`, starting with a
    /// letter or digit. Default: the host name, else `node-1`. Env `FIBERLB_NODE_ID`,
    /// flag `--node-id`.
    pub node_id: String,
    /// UDP address the gossip protocol binds. Default none: gossip off (a single node).
    /// Needs `key_file`. Env `FIBERLB_GOSSIP_ADDR`, flag `--gossip-addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip_addr: Option<SocketAddr>,
    /// Gossip address other members use to reach this node (NAT, or `gossip_addr` bound
    /// to 0.0.0.0). Default: `gossip_addr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of members to join through at start. Default empty
    /// (this node starts a new cluster, others join it). Env `FIBERLB_PEERS` (comma
    /// separated), flag `--peer` (repeated or comma separated); either replaces the list.
    pub peers: Vec<String>,
    /// File with the shared cluster key that authenticates and encrypts every gossip
    /// datagram. Default none; required with `gossip_addr`; must exist and be non-empty.
    /// Env `FIBERLB_CLUSTER_KEY_FILE`, flag `--cluster-key-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// File with the previous cluster key, still accepted on receive (never used to send)
    /// while the fleet rotates to a new `key_file`: every node can switch at its own pace.
    /// Default none; must exist and be non-empty; only meaningful with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_file: Option<PathBuf>,
    /// How many live members probe each backend (rendezvous hashing); the others use
    /// their gossiped verdicts. Default 2; >= 1. Env `FIBERLB_PROBE_REPLICAS`, flag
    /// `--probe-replicas`.
    pub probe_replicas: usize,
    /// Anycast prefix VIPs are allocated from when a load balancer does not name one,
    /// e.g. `10.200.0.0/24` or `2001:db8:200::/64` (no host bits). Default none: VIPs must
    /// be given explicitly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip_pool: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: default_node_id(),
            gossip_addr: None,
            advertise_addr: None,
            peers: Vec::new(),
            key_file: None,
            previous_key_file: None,
            probe_replicas: 2,
            vip_pool: None,
        }
    }
}

impl ClusterSettings {
    /// True when this node takes part in gossip.
    pub fn gossip_enabled(&self) -> bool {
        self.gossip_addr.is_some()
    }

    /// The address other members should use: `advertise_addr`, else `gossip_addr`.
    pub fn effective_advertise_addr(&self) -> Option<SocketAddr> {
        self.advertise_addr.or(self.gossip_addr)
    }

    /// `vip_pool` parsed; `None` when unset or (on unvalidated settings) malformed.
    pub fn vip_pool_net(&self) -> Option<ipnet::IpNet> {
        self.vip_pool.as_deref().and_then(|s| s.trim().parse().ok())
    }
}

/// `[bgp]`: the BGP speaker announcing VIP routes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BgpSettings {
    /// Run the BGP speaker. Default `false`.
    pub enabled: bool,
    /// This node's AS number (4-octet). Default 0 = unset; required when `enabled`.
    pub asn: u32,
    /// BGP identifier. Default none: the IPv4 of `listen`, else of `next_hop`; one of the
    /// three must give a non-zero IPv4 address when `enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_id: Option<Ipv4Addr>,
    /// TCP address to accept sessions on (port 179 by convention). Default none: only
    /// outgoing sessions; required when a peer is `passive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Next hop put on announced routes. Default none: the local address of each session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    /// Communities added to every announcement, `asn:value` with both parts 0..=65535.
    /// Default empty.
    pub communities: Vec<String>,
    /// On shutdown, routes are re-announced with GRACEFUL_SHUTDOWN (RFC 8326) and
    /// withdrawn after this wait, milliseconds. Default 5000.
    pub graceful_shutdown_wait_ms: u64,
    /// Add announced VIPs to `lo` (and remove them on withdraw) via netlink, so the kernel
    /// accepts their traffic. Default `false` (the operator configures addresses).
    pub manage_vip_addresses: bool,
    /// `[[bgp.peers]]`: the routers to peer with. Default none; at least one when `enabled`.
    pub peers: Vec<BgpPeerSettings>,
}

impl Default for BgpSettings {
    fn default() -> Self {
        BgpSettings {
            enabled: false,
            asn: 0,
            router_id: None,
            listen: None,
            next_hop: None,
            communities: Vec::new(),
            graceful_shutdown_wait_ms: 5000,
            manage_vip_addresses: false,
            peers: Vec::new(),
        }
    }
}

impl BgpSettings {
    /// The BGP identifier to use: `router_id`, else the IPv4 of `listen`, else of `next_hop`.
    pub fn effective_router_id(&self) -> Option<Ipv4Addr> {
        let v4 = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        };
        self.router_id
            .or_else(|| self.listen.and_then(|a| v4(a.ip())))
            .or_else(|| self.next_hop.and_then(v4))
    }

    /// `graceful_shutdown_wait_ms` as a duration.
    pub fn graceful_shutdown_wait(&self) -> Duration {
        Duration::from_millis(self.graceful_shutdown_wait_ms)
    }

    /// `communities` as (asn, value) pairs; malformed entries (unvalidated settings) skipped.
    pub fn parsed_communities(&self) -> Vec<(u16, u16)> {
        self.communities
            .iter()
            .filter_map(|c| parse_community(c).ok())
            .collect()
    }
}

/// Parses a standard community `asn:value`.
pub(crate) fn parse_community(s: &str) -> Result<(u16, u16), String> {
    let (asn, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `asn:value`"))?;
    let part = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{s}`: `{p}` is not a number in 0..=65535"))
    };
    Ok((part(asn)?, part(value)?))
}

/// `[[bgp.peers]]`: one router. `address` and `asn` are required, so this table has no
/// struct-level default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerSettings {
    /// The router's IP address. Required.
    pub address: IpAddr,
    /// The router's BGP port. Default 179.
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// The router's AS number. Required, non-zero.
    pub asn: u32,
    /// Proposed hold time, seconds: 0 (no keepalives) or 3..=65535. Default 90.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// TCP MD5 signature password (RFC 2385), at most 80 bytes. Default none.
    /// Shown as `********` by [`super::Settings::to_toml`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Wait for the router to connect instead of connecting out (needs `bgp.listen`).
    /// Default `false`.
    #[serde(default)]
    pub passive: bool,
}

fn default_bgp_port() -> u16 {
    179
}

fn default_hold_time() -> u16 {
    90
}

/// The host name when it is a valid node id, else `node-1`.
pub(crate) fn default_node_id() -> String {
    hostname()
        .filter(|h| check_node_id(h).is_ok())
        .unwrap_or_else(|| "node-1".to_owned())
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call;
    // gethostname writes at most that many bytes and we read only up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Node ids end up in gossip, metrics labels and store keys: keep them plain.
pub(crate) fn check_node_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    match id.chars().next() {
        None => Err("must not be empty".to_owned()),
        Some(first) if !first.is_ascii_alphanumeric() => {
            Err(format!("`{id}` must start with a letter or digit"))
        }
        _ if id.len() > 63 => Err(format!("`{id}` is longer than 63 characters")),
        _ if !id.chars().all(ok_char) => Err(format!(
            "`{id}` may only contain letters, digits, `.`, `_` and `-`"
        )),
        _ => Ok(()),
    }
}
