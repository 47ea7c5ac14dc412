//! Nodes on a shared etcd (the ChainFire backend): the store contract against a real etcd,
//! configuration written through one node served by another, and store outages.

use std::net::SocketAddr;
use std::time::Duration;

use fiberlb_api::store::{ConfigStore, Op, StoreError, Txn};
use fiberlb_node::store::{EtcdOptions, EtcdStore};
use fiberlb_proto::v1 as pb;
use fiberlb_tests::etcd::Etcd;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{free_port, tcp_echo, tcp_service, unique_loopback, wait_tcp, TcpService};
use fiberlb_tests::{bounded, Node};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn store(etcd: &Etcd) -> anyhow::Result<EtcdStore> {
    Ok(EtcdStore::connect(&EtcdOptions {
        endpoints: vec![etcd.url()],
        ..Default::default()
    })
    .await?)
}

#[tokio::test]
async fn etcd_store_passes_the_store_contract() -> anyhow::Result<()> {
    bounded(async {
        let etcd = Etcd::start().await?;
        fiberlb_api::store::contract::run_all(&store(&etcd).await?).await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_says_so() -> anyhow::Result<()> {
    bounded(async {
        let etcd = Etcd::start().await?;
        let s = store(&etcd).await?;
        let first = s
            .txn(Txn::new().then(Op::put("fiberlb/x", b"1".to_vec())))
            .await?;
        let last = s
            .txn(Txn::new().then(Op::put("fiberlb/x", b"2".to_vec())))
            .await?;
        let mut c = etcd_client::Client::connect([etcd.url()], None).await?;
        c.compact(last as i64, None).await?;
        let mut w = s.watch("fiberlb/", first - 1).await?;
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await?;
        assert!(
            matches!(ev, Some(Err(StoreError::Compacted { .. }))),
            "{ev:?}"
        );
        Ok(())
    })
    .await
}

/// `n` nodes on one etcd, each with its own listener address, sharing one admin token.
async fn fleet(
    etcd: &Etcd,
    n: usize,
) -> anyhow::Result<(Vec<Node>, Vec<std::net::IpAddr>, Vec<tempfile::TempDir>)> {
    let token = "fleet-test-admin-token-0123456789";
    let mut nodes = Vec::new();
    let mut ips = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, token)?;
        // The harness reads the token from the data dir, as an operator's CLI would.
        std::fs::write(dir.path().join("bootstrap-token"), token)?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(
            &cfg,
            format!(
                "[storage]\nbackend = \"chainfire\"\nchainfire_endpoints = [\"{}\"]\n[admin]\nbootstrap_token_file = \"{}\"\n[cluster]\nnode_id = \"node{i}\"\n",
                etcd.url(),
                token_file.display()
            ),
        )?;
        let lip = unique_loopback();
        nodes.push(
            Node::start_with(
                dir.path(),
                &[
                    "-c",
                    &cfg.to_string_lossy(),
                    "--bind-address",
                    &lip.to_string(),
                ],
            )
            .await?,
        );
        ips.push(lip);
        dirs.push(dir);
    }
    Ok((nodes, ips, dirs))
}

async fn echo_roundtrip(addr: SocketAddr, msg: &[u8]) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await??;
    anyhow::ensure!(back == msg, "echo mismatch");
    Ok(())
}

#[tokio::test]
async fn config_written_through_one_node_is_served_by_every_node() -> anyhow::Result<()> {
    bounded(async {
        let etcd = Etcd::start().await?;
        let one = tcp_echo(b"1").await?;
        let two = tcp_echo(b"2").await?;
        let (nodes, ips, _dirs) = fleet(&etcd, 3).await?;
        let mut a = nodes[0].admin()?;
        let mut b = nodes[1].admin()?;
        let Shared {
            lb,
            backend_id,
            port,
            ..
        } = shared_tcp_service(&mut a, "shared", one.addr, &ips).await?;
        // The other nodes' APIs see it, and every node serves it.
        let got =
            b.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: lb.clone() })
                .await?
                .into_inner();
        assert_eq!(got.name, "shared");
        let fronts: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        for addr in &fronts {
            wait_tcp(*addr, Duration::from_secs(10)).await?;
            assert_eq!(banner_of(*addr).await?, b'1');
        }

        // 50 changes through node A (the backend's port flips between the two echo
        // servers): from the API's OK until a new connection through every node reaches
        // the new backend.
        let mut took = Vec::new();
        for i in 0..50 {
            let (target, banner) = if i % 2 == 0 { (&two, b'2') } else { (&one, b'1') };
            a.backend
                .update_backend(pb::UpdateBackendRequest {
                    backend_id: backend_id.clone(),
                    port: Some(u32::from(target.addr.port())),
                    ..Default::default()
                })
                .await?;
            let ok = std::time::Instant::now();
            let all = fronts.iter().map(|front| async move {
                loop {
                    if banner_of(*front).await? == banner {
                        return anyhow::Ok(ok.elapsed());
                    }
                    anyhow::ensure!(ok.elapsed() < Duration::from_secs(10), "change {i} never reached {front}");
                }
            });
            let per_node = futures::future::try_join_all(all).await?;
            took.push(per_node.into_iter().max().unwrap_or_default());
        }
        took.sort();
        let p50 = took[took.len() / 2];
        let p99 = took[(took.len() * 99).div_ceil(100) - 1];
        eprintln!("config propagation to all three nodes over 50 changes: p50 {p50:?}, p99 {p99:?}, max {:?}", took[took.len() - 1]);

        // Two concurrent updates of the same object through two nodes, from the same
        // revision: one wins, the other is told it lost; the winner's write is what stays.
        let current =
            a.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: lb.clone() })
                .await?
                .into_inner();
        let update = |who: &str| pb::UpdateLoadBalancerRequest {
            lb_id: lb.clone(),
            description: Some(who.into()),
            revision: Some(current.revision),
            ..Default::default()
        };
        let (ra, rb) = tokio::join!(
            a.lb.update_load_balancer(update("through a")),
            b.lb.update_load_balancer(update("through b"))
        );
        let winner = match (&ra, &rb) {
            (Ok(_), Err(e)) if e.code() == tonic::Code::Aborted => "through a",
            (Err(e), Ok(_)) if e.code() == tonic::Code::Aborted => "through b",
            other => panic!("expected one success and one Aborted, got {other:?}"),
        };
        let after =
            nodes[2].admin()?.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: lb.clone() })
                .await?
                .into_inner();
        assert_eq!(after.description.as_deref(), Some(winner));
        // A write with the revision seen before the winner's is refused as well.
        let err =
            a.lb.update_load_balancer(update("stale"))
                .await
                .expect_err("stale revision");
        assert_eq!(err.code(), tonic::Code::Aborted);
        let status = a
            .cluster
            .get_node_status(pb::GetNodeStatusRequest {})
            .await?
            .into_inner();
        assert_eq!(
            (status.store_backend.as_str(), status.store_state.as_str()),
            ("chainfire", "up")
        );
        Ok(())
    })
    .await
}

/// The banner byte the backend behind `addr` greets with.
async fn banner_of(addr: SocketAddr) -> anyhow::Result<u8> {
    let mut s = TcpStream::connect(addr).await?;
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await??;
    Ok(b[0])
}

#[tokio::test]
async fn a_store_outage_keeps_traffic_flowing_and_fails_writes_clearly() -> anyhow::Result<()> {
    bounded(async {
        let mut etcd = Etcd::start().await?;
        let echo = tcp_echo(b"").await?;
        let (nodes, ips, _dirs) = fleet(&etcd, 1).await?;
        let mut api = nodes[0].admin()?;
        let TcpService { lb, pool, addr } =
            tcp_service(&mut api, "outage", echo.addr, ips[0]).await?;

        etcd.stop().await;
        echo_roundtrip(addr, b"during outage").await?;
        let err = api
            .lb
            .create_load_balancer(fixtures::lb("during", "acme"))
            .await
            .expect_err("store is down");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(
            err.message().starts_with("STORE_UNAVAILABLE:"),
            "{}",
            err.message()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            // Known credentials keep working from the node's cache during the outage.
            let ready = fiberlb_tests::http::get(nodes[0].admin_addr(), "/ready")
                .await?
                .status;
            assert_eq!(ready, 200, "traffic readiness does not depend on the store");
            let status = api
                .cluster
                .get_node_status(pb::GetNodeStatusRequest {})
                .await?
                .into_inner();
            if status.store_state == "down" {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the node never noticed the outage"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        echo_roundtrip(addr, b"still flowing").await?;

        etcd.restart().await?;
        // Writes work again and the node catches up without a restart.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let port2 = free_port(ips[0], false)?;
        loop {
            let mut req = fixtures::listener(&lb, "t2", pb::ListenerProtocol::Tcp, port2 as u32);
            req.default_pool_id = Some(pool.clone());
            match api.listener.create_listener(req).await {
                Ok(_) => break,
                Err(e) => anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "writes never recovered: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let addr2 = SocketAddr::new(ips[0], port2);
        wait_tcp(addr2, Duration::from_secs(15)).await?;
        echo_roundtrip(addr2, b"caught up").await?;
        let status = api
            .cluster
            .get_node_status(pb::GetNodeStatusRequest {})
            .await?
            .into_inner();
        assert_eq!(status.store_state, "up");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn gossip_members_see_each_other_and_a_killed_node_goes_down() -> anyhow::Result<()> {
    bounded(async {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("cluster.key");
        std::fs::write(&key, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n")?;
        let ports: Vec<u16> = (0..3)
            .map(|_| Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()))
            .collect::<anyhow::Result<_>>()?;
        let peers = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect::<Vec<_>>().join(", ");
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let d = tempfile::tempdir()?;
            let cfg = d.path().join("fiberlb.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[cluster]\nnode_id = \"g{i}\"\ngossip_addr = \"127.0.0.1:{port}\"\npeers = [{peers}]\nkey_file = \"{}\"\n",
                    key.display()
                ),
            )?;
            nodes.push(Node::start_with(d.path(), &["-c", &cfg.to_string_lossy()]).await?);
            dirs.push(d);
        }
        let mut api = nodes[0].admin()?;
        let alive = async |api: &mut fiberlb_tests::Clients| -> anyhow::Result<Vec<(String, i32)>> {
            let m = api.cluster.list_members(pb::ListMembersRequest {}).await?.into_inner().members;
            Ok(m.into_iter().map(|m| (m.node_id, m.state)).collect())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let m = alive(&mut api).await?;
            if m.len() == 3 && m.iter().all(|(_, s)| *s == pb::MemberState::Alive as i32) {
                break;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "members never converged: {m:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = api.cluster.get_node_status(pb::GetNodeStatusRequest {}).await?.into_inner();
        assert_eq!(status.gossip_members, 3);

        // Hostile datagrams at node 0's gossip port: each dropped and counted by reason.
        let key_bytes = fiberlb_gossip::read_key_file(&key)?;
        let sent = hostile_datagrams(&fiberlb_gossip::Keyring::new(key_bytes, None));
        let before = gossip_drops(&nodes[0]).await?;
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        for (_, d) in &sent {
            udp.send_to(d, ("127.0.0.1", ports[0])).await?;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let after = loop {
            let after = gossip_drops(&nodes[0]).await?;
            if after.values().sum::<f64>() >= before.values().sum::<f64>() + sent.len() as f64 {
                break after;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "drops not counted: {before:?} -> {after:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for (reason, _) in sent.iter().filter(|(r, _)| *r != "*") {
            let n = |m: &std::collections::HashMap<String, f64>| m.get(*reason).copied().unwrap_or(0.0);
            assert!(n(&after) > n(&before), "no drop counted as {reason}: {after:?}");
        }
        eprintln!("hostile datagrams dropped by reason: {after:?}");
        let m = alive(&mut api).await?;
        assert!(
            m.len() == 3 && m.iter().all(|(_, s)| *s == pb::MemberState::Alive as i32),
            "membership disturbed: {m:?}"
        );
        nodes[2].kill9();
        let killed_at = std::time::Instant::now();
        loop {
            let m = alive(&mut api).await?;
            let g2 = m.iter().find(|(id, _)| id == "g2").map(|(_, s)| *s);
            if g2.is_none() || g2 == Some(pb::MemberState::Down as i32) {
                break;
            }
            anyhow::ensure!(killed_at.elapsed() < Duration::from_secs(10), "g2 never went down: {m:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("killed node detected down after {:?}", killed_at.elapsed());
        Ok(())
    })
    .await
}

/// Datagrams no member may accept, each with the drop reason it must be counted under
/// (`*`: any): random bytes, a truncated and a tail-clipped genuine datagram, a forgery with the
/// right key id, one sealed with another key, an authentic one with a garbage payload,
/// an unknown envelope version and an oversized one.
fn hostile_datagrams(cluster: &fiberlb_gossip::Keyring) -> Vec<(&'static str, Vec<u8>)> {
    // xorshift: arbitrary bytes without a dependency, different per call site.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let nonce = |n: Vec<u8>| -> [u8; 12] { n.try_into().unwrap_or([7; 12]) };
    let genuine = fiberlb_gossip::seal(cluster, nonce(noise(12)), &noise(64));
    let wrong_key = fiberlb_gossip::Keyring::new([0x42; 32], None);
    let mut forged = vec![fiberlb_gossip::WIRE_VERSION, genuine[1]];
    forged.extend(noise(80));
    let mut version = genuine.clone();
    version[0] = 0xee;
    vec![
        ("*", noise(200)),
        ("too_short", genuine[..10].to_vec()),
        ("auth", genuine[..genuine.len() - 1].to_vec()),
        ("auth", forged),
        (
            "unknown_key",
            fiberlb_gossip::seal(&wrong_key, nonce(noise(12)), b"hello"),
        ),
        (
            "payload",
            fiberlb_gossip::seal(cluster, nonce(noise(12)), b"not a foca message"),
        ),
        ("version", version),
        ("too_large", noise(fiberlb_gossip::MAX_DATAGRAM + 1)),
    ]
}

/// `fiberlb_gossip_dropped_total` of a node, by reason.
async fn gossip_drops(node: &Node) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let body = fiberlb_tests::http::get(node.admin_addr(), "/metrics")
        .await?
        .body;
    let mut out = std::collections::HashMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("fiberlb_gossip_dropped_total{") else {
            continue;
        };
        let reason = rest
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(reason).or_default() += v;
    }
    Ok(out)
}

/// A port free on every one of `ips`.
fn port_free_on_all(ips: &[std::net::IpAddr]) -> anyhow::Result<u16> {
    loop {
        let p = free_port(ips[0], false)?;
        if ips[1..]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        {
            return Ok(p);
        }
    }
}

/// An LB served by every node of a fleet: one pool with one backend, one TCP listener.
struct Shared {
    lb: String,
    pool: String,
    backend_id: String,
    /// The listener's port, free on every node's address.
    port: u16,
}

/// Creates a [`Shared`] service through `api`, sending to `backend`.
async fn shared_tcp_service(
    api: &mut fiberlb_tests::Clients,
    name: &str,
    backend_addr: SocketAddr,
    ips: &[std::net::IpAddr],
) -> anyhow::Result<Shared> {
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb(name, "acme"))
        .await?
        .into_inner()
        .id;
    let pool = api
        .pool
        .create_pool(fixtures::pool(&lb, "p"))
        .await?
        .into_inner()
        .id;
    let ip_text = backend_addr.ip().to_string();
    let backend_id = api
        .backend
        .add_backend(backend(
            &pool,
            "e",
            ip(&ip_text),
            u32::from(backend_addr.port()),
        ))
        .await?
        .into_inner()
        .id;
    let port = port_free_on_all(ips)?;
    let mut req = fixtures::listener(&lb, "t", pb::ListenerProtocol::Tcp, port as u32);
    req.default_pool_id = Some(pool.clone());
    api.listener.create_listener(req).await?;
    Ok(Shared {
        lb,
        pool,
        backend_id,
        port,
    })
}

/// Issue 6: etcd stopped for 10 s under traffic through all three nodes: no connection
/// fails, a write gets Unavailable, and after etcd returns a change made through node C
/// reaches every node.
#[tokio::test]
async fn a_ten_second_store_outage_under_traffic_fails_nothing_and_then_changes_flow_again(
) -> anyhow::Result<()> {
    bounded(async {
        let mut etcd = Etcd::start().await?;
        let echo = tcp_echo(b"").await?;
        let (nodes, ips, _dirs) = fleet(&etcd, 3).await?;
        let mut a = nodes[0].admin()?;
        let Shared { lb, pool, port, .. } =
            shared_tcp_service(&mut a, "outage3", echo.addr, &ips).await?;
        let fronts: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        for f in &fronts {
            wait_tcp(*f, Duration::from_secs(10)).await?;
        }

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = {
            let (stop, fronts) = (stop.clone(), fronts.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let f = fronts[i % fronts.len()];
                    i += 1;
                    match echo_roundtrip(f, b"through the outage").await {
                        Ok(()) => ok += 1,
                        Err(e) => failed.push(format!("{f}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (ok, failed)
            })
        };

        tokio::time::sleep(Duration::from_millis(500)).await;
        etcd.stop().await;
        let outage = std::time::Instant::now();
        let mut b = nodes[1].admin()?;
        let err = b
            .lb
            .create_load_balancer(fixtures::lb("during", "acme"))
            .await
            .expect_err("store is down");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
        etcd.restart().await?;
        println!("etcd was down for {:?}", outage.elapsed());

        // A change through node C once writes work again; every node serves it.
        let mut c = nodes[2].admin()?;
        let port2 = port_free_on_all(&ips)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut req = fixtures::listener(&lb, "t2", pb::ListenerProtocol::Tcp, port2 as u32);
            req.default_pool_id = Some(pool.clone());
            match c.listener.create_listener(req).await {
                Ok(_) => break,
                Err(e) => anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "writes through node C never recovered: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let written = std::time::Instant::now();
        for ip in &ips {
            let addr = SocketAddr::new(*ip, port2);
            wait_tcp(addr, Duration::from_secs(15)).await?;
            echo_roundtrip(addr, b"caught up").await?;
        }
        println!(
            "a listener added through node C after the outage served on all three nodes {:?} after its write",
            written.elapsed()
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = traffic.await?;
        println!("{ok} connections through the three nodes during the test, {} failed", failed.len());
        assert!(ok > 100, "traffic flowed: {ok}");
        assert!(failed.is_empty(), "failed connections: {failed:?}");
        Ok(())
    })
    .await
}
