//! `[proxy]`, `[health_check]` and `[circuit_breaker]`: node-wide data-plane tuning and the
//! defaults used when a listener, pool or health check does not say otherwise.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[proxy]`: socket and protocol limits of the data plane. A reload (SIGHUP) applies the
/// timeouts and size limits to connections accepted from then on; the socket options,
/// buffer sizes, bind address and TLS defaults need a restart ([`ProxySettings::changes`]).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// TCP keepalive idle time on client and backend sockets, seconds. Default 60; 0 = off.
    pub tcp_keepalive_seconds: u64,
    /// Set TCP_NODELAY on client and backend sockets. Default `true`.
    pub tcp_nodelay: bool,
    /// Backend connect timeout, milliseconds. Default 5000; must be > 0.
    pub connection_timeout_ms: u64,
    /// Idle keep-alive HTTP connections are closed after this many seconds. Default 60; > 0.
    pub http_idle_timeout_seconds: u64,
    /// Largest request head (request line + headers) accepted, bytes; larger gets 431.
    /// Default 8192; 1024..=1048576.
    pub max_header_size_bytes: usize,
    /// Largest request body accepted by L7 listeners, bytes; larger gets 413.
    /// Default 10485760 (10 MiB); 0 = unlimited.
    pub max_body_size_bytes: u64,
    /// SO_RCVBUF and copy buffer size, bytes. Default 65536; 1024..=67108864.
    pub recv_buffer_size: usize,
    /// SO_SNDBUF size, bytes. Default 65536; 1024..=67108864.
    pub send_buffer_size: usize,
    /// TCP (and TLS passthrough) connections move bulk data with splice(2) through a
    /// pipe instead of copying it through user space, once a direction fills a whole
    /// copy buffer in one read. Default `true`. Needs a restart.
    pub zero_copy: bool,
    /// When set, every listener binds this IP instead of its load balancer's VIP (several
    /// nodes on one machine each get their own 127.0.0.x). Default none: bind the VIP, or
    /// 0.0.0.0 for an LB without VIP. Env `FIBERLB_BIND_ADDRESS`, flag `--bind-address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    /// On drain/SIGTERM, existing connections get this long to finish before they are
    /// closed, seconds. Default 30.
    pub drain_grace_seconds: u64,
    /// A client must send the complete request head within this time, milliseconds
    /// (slowloris defence). Default 10000; must be > 0.
    pub header_read_timeout_ms: u64,
    /// Clients whose incoming `X-Forwarded-For` is kept (and appended to) by HTTP
    /// listeners, as CIDRs: typically the proxies or CDNs in front of FiberLB. From any
    /// other client the header is replaced by the client's address alone, so a backend
    /// cannot be fooled about who connected. Default `["0.0.0.0/0", "::/0"]` (keep and
    /// append, as HAProxy's `option forwardfor` and nginx's `$proxy_add_x_forwarded_for`
    /// do); `[]` trusts nobody. Applies live on SIGHUP.
    pub trusted_forwarders: Vec<ipnet::IpNet>,
    /// Threads of the data plane: each is the only worker of a runtime of its own, each TCP
    /// listener gets one `SO_REUSEPORT` acceptor per thread, and a connection stays on the
    /// thread that accepted it (the API, health checks, gossip and BGP run on two other
    /// threads). Default 0 = `TOKIO_WORKER_THREADS` if set, else the number of cores; at
    /// most 1024. Needs a restart.
    pub worker_threads: usize,
    /// `[proxy.tls]`: TLS termination defaults.
    pub tls: ProxyTlsSettings,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            tcp_keepalive_seconds: 60,
            tcp_nodelay: true,
            connection_timeout_ms: 5000,
            http_idle_timeout_seconds: 60,
            max_header_size_bytes: 8192,
            max_body_size_bytes: 10 * 1024 * 1024,
            recv_buffer_size: 65536,
            send_buffer_size: 65536,
            zero_copy: true,
            bind_address: None,
            drain_grace_seconds: 30,
            header_read_timeout_ms: 10_000,
            worker_threads: 0,
            trusted_forwarders: vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
                ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
            ],
            tls: ProxyTlsSettings::default(),
        }
    }
}

impl ProxySettings {
    /// `tcp_keepalive_seconds` as a duration; `None` when keepalive is off.
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        (self.tcp_keepalive_seconds > 0).then(|| Duration::from_secs(self.tcp_keepalive_seconds))
    }

    /// `connection_timeout_ms` as a duration.
    pub fn connection_timeout(&self) -> Duration {
        Duration::from_millis(self.connection_timeout_ms)
    }

    /// `http_idle_timeout_seconds` as a duration.
    pub fn http_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.http_idle_timeout_seconds)
    }

    /// `drain_grace_seconds` as a duration.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_grace_seconds)
    }

    /// `header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The keys that differ between `self` and `new`, split by whether a reload applies
    /// them (to new connections; `drain_grace_seconds` to the next drain) or they need a
    /// restart (socket options set on listener sockets, buffer sizes, the bind address and
    /// the TLS defaults baked into listeners' TLS configurations).
    pub fn changes(&self, new: &ProxySettings) -> ProxyChanges {
        // Destructured so that a new field cannot be added without deciding its kind.
        let ProxySettings {
            tcp_keepalive_seconds,
            tcp_nodelay,
            connection_timeout_ms,
            http_idle_timeout_seconds,
            max_header_size_bytes,
            max_body_size_bytes,
            recv_buffer_size,
            send_buffer_size,
            zero_copy,
            bind_address,
            drain_grace_seconds,
            header_read_timeout_ms,
            trusted_forwarders,
            worker_threads,
            tls,
        } = self;
        let live = [
            (
                "proxy.connection_timeout_ms",
                *connection_timeout_ms != new.connection_timeout_ms,
            ),
            (
                "proxy.http_idle_timeout_seconds",
                *http_idle_timeout_seconds != new.http_idle_timeout_seconds,
            ),
            (
                "proxy.max_header_size_bytes",
                *max_header_size_bytes != new.max_header_size_bytes,
            ),
            (
                "proxy.max_body_size_bytes",
                *max_body_size_bytes != new.max_body_size_bytes,
            ),
            (
                "proxy.drain_grace_seconds",
                *drain_grace_seconds != new.drain_grace_seconds,
            ),
            (
                "proxy.header_read_timeout_ms",
                *header_read_timeout_ms != new.header_read_timeout_ms,
            ),
            (
                "proxy.trusted_forwarders",
                *trusted_forwarders != new.trusted_forwarders,
            ),
        ];
        let restart = [
            (
                "proxy.tcp_keepalive_seconds",
                *tcp_keepalive_seconds != new.tcp_keepalive_seconds,
            ),
            ("proxy.tcp_nodelay", *tcp_nodelay != new.tcp_nodelay),
            (
                "proxy.recv_buffer_size",
                *recv_buffer_size != new.recv_buffer_size,
            ),
            (
                "proxy.send_buffer_size",
                *send_buffer_size != new.send_buffer_size,
            ),
            ("proxy.zero_copy", *zero_copy != new.zero_copy),
            ("proxy.bind_address", *bind_address != new.bind_address),
            ("proxy.tls", *tls != new.tls),
            (
                "proxy.worker_threads",
                *worker_threads != new.worker_threads,
            ),
        ];
        let changed = |list: &[(&'static str, bool)]| -> Vec<&'static str> {
            list.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect()
        };
        ProxyChanges {
            live: changed(&live),
            restart: changed(&restart),
        }
    }

    /// `self` with the keys a reload applies taken from `new` (the running settings after
    /// a reload: keys that need a restart keep their running values).
    pub fn with_live_from(&self, new: &ProxySettings) -> ProxySettings {
        ProxySettings {
            connection_timeout_ms: new.connection_timeout_ms,
            http_idle_timeout_seconds: new.http_idle_timeout_seconds,
            max_header_size_bytes: new.max_header_size_bytes,
            max_body_size_bytes: new.max_body_size_bytes,
            drain_grace_seconds: new.drain_grace_seconds,
            header_read_timeout_ms: new.header_read_timeout_ms,
            trusted_forwarders: new.trusted_forwarders.clone(),
            ..self.clone()
        }
    }
}

/// What changed in `[proxy]` between two settings (see [`ProxySettings::changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyChanges {
    /// Dotted keys a reload applies.
    pub live: Vec<&'static str>,
    /// Dotted keys that take effect only after a restart.
    pub restart: Vec<&'static str>,
}

/// Lowest TLS protocol version accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// `[proxy.tls]`: defaults for TLS-terminating listeners.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyTlsSettings {
    /// Minimum TLS version for listeners that do not set one: `tls12` or `tls13`.
    /// Default `tls12`.
    pub default_min_version: TlsVersion,
    /// Server-side session cache size (resumption), sessions. Default 10000; 0 = no cache.
    pub session_cache_size: usize,
    /// Lifetime of resumption tickets/sessions, seconds. Default 3600; 1..=604800
    /// (TLS 1.3 caps ticket lifetime at 7 days).
    pub session_timeout_seconds: u64,
}

impl Default for ProxyTlsSettings {
    fn default() -> Self {
        ProxyTlsSettings {
            default_min_version: TlsVersion::Tls12,
            session_cache_size: 10_000,
            session_timeout_seconds: 3600,
        }
    }
}

/// `[health_check]`: defaults for health checks that leave a field unset, and limits.
/// A reload (SIGHUP) applies all of them: probes whose timings change restart.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSettings {
    /// Time between probes of one backend, seconds. Default 30; >= 1.
    pub default_interval_seconds: u64,
    /// A probe not answered within this many seconds fails. Default 10; 1..=interval.
    pub default_timeout_seconds: u64,
    /// Consecutive successes to mark a backend healthy. Default 2; >= 1.
    pub default_healthy_threshold: u32,
    /// Consecutive failures to mark a backend unhealthy. Default 3; >= 1.
    pub default_unhealthy_threshold: u32,
    /// Probes in flight at once on this node, across all backends. Default 100; >= 1.
    pub max_concurrent_checks: usize,
    /// Each probe is delayed by a random 0..=this percent of the interval, so checks of
    /// many backends do not fire together. Default 10; 0..=100.
    pub check_jitter_percent: u32,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        HealthCheckSettings {
            default_interval_seconds: 30,
            default_timeout_seconds: 10,
            default_healthy_threshold: 2,
            default_unhealthy_threshold: 3,
            max_concurrent_checks: 100,
            check_jitter_percent: 10,
        }
    }
}

/// `[circuit_breaker]`: defaults for per-backend circuit breakers (spec §3.7).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerSettings {
    /// Consecutive failures that open the circuit. Default 5; >= 1.
    pub default_failure_threshold: u32,
    /// Successful half-open probes that close it again. Default 3; >= 1.
    pub default_success_threshold: u32,
    /// Time the circuit stays open before half-open probing, seconds. Default 60; >= 1.
    pub default_timeout_seconds: u64,
}

impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        CircuitBreakerSettings {
            default_failure_threshold: 5,
            default_success_threshold: 3,
            default_timeout_seconds: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_split_live_keys_from_restart_keys() {
        let old = ProxySettings::default();
        assert_eq!(old.changes(&old.clone()), ProxyChanges::default());
        let mut new = old.clone();
        new.header_read_timeout_ms = 500;
        new.connection_timeout_ms = 100;
        new.drain_grace_seconds = 3;
        new.tcp_nodelay = false;
        new.tls.session_cache_size = 1;
        let c = old.changes(&new);
        assert_eq!(
            c.live,
            vec![
                "proxy.connection_timeout_ms",
                "proxy.drain_grace_seconds",
                "proxy.header_read_timeout_ms"
            ]
        );
        assert_eq!(c.restart, vec!["proxy.tcp_nodelay", "proxy.tls"]);
        // After the reload the running settings have the live keys only.
        let running = old.with_live_from(&new);
        let left = running.changes(&new);
        assert!(left.live.is_empty(), "{left:?}");
        assert_eq!(left.restart, c.restart);
    }
}
