//! The resolver's cache: a lock-free published view for `lookup`, a mutex-guarded control
//! table for the rare writes, and one refresh task per name.
//!
//! Why two structures: `lookup` runs per connection and must not contend with anything, so
//! it only loads an `ArcSwap` of immutable maps. Writes (a name or port seen for the first
//! time, an answer that changed, `retain`) take the control mutex, rebuild the affected
//! entry and store a new map. Refreshes that return the same addresses publish nothing.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::dns::{self, TokioResolver};
use super::vm::VmClient;
use super::{Addrs, Lookup, ResolveError, ResolverConfig};

/// What kind of name a [`Key`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// A DNS hostname.
    Host,
    /// A PlasmaVMC VM id.
    Vm,
}

/// A name the resolver tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    kind: Kind,
    name: Arc<str>,
}

impl Key {
    pub(super) fn host(name: String) -> Self {
        Self {
            kind: Kind::Host,
            name: name.into(),
        }
    }

    pub(super) fn vm(id: String) -> Self {
        Self {
            kind: Kind::Vm,
            name: id.into(),
        }
    }
}

/// Timeouts and retry pacing; fixed in production, shortened by tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    /// Per-query DNS timeout (hickory retries once more on timeout).
    pub(super) dns_timeout: Duration,
    /// Whole-request timeout of a PlasmaVMC call, connect included.
    pub(super) http_timeout: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub(super) retry_base: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            dns_timeout: Duration::from_secs(3),
            http_timeout: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
        }
    }
}

/// Retries of a failing DNS name are spaced at most this far apart (unless `max_ttl` is
/// shorter), so a name that failed for a long time is picked up soon after it recovers.
const MAX_DNS_RETRY: Duration = Duration::from_secs(30);

/// One published answer for a (name, port).
#[derive(Debug, Clone)]
enum Answer {
    Pending,
    Ready(Arc<[SocketAddr]>),
    Failed(Arc<str>),
}

impl Answer {
    fn to_lookup(&self) -> Lookup {
        match self {
            Answer::Pending => Lookup::Pending,
            Answer::Ready(addrs) => Lookup::Ready(Addrs::Shared(addrs.clone())),
            Answer::Failed(message) => Lookup::Failed(message.to_string()),
        }
    }
}

type Ports = Arc<[(u16, Answer)]>;

/// What `lookup` reads: immutable, replaced as a whole.
#[derive(Debug, Default, Clone)]
struct Published {
    hosts: HashMap<Arc<str>, Ports>,
    vms: HashMap<Arc<str>, Ports>,
}

impl Published {
    fn map(&self, kind: Kind) -> &HashMap<Arc<str>, Ports> {
        match kind {
            Kind::Host => &self.hosts,
            Kind::Vm => &self.vms,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut HashMap<Arc<str>, Ports> {
        match kind {
            Kind::Host => &mut self.hosts,
            Kind::Vm => &mut self.vms,
        }
    }
}

/// The resolution state of one name, shared with `resolve_now` waiters.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    /// `None` until the first attempt finishes; then the last good addresses, or the error
    /// of a name that never resolved (or that PlasmaVMC says is gone).
    pub(super) answer: Option<Result<Arc<[IpAddr]>, ResolveError>>,
    /// Consecutive transient failures (drives the back-off).
    pub(super) failures: u32,
}

struct Entry {
    /// Distinguishes this entry from an earlier one for the same name, so a task aborted by
    /// `retain` that still finishes an attempt cannot write into its successor.
    generation: u64,
    /// Ports callers asked for; each gets its own published `Arc<[SocketAddr]>`.
    ports: BTreeSet<u16>,
    state: watch::Sender<State>,
    task: AbortHandle,
}

/// The result of one resolution attempt.
pub(super) enum Attempt {
    /// Addresses (sorted, deduplicated, non-empty) and when to ask again.
    Good(Arc<[IpAddr]>, Duration),
    /// An authoritative "no addresses" (VM stopped or deleted): replaces the last good
    /// answer. Ask again after the duration.
    Gone(ResolveError, Duration),
    /// The source could not answer: keep the last good answer, retry with back-off.
    Transient(ResolveError),
}

pub(super) struct Cache {
    cfg: ResolverConfig,
    tuning: Tuning,
    runtime: Option<tokio::runtime::Handle>,
    published: ArcSwap<Published>,
    ctl: Mutex<Control>,
    dns: OnceLock<Result<TokioResolver, String>>,
    vm: OnceLock<Result<VmClient, String>>,
    /// Set once the `Arc<Cache>` exists, so tasks can hold a `Weak` to it.
    me: Weak<Cache>,
}

#[derive(Default)]
struct Control {
    entries: HashMap<Key, Entry>,
    next_generation: u64,
}

impl Cache {
    pub(super) fn new(cfg: ResolverConfig, tuning: Tuning) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            cfg,
            tuning,
            runtime: tokio::runtime::Handle::try_current().ok(),
            published: ArcSwap::default(),
            ctl: Mutex::default(),
            dns: OnceLock::new(),
            vm: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// The hot path: one atomic load and two small hash lookups; the slow path only for a
    /// (name, port) never seen before.
    pub(super) fn lookup(&self, kind: Kind, name: &str, port: u16) -> Lookup {
        if let Some(ports) = self.published.load().map(kind).get(name) {
            if let Some((_, answer)) = ports.iter().find(|(p, _)| *p == port) {
                return answer.to_lookup();
            }
        }
        let key = Key {
            kind,
            name: name.into(),
        };
        let mut ctl = self.lock();
        match self.register(&mut ctl, &key, Some(port)) {
            Ok(state) => answer_for(&state.borrow(), port).to_lookup(),
            Err(e) => Lookup::Failed(e.to_string()),
        }
    }

    pub(super) async fn resolve_now(
        &self,
        kind: Kind,
        name: &str,
        port: u16,
    ) -> Result<Arc<[SocketAddr]>, ResolveError> {
        let key = Key {
            kind,
            name: name.into(),
        };
        let mut rx = {
            let mut ctl = self.lock();
            self.register(&mut ctl, &key, Some(port))?.subscribe()
        };
        loop {
            if let Some(answer) = &rx.borrow_and_update().answer {
                return answer.clone().map(|ips| socket_addrs(&ips, port));
            }
            if rx.changed().await.is_err() {
                return Err(ResolveError::Removed {
                    name: name.to_string(),
                });
            }
        }
    }

    pub(super) fn retain(&self, wanted: std::collections::HashSet<Key>) {
        let mut ctl = self.lock();
        let gone: Vec<Key> = ctl
            .entries
            .keys()
            .filter(|key| !wanted.contains(*key))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let mut published = Published::clone(&self.published.load());
            for key in &gone {
                if let Some(entry) = ctl.entries.remove(key) {
                    entry.task.abort();
                }
                published.map_mut(key.kind).remove(&key.name);
            }
            self.published.store(Arc::new(published));
            tracing::debug!(dropped = gone.len(), "resolver: names no longer wanted");
        }
        for key in &wanted {
            if let Err(e) = self.register(&mut ctl, key, None) {
                tracing::warn!(name = %key.name, error = %e, "resolver: cannot start resolution");
            }
        }
    }

    /// Makes sure `key` has an entry and a refresh task, adds `port` to its published
    /// ports, and returns its state channel.
    fn register(
        &self,
        ctl: &mut Control,
        key: &Key,
        port: Option<u16>,
    ) -> Result<watch::Sender<State>, ResolveError> {
        if !ctl.entries.contains_key(key) {
            let runtime = self
                .runtime
                .clone()
                .or_else(|| tokio::runtime::Handle::try_current().ok())
                .ok_or(ResolveError::NoRuntime)?;
            ctl.next_generation += 1;
            let generation = ctl.next_generation;
            let task = runtime
                .spawn(refresh_loop(self.me.clone(), key.clone(), generation))
                .abort_handle();
            let entry = Entry {
                generation,
                ports: BTreeSet::new(),
                state: watch::Sender::new(State::default()),
                task,
            };
            ctl.entries.insert(key.clone(), entry);
        }
        let Some(entry) = ctl.entries.get_mut(key) else {
            return Err(ResolveError::Removed {
                name: key.name.to_string(),
            });
        };
        if let Some(port) = port {
            if entry.ports.insert(port) {
                self.publish(key, entry);
            }
        }
        Ok(entry.state.clone())
    }

    /// Stores a new published map with `key`'s answers rebuilt from its entry. Called with
    /// the control mutex held, so writers never race each other.
    fn publish(&self, key: &Key, entry: &Entry) {
        let state = entry.state.borrow();
        let ports: Ports = entry
            .ports
            .iter()
            .map(|port| (*port, answer_for(&state, *port)))
            .collect();
        let mut published = Published::clone(&self.published.load());
        published.map_mut(key.kind).insert(key.name.clone(), ports);
        self.published.store(Arc::new(published));
    }

    /// Records the outcome of one attempt; returns when to try again, or `None` when the
    /// entry is gone (the task then ends).
    fn apply(&self, key: &Key, generation: u64, attempt: Attempt) -> Option<Duration> {
        let ctl = self.lock();
        let entry = ctl
            .entries
            .get(key)
            .filter(|entry| entry.generation == generation)?;
        let mut changed = false;
        let mut delay = Duration::ZERO;
        entry.state.send_modify(|state| match attempt {
            Attempt::Good(ips, ttl) => {
                changed = !matches!(&state.answer, Some(Ok(old)) if *old == ips);
                if changed {
                    tracing::debug!(name = %key.name, addresses = ?ips, "resolver: new answer");
                }
                state.answer = Some(Ok(ips));
                state.failures = 0;
                delay = ttl;
            }
            Attempt::Gone(error, retry) => {
                changed = state.answer.as_ref() != Some(&Err(error.clone()));
                if changed {
                    tracing::warn!(name = %key.name, %error, "resolver: no addresses");
                }
                state.answer = Some(Err(error));
                state.failures = 0;
                delay = retry;
            }
            Attempt::Transient(error) => {
                state.failures = state.failures.saturating_add(1);
                delay = self.backoff(key.kind, state.failures);
                if let Some(Ok(last)) = &state.answer {
                    tracing::warn!(name = %key.name, %error, keeping = ?last, retry_in = ?delay,
                        "resolver: resolution failed, keeping the last good answer");
                } else {
                    tracing::warn!(name = %key.name, %error, retry_in = ?delay,
                        "resolver: resolution failed");
                    changed = state.answer.as_ref() != Some(&Err(error.clone()));
                    state.answer = Some(Err(error));
                }
            }
        });
        if changed {
            if let Some(entry) = ctl.entries.get(key) {
                self.publish(key, entry);
            }
        }
        Some(delay)
    }

    fn backoff(&self, kind: Kind, failures: u32) -> Duration {
        let base = self.tuning.retry_base;
        let cap = match kind {
            Kind::Host => self.cfg.max_ttl.min(MAX_DNS_RETRY),
            Kind::Vm => self.cfg.vm_cache_ttl,
        }
        .max(base);
        let exp = failures.saturating_sub(1).min(16);
        base.saturating_mul(1 << exp).min(cap)
    }

    /// One resolution of `key`, whatever its kind.
    async fn attempt(&self, key: &Key) -> Attempt {
        match key.kind {
            Kind::Host => {
                let resolver = self.dns.get_or_init(|| {
                    dns::build(self.cfg.dns_server, self.tuning.dns_timeout)
                        .map_err(|e| format!("cannot configure the dns resolver: {e}"))
                });
                match resolver {
                    Ok(resolver) => {
                        dns::resolve(resolver, &key.name, self.cfg.min_ttl, self.cfg.max_ttl).await
                    }
                    Err(message) => Attempt::Transient(ResolveError::Dns {
                        name: key.name.to_string(),
                        message: message.clone(),
                    }),
                }
            }
            Kind::Vm => {
                let client = self.vm.get_or_init(|| match &self.cfg.plasmavmc_endpoint {
                    Some(endpoint) => VmClient::new(endpoint, self.tuning.http_timeout),
                    None => Err(String::new()),
                });
                match (client, &self.cfg.plasmavmc_endpoint) {
                    (Ok(client), _) => client.resolve(&key.name, self.cfg.vm_cache_ttl).await,
                    (Err(_), None) => Attempt::Transient(ResolveError::NoPlasmaVmc {
                        id: key.name.to_string(),
                    }),
                    (Err(message), Some(_)) => Attempt::Transient(ResolveError::PlasmaVmc {
                        id: key.name.to_string(),
                        message: message.clone(),
                    }),
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // A panic while holding the lock leaves consistent data (every write is a single
        // insert/remove), so a poisoned lock is still usable.
        self.ctl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(super) fn state(&self, key: &Key) -> Option<State> {
        self.lock()
            .entries
            .get(key)
            .map(|entry| entry.state.borrow().clone())
    }

    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let ctl = self.ctl.get_mut().unwrap_or_else(PoisonError::into_inner);
        for entry in ctl.entries.values() {
            entry.task.abort();
        }
    }
}

/// Resolves `key` now and then for as long as its entry (and the cache) lives.
async fn refresh_loop(cache: Weak<Cache>, key: Key, generation: u64) {
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let attempt = strong.attempt(&key).await;
        let Some(delay) = strong.apply(&key, generation, attempt) else {
            return;
        };
        drop(strong);
        tokio::time::sleep(delay).await;
    }
}

fn answer_for(state: &State, port: u16) -> Answer {
    match &state.answer {
        None => Answer::Pending,
        Some(Ok(ips)) => Answer::Ready(socket_addrs(ips, port)),
        Some(Err(e)) => Answer::Failed(e.to_string().into()),
    }
}

fn socket_addrs(ips: &[IpAddr], port: u16) -> Arc<[SocketAddr]> {
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

/// Sorted and deduplicated, so an answer that only changed order (DNS round robin) is
/// recognised as unchanged and not republished.
pub(super) fn normalise(mut ips: Vec<IpAddr>) -> Arc<[IpAddr]> {
    ips.sort_unstable();
    ips.dedup();
    ips.into()
}
