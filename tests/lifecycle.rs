//! Node lifecycle: SIGTERM drains and exits 0, SIGHUP reloads (and rejects a bad file),
//! systemd notifications.

use std::time::{Duration, Instant};

use fiberlb_tests::fixtures;
use fiberlb_tests::l4::{tcp_echo, tcp_service, unique_loopback};
use fiberlb_tests::{bounded, http, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn sigterm_turns_not_ready_refuses_new_connections_and_lets_open_ones_finish(
) -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(&cfg, "[proxy]\ndrain_grace_seconds = 20\n")?;
        let notify_path = dir.path().join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_secs(20)))?;
        let lip = unique_loopback();
        let mut node = Node::start_with_env(
            dir.path(),
            &[
                "-c",
                &cfg.to_string_lossy(),
                "--bind-address",
                &lip.to_string(),
            ],
            &[("NOTIFY_SOCKET", &notify_path.to_string_lossy())],
        )
        .await?;
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"READY=1");

        let mut api = node.admin()?;
        let addr = tcp_service(&mut api, "life", echo.addr, lip).await?.addr;
        assert_eq!(http::get(node.admin_addr(), "/ready").await?.status, 200);

        let mut open = TcpStream::connect(addr).await?;
        open.write_all(b"before").await?;
        let mut six = [0u8; 6];
        open.read_exact(&mut six).await?;

        node.signal(libc::SIGTERM);
        let n = notify.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"STOPPING=1");
        // Not ready, and no new connections, while the open one still works.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ready = http::get(node.admin_addr(), "/ready").await?.status;
            let refused = TcpStream::connect(addr).await.is_err();
            if ready == 503 && refused {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "ready={ready} refused={refused}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        open.write_all(b"during").await?;
        open.read_exact(&mut six).await?;
        assert_eq!(&six, b"during");
        // The node waits for the connection, then exits 0 well inside the grace period.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            node.wait_exit(Duration::from_millis(10)).await.is_err(),
            "exited while a connection was open"
        );
        drop(open);
        assert_eq!(node.wait_exit(Duration::from_secs(10)).await?, Some(0));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sighup_applies_a_valid_file_and_rejects_an_invalid_one() -> anyhow::Result<()> {
    bounded(async {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        std::fs::write(&cfg, "[logging]\nlevel = \"info\"\n")?;
        let node = Node::start_with(dir.path(), &["-c", &cfg.to_string_lossy()]).await?;
        let wait_log = async |needle: &str| -> anyhow::Result<()> {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !node.stderr_tail(200).contains(needle) {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "log never said {needle:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        };
        std::fs::write(&cfg, "[logging]\nlevel = \"debug\"\nnot_a_key = 1\n")?;
        node.signal(libc::SIGHUP);
        wait_log("configuration reload rejected").await?;
        assert_eq!(
            http::get(node.admin_addr(), "/ready").await?.status,
            200,
            "still serving"
        );
        std::fs::write(&cfg, "[logging]\nlevel = \"debug\"\n")?;
        node.signal(libc::SIGHUP);
        wait_log("configuration reloaded").await?;
        // Debug lines now appear: any API call logs at debug level somewhere below.
        let mut api = node.admin()?;
        api.lb
            .create_load_balancer(fixtures::lb("hup", "acme"))
            .await?;
        wait_log("DEBUG").await?;
        Ok(())
    })
    .await
}

/// Sends half a request head and returns the connection and when it was sent.
async fn slowloris(addr: std::net::SocketAddr) -> anyhow::Result<(TcpStream, Instant)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?;
    Ok((s, Instant::now()))
}

/// Waits (bounded) until the peer closes `s`; returns how long after `since` that was.
async fn closed(mut s: TcpStream, since: Instant) -> anyhow::Result<Duration> {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await??;
    anyhow::ensure!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "a partial head was answered"
    );
    Ok(since.elapsed())
}

#[tokio::test]
async fn sighup_applies_proxy_timeouts_and_health_defaults_live_and_keeps_them_over_a_bad_file(
) -> anyhow::Result<()> {
    use fiberlb_proto::v1 as pb;
    use fiberlb_tests::l7;
    use fiberlb_tests::lifecycle::{metric, poll, service};
    const OLD_HEAD: Duration = Duration::from_millis(2500);
    const NEW_HEAD: Duration = Duration::from_millis(300);
    bounded(async {
        let backend = fiberlb_tests::l7::HttpBackend::start("b").await?;
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("fiberlb.toml");
        let config = |head: Duration, interval: u64, extra: &str| {
            format!(
                "[proxy]\nheader_read_timeout_ms = {}\n{extra}\n[health_check]\n\
                 default_interval_seconds = {interval}\ndefault_timeout_seconds = 1\n\
                 default_healthy_threshold = 1\ncheck_jitter_percent = 0\n",
                head.as_millis()
            )
        };
        std::fs::write(&cfg, config(OLD_HEAD, 30, ""))?;
        let ip = unique_loopback();
        let data = dir.path().join("data");
        let node = Node::start_with(
            &data,
            &[
                "-c",
                &cfg.to_string_lossy(),
                "--bind-address",
                &ip.to_string(),
            ],
        )
        .await?;
        let log_count = |needle: &str| {
            node.stderr_tail(100_000)
                .lines()
                .filter(|l| l.contains(needle))
                .count()
        };
        let mut api = node.admin()?;
        let svc = service(&mut api, &[backend.addr], pb::ListenerProtocol::Http, ip).await?;
        // A TCP check with every timing left to the [health_check] defaults.
        api.pool
            .set_health_check(pb::SetHealthCheckRequest {
                pool_id: svc.pool.clone(),
                health_check: Some(pb::HealthCheck {
                    check_type: Some(pb::health_check::CheckType::Tcp(pb::TcpCheck {})),
                    enabled: true,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        let admin = node.admin_addr();
        let probes = || async {
            let m = fiberlb_tests::http::get(admin, "/metrics").await?.body;
            Ok::<_, anyhow::Error>(
                metric(&m, "fiberlb_health_checks_total", &["result=\"success\""]).unwrap_or(0.0),
            )
        };
        let before = poll("the first probe", Duration::from_secs(10), || async {
            let n = probes().await?;
            Ok((n >= 1.0).then_some(n))
        })
        .await?;
        assert_eq!(l7::get(svc.addr, "x", "/", &[]).await?.status, 200);

        // A slowloris client connected before the reload keeps the old header timeout.
        let (old_conn, old_since) = slowloris(svc.addr).await?;
        std::fs::write(
            &cfg,
            config(
                NEW_HEAD,
                1,
                "tcp_nodelay = false\nconnection_timeout_ms = 2000\n\
                 [circuit_breaker]\ndefault_failure_threshold = 2",
            ),
        )?;
        let old = tokio::spawn(closed(old_conn, old_since));
        let hup = Instant::now();
        node.signal(libc::SIGHUP);
        poll("reload", Duration::from_secs(10), || async {
            Ok((log_count("configuration reloaded") == 1).then_some(()))
        })
        .await?;
        let tail = node.stderr_tail(100_000);
        let line = |needle: &str| {
            tail.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_default()
                .to_string()
        };
        let reloaded = line("configuration reloaded");
        for key in [
            "proxy.header_read_timeout_ms",
            "proxy.connection_timeout_ms",
            "health_check",
            "circuit_breaker",
        ] {
            assert!(reloaded.contains(key), "{key} not in {reloaded:?}");
        }
        let restart = line("only after a restart");
        assert!(restart.contains("proxy.tcp_nodelay"), "{restart:?}");

        // A new slowloris client is cut after the new, shorter timeout; the old one later.
        let (new_conn, new_since) = slowloris(svc.addr).await?;
        let new_cut = closed(new_conn, new_since).await?;
        // Probes now run every second instead of every 30 s.
        poll("probes every second", Duration::from_secs(8), || async {
            Ok((probes().await? >= before + 3.0).then_some(()))
        })
        .await?;
        println!(
            "health default interval 30 s -> 1 s by SIGHUP: 3 more probes {:?} after the signal",
            hup.elapsed()
        );

        let old_cut = old.await??;
        println!(
            "header timeout {OLD_HEAD:?} -> {NEW_HEAD:?} by SIGHUP: new connection cut after \
             {new_cut:?}, one opened before the reload after {old_cut:?}"
        );
        assert!(
            new_cut < Duration::from_millis(1500),
            "new connection cut after {new_cut:?}"
        );
        assert!(
            old_cut >= OLD_HEAD - Duration::from_millis(100),
            "old connection cut after {old_cut:?}"
        );
        // An invalid file is rejected; the running configuration stays as it was.
        std::fs::write(&cfg, config(Duration::ZERO, 1, ""))?;
        node.signal(libc::SIGHUP);
        poll("rejection", Duration::from_secs(10), || async {
            Ok((log_count("configuration reload rejected") == 1).then_some(()))
        })
        .await?;
        let rejected = node.stderr_tail(100_000);
        assert!(
            rejected.contains("header_read_timeout_ms"),
            "the rejection names the key"
        );
        assert_eq!(log_count("configuration reloaded"), 1);
        assert_eq!(l7::get(svc.addr, "x", "/", &[]).await?.status, 200);
        let (conn, since) = slowloris(svc.addr).await?;
        let cut = closed(conn, since).await?;
        assert!(
            cut < Duration::from_millis(1500),
            "after the rejected reload a slowloris client was cut after {cut:?}"
        );
        assert_eq!(fiberlb_tests::http::get(admin, "/ready").await?.status, 200);
        Ok(())
    })
    .await
}
