//! Three real drivers on 127.0.0.1 ephemeral ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_gossip::{
    start, Entry, Gossip, GossipConfig, GossipView, Keyring, MemberState, Timing,
};
use tokio_util::sync::CancellationToken;

const KEY: [u8; 32] = [0x42; 32];

async fn node(name: &str, seeds: Vec<SocketAddr>, cancel: &CancellationToken) -> Gossip {
    start(
        GossipConfig {
            node_id: name.into(),
            bind_addr: "127.0.0.1:0".parse().unwrap(),
            advertise_addr: None,
            api_addr: "127.0.0.1:9".parse().unwrap(),
            seeds,
            keys: Keyring::new(KEY, None),
            timing: Timing::lan(),
        },
        cancel.child_token(),
    )
    .await
    .unwrap()
}

/// Waits on the view watch (no sleeps) until `pred` holds or `limit` passes.
async fn wait_for(g: &Gossip, limit: Duration, pred: impl Fn(&GossipView) -> bool) -> bool {
    let mut rx = g.subscribe();
    let check = async {
        loop {
            if pred(&Arc::clone(&rx.borrow_and_update())) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::time::timeout(limit, check).await.is_ok()
}

fn state(v: &GossipView, id: &str) -> Option<MemberState> {
    v.members.iter().find(|m| m.id == id).map(|m| m.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_detect_a_crash_and_share_entries() {
    let cancel = CancellationToken::new();
    let a = node("a", vec![], &cancel).await;
    let b = node("b", vec![a.local_addr()], &cancel).await;
    let c = node("c", vec![a.local_addr()], &cancel).await;
    let all_alive = |v: &GossipView| {
        ["a", "b", "c"]
            .iter()
            .all(|id| state(v, id) == Some(MemberState::Alive))
    };
    for g in [&a, &b, &c] {
        assert!(
            wait_for(g, Duration::from_secs(10), all_alive).await,
            "{:?} sees {:?}",
            g.identity().node_id,
            g.members()
        );
    }

    // An entry published on b reaches a and c.
    let entry = Entry::Health {
        backend_id: "be-1".into(),
        healthy: false,
        observed_at_ms: 1,
    };
    b.publish(entry.clone()).await.unwrap();
    for g in [&a, &c] {
        let want = ("b".to_string(), entry.clone());
        assert!(
            wait_for(g, Duration::from_secs(5), |v| v.entries.contains(&want)).await,
            "entry missing on {}",
            g.identity().node_id
        );
    }

    // Stray datagrams are dropped without disturbing anyone.
    let stray = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wrong = fiberlb_gossip::seal(&Keyring::new([1; 32], None), [0; 12], b"forged");
    for d in [&b"garbage"[..], &[1u8; 3000][..], &wrong[..], &[][..]] {
        stray.send_to(d, a.local_addr()).await.unwrap();
    }

    // c crashes (no goodbye); a and b mark it down within 3 s and drop its entries.
    c.publish(Entry::Connections {
        backend_id: "be-1".into(),
        count: 3,
    })
    .await
    .unwrap();
    assert!(
        wait_for(&a, Duration::from_secs(5), |v| v
            .entries
            .iter()
            .any(|(o, _)| o == "c"))
        .await
    );
    c.abort();
    c.join().await;
    let started = Instant::now();
    for g in [&a, &b] {
        assert!(
            wait_for(g, Duration::from_secs(3), |v| {
                state(v, "c") == Some(MemberState::Down) && !v.live.contains(&"c".to_string())
            })
            .await,
            "{} still sees c as {:?}",
            g.identity().node_id,
            g.members()
        );
    }
    println!("crashed node marked down after {:?}", started.elapsed());
    assert!(
        wait_for(&a, Duration::from_secs(1), |v| v
            .entries
            .iter()
            .all(|(o, _)| o != "c"))
        .await
    );
    assert_eq!(
        state(&a.subscribe().borrow(), "b"),
        Some(MemberState::Alive)
    );

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), async {
        a.join().await;
        b.join().await;
    })
    .await
    .unwrap();
}
