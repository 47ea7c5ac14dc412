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

/// Two nodes on one etcd, each with its own listener address, sharing one admin token.
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
        let echo = tcp_echo(b"").await?;
        let (nodes, ips, _dirs) = fleet(&etcd, 2).await?;
        let mut a = nodes[0].admin()?;
        let mut b = nodes[1].admin()?;
        let lb =
            a.lb.create_load_balancer(fixtures::lb("shared", "acme"))
                .await?
                .into_inner()
                .id;
        let pool = a
            .pool
            .create_pool(fixtures::pool(&lb, "p"))
            .await?
            .into_inner()
            .id;
        a.backend
            .add_backend(backend(
                &pool,
                "e",
                ip("127.0.0.1"),
                echo.addr.port() as u32,
            ))
            .await?;
        // One port free on both addresses.
        let port = loop {
            let p = free_port(ips[0], false)?;
            if std::net::TcpListener::bind((ips[1], p)).is_ok() {
                break p;
            }
        };
        let mut req = fixtures::listener(&lb, "t", pb::ListenerProtocol::Tcp, port as u32);
        req.default_pool_id = Some(pool.clone());
        a.listener.create_listener(req).await?;
        // The other node's API sees it, and both nodes serve it.
        let got =
            b.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: lb.clone() })
                .await?
                .into_inner();
        assert_eq!(got.name, "shared");
        for ip in &ips {
            let addr = SocketAddr::new(*ip, port);
            wait_tcp(addr, Duration::from_secs(10)).await?;
            echo_roundtrip(addr, b"hello fleet").await?;
        }
        // A write through B with a stale revision from A's view is refused.
        let stale = got.revision;
        b.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
            lb_id: lb.clone(),
            description: Some("one".into()),
            revision: Some(stale),
            ..Default::default()
        })
        .await?;
        let err =
            a.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: lb,
                description: Some("two".into()),
                revision: Some(stale),
                ..Default::default()
            })
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
