//! Passive health: what real traffic says about a backend.
//!
//! Every outcome feeds two things: the passive failure counter, which ejects the backend
//! after `policy.passive_threshold` consecutive failures for a back-off that doubles on
//! each repeat (`policy.ejection`), and the circuit breaker when the pool has one.
//!
//! An ejected backend is re-admitted when the back-off expires or at the next successful
//! active check. The repeat count decays: an ejection that starts more than
//! [`MAX_EJECTION`](super::policy::MAX_EJECTION) after the previous one ended starts again
//! from the base back-off.
//!
//! The hot path (a success while nothing is wrong) reads two atomics and takes no lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::circuit::{Call, Ticket};
use super::mono_ms;
use super::policy::MAX_EJECTION;
use crate::state::BackendState;

/// The outcome of one use of a backend by real traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked; how long it took (connect time for L4, time to the response head for L7),
    /// for the circuit breaker's slow-call rule.
    Success(Duration),
    /// Connect refused or unreachable.
    ConnectFailed,
    /// Connect or response timed out.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The backend answered with this 5xx status (L7).
    ServerError(u16),
}

impl Outcome {
    fn failed(self) -> bool {
        !matches!(self, Outcome::Success(_))
    }

    fn duration(self) -> Duration {
        match self {
            Outcome::Success(d) => d,
            _ => Duration::ZERO,
        }
    }

    fn describe(self) -> String {
        match self {
            Outcome::Success(_) => "success".into(),
            Outcome::ConnectFailed => "connect failed".into(),
            Outcome::Timeout => "timed out".into(),
            Outcome::Reset => "connection reset".into(),
            Outcome::ServerError(code) => format!("status {code}"),
        }
    }
}

/// Passive counters of one backend.
#[derive(Debug, Default)]
pub struct PassiveState {
    failures: AtomicU32,
    /// Ejected until this [`mono_ms`] time; 0 = not ejected.
    ejected_until: AtomicU64,
    history: Mutex<Ejections>,
}

#[derive(Debug, Default)]
struct Ejections {
    /// Ejections since the count last decayed.
    count: u32,
    /// End of the last ejection ([`mono_ms`]).
    last_end: u64,
}

impl PassiveState {
    /// Whether the backend is ejected at `now` ([`mono_ms`]).
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// Whether the backend is ejected now; reads the clock only while an ejection is set
    /// (this runs per backend per connection).
    pub fn is_ejected_now(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0 && self.is_ejected(mono_ms())
    }

    /// Time left in the current ejection.
    pub fn ejected_for(&self, now: u64) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Ends an ejection early (an active check succeeded). Returns whether one was on.
    pub fn readmit(&self, now: u64) -> bool {
        let was = self.is_ejected(now);
        if self.ejected_until.load(Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
            let mut h = lock(&self.history);
            h.last_end = h.last_end.min(now);
        }
        was
    }

    fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; returns the ejection it caused, if any.
    fn failure(
        &self,
        threshold: u32,
        backoff: impl Fn(u32) -> Duration,
        now: u64,
    ) -> Option<(Duration, u32)> {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n < threshold.max(1) {
            return None;
        }
        let mut h = lock(&self.history);
        if self.is_ejected(now) {
            return None; // stragglers of traffic sent before the ejection
        }
        self.failures.store(0, Ordering::Relaxed);
        if now.saturating_sub(h.last_end) > MAX_EJECTION.as_millis() as u64 {
            h.count = 0;
        }
        let d = backoff(h.count);
        h.count = h.count.saturating_add(1);
        let until = now.saturating_add(d.as_millis() as u64).max(1);
        h.last_end = until;
        self.ejected_until.store(until, Ordering::Relaxed);
        Some((d, n))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Reports an outcome observed without an [`Admission`] (say, a 5xx on a pooled L7
/// connection): passive counters and, when configured, the circuit breaker.
pub fn report(state: &BackendState, outcome: Outcome) {
    apply(state, None, outcome);
}

fn apply(state: &BackendState, ticket: Option<Ticket>, outcome: Outcome) {
    let call = Call {
        failed: outcome.failed(),
        duration: outcome.duration(),
    };
    // A success without a breaker (the common case, once per request or connection)
    // needs no clock reading.
    if state.circuit().is_configured() {
        state.circuit().record(ticket, call, mono_ms());
    }
    if !outcome.failed() {
        state.passive().success();
        return;
    }
    let now = mono_ms();
    let policy = state.policy();
    // Ejecting and recording why happen under the details lock, so that a status read
    // (which takes it too) sees both or neither.
    let mut details = state.details();
    if let Some((d, n)) =
        state
            .passive()
            .failure(policy.passive_threshold, |k| policy.ejection(k), now)
    {
        let why = format!(
            "ejected for {}s after {n} consecutive failures of real traffic (last: {})",
            d.as_secs_f64().ceil() as u64,
            outcome.describe()
        );
        tracing::warn!(backend = %state.id(), "{why}");
        metrics::counter!("fiberlb_backend_ejections_total", "backend" => state.id().to_string())
            .increment(1);
        details.last_error = Some(why);
    }
}

/// Permission to use a backend, from its circuit breaker. Report the result with
/// [`Admission::finish`]; dropping it unfinished frees a half-open probe slot and
/// records nothing.
#[derive(Debug)]
pub struct Admission {
    state: Arc<BackendState>,
    ticket: Option<Ticket>,
}

/// Asks the backend's circuit breaker for a call; `None` when it is open (or half-open
/// with every probe slot taken). Always admits when the pool has no breaker.
pub fn admit(state: &Arc<BackendState>) -> Option<Admission> {
    let circuit = state.circuit();
    let ticket = if circuit.is_configured() {
        circuit.try_admit(mono_ms())?
    } else {
        None
    };
    Some(Admission {
        state: state.clone(),
        ticket,
    })
}

impl Admission {
    /// Reports how the admitted call went.
    pub fn finish(mut self, outcome: Outcome) {
        let ticket = self.ticket.take();
        apply(&self.state, ticket, outcome);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.state.circuit().release(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::circuit::CircuitConfig;
    use crate::health::Policy;
    use crate::state::RuntimeState;
    use fiberlb_api::model::CircuitState;

    fn backend(policy: Policy) -> Arc<BackendState> {
        let rt = RuntimeState::default();
        let b = rt.backend("b1");
        b.set_policy(Arc::new(policy));
        b
    }

    #[test]
    fn consecutive_failures_eject_and_successes_reset_the_count() {
        let b = backend(Policy {
            passive_threshold: 3,
            ..Policy::default()
        });
        report(&b, Outcome::ConnectFailed);
        report(&b, Outcome::Timeout);
        report(&b, Outcome::Success(Duration::from_millis(1)));
        report(&b, Outcome::Reset);
        report(&b, Outcome::ConnectFailed);
        assert!(b.is_healthy(false), "two in a row are below the threshold");
        assert_eq!(b.passive().failures(), 2);
        report(&b, Outcome::ServerError(503));
        assert!(!b.is_healthy(false), "third in a row ejects");
        let left = b.passive().ejected_for(mono_ms()).expect("ejected");
        assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(29));
        let err = b.health_status(false).last_error.expect("reason");
        assert!(
            err.contains("3 consecutive failures") && err.contains("status 503"),
            "{err}"
        );
    }

    #[test]
    fn repeat_ejections_double_and_readmit_ends_one() {
        let p = PassiveState::default();
        let backoff = |k: u32| Duration::from_secs(30).saturating_mul(1 << k.min(8));
        let now = 1_000;
        assert_eq!(
            p.failure(1, backoff, now),
            Some((Duration::from_secs(30), 1))
        );
        assert!(p.is_ejected(now + 29_999));
        assert!(
            !p.is_ejected(now + 30_000),
            "the back-off expires by itself"
        );
        assert_eq!(
            p.failure(1, backoff, now + 30_000).map(|e| e.0),
            Some(Duration::from_secs(60))
        );
        assert!(
            p.failure(1, backoff, now + 30_001).is_none(),
            "already ejected"
        );
        assert!(p.readmit(now + 31_000));
        assert!(!p.is_ejected(now + 31_000));
        assert_eq!(
            p.failure(1, backoff, now + 32_000).map(|e| e.0),
            Some(Duration::from_secs(120))
        );
        // Long after the last ejection ended the count decays.
        let later = now + 32_000 + 120_000 + MAX_EJECTION.as_millis() as u64 + 1;
        assert_eq!(
            p.failure(1, backoff, later).map(|e| e.0),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn an_admission_feeds_the_circuit_and_a_dropped_one_frees_its_probe() {
        let cfg = CircuitConfig {
            failure_threshold: 2,
            success_threshold: 1,
            open_for: Duration::from_secs(60),
            failure_rate_threshold: 0.0,
            min_request_volume: 10,
            slow_call_threshold: Duration::from_secs(5),
            slow_call_rate_threshold: 0.0,
            half_open_max_requests: 1,
        };
        let b = backend(Policy {
            passive_threshold: 100,
            circuit: Some(cfg.clone()),
            ..Policy::default()
        });
        b.circuit().configure(Some(cfg));
        admit(&b).expect("closed").finish(Outcome::ConnectFailed);
        assert!(b.circuit_admits());
        let a = admit(&b).expect("closed");
        drop(a); // nothing recorded
        admit(&b).expect("closed").finish(Outcome::Timeout);
        assert!(admit(&b).is_none(), "two consecutive failures opened it");
        assert!(!b.circuit_admits());
        assert_eq!(b.circuit_state(), CircuitState::Open);
        assert!(
            b.is_healthy(false),
            "an open circuit is not a health verdict"
        );
    }
}
