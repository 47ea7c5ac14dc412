//! Health metrics (spec §10.2): probe counts and durations, backends by health status,
//! pool and backend totals, circuit breaker states; in a fleet also how many members have
//! a backend's breaker open or eject it.

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

/// The per-backend series published last time, so one whose breaker, ejection or backend
/// went away is reset to 0 once instead of keeping its last value.
#[derive(Debug, Default)]
pub(super) struct Published {
    breakers: HashSet<String>,
    ejected: HashSet<String>,
}

/// Sets the gauges from `snapshot` and the backends' state.
pub(super) fn publish(snapshot: &Snapshot, last: &mut Published) {
    let (mut healthy, mut unhealthy, mut unknown, mut total) = (0u64, 0u64, 0u64, 0u64);
    let mut now_breakers = HashSet::new();
    let mut now_ejected = HashSet::new();
    let now = super::mono_ms();
    for plan in snapshot.pools.values() {
        let active = plan.pool.has_active_check();
        for (b, st) in plan.backends.iter().zip(&plan.states) {
            total += 1;
            let ejected_here = st.passive().ejected_for(now).is_some();
            if st.is_healthy(active) {
                healthy += 1;
            } else if st.verdict() == Verdict::Unknown && !ejected_here {
                unknown += 1;
            } else {
                unhealthy += 1;
            }
            let (open_elsewhere, ejected_elsewhere) = st.fleet_counts();
            if st.circuit().is_configured() {
                let code = state_code(st.circuit_state());
                metrics::gauge!("fiberlb_circuit_breaker_state", "backend" => b.id.clone())
                    .set(f64::from(code));
                let open = open_elsewhere + u32::from(code != 0);
                metrics::gauge!("fiberlb_circuit_breaker_open_members", "backend" => b.id.clone())
                    .set(f64::from(open));
                now_breakers.insert(b.id.clone());
            }
            let ejecting = ejected_elsewhere + u32::from(ejected_here);
            if ejecting > 0 {
                metrics::gauge!("fiberlb_backend_ejected_members", "backend" => b.id.clone())
                    .set(f64::from(ejecting));
                now_ejected.insert(b.id.clone());
            }
        }
    }
    for gone in last.breakers.difference(&now_breakers) {
        metrics::gauge!("fiberlb_circuit_breaker_state", "backend" => gone.clone()).set(0.0);
        metrics::gauge!("fiberlb_circuit_breaker_open_members", "backend" => gone.clone()).set(0.0);
    }
    for gone in last.ejected.difference(&now_ejected) {
        metrics::gauge!("fiberlb_backend_ejected_members", "backend" => gone.clone()).set(0.0);
    }
    last.breakers = now_breakers;
    last.ejected = now_ejected;
    metrics::gauge!("fiberlb_backend_health", "status" => "healthy").set(healthy as f64);
    metrics::gauge!("fiberlb_backend_health", "status" => "unhealthy").set(unhealthy as f64);
    metrics::gauge!("fiberlb_backend_health", "status" => "unknown").set(unknown as f64);
    metrics::gauge!("fiberlb_pools").set(snapshot.pools.len() as f64);
    metrics::gauge!("fiberlb_backends").set(total as f64);
}
