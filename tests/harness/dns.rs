//! A real DNS server for tests: dnsmasq on a loopback port, answering `svc.test` with
//! 10.1.2.3 (scripts/test-all.sh installs package dnsmasq-base).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::l4::free_port;

/// A running dnsmasq answering `svc.test` with 10.1.2.3, and its port.
///
/// The port must be free for UDP and TCP (dnsmasq binds both), and a port picked a moment
/// ago can be taken since, for instance as the local port of some test's TCP connection
/// (dnsmasq then exits at once); so a start that does not answer is retried on another
/// port.
pub async fn dnsmasq() -> anyhow::Result<(tokio::process::Child, u16)> {
    let lo: std::net::IpAddr = "127.0.0.1".parse()?;
    let mut tried = Vec::new();
    for _ in 0..20 {
        let port = free_port(lo, true)?;
        if std::net::TcpListener::bind((lo, port)).is_err() {
            tried.push(format!("{port}: TCP port taken"));
            continue;
        }
        let mut child = spawn_dnsmasq(port)?;
        match answers_while(SocketAddr::new(lo, port), &mut child).await? {
            Ok(()) => return Ok((child, port)),
            Err(why) => tried.push(format!("{port}: {why}")),
        }
        let _ = child.kill().await;
    }
    anyhow::bail!("dnsmasq did not start answering: {}", tried.join("; "))
}

/// Waits for `child` to answer at `addr`: `Ok(Err(why))` when it exits first or stays
/// silent for 5 s.
async fn answers_while(
    addr: SocketAddr,
    child: &mut tokio::process::Child,
) -> anyhow::Result<Result<(), String>> {
    let mut exited = None;
    let r = query_until(addr, || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    })
    .await?;
    Ok(r.map_err(|()| match exited {
        Some(status) => format!("dnsmasq exited ({status})"),
        None => "no answer within 5 s".to_string(),
    }))
}

/// Sends an A query for svc.test every 100 ms until an answer comes (`Ok(Ok)`), 5 s pass
/// or `give_up` says so (`Ok(Err)`).
async fn query_until(
    addr: SocketAddr,
    mut give_up: impl FnMut() -> bool,
) -> anyhow::Result<Result<(), ()>> {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    // id 7, recursion desired, one question: svc.test A IN.
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03svc\x04test\x00\x00\x01\x00\x01");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !give_up() {
        s.send_to(&q, addr).await?;
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(100), s.recv_from(&mut buf)).await
        {
            return Ok(Ok(()));
        }
    }
    Ok(Err(()))
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
