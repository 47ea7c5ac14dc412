//! Starting and draining the data plane: the snapshot watcher, the listener manager and
//! the resolver's list of names to keep fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_api::model::{BackendAddress, BackendStatus};
use fiberlb_api::store::ConfigStore;
use tokio::sync::watch;

use super::runtime::NodeRuntime;
use crate::health::PolicyDefaults;
use crate::proxy::{listeners, ProxyContext, Workers};
use crate::resolve::{Resolver, ResolverConfig};
use crate::settings::{CircuitBreakerSettings, HealthCheckSettings, ProxySettings, Settings};
use crate::snapshot::{watch_store, SnapshotCell};
use crate::state::RuntimeState;

/// The running data plane.
pub struct DataPlane {
    /// Per-backend runtime state.
    pub state: Arc<RuntimeState>,
    ctx: ProxyContext,
    /// The `[health_check]` and `[circuit_breaker]` defaults the active checker resolves
    /// pools' rules with (changed on reload).
    health_defaults: watch::Sender<PolicyDefaults>,
    /// The data plane's threads: held here so that they outlive the listener manager
    /// (which stops first on shutdown) until the drain is over.
    _workers: Arc<Workers>,
}

/// Starts the data plane; it stops accepting when `stop` turns true.
pub fn start(
    settings: &Settings,
    store: Arc<dyn ConfigStore>,
    runtime: Arc<NodeRuntime>,
    workers: Arc<Workers>,
    stop: watch::Receiver<bool>,
) -> DataPlane {
    let state = Arc::new(RuntimeState::default());
    let cell = Arc::new(SnapshotCell::default());
    let resolver = Resolver::new(ResolverConfig {
        plasmavmc_endpoint: settings.plasmavmc.endpoint.clone(),
        vm_cache_ttl: Duration::from_secs(settings.plasmavmc.cache_ttl_seconds.max(1)),
        ..ResolverConfig::default()
    });
    let ctx = ProxyContext::new(cell.clone(), resolver.clone(), &settings.proxy);
    runtime.attach(state.clone(), cell.clone());
    let up = runtime.clone();
    tokio::spawn(watch_store(
        store,
        cell.clone(),
        state.clone(),
        move |ok| up.set_store_up(ok),
        stop.clone(),
    ));
    tokio::spawn(listeners::run(
        ctx.clone(),
        settings.proxy.bind_address,
        workers.clone(),
        stop.clone(),
    ));
    tokio::spawn(enforce_drain_deadlines(cell.clone(), stop.clone()));
    let (health_defaults, health_rx) = watch::channel(PolicyDefaults::from_settings(settings));
    let probes = crate::fleet::spawn(&runtime, &settings.cluster, cell.clone(), state.clone());
    tokio::spawn(crate::health::run(
        cell.clone(),
        resolver.clone(),
        health_rx,
        settings.flashdns.dns_addr,
        probes,
        stop.clone(),
    ));
    tokio::spawn(keep_names_fresh(cell, resolver, stop));
    DataPlane {
        state,
        ctx,
        health_defaults,
        _workers: workers,
    }
}

/// Closes what is still connected to a draining backend once its deadline passes.
async fn enforce_drain_deadlines(cell: Arc<SnapshotCell>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = fiberlb_api::model::now_ms();
        let snapshot = cell.load();
        for plan in snapshot.pools.values() {
            for (b, state) in plan.backends.iter().zip(&plan.states) {
                if b.status != BackendStatus::Draining {
                    continue;
                }
                if let Some(deadline) = b.drain_deadline.filter(|d| *d <= now) {
                    if state.close_at_deadline(deadline) {
                        let open = state
                            .stats
                            .active
                            .load(std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(backend = %b.id, name = %b.name, open, "drain deadline passed; closing remaining connections");
                    }
                }
            }
        }
    }
}

/// Tells the resolver which host names and VM ids the configuration uses.
async fn keep_names_fresh(
    cell: Arc<SnapshotCell>,
    resolver: Resolver,
    mut stop: watch::Receiver<bool>,
) {
    let mut changed = cell.subscribe();
    loop {
        let snapshot = cell.load();
        let wanted: Vec<BackendAddress> = snapshot
            .pools
            .values()
            .flat_map(|p| p.backends.iter())
            .filter(|b| !matches!(b.address, BackendAddress::Ip(_)))
            .map(|b| b.address.clone())
            .collect();
        for b in snapshot.pools.values().flat_map(|p| p.backends.iter()) {
            // Start resolving now, so the first connection does not find the name pending.
            let _ = resolver.lookup(&b.address, b.port);
        }
        resolver.retain(wanted);
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl DataPlane {
    /// Applies reloaded `[proxy]` settings: new connections use the new timeouts and
    /// limits, established ones keep theirs. Returns whether anything changed.
    pub fn apply_proxy(&self, proxy: &ProxySettings) -> bool {
        self.ctx.apply(proxy)
    }

    /// Hands reloaded `[health_check]` defaults to the active checker, which restarts
    /// the probes whose timings change. Returns whether they changed.
    pub fn apply_health_defaults(&self, defaults: &HealthCheckSettings) -> bool {
        self.health_defaults.send_if_modified(|d| {
            let changed = d.health_check != *defaults;
            if changed {
                d.health_check = defaults.clone();
            }
            changed
        })
    }

    /// Hands reloaded `[circuit_breaker]` defaults to the active checker, which resolves
    /// every pool's breaker again (a breaker keeps its state across a config change).
    /// Returns whether they changed.
    pub fn apply_circuit_defaults(&self, defaults: &CircuitBreakerSettings) -> bool {
        self.health_defaults.send_if_modified(|d| {
            let changed = d.circuit_breaker != *defaults;
            if changed {
                d.circuit_breaker = defaults.clone();
            }
            changed
        })
    }

    /// After listeners stopped accepting: lets open connections finish for up to `grace`,
    /// then closes the rest.
    pub async fn drain(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        loop {
            // HTTP client connections too: they close once their last response is written.
            let open = self.state.total_active();
            let http_clients = self.ctx.open_http_connections();
            if open == 0 && http_clients == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    open,
                    http_clients,
                    "drain grace over; closing remaining connections"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.ctx.shutdown.cancel();
    }
}
