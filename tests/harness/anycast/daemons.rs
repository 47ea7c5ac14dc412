//! Configuration and start-up of the lab's daemons: the nodes' settings, etcd, BIRD 2
//! and GoBGP.

use std::process::Stdio;

use super::{node_ip, BIRD_AS, GOBGP, GOBGP_AS, HOLD, NODE_AS, ROUTER, VIP_POOL};
use crate::netns::{NetNs, NsProcess};

pub(super) fn node_config(
    i: usize,
    data: &std::path::Path,
    token_file: &std::path::Path,
) -> String {
    format!(
        r#"[server]
grpc_addr = "127.0.0.1:0"
metrics_addr = "127.0.0.1:0"

[storage]
backend = "chainfire"
chainfire_endpoints = ["http://{ROUTER}:2379"]
data_dir = "{data}"

[admin]
bootstrap_token_file = "{token}"

[cluster]
node_id = "node{n}"
vip_pool = "{VIP_POOL}"

[proxy]
drain_grace_seconds = 5

[bgp]
enabled = true
asn = {NODE_AS}
router_id = "{ip}"
graceful_shutdown_wait_ms = 1500
manage_vip_addresses = true

[[bgp.peers]]
address = "{ROUTER}"
asn = {BIRD_AS}
hold_time = {HOLD}

[[bgp.peers]]
address = "{GOBGP}"
asn = {GOBGP_AS}
hold_time = {HOLD}
"#,
        data = data.display(),
        token = token_file.display(),
        n = i + 1,
        ip = node_ip(i),
    )
}

pub(super) fn start_etcd(router: &NetNs, dir: &tempfile::TempDir) -> anyhow::Result<NsProcess> {
    let mut cmd = router.command("etcd");
    cmd.arg("--name=lab")
        .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
        .arg(format!("--listen-client-urls=http://{ROUTER}:2379"))
        .arg(format!("--advertise-client-urls=http://{ROUTER}:2379"))
        .arg("--listen-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-cluster=lab=http://127.0.0.1:2380")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("etcd.log"))?);
    NsProcess::spawn(cmd)
}

pub(super) fn start_bird(
    router: &NetNs,
    dir: &tempfile::TempDir,
    nodes: usize,
) -> anyhow::Result<NsProcess> {
    let conf = dir.path().join("bird.conf");
    let mut neighbors = String::new();
    for i in 0..nodes {
        neighbors.push_str(&format!(
            "protocol bgp node{} from lbnode {{ neighbor {} as {NODE_AS}; }}\n",
            i + 1,
            node_ip(i)
        ));
    }
    std::fs::write(
        &conf,
        format!(
            r#"router id {ROUTER};
log "{log}" all;
protocol device {{ scan time 5; }}
protocol kernel kernel4 {{
  ipv4 {{ import none; export where source = RTS_BGP; }};
  merge paths on limit 64;
  learn off;
}}
# RFC 8326: a receiver lowers the preference of GRACEFUL_SHUTDOWN routes, so ECMP moves
# traffic off a node before it withdraws.
filter vips {{
  if net ~ [ 10.200.0.0/16{{32,32}} ] then {{
    if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
    accept;
  }}
  reject;
}}
template bgp lbnode {{
  local {ROUTER} as {BIRD_AS};
  hold time {HOLD}; keepalive time 1;
  connect delay time 1; connect retry time 1; error wait time 1, 5;
  ipv4 {{ import filter vips; export none; }};
}}
{neighbors}"#,
            log = dir.path().join("bird.log").display(),
        ),
    )?;
    let mut cmd = router.command("bird");
    cmd.arg("-f")
        .arg("-s")
        .arg(dir.path().join("bird.ctl"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    NsProcess::spawn(cmd)
}

pub(super) fn start_gobgpd(
    ns: &NetNs,
    dir: &tempfile::TempDir,
    nodes: usize,
) -> anyhow::Result<NsProcess> {
    let conf = dir.path().join("gobgpd.toml");
    let mut text = format!(
        "[global.config]\n  as = {GOBGP_AS}\n  router-id = \"{GOBGP}\"\n  local-address-list = [\"{GOBGP}\"]\n"
    );
    for i in 0..nodes {
        text.push_str(&format!(
            r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{ip}"
    peer-as = {NODE_AS}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = {HOLD}
    keepalive-interval = 1
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#,
            ip = node_ip(i)
        ));
    }
    std::fs::write(&conf, text)?;
    let mut cmd = ns.command("gobgpd");
    cmd.arg("-f")
        .arg(&conf)
        .args([
            "-t",
            "toml",
            "--api-hosts",
            "127.0.0.1:50051",
            "--pprof-disable",
            "-p",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("gobgpd.log"))?)
        .stderr(Stdio::null());
    NsProcess::spawn(cmd)
}
