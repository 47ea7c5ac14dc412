use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use fiberlb_api::model::{
    Algorithm, Backend, BackendAddress, BackendStatus, PersistenceMode, Pool, Scope,
    SessionPersistence,
};
use http::header::{COOKIE, SET_COOKIE};
use http::HeaderValue;

use super::{token_of, Sticky, DEFAULT_COOKIE_NAME};
use crate::balance::PickContext;
use crate::snapshot::PoolPlan;
use crate::state::{RuntimeState, Verdict};

const IDS: [&str; 4] = [
    "0b5e4c1a-0000-4000-8000-000000000001",
    "3c1f9a2b-0000-4000-8000-000000000002",
    "7d2e8b3c-0000-4000-8000-000000000003",
    "e4a7c6d9-0000-4000-8000-000000000004",
];

fn scope() -> Scope {
    Scope {
        org_id: "org".into(),
        project_id: None,
    }
}

/// A round-robin pool over backends with `ids` (in this order) and persistence `mode`.
fn plan_with(
    ids: &[&str],
    mode: PersistenceMode,
    cookie_name: Option<&str>,
    ttl_seconds: u32,
) -> PoolPlan {
    let runtime = RuntimeState::default();
    let pool = Pool {
        id: "pool-1".into(),
        lb_id: "lb-1".into(),
        scope: scope(),
        name: "web".into(),
        algorithm: Algorithm::RoundRobin,
        health_check: None,
        session_persistence: Some(SessionPersistence {
            mode,
            cookie_name: cookie_name.map(String::from),
            ttl_seconds,
        }),
        circuit_breaker: None,
        proxy_protocol: None,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        revision: 1,
    };
    let backends: Vec<Backend> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Backend {
            id: (*id).into(),
            pool_id: "pool-1".into(),
            lb_id: "lb-1".into(),
            scope: scope(),
            name: format!("b{i}"),
            address: BackendAddress::Ip(IpAddr::from([10, 0, 0, i as u8 + 1])),
            port: 8080,
            weight: 1,
            status: BackendStatus::Active,
            enabled: true,
            backup: false,
            max_connections: None,
            metadata: BTreeMap::new(),
            drain_deadline: None,
            remove_after_drain: false,
            created_at: 0,
            updated_at: 0,
            revision: 1,
        })
        .collect();
    PoolPlan::new(pool, backends, &runtime)
}

fn plan(mode: PersistenceMode, cookie_name: Option<&str>, ttl_seconds: u32) -> PoolPlan {
    plan_with(&IDS, mode, cookie_name, ttl_seconds)
}

fn parts(cookies: &[&str]) -> http::request::Parts {
    let mut b = http::Request::builder().uri("/");
    for c in cookies {
        b = b.header(COOKIE, *c);
    }
    b.body(()).unwrap().into_parts().0
}

fn response(set_cookies: &[&str]) -> http::response::Parts {
    let mut b = http::Response::builder();
    for c in set_cookies {
        b = b.header(SET_COOKIE, *c);
    }
    b.body(()).unwrap().into_parts().0
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A browser: keeps the `name=value` of the last Set-Cookie it got.
#[derive(Default)]
struct Client {
    cookie: Option<String>,
    issued: usize,
}

impl Client {
    /// One request through `sticky`: pinned backend or a balancer pick; returns the index.
    fn request(&mut self, sticky: &Sticky, plan: &PoolPlan, https: bool, now: Instant) -> usize {
        let req = parts(&self.cookie.iter().map(String::as_str).collect::<Vec<_>>());
        let eligible = plan.eligible();
        let client_ip = ip("192.0.2.7");
        let index = sticky
            .lookup(plan, &eligible, &req, client_ip, now)
            .unwrap_or_else(|| {
                let ctx = PickContext {
                    client: SocketAddr::new(client_ip, 50_000),
                };
                plan.balancer.pick(&ctx, &eligible).unwrap()
            });
        if let Some(set) = sticky.on_chosen(plan, index, &req, client_ip, https, now) {
            let set = set.to_str().unwrap();
            self.cookie = Some(set.split(';').next().unwrap().to_string());
            self.issued += 1;
        }
        index
    }
}

#[test]
fn cookie_pins_over_50_requests_and_moves_off_an_unusable_backend() {
    let plan = plan(PersistenceMode::Cookie, None, 3600);
    let sticky = Sticky::new(100);
    let now = Instant::now();
    let mut client = Client::default();
    let first = client.request(&sticky, &plan, false, now);
    for _ in 0..49 {
        assert_eq!(client.request(&sticky, &plan, false, now), first);
    }
    assert_eq!(
        client.issued, 1,
        "the cookie is set once, not on every response"
    );
    let old_cookie = client.cookie.clone().unwrap();
    assert!(old_cookie.starts_with(&format!("{DEFAULT_COOKIE_NAME}=")));
    // Cookie mode keeps no per-client state.
    assert_eq!(sticky.table_len(), 0);

    // The pinned backend fails: its clients move, with a new cookie, and stay there.
    plan.states[first].set_verdict(Verdict::Unhealthy);
    let req = parts(&[&old_cookie]);
    assert_eq!(
        sticky.lookup(&plan, &plan.eligible(), &req, ip("192.0.2.7"), now),
        None
    );
    let second = client.request(&sticky, &plan, false, now);
    assert_ne!(second, first);
    assert_eq!(client.issued, 2);
    assert_ne!(client.cookie.as_deref(), Some(old_cookie.as_str()));
    for _ in 0..20 {
        assert_eq!(client.request(&sticky, &plan, false, now), second);
    }
    assert_eq!(client.issued, 2);
}

#[test]
fn cookie_is_stateless_across_nodes_and_plan_orders() {
    let plan_a = plan(PersistenceMode::Cookie, Some("SERVERID"), 0);
    let mut reversed = IDS;
    reversed.reverse();
    let plan_b = plan_with(&reversed, PersistenceMode::Cookie, Some("SERVERID"), 0);
    let (node_a, node_b) = (Sticky::new(10), Sticky::new(10));
    let now = Instant::now();
    for i in 0..IDS.len() {
        let set = node_a
            .on_chosen(&plan_a, i, &parts(&[]), ip("192.0.2.1"), false, now)
            .unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let req = parts(&[&pair]);
        let on_b = node_b
            .lookup(&plan_b, &plan_b.eligible(), &req, ip("198.51.100.1"), now)
            .unwrap();
        assert_eq!(plan_b.backends[on_b].id, plan_a.backends[i].id);
        // And it is not re-issued by a node that agrees.
        assert_eq!(
            node_b.on_chosen(&plan_b, on_b, &req, ip("198.51.100.1"), false, now),
            None
        );
    }
}

#[test]
fn set_cookie_attributes() {
    let now = Instant::now();
    let p = plan(PersistenceMode::Cookie, Some("SRV"), 600);
    let sticky = Sticky::new(10);
    let v = sticky
        .on_chosen(&p, 1, &parts(&[]), ip("192.0.2.1"), true, now)
        .unwrap();
    let v = v.to_str().unwrap();
    let token = format!("{:032x}", token_of(IDS[1]));
    assert_eq!(
        v,
        format!("SRV={token}; Path=/; HttpOnly; Max-Age=600; Secure")
    );
    assert!(!v.contains("10.0.0.2"), "never the backend address");

    let p = plan(PersistenceMode::Cookie, None, 0);
    let v = sticky
        .on_chosen(&p, 0, &parts(&[]), ip("192.0.2.1"), false, now)
        .unwrap();
    assert_eq!(
        v.to_str().unwrap(),
        format!("FIBERLB_SRV={:032x}; Path=/; HttpOnly", token_of(IDS[0]))
    );
    // A stale token (backend gone) or a forged one is balanced afresh.
    let forged = format!("FIBERLB_SRV={:032x}", token_of("no-such-backend"));
    assert_eq!(
        sticky.lookup(&p, &p.eligible(), &parts(&[&forged]), ip("192.0.2.1"), now),
        None
    );
    // Out-of-range indexes are ignored.
    assert_eq!(
        sticky.on_chosen(&p, 99, &parts(&[]), ip("192.0.2.1"), false, now),
        None
    );
}

#[test]
fn source_ip_ttl_is_sliding_and_expires() {
    let p = plan(PersistenceMode::SourceIp, None, 10);
    let sticky = Sticky::new(100);
    let t0 = Instant::now();
    let req = parts(&[]);
    let eligible = p.eligible();
    assert_eq!(
        sticky.lookup(&p, &eligible, &req, ip("192.0.2.9"), t0),
        None
    );
    assert_eq!(
        sticky.on_chosen(&p, 2, &req, ip("192.0.2.9"), false, t0),
        None
    );
    assert_eq!(
        sticky.lookup(
            &p,
            &eligible,
            &req,
            ip("192.0.2.9"),
            t0 + Duration::from_secs(5)
        ),
        Some(2)
    );
    // The same client over a dual-stack socket.
    assert_eq!(
        sticky.lookup(&p, &eligible, &req, ip("::ffff:192.0.2.9"), t0),
        Some(2)
    );
    assert_eq!(
        sticky.lookup(&p, &eligible, &req, ip("192.0.2.10"), t0),
        None
    );
    // A request refreshes the entry.
    sticky.on_chosen(
        &p,
        2,
        &req,
        ip("192.0.2.9"),
        false,
        t0 + Duration::from_secs(5),
    );
    assert_eq!(
        sticky.lookup(
            &p,
            &eligible,
            &req,
            ip("192.0.2.9"),
            t0 + Duration::from_secs(14)
        ),
        Some(2)
    );
    assert_eq!(
        sticky.lookup(
            &p,
            &eligible,
            &req,
            ip("192.0.2.9"),
            t0 + Duration::from_secs(15)
        ),
        None
    );
    assert_eq!(sticky.table_len(), 0, "the expired entry is dropped");
    // A pinned backend that is not eligible is not returned.
    sticky.on_chosen(&p, 1, &req, ip("192.0.2.9"), false, t0);
    assert_eq!(
        sticky.lookup(&p, &[true, false, true, true], &req, ip("192.0.2.9"), t0),
        None
    );
    assert_eq!(sticky.lookup(&p, &[true], &req, ip("192.0.2.9"), t0), None);
}

#[test]
fn source_ip_table_bound_holds() {
    let p = plan(PersistenceMode::SourceIp, None, 0);
    let sticky = Sticky::new(100);
    let now = Instant::now();
    let req = parts(&[]);
    for n in 0..10_000u32 {
        let client = IpAddr::from(n.wrapping_add(0x0a00_0000).to_be_bytes());
        sticky.on_chosen(&p, (n % 4) as usize, &req, client, false, now);
    }
    assert!(sticky.table_len() <= 100, "{}", sticky.table_len());
    // The newest clients are still pinned.
    let last = IpAddr::from(9_999u32.wrapping_add(0x0a00_0000).to_be_bytes());
    assert_eq!(
        sticky.lookup(&p, &p.eligible(), &req, last, now),
        Some(9_999 % 4)
    );
}

#[test]
fn app_cookie_learns_follows_and_forgets() {
    let p = plan(PersistenceMode::AppCookie, Some("JSESSIONID"), 60);
    let sticky = Sticky::new(100);
    let now = Instant::now();
    let client = ip("192.0.2.1");
    let eligible = p.eligible();
    assert_eq!(sticky.lookup(&p, &eligible, &parts(&[]), client, now), None);
    sticky.on_response(
        &p,
        3,
        &response(&["other=1", "JSESSIONID=abc123; Path=/; HttpOnly"]),
        now,
    );
    let with = parts(&["theme=dark; JSESSIONID=abc123"]);
    assert_eq!(sticky.lookup(&p, &eligible, &with, client, now), Some(3));
    // Any client holding the session cookie follows it (it is not tied to the address).
    assert_eq!(
        sticky.lookup(&p, &eligible, &with, ip("203.0.113.5"), now),
        Some(3)
    );
    assert_eq!(
        sticky.lookup(&p, &eligible, &parts(&["JSESSIONID=other"]), client, now),
        None
    );
    // Expiry.
    assert_eq!(
        sticky.lookup(&p, &eligible, &with, client, now + Duration::from_secs(61)),
        None
    );

    // The backend becomes unusable: the session moves and is remembered where it went.
    sticky.on_response(&p, 3, &response(&["JSESSIONID=abc123"]), now);
    let mut eligible = eligible;
    eligible[3] = false;
    assert_eq!(sticky.lookup(&p, &eligible, &with, client, now), None);
    assert_eq!(sticky.on_chosen(&p, 0, &with, client, false, now), None);
    assert_eq!(sticky.lookup(&p, &eligible, &with, client, now), Some(0));

    // The application deletes the cookie.
    sticky.on_response(&p, 0, &response(&["JSESSIONID=abc123; Max-Age=0"]), now);
    assert_eq!(sticky.lookup(&p, &eligible, &with, client, now), None);
    // Responses of other modes' pools teach nothing.
    let cookie_pool = plan(PersistenceMode::Cookie, Some("JSESSIONID"), 60);
    sticky.on_response(&cookie_pool, 1, &response(&["JSESSIONID=zzz"]), now);
    assert_eq!(sticky.table_len(), 0);
}

#[test]
fn no_persistence_does_nothing() {
    let p = plan(PersistenceMode::None, Some("X"), 60);
    let sticky = Sticky::new(10);
    let now = Instant::now();
    let req = parts(&["X=1"]);
    assert_eq!(
        sticky.on_chosen(&p, 0, &req, ip("192.0.2.1"), true, now),
        None
    );
    sticky.on_response(&p, 0, &response(&["X=1"]), now);
    assert_eq!(
        sticky.lookup(&p, &p.eligible(), &req, ip("192.0.2.1"), now),
        None
    );
    assert_eq!(sticky.table_len(), 0);
}

#[test]
fn malformed_cookie_headers_never_panic() {
    let now = Instant::now();
    let modes = [
        plan(PersistenceMode::Cookie, None, 10),
        plan(PersistenceMode::AppCookie, Some("FIBERLB_SRV"), 10),
        plan(PersistenceMode::SourceIp, None, 10),
    ];
    let sticky = Sticky::new(50);
    let mut seen = HashSet::new();
    // Hand-picked oddities, then pseudo-random bytes (a fixed LCG, so failures reproduce).
    let mut values: Vec<Vec<u8>> = [
        "",
        ";",
        "FIBERLB_SRV",
        "FIBERLB_SRV=",
        "FIBERLB_SRV=\"",
        "FIBERLB_SRV=\"\"",
        "=x",
        "FIBERLB_SRV==;",
        "FIBERLB_SRV=+0000000000000000000000000000000",
        "FIBERLB_SRV=zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "FIBERLB_SRV=é",
        " ; ; FIBERLB_SRV = \"abc\" ; ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    const ALPHABET: &[u8] = b"FIBERLB_SRV=;\" \t0af\x80\xff";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2_000 {
        let len = (x >> 59) as usize;
        let v: Vec<u8> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ALPHABET[(x >> 58) as usize % ALPHABET.len()]
            })
            .collect();
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        values.push(v);
    }
    for v in values {
        let Ok(hv) = HeaderValue::from_bytes(&v) else {
            continue;
        };
        seen.insert(v.clone());
        let mut req = parts(&[]);
        req.headers.append(COOKIE, hv.clone());
        req.headers.append(COOKIE, hv.clone());
        let mut resp = response(&[]);
        resp.headers.append(SET_COOKIE, hv);
        for p in &modes {
            let _ = sticky.lookup(p, &p.eligible(), &req, ip("192.0.2.1"), now);
            let _ = sticky.on_chosen(p, 1, &req, ip("192.0.2.1"), false, now);
            sticky.on_response(p, 1, &resp, now);
        }
    }
    assert!(seen.len() > 100);
    assert!(sticky.table_len() <= 50);
}

#[test]
fn token_cache_learns_new_backends() {
    let sticky = Sticky::new(10);
    let now = Instant::now();
    let small = plan_with(&IDS[..2], PersistenceMode::Cookie, None, 0);
    let big = plan(PersistenceMode::Cookie, None, 0);
    let cookie = |id: &str| format!("FIBERLB_SRV={:032x}", token_of(id));
    assert_eq!(
        sticky.lookup(
            &small,
            &small.eligible(),
            &parts(&[&cookie(IDS[1])]),
            ip("192.0.2.1"),
            now
        ),
        Some(1)
    );
    // A backend added in a later plan is found too.
    assert_eq!(
        sticky.lookup(
            &big,
            &big.eligible(),
            &parts(&[&cookie(IDS[3])]),
            ip("192.0.2.1"),
            now
        ),
        Some(3)
    );
    // A removed backend's cookie no longer pins.
    assert_eq!(
        sticky.lookup(
            &small,
            &small.eligible(),
            &parts(&[&cookie(IDS[3])]),
            ip("192.0.2.1"),
            now
        ),
        None
    );
}
