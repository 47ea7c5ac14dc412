//! A real `etcd` server (Debian's etcd-server; scripts/test-all.sh installs it) on ports the
//! OS picked, in a temporary directory, killed when dropped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// A running etcd.
pub struct Etcd {
    child: Option<Child>,
    client: SocketAddr,
    peer: String,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts etcd and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new().prefix("fiberlb-etcd-").tempdir()?;
        let (cp, pp) = (free_port()?, free_port()?);
        let client: SocketAddr = format!("127.0.0.1:{cp}").parse()?;
        let peer = format!("http://127.0.0.1:{pp}");
        let mut etcd = Etcd {
            child: None,
            client,
            peer,
            dir,
        };
        etcd.spawn()?;
        etcd.wait_up(Duration::from_secs(20)).await?;
        Ok(etcd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("etcd")
            .arg("--name=t")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls=http://{}", self.client))
            .arg(format!("--advertise-client-urls=http://{}", self.client))
            .arg(format!("--listen-peer-urls={}", self.peer))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer))
            .arg(format!("--initial-cluster=t={}", self.peer))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting etcd (package etcd-server; scripts/test-all.sh installs it)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts a stopped etcd again on the same address and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_up(Duration::from_secs(20)).await
    }

    async fn wait_up(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    anyhow::bail!("etcd exited: {status}");
                }
            }
            if let Ok(mut client) = etcd_client::Client::connect([self.url()], None).await {
                if client.status().await.is_ok() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "etcd did not come up within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Stops etcd (SIGKILL).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}
