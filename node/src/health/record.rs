//! The details behind a backend's active-check verdict, and the threshold rule that turns
//! probe results into verdicts.

use crate::state::Verdict;

/// What the API shows of a backend's checks (`HealthStatus` without the verdict).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRecord {
    /// Last probe (Unix ms), 0 = never.
    pub last_check: u64,
    /// Last time a probe found it healthy (Unix ms).
    pub last_healthy: Option<u64>,
    /// Consecutive failed probes.
    pub consecutive_failures: u32,
    /// Consecutive successful probes.
    pub consecutive_successes: u32,
    /// The most recent failure, active or passive; kept after recovery for diagnosis.
    pub last_error: Option<String>,
}

impl HealthRecord {
    /// Applies one probe result at `now` (Unix ms) to a backend whose verdict is `current`
    /// and returns the new verdict.
    ///
    /// Unhealthy → healthy takes `healthy_threshold` successes and healthy → unhealthy
    /// `unhealthy_threshold` failures. A backend never checked (unknown) turns healthy on
    /// its first success, like Envoy: it gets no traffic before, so waiting longer would
    /// only delay a new backend, while failures still need the full threshold before it is
    /// reported unhealthy.
    pub fn apply(
        &mut self,
        current: Verdict,
        result: Result<(), String>,
        now: u64,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Verdict {
        self.last_check = now;
        let next = match result {
            Ok(()) => {
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.consecutive_failures = 0;
                match current {
                    Verdict::Unhealthy if self.consecutive_successes < healthy_threshold => {
                        Verdict::Unhealthy
                    }
                    _ => Verdict::Healthy,
                }
            }
            Err(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                self.last_error = Some(e);
                if self.consecutive_failures >= unhealthy_threshold {
                    Verdict::Unhealthy
                } else {
                    current
                }
            }
        };
        if next == Verdict::Healthy {
            self.last_healthy = Some(now);
        }
        next
    }

    /// Forgets the counters (the pool's active check was removed).
    pub fn reset_counts(&mut self) {
        self.consecutive_failures = 0;
        self.consecutive_successes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &mut HealthRecord, mut v: Verdict, results: &[bool]) -> Verdict {
        for (i, ok) in results.iter().enumerate() {
            let res = if *ok {
                Ok(())
            } else {
                Err(format!("fail {i}"))
            };
            v = r.apply(v, res, 1000 + i as u64, 2, 3);
        }
        v
    }

    #[test]
    fn unknown_turns_healthy_on_the_first_success() {
        let mut r = HealthRecord::default();
        assert_eq!(run(&mut r, Verdict::Unknown, &[true]), Verdict::Healthy);
        assert_eq!(r.last_healthy, Some(1000));
        assert_eq!(r.last_check, 1000);
    }

    #[test]
    fn unknown_turns_unhealthy_after_the_failure_threshold() {
        let mut r = HealthRecord::default();
        assert_eq!(
            run(&mut r, Verdict::Unknown, &[false, false]),
            Verdict::Unknown
        );
        assert_eq!(run(&mut r, Verdict::Unknown, &[false]), Verdict::Unhealthy);
        assert_eq!(r.consecutive_failures, 3);
        assert_eq!(r.last_error.as_deref(), Some("fail 0"));
        assert_eq!(r.last_healthy, None);
    }

    #[test]
    fn healthy_needs_the_full_failure_threshold_and_a_success_resets_it() {
        let mut r = HealthRecord::default();
        let v = run(
            &mut r,
            Verdict::Healthy,
            &[false, false, true, false, false],
        );
        assert_eq!(v, Verdict::Healthy);
        assert_eq!(r.consecutive_failures, 2);
        assert_eq!(run(&mut r, v, &[false]), Verdict::Unhealthy);
    }

    #[test]
    fn unhealthy_needs_the_success_threshold_and_keeps_the_last_error() {
        let mut r = HealthRecord::default();
        let v = run(&mut r, Verdict::Unhealthy, &[true]);
        assert_eq!(v, Verdict::Unhealthy);
        assert_eq!(r.last_healthy, None);
        let v = run(&mut r, v, &[false, true, true]);
        assert_eq!(v, Verdict::Healthy);
        assert_eq!(r.consecutive_successes, 2);
        assert_eq!(r.consecutive_failures, 0);
        assert_eq!(r.last_error.as_deref(), Some("fail 0"));
        r.reset_counts();
        assert_eq!((r.consecutive_failures, r.consecutive_successes), (0, 0));
    }
}
