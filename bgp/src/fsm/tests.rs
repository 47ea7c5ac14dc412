//! Deterministic session tests: no sockets, no clock.

use super::*;
use crate::codec::{decode, tests::Rng, Update};

const LOCAL: &str = "192.0.2.1:40000";

fn cfg(passive: bool) -> SessionConfig {
    let mut c = SessionConfig::new(65001, 65000, Ipv4Addr::new(192, 0, 2, 1));
    c.passive = passive;
    c
}

fn peer_open(asn: u32, hold: u16) -> Vec<u8> {
    Message::Open(Open {
        asn,
        hold_time: hold,
        router_id: Ipv4Addr::new(192, 0, 2, 254),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::FourOctetAs(asn),
        ],
    })
    .encode()
    .unwrap()
}

fn keepalive() -> Vec<u8> {
    Message::Keepalive.encode().unwrap()
}

fn sent(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(decode(b).unwrap().unwrap().0),
            _ => None,
        })
        .collect()
}

fn armed(actions: &[Action], t: Timer) -> Option<Duration> {
    actions.iter().rev().find_map(|a| match a {
        Action::Arm(x, d) if *x == t => Some(*d),
        _ => None,
    })
}

fn route(p: &str) -> Route {
    Route::host(p.parse().unwrap())
}

/// Drives an active session to Established with the peer proposing `hold`.
fn established(hold: u16, routes: Vec<Route>) -> (Session, Vec<Action>) {
    let mut s = Session::new(cfg(false));
    s.handle(Input::SetRoutes(routes));
    let a = s.handle(Input::Start);
    assert_eq!(
        a[..2],
        [Action::StateChanged(State::Connect), Action::Connect]
    );
    let a = s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    assert!(matches!(&sent(&a)[..], [Message::Open(o)] if o.asn == 65001 && o.hold_time == 90));
    assert_eq!(armed(&a, Timer::Hold), Some(OPEN_HOLD));
    assert_eq!(s.state(), State::OpenSent);
    let a = s.handle(Input::Bytes(&peer_open(65000, hold)));
    assert_eq!(sent(&a), vec![Message::Keepalive]);
    assert_eq!(s.state(), State::OpenConfirm);
    let a = s.handle(Input::Bytes(&keepalive()));
    assert_eq!(s.state(), State::Established);
    (s, a)
}

#[test]
fn active_session_reaches_established_and_announces() {
    let (s, a) = established(9, vec![route("10.200.0.10/32")]);
    let updates = sent(&a);
    let [Message::Update(u)] = &updates[..] else {
        panic!("{updates:?}")
    };
    assert_eq!(u.nlri, vec!["10.200.0.10/32".parse().unwrap()]);
    assert!(u
        .attributes
        .contains(&Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(s.announced(), 1);
    assert_eq!(s.hold_time(), 9);
}

#[test]
fn hold_time_is_the_minimum_and_keepalive_a_third() {
    let mut s = Session::new(cfg(false));
    s.handle(Input::Start);
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let a = s.handle(Input::Bytes(&peer_open(65000, 9)));
    assert_eq!(armed(&a, Timer::Hold), Some(Duration::from_secs(9)));
    assert_eq!(armed(&a, Timer::Keepalive), Some(Duration::from_secs(3)));
    let a = s.handle(Input::Timer(Timer::Keepalive));
    assert_eq!(sent(&a), vec![Message::Keepalive]);
    assert_eq!(armed(&a, Timer::Keepalive), Some(Duration::from_secs(3)));
}

#[test]
fn hold_time_zero_disables_timers() {
    let mut s = Session::new(cfg(false));
    s.handle(Input::Start);
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let a = s.handle(Input::Bytes(&peer_open(65000, 0)));
    assert!(a.contains(&Action::Cancel(Timer::Hold)));
    assert_eq!(armed(&a, Timer::Keepalive), None);
    s.handle(Input::Bytes(&keepalive()));
    assert!(sent(&s.handle(Input::Timer(Timer::Keepalive))).is_empty());
}

#[test]
fn hold_expiry_sends_notification_and_backs_off_doubling_to_30s() {
    let (mut s, _) = established(9, vec![]);
    let a = s.handle(Input::Timer(Timer::Hold));
    assert_eq!(
        sent(&a),
        vec![Message::Notification(Notification::new(
            notif::HOLD_EXPIRED,
            0
        ))]
    );
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(armed(&a, Timer::IdleHold), Some(Duration::from_secs(1)));
    // Consecutive connect failures: 2, 4, 8, 16, 30, 30 s.
    for expect in [2, 4, 8, 16, 30, 30] {
        let a = s.handle(Input::Timer(Timer::IdleHold));
        assert!(a.contains(&Action::Connect));
        let a = s.handle(Input::ConnectFailed);
        assert_eq!(
            armed(&a, Timer::IdleHold),
            Some(Duration::from_secs(expect))
        );
    }
    // A connection attempt that hangs is abandoned by the connect timer.
    s.handle(Input::Timer(Timer::IdleHold));
    let a = s.handle(Input::Timer(Timer::ConnectRetry));
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn backoff_resets_after_established() {
    let (mut s, _) = established(9, vec![]);
    s.handle(Input::Closed);
    s.handle(Input::Timer(Timer::IdleHold));
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    s.handle(Input::Bytes(&peer_open(65000, 9)));
    s.handle(Input::Bytes(&keepalive()));
    assert_eq!(s.state(), State::Established);
    let a = s.handle(Input::Closed);
    assert_eq!(armed(&a, Timer::IdleHold), Some(Duration::from_secs(1)));
}

#[test]
fn peer_notification_resets_without_answer() {
    let (mut s, _) = established(9, vec![route("10.200.0.10/32")]);
    let n = Message::Notification(Notification::new(notif::CEASE, 2))
        .encode()
        .unwrap();
    let a = s.handle(Input::Bytes(&n));
    assert!(sent(&a).is_empty());
    assert!(
        matches!(a.iter().find(|x| matches!(x, Action::Down(_))), Some(Action::Down(r)) if r.contains("6/2"))
    );
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.announced(), 0);
}

#[test]
fn wrong_peer_as_is_refused() {
    let mut s = Session::new(cfg(false));
    s.handle(Input::Start);
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let a = s.handle(Input::Bytes(&peer_open(65099, 9)));
    assert_eq!(
        sent(&a),
        vec![Message::Notification(Notification::new(
            notif::OPEN,
            notif::OPEN_BAD_PEER_AS
        ))]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn unexpected_message_is_an_fsm_error() {
    let mut s = Session::new(cfg(false));
    s.handle(Input::Start);
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let a = s.handle(Input::Bytes(&keepalive()));
    assert_eq!(
        sent(&a),
        vec![Message::Notification(Notification::new(notif::FSM, 0))]
    );
}

#[test]
fn malformed_bytes_answer_with_the_decoders_notification() {
    let (mut s, _) = established(9, vec![]);
    let a = s.handle(Input::Bytes(&[0xFF, 0x00]));
    assert_eq!(
        sent(&a),
        vec![Message::Notification(Notification::new(1, 1))]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn messages_split_across_reads() {
    let mut s = Session::new(cfg(false));
    s.handle(Input::Start);
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let mut stream = peer_open(65000, 9);
    stream.extend(keepalive());
    for b in &stream {
        s.handle(Input::Bytes(std::slice::from_ref(b)));
    }
    assert_eq!(s.state(), State::Established);
}

#[test]
fn route_changes_send_only_diffs_and_full_set_after_reconnect() {
    let (mut s, _) = established(9, vec![route("10.200.0.10/32")]);
    let a = s.handle(Input::SetRoutes(vec![
        route("10.200.0.10/32"),
        route("10.200.0.11/32"),
    ]));
    let msgs = sent(&a);
    assert!(
        matches!(&msgs[..], [Message::Update(u)] if u.nlri == vec!["10.200.0.11/32".parse().unwrap()])
    );
    let a = s.handle(Input::SetRoutes(vec![route("10.200.0.11/32")]));
    let msgs = sent(&a);
    assert!(
        matches!(&msgs[..], [Message::Update(u)] if u.withdrawn == vec!["10.200.0.10/32".parse().unwrap()] && u.nlri.is_empty())
    );
    assert!(sent(&s.handle(Input::SetRoutes(vec![route("10.200.0.11/32")]))).is_empty());
    // New session: everything again.
    s.handle(Input::Closed);
    s.handle(Input::Timer(Timer::IdleHold));
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    s.handle(Input::Bytes(&peer_open(65000, 9)));
    let a = s.handle(Input::Bytes(&keepalive()));
    assert!(
        matches!(&sent(&a)[..], [Message::Update(u)] if u.nlri == vec!["10.200.0.11/32".parse().unwrap()])
    );
}

#[test]
fn stop_sends_cease_and_stays_idle() {
    let (mut s, _) = established(9, vec![route("10.200.0.10/32")]);
    let a = s.handle(Input::Stop);
    assert_eq!(
        sent(&a),
        vec![Message::Notification(Notification::new(
            notif::CEASE,
            notif::CEASE_ADMIN_SHUTDOWN
        ))]
    );
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
    assert!(s.handle(Input::Timer(Timer::IdleHold)).is_empty());
}

#[test]
fn passive_waits_for_the_peer_and_returns_to_active() {
    let mut s = Session::new(cfg(true));
    assert!(!s.accepts_connection());
    let a = s.handle(Input::Start);
    assert_eq!(a, vec![Action::StateChanged(State::Active)]);
    assert!(s.accepts_connection());
    s.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    assert!(!s.accepts_connection());
    s.handle(Input::Bytes(&peer_open(65000, 9)));
    s.handle(Input::Bytes(&keepalive()));
    assert_eq!(s.state(), State::Established);
    let a = s.handle(Input::Closed);
    assert_eq!(s.state(), State::Active);
    assert_eq!(armed(&a, Timer::IdleHold), None);
}

/// Two sessions wired back to back exchange everything they send.
#[test]
fn two_sessions_back_to_back() {
    let mut a = Session::new(cfg(false));
    let mut bcfg = SessionConfig::new(65000, 65001, Ipv4Addr::new(192, 0, 2, 254));
    bcfg.passive = true;
    let mut b = Session::new(bcfg);
    a.handle(Input::SetRoutes(vec![route("10.200.0.10/32")]));
    a.handle(Input::Start);
    b.handle(Input::Start);
    let mut to_b = a.handle(Input::Connected {
        local: LOCAL.parse().unwrap(),
    });
    let mut to_a = b.handle(Input::Connected {
        local: "192.0.2.254:179".parse().unwrap(),
    });
    for _ in 0..4 {
        let next_b: Vec<Action> = bytes_of(&to_b)
            .iter()
            .flat_map(|x| b.handle(Input::Bytes(x)))
            .collect();
        let next_a: Vec<Action> = bytes_of(&to_a)
            .iter()
            .flat_map(|x| a.handle(Input::Bytes(x)))
            .collect();
        to_a = next_b;
        to_b = next_a;
    }
    assert_eq!(a.state(), State::Established);
    assert_eq!(b.state(), State::Established);
    assert_eq!(
        b.received().collect::<Vec<_>>(),
        vec![&"10.200.0.10/32".parse::<IpNet>().unwrap()]
    );
}

fn bytes_of(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// Random inputs in random states must never panic, and the session must stay coherent.
#[test]
fn seeded_random_inputs_never_panic() {
    for seed in 0..300u64 {
        let result = std::panic::catch_unwind(|| random_run(seed));
        if result.is_err() {
            panic!("session simulation failed with seed {seed}");
        }
    }
}

fn random_run(seed: u64) {
    let mut rng = Rng(seed);
    let mut s = Session::new(cfg(rng.below(2) == 0));
    let valid: Vec<Vec<u8>> = vec![
        peer_open(65000, 9),
        peer_open(65000, 0),
        peer_open(65099, 3),
        keepalive(),
        Message::Update(Update {
            nlri: vec!["10.1.0.0/16".parse().unwrap()],
            ..Update::default()
        })
        .encode()
        .unwrap(),
        Message::Notification(Notification::new(6, 4))
            .encode()
            .unwrap(),
    ];
    for _ in 0..400 {
        let actions = match rng.below(12) {
            0 => s.handle(Input::Start),
            1 if rng.below(8) == 0 => s.handle(Input::Stop),
            2 => s.handle(Input::Connected {
                local: LOCAL.parse().unwrap(),
            }),
            3 => s.handle(Input::ConnectFailed),
            4 => s.handle(Input::Closed),
            5 => {
                let t = [
                    Timer::ConnectRetry,
                    Timer::Hold,
                    Timer::Keepalive,
                    Timer::IdleHold,
                ][rng.below(4)];
                s.handle(Input::Timer(t))
            }
            6 => {
                let n = rng.below(6);
                let routes = (0..n).map(|i| route(&format!("10.200.0.{i}/32"))).collect();
                s.handle(Input::SetRoutes(routes))
            }
            7 => {
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                s.handle(Input::Bytes(&junk))
            }
            _ => {
                let msg = &valid[rng.below(valid.len())];
                let cut = rng.below(msg.len() + 1);
                let mut acts = s.handle(Input::Bytes(&msg[..cut]));
                acts.extend(s.handle(Input::Bytes(&msg[cut..])));
                acts
            }
        };
        for a in &actions {
            if let Action::Send(b) = a {
                assert!(decode(b).unwrap().is_some(), "we only send valid messages");
            }
        }
        if s.state() != State::Established {
            assert_eq!(s.announced(), 0);
        }
    }
}
