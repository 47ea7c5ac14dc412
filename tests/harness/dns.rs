//! A real DNS server for tests: dnsmasq on a loopback port, answering `svc.test` with
//! 10.1.2.3 (scripts/test-all.sh installs package dnsmasq-base).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::l4::free_port;

/// A running dnsmasq answering `svc.test` with 10.1.2.3, and its port.
///
/// The port must be free for UDP and TCP (dnsmasq binds both), and a port picked a moment
/// ago can be taken since, for instance as the local port of some test's TCP connection;
/// so a start that does not answer is retried on another port.
pub async fn dnsmasq() -> anyhow::Result<(tokio::process::Child, u16)> {
    let lo: std::net::IpAddr = "127.0.0.1".parse()?;
    for _ in 0..5 {
        let port = free_port(lo, true)?;
        if std::net::TcpListener::bind((lo, port)).is_err() {
            continue;
        }
        let mut child = spawn_dnsmasq(port)?;
        if answers(SocketAddr::new(lo, port)).await? {
            return Ok((child, port));
        }
        let _ = child.kill().await;
    }
    anyhow::bail!("dnsmasq did not start answering on any of 5 ports")
}

/// Whether a DNS server at `addr` answers an A query within 5 s.
pub async fn answers(addr: SocketAddr) -> anyhow::Result<bool> {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    // id 7, recursion desired, one question: svc.test A IN.
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03svc\x04test\x00\x00\x01\x00\x01");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        s.send_to(&q, addr).await?;
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(100), s.recv_from(&mut buf)).await
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn spawn_dnsmasq(port: u16) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg("--address=/svc.test/10.1.2.3")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("dnsmasq (package dnsmasq-base; scripts/test-all.sh installs it): {e}")
        })
}
