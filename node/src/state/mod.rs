//! Runtime state of backends: live counters, health verdicts (with the details of active
//! checks, passive ejections and the circuit breaker) and drain cancellation. It is keyed by
//! backend id and outlives configuration snapshots, so a config change never resets a
//! backend's connection count or health. The rules that change health live in
//! [`crate::health`]; this module only holds the state.
//!
//! In a fleet a backend has two verdicts: this node's own (its active checks, when it
//! probes the backend) and the routing verdict [`BackendState::verdict`], which merges in
//! what the backend's probers gossip (see [`fleet::effective`]).

mod fleet;

pub use fleet::{effective, merge, FleetHealth};

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use fiberlb_api::model::{CircuitState, HealthStatus};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::balance::BackendStats;
use crate::health::circuit::CircuitCell;
use crate::health::passive::PassiveState;
use crate::health::{mono_ms, HealthRecord, Policy};

/// Health verdict of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never checked.
    Unknown,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
}

/// Everything the node tracks about one backend at run time.
#[derive(Debug)]
pub struct BackendState {
    id: String,
    /// Counters the balancers read.
    pub stats: Arc<BackendStats>,
    /// This node's own active-check verdict.
    verdict: AtomicU8,
    /// What the fleet says (gossip); empty on a single node.
    fleet: fleet::FleetCell,
    /// Woken when the own verdict changes, so the fleet layer gossips it at once.
    changed: Arc<Notify>,
    /// Details of the active checks (and the last error, active or passive).
    details: Mutex<HealthRecord>,
    /// Passive failure counter and ejection.
    passive: PassiveState,
    /// The circuit breaker.
    circuit: CircuitCell,
    /// The rules of the backend's pool, set by the health checker on each snapshot.
    policy: ArcSwap<Policy>,
    /// Cancelled when the backend's drain deadline passes (or it is removed): every open
    /// connection to it closes.
    close_all: token_cell::TokenCell,
    /// The drain deadline whose forced close already happened (0 = none).
    closed_deadline: std::sync::atomic::AtomicU64,
}

impl BackendState {
    fn new(id: &str, changed: Arc<Notify>) -> Self {
        Self {
            id: id.to_string(),
            stats: Arc::default(),
            verdict: AtomicU8::new(0),
            fleet: fleet::FleetCell::default(),
            changed,
            details: Mutex::new(HealthRecord::default()),
            passive: PassiveState::default(),
            circuit: CircuitCell::default(),
            policy: ArcSwap::from_pointee(Policy::default()),
            close_all: token_cell::TokenCell::new(),
            closed_deadline: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The routing verdict: this node's own merged with the fleet's ([`effective`]).
    pub fn verdict(&self) -> Verdict {
        effective(self.own_verdict(), self.fleet.health())
    }

    /// This node's own verdict (its active checks; on a non-prober whatever it last had).
    pub fn own_verdict(&self) -> Verdict {
        fleet::verdict_of(self.verdict.load(Ordering::Relaxed))
    }

    /// Records this node's own verdict; a change wakes the fleet layer.
    pub fn set_verdict(&self, v: Verdict) {
        let prev = self.verdict.swap(fleet::verdict_code(v), Ordering::Relaxed);
        if prev != fleet::verdict_code(v) {
            self.changed.notify_one();
        }
    }

    /// What the fleet says about the backend (`None` on a single node or without checks).
    pub fn fleet_health(&self) -> Option<FleetHealth> {
        self.fleet.health()
    }

    /// Sets the fleet's input to the routing verdict.
    pub fn set_fleet_health(&self, h: Option<FleetHealth>) {
        self.fleet.set_health(h);
    }

    /// Other live members whose circuit breaker for this backend is open or half-open,
    /// and whose passive health ejects it.
    pub fn fleet_counts(&self) -> (u32, u32) {
        self.fleet.counts()
    }

    /// Sets [`BackendState::fleet_counts`].
    pub fn set_fleet_counts(&self, circuits_open: u32, ejecting: u32) {
        self.fleet.set_counts(circuits_open, ejecting);
    }

    /// The backend id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether it may get traffic as far as health goes: not ejected by passive health,
    /// and in a pool with an active check it must have passed; without one it serves
    /// unless it was marked down.
    pub fn is_healthy(&self, pool_has_active_check: bool) -> bool {
        if self.passive.is_ejected_now() {
            return false;
        }
        match self.verdict() {
            Verdict::Healthy => true,
            Verdict::Unhealthy => false,
            Verdict::Unknown => !pool_has_active_check,
        }
    }

    /// The full health status shown by the API. `consecutive_*` count active probes in a
    /// pool with an active check, and passive failures of real traffic in one without.
    pub fn health_status(&self, pool_has_active_check: bool) -> HealthStatus {
        // The verdict is read under the details lock, which a passive ejection holds while
        // it ejects and records why: never "unhealthy" without the reason.
        let (d, healthy) = {
            let guard = self.details();
            (guard.clone(), self.is_healthy(pool_has_active_check))
        };
        let (failures, successes) = if pool_has_active_check {
            (d.consecutive_failures, d.consecutive_successes)
        } else {
            (self.passive.failures(), 0)
        };
        HealthStatus {
            healthy,
            last_check: d.last_check,
            last_healthy: d.last_healthy,
            consecutive_failures: failures,
            consecutive_successes: successes,
            last_error: d.last_error,
        }
    }

    /// The active-check details, locked (never held across an await).
    pub fn details(&self) -> MutexGuard<'_, HealthRecord> {
        match self.details.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Passive failure counter and ejection.
    pub fn passive(&self) -> &PassiveState {
        &self.passive
    }

    /// The circuit breaker.
    pub fn circuit(&self) -> &CircuitCell {
        &self.circuit
    }

    /// The circuit breaker's state now.
    pub fn circuit_state(&self) -> CircuitState {
        self.circuit.state(mono_ms())
    }

    /// Whether the circuit breaker would let a new connection through (takes no half-open
    /// probe slot; [`crate::health::passive::admit`] does).
    pub fn circuit_admits(&self) -> bool {
        self.circuit.would_admit_now()
    }

    /// The rules of the backend's pool.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Sets the rules (and configures the circuit breaker accordingly).
    pub fn set_policy(&self, p: Arc<Policy>) {
        if **self.policy.load() == *p {
            return;
        }
        self.circuit.configure(p.circuit.clone());
        self.policy.store(p);
    }

    /// A token cancelled when all connections to this backend must close. Shared, not
    /// cloned: a `CancellationToken` clone takes its tree's lock twice (clone and drop),
    /// and this runs once per connection and per request.
    pub fn close_token(&self) -> Arc<CancellationToken> {
        self.close_all.get()
    }

    /// At a drain deadline: closes the connections still open, once per deadline. Returns
    /// whether this call closed them.
    pub fn close_at_deadline(&self, deadline: u64) -> bool {
        let prev = self.closed_deadline.swap(deadline, Ordering::Relaxed);
        if prev == deadline {
            return false;
        }
        self.close_connections();
        true
    }

    /// Closes every open connection to the backend; later connections get a fresh token.
    pub fn close_connections(&self) {
        self.close_all.cancel_and_renew();
    }
}

/// Small helper: a cancellation token that can be swapped for a fresh one after use.
mod token_cell {
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use tokio_util::sync::CancellationToken;

    #[derive(Debug)]
    pub struct TokenCell(ArcSwap<CancellationToken>);

    impl TokenCell {
        pub fn new() -> Self {
            Self(ArcSwap::from_pointee(CancellationToken::new()))
        }

        pub fn get(&self) -> Arc<CancellationToken> {
            self.0.load_full()
        }

        /// Cancels the current token; whoever asks after the swap gets the fresh one.
        pub fn cancel_and_renew(&self) {
            self.0.swap(Arc::new(CancellationToken::new())).cancel();
        }
    }
}

/// All backends' runtime state.
#[derive(Debug, Default)]
pub struct RuntimeState {
    backends: DashMap<String, Arc<BackendState>>,
    changed: Arc<Notify>,
}

impl RuntimeState {
    /// The state of a backend, created on first use.
    pub fn backend(&self, id: &str) -> Arc<BackendState> {
        if let Some(b) = self.backends.get(id) {
            return b.clone();
        }
        self.backends
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(BackendState::new(id, self.changed.clone())))
            .clone()
    }

    /// Notified (one permit, so nothing is lost between waits) whenever a backend's own
    /// verdict changes.
    pub fn verdict_changes(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// The state of a backend if it is known.
    pub fn get(&self, id: &str) -> Option<Arc<BackendState>> {
        self.backends.get(id).map(|b| b.clone())
    }

    /// Connections open to all backends on this node.
    pub fn total_active(&self) -> u64 {
        self.backends
            .iter()
            .map(|b| b.stats.active.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Forgets backends that are no longer configured, closing their connections.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.backends.retain(|id, b| {
            let k = keep(id);
            if !k {
                b.close_connections();
            }
            k
        });
    }
}
