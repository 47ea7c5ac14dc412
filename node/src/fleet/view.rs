//! The merged gossip entries, indexed per backend for one pass over the snapshot.

use std::collections::HashMap;

use fiberlb_gossip::Entry;

use crate::state::{merge, Verdict};

/// What the other live members say, per backend id.
#[derive(Debug, Default)]
pub(super) struct Index<'a> {
    /// Latest active verdict per origin.
    health: HashMap<&'a str, Vec<(&'a str, bool)>>,
    /// Sum of the other members' active connection counts.
    connections: HashMap<&'a str, u64>,
    /// Other members whose breaker is not closed.
    circuits_open: HashMap<&'a str, u32>,
    /// Other members whose passive health ejects the backend.
    ejecting: HashMap<&'a str, u32>,
}

impl<'a> Index<'a> {
    /// Indexes `entries` of the members in `live`, leaving out this node's own (the local
    /// state is fresher than its gossiped copy) and any origin not live (the gossip crate
    /// drops a dead member's entries; this also covers the moment in between).
    pub(super) fn new(entries: &'a [(String, Entry)], self_id: &str, live: &[String]) -> Self {
        let mut ix = Index::default();
        for (origin, entry) in entries {
            if origin == self_id || !live.iter().any(|m| m == origin) {
                continue;
            }
            match entry {
                Entry::Health {
                    backend_id,
                    healthy,
                    ..
                } => ix
                    .health
                    .entry(backend_id)
                    .or_default()
                    .push((origin, *healthy)),
                Entry::Connections { backend_id, count } => {
                    let sum = ix.connections.entry(backend_id).or_default();
                    *sum = sum.saturating_add(*count);
                }
                Entry::Circuit { backend_id, state } => {
                    if *state != 0 {
                        *ix.circuits_open.entry(backend_id).or_default() += 1;
                    }
                }
                Entry::Ejection {
                    backend_id,
                    ejected,
                } => {
                    if *ejected {
                        *ix.ejecting.entry(backend_id).or_default() += 1;
                    }
                }
            }
        }
        ix
    }

    /// Active connections the other live members have open to the backend.
    pub(super) fn fleet_active(&self, backend_id: &str) -> u64 {
        self.connections.get(backend_id).copied().unwrap_or(0)
    }

    /// Other live members with the backend's breaker not closed, and ejecting it.
    pub(super) fn counts(&self, backend_id: &str) -> (u32, u32) {
        (
            self.circuits_open.get(backend_id).copied().unwrap_or(0),
            self.ejecting.get(backend_id).copied().unwrap_or(0),
        )
    }

    /// The merged verdict of the backend's probers other than this node, and which of
    /// them say unhealthy. A prober that has not reported yet counts as unknown; entries
    /// of members that are not (or no longer) probers are ignored, since they may be
    /// stale leftovers of an earlier assignment.
    pub(super) fn remote_verdict(
        &self,
        backend_id: &str,
        probers: &[String],
        self_id: &str,
    ) -> (Verdict, Vec<&'a str>) {
        let Some(votes) = self.health.get(backend_id) else {
            return (Verdict::Unknown, Vec::new());
        };
        let votes: Vec<(&'a str, bool)> = votes
            .iter()
            .copied()
            .filter(|(o, _)| *o != self_id && probers.iter().any(|p| p == o))
            .collect();
        let verdict = merge(votes.iter().map(|(_, healthy)| {
            if *healthy {
                Verdict::Healthy
            } else {
                Verdict::Unhealthy
            }
        }));
        let against = votes
            .iter()
            .filter(|(_, healthy)| !healthy)
            .map(|(o, _)| *o)
            .collect();
        (verdict, against)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(origin: &str, b: &str, healthy: bool) -> (String, Entry) {
        (
            origin.into(),
            Entry::Health {
                backend_id: b.into(),
                healthy,
                observed_at_ms: 1,
            },
        )
    }

    fn conns(origin: &str, b: &str, count: u64) -> (String, Entry) {
        (
            origin.into(),
            Entry::Connections {
                backend_id: b.into(),
                count,
            },
        )
    }

    fn live(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn connections_sum_other_live_members_only() {
        let e = vec![
            conns("me", "b", 100),
            conns("n1", "b", 3),
            conns("n2", "b", 4),
            conns("gone", "b", 50),
            conns("n1", "c", 1),
        ];
        let ix = Index::new(&e, "me", &live(&["me", "n1", "n2"]));
        assert_eq!(ix.fleet_active("b"), 7);
        assert_eq!(ix.fleet_active("c"), 1);
        assert_eq!(ix.fleet_active("x"), 0);
    }

    #[test]
    fn only_current_probers_vote() {
        let e = vec![
            health("n1", "b", true),
            health("n2", "b", false),
            health("n3", "b", false), // a former prober's stale entry
            health("me", "b", false), // our own: the local state is used instead
        ];
        let l = live(&["me", "n1", "n2", "n3"]);
        let ix = Index::new(&e, "me", &l);
        let p = |ids: &[&str]| live(ids);
        assert_eq!(
            ix.remote_verdict("b", &p(&["n1", "n2"]), "me"),
            (Verdict::Unhealthy, vec!["n2"])
        );
        assert_eq!(
            ix.remote_verdict("b", &p(&["me", "n1"]), "me"),
            (Verdict::Healthy, vec![])
        );
        assert_eq!(
            ix.remote_verdict("b", &p(&["me", "n4"]), "me").0,
            Verdict::Unknown,
            "the other prober has not reported yet"
        );
        assert_eq!(
            ix.remote_verdict("zz", &p(&["n1"]), "me").0,
            Verdict::Unknown
        );
    }

    #[test]
    fn circuits_and_ejections_are_counted() {
        let e = vec![
            (
                "n1".to_string(),
                Entry::Circuit {
                    backend_id: "b".into(),
                    state: 2,
                },
            ),
            (
                "n2".to_string(),
                Entry::Circuit {
                    backend_id: "b".into(),
                    state: 0,
                },
            ),
            (
                "n2".to_string(),
                Entry::Ejection {
                    backend_id: "b".into(),
                    ejected: true,
                },
            ),
        ];
        let ix = Index::new(&e, "me", &live(&["me", "n1", "n2"]));
        assert_eq!(ix.counts("b"), (1, 1));
        assert_eq!(ix.counts("c"), (0, 0));
    }
}
