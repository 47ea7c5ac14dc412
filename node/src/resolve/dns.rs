//! Hostname resolution with hickory.
//!
//! hickory's own response cache is turned off: the resolver module caches answers itself
//! (with the configured TTL bounds and keep-last-good), and hickory would otherwise also
//! cache failures, delaying the retry that should follow one.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig as HickoryConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::cache::{normalise, Attempt};
use super::ResolveError;

pub(super) use hickory_resolver::TokioResolver;

/// A hickory resolver asking `server` (UDP, TCP on truncation), or the system's
/// configuration (`/etc/resolv.conf`, `/etc/hosts`) when `server` is `None`.
pub(super) fn build(
    server: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut name_server.connections {
                connection.port = addr.port();
            }
            let config = HickoryConfig::from_name_servers(vec![name_server]);
            let mut builder = TokioResolver::builder_with_config(config, provider);
            // An explicitly configured server is the only source of truth.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
        None => TokioResolver::builder(provider)?,
    };
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.cache_size = 0;
    options.timeout = timeout;
    options.attempts = 2;
    builder.build()
}

/// Resolves `name` (A and AAAA). Success carries the answer's TTL clamped to
/// `[min_ttl, max_ttl]`; every failure is transient (the caller keeps the last good answer).
pub(super) async fn resolve(
    resolver: &TokioResolver,
    name: &str,
    min_ttl: Duration,
    max_ttl: Duration,
) -> Attempt {
    let started = Instant::now();
    let failed = |message: String| {
        Attempt::Transient(ResolveError::Dns {
            name: name.to_string(),
            message,
        })
    };
    match resolver.lookup_ip(name).await {
        Ok(lookup) => {
            let ips: Vec<IpAddr> = lookup.iter().collect();
            if ips.is_empty() {
                return failed("no A or AAAA records".to_string());
            }
            // Measured from the start of the query: the TTL counts from when the server
            // answered, and a slow answer must not extend it.
            let ttl = lookup.valid_until().saturating_duration_since(started);
            Attempt::Good(normalise(ips), clamp_ttl(ttl, min_ttl, max_ttl))
        }
        Err(e) => failed(e.to_string()),
    }
}

/// `ttl` bounded by `[min_ttl, max_ttl]`; a misconfigured `min_ttl > max_ttl` means `max_ttl`.
pub(super) fn clamp_ttl(ttl: Duration, min_ttl: Duration, max_ttl: Duration) -> Duration {
    ttl.max(min_ttl).min(max_ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped() {
        let s = Duration::from_secs;
        assert_eq!(clamp_ttl(s(0), s(5), s(300)), s(5));
        assert_eq!(clamp_ttl(s(60), s(5), s(300)), s(60));
        assert_eq!(clamp_ttl(s(86_400), s(5), s(300)), s(300));
        assert_eq!(clamp_ttl(s(1), s(10), s(3)), s(3));
    }
}
