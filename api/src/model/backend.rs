use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Scope;

/// Where a backend lives (spec §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendAddress {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name, re-resolved periodically.
    Hostname(String),
    /// A PlasmaVMC VM id, resolved through its API.
    VmId(String),
}

impl std::fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendAddress::Ip(ip) => write!(f, "{ip}"),
            BackendAddress::Hostname(h) => write!(f, "{h}"),
            BackendAddress::VmId(v) => write!(f, "vm:{v}"),
        }
    }
}

/// Administrative state of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendStatus {
    /// Being added.
    Creating,
    /// Receives traffic when healthy.
    Active,
    /// No new connections; existing ones finish until the deadline.
    Draining,
    /// Removed from its pool.
    Removed,
}

/// A server in a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// UUID.
    pub id: String,
    /// Parent pool.
    pub pool_id: String,
    /// The pool's load balancer.
    pub lb_id: String,
    /// The load balancer's scope.
    pub scope: Scope,
    /// Unique within the pool.
    pub name: String,
    /// Address.
    pub address: BackendAddress,
    /// Port.
    pub port: u16,
    /// 1-100.
    pub weight: u32,
    /// Administrative state.
    pub status: BackendStatus,
    /// Admin switch.
    pub enabled: bool,
    /// Serves only when no primary backend of the pool is healthy.
    pub backup: bool,
    /// Most connections (L4) or in-flight requests (L7) the fleet may hold to it at once
    /// (this node's own count plus the gossiped counts of the others); `None` = unlimited.
    /// Absent in values written before the field existed, hence the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Operator metadata.
    pub metadata: BTreeMap<String, String>,
    /// While draining: when remaining connections are closed (Unix ms).
    pub drain_deadline: Option<u64>,
    /// Delete the backend once the drain deadline passes (RemoveBackend with drain_first).
    pub remove_after_drain: bool,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last modification (Unix ms).
    pub updated_at: u64,
    /// Store revision (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}

impl Backend {
    /// Whether the balancer may pick it for new connections (health aside).
    pub fn accepts_new_connections(&self) -> bool {
        self.enabled && self.status == BackendStatus::Active
    }
}

/// Health of a backend as the fleet sees it (spec §3.5); runtime state, not config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// Current verdict.
    pub healthy: bool,
    /// Last check (Unix ms), 0 = never.
    pub last_check: u64,
    /// Last time it was healthy.
    pub last_healthy: Option<u64>,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Consecutive successful checks.
    pub consecutive_successes: u32,
    /// Most recent failure reason.
    pub last_error: Option<String>,
}

/// Circuit breaker state of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Normal operation.
    Closed,
    /// Testing recovery.
    HalfOpen,
    /// Failing fast.
    Open,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(max_connections: Option<u32>) -> Backend {
        Backend {
            id: "b".into(),
            pool_id: "p".into(),
            lb_id: "l".into(),
            scope: Scope {
                org_id: "o".into(),
                project_id: None,
            },
            name: "b".into(),
            address: BackendAddress::Ip([10, 0, 0, 1].into()),
            port: 80,
            weight: 1,
            status: BackendStatus::Active,
            enabled: true,
            backup: false,
            max_connections,
            metadata: BTreeMap::new(),
            drain_deadline: None,
            remove_after_drain: false,
            created_at: 1,
            updated_at: 2,
            revision: 0,
        }
    }

    #[test]
    fn max_connections_round_trips_through_the_stored_value() {
        for m in [None, Some(1), Some(250)] {
            let b = backend(m);
            let json = serde_json::to_string(&b).unwrap();
            let back: Backend = serde_json::from_str(&json).unwrap();
            assert_eq!(back, b);
            assert_eq!(json.contains("max_connections"), m.is_some(), "{json}");
        }
    }

    #[test]
    fn max_connections_reaches_the_proto() {
        for m in [None, Some(9)] {
            let pb = backend(m).to_proto(&HealthStatus::default());
            assert_eq!(pb.max_connections, m);
        }
    }

    #[test]
    fn values_stored_before_the_field_existed_are_unlimited() {
        let mut v = serde_json::to_value(backend(Some(3))).unwrap();
        v.as_object_mut().unwrap().remove("max_connections");
        let b: Backend = serde_json::from_value(v).unwrap();
        assert_eq!(b.max_connections, None);
    }
}
