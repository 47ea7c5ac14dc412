//! Health checks, passive detection and circuit breakers end to end: a real `fiberlb serve`,
//! real backends that the tests kill and revive, every check kind against a real peer.
//!
//! Checks run every second with both thresholds at 2; every wait polls the API with a
//! deadline. This file holds the shared helpers; the tests are in the modules.

mod active;
mod circuit;
mod dns_grpc;
mod passive;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_proto::v1::health_check::CheckType;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::l4::{free_port, unique_loopback, wait_tcp};
use fiberlb_tests::{Clients, Node};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

struct Lb {
    node: Node,
    _dir: tempfile::TempDir,
    api: Clients,
    lb: String,
    ip: std::net::IpAddr,
}

/// A node (with `config` as its TOML file, if given) and one load balancer.
async fn start(config: Option<String>) -> anyhow::Result<Lb> {
    let dir = tempfile::tempdir()?;
    let ip = unique_loopback();
    let ip_s = ip.to_string();
    let mut args = vec!["--bind-address", &ip_s];
    let path = dir.path().join("fiberlb.toml");
    let path_s = path.to_string_lossy().into_owned();
    if let Some(c) = config {
        std::fs::write(&path, c)?;
        args.extend(["-c", &path_s]);
    }
    let node = Node::start_with(&dir.path().join("data"), &args).await?;
    let mut api = node.admin()?;
    let lb = api
        .lb
        .create_load_balancer(fixtures::lb("health", "acme"))
        .await?
        .into_inner()
        .id;
    Ok(Lb {
        node,
        _dir: dir,
        api,
        lb,
        ip,
    })
}

/// A health check every second, timeout 1 s, both thresholds 2.
fn check(kind: CheckType) -> pb::HealthCheck {
    pb::HealthCheck {
        check_type: Some(kind),
        interval: 1,
        timeout: 1,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        enabled: true,
        ..Default::default()
    }
}

fn http_check(path: &str, host: Option<&str>) -> pb::HttpCheck {
    pb::HttpCheck {
        path: path.into(),
        method: pb::HttpMethod::Get as i32,
        expected_codes: vec![200],
        host_header: host.map(str::to_string),
        ..Default::default()
    }
}

impl Lb {
    async fn pool(
        &mut self,
        name: &str,
        check: Option<pb::HealthCheck>,
        circuit: Option<pb::CircuitBreakerConfig>,
    ) -> anyhow::Result<String> {
        let mut req = fixtures::pool(&self.lb, name);
        req.health_check = check;
        req.circuit_breaker = circuit;
        Ok(self.api.pool.create_pool(req).await?.into_inner().id)
    }

    async fn add(&mut self, pool: &str, name: &str, addr: SocketAddr) -> anyhow::Result<String> {
        let req = backend(pool, name, ip(&addr.ip().to_string()), addr.port() as u32);
        Ok(self.api.backend.add_backend(req).await?.into_inner().id)
    }

    async fn listener(&mut self, pool: &str) -> anyhow::Result<SocketAddr> {
        self.listener_of(pool, pb::ListenerProtocol::Tcp).await
    }

    async fn listener_of(
        &mut self,
        pool: &str,
        protocol: pb::ListenerProtocol,
    ) -> anyhow::Result<SocketAddr> {
        let port = free_port(self.ip, false)?;
        let mut req = fixtures::listener(&self.lb, &format!("l{port}"), protocol, port as u32);
        req.default_pool_id = Some(pool.to_string());
        self.api.listener.create_listener(req).await?;
        let addr = SocketAddr::new(self.ip, port);
        wait_tcp(addr, Duration::from_secs(10)).await?;
        Ok(addr)
    }

    async fn health(&mut self, backend: &str) -> anyhow::Result<pb::HealthStatus> {
        let req = pb::GetBackendHealthRequest {
            backend_id: backend.into(),
        };
        Ok(self.api.backend.get_backend_health(req).await?.into_inner())
    }

    /// Polls GetBackendHealth every 50 ms until `pred` holds; returns the status and how
    /// long it took.
    async fn wait_health(
        &mut self,
        backend: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&pb::HealthStatus) -> bool,
    ) -> anyhow::Result<(pb::HealthStatus, Duration)> {
        let start = Instant::now();
        loop {
            let h = self.health(backend).await?;
            if pred(&h) {
                return Ok((h, start.elapsed()));
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "{what} not within {within:?}; last status {h:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&mut self, pool: &str) -> anyhow::Result<pb::PoolStatus> {
        let req = pb::GetPoolStatusRequest {
            pool_id: pool.into(),
        };
        Ok(self.api.pool.get_pool_status(req).await?.into_inner())
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        Ok(fiberlb_tests::http::get(self.node.admin_addr(), "/metrics")
            .await?
            .body)
    }
}

/// The value of the sample of `name` whose labels contain `label`, 0 when absent.
fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// The value of the unlabelled metric `name`.
fn plain(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A TCP backend that greets each connection with one tag byte, then echoes; `kill` drops
/// its listener and every open connection at once.
struct TagServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TagServer {
    async fn start(tag: u8, addr: SocketAddr) -> anyhow::Result<Self> {
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops them all.
            let mut conns = JoinSet::new();
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, Ordering::Relaxed);
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    if s.write_all(&[tag]).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Ok(Self {
            addr,
            accepted,
            task,
        })
    }

    fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for TagServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects through the load balancer and returns the backend's tag byte.
async fn tag_via(lb: SocketAddr) -> anyhow::Result<u8> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(lb)).await??;
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b)).await??;
    Ok(b[0])
}

/// Answers each HTTP request with the current `status`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, status: Arc<AtomicU16>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let code = status.load(Ordering::Relaxed);
    let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// An HTTP server (HTTPS with `tls`) answering with `status`.
async fn http_server(
    status: Arc<AtomicU16>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<(SocketAddr, Aborts)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (status, tls) = (status.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(s, status).await,
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            answer(s, status).await
                        }
                    }
                }
            });
        }
    });
    Ok((addr, Aborts(task)))
}

/// Aborts a server task when dropped.
struct Aborts(JoinHandle<()>);

impl Drop for Aborts {
    fn drop(&mut self) {
        self.0.abort();
    }
}
