//! Backend health: active checks, passive outlier detection and circuit breakers.
//!
//! - **Active checks** ([`run`], [`scheduler`]): one probe loop per backend of every pool
//!   with an enabled health check (TCP, HTTP, HTTPS, DNS, gRPC; one file per kind), with
//!   the pool's interval, timeout and thresholds (0 = the `[health_check]` defaults), a
//!   random jitter per round and a node-wide cap on probes in flight. The loops follow the
//!   configuration snapshot: adding or removing a backend or pool touches only its loops.
//! - **Passive health** ([`passive`]): failures of real traffic (connect errors, resets,
//!   timeouts, later 5xx) eject a backend for a back-off that doubles on repeat ejections.
//! - **Circuit breakers** ([`circuit`]): per backend of a pool that enables one, as spec
//!   §3.7/§6.3 (fields left at 0 take the `[circuit_breaker]` defaults); see
//!   `circuit/LIFECYCLE.md`.
//!
//! Everything observed lands in the backend's [`BackendState`](crate::state::BackendState),
//! which the data plane reads without locks (`PoolPlan::eligible`) and the API reads for
//! `GetBackendHealth`, `ListBackendHealth` and `GetPoolStatus`.
//!
//! In a fleet the checker probes only the backends the [`crate::fleet::ProbeShard`] assigns
//! to this node; the fleet layer gossips its verdicts and merges the other probers' into
//! each backend's routing verdict (see [`crate::state::effective`]).

pub mod circuit;
mod dns;
mod grpc;
mod http;
mod metrics;
pub mod passive;
pub mod policy;
pub mod record;
pub mod scheduler;
mod tcp;
mod tls;

#[cfg(test)]
mod tests;
/// Also the snapshot fixtures of the fleet layer's tests.
#[cfg(test)]
pub(crate) mod tests_scheduler;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use passive::{report, Admission, Outcome};
pub use policy::{Policy, PolicyDefaults, Timings};
pub use record::HealthRecord;
pub use scheduler::{run, Defaults};

use crate::state::{BackendState, Verdict};

/// A node that has just become one of a backend's probers starts from the fleet's
/// verdict (`remote`, the other probers' merge) with fresh counters, instead of from
/// whatever it knew when it last probed the backend, possibly long ago: its stale own
/// verdict would otherwise be merged in and could take a healthy backend out of service
/// fleet-wide until its first probes. Nothing to adopt while the fleet knows nothing.
pub fn adopt_fleet_verdict(st: &BackendState, remote: Verdict) {
    if remote == Verdict::Unknown {
        return;
    }
    st.details().reset_counts();
    st.set_verdict(remote);
}

/// Milliseconds on a monotonic clock (since this process first asked). Ejection and
/// circuit timers use it, so a wall-clock step cannot shorten or stretch them.
pub fn mono_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    // Starts at 1 so that 0 can mean "never" in atomics.
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Why a probe failed, in words that end up in `HealthStatus.last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The backend's address is not known (hostname or VM id not resolved).
    #[error("address: {0}")]
    Resolve(String),
    /// No answer within the check's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed.
    #[error("connect to {addr}: {message}")]
    Connect {
        /// Where.
        addr: std::net::SocketAddr,
        /// The OS error.
        message: String,
    },
    /// The TLS handshake failed (including certificate verification).
    #[error("tls: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// The HTTP status is not one of the expected codes.
    #[error("unexpected status {got} (expected {expected:?})")]
    Status {
        /// Received status.
        got: u16,
        /// Accepted codes.
        expected: Vec<u16>,
    },
    /// The DNS query failed or did not contain what was expected.
    #[error("dns: {0}")]
    Dns(String),
    /// The gRPC health service failed or did not answer SERVING.
    #[error("grpc: {0}")]
    Grpc(String),
    /// The check's configuration cannot be used (say, an invalid header).
    #[error("check configuration: {0}")]
    Config(String),
}
