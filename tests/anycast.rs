//! Anycast end to end (issue #7): three real `fiberlb serve` nodes on a shared etcd announce
//! an LB's VIP over BGP to a BIRD 2 router doing ECMP and to a GoBGP router, in network
//! namespaces the test creates (see `harness/anycast.rs` for the topology). Checked:
//! ECMP over the three nodes, clients answered by all three, `kill -9` withdrawn within
//! the hold time, `SIGTERM` withdrawn (after GRACEFUL_SHUTDOWN) before the listener closes
//! with no failed request, dead backends withdraw the VIP everywhere and a revived one
//! brings it back. Timings are printed.
//!
//! Needs root, `ip`, `bird`/`birdc` (Debian bird2), `gobgpd`/`gobgp` (Debian gobgpd) and
//! `etcd`; skips with a message when one is missing, and fails instead when
//! `FIBERLB_REQUIRE_BIRD=1` (CI) is set.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_tests::anycast::{self, node_ip, Lab, HOLD, VIP_POOL};
use fiberlb_tests::netns::{have, unavailable};
use fiberlb_tests::{bounded, cli, fixtures, http};

const BACKEND_PORTS: [u16; 2] = [8081, 8082];

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(node_ip(i))
}

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if let Some(why) = unavailable() {
        return Some(why);
    }
    for (bin, arg, pkg) in [
        ("bird", "--version", "bird2"),
        ("birdc", "--version", "bird2"),
        ("gobgpd", "--version", "gobgpd"),
        ("gobgp", "--version", "gobgpd"),
        ("etcd", "--version", "etcd-server"),
    ] {
        if !have(bin, arg) {
            return Some(format!("`{bin}` is not installed (Debian package {pkg})"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vip_follows_node_and_backend_health() -> anyhow::Result<()> {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("FIBERLB_REQUIRE_BIRD").is_none(),
            "FIBERLB_REQUIRE_BIRD is set but the anycast test cannot run: {why}"
        );
        eprintln!("skipping the anycast test: {why}");
        return Ok(());
    }
    bounded(scenario()).await
}

async fn scenario() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lab = Lab::start(3, &BACKEND_PORTS).await?;
    for i in 0..3 {
        lab.start_node(i).await?;
    }
    eprintln!("lab and three nodes up after {:?}", started.elapsed());

    // An LB with no VIP gets one from the pool; an HTTP listener on :80.
    let mut api = lab.node(0).api()?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb("web", "acme"))
        .await?
        .into_inner();
    let pool_net: ipnet::IpNet = VIP_POOL.parse()?;
    let vip: IpAddr = lb.vip.parse()?;
    assert!(pool_net.contains(&vip), "VIP {vip} not from {VIP_POOL}");
    let mut pool_req = fixtures::pool(&lb.id, "web");
    pool_req.health_check = Some(pb::HealthCheck {
        check_type: Some(pb::health_check::CheckType::Http(pb::HttpCheck {
            path: "/".into(),
            ..Default::default()
        })),
        interval: 1,
        timeout: 1,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        enabled: true,
        ..Default::default()
    });
    let pool = api.pool.create_pool(pool_req).await?.into_inner();
    for (n, port) in BACKEND_PORTS.iter().enumerate() {
        api.backend
            .add_backend(fixtures::backend(
                &pool.id,
                &format!("b{n}"),
                fixtures::ip(&fiberlb_tests::anycast::BACKEND.to_string()),
                u32::from(*port),
            ))
            .await?;
    }
    let mut listener = fixtures::listener(&lb.id, "http", pb::ListenerProtocol::Http, 80);
    listener.default_pool_id = Some(pool.id.clone());
    api.listener.create_listener(listener).await?;
    let created = Instant::now();

    // ECMP over the three nodes.
    let all = [ip(0), ip(1), ip(2)];
    let t = lab
        .wait_nexthops(vip, &all, created, Duration::from_secs(20))
        .await?;
    eprintln!("MEASURED: router has {vip} with 3 next hops {t:?} after the listener was created");
    wait_gobgp(&lab, &lb.vip, &all, Duration::from_secs(10)).await?;

    let served = spread(&lab, vip, 90).await?;
    eprintln!("90 new connections from the client, by node: {served:?}");
    for n in all {
        assert!(
            served.get(&n).copied().unwrap_or(0) > 0,
            "{n} answered none: {served:?}"
        );
    }
    observability(&lab, &lb).await?;

    // kill -9 node3: its session drops, the router withdraws it.
    lab.nodes[2]
        .as_mut()
        .expect("node3")
        .proc
        .signal(libc::SIGKILL);
    let killed = Instant::now();
    let t = lab
        .wait_nexthops(
            vip,
            &[ip(0), ip(1)],
            killed,
            Duration::from_secs(HOLD.into()),
        )
        .await?;
    eprintln!("MEASURED: kill -9 node3 -> router withdrew it after {t:?} (hold time {HOLD} s)");
    wait_gobgp(
        &lab,
        &lb.vip,
        &[ip(0), ip(1)],
        Duration::from_secs(HOLD.into()) * 2,
    )
    .await?;
    let served = spread(&lab, vip, 30).await?;
    assert!(
        served.keys().all(|n| *n != ip(2)),
        "a killed node answered: {served:?}"
    );
    eprintln!("after the kill, 30 requests by node: {served:?}");
    let crashed_lo = lab.lo_addresses(2);
    lab.nodes[2] = None;

    sigterm(&mut lab, vip, &lb.vip).await?;

    // Both come back; node3 adopts the VIP address its crashed predecessor left on lo.
    assert!(
        crashed_lo.contains(&vip.to_string()),
        "node3 had the VIP on lo: {crashed_lo}"
    );
    let restart = Instant::now();
    lab.start_node(1).await?;
    lab.start_node(2).await?;
    let t = lab
        .wait_nexthops(vip, &all, restart, Duration::from_secs(20))
        .await?;
    eprintln!("MEASURED: restarted nodes back in ECMP after {t:?}");

    // Every backend dead: every node withdraws and takes the VIP off lo.
    lab.kill_backend(0);
    lab.kill_backend(1);
    let dead = Instant::now();
    let t = lab
        .wait_nexthops(vip, &[], dead, Duration::from_secs(10))
        .await?;
    eprintln!("MEASURED: all backends killed -> VIP withdrawn by every node after {t:?}");
    wait_gobgp(&lab, &lb.vip, &[], Duration::from_secs(5)).await?;
    for i in 0..3 {
        let lo = lab.lo_addresses(i);
        assert!(!lo.contains(&format!("{vip}/32")), "node{} lo: {lo}", i + 1);
    }

    // One backend back: every node announces again.
    lab.revive_backend(0, BACKEND_PORTS[0]).await?;
    let back = Instant::now();
    let t = lab
        .wait_nexthops(vip, &all, back, Duration::from_secs(10))
        .await?;
    eprintln!("MEASURED: one backend revived -> 3 next hops again after {t:?}");
    wait_gobgp(&lab, &lb.vip, &all, Duration::from_secs(5)).await?;
    lab.get(vip).await?;
    eprintln!("anycast scenario took {:?}", started.elapsed());
    Ok(())
}

/// `n` requests on new connections; how many each node proxied.
async fn spread(lab: &Lab, vip: IpAddr, n: usize) -> anyhow::Result<BTreeMap<IpAddr, usize>> {
    let mut served = BTreeMap::new();
    for k in 0..n {
        let node = lab
            .get(vip)
            .await
            .map_err(|e| anyhow::anyhow!("request {k} failed: {e:#}"))?;
        *served.entry(node).or_insert(0) += 1;
    }
    Ok(served)
}

/// Waits until GoBGP has paths for `prefix` from exactly the nodes `from`.
async fn wait_gobgp(lab: &Lab, vip: &str, from: &[IpAddr], within: Duration) -> anyhow::Result<()> {
    let prefix = format!("{vip}/32");
    let deadline = Instant::now() + within;
    loop {
        let paths = lab.gobgp_paths(&prefix);
        let ok = paths.len() == from.len()
            && from
                .iter()
                .all(|n| paths.iter().any(|p| p.contains(&format!(" {n} "))));
        if ok {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "GoBGP paths for {prefix}: {paths:#?}, expected from {from:?}\n{}",
            lab.gobgp(&["neighbor"]).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sessions, VIPs and metrics as an operator sees them on node1.
async fn observability(lab: &Lab, lb: &pb::LoadBalancer) -> anyhow::Result<()> {
    let n = lab.node(0);
    let r = n
        .api()?
        .cluster
        .list_bgp_sessions(pb::ListBgpSessionsRequest {})
        .await?
        .into_inner();
    assert!(
        r.enabled && r.local_asn == fiberlb_tests::anycast::NODE_AS,
        "{r:?}"
    );
    assert_eq!(r.sessions.len(), 2, "{r:?}");
    for s in &r.sessions {
        assert_eq!(s.state, pb::BgpSessionState::Established as i32, "{s:?}");
        assert_eq!(s.routes_announced, 1, "{s:?}");
    }
    assert_eq!(r.announced_vips.len(), 1);
    assert_eq!(
        (
            r.announced_vips[0].vip.as_str(),
            r.announced_vips[0].lb_id.as_str()
        ),
        (lb.vip.as_str(), lb.id.as_str())
    );

    let out = cli::run_raw(&[
        "--endpoint".into(),
        n.grpc_url(),
        "--token".into(),
        n.token().into(),
        "node".into(),
        "bgp".into(),
    ])
    .await?
    .ok()?;
    assert!(
        out.contains("established") && out.contains(&lb.vip),
        "{out}"
    );
    eprintln!("fiberlb node bgp:\n{out}");

    let status = http::get(n.admin.addr, "/status.json").await?;
    let v: serde_json::Value = serde_json::from_str(&status.body)?;
    assert_eq!(v["bgp"]["sessions"][0]["state"], "established", "{v}");
    assert_eq!(v["bgp"]["vips"][0], lb.vip.as_str(), "{v}");
    let metrics = http::get(n.admin.addr, "/metrics").await?.body;
    assert!(
        metrics.contains("fiberlb_bgp_session_up{peer=\"10.99.1.1:179\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fiberlb_bgp_routes_announced 1"),
        "{metrics}"
    );
    let lo = lab.lo_addresses(0);
    assert!(
        lo.contains(&format!("{}/32", lb.vip)) && lo.contains("lo:fiberlb"),
        "{lo}"
    );
    Ok(())
}

/// SIGTERM node2 with a client looping over new connections: GRACEFUL_SHUTDOWN reaches the
/// routers, the route goes before the listener closes, no request fails, exit 0.
async fn sigterm(lab: &mut Lab, vip: IpAddr, vip_s: &str) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, ns) = (stop.clone(), lab.client.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (BTreeMap::<IpAddr, usize>::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                match anycast::request(&ns, vip).await {
                    Ok(n) => *ok.entry(n).or_insert(0) += 1,
                    Err(e) => failed.push((start, Instant::now(), e)),
                }
                // Pacing of the load, not synchronisation.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        })
    };
    // Whether node2's listener still serves, probed from inside its namespace: while it
    // does, node2 itself proxies the request (the VIP is local there); once it closed, the
    // request fails or (VIP gone from lo) another node answers.
    let listener_closed = {
        let ns = lab.node_ns[1].clone();
        tokio::spawn(async move {
            while matches!(anycast::get(&ns, vip).await, Ok(n) if n == ip(1)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Instant::now()
        })
    };
    // Let the loop run on both nodes for a moment first.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let prefix = format!("{vip_s}/32");
    let node2 = ip(1).to_string();
    let p = lab.probes();
    let term = Instant::now();
    lab.node(1).proc.signal(libc::SIGTERM);
    let gs = {
        let (p, prefix, node2) = (p.clone(), prefix.clone(), format!(" {node2} "));
        watch(move || {
            p.gobgp_paths(&prefix).iter().any(|l| {
                let l = l.to_ascii_lowercase();
                // GoBGP names 65535:0 by its draft name, planned-shut.
                l.contains(&node2) && (l.contains("65535:0") || l.contains("planned-shut"))
            })
        })
    };
    let moved = {
        let p = p.clone();
        watch(move || p.router_nexthops(vip) == [ip(0)])
    };
    let withdrawn = {
        let (p, prefix) = (p.clone(), prefix.clone());
        watch(move || {
            !p.birdc(&format!("show route for {prefix} all"))
                .contains(&format!("via {node2}"))
        })
    };
    let since = |t: Option<Instant>| t.map(|t| t.duration_since(term));
    let moved_at = moved.await?;
    let withdrawn =
        since(withdrawn.await?).ok_or_else(|| anyhow::anyhow!("BIRD kept node2's route"))?;
    let closed = tokio::time::timeout(Duration::from_secs(10), listener_closed)
        .await
        .map_err(|_| anyhow::anyhow!("node2's listener still served 10 s after SIGTERM"))??
        .duration_since(term);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = lab.nodes[1].as_mut().and_then(|n| n.proc.try_wait()) {
            break code;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node2 did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited = term.elapsed();
    let gs_seen = since(gs.await?);
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = client.await?;
    // Hash-threshold ECMP (what BIRD installs) moves the flows of a removed next hop to
    // the others, so a connection in flight to node2 at the very instant the router drops
    // it is reset by node1, whatever node2 does. Such a failure is reported, not blamed
    // on the node; every other failure is.
    let slack = Duration::from_millis(5);
    let (rehashed, failed): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(start, end, e)| {
        matches!(e, anycast::RequestError::Exchange(_))
            && moved_at.is_some_and(|m| *start <= m + slack && m <= *end + slack)
    });
    let describe = |v: &[(Instant, Instant, anycast::RequestError)]| -> Vec<String> {
        v.iter()
            .map(|(s, e, err)| {
                format!(
                    "{err} ({:?}..{:?})",
                    s.duration_since(term),
                    e.duration_since(term)
                )
            })
            .collect()
    };
    eprintln!(
        "MEASURED: SIGTERM node2 -> GRACEFUL_SHUTDOWN seen by GoBGP after {gs_seen:?}, router moved traffic off node2 after {:?}, BGP route withdrawn after {withdrawn:?}, listener closed after {closed:?}, exited ({code:?}) after {exited:?}",
        since(moved_at)
    );
    eprintln!(
        "MEASURED: client loop over new connections during SIGTERM: {} ok (by node {ok:?}), {} failed {:?}, {} reset in flight when the router moved node2's flows {:?}",
        ok.values().sum::<usize>(),
        failed.len(),
        describe(&failed),
        rehashed.len(),
        describe(&rehashed),
    );
    let tail = lab.nodes[1]
        .as_ref()
        .map(|n| n.log_tail(30))
        .unwrap_or_default();
    assert_eq!(code, Some(0), "node2 exit; log:\n{tail}");
    assert!(
        gs_seen.is_some(),
        "GoBGP never saw GRACEFUL_SHUTDOWN on node2's route"
    );
    assert!(
        withdrawn < closed,
        "route withdrawn after {withdrawn:?}, listener closed after {closed:?}"
    );
    assert!(
        failed.is_empty(),
        "requests failed during SIGTERM: {failed:?}"
    );
    lab.nodes[1] = None;
    Ok(())
}

/// Polls `cond` (a router query) every few ms on a blocking thread; the instant it first
/// held, or `None` after 10 s.
fn watch(cond: impl Fn() -> bool + Send + 'static) -> tokio::task::JoinHandle<Option<Instant>> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    })
}
