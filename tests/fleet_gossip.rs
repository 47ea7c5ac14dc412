//! Three real nodes on one etcd, gossiping on loopback: shared health with probe
//! sharding, node death and rejoin, fleet-wide balancing decisions.
//!
//! Every node has its own listener address (`--bind-address 127.77.x.y`) and gossip port;
//! the configuration is written through one node's API and served by all. The fleets of
//! this binary run one at a time (two cores would otherwise blur the timing figures they
//! print and bound).

#[path = "fleet_health.rs"]
mod health;
#[path = "fleet_routing.rs"]
mod routing;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fiberlb_proto::v1 as pb;
use fiberlb_tests::etcd::Etcd;
use fiberlb_tests::l4::{free_port, unique_loopback};
use fiberlb_tests::{Clients, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Admin token every node of a fleet shares (it lives in the shared store).
const TOKEN: &str = "fleet-gossip-admin-token-0123456789";

/// Serialises the fleets of this binary (see the module comment).
static ONE_FLEET_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` nodes named `node0..` on one etcd, gossip on, `probe_replicas = 2`.
pub struct Fleet {
    _etcd: Etcd,
    nodes: Vec<Option<Node>>,
    /// Each node's listener address.
    pub ips: Vec<IpAddr>,
    /// Node ids.
    pub ids: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
    configs: Vec<PathBuf>,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Fleet {
    pub async fn start(n: usize) -> anyhow::Result<Fleet> {
        let lock = ONE_FLEET_AT_A_TIME.lock().await;
        let etcd = Etcd::start().await?;
        let ports: Vec<u16> = (0..n)
            .map(|_| {
                Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port())
            })
            .collect::<anyhow::Result<_>>()?;
        let peers = ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut f = Fleet {
            _etcd: etcd,
            nodes: Vec::new(),
            ips: Vec::new(),
            ids: Vec::new(),
            dirs: Vec::new(),
            configs: Vec::new(),
            _lock: lock,
        };
        for (i, port) in ports.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let key = dir.path().join("cluster.key");
            std::fs::write(
                &key,
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
            )?;
            let token_file = dir.path().join("admin-token");
            std::fs::write(&token_file, TOKEN)?;
            // The harness reads the token from the data dir, as an operator's CLI would.
            std::fs::write(dir.path().join("bootstrap-token"), TOKEN)?;
            let cfg = dir.path().join("fiberlb.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[storage]\nbackend = \"chainfire\"\nchainfire_endpoints = [\"{}\"]\n\
                     [admin]\nbootstrap_token_file = \"{}\"\n\
                     [cluster]\nnode_id = \"node{i}\"\ngossip_addr = \"127.0.0.1:{port}\"\n\
                     peers = [{peers}]\nkey_file = \"{}\"\nprobe_replicas = 2\n",
                    f._etcd.url(),
                    token_file.display(),
                    key.display(),
                ),
            )?;
            f.ids.push(format!("node{i}"));
            f.ips.push(unique_loopback());
            f.dirs.push(dir);
            f.configs.push(cfg);
            f.nodes.push(None);
        }
        for i in 0..n {
            f.start_node(i).await?;
        }
        Ok(f)
    }

    /// Starts (or restarts) node `i` with its configuration.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = Node::start_with(
            self.dirs[i].path(),
            &[
                "-c",
                &self.configs[i].to_string_lossy(),
                "--bind-address",
                &self.ips[i].to_string(),
            ],
        )
        .await?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn api(&self, i: usize) -> anyhow::Result<Clients> {
        self.node(i).admin()
    }

    /// `kill -9` of node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill9();
        }
    }

    /// A port free on every node's listener address.
    pub fn common_port(&self) -> anyhow::Result<u16> {
        loop {
            let p = free_port(self.ips[0], false)?;
            if self.ips[1..]
                .iter()
                .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
            {
                return Ok(p);
            }
        }
    }

    /// Waits until every node in `up` lists exactly `up` as alive (the others down or
    /// gone); returns how long it took.
    pub async fn wait_members(&self, up: &[usize], within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let want: Vec<&str> = up.iter().map(|&i| self.ids[i].as_str()).collect();
        for &i in up {
            let mut api = self.api(i)?;
            loop {
                let m = api
                    .cluster
                    .list_members(pb::ListMembersRequest {})
                    .await?
                    .into_inner()
                    .members;
                let mut alive: Vec<&str> = m
                    .iter()
                    .filter(|m| m.state == pb::MemberState::Alive as i32)
                    .map(|m| m.node_id.as_str())
                    .collect();
                alive.sort();
                if alive == want {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < within,
                    "{} sees alive {alive:?}, want {want:?}",
                    self.ids[i]
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(start.elapsed())
    }

    pub async fn status(&self, i: usize) -> anyhow::Result<pb::NodeStatus> {
        Ok(self
            .api(i)?
            .cluster
            .get_node_status(pb::GetNodeStatusRequest {})
            .await?
            .into_inner())
    }

    /// Waits until the nodes in `on` together own `want` probes; returns each node's count.
    pub async fn wait_probes_owned(
        &self,
        on: &[usize],
        want: u32,
        within: Duration,
    ) -> anyhow::Result<Vec<u32>> {
        let start = Instant::now();
        loop {
            let mut owned = Vec::new();
            for &i in on {
                owned.push(self.status(i).await?.probes_owned);
            }
            if owned.iter().sum::<u32>() == want {
                return Ok(owned);
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "probes owned {owned:?}, want {want} in total"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `cond` every 50 ms until it holds; returns how long it took.
pub async fn wait_until<F>(within: Duration, what: &str, mut cond: F) -> anyhow::Result<Duration>
where
    F: AsyncFnMut() -> anyhow::Result<bool>,
{
    let start = Instant::now();
    loop {
        if cond().await? {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP backend answering every request with its one-byte tag, and health probes with
/// 200 while counting them by the probing node (named in the probe's User-Agent).
pub struct HttpBackend {
    pub addr: SocketAddr,
    probes: Arc<Mutex<HashMap<String, u64>>>,
    pub served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start(tag: u8) -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let probes: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let served = Arc::new(AtomicU64::new(0));
        let (p, s) = (probes.clone(), served.clone());
        let task = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops them all.
            let mut conns = JoinSet::new();
            while let Ok((sock, _)) = l.accept().await {
                while conns.try_join_next().is_some() {}
                conns.spawn(answer(sock, tag, p.clone(), s.clone()));
            }
        });
        Ok(Self {
            addr,
            probes,
            served,
            task,
        })
    }

    /// Probes received so far, by node id.
    pub fn probes_by(&self) -> HashMap<String, u64> {
        self.probes.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total_probes(&self) -> u64 {
        self.probes_by().values().sum()
    }

    /// Stops accepting and drops every open connection at once.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut s: TcpStream,
    tag: u8,
    probes: Arc<Mutex<HashMap<String, u64>>>,
    served: Arc<AtomicU64>,
) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 && head.len() < 16 * 1024 => head.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_lowercase();
    let agent = text
        .lines()
        .find_map(|l| l.strip_prefix("user-agent:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let reply: Vec<u8> = if agent.starts_with("fiberlb-health-check/") {
        let node = agent
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map_or("?", |(id, _)| id)
            .to_string();
        if let Ok(mut m) = probes.lock() {
            *m.entry(node).or_default() += 1;
        }
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
    } else {
        served.fetch_add(1, Ordering::Relaxed);
        let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\n".to_vec();
        r.push(tag);
        r
    };
    let _ = s.write_all(&reply).await;
    let _ = s.shutdown().await;
}

/// One HTTP request through a TCP listener at `front`; the answering backend's tag.
pub async fn fetch_tag(front: SocketAddr) -> anyhow::Result<u8> {
    let go = async {
        let mut s = TcpStream::connect(front).await?;
        s.write_all(
            b"GET / HTTP/1.1\r\nhost: t\r\nuser-agent: client\r\nconnection: close\r\n\r\n",
        )
        .await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await?;
        anyhow::ensure!(
            body.starts_with(b"HTTP/1.1 200"),
            "unexpected answer {body:?}"
        );
        body.last()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("empty answer"))
    };
    tokio::time::timeout(Duration::from_secs(5), go).await?
}

/// The value of the sample of `name` whose labels contain `label`, 0 when absent.
pub fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn metrics(node: &Node) -> anyhow::Result<String> {
    Ok(fiberlb_tests::http::get(node.admin_addr(), "/metrics")
        .await?
        .body)
}
