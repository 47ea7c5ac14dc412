//! Durability: whatever a node acknowledged survives a `kill -9` of that node, three times
//! over on the same data directory, with the kill landing while creates are in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fiberlb_proto::v1 as pb;
use fiberlb_tests::{bounded, fixtures, Clients, Node};
use tokio::sync::watch;

/// Concurrent writers, so that a create is always in flight when the kill lands.
const WRITERS: usize = 4;
/// Creates per round before the kill (or [`ROUND_TIME`], whichever comes first).
const CREATES_PER_ROUND: usize = 150;
/// Longest a round writes before the kill.
const ROUND_TIME: Duration = Duration::from_secs(3);

/// Progress of a round, watched by the test to pick the moment of the kill.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    acked: usize,
    in_flight: usize,
}

struct Round {
    /// Creates that returned OK, by name.
    acked: Mutex<BTreeMap<String, pb::LoadBalancer>>,
    /// Names of every create sent (acknowledged or not).
    sent: Mutex<BTreeSet<String>>,
    progress: watch::Sender<Progress>,
    stop: AtomicBool,
}

/// Creates load balancers until told to stop or until the node stops answering.
async fn writer(mut c: Clients, round: Arc<Round>, counter: Arc<AtomicU64>, tag: usize) {
    while !round.stop.load(Ordering::SeqCst) {
        let name = format!("crash-{tag}-{}", counter.fetch_add(1, Ordering::SeqCst));
        let mut req = fixtures::lb(&name, "durable");
        req.description = Some(format!("written before kill {tag}"));
        req.tags.insert("n".into(), name.clone());
        round.sent.lock().expect("lock").insert(name.clone());
        round.progress.send_modify(|p| p.in_flight += 1);
        let res = c.lb.create_load_balancer(req).await;
        match res {
            Ok(lb) => {
                let n = {
                    let mut acked = round.acked.lock().expect("lock");
                    acked.insert(name, lb.into_inner());
                    acked.len()
                };
                round.progress.send_modify(|p| {
                    p.in_flight -= 1;
                    p.acked = n;
                });
            }
            // The node was killed under us (or a deadline passed): this writer is done.
            Err(_) => return,
        }
    }
}

/// Every load balancer of the org, through all pages.
async fn list_all(c: &mut Clients) -> anyhow::Result<Vec<pb::LoadBalancer>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "durable".into(),
                limit: 1000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(page.load_balancers);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("fiberlb-crash-")
        .tempdir()?;
    bounded(async {
        let counter = Arc::new(AtomicU64::new(0));
        let mut acked: BTreeMap<String, pb::LoadBalancer> = BTreeMap::new();
        let mut sent: BTreeSet<String> = BTreeSet::new();
        let mut node = Node::start_in(dir.path()).await?;
        for kill in 1..=3 {
            let (progress, mut watch_progress) = watch::channel(Progress::default());
            let round = Arc::new(Round {
                acked: Mutex::default(),
                sent: Mutex::default(),
                progress,
                stop: AtomicBool::new(false),
            });
            let admin = node.admin()?;
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    tokio::spawn(writer(
                        admin.clone(),
                        round.clone(),
                        counter.clone(),
                        kill * 10 + w,
                    ))
                })
                .collect();

            // Let them write, then kill while at least one create is in flight.
            // (Reaching the round's time limit is as good as reaching its count.)
            let _ = tokio::time::timeout(
                ROUND_TIME,
                watch_progress.wait_for(|p| p.acked >= CREATES_PER_ROUND),
            )
            .await;
            tokio::time::timeout(
                Duration::from_secs(10),
                watch_progress.wait_for(|p| p.in_flight > 0),
            )
            .await
            .map_err(|_| anyhow::anyhow!("round {kill}: no create in flight"))??;
            node.kill9();
            round.stop.store(true, Ordering::SeqCst);
            for w in writers {
                w.await?;
            }
            let round_acked = std::mem::take(&mut *round.acked.lock().expect("lock"));
            assert!(
                !round_acked.is_empty(),
                "round {kill}: nothing was acknowledged before the kill"
            );
            eprintln!(
                "round {kill}: {} creates acknowledged before kill -9",
                round_acked.len()
            );
            acked.extend(round_acked);
            sent.extend(std::mem::take(&mut *round.sent.lock().expect("lock")));

            // Restart on the same directory: the store opens, and everything acknowledged is there.
            node = Node::start_in(dir.path()).await?;
            let mut c = node.admin()?;
            for (name, created) in &acked {
                let got =
                    c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                        lb_id: created.id.clone(),
                    })
                    .await;
                let mut got = got
                    .map_err(|s| {
                        anyhow::anyhow!("after kill {kill}: acknowledged {name} is lost: {s}")
                    })?
                    .into_inner();
                let mut expected = created.clone();
                got.listeners.clear();
                expected.listeners.clear();
                assert_eq!(
                    got, expected,
                    "after kill {kill}: {name} differs from what was acknowledged"
                );
            }
            // Nothing appears that was never sent, and names stay unique.
            let listed = list_all(&mut c).await?;
            let names: BTreeSet<&str> = listed.iter().map(|lb| lb.name.as_str()).collect();
            assert_eq!(names.len(), listed.len(), "duplicate names after recovery");
            for lb in &listed {
                assert!(
                    sent.contains(&lb.name),
                    "{} exists but was never sent",
                    lb.name
                );
            }
            assert!(listed.len() >= acked.len());
            // The recovered store takes writes again.
            c.lb.create_load_balancer(fixtures::lb(&format!("after-kill-{kill}"), "other"))
                .await?;
        }
        Ok(())
    })
    .await
}
