//! Least response time: the lowest EWMA of connect / first-byte time.

use std::sync::atomic::AtomicUsize;

use super::least_conn::pick_best_sharing_ties;
use super::{Balancer, Endpoint, PickContext};

/// Picks the eligible endpoint with the lowest [`BackendStats::ewma_micros`], then the
/// fewest active connections; exact ties take turns.
///
/// An EWMA of 0 means "never measured" and counts as the best, so a new or returning
/// backend is tried at once and gets a real figure instead of being starved behind ones
/// that already have numbers. The active-count tie-break spreads load across those
/// unmeasured backends (and across equally fast ones) rather than piling onto one.
///
/// [`BackendStats::ewma_micros`]: super::BackendStats::ewma_micros
#[derive(Debug)]
pub struct LeastResponseTime {
    endpoints: Vec<Endpoint>,
    ticket: AtomicUsize,
}

impl LeastResponseTime {
    /// Least response time over `endpoints`.
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            ticket: AtomicUsize::new(0),
        }
    }
}

impl Balancer for LeastResponseTime {
    fn pick(&self, _ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        use std::sync::atomic::Ordering;
        pick_best_sharing_ties(
            self.endpoints.len(),
            &self.ticket,
            eligible,
            |i| {
                let s = &self.endpoints[i].stats;
                (s.ewma_micros.load(Ordering::Relaxed), s.total_active())
            },
            |a, b| a < b,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{ctx, endpoints};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn picks_the_fastest() {
        let eps = endpoints(&[1, 1, 1]);
        eps[0].stats.observe_latency(Duration::from_millis(30));
        eps[1].stats.observe_latency(Duration::from_millis(5));
        eps[2].stats.observe_latency(Duration::from_millis(12));
        let b = LeastResponseTime::new(&eps);
        assert_eq!(b.pick(&ctx(1), &[true; 3]), Some(1));
        assert_eq!(b.pick(&ctx(1), &[true, false, true]), Some(2));
    }

    #[test]
    fn unmeasured_backend_is_tried_first() {
        let eps = endpoints(&[1, 1]);
        eps[0].stats.observe_latency(Duration::from_micros(1));
        let b = LeastResponseTime::new(&eps);
        assert_eq!(b.pick(&ctx(1), &[true; 2]), Some(1));
    }

    #[test]
    fn equal_times_go_to_fewer_active_then_rotate() {
        let eps = endpoints(&[1, 1, 1]);
        for e in &eps {
            e.stats.observe_latency(Duration::from_millis(2));
        }
        eps[0].stats.active.store(4, Ordering::Relaxed);
        let b = LeastResponseTime::new(&eps);
        let mut counts = [0; 3];
        for _ in 0..100 {
            counts[b.pick(&ctx(1), &[true; 3]).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert_eq!(counts, [0, 50, 50]);
    }
}
