//! Draining under load: SIGTERM while 200 slow HTTP requests are in flight, and a backend
//! drained while long TCP connections are open to it. Measured figures are printed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_tests::l4::{tcp_echo, unique_loopback};
use fiberlb_tests::lifecycle::{metric, poll, service, SlowHttp};
use fiberlb_tests::{bounded, http, l7, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn sigterm_during_200_slow_requests_completes_every_one_and_exits_0_within_the_grace(
) -> anyhow::Result<()> {
    const CLIENTS: usize = 200;
    const GRACE: Duration = Duration::from_secs(20);
    bounded(async {
        let backend = SlowHttp::start("slow", Duration::ZERO).await?;
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(
            &cfg,
            format!("[proxy]\ndrain_grace_seconds = {}\n", GRACE.as_secs()),
        )?;
        let ip = unique_loopback();
        let data = dir.path().join("data");
        let mut node = Node::start_with(
            &data,
            &[
                "-c",
                &cfg.to_string_lossy(),
                "--bind-address",
                &ip.to_string(),
            ],
        )
        .await?;
        let mut api = node.admin()?;
        let addr = service(&mut api, &[backend.addr], pb::ListenerProtocol::Http, ip)
            .await?
            .addr;
        assert_eq!(l7::get(addr, "x", "/", &[]).await?.status, 200);

        backend.set_delay(Duration::from_millis(1500));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            clients.spawn(async move { l7::get(addr, "x", "/", &[]).await });
        }
        poll(
            "200 requests at the backend",
            Duration::from_secs(20),
            || async { Ok((backend.in_flight() == CLIENTS).then_some(())) },
        )
        .await?;

        let term = Instant::now();
        node.signal(libc::SIGTERM);
        let admin = node.admin_addr();
        poll("/ready 503", Duration::from_secs(5), || async {
            Ok((http::get(admin, "/ready").await?.status == 503).then_some(()))
        })
        .await?;
        let not_ready = term.elapsed();
        poll(
            "new connections refused",
            Duration::from_secs(5),
            || async { Ok(TcpStream::connect(addr).await.is_err().then_some(())) },
        )
        .await?;
        let refused = term.elapsed();
        // And it stays that way while the requests finish.
        for _ in 0..5 {
            assert!(
                TcpStream::connect(addr).await.is_err(),
                "a new connection was accepted during the drain"
            );
        }
        let in_flight_at_refusal = backend.in_flight();

        let mut ok = 0;
        while let Some(r) = clients.join_next().await {
            let got = r??;
            assert_eq!(got.status, 200, "{}", got.text());
            assert_eq!(got.text(), "slow");
            ok += 1;
        }
        let answered = term.elapsed();
        let code = node.wait_exit(GRACE).await?;
        let exited = term.elapsed();
        assert_eq!(ok, CLIENTS);
        assert_eq!(code, Some(0));
        assert!(exited < GRACE, "exit took {exited:?}, grace {GRACE:?}");
        println!(
            "SIGTERM with {CLIENTS} requests in flight: /ready 503 after {not_ready:?}, \
             listener refusing after {refused:?} ({in_flight_at_refusal} still in flight), \
             all {ok} answered 200 after {answered:?}, exit 0 after {exited:?} (grace {GRACE:?})"
        );
        Ok(())
    })
    .await
}

/// Opens a connection through the load balancer and reads the backend's one-byte banner.
async fn banner(addr: SocketAddr) -> anyhow::Result<(TcpStream, u8)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    let mut one = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut one)).await??;
    Ok((s, one[0]))
}

/// Writes `msg` and reads its echo.
async fn echo(s: &mut TcpStream, msg: &[u8]) -> anyhow::Result<()> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await??;
    anyhow::ensure!(back == msg, "echo mismatch");
    Ok(())
}

#[tokio::test]
async fn a_drained_backend_keeps_its_5_connections_until_the_deadline_then_closes_them(
) -> anyhow::Result<()> {
    const HELD: usize = 5;
    const DRAIN: Duration = Duration::from_secs(3);
    bounded(async {
        let a = tcp_echo(b"A").await?;
        let b = tcp_echo(b"B").await?;
        let dir = tempfile::tempdir()?;
        let ip = unique_loopback();
        let node = Node::start_with(dir.path(), &["--bind-address", &ip.to_string()]).await?;
        let mut api = node.admin()?;
        let svc = service(&mut api, &[a.addr, b.addr], pb::ListenerProtocol::Tcp, ip).await?;
        let (pool, addr, a_id) = (svc.pool, svc.addr, svc.backends[0].clone());

        // Round robin: every other connection lands on A.
        let mut held = Vec::new();
        for _ in 0..4 * HELD {
            let (s, who) = banner(addr).await?;
            if who == b'A' {
                held.push(s);
                if held.len() == HELD {
                    break;
                }
            }
        }
        anyhow::ensure!(held.len() == HELD, "only {} connections on A", held.len());
        let a_label = format!("backend=\"{a_id}\"");
        let admin = node.admin_addr();
        let active_on_a = || async {
            let m = http::get(admin, "/metrics").await?.body;
            Ok::<_, anyhow::Error>(metric(&m, "fiberlb_connections_active", &[&a_label]))
        };
        assert_eq!(active_on_a().await?, Some(HELD as f64));

        let drained_at = Instant::now();
        let revision = api
            .backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: a_id.clone(),
                timeout_seconds: Some(DRAIN.as_secs() as u32),
                revision: None,
            })
            .await?
            .into_inner()
            .revision;
        // Once the node's snapshot has the drain, every new connection goes to B.
        let cluster = api.cluster.clone();
        poll("the node sees the drain", DRAIN, || {
            let mut cluster = cluster.clone();
            async move {
                let s = cluster
                    .get_node_status(pb::GetNodeStatusRequest {})
                    .await?
                    .into_inner();
                Ok((s.snapshot_revision >= revision).then_some(()))
            }
        })
        .await?;
        let seen_after = drained_at.elapsed();
        let mut new_conns = Vec::new();
        for _ in 0..10 {
            let (s, who) = banner(addr).await?;
            assert_eq!(who, b'B', "a new connection reached the draining backend");
            new_conns.push(s);
        }
        let got = api
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: a_id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got.status, pb::BackendStatus::Draining as i32);
        assert_eq!(got.active_connections, HELD as u64);
        assert!(!got.drained);
        let status = api
            .pool
            .get_pool_status(pb::GetPoolStatusRequest {
                pool_id: pool.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(status.draining_backends, 1);

        // The held connections keep working until the deadline...
        for (i, s) in held.iter_mut().enumerate() {
            echo(s, format!("still {i}").as_bytes()).await?;
        }
        // ...two of them finish on their own before it, and leave the count...
        const FINISHED: usize = 2;
        drop(held.drain(..FINISHED).collect::<Vec<_>>());
        let mut left = HELD as u64;
        let counted_by = Instant::now() + Duration::from_secs(2);
        while Instant::now() < counted_by {
            left = api
                .backend
                .get_backend(pb::GetBackendRequest {
                    backend_id: a_id.clone(),
                })
                .await?
                .into_inner()
                .active_connections;
            if left == (HELD - FINISHED) as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            left,
            (HELD - FINISHED) as u64,
            "connections that finished still counted on the draining backend"
        );
        anyhow::ensure!(
            drained_at.elapsed() < DRAIN,
            "too slow to check before the deadline"
        );
        // ...and the stragglers are closed by the deadline, not before.
        let mut closed_after = Vec::new();
        for s in held.iter_mut() {
            let mut rest = Vec::new();
            tokio::time::timeout(DRAIN + Duration::from_secs(5), s.read_to_end(&mut rest))
                .await??;
            closed_after.push(drained_at.elapsed());
        }
        let first = closed_after.iter().min().copied().unwrap_or_default();
        let last = closed_after.iter().max().copied().unwrap_or_default();
        assert!(
            first >= DRAIN - Duration::from_millis(100),
            "a connection was closed {first:?} after the drain began, before the {DRAIN:?} deadline"
        );
        // Connections to B are untouched.
        for (i, s) in new_conns.iter_mut().rev().take(3).enumerate() {
            echo(s, format!("b {i}").as_bytes()).await?;
        }

        let got = api
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: a_id.clone(),
            })
            .await?
            .into_inner();
        assert!(got.drained, "a drained backend reports drained: {got:?}");
        assert_eq!(got.active_connections, 0);
        poll(
            "fiberlb_connections_active of A at 0",
            Duration::from_secs(5),
            || async { Ok((active_on_a().await? == Some(0.0)).then_some(())) },
        )
        .await?;
        println!(
            "drain with a {DRAIN:?} deadline: node saw it after {seen_after:?}; of {HELD} held \
             connections {FINISHED} finished on their own, the stragglers were closed between \
             {first:?} and {last:?} after DrainBackend"
        );
        Ok(())
    })
    .await
}
