//! `/metrics` is valid Prometheus exposition: `promtool check metrics` (Debian
//! `prometheus`) accepts it once per-backend series exist.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{free_port, tcp_echo, unique_loopback, wait_tcp};
use fiberlb_tests::{bounded, http, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `promtool check metrics` on `text`; returns its exit code and output.
async fn promtool_check(text: &str) -> anyhow::Result<(Option<i32>, String)> {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("running promtool ({e}): install Debian's `prometheus` package")
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("promtool stdin"))?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await??;
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code(), report))
}

#[tokio::test]
async fn promtool_accepts_metrics() -> anyhow::Result<()> {
    bounded(async {
        let echo = tcp_echo(b"").await?;
        let dir = tempfile::tempdir()?;
        let bind = unique_loopback();
        let node = Node::start_with(dir.path(), &["--bind-address", &bind.to_string()]).await?;
        let mut api = node.admin()?;
        let lb = api
            .lb
            .create_load_balancer(fixtures::lb("metrics", "acme"))
            .await?
            .into_inner()
            .id;
        let pool = api
            .pool
            .create_pool(fixtures::pool(&lb, "echo"))
            .await?
            .into_inner()
            .id;
        api.backend
            .add_backend(backend(
                &pool,
                "echo-0",
                ip(&echo.addr.ip().to_string()),
                u32::from(echo.addr.port()),
            ))
            .await?;
        let port = free_port(bind, false)?;
        let mut req = fixtures::listener(&lb, "tcp", pb::ListenerProtocol::Tcp, u32::from(port));
        req.default_pool_id = Some(pool);
        api.listener.create_listener(req).await?;
        let addr = SocketAddr::new(bind, port);
        wait_tcp(addr, Duration::from_secs(10)).await?;

        // Traffic, so the per-LB/listener/backend series exist.
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(b"ping").await?;
            let mut four = [0u8; 4];
            s.read_exact(&mut four).await?;
            assert_eq!(&four, b"ping");
        }

        // Series appear as the data plane and health loop publish them: poll.
        let deadline = Instant::now() + Duration::from_secs(20);
        let metrics = loop {
            let r = http::get(node.admin_addr(), "/metrics").await?;
            assert_eq!(r.status, 200);
            let wanted = [
                "fiberlb_connections_total{",
                "fiberlb_bytes_in_total{",
                "fiberlb_grpc_requests_total{",
                "fiberlb_backends",
            ];
            if wanted.iter().all(|w| r.body.contains(w)) {
                break r.body;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "/metrics never showed {wanted:?}:\n{}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let (code, report) = promtool_check(&metrics).await?;
        assert_eq!(
            code,
            Some(0),
            "promtool check metrics failed:\n{report}\n--- metrics ---\n{metrics}"
        );
        Ok(())
    })
    .await
}
