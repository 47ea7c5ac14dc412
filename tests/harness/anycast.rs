//! An anycast lab in network namespaces (see the shared notes' anycast lab): a `router`
//! namespace running BIRD 2 with ECMP (merge paths) into its kernel table and the shared
//! etcd, a second router running GoBGP, N `node` namespaces each running a real
//! `fiberlb serve`, a `backend` namespace with HTTP backends served by the test, and a
//! `client` namespace behind the router.
//!
//! ```text
//!  client 10.99.0.2 ── 10.99.0.1 router (BIRD, etcd 10.99.1.1:2379)
//!                                  │ br0 10.99.1.1/24
//!        ┌──────────────┬──────────┼──────────┬──────────────┐
//!   gobgp 10.99.1.2   node1 .11  node2 .12  node3 .13   backend .100
//! ```
//!
//! Everything lives in namespaces named `flb{pid}-…`, deleted when the [`Lab`] drops (after
//! its processes are killed by PID). Addresses and ports (BGP 179, etcd 2379) are fixed
//! because each namespace is private to this lab.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::task::JoinHandle;

mod daemons;
mod web;

pub use web::{get, request, RequestError};

use crate::client::{Clients, Credential};
use crate::netns::{run, veth, Forward, NetNs, NsProcess};

/// The router's address on the node bridge (BIRD, etcd).
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
/// GoBGP's address.
pub const GOBGP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 2);
/// The backend namespace's address.
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 100);
/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// The prefix VIPs are allocated from.
pub const VIP_POOL: &str = "10.200.0.0/24";
/// BGP hold time everywhere, seconds.
pub const HOLD: u16 = 3;
/// Nodes' ASN, BIRD's, GoBGP's.
pub const NODE_AS: u32 = 65001;
pub(crate) const BIRD_AS: u32 = 65000;
pub(crate) const GOBGP_AS: u32 = 65100;
const TOKEN: &str = "anycast-lab-admin-token-0123456789";

/// Node `i`'s (0-based) address on the bridge.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 1, 11 + i as u8)
}

/// A `fiberlb serve` inside a node namespace.
pub struct LabNode {
    /// The process.
    pub proc: NsProcess,
    /// The gRPC API, forwarded to the root namespace.
    pub grpc: Forward,
    /// The admin HTTP server, forwarded.
    pub admin: Forward,
    log: PathBuf,
}

impl LabNode {
    /// Admin clients of this node.
    pub fn api(&self) -> anyhow::Result<Clients> {
        Clients::connect(
            &format!("http://{}", self.grpc.addr),
            Credential::Bearer(TOKEN.into()),
        )
    }

    /// `http://127.0.0.1:PORT` of the forwarded API (for the CLI's `--endpoint`).
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.addr)
    }

    /// The admin token.
    pub fn token(&self) -> &'static str {
        TOKEN
    }

    /// The last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = all.lines().collect();
        v[v.len().saturating_sub(n)..].join("\n")
    }
}

/// An HTTP backend answering every request with the client's (the node's) address.
struct Backend {
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// The lab. Fields drop in order: processes and tasks first, namespaces last.
pub struct Lab {
    /// Nodes by index; `None` once stopped.
    pub nodes: Vec<Option<LabNode>>,
    backends: Vec<Option<Backend>>,
    bird: NsProcess,
    gobgpd: NsProcess,
    etcd: NsProcess,
    /// Node namespaces.
    pub node_ns: Vec<Arc<NetNs>>,
    /// The client namespace.
    pub client: Arc<NetNs>,
    backend_ns: Arc<NetNs>,
    gobgp_ns: Arc<NetNs>,
    /// The router namespace.
    pub router: Arc<NetNs>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Builds the topology and starts BIRD, GoBGP and etcd (no nodes yet).
    pub async fn start(nodes: usize, backend_ports: &[u16]) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("fiberlb-anycast-")
            .tempdir()?;
        let pid = std::process::id();
        let ns = |n: &str| NetNs::create(&format!("flb{pid}-{n}")).map(Arc::new);
        let router = ns("r")?;
        let client = ns("c")?;
        let backend_ns = ns("b")?;
        let gobgp_ns = ns("g")?;
        let mut node_ns = Vec::new();
        for i in 0..nodes {
            node_ns.push(ns(&format!("n{}", i + 1))?);
        }

        router.ip(&["link", "add", "br0", "type", "bridge"])?;
        router.ip(&["addr", "add", "10.99.1.1/24", "dev", "br0"])?;
        router.ip(&["link", "set", "br0", "up"])?;
        router.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=3",
            "net.ipv4.fib_multipath_hash_fields=0x0037",
            "net.ipv4.fib_multipath_use_neigh=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
        veth(&router, "vc", &client, "eth0")?;
        router.ip(&["addr", "add", "10.99.0.1/24", "dev", "vc"])?;
        client.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"])?;
        client.ip(&["route", "add", "default", "via", "10.99.0.1"])?;
        let mut on_bridge = vec![(&backend_ns, "vb", BACKEND), (&gobgp_ns, "vg", GOBGP)];
        for (i, n) in node_ns.iter().enumerate() {
            on_bridge.push((n, ["vn1", "vn2", "vn3", "vn4"][i.min(3)], node_ip(i)));
        }
        for (n, ifname, ip) in on_bridge {
            veth(&router, ifname, n, "eth0")?;
            router.ip(&["link", "set", ifname, "master", "br0"])?;
            n.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            n.ip(&["route", "add", "default", "via", "10.99.1.1"])?;
        }
        for n in &node_ns {
            n.sysctl(&[
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ])?;
        }

        let etcd = daemons::start_etcd(&router, &dir)?;
        let bird = daemons::start_bird(&router, &dir, nodes)?;
        let gobgpd = daemons::start_gobgpd(&gobgp_ns, &dir, nodes)?;
        let mut lab = Lab {
            nodes: (0..nodes).map(|_| None).collect(),
            backends: Vec::new(),
            bird,
            gobgpd,
            etcd,
            node_ns,
            client,
            backend_ns,
            gobgp_ns,
            router,
            dir,
        };
        for port in backend_ports {
            let b = lab.backend(*port).await?;
            lab.backends.push(Some(b));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let etcd_up = lab
                .router
                .connect(SocketAddr::new(ROUTER.into(), 2379), Duration::from_secs(1))
                .await
                .is_ok();
            let bird_up = lab.birdc("show status").contains("Daemon is up");
            let gobgp_up = lab.gobgp(&["global"]).is_ok();
            if etcd_up && bird_up && gobgp_up {
                break;
            }
            for (p, what) in [
                (&mut lab.etcd, "etcd"),
                (&mut lab.bird, "bird"),
                (&mut lab.gobgpd, "gobgpd"),
            ] {
                if p.exited() {
                    bail!("{what} exited; logs in {}", lab.dir.path().display());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "lab did not come up (etcd {etcd_up}, bird {bird_up}, gobgpd {gobgp_up})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(lab)
    }

    /// Starts node `i` (0-based) and waits for its ready line.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let ns = self.node_ns[i].clone();
        let data = self.dir.path().join(format!("node{}", i + 1));
        std::fs::create_dir_all(&data)?;
        let token_file = data.join("admin-token");
        std::fs::write(&token_file, TOKEN)?;
        let cfg = data.join("fiberlb.toml");
        std::fs::write(&cfg, daemons::node_config(i, &data, &token_file))?;
        let log = data.join("stderr.log");
        let mut cmd = ns.command(&crate::node::binary()?.to_string_lossy());
        cmd.arg("serve")
            .arg("-c")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            ));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FIBERLB_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .spawn()
            .context("starting fiberlb serve in a namespace")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut proc = NsProcess::from_child(child);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let line = match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(Some(l))) => l,
            _ => {
                proc.kill();
                bail!(
                    "node{} printed no ready line; log:\n{}",
                    i + 1,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = |key: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("unexpected ready line {line:?}"))
        };
        let grpc = ns.forward(addr("grpc=")?).await?;
        let admin = ns.forward(addr("admin=")?).await?;
        self.nodes[i] = Some(LabNode {
            proc,
            grpc,
            admin,
            log,
        });
        Ok(())
    }

    /// Node `i`, which must be running.
    pub fn node(&self, i: usize) -> &LabNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Starts an HTTP backend on BACKEND:port.
    async fn backend(&self, port: u16) -> anyhow::Result<Backend> {
        let l = self
            .backend_ns
            .bind(SocketAddr::new(BACKEND.into(), port))
            .await
            .with_context(|| format!("binding backend port {port}"))?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((s, peer)) = l.accept().await {
                conns.spawn(web::serve_http(s, peer.ip()));
            }
        });
        Ok(Backend { task })
    }

    /// Stops backend `i` (listener and every open connection).
    pub fn kill_backend(&mut self, i: usize) {
        self.backends[i] = None;
    }

    /// Starts backend `i` again on `port`.
    pub async fn revive_backend(&mut self, i: usize, port: u16) -> anyhow::Result<()> {
        let b = self.backend(port).await?;
        self.backends[i] = Some(b);
        Ok(())
    }

    /// Read-only views of the routers, for tasks running beside the test.
    pub fn probes(&self) -> Probes {
        Probes {
            bird_ctl: self.dir.path().join("bird.ctl"),
            router: self.router.clone(),
            gobgp: self.gobgp_ns.clone(),
        }
    }

    /// `birdc show …` output.
    pub fn birdc(&self, cmd: &str) -> String {
        self.probes().birdc(cmd)
    }

    /// The `gobgp` CLI against the lab's gobgpd.
    pub fn gobgp(&self, args: &[&str]) -> anyhow::Result<String> {
        self.probes().gobgp(args)
    }

    /// GoBGP's paths for `prefix` (one line per path, empty when it has none).
    pub fn gobgp_paths(&self, prefix: &str) -> Vec<String> {
        self.probes().gobgp_paths(prefix)
    }

    /// The next hops of the router's kernel route to `vip` (empty when there is none).
    pub fn router_nexthops(&self, vip: IpAddr) -> Vec<IpAddr> {
        self.probes().router_nexthops(vip)
    }

    /// Polls until the router's next hops for `vip` are exactly `want`; returns how long it
    /// took (measured from `since`).
    pub async fn wait_nexthops(
        &self,
        vip: IpAddr,
        want: &[IpAddr],
        since: Instant,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let mut want = want.to_vec();
        want.sort();
        loop {
            let have = self.router_nexthops(vip);
            if have == want {
                return Ok(since.elapsed());
            }
            if since.elapsed() > within {
                bail!(
                    "router next hops for {vip}: {have:?}, expected {want:?} within {within:?}\nBIRD:\n{}\nGoBGP:\n{}",
                    self.birdc("show route all"),
                    self.gobgp(&["global", "rib", "-a", "ipv4"]).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Addresses on node `i`'s `lo` (`ip -o addr`).
    pub fn lo_addresses(&self, i: usize) -> String {
        self.node_ns[i]
            .ip(&["-o", "addr", "show", "dev", "lo"])
            .unwrap_or_default()
    }

    /// One `GET /` from the client namespace to `vip:80` on a new connection; the body
    /// names the node that proxied it.
    pub async fn get(&self, vip: IpAddr) -> anyhow::Result<IpAddr> {
        get(&self.client, vip).await
    }
}

/// What the routers show, cheap to clone into tasks that watch them.
#[derive(Clone)]
pub struct Probes {
    bird_ctl: PathBuf,
    router: Arc<NetNs>,
    gobgp: Arc<NetNs>,
}

impl Probes {
    /// `birdc show …` output.
    pub fn birdc(&self, cmd: &str) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.bird_ctl)
            .args(cmd.split_whitespace())
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The `gobgp` CLI against the lab's gobgpd.
    pub fn gobgp(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = self.gobgp.command("gobgp");
        cmd.args(["-u", "127.0.0.1", "-p", "50051"]).args(args);
        run(&mut cmd)
    }

    /// GoBGP's paths for `prefix` (one line per path, empty when it has none).
    pub fn gobgp_paths(&self, prefix: &str) -> Vec<String> {
        self.gobgp(&["global", "rib", "-a", "ipv4"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The next hops of the router's kernel route to `vip` (empty when there is none).
    pub fn router_nexthops(&self, vip: IpAddr) -> Vec<IpAddr> {
        let out = self
            .router
            .ip(&["route", "show", &format!("{vip}/32")])
            .unwrap_or_default();
        let words: Vec<&str> = out.split_whitespace().collect();
        let mut hops: Vec<IpAddr> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops
    }
}
