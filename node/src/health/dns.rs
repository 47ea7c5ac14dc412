//! DNS check: an A or AAAA query for the check's hostname must return at least one
//! address (and the expected one, when set).
//!
//! Which server is asked: `[flashdns] dns_addr` when it is set, so the check says whether
//! the platform DNS publishes the name; otherwise the backend itself, at its own address
//! and port (a pool of DNS servers checks each one). The brief suggested port 53 for the
//! latter, but the backend's port is where the pool sends DNS traffic, so that is the
//! server that must answer; it is 53 for any ordinary DNS backend.
//!
//! Resolvers are cached per (server, timeout) with hickory's response cache off, so every
//! probe is a real query; one attempt per probe, bounded by 90% of the probe's timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use fiberlb_api::model::DnsRecordType;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;

use super::CheckError;

/// Resolvers by server and timeout.
#[derive(Default)]
pub(super) struct DnsClients {
    resolvers: Mutex<HashMap<(SocketAddr, Duration), TokioResolver>>,
}

impl std::fmt::Debug for DnsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsClients").finish_non_exhaustive()
    }
}

impl DnsClients {
    fn resolver(&self, server: SocketAddr, timeout: Duration) -> Result<TokioResolver, CheckError> {
        let mut map = match self.resolvers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(r) = map.get(&(server, timeout)) {
            return Ok(r.clone());
        }
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        );
        let o = b.options_mut();
        o.use_hosts_file = ResolveHosts::Never;
        o.cache_size = 0;
        // A little under the probe's own timeout, so hickory's error (which says what
        // happened) wins over the bare "timed out" of the probe.
        o.timeout = timeout * 9 / 10;
        o.attempts = 1;
        let r = b
            .build()
            .map_err(|e| CheckError::Dns(format!("resolver for {server}: {e}")))?;
        // Bounded: one entry per distinct backend/server, dropped with the checker.
        map.insert((server, timeout), r.clone());
        Ok(r)
    }

    /// Forgets resolvers of servers no longer checked.
    pub(super) fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        if let Ok(mut m) = self.resolvers.lock() {
            m.retain(|(s, _), _| keep(s));
        }
    }

    /// Queries `hostname` at `server`.
    pub(super) async fn check(
        &self,
        server: SocketAddr,
        hostname: &str,
        record_type: DnsRecordType,
        expected: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<(), CheckError> {
        let resolver = self.resolver(server, timeout)?;
        let rtype = match record_type {
            DnsRecordType::A => RecordType::A,
            DnsRecordType::Aaaa => RecordType::AAAA,
        };
        // A trailing dot: the name is absolute, so no search domain is tried.
        let fqdn = if hostname.ends_with('.') {
            hostname.to_string()
        } else {
            format!("{hostname}.")
        };
        let lookup = resolver
            .lookup(fqdn.as_str(), rtype)
            .await
            .map_err(|e| CheckError::Dns(format!("{rtype} {hostname} at {server}: {e}")))?;
        let addrs: Vec<IpAddr> = lookup
            .answers()
            .iter()
            .filter_map(|r| r.data.ip_addr())
            .collect();
        if addrs.is_empty() {
            return Err(CheckError::Dns(format!(
                "no {rtype} records for {hostname} at {server}"
            )));
        }
        match expected {
            Some(want) if !addrs.contains(&want) => Err(CheckError::Dns(format!(
                "{want} not among the {rtype} records of {hostname}: {addrs:?}"
            ))),
            _ => Ok(()),
        }
    }
}
