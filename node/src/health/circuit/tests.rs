//! Every transition of the circuit breaker, on a fake clock.

use std::time::Duration;

use fiberlb_api::model::{CircuitBreakerConfig, CircuitState};

use super::*;

fn cfg() -> CircuitConfig {
    CircuitConfig {
        failure_threshold: 3,
        success_threshold: 2,
        open_for: Duration::from_secs(10),
        failure_rate_threshold: 0.5,
        min_request_volume: 4,
        slow_call_threshold: Duration::from_millis(100),
        slow_call_rate_threshold: 0.75,
        half_open_max_requests: 1,
    }
}

const OK: Call = Call {
    failed: false,
    duration: Duration::from_millis(1),
};
const FAIL: Call = Call {
    failed: true,
    duration: Duration::from_millis(1),
};
const SLOW: Call = Call {
    failed: false,
    duration: Duration::from_millis(100),
};

/// Admits and records one call at `now`.
fn call(c: &mut Circuit, outcome: Call, now: u64) {
    let t = c.try_admit(now).expect("admitted");
    c.record(Some(t), outcome, now);
}

fn opened(now: u64) -> Circuit {
    let mut c = Circuit::new(cfg());
    for _ in 0..3 {
        call(&mut c, FAIL, now);
    }
    assert_eq!(c.state(now), CircuitState::Open);
    c
}

fn half_open(now: u64) -> Circuit {
    let mut c = opened(now - 10_000);
    assert_eq!(c.state(now), CircuitState::HalfOpen);
    c
}

#[test]
fn closed_admits_everything() {
    let mut c = Circuit::new(cfg());
    for i in 0..100 {
        assert!(c.would_admit(i));
        call(&mut c, OK, i);
    }
    assert_eq!(c.state(100), CircuitState::Closed);
}

#[test]
fn closed_opens_at_exactly_the_consecutive_failure_threshold() {
    let mut c = Circuit::new(CircuitConfig {
        failure_rate_threshold: 0.0,
        ..cfg()
    });
    call(&mut c, FAIL, 0);
    call(&mut c, FAIL, 1);
    assert_eq!(c.state(1), CircuitState::Closed);
    call(&mut c, FAIL, 2);
    assert_eq!(c.state(2), CircuitState::Open);
    assert!(!c.would_admit(3));
    assert!(c.try_admit(3).is_none());
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut c = Circuit::new(CircuitConfig {
        failure_rate_threshold: 0.0,
        ..cfg()
    });
    for t in 0..10 {
        call(&mut c, FAIL, t);
        call(&mut c, FAIL, t);
        call(&mut c, OK, t);
    }
    assert_eq!(c.state(10), CircuitState::Closed);
}

#[test]
fn closed_opens_on_the_failure_rate_once_the_window_is_full() {
    let mut c = Circuit::new(CircuitConfig {
        failure_threshold: 100,
        ..cfg()
    });
    call(&mut c, FAIL, 0);
    call(&mut c, OK, 0);
    call(&mut c, FAIL, 0);
    // 2 of 3: above the rate, but fewer calls than min_request_volume.
    assert_eq!(c.state(0), CircuitState::Closed);
    call(&mut c, OK, 0);
    // 2 of 4 = 0.5 >= 0.5.
    assert_eq!(c.state(0), CircuitState::Open);
}

#[test]
fn a_rate_below_the_threshold_keeps_it_closed_and_old_calls_slide_out() {
    let mut c = Circuit::new(CircuitConfig {
        failure_threshold: 100,
        ..cfg()
    });
    call(&mut c, FAIL, 0);
    for t in 1..20 {
        call(&mut c, OK, t);
    }
    // Window is now [OK OK OK OK]; one failure makes 1/4 < 0.5.
    call(&mut c, FAIL, 20);
    assert_eq!(c.state(20), CircuitState::Closed);
    call(&mut c, OK, 21);
    call(&mut c, FAIL, 22);
    // [OK FAIL OK FAIL] = 0.5.
    assert_eq!(c.state(22), CircuitState::Open);
}

#[test]
fn closed_opens_on_the_slow_call_rate() {
    let mut c = Circuit::new(cfg());
    for t in 0..3 {
        call(&mut c, SLOW, t);
    }
    assert_eq!(c.state(3), CircuitState::Closed, "window not full yet");
    call(&mut c, OK, 3);
    // 3 slow of 4 = 0.75.
    assert_eq!(c.state(3), CircuitState::Open);
}

#[test]
fn rate_rules_set_to_zero_are_off() {
    let mut c = Circuit::new(CircuitConfig {
        failure_threshold: 100,
        failure_rate_threshold: 0.0,
        slow_call_rate_threshold: 0.0,
        ..cfg()
    });
    for t in 0..50 {
        call(&mut c, if t % 2 == 0 { FAIL } else { SLOW }, t);
    }
    assert_eq!(c.state(50), CircuitState::Closed);
}

#[test]
fn open_rejects_until_the_timeout_then_turns_half_open() {
    let mut c = opened(1_000);
    assert_eq!(c.reopens_at(), Some(11_000));
    assert!(!c.would_admit(10_999));
    assert!(c.try_admit(10_999).is_none());
    assert_eq!(c.state(10_999), CircuitState::Open);
    assert_eq!(c.state(11_000), CircuitState::HalfOpen);
    assert_eq!(c.reopens_at(), None);
}

#[test]
fn open_ignores_outcomes_of_calls_it_did_not_admit() {
    let mut c = opened(0);
    c.record(None, OK, 1);
    c.record(None, FAIL, 2);
    assert_eq!(c.state(3), CircuitState::Open);
    assert_eq!(
        c.reopens_at(),
        Some(10_000),
        "the open timer is not restarted"
    );
}

#[test]
fn half_open_caps_probes_in_flight_and_release_frees_a_slot() {
    let mut c = Circuit::new(CircuitConfig {
        half_open_max_requests: 2,
        ..cfg()
    });
    for _ in 0..3 {
        call(&mut c, FAIL, 0);
    }
    assert_eq!(c.state(10_000), CircuitState::HalfOpen);
    let a = c.try_admit(10_000).expect("first probe");
    let _b = c.try_admit(10_000).expect("second probe");
    assert!(!c.would_admit(10_000));
    assert!(c.try_admit(10_000).is_none(), "third probe refused");
    c.release(a);
    assert!(c.would_admit(10_000));
    assert!(c.try_admit(10_000).is_some());
}

#[test]
fn would_admit_takes_no_slot() {
    let mut c = half_open(20_000);
    for _ in 0..5 {
        assert!(c.would_admit(20_000));
    }
    assert!(c.try_admit(20_000).is_some());
    assert!(!c.would_admit(20_000));
}

#[test]
fn half_open_closes_after_the_success_threshold() {
    let mut c = half_open(20_000);
    call(&mut c, OK, 20_001);
    assert_eq!(
        c.state(20_001),
        CircuitState::HalfOpen,
        "one of two successes"
    );
    call(&mut c, OK, 20_002);
    assert_eq!(c.state(20_002), CircuitState::Closed);
    // Closed again with fresh counts: it takes the full threshold to open.
    call(&mut c, FAIL, 20_003);
    call(&mut c, FAIL, 20_003);
    assert_eq!(c.state(20_003), CircuitState::Closed);
}

#[test]
fn any_half_open_failure_reopens_and_restarts_the_timer() {
    let mut c = half_open(20_000);
    call(&mut c, OK, 20_001);
    call(&mut c, FAIL, 20_500);
    assert_eq!(c.state(20_500), CircuitState::Open);
    assert_eq!(c.reopens_at(), Some(30_500));
    assert_eq!(c.state(30_499), CircuitState::Open);
    assert_eq!(c.state(30_500), CircuitState::HalfOpen);
}

#[test]
fn a_slow_half_open_probe_reopens() {
    let mut c = half_open(20_000);
    call(&mut c, SLOW, 20_001);
    assert_eq!(c.state(20_001), CircuitState::Open);
}

#[test]
fn an_unticketed_failure_in_half_open_reopens() {
    let mut c = half_open(20_000);
    c.record(None, FAIL, 20_001);
    assert_eq!(c.state(20_001), CircuitState::Open);
}

#[test]
fn outcomes_from_an_earlier_period_are_ignored() {
    let mut c = Circuit::new(cfg());
    let early = c.try_admit(0).expect("closed admits");
    for _ in 0..3 {
        call(&mut c, FAIL, 1);
    }
    assert_eq!(c.state(10_001), CircuitState::HalfOpen);
    let probe = c.try_admit(10_001).expect("probe");
    // The call admitted while closed fails late: not a probe result.
    c.record(Some(early), FAIL, 10_002);
    assert_eq!(c.state(10_002), CircuitState::HalfOpen);
    c.release(early);
    assert!(
        !c.would_admit(10_002),
        "a stale release frees no probe slot"
    );
    c.record(Some(probe), OK, 10_003);
    call(&mut c, OK, 10_004);
    assert_eq!(c.state(10_004), CircuitState::Closed);
}

#[test]
fn a_config_change_keeps_the_state() {
    let mut c = opened(0);
    c.set_config(CircuitConfig {
        open_for: Duration::from_secs(1),
        ..cfg()
    });
    assert_eq!(c.state(999), CircuitState::Open);
    assert_eq!(c.state(1_000), CircuitState::HalfOpen);
}

#[test]
fn from_model_is_none_unless_enabled_and_zeros_take_the_node_defaults() {
    let d = CircuitBreakerSettings {
        default_failure_threshold: 9,
        default_success_threshold: 4,
        default_timeout_seconds: 120,
    };
    // Spec §3.7: no breaker unless the pool enables one, whatever the node defaults.
    assert!(CircuitConfig::from_model(None, &d).is_none());
    assert!(CircuitConfig::from_model(Some(&CircuitBreakerConfig::default()), &d).is_none());
    let m = CircuitBreakerConfig {
        enabled: true,
        failure_threshold: 0,
        success_threshold: 0,
        timeout_seconds: 0,
        failure_rate_threshold: 7.0,
        min_request_volume: 0,
        slow_call_threshold_ms: 0,
        slow_call_rate_threshold: f32::NAN,
        half_open_max_requests: 0,
    };
    let c = CircuitConfig::from_model(Some(&m), &d).expect("enabled");
    assert_eq!(c.failure_threshold, 9);
    assert_eq!(c.success_threshold, 4);
    assert_eq!(c.open_for, Duration::from_secs(120));
    assert_eq!(c.failure_rate_threshold, 1.0);
    assert_eq!(c.min_request_volume, 1);
    assert_eq!(c.slow_call_rate_threshold, 0.0);
    assert_eq!(c.half_open_max_requests, 1);
    // What the pool sets beats the node defaults.
    let m = CircuitBreakerConfig {
        enabled: true,
        ..CircuitBreakerConfig::default()
    };
    let c = CircuitConfig::from_model(Some(&m), &d).expect("enabled");
    assert_eq!((c.failure_threshold, c.success_threshold), (5, 3));
    assert_eq!(c.open_for, Duration::from_secs(60));
}

#[test]
fn the_cell_admits_without_a_breaker_and_mirrors_the_state() {
    let cell = CircuitCell::default();
    assert!(cell.would_admit(0));
    assert_eq!(cell.try_admit(0), Some(None));
    cell.record(None, FAIL, 0);
    assert_eq!(cell.state(0), CircuitState::Closed);

    cell.configure(Some(cfg()));
    assert!(cell.is_configured());
    for _ in 0..3 {
        let t = cell.try_admit(0).expect("admitted");
        cell.record(t, FAIL, 0);
    }
    assert_eq!(cell.state(5), CircuitState::Open);
    assert!(!cell.would_admit(5));
    assert_eq!(cell.try_admit(5), None);
    assert_eq!(cell.state(10_000), CircuitState::HalfOpen);
    let probe = cell.try_admit(10_000).expect("probe").expect("ticket");
    assert_eq!(cell.try_admit(10_000), None);
    cell.release(probe);
    assert!(cell.would_admit(10_000));

    // Removing the breaker closes it.
    cell.configure(None);
    assert!(!cell.is_configured());
    assert_eq!(cell.state(10_000), CircuitState::Closed);
    assert_eq!(state_code(CircuitState::HalfOpen), 1);
}
