//! Least connections, plain and weighted, on fleet-wide active counts.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{is_eligible, weight_of, Balancer, Endpoint, PickContext};

/// The eligible endpoint with the best `key` (`better(a, b)` = a beats b). Ties are
/// shared in turn: a rotating ticket picks the `(ticket mod ties)`-th of the tied
/// endpoints, so an idle pool, or a burst of picks before any count moves, spreads evenly
/// instead of landing on the lowest index. (Merely rotating the scan's start would favour
/// the endpoint right after a worse or ineligible one.) No allocation; keys are read with
/// relaxed loads, and if they move between the two passes the first pass's best is used.
pub(super) fn pick_best_sharing_ties<K>(
    len: usize,
    ticket: &AtomicUsize,
    eligible: &[bool],
    key: impl Fn(usize) -> K,
    better: impl Fn(&K, &K) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, K)> = None;
    let mut ties = 0usize;
    for i in (0..len).filter(|&i| is_eligible(eligible, i)) {
        let k = key(i);
        match &best {
            Some((_, bk)) if better(bk, &k) => {}
            Some((_, bk)) if !better(&k, bk) => ties += 1,
            _ => {
                best = Some((i, k));
                ties = 1;
            }
        }
    }
    let (first, best_key) = best?;
    if ties <= 1 {
        return Some(first);
    }
    let mut rank = ticket.fetch_add(1, Ordering::Relaxed) % ties;
    for i in (0..len).filter(|&i| is_eligible(eligible, i)) {
        let k = key(i);
        if !better(&k, &best_key) && !better(&best_key, &k) {
            if rank == 0 {
                return Some(i);
            }
            rank -= 1;
        }
    }
    Some(first)
}

/// Fewest active connections, counted fleet-wide ([`BackendStats::total_active`]), so
/// every node steers new connections away from a backend the others are loading.
///
/// [`BackendStats::total_active`]: super::BackendStats::total_active
#[derive(Debug)]
pub struct LeastConnections {
    endpoints: Vec<Endpoint>,
    ticket: AtomicUsize,
}

impl LeastConnections {
    /// Least connections over `endpoints`.
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            ticket: AtomicUsize::new(0),
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        pick_best_sharing_ties(
            self.endpoints.len(),
            &self.ticket,
            eligible,
            |i| self.endpoints[i].stats.total_active(),
            |a, b| a < b,
        )
    }
}

/// Fewest active connections per unit of weight: picks the minimum `active / weight`,
/// compared as `active_i * weight_j < active_j * weight_i` in 128-bit integers, so there is
/// no float rounding and no overflow.
#[derive(Debug)]
pub struct WeightedLeastConnections {
    endpoints: Vec<Endpoint>,
    ticket: AtomicUsize,
}

impl WeightedLeastConnections {
    /// Weighted least connections over `endpoints` (weight 0 counts as 1).
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            ticket: AtomicUsize::new(0),
        }
    }
}

/// `active_a / weight_a` compared with `active_b / weight_b`.
fn cmp_load(active_a: u64, weight_a: u64, active_b: u64, weight_b: u64) -> CmpOrdering {
    (u128::from(active_a) * u128::from(weight_b))
        .cmp(&(u128::from(active_b) * u128::from(weight_a)))
}

impl Balancer for WeightedLeastConnections {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        pick_best_sharing_ties(
            self.endpoints.len(),
            &self.ticket,
            eligible,
            |i| {
                (
                    self.endpoints[i].stats.total_active(),
                    weight_of(&self.endpoints[i]),
                )
            },
            // On equal load prefer the heavier backend: 0/5 beats 0/1 when both are idle.
            |&(ai, wi), &(ab, wb)| match cmp_load(ai, wi, ab, wb) {
                CmpOrdering::Less => true,
                CmpOrdering::Equal => wi > wb,
                CmpOrdering::Greater => false,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{ctx, endpoints};

    fn set_active(eps: &[Endpoint], active: &[u64]) {
        for (e, &a) in eps.iter().zip(active) {
            e.stats.active.store(a, Ordering::Relaxed);
        }
    }

    #[test]
    fn prefers_the_idle_backend() {
        let eps = endpoints(&[1, 1, 1]);
        set_active(&eps, &[3, 0, 7]);
        let lc = LeastConnections::new(&eps);
        for _ in 0..10 {
            assert_eq!(lc.pick(&ctx(1), &[true; 3]), Some(1));
        }
    }

    #[test]
    fn counts_fleet_connections_too() {
        let eps = endpoints(&[1, 1]);
        set_active(&eps, &[1, 0]);
        eps[1].stats.fleet_active.store(5, Ordering::Relaxed);
        let lc = LeastConnections::new(&eps);
        assert_eq!(lc.pick(&ctx(1), &[true; 2]), Some(0));
    }

    #[test]
    fn skips_an_idle_but_ineligible_backend() {
        let eps = endpoints(&[1, 1, 1]);
        set_active(&eps, &[3, 0, 7]);
        let lc = LeastConnections::new(&eps);
        assert_eq!(lc.pick(&ctx(1), &[true, false, true]), Some(0));
    }

    #[test]
    fn ties_are_shared() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let lc = LeastConnections::new(&eps);
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[lc.pick(&ctx(1), &[true; 4]).unwrap()] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn following_the_picks_spreads_connections_evenly() {
        let eps = endpoints(&[1, 1, 1]);
        set_active(&eps, &[10, 0, 4]);
        let lc = LeastConnections::new(&eps);
        for _ in 0..16 {
            let i = lc.pick(&ctx(1), &[true; 3]).unwrap();
            eps[i].stats.active.fetch_add(1, Ordering::Relaxed);
        }
        let active: Vec<u64> = eps.iter().map(|e| e.stats.total_active()).collect();
        assert_eq!(active, [10, 10, 10]);
    }

    #[test]
    fn weighted_respects_weights() {
        let eps = endpoints(&[1, 3]);
        let wlc = WeightedLeastConnections::new(&eps);
        // Open 40 connections, each going where active/weight is lowest.
        for _ in 0..40 {
            let i = wlc.pick(&ctx(1), &[true; 2]).unwrap();
            eps[i].stats.active.fetch_add(1, Ordering::Relaxed);
        }
        let active: Vec<u64> = eps.iter().map(|e| e.stats.total_active()).collect();
        assert_eq!(active, [10, 30]);
    }

    #[test]
    fn weighted_picks_lowest_ratio() {
        let eps = endpoints(&[2, 10, 1]);
        // 3/2 = 1.5, 12/10 = 1.2, 2/1 = 2: the weight-10 one.
        set_active(&eps, &[3, 12, 2]);
        let wlc = WeightedLeastConnections::new(&eps);
        assert_eq!(wlc.pick(&ctx(1), &[true; 3]), Some(1));
        assert_eq!(wlc.pick(&ctx(1), &[true, false, true]), Some(0));
    }

    #[test]
    fn weighted_survives_huge_counts() {
        let eps = endpoints(&[100, 1]);
        // u64::MAX / 100 against u64::MAX / 50 per unit of weight.
        set_active(&eps, &[u64::MAX, u64::MAX / 50]);
        let wlc = WeightedLeastConnections::new(&eps);
        assert_eq!(wlc.pick(&ctx(1), &[true; 2]), Some(0));
    }
}
