//! Backend address resolution: turns a backend's [`BackendAddress`] into socket addresses
//! without ever making the data plane wait.
//!
//! - IP literals answer at once.
//! - Hostnames are resolved with hickory (A and AAAA) and re-resolved when the answer's TTL
//!   expires, the TTL clamped to `[min_ttl, max_ttl]` so a zero TTL cannot turn into a query
//!   storm and a week-long TTL cannot pin a stale address.
//! - VM ids are resolved through the PlasmaVMC HTTP API (contract in [`vm`] and
//!   `docs/plasmavmc.md`) and cached for `vm_cache_ttl`.
//!
//! Why a cache in front of everything: [`Resolver::lookup`] is called per connection, so it
//! reads an immutable, lock-free published map (`ArcSwap`) and never awaits. A miss returns
//! [`Lookup::Pending`] and starts one background task per name (deduplicated); that task
//! keeps the name fresh until [`Resolver::retain`] says it is no longer wanted.
//!
//! Why keep the last good answer: a DNS server or the PlasmaVMC API being briefly down must
//! not take healthy backends out of service. Only a name that never resolved is
//! [`Lookup::Failed`]. The exceptions are PlasmaVMC's authoritative answers that a VM is not
//! running or does not exist: its old address may already belong to another VM, so sending
//! traffic there would be wrong, and the answer is dropped at once.
//!
//! What this module does not do: health checking (an address that resolves may still be
//! down) or choosing among the returned addresses (the balancer does that).

mod cache;
mod dns;
mod vm;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::BackendAddress;

use cache::{Cache, Key, Tuning};

pub use vm::{VmDocument, VmInterface};

/// Settings of the [`Resolver`].
///
/// Construct with `..ResolverConfig::default()` so that new fields do not break callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Base URL of the PlasmaVMC API, `http://host:port` (plain HTTP; an optional path
    /// prefix is kept). `None`: VM-id backends fail with a clear error.
    pub plasmavmc_endpoint: Option<String>,
    /// How long a VM's address is used before PlasmaVMC is asked again
    /// (`[plasmavmc] cache_ttl_seconds`). Default 30 s.
    pub vm_cache_ttl: Duration,
    /// Lower bound of the DNS TTL used to schedule re-resolution. Default 5 s.
    pub min_ttl: Duration,
    /// Upper bound of the DNS TTL used to schedule re-resolution. Default 300 s.
    pub max_ttl: Duration,
    /// DNS server to ask (UDP, then TCP on truncation). `None`: the system's
    /// `/etc/resolv.conf` and `/etc/hosts`.
    pub dns_server: Option<SocketAddr>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            plasmavmc_endpoint: None,
            vm_cache_ttl: Duration::from_secs(30),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            dns_server: None,
        }
    }
}

/// The answer of [`Resolver::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The addresses to use (never empty).
    Ready(Addrs),
    /// Resolution is under way; try again (the caller treats the backend as unavailable).
    Pending,
    /// The name never resolved, or PlasmaVMC says the VM is not running or gone.
    Failed(String),
}

/// The addresses of a [`Lookup::Ready`]: an IP backend's one address by value, or a
/// resolved name's list shared with the cache. The data plane looks up the backend of
/// every request and connection; an IP backend's answer allocated each time before.
#[derive(Debug, Clone)]
pub enum Addrs {
    /// An IP address (or IP literal) and the port.
    One(SocketAddr),
    /// What the name resolved to.
    Shared(Arc<[SocketAddr]>),
}

impl std::ops::Deref for Addrs {
    type Target = [SocketAddr];

    fn deref(&self) -> &[SocketAddr] {
        match self {
            Addrs::One(a) => std::slice::from_ref(a),
            Addrs::Shared(list) => list,
        }
    }
}

/// Equal when the same addresses in the same order, however held.
impl PartialEq for Addrs {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Addrs {}

impl From<Arc<[SocketAddr]>> for Addrs {
    fn from(list: Arc<[SocketAddr]>) -> Self {
        Addrs::Shared(list)
    }
}

impl From<Vec<SocketAddr>> for Addrs {
    fn from(list: Vec<SocketAddr>) -> Self {
        Addrs::Shared(list.into())
    }
}

/// Why a name has no addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The DNS lookup failed (server error, timeout, no such name, no A/AAAA records).
    #[error("dns lookup of {name} failed: {message}")]
    Dns {
        /// The hostname.
        name: String,
        /// hickory's error.
        message: String,
    },
    /// A VM-id backend but no `[plasmavmc] endpoint` is configured.
    #[error("vm {id}: no plasmavmc endpoint configured")]
    NoPlasmaVmc {
        /// The VM id.
        id: String,
    },
    /// PlasmaVMC could not be asked or gave an unusable answer (transport error, timeout,
    /// unexpected status, malformed JSON).
    #[error("vm {id}: plasmavmc request failed: {message}")]
    PlasmaVmc {
        /// The VM id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// PlasmaVMC answered 404: no such VM.
    #[error("vm {id} not found")]
    VmNotFound {
        /// The VM id.
        id: String,
    },
    /// The VM exists but is not running.
    #[error("vm {id} is {state}")]
    VmNotRunning {
        /// The VM id.
        id: String,
        /// The state PlasmaVMC reported, e.g. `stopped`.
        state: String,
    },
    /// The VM is running but has no IP address on any interface.
    #[error("vm {id} has no ip address")]
    VmNoAddress {
        /// The VM id.
        id: String,
    },
    /// The name was dropped by [`Resolver::retain`] while a caller waited for it.
    #[error("{name} is no longer resolved (removed while waiting)")]
    Removed {
        /// The name.
        name: String,
    },
    /// Background resolution needs a tokio runtime and none was available.
    #[error("resolver used outside a tokio runtime")]
    NoRuntime,
}

/// Resolves backend addresses; cheap to clone (all clones share one cache).
///
/// Background tasks end when the name is dropped by [`Resolver::retain`] or when the last
/// clone of the resolver is dropped.
#[derive(Clone)]
pub struct Resolver {
    cache: Arc<Cache>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with `cfg`. Works outside a runtime too: the DNS client and HTTP client
    /// are created on first use, background tasks on the runtime current at that point.
    pub fn new(cfg: ResolverConfig) -> Self {
        Self::with_tuning(cfg, Tuning::default())
    }

    fn with_tuning(cfg: ResolverConfig, tuning: Tuning) -> Self {
        Self {
            cache: Cache::new(cfg, tuning),
        }
    }

    /// The addresses of `address` with `port`, from the cache; never blocks or awaits.
    ///
    /// On the first call for a name this returns [`Lookup::Pending`] and starts resolving
    /// it in the background (one resolution per name however many callers ask).
    pub fn lookup(&self, address: &BackendAddress, port: u16) -> Lookup {
        match address {
            BackendAddress::Ip(ip) => Lookup::Ready(Addrs::One(SocketAddr::new(*ip, port))),
            BackendAddress::Hostname(name) => {
                if let Some(ip) = literal_ip(name) {
                    return Lookup::Ready(Addrs::One(SocketAddr::new(ip, port)));
                }
                self.cache.lookup(cache::Kind::Host, name, port)
            }
            BackendAddress::VmId(id) => self.cache.lookup(cache::Kind::Vm, id, port),
        }
    }

    /// Like [`Resolver::lookup`] but waits for the first outcome of a name not resolved
    /// yet. Used at start-up and by tests; the data plane uses `lookup`.
    pub async fn resolve_now(
        &self,
        address: &BackendAddress,
        port: u16,
    ) -> Result<Arc<[SocketAddr]>, ResolveError> {
        match address {
            BackendAddress::Ip(ip) => Ok(Arc::from([SocketAddr::new(*ip, port)])),
            BackendAddress::Hostname(name) => {
                if let Some(ip) = literal_ip(name) {
                    return Ok(Arc::from([SocketAddr::new(ip, port)]));
                }
                self.cache.resolve_now(cache::Kind::Host, name, port).await
            }
            BackendAddress::VmId(id) => self.cache.resolve_now(cache::Kind::Vm, id, port).await,
        }
    }

    /// Sets the names to keep refreshed: names not in `wanted` lose their cache entry and
    /// background task; wanted names not known yet start resolving now, so the first
    /// connection already finds an answer. IP addresses are ignored.
    pub fn retain(&self, wanted: impl IntoIterator<Item = BackendAddress>) {
        let keys = wanted
            .into_iter()
            .filter_map(|address| match address {
                BackendAddress::Ip(_) => None,
                BackendAddress::Hostname(name) if literal_ip(&name).is_some() => None,
                BackendAddress::Hostname(name) => Some(Key::host(name)),
                BackendAddress::VmId(id) => Some(Key::vm(id)),
            })
            .collect();
        self.cache.retain(keys);
    }
}

/// A "hostname" that is really an IP literal (e.g. written by a client that did not parse
/// it) needs no DNS round trip.
fn literal_ip(name: &str) -> Option<IpAddr> {
    name.parse().ok()
}
