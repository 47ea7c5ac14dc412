//! Interop against a real BIRD 2 on 127.0.0.1 (root namespace, loopback only): BIRD
//! learns our /32, sees community changes, the withdrawal, and our Cease.
//!
//! Runs when `bird` and `birdc` are installed (Debian `bird2`) and skips with a message
//! otherwise; set `FIBERLB_REQUIRE_BIRD=1` to make a missing BIRD a failure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_bgp::{PeerConfig, Route, Speaker, SpeakerConfig, State, GRACEFUL_SHUTDOWN};

const WAIT: Duration = Duration::from_secs(15);

/// Kills BIRD when the test ends, whatever happens.
struct Bird {
    child: Child,
    ctl: PathBuf,
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bird {
    fn birdc(&self, cmd: &str) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(cmd.split_whitespace())
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `birdc cmd` until `pred` holds or the deadline passes.
    async fn until(&self, cmd: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.birdc(cmd);
            if pred(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "BIRD never showed {what}; last `{cmd}`:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn start_bird(dir: &Path, port: u16, password: Option<&str>) -> Bird {
    let conf = dir.join("bird.conf");
    let ctl = dir.join("bird.ctl");
    std::fs::write(
        &conf,
        format!(
            r#"router id 127.0.0.1;
log "{log}" all;
protocol device {{ scan time 5; }}
# Loopback neighbors are not "directly connected" for BIRD: multihop, with the next hop
# resolved through the lo route that `direct` provides.
protocol direct {{ ipv4; interface "lo"; }}
protocol bgp lb {{
  local 127.0.0.1 port {port} as 65000;
  neighbor 127.0.0.2 as 65001;
  multihop 2;
  passive on;
  hold time 3;{password}
  ipv4 {{ import where net ~ [ 10.200.0.0/16{{32,32}} ]; export none; }};
}}
"#,
            log = dir.join("bird.log").display(),
            password = password
                .map(|p| format!("\n  password \"{p}\";"))
                .unwrap_or_default(),
        ),
    )
    .unwrap();
    let child = Command::new("bird")
        .arg("-f")
        .arg("-s")
        .arg(&ctl)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bird");
    Bird { child, ctl }
}

#[tokio::test]
async fn bird_learns_and_forgets_our_route() {
    if !have("bird") || !have("birdc") {
        assert!(
            std::env::var_os("FIBERLB_REQUIRE_BIRD").is_none(),
            "FIBERLB_REQUIRE_BIRD is set but bird/birdc are not installed"
        );
        eprintln!("skipping: bird2 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bird = start_bird(dir.path(), port, None);
    bird.until("show status", "its status", |o| o.contains("Daemon is up"))
        .await;

    let mut peer = PeerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 65000);
    peer.port = port;
    peer.hold_time = 9;
    peer.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let speaker = Speaker::start(SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let vip: ipnet::IpNet = "10.200.0.10/32".parse().unwrap();
    speaker.set_routes(vec![Route::host(vip)]).unwrap();

    let up = tokio::time::timeout(
        WAIT,
        speaker.wait_session(0, |s| s.state == State::Established),
    )
    .await;
    if up.is_err() {
        panic!(
            "no session with BIRD: ours {:?}\nBIRD: {}\nlog:\n{}",
            speaker.sessions(),
            bird.birdc("show protocols all lb"),
            std::fs::read_to_string(dir.path().join("bird.log")).unwrap_or_default()
        );
    }
    let routes = bird
        .until("show route all", "10.200.0.10/32", |o| {
            o.contains("10.200.0.10/32")
        })
        .await;
    assert!(routes.contains("65001"), "AS path: {routes}");
    assert!(routes.contains("127.0.0.2"), "next hop self: {routes}");
    eprintln!("BIRD learned:\n{routes}");

    // RFC 8326 graceful shutdown marking.
    let mut gs = Route::host(vip);
    gs.communities = vec![GRACEFUL_SHUTDOWN];
    speaker.set_routes(vec![gs]).unwrap();
    bird.until("show route all", "the GRACEFUL_SHUTDOWN community", |o| {
        o.contains("(65535,0)")
    })
    .await;

    speaker.set_routes(vec![]).unwrap();
    bird.until("show route", "the withdrawal", |o| {
        !o.contains("10.200.0.10/32")
    })
    .await;

    speaker.set_routes(vec![Route::host(vip)]).unwrap();
    bird.until("show route", "the re-announcement", |o| {
        o.contains("10.200.0.10/32")
    })
    .await;
    speaker.shutdown().await;
    let proto = bird
        .until("show protocols all lb", "our Cease", |o| {
            !o.contains("Established")
        })
        .await;
    eprintln!("BIRD after our shutdown:\n{proto}");
    bird.until("show route", "routes flushed", |o| {
        !o.contains("10.200.0.10/32")
    })
    .await;
}

/// A TCP MD5 signed session (RFC 2385): BIRD with `password` accepts our signed
/// connection and learns the route.
#[tokio::test]
async fn bird_session_with_tcp_md5() {
    if !have("bird") || !have("birdc") {
        assert!(
            std::env::var_os("FIBERLB_REQUIRE_BIRD").is_none(),
            "FIBERLB_REQUIRE_BIRD is set but bird/birdc are not installed"
        );
        eprintln!("skipping: bird2 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bird = start_bird(dir.path(), port, Some("s3cr3t-md5"));
    bird.until("show status", "its status", |o| o.contains("Daemon is up"))
        .await;
    let mut peer = PeerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 65000);
    peer.port = port;
    peer.hold_time = 9;
    peer.local_address = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    peer.password = Some("s3cr3t-md5".into());
    let speaker = Speaker::start(SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let vip: ipnet::IpNet = "10.200.0.11/32".parse().unwrap();
    speaker.set_routes(vec![Route::host(vip)]).unwrap();
    let up = tokio::time::timeout(
        WAIT,
        speaker.wait_session(0, |s| s.state == State::Established),
    )
    .await;
    assert!(
        up.is_ok(),
        "no signed session with BIRD: ours {:?}\nBIRD: {}",
        speaker.sessions(),
        bird.birdc("show protocols all lb")
    );
    bird.until("show route", "10.200.0.11/32", |o| {
        o.contains("10.200.0.11/32")
    })
    .await;
    speaker.shutdown().await;
}
