//! Backend capacity (`max_connections`) as the data plane sees it through a [`PoolPlan`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use fiberlb_api::model::{Algorithm, Backend, BackendAddress, BackendStatus, Pool, Scope};

use super::PoolPlan;
use crate::state::RuntimeState;

fn scope() -> Scope {
    Scope {
        org_id: "o".into(),
        project_id: None,
    }
}

fn backend(id: &str, backup: bool, max_connections: Option<u32>) -> Backend {
    Backend {
        id: id.into(),
        pool_id: "p".into(),
        lb_id: "lb".into(),
        scope: scope(),
        name: id.into(),
        address: BackendAddress::Ip([10, 0, 0, 1].into()),
        port: 80,
        weight: 1,
        status: BackendStatus::Active,
        enabled: true,
        backup,
        max_connections,
        metadata: BTreeMap::new(),
        drain_deadline: None,
        remove_after_drain: false,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

fn plan(rt: &RuntimeState, backends: Vec<Backend>) -> PoolPlan {
    let pool = Pool {
        id: "p".into(),
        lb_id: "lb".into(),
        scope: scope(),
        name: "p".into(),
        algorithm: Algorithm::RoundRobin,
        health_check: None,
        session_persistence: None,
        circuit_breaker: None,
        proxy_protocol: None,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    };
    PoolPlan::new(pool, backends, rt)
}

#[test]
fn a_backend_is_full_by_local_plus_fleet_count() {
    let rt = RuntimeState::default();
    let p = plan(
        &rt,
        vec![backend("a", false, Some(2)), backend("b", false, None)],
    );
    assert!(p.has_room(0) && p.has_room(1));
    p.states[0].stats.active.store(1, Ordering::Relaxed);
    assert!(p.has_room(0), "1 of 2");
    p.states[0].stats.fleet_active.store(1, Ordering::Relaxed);
    assert!(!p.has_room(0), "1 here + 1 on another node = 2 of 2");
    p.states[1].stats.active.store(1_000_000, Ordering::Relaxed);
    assert!(p.has_room(1), "unlimited");
    assert!(!p.has_room(7), "no such backend");
    assert!(!p.at_capacity(), "b still has room");
}

#[test]
fn capacity_is_not_health() {
    let rt = RuntimeState::default();
    let p = plan(
        &rt,
        vec![backend("a", false, Some(1)), backend("spare", true, None)],
    );
    p.states[0].stats.active.store(1, Ordering::Relaxed);
    assert!(!p.has_room(0));
    assert_eq!(
        p.eligible()[..],
        [true, false],
        "a full primary keeps the backup out and stays eligible (BGP keeps the VIP)"
    );
    assert!(p.at_capacity());
    p.states[0].stats.active.store(0, Ordering::Relaxed);
    assert!(!p.at_capacity());
}

#[test]
fn an_empty_or_unhealthy_pool_is_not_at_capacity() {
    let rt = RuntimeState::default();
    assert!(!plan(&rt, Vec::new()).at_capacity());
    let mut b = backend("off", false, Some(1));
    b.enabled = false;
    let p = plan(&rt, vec![b]);
    p.states[0].stats.active.store(5, Ordering::Relaxed);
    assert!(
        !p.at_capacity(),
        "disabled: no healthy backend, not a full one"
    );
}

#[test]
fn a_full_backend_is_skipped_at_pick_time() {
    use crate::balance::PickContext;
    use crate::proxy::connect::{pick_addr, Picked};
    use crate::resolve::{Resolver, ResolverConfig};

    let rt = RuntimeState::default();
    let mut b = backend("b", false, None);
    b.port = 81;
    let p = plan(&rt, vec![backend("a", false, Some(2)), b]);
    let resolver = Resolver::new(ResolverConfig::default());
    let ctx = PickContext {
        client: ([192, 0, 2, 1], 5000).into(),
    };
    let pick = |eligible: &mut [bool]| match pick_addr(&p, eligible, &ctx, &resolver) {
        Picked::Addr(i, _) => Some(i),
        Picked::Unusable(why) => panic!("{why}"),
        Picked::Nothing => None,
    };
    // Room on both: round robin alternates.
    let mut seen: Vec<usize> = (0..4).filter_map(|_| pick(&mut p.eligible())).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 0, 1, 1]);

    // a holds 1 here and 1 elsewhere in the fleet: every pick lands on b.
    p.states[0].stats.active.store(1, Ordering::Relaxed);
    p.states[0].stats.fleet_active.store(1, Ordering::Relaxed);
    for _ in 0..4 {
        assert_eq!(pick(&mut p.eligible()), Some(1));
    }
    // Without b (a retry already tried it), nothing is left; the pool is not "at
    // capacity" though, since b has room.
    let mut only_a = vec![true, false];
    assert_eq!(pick(&mut only_a), None);
    assert!(!p.at_capacity());
}
