//! The task that keeps this node's runtime state and the fleet's in step: it publishes
//! local observations to gossip and applies the merged view to the backends' state.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::now_ms;
use fiberlb_gossip::{Entry, Gossip, GossipView};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::view::Index;
use super::{Assignment, ProbeShard};
use crate::health::circuit::state_code;
use crate::server::NodeRuntime;
use crate::settings::ClusterSettings;
use crate::snapshot::SnapshotCell;
use crate::state::{BackendState, FleetHealth, RuntimeState, Verdict};

/// How often connection counts, breaker states and ejections are compared with what was
/// last gossiped: a count that changes all the time is sent at most this often (the
/// staleness bound of fleet-wide least-connections), an unchanged one never again (the
/// gossip crate re-broadcasts it for late joiners).
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Starts the fleet task when gossip runs (else everything is probed locally) and
/// returns the checker's [`ProbeShard`], also attached to `runtime` for `GetNodeStatus`.
pub fn spawn(
    runtime: &NodeRuntime,
    cluster: &ClusterSettings,
    cell: Arc<SnapshotCell>,
    state: Arc<RuntimeState>,
) -> ProbeShard {
    describe();
    let shard = match runtime.gossip() {
        None => ProbeShard::local(),
        Some(gossip) => {
            let node_id = gossip.identity().node_id.clone();
            let k = cluster.probe_replicas.max(1);
            let live = gossip.subscribe().borrow().live.clone();
            let (tx, rx) = watch::channel(Arc::new(Assignment::fleet(&node_id, live, k)));
            let task = Sync {
                gossip,
                node_id,
                k,
                cell,
                state,
                assignment: tx,
                published: HashMap::new(),
            };
            tokio::spawn(task.run());
            ProbeShard::following(rx)
        }
    };
    runtime.attach_probes(shard.clone());
    shard
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "fiberlb_health_probes_owned",
        "Backends this node actively probes (with gossip, its rendezvous share)."
    );
    describe_gauge!(
        "fiberlb_circuit_breaker_open_members",
        "Fleet members (this node included) whose circuit breaker for the backend is open or half-open."
    );
    describe_gauge!(
        "fiberlb_backend_ejected_members",
        "Fleet members (this node included) whose passive health ejects the backend."
    );
    describe_counter!(
        "fiberlb_gossip_dropped_total",
        "Gossip datagrams dropped, by reason (forged, wrong key, truncated, undecodable)."
    );
}

/// What this node last gossiped about one backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Published {
    pub(super) healthy: Option<bool>,
    pub(super) connections: u64,
    pub(super) circuit: u8,
    pub(super) ejected: bool,
}

/// The fleet task's state (fields visible to the module's tests).
pub(super) struct Sync {
    pub(super) gossip: Gossip,
    pub(super) node_id: String,
    pub(super) k: usize,
    pub(super) cell: Arc<SnapshotCell>,
    pub(super) state: Arc<RuntimeState>,
    pub(super) assignment: watch::Sender<Arc<Assignment>>,
    pub(super) published: HashMap<String, Published>,
}

impl Sync {
    /// Runs until the gossip driver stops (the node's shutdown).
    async fn run(mut self) {
        let mut views = self.gossip.subscribe();
        let mut snapshots = self.cell.subscribe();
        let changes = self.state.verdict_changes();
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let view = views.borrow_and_update().clone();
        self.apply(&view);
        loop {
            tokio::select! {
                r = views.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let view = views.borrow_and_update().clone();
                    self.apply(&view);
                }
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let view = views.borrow().clone();
                    self.apply(&view);
                }
                () = changes.notified() => self.publish(false).await,
                _ = tick.tick() => self.publish(true).await,
            }
        }
    }

    /// Applies the merged view: the probe assignment, and per backend the fleet verdict
    /// input, the other members' connection counts and their breaker/ejection counts.
    pub(super) fn apply(&mut self, view: &GossipView) {
        let next = Assignment::fleet(&self.node_id, view.live.clone(), self.k);
        let previous = self.assignment.borrow().clone();
        if *previous != next {
            tracing::info!(live = ?next.live(), "fleet membership changed; probes reassigned");
        }
        let index = Index::new(&view.entries, &self.node_id, next.live());
        let snapshot = self.cell.load();
        for plan in snapshot.pools.values() {
            let checked = plan.pool.has_active_check();
            for (b, st) in plan.backends.iter().zip(&plan.states) {
                st.stats
                    .fleet_active
                    .store(index.fleet_active(&b.id), Ordering::Relaxed);
                let (circuits, ejecting) = index.counts(&b.id);
                st.set_fleet_counts(circuits, ejecting);
                let before = st.verdict();
                let fleet = checked.then(|| {
                    let probers = next.probers(&b.id).unwrap_or_default();
                    let self_probes = probers.contains(&self.node_id);
                    let (remote, against) = index.remote_verdict(&b.id, &probers, &self.node_id);
                    if self_probes && !previous.probes_here(&b.id) {
                        crate::health::adopt_fleet_verdict(st, remote);
                    }
                    (
                        FleetHealth {
                            self_probes,
                            remote,
                        },
                        against,
                    )
                });
                st.set_fleet_health(fleet.as_ref().map(|(h, _)| *h));
                if let Some((h, against)) = fleet {
                    note_change(st, before, h, &against);
                }
            }
        }
        self.assignment.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }

    /// Gossips what changed: verdicts of the backends this node probes (always), and with
    /// `counters` connection counts, breaker states and ejections.
    pub(super) async fn publish(&mut self, counters: bool) {
        let assignment = self.assignment.borrow().clone();
        let snapshot = self.cell.load();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for plan in snapshot.pools.values() {
            let checked = plan.pool.has_active_check();
            for (b, st) in plan.backends.iter().zip(&plan.states) {
                if !seen.insert(b.id.as_str()) {
                    continue;
                }
                let last = self.published.get(&b.id).copied().unwrap_or_default();
                let mut now = last;
                if checked && assignment.probes_here(&b.id) {
                    now.healthy = match st.own_verdict() {
                        Verdict::Healthy => Some(true),
                        Verdict::Unhealthy => Some(false),
                        Verdict::Unknown => last.healthy,
                    };
                }
                if counters {
                    now.connections = st.stats.active.load(Ordering::Relaxed);
                    now.circuit = if st.circuit().is_configured() {
                        state_code(st.circuit_state())
                    } else {
                        0
                    };
                    now.ejected = st.passive().is_ejected_now();
                }
                diff(&b.id, last, now, observed_at(st), &mut out);
            }
        }
        if counters {
            // Backends gone from the configuration: their counts drop to zero once.
            let gone: Vec<String> = self
                .published
                .keys()
                .filter(|id| !seen.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                if let Some(last) = self.published.remove(&id) {
                    let now = Published {
                        healthy: last.healthy,
                        ..Published::default()
                    };
                    diff(&id, last, now, now_ms(), &mut out);
                }
            }
        }
        for (id, sent, entry) in out {
            match self.gossip.publish(entry).await {
                // A backend gone from the configuration is forgotten once zeroed.
                Ok(()) if seen.contains(id.as_str()) => {
                    self.published.insert(id, sent);
                }
                Ok(()) => {}
                Err(e) => tracing::debug!(backend = %id, error = %e, "gossip publish failed"),
            }
        }
    }
}

/// The entries that bring the fleet from `last` to `now` for backend `id`, each with the
/// record to remember once it is sent.
fn diff(
    id: &str,
    last: Published,
    now: Published,
    observed_at_ms: u64,
    out: &mut Vec<(String, Published, Entry)>,
) {
    let backend_id = || id.to_string();
    let mut sent = last;
    if let (Some(healthy), true) = (now.healthy, now.healthy != last.healthy) {
        sent.healthy = Some(healthy);
        let entry = Entry::Health {
            backend_id: backend_id(),
            healthy,
            observed_at_ms,
        };
        out.push((id.to_string(), sent, entry));
    }
    if now.connections != last.connections {
        sent.connections = now.connections;
        let entry = Entry::Connections {
            backend_id: backend_id(),
            count: now.connections,
        };
        out.push((id.to_string(), sent, entry));
    }
    if now.circuit != last.circuit {
        sent.circuit = now.circuit;
        let entry = Entry::Circuit {
            backend_id: backend_id(),
            state: now.circuit,
        };
        out.push((id.to_string(), sent, entry));
    }
    if now.ejected != last.ejected {
        sent.ejected = now.ejected;
        let entry = Entry::Ejection {
            backend_id: backend_id(),
            ejected: now.ejected,
        };
        out.push((id.to_string(), sent, entry));
    }
}

/// When the own verdict was last decided (Unix ms).
fn observed_at(st: &BackendState) -> u64 {
    match st.details().last_check {
        0 => now_ms(),
        t => t,
    }
}

/// Logs a routing verdict the fleet changed, and on a node that does not probe the
/// backend records who reported it failing (shown as `last_error` by the API).
fn note_change(st: &BackendState, before: Verdict, h: FleetHealth, against: &[&str]) {
    let after = st.verdict();
    if before == after {
        return;
    }
    if after == Verdict::Unhealthy && !against.is_empty() {
        if !h.self_probes {
            st.details().last_error = Some(format!(
                "active check failing on prober {}",
                against.join(", ")
            ));
        }
        tracing::warn!(backend = %st.id(), probers = ?against, "backend unhealthy according to the fleet");
    } else {
        tracing::info!(backend = %st.id(), verdict = ?after, "fleet verdict changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_sends_only_what_changed() {
        let mut out = Vec::new();
        let last = Published::default();
        diff("b", last, last, 1, &mut out);
        assert!(out.is_empty());
        let now = Published {
            healthy: Some(false),
            connections: 3,
            circuit: 0,
            ejected: true,
        };
        diff("b", last, now, 7, &mut out);
        let entries: Vec<&Entry> = out.iter().map(|(_, _, e)| e).collect();
        assert_eq!(
            entries,
            [
                &Entry::Health {
                    backend_id: "b".into(),
                    healthy: false,
                    observed_at_ms: 7
                },
                &Entry::Connections {
                    backend_id: "b".into(),
                    count: 3
                },
                &Entry::Ejection {
                    backend_id: "b".into(),
                    ejected: true
                },
            ]
        );
        // The last record remembered is the full new state.
        assert_eq!(out.last().map(|(_, p, _)| *p), Some(now));
    }
}
