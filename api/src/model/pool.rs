use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HttpMethod, Scope};

/// How a pool picks a backend (spec §3.4, plus the weighted and Maglev variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Sequential.
    RoundRobin,
    /// Fewest active connections (fleet-wide).
    LeastConnections,
    /// Consistent hash of the client IP.
    IpHash,
    /// Power of two random choices.
    Random,
    /// Smooth weighted round robin.
    WeightedRoundRobin,
    /// Lowest EWMA of connect / first-byte time.
    LeastResponseTime,
    /// Fewest active connections per unit of weight.
    WeightedLeastConnections,
    /// Maglev consistent hashing of the client address.
    Maglev,
}

/// A DNS record type for DNS health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsRecordType {
    /// IPv4.
    A,
    /// IPv6.
    Aaaa,
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// TCP connect succeeds.
    Tcp,
    /// HTTP request answered with an expected status.
    Http {
        /// Request path.
        path: String,
        /// GET or HEAD.
        method: HttpMethod,
        /// Accepted status codes.
        expected_codes: Vec<u16>,
        /// Host header (default: the backend address).
        host_header: Option<String>,
        /// Extra headers.
        headers: BTreeMap<String, String>,
    },
    /// HTTPS request answered with an expected status.
    Https {
        /// Request path.
        path: String,
        /// GET or HEAD.
        method: HttpMethod,
        /// Accepted status codes.
        expected_codes: Vec<u16>,
        /// Host header and SNI.
        host_header: Option<String>,
        /// Extra headers.
        headers: BTreeMap<String, String>,
        /// Verify the backend certificate.
        verify_tls: bool,
    },
    /// A DNS query at `[flashdns] dns_addr` resolves.
    Dns {
        /// Name to query.
        hostname: String,
        /// A or AAAA.
        record_type: DnsRecordType,
        /// An address the answer must contain.
        expected_address: Option<std::net::IpAddr>,
    },
    /// `grpc.health.v1.Health/Check` answers SERVING.
    Grpc {
        /// Service name; empty = the server as a whole.
        service: Option<String>,
    },
}

/// Active health check of a pool (spec §3.6). Zero timings/thresholds mean "the server's
/// `[health_check]` default", resolved by the node, so a SIGHUP can change them live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// UUID.
    pub id: String,
    /// Probe type.
    pub kind: CheckKind,
    /// Seconds between checks (0 = default).
    pub interval_seconds: u32,
    /// Seconds before a check fails (0 = default).
    pub timeout_seconds: u32,
    /// Successes to become healthy (0 = default).
    pub healthy_threshold: u32,
    /// Failures to become unhealthy (0 = default).
    pub unhealthy_threshold: u32,
    /// Disabled checks do not run.
    pub enabled: bool,
}

/// Sticky sessions mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceMode {
    /// No stickiness.
    None,
    /// Stick by client IP.
    SourceIp,
    /// LB-inserted cookie.
    Cookie,
    /// Follow the application's own cookie.
    AppCookie,
}

/// Session persistence settings (spec §3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPersistence {
    /// Mode.
    pub mode: PersistenceMode,
    /// Cookie name (Cookie, AppCookie).
    pub cookie_name: Option<String>,
    /// Session lifetime in seconds.
    pub ttl_seconds: u32,
}

/// Circuit breaker of a pool's backends (spec §3.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreakerConfig {
    /// Off by default.
    pub enabled: bool,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// Half-open successes that close it.
    pub success_threshold: u32,
    /// Seconds open before half-open.
    pub timeout_seconds: u32,
    /// Failure rate (0-1) that opens it, once `min_request_volume` is reached.
    pub failure_rate_threshold: f32,
    /// Requests in the window before rates count.
    pub min_request_volume: u32,
    /// A call slower than this (ms) is slow.
    pub slow_call_threshold_ms: u32,
    /// Slow-call rate (0-1) that opens it.
    pub slow_call_rate_threshold: f32,
    /// Probe requests allowed while half-open.
    pub half_open_max_requests: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            failure_threshold: 5,
            success_threshold: 3,
            timeout_seconds: 60,
            failure_rate_threshold: 0.5,
            min_request_volume: 10,
            slow_call_threshold_ms: 5000,
            slow_call_rate_threshold: 0.8,
            half_open_max_requests: 1,
        }
    }
}

/// PROXY protocol version sent to backends by L4 listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocolVersion {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// A group of backends with a balancing algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// UUID.
    pub id: String,
    /// Parent load balancer.
    pub lb_id: String,
    /// The load balancer's scope.
    pub scope: Scope,
    /// Unique within the load balancer.
    pub name: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Active health check.
    pub health_check: Option<HealthCheck>,
    /// Sticky sessions.
    pub session_persistence: Option<SessionPersistence>,
    /// Circuit breaker.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// PROXY protocol header for backends (L4 listeners).
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Disabled pools get no traffic.
    pub enabled: bool,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last modification (Unix ms).
    pub updated_at: u64,
    /// Store revision (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}

impl Pool {
    /// Whether an enabled active check decides health (otherwise backends serve from the start).
    pub fn has_active_check(&self) -> bool {
        self.health_check.as_ref().is_some_and(|h| h.enabled)
    }
}
