//! The checker's supervisor and probe loops over real snapshots: probes follow config
//! changes without restarting the others, verdicts follow a backend that dies and comes
//! back, and the circuit and passive ejection reach `PoolPlan::eligible`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_api::model::{
    Algorithm, Backend, BackendAddress, BackendStatus, CheckKind, CircuitBreakerConfig,
    CircuitState, HealthCheck, Pool, Scope,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::scheduler::{apply, Supervisor};
use super::{report, CheckError, Outcome, PolicyDefaults, Timings};
use crate::fleet::{Assignment, ProbeShard};
use crate::resolve::{Resolver, ResolverConfig};
use crate::settings::{CircuitBreakerSettings, HealthCheckSettings};
use crate::snapshot::{PoolPlan, Snapshot, SnapshotCell};
use crate::state::{RuntimeState, Verdict};

pub(crate) fn tcp_check(interval: u32, healthy: u32, unhealthy: u32) -> HealthCheck {
    HealthCheck {
        id: "hc".into(),
        kind: CheckKind::Tcp,
        interval_seconds: interval,
        timeout_seconds: 1,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
        enabled: true,
    }
}

pub(crate) fn pool(
    id: &str,
    check: Option<HealthCheck>,
    circuit: Option<CircuitBreakerConfig>,
) -> Pool {
    Pool {
        id: id.into(),
        lb_id: "lb".into(),
        scope: Scope {
            org_id: "o".into(),
            project_id: None,
        },
        name: id.into(),
        algorithm: Algorithm::RoundRobin,
        health_check: check,
        session_persistence: None,
        circuit_breaker: circuit,
        proxy_protocol: None,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

pub(crate) fn backend(id: &str, pool: &str, addr: SocketAddr) -> Backend {
    Backend {
        id: id.into(),
        pool_id: pool.into(),
        lb_id: "lb".into(),
        scope: Scope {
            org_id: "o".into(),
            project_id: None,
        },
        name: id.into(),
        address: BackendAddress::Ip(addr.ip()),
        port: addr.port(),
        weight: 1,
        status: BackendStatus::Active,
        enabled: true,
        backup: false,
        max_connections: None,
        metadata: BTreeMap::new(),
        drain_deadline: None,
        remove_after_drain: false,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

pub(crate) fn plan(rt: &RuntimeState, pool: Pool, backends: Vec<Backend>) -> Arc<PoolPlan> {
    Arc::new(PoolPlan::new(pool, backends, rt))
}

pub(crate) fn snapshot(revision: u64, plans: Vec<Arc<PoolPlan>>) -> Snapshot {
    Snapshot {
        revision,
        pools: plans.into_iter().map(|p| (p.pool.id.clone(), p)).collect(),
        ..Snapshot::default()
    }
}

fn defaults() -> PolicyDefaults {
    PolicyDefaults {
        health_check: HealthCheckSettings {
            check_jitter_percent: 0,
            ..HealthCheckSettings::default()
        },
        ..PolicyDefaults::default()
    }
}

fn supervisor() -> Supervisor {
    Supervisor::new(
        Resolver::new(ResolverConfig::default()),
        None,
        &defaults().health_check,
        ::http::HeaderValue::from_static("fiberlb-health-check/test"),
    )
}

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn probes_follow_snapshot_changes_without_restarting_the_others() {
    let rt = RuntimeState::default();
    let mut sup = supervisor();
    let a = backend("a", "p", addr(1));
    let b = backend("b", "p", addr(2));
    let checked = || pool("p", Some(tcp_check(30, 2, 2)), None);

    sup.reconcile(
        &snapshot(1, vec![plan(&rt, checked(), vec![a.clone()])]),
        &defaults(),
        &Assignment::local(),
    );
    let a_task = sup.probes["a"].task.id();
    assert_eq!(
        rt.backend("a").verdict(),
        Verdict::Unknown,
        "a new backend starts unknown"
    );

    // Adding b starts its probe and leaves a's alone.
    sup.reconcile(
        &snapshot(2, vec![plan(&rt, checked(), vec![a.clone(), b.clone()])]),
        &defaults(),
        &Assignment::local(),
    );
    assert_eq!(sup.probes.len(), 2);
    assert_eq!(sup.probes["a"].task.id(), a_task);
    assert_eq!(rt.backend("b").verdict(), Verdict::Unknown);

    // Changing b's port restarts only b.
    let b_task = sup.probes["b"].task.id();
    let b2 = backend("b", "p", addr(3));
    sup.reconcile(
        &snapshot(3, vec![plan(&rt, checked(), vec![a.clone(), b2.clone()])]),
        &defaults(),
        &Assignment::local(),
    );
    assert_eq!(sup.probes["a"].task.id(), a_task);
    assert_ne!(sup.probes["b"].task.id(), b_task);

    // Removing the check stops both and resets a verdict the probes had set.
    rt.backend("a").set_verdict(Verdict::Unhealthy);
    sup.reconcile(
        &snapshot(
            4,
            vec![plan(
                &rt,
                pool("p", None, None),
                vec![a.clone(), b2.clone()],
            )],
        ),
        &defaults(),
        &Assignment::local(),
    );
    assert!(sup.probes.is_empty());
    assert_eq!(rt.backend("a").verdict(), Verdict::Unknown);
    assert!(
        rt.backend("a").is_healthy(false),
        "serves again without a check"
    );

    // Adding a check to a pool whose backends were serving keeps them serving.
    sup.reconcile(
        &snapshot(5, vec![plan(&rt, checked(), vec![a.clone(), b2.clone()])]),
        &defaults(),
        &Assignment::local(),
    );
    assert_eq!(rt.backend("a").verdict(), Verdict::Healthy);
    assert_eq!(sup.probes.len(), 2);

    // A new pool created with a check does not get that treatment.
    let c = backend("c", "q", addr(4));
    let q = pool("q", Some(tcp_check(30, 2, 2)), None);
    sup.reconcile(
        &snapshot(
            6,
            vec![plan(&rt, checked(), vec![a, b2]), plan(&rt, q, vec![c])],
        ),
        &defaults(),
        &Assignment::local(),
    );
    assert_eq!(rt.backend("c").verdict(), Verdict::Unknown);

    // Removing everything stops every probe.
    sup.reconcile(&snapshot(7, vec![]), &defaults(), &Assignment::local());
    assert!(sup.probes.is_empty());
}

/// Polls `f` every 20 ms until it holds, failing after `within`.
async fn until(within: Duration, what: &str, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_probe_loop_tracks_a_backend_that_dies_and_comes_back() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let rt = RuntimeState::default();
    let cell = Arc::new(SnapshotCell::default());
    cell.publish(snapshot(
        1,
        vec![plan(
            &rt,
            pool("p", Some(tcp_check(1, 2, 2)), None),
            vec![backend("a", "p", a)],
        )],
    ));
    let (stop_tx, stop) = watch::channel(false);
    let checker = tokio::spawn(super::run(
        cell.clone(),
        Resolver::new(ResolverConfig::default()),
        defaults(),
        None,
        ProbeShard::local(),
        stop,
    ));
    let st = rt.backend("a");
    until(Duration::from_secs(3), "first success", || {
        st.verdict() == Verdict::Healthy
    })
    .await;
    assert!(st.is_healthy(true));

    drop(l);
    let took = until(Duration::from_secs(4), "two failures", || {
        st.verdict() == Verdict::Unhealthy
    })
    .await;
    assert!(
        took <= Duration::from_millis(2_500),
        "interval 1 s, threshold 2: took {took:?}"
    );
    let h = st.health_status(true);
    assert!(!h.healthy && h.consecutive_failures >= 2, "{h:?}");
    assert!(
        h.last_error.as_deref().unwrap_or("").contains("refused"),
        "{h:?}"
    );

    let l = TcpListener::bind(a).await.unwrap();
    until(Duration::from_secs(4), "two successes", || {
        st.verdict() == Verdict::Healthy
    })
    .await;
    assert!(st.health_status(true).consecutive_successes >= 2);
    assert!(st.health_status(true).last_healthy.is_some());
    drop(l);

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), checker)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_open_circuit_and_a_passive_ejection_make_a_backend_ineligible() {
    let rt = RuntimeState::default();
    let cb = CircuitBreakerConfig {
        enabled: true,
        failure_threshold: 2,
        ..CircuitBreakerConfig::default()
    };
    let p = plan(
        &rt,
        pool("p", None, Some(cb)),
        vec![backend("a", "p", addr(1)), backend("b", "p", addr(2))],
    );
    let mut sup = supervisor();
    sup.reconcile(
        &snapshot(1, vec![p.clone()]),
        &defaults(),
        &Assignment::local(),
    );
    assert_eq!(p.eligible()[..], [true, true]);

    // Two failures open a's circuit (the breaker's threshold is below passive's 5).
    report(&p.states[0], Outcome::ConnectFailed);
    report(&p.states[0], Outcome::Timeout);
    assert_eq!(p.states[0].circuit_state(), CircuitState::Open);
    assert_eq!(p.eligible()[..], [false, true]);
    assert!(
        p.states[0].health_status(false).healthy,
        "an open circuit is not a health verdict"
    );

    // Five failures of b eject it: passive health.
    for _ in 0..5 {
        report(&p.states[1], Outcome::Reset);
    }
    assert_eq!(p.eligible()[..], [false, false]);
    let h = p.states[1].health_status(false);
    assert!(!h.healthy && h.last_error.unwrap_or_default().contains("ejected for 30s"));
}

#[test]
fn an_active_success_ends_a_passive_ejection() {
    let rt = RuntimeState::default();
    let st = rt.backend("a");
    for _ in 0..5 {
        report(&st, Outcome::ConnectFailed);
    }
    assert!(!st.is_healthy(false));
    let t = Timings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };
    apply(&st, &t, Err(CheckError::Timeout(Duration::from_secs(1))));
    assert!(!st.is_healthy(false), "a failed probe does not re-admit");
    apply(&st, &t, Ok(()));
    assert!(st.is_healthy(false));
    assert_eq!(
        st.verdict(),
        Verdict::Healthy,
        "never marked unhealthy: the first success decides"
    );
}

#[tokio::test]
async fn changed_circuit_defaults_reach_running_breakers() {
    let rt = RuntimeState::default();
    let cell = Arc::new(SnapshotCell::default());
    // The pool enables a breaker and leaves its thresholds to the node.
    let cb = CircuitBreakerConfig {
        enabled: true,
        failure_threshold: 0,
        success_threshold: 0,
        timeout_seconds: 0,
        ..CircuitBreakerConfig::default()
    };
    let p = plan(
        &rt,
        pool("p", None, Some(cb)),
        vec![backend("a", "p", addr(1))],
    );
    cell.publish(snapshot(1, vec![p.clone()]));
    let (defaults_tx, defaults_rx) = watch::channel(defaults());
    let (stop_tx, stop) = watch::channel(false);
    let checker = tokio::spawn(super::run(
        cell.clone(),
        Resolver::new(ResolverConfig::default()),
        defaults_rx,
        None,
        ProbeShard::local(),
        stop,
    ));
    let st = p.states[0].clone();
    let threshold =
        |st: &crate::state::BackendState| st.policy().circuit.as_ref().map(|c| c.failure_threshold);
    until(
        Duration::from_secs(5),
        "the node's default threshold",
        || threshold(&st) == Some(5),
    )
    .await;

    // A reload lowers the default: the running breaker follows without a new snapshot.
    defaults_tx.send_replace(PolicyDefaults {
        circuit_breaker: CircuitBreakerSettings {
            default_failure_threshold: 2,
            ..CircuitBreakerSettings::default()
        },
        ..defaults()
    });
    until(Duration::from_secs(5), "the reloaded threshold", || {
        threshold(&st) == Some(2)
    })
    .await;
    report(&st, Outcome::ConnectFailed);
    report(&st, Outcome::ConnectFailed);
    assert_eq!(st.circuit_state(), CircuitState::Open);

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), checker)
        .await
        .unwrap()
        .unwrap();
}
