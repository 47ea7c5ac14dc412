//! Smooth weighted round robin (nginx's algorithm).

use std::sync::{Mutex, PoisonError};

use super::{is_eligible, weight_of, Balancer, Endpoint, PickContext};

/// Smooth weighted round robin over the eligible endpoints.
///
/// Each pick adds every eligible endpoint's weight to its `current`, takes the largest
/// `current` (lowest index on ties) and subtracts the eligible total from the winner. From
/// an all-zero state this returns to all zeros after exactly `sum(weights)` picks, having
/// picked each endpoint exactly `weight` times, and interleaves them (5,1,1 gives
/// `a a b a c a a`) instead of sending bursts.
///
/// The state restarts from zero whenever the eligible set changes, so the ratios are exact
/// over each cycle of the *new* set; keeping stale `current` values of a backend that went
/// down would skew the first cycles after it returns.
///
/// Why a `Mutex` rather than a precomputed schedule per eligible set: the critical section
/// is a few integer additions per endpoint with no allocation and no await, so it is held
/// for well under a microsecond, and it is per pool, not global. A schedule cache keyed by
/// eligible set would need its own lock or an `ArcSwap` plus a map that health flapping
/// could grow, and a schedule of `sum(weights)` entries (up to 100 per backend) per set.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Vec<i64>,
    /// The eligible set `current` belongs to.
    mask: Vec<bool>,
}

impl WeightedRoundRobin {
    /// Smooth WRR over `endpoints` with their weights (0 counts as 1).
    pub fn new(endpoints: &[Endpoint]) -> Self {
        // weight_of is at most u32::MAX, which always fits an i64.
        let weights = endpoints
            .iter()
            .map(|e| i64::try_from(weight_of(e)).unwrap_or(i64::from(u32::MAX)))
            .collect();
        let n = endpoints.len();
        Self {
            weights,
            state: Mutex::new(State {
                current: vec![0; n],
                mask: vec![false; n],
            }),
        }
    }
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        let n = self.weights.len();
        // A poisoned lock only means another pick panicked mid-update; the numbers are
        // still integers, and the worst case is one uneven cycle.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let same_set = (0..n).all(|i| state.mask[i] == is_eligible(eligible, i));
        if !same_set {
            for i in 0..n {
                state.mask[i] = is_eligible(eligible, i);
                state.current[i] = 0;
            }
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..n {
            if !state.mask[i] {
                continue;
            }
            state.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| state.current[i] > state.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        state.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{ctx, endpoints};

    fn picks(b: &WeightedRoundRobin, mask: &[bool], count: usize) -> Vec<usize> {
        (0..count).map(|_| b.pick(&ctx(1), mask).unwrap()).collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let b = WeightedRoundRobin::new(&endpoints(&[5, 1, 1]));
        let seq = picks(&b, &[true; 3], 14);
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_ratio_in_every_cycle() {
        let weights = [5u32, 1, 1, 3, 10];
        let b = WeightedRoundRobin::new(&endpoints(&weights));
        let cycle: usize = weights.iter().map(|&w| w as usize).sum();
        for _ in 0..10 {
            let mut counts = [0u32; 5];
            for i in picks(&b, &[true; 5], cycle) {
                counts[i] += 1;
            }
            assert_eq!(counts, weights);
        }
    }

    #[test]
    fn exact_ratio_over_the_remaining_ones_when_one_is_ineligible() {
        let b = WeightedRoundRobin::new(&endpoints(&[5, 1, 1]));
        // Start mid-cycle on the full set, then take b out.
        picks(&b, &[true; 3], 3);
        let mask = [true, false, true];
        for _ in 0..5 {
            let mut counts = [0u32; 3];
            for i in picks(&b, &mask, 6) {
                counts[i] += 1;
            }
            assert_eq!(counts, [5, 0, 1]);
        }
        // And back: exact cycles of the full set again.
        for _ in 0..5 {
            let mut counts = [0u32; 3];
            for i in picks(&b, &[true; 3], 7) {
                counts[i] += 1;
            }
            assert_eq!(counts, [5, 1, 1]);
        }
    }

    #[test]
    fn property_exact_cycles_for_random_weights_and_masks() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = rng.random_range(1..12);
            let weights: Vec<u32> = (0..n).map(|_| rng.random_range(1..=100)).collect();
            let mask: Vec<bool> = (0..n).map(|_| rng.random_bool(0.7)).collect();
            let b = WeightedRoundRobin::new(&endpoints(&weights));
            let cycle: u32 = weights
                .iter()
                .zip(&mask)
                .filter(|(_, &m)| m)
                .map(|(w, _)| w)
                .sum();
            if cycle == 0 {
                assert_eq!(b.pick(&ctx(1), &mask), None, "seed {seed}");
                continue;
            }
            for _ in 0..2 {
                let mut counts = vec![0u32; n];
                for _ in 0..cycle {
                    counts[b.pick(&ctx(1), &mask).unwrap()] += 1;
                }
                let want: Vec<u32> = weights
                    .iter()
                    .zip(&mask)
                    .map(|(&w, &m)| if m { w } else { 0 })
                    .collect();
                assert_eq!(counts, want, "seed {seed}");
            }
        }
    }
}
