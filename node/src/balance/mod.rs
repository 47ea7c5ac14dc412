//! Backend selection: one [`Balancer`] trait, one algorithm per file.
//!
//! A balancer is built once per pool per configuration snapshot (off the hot path: Maglev
//! tables, weight schedules) over the pool's endpoints in a fixed order, and then asked per
//! connection or request to pick among the endpoints that are *eligible right now*. Health
//! changes therefore never rebuild a balancer; they only change the `eligible` mask.

mod hash;
mod ip_hash;
mod least_conn;
mod least_response_time;
mod maglev;
mod random;
mod round_robin;
mod weighted_round_robin;

#[cfg(test)]
mod tests;

pub use hash::{fnv1a64, fnv1a64_start, stable_hash};
pub use ip_hash::IpHash;
pub use least_conn::{LeastConnections, WeightedLeastConnections};
pub use least_response_time::LeastResponseTime;
pub use maglev::{client_key, default_table_size, KeyMode, Maglev, DEFAULT_TABLE_SIZE};
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::Algorithm;

/// Live numbers of one backend, shared by every snapshot that contains it.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Connections (L4) or in-flight requests (L7) this node has open to the backend.
    pub active: AtomicU64,
    /// The same, summed over the other fleet members (from gossip); 0 without a fleet.
    pub fleet_active: AtomicU64,
    /// EWMA of connect / first-byte time in microseconds; 0 = nothing measured yet.
    pub ewma_micros: AtomicU64,
    /// Connections (L4) or requests (L7) sent to the backend since start: the status page
    /// derives rates from it.
    pub started: AtomicU64,
}

impl BackendStats {
    /// Fleet-wide active count: what least-connections compares.
    pub fn total_active(&self) -> u64 {
        self.active
            .load(Ordering::Relaxed)
            .saturating_add(self.fleet_active.load(Ordering::Relaxed))
    }

    /// Whether one more connection fits under `limit` (`None` = no limit), counting this
    /// node's connections and the fleet's gossiped ones.
    pub fn has_room(&self, limit: Option<u32>) -> bool {
        limit.is_none_or(|max| self.total_active() < u64::from(max))
    }

    /// Counts one new connection on this node if it fits under `limit` (`None` = always).
    ///
    /// The check and the increment are one compare-and-swap on this node's count, so
    /// connections racing on this node can never overshoot the limit together; the other
    /// members' share is as fresh as their last gossip (bounded staleness), so the fleet
    /// as a whole may briefly overshoot by what it accepted within one gossip interval.
    /// On success the caller owns one unit of `active` and must release it.
    pub fn try_acquire(&self, limit: Option<u32>) -> bool {
        let Some(max) = limit else {
            self.active.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        let fleet = self.fleet_active.load(Ordering::Relaxed);
        self.active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                (a.saturating_add(fleet) < u64::from(max)).then_some(a + 1)
            })
            .is_ok()
    }

    /// Folds one latency sample into the EWMA (weight 1/8 for the new sample).
    pub fn observe_latency(&self, d: Duration) {
        let sample = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .ewma_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - old / 8 + sample / 8
                })
            });
    }
}

/// One backend as a balancer sees it; fixed for the lifetime of the balancer.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Backend id: the identity hashed by Maglev, so every node agrees.
    pub id: Arc<str>,
    /// 1-100.
    pub weight: u32,
    /// Serves only when no primary is eligible.
    pub backup: bool,
    /// Live numbers.
    pub stats: Arc<BackendStats>,
}

/// What a pick may depend on.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The client's address (IP hash uses the IP, Maglev the IP and port).
    pub client: SocketAddr,
}

/// Picks a backend.
pub trait Balancer: Send + Sync + Debug {
    /// Index of the chosen endpoint among those with `eligible[i] == true`, or `None` when
    /// none is eligible. `eligible.len()` equals the number of endpoints it was built with.
    fn pick(&self, ctx: &PickContext, eligible: &[bool]) -> Option<usize>;
}

/// The algorithm name used in logs and metrics.
pub fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RoundRobin => "round_robin",
        Algorithm::LeastConnections => "least_connections",
        Algorithm::IpHash => "ip_hash",
        Algorithm::Random => "random",
        Algorithm::WeightedRoundRobin => "weighted_round_robin",
        Algorithm::LeastResponseTime => "least_response_time",
        Algorithm::WeightedLeastConnections => "weighted_least_connections",
        Algorithm::Maglev => "maglev",
    }
}

/// Builds the balancer for `algorithm` over `endpoints` (in the order the caller will use
/// for the `eligible` mask). Done once per pool per snapshot, off the hot path: Maglev and
/// IP hash compute their lookup table here.
pub fn build(algorithm: Algorithm, endpoints: &[Endpoint]) -> Arc<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Arc::new(RoundRobin::new(endpoints)),
        Algorithm::WeightedRoundRobin => Arc::new(WeightedRoundRobin::new(endpoints)),
        Algorithm::LeastConnections => Arc::new(LeastConnections::new(endpoints)),
        Algorithm::WeightedLeastConnections => Arc::new(WeightedLeastConnections::new(endpoints)),
        Algorithm::IpHash => Arc::new(IpHash::new(endpoints)),
        Algorithm::Maglev => Arc::new(Maglev::new(endpoints)),
        Algorithm::Random => Arc::new(Random::new(endpoints)),
        Algorithm::LeastResponseTime => Arc::new(LeastResponseTime::new(endpoints)),
    }
}

/// Which endpoints of a pool may be picked, by index: on the stack for pools of up to 32
/// backends (built for every request and connection, it allocated each time before).
pub type Mask = smallvec::SmallVec<[bool; 32]>;

/// The eligibility mask with the backup rule applied: the usable primaries; if no primary
/// is usable, the usable backups. `usable(i)` says whether endpoint `i` is healthy, enabled
/// and not draining (the caller's business); this function only adds the backup rule, so
/// every algorithm gets it for free.
pub fn eligible_mask(endpoints: &[Endpoint], usable: impl Fn(usize) -> bool) -> Mask {
    // Narrowed in place (this runs for every request and connection).
    let mut mask: Mask = (0..endpoints.len()).map(usable).collect();
    let any_primary = endpoints.iter().zip(&mask).any(|(e, &u)| u && !e.backup);
    for (m, e) in mask.iter_mut().zip(endpoints) {
        *m = *m && (e.backup != any_primary);
    }
    mask
}

/// Whether `i` is eligible; an index past the mask counts as ineligible, so a mask of the
/// wrong length can never make a balancer panic.
fn is_eligible(eligible: &[bool], i: usize) -> bool {
    eligible.get(i).copied().unwrap_or(false)
}

/// Number of eligible endpoints among the first `n`.
fn eligible_count(eligible: &[bool], n: usize) -> usize {
    eligible.iter().take(n).filter(|&&e| e).count()
}

/// Index of the `k`-th (0-based) eligible endpoint among the first `n`.
fn nth_eligible(eligible: &[bool], n: usize, k: usize) -> Option<usize> {
    eligible
        .iter()
        .take(n)
        .enumerate()
        .filter(|(_, &e)| e)
        .nth(k)
        .map(|(i, _)| i)
}

/// Weight used by the weighted algorithms: the API allows 1-100, and a 0 that slipped
/// through is treated as 1 so no algorithm divides by zero or starves a backend forever.
fn weight_of(e: &Endpoint) -> u64 {
    u64::from(e.weight.max(1))
}
