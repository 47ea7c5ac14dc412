//! The declarative document of `fiberlb apply`, `export` and `import`: load balancers with
//! their pools, backends, listeners and rules, referring to each other by name (pool
//! names, certificate names), never by id.
//!
//! Every field but the names is optional: in `apply`, a field the document leaves out keeps
//! the server's value, so server-side defaults never show up as differences. `export`
//! writes every field, so an exported document describes its load balancers completely.

mod clean;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::enums::{
    Algorithm, CheckKind, ClientAuth, DnsType, Method, Persistence, Protocol, ProxyProtocol,
    TlsVersion,
};

/// String maps (tags, metadata, headers) kept sorted so output is deterministic.
pub type StringMap = BTreeMap<String, String>;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not valid YAML/JSON, or not the document's shape.
    #[error("invalid document: {0}")]
    Parse(String),
    /// Well-formed but inconsistent (duplicate names, two actions in one rule, ...).
    #[error("invalid document: {path}: {message}")]
    Invalid {
        /// Where, e.g. `web/pools/app/backends/app-1`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    /// Load balancers, each identified by (org, project, name).
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancerDoc>,
}

/// A load balancer and everything under it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerDoc {
    /// Name, unique within (org, project).
    pub name: String,
    /// Owning organization.
    pub org_id: String,
    /// Owning project (part of the identity: unset means an org-level load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Anycast VIP; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// `false` disables the load balancer (its listeners accept nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Tags; `{}` clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<StringMap>,
    /// Metadata; `{}` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<StringMap>,
    /// Name of the default pool; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool: Option<String>,
    /// Pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolDoc>,
    /// Listeners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerDoc>,
}

/// A pool and its backends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolDoc {
    /// Name, unique within the load balancer.
    pub name: String,
    /// Balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Whether the pool serves traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Active health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckDoc>,
    /// Session persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<PersistenceDoc>,
    /// Circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerDoc>,
    /// PROXY protocol header sent to backends (none, v1, v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendDoc>,
}

/// An active health check. `type` selects which of the type-specific fields apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckDoc {
    /// tcp, http, https, dns or grpc.
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// http/https: request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// http/https: request method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// http/https: status codes counted as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_codes: Option<Vec<u32>>,
    /// http/https: Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// http/https: extra request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<StringMap>,
    /// https: verify the backend certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// dns: name to resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// dns: a or aaaa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<DnsType>,
    /// dns: address the answer must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_address: Option<String>,
    /// grpc: service name asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// Probe timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Successes before a backend is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failures before a backend is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Whether probes run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Session persistence of a pool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistenceDoc {
    /// none, source_ip, cookie or app_cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Persistence>,
    /// Cookie name (cookie modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// How long a client sticks, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

/// Circuit breaker settings of a pool (per backend).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerDoc {
    /// Whether the breaker trips at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive failures that open the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Successes in half-open that close it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Seconds open before half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Failure rate (0.0-1.0) that opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate_threshold: Option<f32>,
    /// Requests needed before the rate counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_request_volume: Option<u32>,
    /// A call slower than this (ms) is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_threshold_ms: Option<u32>,
    /// Slow-call rate (0.0-1.0) that opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f32>,
    /// Trial requests allowed while half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_max_requests: Option<u32>,
}

/// A backend of a pool; at most one of `ip`, `hostname`, `vmId`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendDoc {
    /// Name, unique within the pool.
    pub name: String,
    /// IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// PlasmaVMC VM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Relative weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Serves only when no primary backend is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    /// Most connections (in-flight requests for HTTP) the fleet may hold to it; 0 = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Whether it receives traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Metadata (set on creation only: the API cannot change it later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<StringMap>,
}

/// A listener and its routing rules.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerDoc {
    /// Name, unique within the load balancer.
    pub name: String,
    /// Protocol (cannot change after creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Name of the pool for traffic no rule claims; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool: Option<String>,
    /// TLS settings (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDoc>,
    /// Maximum concurrent connections; 0 = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<u32>,
    /// Client idle timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_client: Option<u32>,
    /// Backend timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_backend: Option<u32>,
    /// Whether the listener is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Routing rules, matched by name; when given, rules not listed are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleDoc>>,
}

/// TLS settings of a listener; certificates by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsDoc {
    /// Default certificate name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// tls12 or tls13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// rustls cipher suite names; `[]` = defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<String>>,
    /// none, optional or required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// SNI name → certificate name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni_certificates: Option<StringMap>,
    /// Name of the CA bundle verifying client certificates; `""` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_certificate: Option<String>,
}

/// A routing rule: all conditions must match; then the action runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDoc {
    /// Name, unique within the listener.
    pub name: String,
    /// Lower is evaluated first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Disabled rules are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Conditions, each with exactly one field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ConditionDoc>>,
    /// Exactly one action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionDoc>,
}

/// One condition of a rule; exactly one field is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionDoc {
    /// Host header (or SNI) is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<Vec<String>>,
    /// Path starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Path equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    /// Path matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// A header has one of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Method is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Vec<Method>>,
    /// A query parameter has this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<QueryMatch>,
    /// Client address is in one of these networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<Vec<String>>,
}

/// Header condition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// Query parameter condition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryMatch {
    /// Parameter name.
    pub name: String,
    /// Required value.
    pub value: String,
}

/// What a matching rule does; exactly one field is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionDoc {
    /// Name of the pool to forward to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_to_pool: Option<String>,
    /// Answer with a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectDoc>,
    /// Answer with a fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_response: Option<FixedResponseDoc>,
}

/// Redirect action.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectDoc {
    /// Location.
    pub url: String,
    /// 301, 302, 307 or 308 (302 when a new rule leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
}

/// Fixed-response action.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedResponseDoc {
    /// HTTP status.
    pub status_code: u32,
    /// Content-Type header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Document {
    /// Parses YAML or JSON (JSON is YAML), then checks and normalises it.
    pub fn parse(text: &str) -> Result<Document, DocumentError> {
        let mut doc: Document =
            serde_yaml::from_str(text).map_err(|e| DocumentError::Parse(e.to_string()))?;
        doc.validate()?;
        doc.normalize();
        Ok(doc)
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }

    /// The document as pretty JSON, with a final newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self).map(|s| s + "\n")
    }
}
