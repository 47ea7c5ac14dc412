//! Health metrics (spec §10.2): probe counts and durations, backends by health status,
//! pool and backend totals, circuit breaker states.

use std::collections::HashSet;
use std::time::Duration;

use super::circuit::state_code;
use crate::snapshot::Snapshot;
use crate::state::Verdict;

/// Counts one probe and its duration.
pub(super) fn record_check(kind: &'static str, ok: bool, took: Duration) {
    let result = if ok { "success" } else { "failure" };
    metrics::counter!("fiberlb_health_checks_total", "kind" => kind, "result" => result)
        .increment(1);
    metrics::histogram!("fiberlb_health_check_duration_seconds", "kind" => kind)
        .record(took.as_secs_f64());
}

/// Sets the gauges from `snapshot` and the backends' state. `breakers` holds the backends
/// whose circuit gauge was published last time, so one whose breaker or backend went away
/// is reset to 0 (closed) once instead of keeping its last value.
pub(super) fn publish(snapshot: &Snapshot, breakers: &mut HashSet<String>) {
    let (mut healthy, mut unhealthy, mut unknown, mut total) = (0u64, 0u64, 0u64, 0u64);
    let mut now_breakers = HashSet::new();
    for plan in snapshot.pools.values() {
        let active = plan.pool.has_active_check();
        for (b, st) in plan.backends.iter().zip(&plan.states) {
            total += 1;
            if st.is_healthy(active) {
                healthy += 1;
            } else if st.verdict() == Verdict::Unknown
                && st.passive().ejected_for(super::mono_ms()).is_none()
            {
                unknown += 1;
            } else {
                unhealthy += 1;
            }
            if st.circuit().is_configured() {
                let code = state_code(st.circuit_state());
                metrics::gauge!("fiberlb_circuit_breaker_state", "backend" => b.id.clone())
                    .set(f64::from(code));
                now_breakers.insert(b.id.clone());
            }
        }
    }
    for gone in breakers.difference(&now_breakers) {
        metrics::gauge!("fiberlb_circuit_breaker_state", "backend" => gone.clone()).set(0.0);
    }
    *breakers = now_breakers;
    metrics::gauge!("fiberlb_backend_health", "status" => "healthy").set(healthy as f64);
    metrics::gauge!("fiberlb_backend_health", "status" => "unhealthy").set(unhealthy as f64);
    metrics::gauge!("fiberlb_backend_health", "status" => "unknown").set(unknown as f64);
    metrics::gauge!("fiberlb_pools").set(snapshot.pools.len() as f64);
    metrics::gauge!("fiberlb_backends").set(total as f64);
}
