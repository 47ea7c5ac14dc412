//! The node's side of the fleet: which backends this node actively probes (probe
//! sharding) and the replication of runtime state over gossip.
//!
//! - **Probe sharding** ([`ProbeShard`], [`Assignment`]): each backend of a pool with an
//!   active check is probed by `[cluster] probe_replicas` (k, default 2) live members,
//!   chosen by rendezvous hashing ([`fiberlb_gossip::probers`]) over the live member ids,
//!   so every node computes the same set without talking. When membership changes the
//!   assignment is recomputed at once and the checker starts or stops probe loops: a dead
//!   prober's backends are taken over as soon as it is declared down. Live means alive or
//!   suspect: a suspect member keeps its probes until it is declared down, so a short
//!   hiccup does not move them back and forth. With gossip off everything is probed here.
//! - **Replication** ([`sync`]): this node gossips its probers' verdicts as soon as they
//!   change, and every 250 ms whatever changed among its active connection counts, circuit
//!   breaker states and passive ejections. From the merged view it sets each backend's
//!   fleet verdict input ([`crate::state::FleetHealth`], merged by
//!   [`crate::state::merge`]), `BackendStats::fleet_active` (the sum of the other live
//!   members' counts, which least-connections adds to the local count) and the fleet
//!   counts of open breakers and ejections (metrics). A member declared down takes its
//!   entries with it (the gossip crate drops them), so its connections stop counting and
//!   its verdicts stop voting.
//!
//! Not here: circuit breakers and passive ejection still decide locally (each node's
//! breaker sees its own traffic and admits or refuses on its own); their gossiped states
//! are for observability.

mod sync;
#[cfg(test)]
mod tests_sync;
mod view;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

pub use sync::spawn;

/// Who probes what, for one membership view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `None` with gossip off: this node probes everything.
    fleet: Option<Members>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Members {
    node_id: String,
    /// Live member ids (this node included), sorted.
    live: Vec<String>,
    k: usize,
}

impl Assignment {
    /// A single node: every backend is probed here.
    pub fn local() -> Self {
        Self { fleet: None }
    }

    /// `node_id` among `live` members, each backend probed by `k` of them.
    pub fn fleet(node_id: &str, mut live: Vec<String>, k: usize) -> Self {
        if !live.iter().any(|m| m == node_id) {
            // This node is alive by definition, whatever a lagging view says.
            live.push(node_id.to_string());
        }
        live.sort();
        live.dedup();
        Self {
            fleet: Some(Members {
                node_id: node_id.to_string(),
                live,
                k: k.max(1),
            }),
        }
    }

    /// Whether this node is in a fleet (gossip on).
    pub fn is_fleet(&self) -> bool {
        self.fleet.is_some()
    }

    /// This node's id when in a fleet.
    pub fn node_id(&self) -> Option<&str> {
        self.fleet.as_ref().map(|m| m.node_id.as_str())
    }

    /// Live member ids (sorted), empty on a single node.
    pub fn live(&self) -> &[String] {
        self.fleet.as_ref().map_or(&[], |m| m.live.as_slice())
    }

    /// The backend's probers; `None` on a single node (where this node probes it).
    pub fn probers(&self, backend_id: &str) -> Option<Vec<String>> {
        self.fleet
            .as_ref()
            .map(|m| fiberlb_gossip::probers(backend_id, &m.live, m.k))
    }

    /// Whether this node actively probes the backend.
    pub fn probes_here(&self, backend_id: &str) -> bool {
        match &self.fleet {
            None => true,
            Some(m) => fiberlb_gossip::probers(backend_id, &m.live, m.k).contains(&m.node_id),
        }
    }
}

/// The checker's handle on the current [`Assignment`], and where it reports how many
/// backends it probes (`GetNodeStatus.probes_owned`, `fiberlb_health_probes_owned`).
#[derive(Debug, Clone)]
pub struct ProbeShard {
    rx: watch::Receiver<Arc<Assignment>>,
    owned: Arc<AtomicU32>,
    /// Keeps a fixed assignment's channel open, so `changed()` pends instead of failing.
    _fixed: Option<Arc<watch::Sender<Arc<Assignment>>>>,
}

impl ProbeShard {
    /// Every backend probed here, for good (gossip off).
    pub fn local() -> Self {
        Self::fixed(Assignment::local())
    }

    /// An assignment that never changes (tests, or gossip off).
    pub fn fixed(a: Assignment) -> Self {
        let (tx, rx) = watch::channel(Arc::new(a));
        Self {
            rx,
            owned: Arc::default(),
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// A shard following `rx` (the fleet task owns the sender).
    fn following(rx: watch::Receiver<Arc<Assignment>>) -> Self {
        Self {
            rx,
            owned: Arc::default(),
            _fixed: None,
        }
    }

    /// The assignment now (marks it seen for [`ProbeShard::changed`]).
    pub fn current(&mut self) -> Arc<Assignment> {
        self.rx.borrow_and_update().clone()
    }

    /// The assignment now, without marking it seen.
    pub fn peek(&self) -> Arc<Assignment> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change; `false` once nothing can change it any more (the fleet
    /// task ended at shutdown), after which the last assignment stays.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Records how many backends this node probes.
    pub fn set_owned(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.owned.store(n, Ordering::Relaxed);
        metrics::gauge!("fiberlb_health_probes_owned").set(f64::from(n));
    }

    /// How many backends this node probes.
    pub fn owned(&self) -> u32 {
        self.owned.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node{i}")).collect()
    }

    #[test]
    fn single_node_probes_everything() {
        let a = Assignment::local();
        assert!(!a.is_fleet());
        assert!(a.probes_here("any"));
        assert_eq!(a.probers("any"), None);
    }

    #[test]
    fn k_of_n_probe_each_backend_and_a_dead_members_share_moves() {
        let three: Vec<Assignment> = ids(3)
            .iter()
            .map(|me| Assignment::fleet(me, ids(3), 2))
            .collect();
        for b in 0..50 {
            let id = format!("backend-{b}");
            let here: Vec<bool> = three.iter().map(|a| a.probes_here(&id)).collect();
            assert_eq!(here.iter().filter(|h| **h).count(), 2, "{id}: {here:?}");
            // node2 dies: the two survivors probe everything (k = 2).
            for me in ["node0", "node1"] {
                assert!(Assignment::fleet(me, ids(2), 2).probes_here(&id));
            }
        }
    }

    #[test]
    fn this_node_counts_as_live_even_if_the_view_lags() {
        let a = Assignment::fleet("me", vec![], 2);
        assert_eq!(a.live(), ["me".to_string()]);
        assert!(a.probes_here("b"));
        assert_eq!(a.node_id(), Some("me"));
    }
}
