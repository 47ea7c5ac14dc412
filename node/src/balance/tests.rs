//! Tests of the module as a whole, and helpers for the per-algorithm tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use fiberlb_api::model::Algorithm;

use super::*;

pub(super) const ALL: [Algorithm; 8] = [
    Algorithm::RoundRobin,
    Algorithm::LeastConnections,
    Algorithm::IpHash,
    Algorithm::Random,
    Algorithm::WeightedRoundRobin,
    Algorithm::LeastResponseTime,
    Algorithm::WeightedLeastConnections,
    Algorithm::Maglev,
];

/// A pick context for client number `n`.
pub(super) fn ctx(n: u32) -> PickContext {
    PickContext {
        client: SocketAddr::from((Ipv4Addr::from(0x0a00_0000u32.wrapping_add(n)), 40_000)),
    }
}

/// Primaries `backend-0`, `backend-1`, … with these weights.
pub(super) fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| endpoint(&format!("backend-{i}"), w, false))
        .collect()
}

pub(super) fn endpoint(id: &str, weight: u32, backup: bool) -> Endpoint {
    Endpoint {
        id: Arc::from(id),
        weight,
        backup,
        stats: Arc::default(),
    }
}

#[test]
fn empty_endpoint_list_gives_none_and_never_panics() {
    for a in ALL {
        let b = build(a, &[]);
        assert_eq!(b.pick(&ctx(1), &[]), None, "{a:?}");
        // A mask longer than the endpoint list is ignored past the end.
        assert_eq!(b.pick(&ctx(1), &[true, true]), None, "{a:?}");
    }
}

#[test]
fn nothing_eligible_gives_none() {
    let eps = endpoints(&[1, 2, 3]);
    for a in ALL {
        let b = build(a, &eps);
        for n in 0..20 {
            assert_eq!(b.pick(&ctx(n), &[false; 3]), None, "{a:?}");
        }
    }
}

#[test]
fn short_mask_counts_missing_entries_as_ineligible() {
    let eps = endpoints(&[1, 1, 1]);
    for a in ALL {
        let b = build(a, &eps);
        for n in 0..50 {
            assert_eq!(b.pick(&ctx(n), &[true]), Some(0), "{a:?}");
            assert_eq!(b.pick(&ctx(n), &[]), None, "{a:?}");
        }
    }
}

#[test]
fn every_algorithm_picks_only_eligible_endpoints() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    for seed in 0..50u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(1..20);
        let weights: Vec<u32> = (0..n).map(|_| rng.random_range(0..=100)).collect();
        let eps = endpoints(&weights);
        for e in &eps {
            e.stats
                .active
                .store(rng.random_range(0..5), std::sync::atomic::Ordering::Relaxed);
        }
        let mask: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
        let any = mask.iter().any(|&m| m);
        for a in ALL {
            let b = build(a, &eps);
            for c in 0..30 {
                match b.pick(&ctx(rng.random()), &mask) {
                    Some(i) => assert!(mask[i], "seed {seed} {a:?} picked {i} (call {c})"),
                    None => assert!(!any, "seed {seed} {a:?} found nothing"),
                }
            }
        }
    }
}

#[test]
fn eligible_mask_prefers_usable_primaries() {
    let eps = vec![
        endpoint("p0", 1, false),
        endpoint("b0", 1, true),
        endpoint("p1", 1, false),
        endpoint("b1", 1, true),
    ];
    assert_eq!(
        eligible_mask(&eps, |_| true)[..],
        [true, false, true, false]
    );
    assert_eq!(
        eligible_mask(&eps, |i| i != 0)[..],
        [false, false, true, false]
    );
    // No primary usable: the usable backups.
    assert_eq!(
        eligible_mask(&eps, |i| i == 1 || i == 3)[..],
        [false, true, false, true]
    );
    assert_eq!(
        eligible_mask(&eps, |i| i == 3)[..],
        [false, false, false, true]
    );
    assert_eq!(eligible_mask(&eps, |_| false)[..], [false; 4]);
    assert!(eligible_mask(&[], |_| true).is_empty());
}

#[test]
fn backups_serve_only_when_all_primaries_are_down() {
    let eps = vec![
        endpoint("p0", 1, false),
        endpoint("p1", 3, false),
        endpoint("b0", 1, true),
        endpoint("b1", 2, true),
    ];
    for a in ALL {
        let b = build(a, &eps);
        // All healthy, or just one primary healthy: never a backup.
        for healthy in [
            [true, true, true, true],
            [false, true, true, true],
            [true, false, true, false],
        ] {
            let mask = eligible_mask(&eps, |i| healthy[i]);
            for n in 0..200 {
                let i = b.pick(&ctx(n), &mask).unwrap();
                assert!(!eps[i].backup, "{a:?} picked backup {i} with {healthy:?}");
            }
        }
        // Every primary down: only backups, and both of them get traffic.
        let mask = eligible_mask(&eps, |i| i >= 2);
        let mut seen = [false; 4];
        for n in 0..200 {
            let i = b.pick(&ctx(n), &mask).unwrap();
            assert!(eps[i].backup, "{a:?} picked primary {i}");
            seen[i] = true;
        }
        // (Weighted least connections sends idle picks to the heavier backup by design.)
        if a != Algorithm::WeightedLeastConnections {
            assert!(seen[2] && seen[3], "{a:?} {seen:?}");
        }
        // Primaries and backups all down.
        assert_eq!(b.pick(&ctx(1), &eligible_mask(&eps, |_| false)), None);
    }
}

#[test]
fn build_names_match() {
    let eps = endpoints(&[1, 1]);
    for a in ALL {
        let dbg = format!("{:?}", build(a, &eps));
        let expected = match a {
            Algorithm::RoundRobin => "RoundRobin",
            Algorithm::LeastConnections => "LeastConnections",
            Algorithm::IpHash => "IpHash",
            Algorithm::Random => "Random",
            Algorithm::WeightedRoundRobin => "WeightedRoundRobin",
            Algorithm::LeastResponseTime => "LeastResponseTime",
            Algorithm::WeightedLeastConnections => "WeightedLeastConnections",
            Algorithm::Maglev => "Maglev",
        };
        assert!(dbg.starts_with(expected), "{a:?} built {dbg}");
        assert!(!algorithm_name(a).is_empty());
    }
}

#[test]
fn room_counts_this_node_and_the_fleet() {
    let s = BackendStats::default();
    assert!(s.has_room(None), "no limit");
    assert!(s.has_room(Some(3)));
    s.active.store(2, Ordering::Relaxed);
    assert!(s.has_room(Some(3)));
    s.fleet_active.store(1, Ordering::Relaxed);
    assert!(!s.has_room(Some(3)), "2 here + 1 elsewhere = full");
    assert!(s.has_room(None));
    s.fleet_active.store(0, Ordering::Relaxed);
    s.active.store(3, Ordering::Relaxed);
    assert!(!s.has_room(Some(3)), "full on this node alone");
}

#[test]
fn acquire_stops_at_the_limit_and_counts_only_when_it_succeeds() {
    let s = BackendStats::default();
    s.fleet_active.store(1, Ordering::Relaxed);
    assert!(s.try_acquire(Some(3)));
    assert!(s.try_acquire(Some(3)));
    assert!(!s.try_acquire(Some(3)), "2 here + 1 elsewhere");
    assert_eq!(
        s.active.load(Ordering::Relaxed),
        2,
        "a refusal does not count"
    );
    assert!(s.try_acquire(None), "unlimited always counts");
    assert_eq!(s.active.load(Ordering::Relaxed), 3);
}

#[test]
fn racing_acquires_never_overshoot_on_one_node() {
    let s = Arc::new(BackendStats::default());
    let won = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, won) = (s.clone(), won.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if s.try_acquire(Some(50)) {
                        won.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(won.load(Ordering::Relaxed), 50);
    assert_eq!(s.active.load(Ordering::Relaxed), 50);
}
