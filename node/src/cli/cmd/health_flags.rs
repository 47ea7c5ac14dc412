//! Flags of a pool's health check, session persistence and circuit breaker, shared by
//! `pool create`, `pool update` and `pool set-health-check`.

use fiberlb_proto::v1 as pv;

use crate::cli::apply::requests;
use crate::cli::args::key_value;
use crate::cli::document::HealthCheckDoc;
use crate::cli::enums::{CheckKind, DnsType, Method, Persistence};
use crate::cli::error::CliError;

/// An active health check.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Health check")]
pub struct HealthFlags {
    /// Check type.
    #[arg(long = "check", value_enum)]
    pub kind: Option<CheckKind>,
    /// http/https: request path.
    #[arg(long)]
    pub path: Option<String>,
    /// http/https: request method.
    #[arg(long, value_enum, ignore_case = true)]
    pub method: Option<Method>,
    /// http/https: healthy status codes, e.g. 200,204 (default 200).
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    pub expect: Vec<u32>,
    /// http/https: Host header.
    #[arg(long)]
    pub host_header: Option<String>,
    /// http/https: extra request header NAME=VALUE (repeatable).
    #[arg(long = "check-header", value_name = "NAME=VALUE", value_parser = key_value)]
    pub headers: Vec<(String, String)>,
    /// https: verify the backend's certificate.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub verify_tls: Option<bool>,
    /// dns: name to resolve.
    #[arg(long)]
    pub dns_hostname: Option<String>,
    /// dns: record type.
    #[arg(long, value_enum)]
    pub dns_type: Option<DnsType>,
    /// dns: address the answer must contain.
    #[arg(long, value_name = "ADDRESS")]
    pub dns_expect: Option<String>,
    /// grpc: service name to ask about.
    #[arg(long)]
    pub grpc_service: Option<String>,
    /// Seconds between probes (server default when unset).
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u32>,
    /// Probe timeout, seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// Successes before a backend is healthy.
    #[arg(long, value_name = "N")]
    pub healthy_threshold: Option<u32>,
    /// Failures before a backend is unhealthy.
    #[arg(long, value_name = "N")]
    pub unhealthy_threshold: Option<u32>,
    /// Run the probes (true, the default) or keep the check but pause it (false).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub check_enabled: Option<bool>,
}

impl HealthFlags {
    fn any(&self) -> bool {
        self.kind.is_some()
            || self.path.is_some()
            || self.method.is_some()
            || !self.expect.is_empty()
            || self.host_header.is_some()
            || !self.headers.is_empty()
            || self.verify_tls.is_some()
            || self.dns_hostname.is_some()
            || self.dns_type.is_some()
            || self.dns_expect.is_some()
            || self.grpc_service.is_some()
            || self.interval.is_some()
            || self.timeout.is_some()
            || self.healthy_threshold.is_some()
            || self.unhealthy_threshold.is_some()
            || self.check_enabled.is_some()
    }

    /// The check the flags describe; `None` when no flag is given.
    pub fn to_proto(&self) -> Result<Option<pv::HealthCheck>, CliError> {
        if !self.any() {
            return Ok(None);
        }
        let kind = self
            .kind
            .ok_or_else(|| CliError::invalid("--check is required with health check flags"))?;
        let doc = HealthCheckDoc {
            kind,
            path: self.path.clone(),
            method: self.method,
            expected_codes: Some(self.expect.clone()).filter(|e| !e.is_empty()),
            host_header: self.host_header.clone(),
            headers: Some(self.headers.iter().cloned().collect())
                .filter(|h: &crate::cli::document::StringMap| !h.is_empty()),
            verify_tls: self.verify_tls,
            hostname: self.dns_hostname.clone(),
            record_type: self.dns_type,
            expected_address: self.dns_expect.clone(),
            service: self.grpc_service.clone(),
            interval: self.interval,
            timeout: self.timeout,
            healthy_threshold: self.healthy_threshold,
            unhealthy_threshold: self.unhealthy_threshold,
            enabled: self.check_enabled,
        };
        doc.check()
            .map_err(|e| CliError::invalid(flag_names(&e.to_string())))?;
        Ok(Some(requests::health_check(&doc)))
    }
}

/// Document field names in a validation message, as the flags that set them.
fn flag_names(msg: &str) -> String {
    let msg = msg.rsplit(": ").next().unwrap_or(msg);
    [
        ("expectedCodes", "--expect"),
        ("hostHeader", "--host-header"),
        ("headers", "--check-header"),
        ("verifyTls", "--verify-tls"),
        ("hostname", "--dns-hostname"),
        ("recordType", "--dns-type"),
        ("expectedAddress", "--dns-expect"),
        ("service", "--grpc-service"),
        ("path", "--path"),
        ("method", "--method"),
    ]
    .iter()
    .fold(msg.to_string(), |m, (field, flag)| {
        if m.starts_with(field) {
            m.replacen(field, flag, 1)
        } else {
            m
        }
    })
}

/// Session persistence; on `update` the flags given change the current settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Session persistence")]
pub struct PersistenceFlags {
    /// Persistence mode.
    #[arg(long, value_enum)]
    pub persistence: Option<Persistence>,
    /// Cookie name (cookie modes).
    #[arg(long)]
    pub cookie_name: Option<String>,
    /// How long a client sticks, seconds.
    #[arg(long, value_name = "SECONDS")]
    pub persistence_ttl: Option<u32>,
}

impl PersistenceFlags {
    /// `base` with the given flags applied, or `None` when none is given.
    pub fn apply_to(&self, base: Option<pv::SessionPersistence>) -> Option<pv::SessionPersistence> {
        if self.persistence.is_none()
            && self.cookie_name.is_none()
            && self.persistence_ttl.is_none()
        {
            return None;
        }
        let mut p = base.unwrap_or_default();
        if let Some(m) = self.persistence {
            p.mode = m.to_proto();
        }
        if let Some(c) = &self.cookie_name {
            p.cookie_name = Some(c.clone()).filter(|c| !c.is_empty());
        }
        if let Some(t) = self.persistence_ttl {
            p.ttl_seconds = t;
        }
        Some(p)
    }
}

/// Circuit breaker; on `update` the flags given change the current settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Circuit breaker")]
pub struct CircuitFlags {
    /// Turn the circuit breaker on (true, the default once any breaker flag is given) or off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub circuit_breaker: Option<bool>,
    /// Consecutive failures that open the circuit.
    #[arg(long, value_name = "N")]
    pub cb_failure_threshold: Option<u32>,
    /// Half-open successes that close it.
    #[arg(long, value_name = "N")]
    pub cb_success_threshold: Option<u32>,
    /// Seconds open before half-open.
    #[arg(long, value_name = "SECONDS")]
    pub cb_timeout: Option<u32>,
    /// Failure rate (0.0-1.0) that opens it.
    #[arg(long, value_name = "RATE")]
    pub cb_failure_rate: Option<f32>,
    /// Requests needed before the rates count.
    #[arg(long, value_name = "N")]
    pub cb_min_requests: Option<u32>,
    /// A call slower than this many ms is slow.
    #[arg(long, value_name = "MS")]
    pub cb_slow_call_ms: Option<u32>,
    /// Slow-call rate (0.0-1.0) that opens it.
    #[arg(long, value_name = "RATE")]
    pub cb_slow_call_rate: Option<f32>,
    /// Trial requests while half-open.
    #[arg(long, value_name = "N")]
    pub cb_half_open_max: Option<u32>,
}

impl CircuitFlags {
    /// `base` (or an enabled default breaker) with the given flags applied, or `None`
    /// when none is given.
    pub fn apply_to(
        &self,
        base: Option<pv::CircuitBreakerConfig>,
    ) -> Option<pv::CircuitBreakerConfig> {
        let any = self.circuit_breaker.is_some()
            || self.cb_failure_threshold.is_some()
            || self.cb_success_threshold.is_some()
            || self.cb_timeout.is_some()
            || self.cb_failure_rate.is_some()
            || self.cb_min_requests.is_some()
            || self.cb_slow_call_ms.is_some()
            || self.cb_slow_call_rate.is_some()
            || self.cb_half_open_max.is_some();
        if !any {
            return None;
        }
        let mut c = base.unwrap_or(pv::CircuitBreakerConfig {
            enabled: true,
            ..Default::default()
        });
        let set = |dst: &mut u32, v: Option<u32>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        if let Some(e) = self.circuit_breaker {
            c.enabled = e;
        }
        set(&mut c.failure_threshold, self.cb_failure_threshold);
        set(&mut c.success_threshold, self.cb_success_threshold);
        set(&mut c.timeout_seconds, self.cb_timeout);
        set(&mut c.min_request_volume, self.cb_min_requests);
        set(&mut c.slow_call_threshold_ms, self.cb_slow_call_ms);
        set(&mut c.half_open_max_requests, self.cb_half_open_max);
        if let Some(r) = self.cb_failure_rate {
            c.failure_rate_threshold = r;
        }
        if let Some(r) = self.cb_slow_call_rate {
            c.slow_call_rate_threshold = r;
        }
        Some(c)
    }
}
