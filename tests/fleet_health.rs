//! Shared health with probe sharding: a dead backend leaves every node while only its two
//! probers probe it; a dead node's probes are taken over and it rejoins after a restart.

use super::*;
use fiberlb_proto::v1::health_check::CheckType;
use fiberlb_tests::bounded;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::wait_tcp;

/// A load balancer whose pool (round robin, HTTP check every second, thresholds 2) holds
/// `backends`, behind a TCP listener on every node; made through node 0.
struct Service {
    /// Backend ids, in the order of `backends`.
    ids: Vec<String>,
    /// The listener on each node.
    fronts: Vec<SocketAddr>,
}

async fn service(f: &Fleet, backends: &[&HttpBackend]) -> anyhow::Result<Service> {
    let mut api = f.api(0)?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb("shared-health", "acme"))
        .await?
        .into_inner()
        .id;
    let mut req = fixtures::pool(&lb, "p");
    req.health_check = Some(pb::HealthCheck {
        check_type: Some(CheckType::Http(pb::HttpCheck {
            path: "/health".into(),
            method: pb::HttpMethod::Get as i32,
            expected_codes: vec![200],
            ..Default::default()
        })),
        interval: 1,
        timeout: 1,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        enabled: true,
        ..Default::default()
    });
    let pool = api.pool.create_pool(req).await?.into_inner().id;
    let mut ids = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let req = backend(
            &pool,
            &format!("b{i}"),
            ip("127.0.0.1"),
            u32::from(b.addr.port()),
        );
        ids.push(api.backend.add_backend(req).await?.into_inner().id);
    }
    let port = f.common_port()?;
    let mut req = fixtures::listener(&lb, "t", pb::ListenerProtocol::Tcp, u32::from(port));
    req.default_pool_id = Some(pool);
    api.listener.create_listener(req).await?;
    let fronts: Vec<SocketAddr> = f.ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    for front in &fronts {
        wait_tcp(*front, Duration::from_secs(10)).await?;
    }
    Ok(Service { ids, fronts })
}

async fn healthy(api: &mut Clients, backend_id: &str) -> anyhow::Result<bool> {
    let req = pb::GetBackendHealthRequest {
        backend_id: backend_id.into(),
    };
    Ok(api
        .backend
        .get_backend_health(req)
        .await?
        .into_inner()
        .healthy)
}

/// Waits until every node in `on` reports every backend of `ids` healthy.
async fn wait_all_healthy(f: &Fleet, on: &[usize], ids: &[String]) -> anyhow::Result<()> {
    for &i in on {
        let mut api = f.api(i)?;
        for id in ids {
            wait_until(Duration::from_secs(15), "backend healthy", async || {
                healthy(&mut api, id).await
            })
            .await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_backend_leaves_every_node_within_2_5_s_while_only_two_nodes_probe_it(
) -> anyhow::Result<()> {
    let f = Fleet::start(3).await?;
    bounded(async {
        f.wait_members(&[0, 1, 2], Duration::from_secs(15)).await?;
        let a = HttpBackend::start(b'A').await?;
        let b = HttpBackend::start(b'B').await?;
        let svc = service(&f, &[&a, &b]).await?;
        let (ida, idb) = (&svc.ids[0], &svc.ids[1]);
        wait_all_healthy(&f, &[0, 1, 2], &svc.ids).await?;
        let owned = f.wait_probes_owned(&[0, 1, 2], 4, Duration::from_secs(5)).await?;
        for front in &svc.fronts {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..10 {
                seen.insert(fetch_tag(*front).await?);
            }
            assert_eq!(seen.len(), 2, "{front} serves from both backends");
        }

        // Probes of A: a few rounds, then count who sent them.
        let before = a.total_probes();
        wait_until(Duration::from_secs(10), "six probes of A", async || {
            Ok(a.total_probes() >= before + 6)
        })
        .await?;
        let by_node = a.probes_by();
        let expected = fiberlb_gossip::probers(ida, &f.ids, 2);
        let mut probing: Vec<&String> = by_node.keys().collect();
        probing.sort();
        let mut want: Vec<&String> = expected.iter().collect();
        want.sort();
        eprintln!("probes of A by node: {by_node:?}; probes owned per node: {owned:?}");
        assert_eq!(probing, want, "only A's two rendezvous probers probe it");

        // A dies; every node polls its own verdict.
        a.kill();
        let killed = Instant::now();
        let mut apis = (0..3).map(|i| f.api(i)).collect::<anyhow::Result<Vec<_>>>()?;
        let waits = apis.iter_mut().map(|api| async {
            wait_until(Duration::from_secs(5), "A unhealthy", async || {
                Ok(!healthy(api, ida).await?)
            })
            .await
            .map(|_| killed.elapsed())
        });
        let took = futures::future::join_all(waits)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        eprintln!("backend A out after {took:?} on node0..node2 (kill at 0; interval 1 s, unhealthy_threshold 2)");
        for (i, t) in took.iter().enumerate() {
            assert!(
                *t <= Duration::from_millis(2_500),
                "node{i} still used A {t:?} after the kill"
            );
        }

        // No node even tries A any more.
        let label = format!("backend=\"{ida}\"");
        for (i, front) in svc.fronts.iter().enumerate() {
            let before = sample(
                &metrics(f.node(i)).await?,
                "fiberlb_backend_connect_failures_total",
                &label,
            );
            for _ in 0..10 {
                assert_eq!(fetch_tag(*front).await?, b'B', "node{i}");
            }
            let after = sample(
                &metrics(f.node(i)).await?,
                "fiberlb_backend_connect_failures_total",
                &label,
            );
            assert_eq!(before, after, "node{i} attempted connects to the dead backend");
        }
        let mut api = f.api(0)?;
        assert!(healthy(&mut api, idb).await?);
        eprintln!("probes of A by node at the end: {:?}", a.probes_by());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_killed_node_is_marked_down_its_probes_taken_over_and_it_rejoins() -> anyhow::Result<()> {
    let mut f = Fleet::start(3).await?;
    bounded(async {
        f.wait_members(&[0, 1, 2], Duration::from_secs(15)).await?;
        let mut backends = Vec::new();
        for tag in [b'A', b'B', b'C', b'D'] {
            backends.push(HttpBackend::start(tag).await?);
        }
        let refs: Vec<&HttpBackend> = backends.iter().collect();
        let svc = service(&f, &refs).await?;
        wait_all_healthy(&f, &[0, 1, 2], &svc.ids).await?;
        let owned = f.wait_probes_owned(&[0, 1, 2], 8, Duration::from_secs(5)).await?;
        eprintln!("probes owned before the kill: {owned:?}");

        // The victim probes backend 0; the node that does not will take it over.
        let probers = fiberlb_gossip::probers(&svc.ids[0], &f.ids, 2);
        let victim = f.ids.iter().position(|id| *id == probers[0]).expect("a node");
        let heir = f.ids.iter().position(|id| !probers.contains(id)).expect("a node");
        let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();

        // Clients keep using the survivors throughout.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client = {
            let fronts: Vec<SocketAddr> = survivors.iter().map(|&i| svc.fronts[i]).collect();
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    match fetch_tag(fronts[n % fronts.len()]).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 1;
                }
            })
        };

        let heir_probes = backends[0].probes_by().get(&f.ids[heir]).copied().unwrap_or(0);
        f.kill9(victim);
        let killed = Instant::now();
        f.wait_members(&survivors, Duration::from_secs(10)).await?;
        let down = killed.elapsed();
        let owned = f.wait_probes_owned(&survivors, 8, Duration::from_secs(5)).await?;
        wait_until(Duration::from_secs(5), "heir probes backend 0", async || {
            Ok(backends[0].probes_by().get(&f.ids[heir]).copied().unwrap_or(0) > heir_probes)
        })
        .await?;
        let taken_over = killed.elapsed();
        eprintln!(
            "kill -9 {}: down on both survivors after {down:?}; {} probing backend 0 after {taken_over:?}; probes owned now {owned:?}",
            f.ids[victim], f.ids[heir]
        );
        wait_all_healthy(&f, &survivors, &svc.ids).await?;
        stop.store(true, Ordering::Relaxed);
        client.await?;
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        eprintln!("client requests through the survivors: {ok} ok, {failed} failed");
        assert!(ok > 0);
        assert_eq!(failed, 0, "the survivors kept serving");

        // Back again: it rejoins and gets its share of probes back.
        let restarted = Instant::now();
        f.start_node(victim).await?;
        f.wait_members(&[0, 1, 2], Duration::from_secs(15)).await?;
        let owned = f.wait_probes_owned(&[0, 1, 2], 8, Duration::from_secs(5)).await?;
        eprintln!(
            "{} rejoined after {:?}; probes owned {owned:?}",
            f.ids[victim],
            restarted.elapsed()
        );
        wait_all_healthy(&f, &[victim], &svc.ids).await?;
        fetch_tag(svc.fronts[victim]).await?;
        Ok(())
    })
    .await
}
