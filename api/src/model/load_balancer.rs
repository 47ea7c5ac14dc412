use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Scope;

/// Lifecycle state of a load balancer (spec §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbStatus {
    /// Being provisioned.
    Creating,
    /// Operational.
    Active,
    /// A configuration change is in progress.
    Updating,
    /// Provisioning or configuration failed; see `status_message`.
    Error,
    /// Being removed.
    Deleting,
    /// Disabled by an operator: its listeners accept nothing.
    Disabled,
}

/// A load balancer: a named group of listeners and pools owned by one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// UUID.
    pub id: String,
    /// Unique within its scope.
    pub name: String,
    /// Owner.
    pub scope: Scope,
    /// Free text.
    pub description: Option<String>,
    /// Pool used by listeners that have none of their own.
    pub default_pool_id: Option<String>,
    /// Lifecycle state.
    pub status: LbStatus,
    /// Why the status is what it is (errors).
    pub status_message: Option<String>,
    /// When `status` last changed (Unix ms).
    pub last_transition: u64,
    /// Anycast VIP its listeners bind on every node.
    pub vip: Option<IpAddr>,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last modification (Unix ms).
    pub updated_at: u64,
    /// Principal that created it.
    pub created_by: String,
    /// Operator metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Store revision of this object (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}

impl LoadBalancer {
    /// Whether its listeners should accept traffic.
    pub fn is_enabled(&self) -> bool {
        self.status != LbStatus::Disabled
    }
}
