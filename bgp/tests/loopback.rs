//! Two of our own speakers on loopback: one passive (listening on 127.0.0.1:0), one
//! active. They reach Established, exchange UPDATEs, and a shutdown sends Cease.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fiberlb_bgp::{PeerConfig, Route, Speaker, SpeakerConfig, State};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_speakers_establish_and_exchange_updates() {
    let mut passive_peer = PeerConfig::new(LOCALHOST, 65001);
    passive_peer.passive = true;
    passive_peer.hold_time = 9;
    let router = Speaker::start(SpeakerConfig {
        asn: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        peers: vec![passive_peer],
    })
    .await
    .unwrap();
    let port = router.listen_addr().unwrap().port();

    let mut active_peer = PeerConfig::new(LOCALHOST, 65000);
    active_peer.port = port;
    active_peer.hold_time = 30;
    active_peer.local_address = Some(LOCALHOST);
    let node = Speaker::start(SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        listen: None,
        peers: vec![active_peer],
    })
    .await
    .unwrap();
    let vip: ipnet::IpNet = "10.200.0.10/32".parse().unwrap();
    node.set_routes(vec![Route::host(vip)]).unwrap();

    let got = tokio::time::timeout(
        WAIT,
        router.wait_session(0, |s| s.routes_received == vec![vip]),
    )
    .await
    .expect("router learns the VIP")
    .unwrap();
    assert_eq!(got.state, State::Established);
    assert!(got.uptime.is_some());
    let info = node.sessions().remove(0);
    assert_eq!(info.state, State::Established);
    assert_eq!(info.routes_announced, 1);
    assert_eq!(info.peer.port(), port);

    // Withdraw.
    node.set_routes(vec![]).unwrap();
    tokio::time::timeout(
        WAIT,
        router.wait_session(0, |s| s.routes_received.is_empty()),
    )
    .await
    .expect("router sees the withdrawal")
    .unwrap();

    // Graceful shutdown: the router gets Cease and goes back to waiting.
    node.set_routes(vec![Route::host(vip)]).unwrap();
    tokio::time::timeout(
        WAIT,
        router.wait_session(0, |s| !s.routes_received.is_empty()),
    )
    .await
    .unwrap()
    .unwrap();
    node.shutdown().await;
    let down = tokio::time::timeout(
        WAIT,
        router.wait_session(0, |s| s.state == State::Active && s.last_error.is_some()),
    )
    .await
    .expect("router notices the Cease")
    .unwrap();
    assert!(
        down.last_error.unwrap().contains("6/2"),
        "Cease / administrative shutdown"
    );
    assert!(down.routes_received.is_empty());
    router.shutdown().await;
}

#[tokio::test]
async fn active_speaker_reconnects_when_the_peer_appears() {
    // Reserve a port, then free it so the first attempts are refused.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut peer = PeerConfig::new(LOCALHOST, 65000);
    peer.port = port;
    let node = Speaker::start(SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    tokio::time::timeout(WAIT, node.wait_session(0, |s| s.last_error.is_some()))
        .await
        .expect("first attempt fails")
        .unwrap();

    let mut passive_peer = PeerConfig::new(LOCALHOST, 65001);
    passive_peer.passive = true;
    let router = Speaker::start(SpeakerConfig {
        asn: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        listen: Some(std::net::SocketAddr::new(LOCALHOST, port)),
        peers: vec![passive_peer],
    })
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        node.wait_session(0, |s| s.state == State::Established),
    )
    .await
    .expect("reconnects after back-off")
    .unwrap();
    node.shutdown().await;
    router.shutdown().await;
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let mut p = PeerConfig::new(LOCALHOST, 65000);
    p.passive = true;
    let res = Speaker::start(SpeakerConfig {
        asn: 65001,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        listen: None,
        peers: vec![p],
    })
    .await;
    assert!(res.is_err());
}
