//! Random with the power of two choices.

use rand::Rng;

use super::{eligible_count, nth_eligible, Balancer, Endpoint, PickContext};

/// Power of two choices: draw two distinct eligible endpoints uniformly at random and take
/// the one with fewer fleet-wide active connections (the first drawn on a tie).
///
/// Why not plain random: two choices cut the maximum load from `log n / log log n` to
/// `log log n` (Mitzenmacher), at the cost of two relaxed loads, and unlike pure least
/// connections it does not herd every node of the fleet onto the same momentarily idle
/// backend between gossip rounds. The generator is `rand::rng()`, a thread-local CSPRNG,
/// so picks on different worker threads never contend.
#[derive(Debug)]
pub struct Random {
    endpoints: Vec<Endpoint>,
}

impl Random {
    /// Power of two choices over `endpoints`.
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
        }
    }

    /// The pick, with the generator supplied (tests pass a seeded one).
    fn pick_with(&self, rng: &mut impl Rng, eligible: &[bool]) -> Option<usize> {
        let len = self.endpoints.len();
        let n = eligible_count(eligible, len);
        match n {
            0 => None,
            1 => nth_eligible(eligible, len, 0),
            _ => {
                let r1 = rng.random_range(0..n);
                let mut r2 = rng.random_range(0..n - 1);
                if r2 >= r1 {
                    r2 += 1;
                }
                let a = nth_eligible(eligible, len, r1)?;
                let b = nth_eligible(eligible, len, r2)?;
                let load = |i: usize| self.endpoints[i].stats.total_active();
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}

impl Balancer for Random {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        self.pick_with(&mut rand::rng(), eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{ctx, endpoints};
    use rand::{rngs::StdRng, SeedableRng};
    use std::sync::atomic::Ordering;

    #[test]
    fn never_picks_the_busier_of_two() {
        let eps = endpoints(&[1, 1]);
        eps[0].stats.active.store(5, Ordering::Relaxed);
        let r = Random::new(&eps);
        for _ in 0..100 {
            assert_eq!(r.pick(&ctx(1), &[true; 2]), Some(1));
        }
    }

    #[test]
    fn the_busiest_is_never_picked_and_the_rest_share() {
        let eps = endpoints(&[1, 1, 1, 1]);
        eps[3].stats.active.store(100, Ordering::Relaxed);
        let r = Random::new(&eps);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..6000 {
            counts[r.pick_with(&mut rng, &[true; 4]).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0);
        for &c in &counts[..3] {
            // Each of the three idle ones is drawn first in 1/3 of the cases where both are
            // idle, and wins every draw against the busy one: about 2000 each.
            assert!((1700..2300).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn only_eligible_ones() {
        let eps = endpoints(&[1, 1, 1, 1, 1]);
        let r = Random::new(&eps);
        let mask = [false, true, false, true, false];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let i = r.pick_with(&mut rng, &mask).unwrap();
            assert!(mask[i]);
        }
        assert_eq!(
            r.pick(&ctx(1), &[false, false, true, false, false]),
            Some(2)
        );
    }

    #[test]
    fn keeps_load_even_when_following_its_picks() {
        let eps = endpoints(&[1; 10]);
        let r = Random::new(&eps);
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..10_000 {
            let i = r.pick_with(&mut rng, &[true; 10]).unwrap();
            eps[i].stats.active.fetch_add(1, Ordering::Relaxed);
        }
        let loads: Vec<u64> = eps.iter().map(|e| e.stats.total_active()).collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        // Plain random would spread about ±100 here; two choices keep it within a few.
        assert!(max - min <= 10, "{loads:?}");
    }
}
