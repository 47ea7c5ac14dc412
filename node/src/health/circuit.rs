//! Per-backend circuit breaker (spec §3.7, §6.3): a pure state machine driven by call
//! outcomes and an injected clock, plus [`CircuitCell`], the thread-safe wrapper the data
//! plane uses. The transitions are drawn in `circuit/LIFECYCLE.md`.
//!
//! Why a pure core: every transition is then tested with a fake clock and no sockets, and
//! the wrapper only adds a mutex and a lock-free fast path for the closed state.
//!
//! Rates are measured over a count-based sliding window: the outcomes of the last
//! `min_request_volume` calls (capped at [`MAX_WINDOW`]) since the circuit last closed. The
//! rate rules apply only once the window is full, so a handful of early failures never
//! trips the rate rule; the consecutive-failure rule covers that case.
//!
//! In a fleet each node's breaker still decides alone, on the outcomes of its own traffic:
//! a breaker opened elsewhere does not open this one (that node may have a local problem,
//! and half-open probing only works on traffic the breaker itself sees). States are
//! gossiped for observability: `fiberlb_circuit_breaker_open_members` counts the members
//! whose breaker for a backend is open or half-open (see `crate::fleet`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use fiberlb_api::model::{CircuitBreakerConfig, CircuitState};

use crate::settings::CircuitBreakerSettings;

#[cfg(test)]
mod tests;

/// Largest sliding window kept per backend, in calls; bounds memory whatever the config.
pub const MAX_WINDOW: usize = 10_000;

/// A circuit breaker's rules, resolved from the pool's [`CircuitBreakerConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitConfig {
    /// Consecutive failures (while closed) that open the circuit; at least 1.
    pub failure_threshold: u32,
    /// Successful half-open probes that close it; at least 1.
    pub success_threshold: u32,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Failure rate (0-1] over a full window that opens it; 0 turns the rule off.
    pub failure_rate_threshold: f32,
    /// Calls in the window before the rate rules apply (the window size); at least 1.
    pub min_request_volume: u32,
    /// A call taking at least this long is slow.
    pub slow_call_threshold: Duration,
    /// Slow-call rate (0-1] over a full window that opens it; 0 turns the rule off.
    pub slow_call_rate_threshold: f32,
    /// Probes in flight at once while half-open; at least 1.
    pub half_open_max_requests: u32,
}

impl CircuitConfig {
    /// The rules of an enabled breaker; `None` when the pool has none or it is disabled:
    /// spec §3.7 makes a breaker opt-in per pool, so the node defaults never switch one on.
    /// A 0 in one of the three fields the node has defaults for (`failure_threshold`,
    /// `success_threshold`, `timeout_seconds`) means unset and takes the `[circuit_breaker]`
    /// default `d`, as a 0 in a health check takes the `[health_check]` default; other
    /// zeros are clamped to 1 (rates: 0 turns the rule off).
    pub fn from_model(
        c: Option<&CircuitBreakerConfig>,
        d: &CircuitBreakerSettings,
    ) -> Option<Self> {
        let c = c.filter(|c| c.enabled)?;
        let or = |v: u32, default: u32| if v == 0 { default } else { v }.max(1);
        let open_for = if c.timeout_seconds == 0 {
            d.default_timeout_seconds
        } else {
            u64::from(c.timeout_seconds)
        };
        Some(Self {
            failure_threshold: or(c.failure_threshold, d.default_failure_threshold),
            success_threshold: or(c.success_threshold, d.default_success_threshold),
            open_for: Duration::from_secs(open_for.max(1)),
            failure_rate_threshold: sane_rate(c.failure_rate_threshold),
            min_request_volume: c.min_request_volume.max(1),
            slow_call_threshold: Duration::from_millis(u64::from(c.slow_call_threshold_ms.max(1))),
            slow_call_rate_threshold: sane_rate(c.slow_call_rate_threshold),
            half_open_max_requests: c.half_open_max_requests.max(1),
        })
    }

    fn window(&self) -> usize {
        (self.min_request_volume as usize).min(MAX_WINDOW)
    }
}

fn sane_rate(r: f32) -> f32 {
    if r.is_nan() {
        0.0
    } else {
        r.clamp(0.0, 1.0)
    }
}

/// The result of one call through the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The call failed (connect error, reset, timeout, 5xx).
    pub failed: bool,
    /// How long it took; compared with the slow-call threshold.
    pub duration: Duration,
}

/// Proof that a call was admitted, tied to the period (epoch) it was admitted in: an
/// outcome from an earlier period (say, a call admitted while closed that ends after the
/// circuit opened) must not count as a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    probe: bool,
}

/// Counts of the sliding window.
#[derive(Debug, Default)]
struct Window {
    calls: VecDeque<(bool, bool)>,
    failures: usize,
    slow: usize,
}

impl Window {
    fn push(&mut self, failed: bool, slow: bool, size: usize) {
        self.calls.push_back((failed, slow));
        self.failures += usize::from(failed);
        self.slow += usize::from(slow);
        while self.calls.len() > size {
            if let Some((f, s)) = self.calls.pop_front() {
                self.failures -= usize::from(f);
                self.slow -= usize::from(s);
            }
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The state machine. Times are milliseconds on a monotonic clock supplied by the caller.
#[derive(Debug)]
pub struct Circuit {
    cfg: CircuitConfig,
    state: CircuitState,
    /// Bumped on every transition; see [`Ticket`].
    epoch: u64,
    consecutive_failures: u32,
    window: Window,
    opened_at: u64,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl Circuit {
    /// A closed circuit with `cfg`.
    pub fn new(cfg: CircuitConfig) -> Self {
        Self {
            cfg,
            state: CircuitState::Closed,
            epoch: 0,
            consecutive_failures: 0,
            window: Window::default(),
            opened_at: 0,
            probes_in_flight: 0,
            probe_successes: 0,
        }
    }

    /// Its rules.
    pub fn config(&self) -> &CircuitConfig {
        &self.cfg
    }

    /// Replaces the rules, keeping the state (a config edit is no reason to close an open
    /// circuit); a smaller window drops its oldest calls.
    pub fn set_config(&mut self, cfg: CircuitConfig) {
        let size = cfg.window();
        self.cfg = cfg;
        while self.window.calls.len() > size {
            if let Some((f, s)) = self.window.calls.pop_front() {
                self.window.failures -= usize::from(f);
                self.window.slow -= usize::from(s);
            }
        }
    }

    /// The state at `now` (an open circuit whose timeout passed turns half-open).
    pub fn state(&mut self, now: u64) -> CircuitState {
        self.poll(now);
        self.state
    }

    /// When an open circuit turns half-open (`None` unless open).
    pub fn reopens_at(&self) -> Option<u64> {
        (self.state == CircuitState::Open).then(|| {
            self.opened_at
                .saturating_add(self.cfg.open_for.as_millis() as u64)
        })
    }

    /// Whether a call would be admitted now, without taking a probe slot: for choosing
    /// among backends before one is picked.
    pub fn would_admit(&mut self, now: u64) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => self.probes_in_flight < self.cfg.half_open_max_requests,
        }
    }

    /// Admits a call, taking a probe slot while half-open; `None` = rejected.
    pub fn try_admit(&mut self, now: u64) -> Option<Ticket> {
        match self.state(now) {
            CircuitState::Closed => Some(Ticket {
                epoch: self.epoch,
                probe: false,
            }),
            CircuitState::Open => None,
            CircuitState::HalfOpen if self.probes_in_flight < self.cfg.half_open_max_requests => {
                self.probes_in_flight += 1;
                Some(Ticket {
                    epoch: self.epoch,
                    probe: true,
                })
            }
            CircuitState::HalfOpen => None,
        }
    }

    /// An admitted call ended without an outcome that says anything about the backend
    /// (the client went away): its probe slot is freed.
    pub fn release(&mut self, ticket: Ticket) {
        if ticket.probe && ticket.epoch == self.epoch {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Records the outcome of a call. `ticket` is the admission it ran under; `None` for an
    /// outcome observed without one, which counts in the current period.
    pub fn record(&mut self, ticket: Option<Ticket>, call: Call, now: u64) {
        self.poll(now);
        if let Some(t) = ticket {
            if t.epoch != self.epoch {
                return; // admitted in an earlier period: says nothing about this one
            }
            if t.probe {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
            }
        }
        let slow = call.duration >= self.cfg.slow_call_threshold;
        match self.state {
            CircuitState::Closed => self.record_closed(call.failed, slow, now),
            CircuitState::HalfOpen => {
                // A slow probe is no evidence of recovery: it re-opens like a failure.
                if call.failed || slow {
                    self.open(now);
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.cfg.success_threshold {
                        self.transition(CircuitState::Closed);
                    }
                }
            }
            CircuitState::Open => {} // a straggler from before it opened
        }
    }

    fn record_closed(&mut self, failed: bool, slow: bool, now: u64) {
        if failed {
            self.consecutive_failures += 1;
        } else {
            self.consecutive_failures = 0;
        }
        let size = self.cfg.window();
        self.window.push(failed, slow, size);
        let full = self.window.calls.len() >= size;
        let rate = |n: usize| n as f32 / self.window.calls.len().max(1) as f32;
        let trips = self.consecutive_failures >= self.cfg.failure_threshold
            || (full
                && self.cfg.failure_rate_threshold > 0.0
                && rate(self.window.failures) >= self.cfg.failure_rate_threshold)
            || (full
                && self.cfg.slow_call_rate_threshold > 0.0
                && rate(self.window.slow) >= self.cfg.slow_call_rate_threshold);
        if trips {
            self.open(now);
        }
    }

    fn poll(&mut self, now: u64) {
        if self.reopens_at().is_some_and(|t| now >= t) {
            self.transition(CircuitState::HalfOpen);
        }
    }

    fn open(&mut self, now: u64) {
        self.transition(CircuitState::Open);
        self.opened_at = now;
    }

    fn transition(&mut self, to: CircuitState) {
        self.state = to;
        self.epoch += 1;
        self.consecutive_failures = 0;
        self.window.clear();
        self.probes_in_flight = 0;
        self.probe_successes = 0;
    }
}

/// A backend's breaker, shared by every connection to it.
///
/// Fast path: while the circuit is closed (or no breaker is configured) admission reads
/// one atomic and takes no lock; only recording outcomes of a configured breaker and the
/// open/half-open states lock.
#[derive(Debug, Default)]
pub struct CircuitCell {
    /// Mirror of the state: 0 closed, 1 half-open, 2 open (the metric's encoding).
    phase: AtomicU8,
    /// Whether `inner` holds a breaker: without one (the default) admitting and recording
    /// take neither the lock nor a clock reading, once per request or connection.
    configured: std::sync::atomic::AtomicBool,
    inner: Mutex<Option<Circuit>>,
}

/// The metric encoding of a state: 0 closed, 1 half-open, 2 open.
pub fn state_code(s: CircuitState) -> u8 {
    match s {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    }
}

impl CircuitCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Circuit>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Circuit) -> R) -> Option<R> {
        let mut g = self.lock();
        let c = g.as_mut()?;
        let r = f(c);
        self.phase.store(state_code(c.state), Ordering::Relaxed);
        Some(r)
    }

    /// Installs, changes or (with `None`) removes the breaker. Removing closes it.
    pub fn configure(&self, cfg: Option<CircuitConfig>) {
        let mut g = self.lock();
        match (g.as_mut(), cfg) {
            (Some(c), Some(cfg)) if *c.config() != cfg => c.set_config(cfg),
            (Some(_), Some(_)) => {}
            (None, Some(cfg)) => *g = Some(Circuit::new(cfg)),
            (_, None) => *g = None,
        }
        let code = g.as_ref().map(|c| state_code(c.state)).unwrap_or(0);
        self.phase.store(code, Ordering::Relaxed);
        self.configured.store(g.is_some(), Ordering::Relaxed);
    }

    /// Whether a breaker is configured.
    pub fn is_configured(&self) -> bool {
        self.configured.load(Ordering::Relaxed)
    }

    /// The state at `now`.
    pub fn state(&self, now: u64) -> CircuitState {
        if self.phase.load(Ordering::Relaxed) == 0 {
            return CircuitState::Closed;
        }
        self.with(|c| c.state(now)).unwrap_or(CircuitState::Closed)
    }

    /// See [`Circuit::would_admit`].
    pub fn would_admit(&self, now: u64) -> bool {
        if self.phase.load(Ordering::Relaxed) == 0 {
            return true;
        }
        self.with(|c| c.would_admit(now)).unwrap_or(true)
    }

    /// [`CircuitCell::would_admit`] on the monotonic clock, read only when not closed
    /// (this runs per backend per connection).
    pub fn would_admit_now(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == 0 || self.would_admit(super::mono_ms())
    }

    /// See [`Circuit::try_admit`]; `Some(None)` = admitted with no breaker configured.
    pub fn try_admit(&self, now: u64) -> Option<Option<Ticket>> {
        if !self.is_configured() {
            return Some(None);
        }
        match self.with(|c| c.try_admit(now)) {
            None => Some(None),
            Some(Some(t)) => Some(Some(t)),
            Some(None) => None,
        }
    }

    /// See [`Circuit::record`]; nothing happens with no breaker configured.
    pub fn record(&self, ticket: Option<Ticket>, call: Call, now: u64) {
        if self.is_configured() {
            self.with(|c| c.record(ticket, call, now));
        }
    }

    /// See [`Circuit::release`].
    pub fn release(&self, ticket: Ticket) {
        if self.is_configured() {
            self.with(|c| c.release(ticket));
        }
    }
}
