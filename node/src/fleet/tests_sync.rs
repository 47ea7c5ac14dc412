//! The fleet task against a real (single, in-process) gossip driver and hand-made views:
//! merged verdicts, fleet connection counts, takeover and publishing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fiberlb_gossip::{Entry, Gossip, GossipConfig, GossipView, Keyring, Timing};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::sync::Sync;
use super::Assignment;
use crate::health::tests_scheduler::{addr, backend, plan, pool, snapshot, tcp_check};
use crate::snapshot::SnapshotCell;
use crate::state::{RuntimeState, Verdict};

async fn gossip(cancel: &CancellationToken) -> Gossip {
    fiberlb_gossip::start(
        GossipConfig {
            node_id: "me".into(),
            bind_addr: "127.0.0.1:0".parse().unwrap(),
            advertise_addr: None,
            api_addr: "127.0.0.1:1".parse().unwrap(),
            seeds: vec![],
            keys: Keyring::new([3; 32], None),
            timing: Timing::lan(),
        },
        cancel.clone(),
    )
    .await
    .unwrap()
}

fn view(live: &[&str], entries: Vec<(&str, Entry)>) -> GossipView {
    GossipView {
        members: vec![],
        live: live.iter().map(|s| s.to_string()).collect(),
        entries: entries
            .into_iter()
            .map(|(o, e)| (o.to_string(), e))
            .collect(),
    }
}

fn health(b: &str, healthy: bool) -> Entry {
    Entry::Health {
        backend_id: b.into(),
        healthy,
        observed_at_ms: 1,
    }
}

struct Fixture {
    sync: Sync,
    rt: Arc<RuntimeState>,
    assignment: watch::Receiver<Arc<Assignment>>,
    _cancel: tokio_util::sync::DropGuard,
}

/// `me` with one checked pool of `ids`.
async fn fixture(ids: &[&str]) -> Fixture {
    let cancel = CancellationToken::new();
    let g = gossip(&cancel).await;
    let rt = Arc::new(RuntimeState::default());
    let cell = Arc::new(SnapshotCell::default());
    let backends = ids
        .iter()
        .enumerate()
        .map(|(i, id)| backend(id, "p", addr(1000 + i as u16)))
        .collect();
    cell.publish(snapshot(
        1,
        vec![plan(
            &rt,
            pool("p", Some(tcp_check(1, 2, 2)), None),
            backends,
        )],
    ));
    let (tx, rx) = watch::channel(Arc::new(Assignment::fleet("me", vec![], 2)));
    Fixture {
        sync: Sync {
            gossip: g,
            node_id: "me".into(),
            k: 2,
            cell,
            state: rt.clone(),
            assignment: tx,
            published: HashMap::new(),
        },
        rt,
        assignment: rx,
        _cancel: cancel.drop_guard(),
    }
}

const MEMBERS: [&str; 3] = ["me", "n1", "n2"];

/// A backend id whose probers among [`MEMBERS`] (k = 2) do / do not include `me`.
fn backend_probed_by_me(yes: bool) -> String {
    let live: Vec<String> = MEMBERS.iter().map(|s| s.to_string()).collect();
    (0..)
        .map(|i| format!("b{i}"))
        .find(|id| fiberlb_gossip::probers(id, &live, 2).contains(&"me".to_string()) == yes)
        .unwrap()
}

#[tokio::test]
async fn non_probers_follow_the_probers_and_count_the_fleets_connections() {
    let theirs = backend_probed_by_me(false);
    let mut f = fixture(&[&theirs]).await;
    let st = f.rt.backend(&theirs);
    st.set_verdict(Verdict::Healthy); // stale own view: must not matter
    f.sync.apply(&view(
        &MEMBERS,
        vec![
            ("n1", health(&theirs, true)),
            ("n2", health(&theirs, false)),
            (
                "n1",
                Entry::Connections {
                    backend_id: theirs.clone(),
                    count: 3,
                },
            ),
            (
                "n2",
                Entry::Connections {
                    backend_id: theirs.clone(),
                    count: 4,
                },
            ),
            (
                "me",
                Entry::Connections {
                    backend_id: theirs.clone(),
                    count: 100,
                },
            ),
        ],
    ));
    assert_eq!(
        st.verdict(),
        Verdict::Unhealthy,
        "one prober says unhealthy"
    );
    assert!(!st.is_healthy(true));
    assert_eq!(st.own_verdict(), Verdict::Healthy);
    assert!(st
        .details()
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("n2")));
    assert_eq!(st.stats.fleet_active.load(Ordering::Relaxed), 7);
    assert_eq!(f.assignment.borrow().live(), MEMBERS.map(String::from));
    assert!(!f.assignment.borrow().probes_here(&theirs));

    // Both probers healthy again.
    f.sync.apply(&view(
        &MEMBERS,
        vec![("n1", health(&theirs, true)), ("n2", health(&theirs, true))],
    ));
    assert_eq!(st.verdict(), Verdict::Healthy);
    assert_eq!(st.stats.fleet_active.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_node_taking_over_a_probe_starts_from_the_fleets_verdict() {
    let theirs = backend_probed_by_me(false);
    let mut f = fixture(&[&theirs]).await;
    let st = f.rt.backend(&theirs);
    // A verdict from long ago, when this node last probed it.
    st.set_verdict(Verdict::Unhealthy);
    let prober = fiberlb_gossip::probers(&theirs, &MEMBERS.map(String::from), 2);
    let entries = || {
        prober
            .iter()
            .map(|p| (p.as_str(), health(&theirs, true)))
            .collect::<Vec<_>>()
    };
    f.sync.apply(&view(&MEMBERS, entries()));
    assert_eq!(st.verdict(), Verdict::Healthy);
    // One of its probers dies: with two members left, `me` probes it too.
    let survivor = prober[0].as_str();
    f.sync.apply(&view(&["me", survivor], entries()));
    assert!(f.assignment.borrow().probes_here(&theirs));
    assert_eq!(
        st.own_verdict(),
        Verdict::Healthy,
        "adopted the fleet's view"
    );
    assert_eq!(st.verdict(), Verdict::Healthy, "no flap on takeover");
    // Its own probes now count: a failure verdict takes it out at once.
    st.set_verdict(Verdict::Unhealthy);
    assert_eq!(st.verdict(), Verdict::Unhealthy);
}

#[tokio::test]
async fn a_prober_gossips_its_verdict_and_counts_once_they_change() {
    let mine = backend_probed_by_me(true);
    let mut f = fixture(&[&mine]).await;
    f.sync.apply(&view(&MEMBERS, vec![]));
    let st = f.rt.backend(&mine);
    st.set_verdict(Verdict::Unhealthy);
    st.stats.active.store(5, Ordering::Relaxed);
    f.sync.publish(false).await;
    assert_eq!(
        f.sync.published[&mine].connections, 0,
        "counts wait for the tick"
    );
    f.sync.publish(true).await;
    let want = [
        Entry::Health {
            backend_id: mine.clone(),
            healthy: false,
            observed_at_ms: 0,
        },
        Entry::Connections {
            backend_id: mine.clone(),
            count: 5,
        },
    ];
    let mut views = f.sync.gossip.subscribe();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let own: Vec<Entry> = views
                .borrow_and_update()
                .entries
                .iter()
                .filter(|(o, _)| o == "me")
                .map(|(_, e)| match e {
                    Entry::Health {
                        backend_id,
                        healthy,
                        ..
                    } => Entry::Health {
                        backend_id: backend_id.clone(),
                        healthy: *healthy,
                        observed_at_ms: 0,
                    },
                    e => e.clone(),
                })
                .collect();
            if want.iter().all(|w| own.contains(w)) {
                return own;
            }
            views.changed().await.unwrap();
        }
    })
    .await;
    assert!(got.is_ok(), "own entries never appeared in the view");
    // The backend leaves the configuration: its count drops to zero once.
    f.sync.cell.publish(snapshot(2, vec![]));
    f.sync.publish(true).await;
    assert!(f.sync.published.is_empty());
}
