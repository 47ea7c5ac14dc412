//! Plain round robin over the eligible endpoints.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{eligible_count, nth_eligible, Balancer, Endpoint, PickContext};

/// Round robin: the `k`-th pick goes to the `(k mod E)`-th eligible endpoint, E being the
/// number eligible right now.
///
/// Counting ranks among the eligible (rather than starting at `k mod N` and skipping
/// forward to the next eligible one) keeps the rotation fair when some are ineligible: with
/// skipping, the endpoint just after a down one would take its share too. A lock-free
/// counter is all the state; concurrent picks each get a distinct ticket.
#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: AtomicUsize,
}

impl RoundRobin {
    /// Round robin over `endpoints` (only their number matters).
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self {
            len: endpoints.len(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        let n = eligible_count(eligible, self.len);
        if n == 0 {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        nth_eligible(eligible, self.len, ticket % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{ctx, endpoints};

    #[test]
    fn every_endpoint_gets_the_same_share() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let rr = RoundRobin::new(&eps);
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[rr.pick(&ctx(1), &[true; 4]).unwrap()] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn fair_over_the_eligible_ones() {
        let eps = endpoints(&[1, 1, 1, 1, 1]);
        let rr = RoundRobin::new(&eps);
        let mask = [true, false, false, true, true];
        let mut counts = [0; 5];
        for _ in 0..300 {
            counts[rr.pick(&ctx(1), &mask).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 0, 0, 100, 100]);
    }

    #[test]
    fn strict_rotation() {
        let eps = endpoints(&[1, 1, 1]);
        let rr = RoundRobin::new(&eps);
        let seq: Vec<usize> = (0..6)
            .map(|_| rr.pick(&ctx(1), &[true; 3]).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    }
}
