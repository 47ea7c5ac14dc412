//! What the fleet says about a backend, as the routing verdict needs it: the merged
//! verdict of the backend's other probers and whether this node probes it too, plus the
//! counts of members whose breaker is open or whose passive health ejects it.
//!
//! The fleet layer ([`crate::fleet`]) writes it after every gossip, membership or
//! configuration change; [`super::BackendState::verdict`] reads it per connection, so it
//! is one atomic byte rather than a lock.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use super::Verdict;

/// The fleet's input to a backend's routing verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetHealth {
    /// This node is one of the backend's probers: its own verdict takes part in the merge.
    pub self_probes: bool,
    /// The merge of the other live probers' latest verdicts ([`merge`]).
    pub remote: Verdict,
}

/// Merges verdicts of the probers of one backend: **unhealthy when any prober says
/// unhealthy**, else healthy when any says healthy, else unknown.
///
/// Why "any unhealthy": the fleet must stop sending traffic to a dead backend as fast as
/// one node alone would, so the first prober to see it fail decides; a lone healthy vote
/// (one prober lagging an interval behind, or one still inheriting the old view) must
/// not keep a dead backend in service. The price is availability when a single prober's
/// own path to the backend is broken: the backend is then out fleet-wide, which the
/// prober's logs and `GetBackendHealth` on it show. Recovery waits until every live
/// prober has seen `healthy_threshold` passing checks, at most one interval later than a
/// single node.
pub fn merge(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut out = Verdict::Unknown;
    for v in verdicts {
        match v {
            Verdict::Unhealthy => return Verdict::Unhealthy,
            Verdict::Healthy => out = Verdict::Healthy,
            Verdict::Unknown => {}
        }
    }
    out
}

/// The routing verdict from this node's own verdict and the fleet's.
///
/// - No fleet view (gossip off, or a pool without an active check): the own verdict.
/// - This node probes the backend: its own verdict merged with the other probers'.
/// - It does not: the probers' merged verdict; while none of them has reported yet
///   (start-up, a backend just added) the own verdict stands, which the checker keeps
///   as it would on a single node (unknown for a new backend, healthy for one that was
///   serving when its pool got a check).
pub fn effective(own: Verdict, fleet: Option<FleetHealth>) -> Verdict {
    match fleet {
        None => own,
        Some(f) if f.self_probes => merge([own, f.remote]),
        Some(f) if f.remote == Verdict::Unknown => own,
        Some(f) => f.remote,
    }
}

pub(super) fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Unknown => 0,
        Verdict::Healthy => 1,
        Verdict::Unhealthy => 2,
    }
}

pub(super) fn verdict_of(code: u8) -> Verdict {
    match code & 3 {
        1 => Verdict::Healthy,
        2 => Verdict::Unhealthy,
        _ => Verdict::Unknown,
    }
}

const PRESENT: u8 = 8;
const SELF_PROBES: u8 = 4;

/// [`FleetHealth`] in one atomic byte, plus the fleet counters.
#[derive(Debug, Default)]
pub(super) struct FleetCell {
    health: AtomicU8,
    circuits_open: AtomicU32,
    ejecting: AtomicU32,
}

impl FleetCell {
    pub(super) fn health(&self) -> Option<FleetHealth> {
        let c = self.health.load(Ordering::Relaxed);
        (c & PRESENT != 0).then(|| FleetHealth {
            self_probes: c & SELF_PROBES != 0,
            remote: verdict_of(c),
        })
    }

    pub(super) fn set_health(&self, h: Option<FleetHealth>) {
        let c = match h {
            None => 0,
            Some(h) => {
                PRESENT | if h.self_probes { SELF_PROBES } else { 0 } | verdict_code(h.remote)
            }
        };
        self.health.store(c, Ordering::Relaxed);
    }

    pub(super) fn counts(&self) -> (u32, u32) {
        (
            self.circuits_open.load(Ordering::Relaxed),
            self.ejecting.load(Ordering::Relaxed),
        )
    }

    pub(super) fn set_counts(&self, circuits_open: u32, ejecting: u32) {
        self.circuits_open.store(circuits_open, Ordering::Relaxed);
        self.ejecting.store(ejecting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Healthy as H, Unhealthy as U, Unknown as N};

    #[test]
    fn any_unhealthy_prober_wins_then_any_healthy() {
        assert_eq!(merge([H, U, H]), U);
        assert_eq!(merge([N, H]), H);
        assert_eq!(merge([N, N]), N);
        assert_eq!(merge([]), N);
    }

    #[test]
    fn effective_verdict_by_role() {
        assert_eq!(effective(U, None), U, "no fleet: own verdict");
        let probe = |remote| {
            Some(FleetHealth {
                self_probes: true,
                remote,
            })
        };
        let watch = |remote| {
            Some(FleetHealth {
                self_probes: false,
                remote,
            })
        };
        assert_eq!(effective(H, probe(U)), U, "the other prober sees it fail");
        assert_eq!(effective(U, probe(H)), U, "this prober sees it fail");
        assert_eq!(
            effective(N, probe(H)),
            H,
            "a new prober takes the fleet's view"
        );
        assert_eq!(effective(H, watch(U)), U, "non-prober follows the probers");
        assert_eq!(effective(U, watch(H)), H);
        assert_eq!(
            effective(H, watch(N)),
            H,
            "no prober reported yet: own view"
        );
    }

    #[test]
    fn cell_round_trips() {
        let c = FleetCell::default();
        assert_eq!(c.health(), None);
        for self_probes in [false, true] {
            for remote in [N, H, U] {
                let h = FleetHealth {
                    self_probes,
                    remote,
                };
                c.set_health(Some(h));
                assert_eq!(c.health(), Some(h));
            }
        }
        c.set_health(None);
        assert_eq!(c.health(), None);
    }
}
