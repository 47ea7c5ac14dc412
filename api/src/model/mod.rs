//! Domain types of the management plane: what the store holds and the data plane reads.
//!
//! These are plain serde structs, independent of protobuf: `crate::convert` maps them to
//! and from `fiberlb_proto::v1` at the API boundary, and the data plane never sees protobuf.
//! `revision` fields are not stored in the value: they are the store's `mod_revision` of
//! the object's key, filled in when the object is read.

mod backend;
mod certificate;
mod listener;
mod load_balancer;
mod pool;
mod token;

pub use backend::{Backend, BackendAddress, BackendStatus, CircuitState, HealthStatus};
pub use certificate::Certificate;
pub use listener::{
    ClientAuthMode, Condition, HttpMethod, Listener, ListenerProtocol, RoutingRule, RuleAction,
    TlsConfig, TlsVersion,
};
pub use load_balancer::{LbStatus, LoadBalancer};
pub use pool::{
    Algorithm, CheckKind, CircuitBreakerConfig, DnsRecordType, HealthCheck, PersistenceMode, Pool,
    ProxyProtocolVersion, SessionPersistence,
};
pub use token::{AccessToken, CredentialKind, TokenScope};

use serde::{Deserialize, Serialize};

/// The tenant an object belongs to: an organization, optionally narrowed to a project.
/// Children (listeners, pools, backends) carry a copy of their load balancer's scope so that
/// authorization never needs a second read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// Owning organization.
    pub org_id: String,
    /// Owning project, if the object is project-scoped.
    pub project_id: Option<String>,
}

impl Scope {
    /// The resource path prefix of spec §5.3: `org/{org}` or `org/{org}/project/{project}`.
    pub fn path(&self) -> String {
        match &self.project_id {
            Some(p) => format!("org/{}/project/{}", self.org_id, p),
            None => format!("org/{}", self.org_id),
        }
    }
}

/// Milliseconds since the Unix epoch, the timestamp unit of the whole API.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh object id (UUID v4).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
