//! Node lifecycle: SIGTERM drains and exits 0, SIGHUP reloads (and rejects a bad file),
//! systemd notifications.

use std::time::Duration;

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
