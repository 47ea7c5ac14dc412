//! The per-pool rules a backend's health follows, resolved once per snapshot from the pool
//! and the node's `[health_check]` and `[circuit_breaker]` defaults, and stored in each
//! backend's state so that passive reports from the data plane (which only hold the
//! backend) know their thresholds.

use std::time::Duration;

use fiberlb_api::model::{HealthCheck, Pool};

use super::circuit::CircuitConfig;
use crate::settings::{CircuitBreakerSettings, HealthCheckSettings, Settings};

/// Consecutive passive failures that eject a backend of a pool without an active check.
pub const PASSIVE_THRESHOLD_WITHOUT_CHECK: u32 = 5;
/// First ejection of a backend of a pool without an active check; doubles on each repeat.
pub const PASSIVE_BACKOFF_WITHOUT_CHECK: Duration = Duration::from_secs(30);
/// Longest ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The node-wide defaults pools' rules fall back to. SIGHUP may change them; the checker
/// then resolves every pool's [`Policy`] again, so they apply live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDefaults {
    /// `[health_check]`: zeros in a pool's health check take these.
    pub health_check: HealthCheckSettings,
    /// `[circuit_breaker]`: zeros in a pool's enabled breaker take these.
    pub circuit_breaker: CircuitBreakerSettings,
}

impl PolicyDefaults {
    /// The defaults of `settings`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            health_check: settings.health_check.clone(),
            circuit_breaker: settings.circuit_breaker.clone(),
        }
    }
}

/// A pool's active-check timings with zeros replaced by the node defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timings {
    /// Between two probes of one backend.
    pub interval: Duration,
    /// A probe fails if it takes longer.
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy backend healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy backend unhealthy.
    pub unhealthy_threshold: u32,
}

impl Timings {
    /// `check`'s timings; a 0 takes the `[health_check]` default. The timeout never
    /// exceeds the interval (probes of one backend never overlap).
    pub fn resolve(check: &HealthCheck, d: &HealthCheckSettings) -> Self {
        let secs = |v: u32, default: u64| {
            Duration::from_secs(if v == 0 { default } else { u64::from(v) }.max(1))
        };
        let n = |v: u32, default: u32| if v == 0 { default } else { v }.max(1);
        let interval = secs(check.interval_seconds, d.default_interval_seconds);
        Self {
            interval,
            timeout: secs(check.timeout_seconds, d.default_timeout_seconds).min(interval),
            healthy_threshold: n(check.healthy_threshold, d.default_healthy_threshold),
            unhealthy_threshold: n(check.unhealthy_threshold, d.default_unhealthy_threshold),
        }
    }
}

/// What a backend's health follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The pool has an enabled active check (and its timings).
    pub active: Option<Timings>,
    /// Consecutive passive failures that eject the backend.
    pub passive_threshold: u32,
    /// First ejection; doubles with each repeat, capped at [`MAX_EJECTION`].
    pub ejection_base: Duration,
    /// The circuit breaker, if enabled.
    pub circuit: Option<CircuitConfig>,
}

impl Default for Policy {
    /// A pool without active check or breaker (used until the checker has seen the pool).
    fn default() -> Self {
        Self {
            active: None,
            passive_threshold: PASSIVE_THRESHOLD_WITHOUT_CHECK,
            ejection_base: PASSIVE_BACKOFF_WITHOUT_CHECK,
            circuit: None,
        }
    }
}

impl Policy {
    /// The policy of `pool`'s backends. With an active check, passive detection uses its
    /// unhealthy threshold and ejects for one check interval first (the next probes decide
    /// sooner anyway); without one, 5 failures and 30 s. The pool's breaker, if enabled,
    /// takes unset fields from the `[circuit_breaker]` defaults.
    pub fn for_pool(pool: &Pool, defaults: &PolicyDefaults) -> Self {
        let active = pool
            .health_check
            .as_ref()
            .filter(|h| h.enabled)
            .map(|h| Timings::resolve(h, &defaults.health_check));
        let circuit =
            CircuitConfig::from_model(pool.circuit_breaker.as_ref(), &defaults.circuit_breaker);
        match active {
            Some(t) => Self {
                active,
                passive_threshold: t.unhealthy_threshold,
                ejection_base: t.interval.min(MAX_EJECTION),
                circuit,
            },
            None => Self {
                circuit,
                ..Self::default()
            },
        }
    }

    /// The ejection after `previous` earlier ones: base × 2^previous, at most [`MAX_EJECTION`].
    pub fn ejection(&self, previous: u32) -> Duration {
        let factor = 1u32.checked_shl(previous.min(16)).unwrap_or(u32::MAX);
        self.ejection_base.saturating_mul(factor).min(MAX_EJECTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiberlb_api::model::CheckKind;

    fn check(interval: u32, timeout: u32, healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            id: "hc".into(),
            kind: CheckKind::Tcp,
            interval_seconds: interval,
            timeout_seconds: timeout,
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            enabled: true,
        }
    }

    #[test]
    fn zeros_take_the_defaults_and_the_timeout_fits_the_interval() {
        let d = HealthCheckSettings::default();
        let t = Timings::resolve(&check(0, 0, 0, 0), &d);
        assert_eq!(t.interval, Duration::from_secs(30));
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert_eq!((t.healthy_threshold, t.unhealthy_threshold), (2, 3));
        let t = Timings::resolve(&check(1, 5, 4, 2), &d);
        assert_eq!(t.interval, Duration::from_secs(1));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.healthy_threshold, t.unhealthy_threshold), (4, 2));
    }

    #[test]
    fn pools_follow_the_node_defaults_but_get_a_breaker_only_if_they_enable_one() {
        use crate::health::tests_scheduler::pool;
        use fiberlb_api::model::CircuitBreakerConfig;
        let d = PolicyDefaults {
            health_check: HealthCheckSettings {
                default_unhealthy_threshold: 7,
                ..HealthCheckSettings::default()
            },
            circuit_breaker: CircuitBreakerSettings {
                default_failure_threshold: 11,
                default_success_threshold: 6,
                default_timeout_seconds: 15,
            },
        };
        let p = Policy::for_pool(&pool("p", Some(check(0, 0, 0, 0)), None), &d);
        assert_eq!(p.passive_threshold, 7);
        assert_eq!(
            p.circuit, None,
            "spec 3.7: no breaker unless the pool enables one"
        );
        let unset = CircuitBreakerConfig {
            enabled: true,
            failure_threshold: 0,
            success_threshold: 0,
            timeout_seconds: 0,
            ..CircuitBreakerConfig::default()
        };
        let c = Policy::for_pool(&pool("p", None, Some(unset.clone())), &d)
            .circuit
            .expect("enabled");
        assert_eq!((c.failure_threshold, c.success_threshold), (11, 6));
        assert_eq!(c.open_for, Duration::from_secs(15));
        assert_eq!(
            c.min_request_volume, 10,
            "no node default: the pool's value"
        );
        let own = CircuitBreakerConfig {
            failure_threshold: 2,
            ..unset
        };
        let c = Policy::for_pool(&pool("p", None, Some(own)), &d)
            .circuit
            .expect("enabled");
        assert_eq!((c.failure_threshold, c.success_threshold), (2, 6));
    }

    #[test]
    fn ejections_double_up_to_five_minutes() {
        let p = Policy::default();
        assert_eq!(p.ejection(0), Duration::from_secs(30));
        assert_eq!(p.ejection(1), Duration::from_secs(60));
        assert_eq!(p.ejection(3), Duration::from_secs(240));
        assert_eq!(p.ejection(4), MAX_EJECTION);
        assert_eq!(p.ejection(u32::MAX), MAX_EJECTION);
        let p = Policy {
            ejection_base: Duration::from_secs(1),
            ..Policy::default()
        };
        assert_eq!(p.ejection(2), Duration::from_secs(4));
    }
}
