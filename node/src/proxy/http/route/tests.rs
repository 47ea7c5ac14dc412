use std::collections::BTreeMap;
use std::net::IpAddr;

use fiberlb_api::model::{
    Condition, HttpMethod, LbStatus, Listener, ListenerProtocol, LoadBalancer, RoutingRule,
    RuleAction, Scope,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{strip_port, RequestView, Route, RouteTable};

fn lb(default_pool: Option<&str>) -> LoadBalancer {
    LoadBalancer {
        id: "lb-1".into(),
        name: "lb".into(),
        scope: Scope {
            org_id: "org".into(),
            project_id: None,
        },
        description: None,
        default_pool_id: default_pool.map(String::from),
        status: LbStatus::Active,
        status_message: None,
        last_transition: 0,
        vip: None,
        created_at: 0,
        updated_at: 0,
        created_by: "test".into(),
        metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        revision: 1,
    }
}

fn listener(default_pool: Option<&str>, rules: Vec<RoutingRule>) -> Listener {
    Listener {
        id: "ls-1".into(),
        lb_id: "lb-1".into(),
        scope: Scope {
            org_id: "org".into(),
            project_id: None,
        },
        name: "web".into(),
        protocol: ListenerProtocol::Http,
        port: 80,
        tls: None,
        default_pool_id: default_pool.map(String::from),
        rules,
        connection_limit: None,
        timeout_client_ms: Listener::DEFAULT_TIMEOUT_CLIENT_MS,
        timeout_backend_ms: Listener::DEFAULT_TIMEOUT_BACKEND_MS,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        revision: 1,
    }
}

fn rule(name: &str, priority: u32, conditions: Vec<Condition>, pool: &str) -> RoutingRule {
    RoutingRule {
        id: format!("id-{name}"),
        name: name.into(),
        priority,
        conditions,
        action: RuleAction::ForwardToPool {
            pool_id: pool.into(),
        },
        enabled: true,
    }
}

/// A request builder with sensible defaults: `GET example.com/` from 192.0.2.1.
struct Req {
    method: Method,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
    ip: IpAddr,
}

impl Req {
    fn new() -> Self {
        Req {
            method: Method::GET,
            host: Some("example.com"),
            path: "/",
            query: None,
            headers: HeaderMap::new(),
            ip: "192.0.2.1".parse().unwrap(),
        }
    }
    fn host(mut self, h: Option<&'static str>) -> Self {
        self.host = h;
        self
    }
    fn path(mut self, p: &'static str) -> Self {
        self.path = p;
        self
    }
    fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.parse().unwrap();
        self
    }
    /// The pool the table forwards this request to (`None` for anything but Forward).
    fn pool(&self, t: &RouteTable) -> Option<String> {
        match t.route(&self.view()) {
            Route::Forward { pool_id, .. } => Some(pool_id.to_string()),
            _ => None,
        }
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            client_ip: self.ip,
        }
    }
}

/// A table with one rule (`cond` → pool "hit") and default pool "miss".
fn one(cond: Condition) -> RouteTable {
    RouteTable::compile(
        &listener(Some("miss"), vec![rule("r", 1, vec![cond], "hit")]),
        &lb(None),
    )
}

fn hit(t: &RouteTable, r: Req) -> bool {
    match r.pool(t).as_deref() {
        Some("hit") => true,
        Some("miss") => false,
        other => panic!("unexpected route {other:?}"),
    }
}

#[test]
fn host_header_exact_and_wildcard() {
    let t = one(Condition::HostHeader {
        values: vec!["api.example.com".into(), "*.apps.example.com".into()],
    });
    assert!(hit(&t, Req::new().host(Some("api.example.com"))));
    assert!(hit(&t, Req::new().host(Some("API.Example.COM"))));
    assert!(hit(&t, Req::new().host(Some("api.example.com:8080"))));
    assert!(hit(&t, Req::new().host(Some("x.apps.example.com"))));
    assert!(!hit(&t, Req::new().host(Some("a.b.apps.example.com"))));
    assert!(!hit(&t, Req::new().host(Some("apps.example.com"))));
    assert!(!hit(&t, Req::new().host(Some("www.example.com"))));
    assert!(!hit(&t, Req::new().host(None)));
}

#[test]
fn path_prefix_exact_regex() {
    let t = one(Condition::PathPrefix {
        value: "/api/".into(),
    });
    assert!(hit(&t, Req::new().path("/api/users")));
    assert!(!hit(&t, Req::new().path("/api")));
    assert!(!hit(&t, Req::new().path("/API/users")));

    let t = one(Condition::PathExact {
        value: "/login".into(),
    });
    assert!(hit(&t, Req::new().path("/login")));
    assert!(!hit(&t, Req::new().path("/login/")));
    assert!(!hit(&t, Req::new().path("/login2")));

    let t = one(Condition::PathRegex {
        pattern: r"^/v[0-9]+/items/\d+$".into(),
    });
    assert!(hit(&t, Req::new().path("/v2/items/42")));
    assert!(!hit(&t, Req::new().path("/v2/items/x")));
    assert!(!hit(&t, Req::new().path("/x/v2/items/42")));
    // Unanchored patterns match anywhere in the path, as written.
    let t = one(Condition::PathRegex {
        pattern: r"\.php".into(),
    });
    assert!(hit(&t, Req::new().path("/a/index.php")));
    assert!(!hit(&t, Req::new().path("/a/index.html")));
}

#[test]
fn header_any_value_exact_case_insensitive_name() {
    let t = one(Condition::Header {
        name: "X-Env".into(),
        values: vec!["canary".into(), "beta".into()],
    });
    assert!(hit(&t, Req::new().header("x-env", "canary")));
    assert!(hit(&t, Req::new().header("x-env", "beta")));
    // Any of several instances of the header.
    assert!(hit(
        &t,
        Req::new().header("x-env", "prod").header("x-env", "beta")
    ));
    assert!(!hit(&t, Req::new().header("x-env", "Canary")));
    assert!(!hit(&t, Req::new().header("x-env", "canary2")));
    assert!(!hit(&t, Req::new().header("x-other", "canary")));
    assert!(!hit(&t, Req::new()));
}

#[test]
fn method_any_of() {
    let t = one(Condition::Method {
        methods: vec![HttpMethod::Post, HttpMethod::Put],
    });
    assert!(hit(&t, Req::new().method(Method::POST)));
    assert!(hit(&t, Req::new().method(Method::PUT)));
    assert!(!hit(&t, Req::new().method(Method::GET)));
    assert!(!hit(
        &t,
        Req::new().method(Method::from_bytes(b"PURGE").unwrap())
    ));
}

#[test]
fn query_param_decoded() {
    let t = one(Condition::QueryParam {
        name: "version".into(),
        value: "2 beta".into(),
    });
    assert!(hit(&t, Req::new().query("a=1&version=2%20beta")));
    assert!(hit(&t, Req::new().query("version=2+beta&a=1")));
    assert!(hit(&t, Req::new().query("vers%69on=2%20beta")));
    assert!(!hit(&t, Req::new().query("version=2")));
    assert!(!hit(&t, Req::new().query("version=2%20beta2")));
    assert!(!hit(&t, Req::new().query("xversion=2%20beta")));
    assert!(!hit(&t, Req::new()));
}

#[test]
fn source_ip_cidrs() {
    let t = one(Condition::SourceIp {
        cidrs: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
    });
    assert!(hit(&t, Req::new().ip("10.20.30.40")));
    assert!(hit(&t, Req::new().ip("::ffff:10.20.30.40")));
    assert!(hit(&t, Req::new().ip("2001:db8::1")));
    assert!(!hit(&t, Req::new().ip("11.0.0.1")));
    assert!(!hit(&t, Req::new().ip("2001:db9::1")));
}

#[test]
fn and_within_rule_and_empty_conditions() {
    let t = RouteTable::compile(
        &listener(
            None,
            vec![
                rule(
                    "both",
                    1,
                    vec![
                        Condition::PathPrefix {
                            value: "/api".into(),
                        },
                        Condition::Method {
                            methods: vec![HttpMethod::Post],
                        },
                    ],
                    "both",
                ),
                rule("all", 2, vec![], "all"),
            ],
        ),
        &lb(None),
    );
    assert_eq!(
        Req::new()
            .path("/api/x")
            .method(Method::POST)
            .pool(&t)
            .as_deref(),
        Some("both")
    );
    assert_eq!(Req::new().path("/api/x").pool(&t).as_deref(), Some("all"));
    assert_eq!(
        Req::new()
            .path("/web")
            .method(Method::POST)
            .pool(&t)
            .as_deref(),
        Some("all")
    );
}

#[test]
fn priority_then_name_order() {
    let rules = vec![
        rule("zz", 5, vec![], "p5"),
        rule(
            "b",
            1,
            vec![Condition::PathPrefix { value: "/x".into() }],
            "p1b",
        ),
        rule(
            "a",
            1,
            vec![Condition::PathPrefix {
                value: "/x/y".into(),
            }],
            "p1a",
        ),
        rule(
            "c",
            0,
            vec![Condition::PathExact {
                value: "/x/y/z".into(),
            }],
            "p0",
        ),
    ];
    let t = RouteTable::compile(&listener(None, rules), &lb(None));
    assert_eq!(Req::new().path("/x/y/z").pool(&t).as_deref(), Some("p0"));
    assert_eq!(Req::new().path("/x/y/q").pool(&t).as_deref(), Some("p1a"));
    assert_eq!(Req::new().path("/x/q").pool(&t).as_deref(), Some("p1b"));
    assert_eq!(Req::new().path("/q").pool(&t).as_deref(), Some("p5"));
    let req = Req::new().path("/x/y/q");
    assert_eq!(
        t.route(&req.view()),
        Route::Forward {
            pool_id: "p1a",
            rule: Some("a")
        }
    );
}

#[test]
fn disabled_rules_are_skipped() {
    let mut off = rule("off", 0, vec![], "off");
    off.enabled = false;
    let t = RouteTable::compile(&listener(Some("dflt"), vec![off]), &lb(None));
    assert_eq!(t.rule_count(), 0);
    assert_eq!(Req::new().pool(&t).as_deref(), Some("dflt"));
}

#[test]
fn default_pool_fallbacks_and_not_found() {
    let r = || {
        vec![rule(
            "api",
            1,
            vec![Condition::PathPrefix {
                value: "/api".into(),
            }],
            "api",
        )]
    };
    let req = Req::new().path("/other");

    let t = RouteTable::compile(&listener(Some("listener-pool"), r()), &lb(Some("lb-pool")));
    assert_eq!(
        t.route(&req.view()),
        Route::Forward {
            pool_id: "listener-pool",
            rule: None
        }
    );

    let t = RouteTable::compile(&listener(None, r()), &lb(Some("lb-pool")));
    assert_eq!(
        t.route(&req.view()),
        Route::Forward {
            pool_id: "lb-pool",
            rule: None
        }
    );
    assert_eq!(t.default_pool(), Some("lb-pool"));

    let t = RouteTable::compile(&listener(None, r()), &lb(None));
    assert_eq!(t.route(&req.view()), Route::NotFound);
    assert_eq!(Req::new().path("/api/1").pool(&t).as_deref(), Some("api"));
}

#[test]
fn redirect_and_fixed_response() {
    let mut redirect = rule(
        "old",
        1,
        vec![Condition::PathPrefix {
            value: "/old".into(),
        }],
        "",
    );
    redirect.action = RuleAction::Redirect {
        url: "https://example.com/new".into(),
        status_code: 308,
    };
    let mut fixed = rule(
        "maint",
        2,
        vec![Condition::PathExact {
            value: "/status".into(),
        }],
        "",
    );
    fixed.action = RuleAction::FixedResponse {
        status_code: 503,
        content_type: "text/plain".into(),
        body: "down for maintenance".into(),
    };
    let t = RouteTable::compile(&listener(None, vec![redirect, fixed]), &lb(None));
    assert_eq!(
        t.route(&Req::new().path("/old/page").view()),
        Route::Redirect {
            location: "https://example.com/new",
            status: StatusCode::PERMANENT_REDIRECT
        }
    );
    assert_eq!(
        t.route(&Req::new().path("/status").view()),
        Route::Fixed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: "text/plain",
            body: bytes::Bytes::from_static(b"down for maintenance"),
        }
    );
}

#[test]
fn invalid_rules_never_match_and_never_panic() {
    let mut bad_status = rule("bad-status", 1, vec![], "");
    bad_status.action = RuleAction::Redirect {
        url: "/x".into(),
        status_code: 200,
    };
    let mut bad_code = rule("bad-code", 2, vec![], "");
    bad_code.action = RuleAction::FixedResponse {
        status_code: 42,
        content_type: "text/plain".into(),
        body: String::new(),
    };
    let mut bad_ct = rule("bad-ct", 3, vec![], "");
    bad_ct.action = RuleAction::FixedResponse {
        status_code: 200,
        content_type: "a\nb".into(),
        body: String::new(),
    };
    let rules = vec![
        bad_status,
        bad_code,
        bad_ct,
        rule(
            "bad-regex",
            4,
            vec![Condition::PathRegex {
                pattern: "(unclosed".into(),
            }],
            "x",
        ),
        rule(
            "huge-regex",
            5,
            vec![Condition::PathRegex {
                pattern: "a{1000}{1000}".into(),
            }],
            "x",
        ),
        rule(
            "bad-header",
            6,
            vec![Condition::Header {
                name: "bad header".into(),
                values: vec![],
            }],
            "x",
        ),
    ];
    let t = RouteTable::compile(&listener(Some("dflt"), rules), &lb(None));
    assert_eq!(t.rule_count(), 6);
    assert_eq!(Req::new().path("/x").pool(&t).as_deref(), Some("dflt"));
}

#[test]
fn strips_ports() {
    assert_eq!(strip_port("example.com"), "example.com");
    assert_eq!(strip_port("example.com:8080"), "example.com");
    assert_eq!(strip_port("[::1]:443"), "[::1]");
    assert_eq!(strip_port("[::1]"), "[::1]");
    assert_eq!(strip_port("[::1"), "[::1");
    assert_eq!(strip_port("::1"), "::1");
    assert_eq!(strip_port(""), "");
}
