use super::*;
use crate::cli::enums::{Algorithm, CheckKind, Method, Persistence, Protocol, TlsVersion};

/// The example of the design brief, verbatim apart from the elided circuit breaker fields.
pub(crate) const EXAMPLE: &str = r#"
loadBalancers:
- name: web
  orgId: acme
  projectId: shop        # optional
  description: shop front
  vip: 10.200.0.10       # optional
  tags: {team: web}
  metadata: {}
  defaultPool: app       # optional, pool name
  pools:
  - name: app
    algorithm: round_robin
    enabled: true
    healthCheck: {type: http, path: /health, expectedCodes: [200], interval: 5, timeout: 2, healthyThreshold: 2, unhealthyThreshold: 3}
    sessionPersistence: {mode: cookie, cookieName: SRV, ttlSeconds: 3600}
    circuitBreaker: {enabled: true, failureThreshold: 5, failureRateThreshold: 0.5}
    backends:
    - {name: app-1, ip: 10.0.0.1, port: 8080, weight: 1, backup: false, enabled: true}
    - {name: app-2, hostname: app2.internal, port: 8080}
  listeners:
  - name: http
    protocol: http
    port: 80
    defaultPool: app
    tls: {certificate: web-cert, minVersion: tls12, clientAuth: none, sniCertificates: {"*.example.com": other-cert}}
    rules:
    - name: api
      priority: 10
      enabled: true
      conditions: [{pathPrefix: /api/}, {hostHeader: [api.example.com]}, {method: [get, post]}]
      action: {forwardToPool: app}
"#;

#[test]
fn parses_the_example() {
    let doc = Document::parse(EXAMPLE).unwrap();
    assert_eq!(doc.load_balancers.len(), 1);
    let lb = &doc.load_balancers[0];
    assert_eq!(
        (
            lb.name.as_str(),
            lb.org_id.as_str(),
            lb.project_id.as_deref()
        ),
        ("web", "acme", Some("shop"))
    );
    assert_eq!(lb.tags.as_ref().unwrap()["team"], "web");
    assert_eq!(lb.metadata, Some(StringMap::new()));
    assert_eq!(lb.default_pool.as_deref(), Some("app"));
    let pool = &lb.pools[0];
    assert_eq!(pool.algorithm, Some(Algorithm::RoundRobin));
    let hc = pool.health_check.as_ref().unwrap();
    assert_eq!(
        (hc.kind, hc.path.as_deref(), hc.interval),
        (CheckKind::Http, Some("/health"), Some(5))
    );
    assert_eq!(
        pool.session_persistence.as_ref().unwrap().mode,
        Some(Persistence::Cookie)
    );
    assert_eq!(
        pool.circuit_breaker
            .as_ref()
            .unwrap()
            .failure_rate_threshold,
        Some(0.5)
    );
    assert_eq!(pool.backends[1].hostname.as_deref(), Some("app2.internal"));
    assert_eq!(pool.backends[1].weight, None);
    let l = &lb.listeners[0];
    assert_eq!(l.protocol, Some(Protocol::Http));
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
    assert_eq!(
        tls.sni_certificates.as_ref().unwrap()["*.example.com"],
        "other-cert"
    );
    let rule = &l.rules.as_ref().unwrap()[0];
    let conds = rule.conditions.as_ref().unwrap();
    assert_eq!(conds[0].path_prefix.as_deref(), Some("/api/"));
    assert_eq!(conds[2].method, Some(vec![Method::Get, Method::Post]));
    assert_eq!(
        rule.action.as_ref().unwrap().forward_to_pool.as_deref(),
        Some("app")
    );
}

#[test]
fn yaml_and_json_round_trip() {
    let doc = Document::parse(EXAMPLE).unwrap();
    let yaml = doc.to_yaml().unwrap();
    assert_eq!(Document::parse(&yaml).unwrap(), doc);
    assert!(yaml.contains("pathPrefix: /api/"), "{yaml}");
    assert!(yaml.contains("algorithm: round_robin"), "{yaml}");
    let json = doc.to_json().unwrap();
    assert_eq!(Document::parse(&json).unwrap(), doc);
    // Serialising is deterministic.
    assert_eq!(Document::parse(&yaml).unwrap().to_yaml().unwrap(), yaml);
}

#[test]
fn unknown_fields_and_values_are_refused() {
    let err = Document::parse("loadBalancers: [{name: a, orgId: o, colour: red}]").unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
    let err = Document::parse(
        "loadBalancers: [{name: a, orgId: o, pools: [{name: p, algorithm: fastest}]}]",
    )
    .unwrap_err();
    assert!(err.to_string().contains("fastest"), "{err}");
}

#[test]
fn inconsistent_documents_are_refused() {
    let cases = [
        ("loadBalancers: [{name: a, orgId: o, pools: [{name: p}, {name: p}]}]", "appears twice"),
        ("loadBalancers: [{name: a, orgId: ''}]", "orgId is required"),
        ("loadBalancers: [{name: a, orgId: o}, {name: a, orgId: o}]", "appears twice"),
        (
            "loadBalancers: [{name: a, orgId: o, pools: [{name: p, backends: [{name: b, ip: 10.0.0.1, hostname: h}]}]}]",
            "only one of",
        ),
        ("loadBalancers: [{name: a, orgId: o, pools: [{name: p, healthCheck: {type: tcp, path: /}}]}]", "path does not apply"),
        (
            "loadBalancers: [{name: a, orgId: o, listeners: [{name: l, rules: [{name: r, conditions: [{pathPrefix: /, pathExact: /}]}]}]}]",
            "exactly one field",
        ),
        (
            "loadBalancers: [{name: a, orgId: o, listeners: [{name: l, rules: [{name: r, action: {}}]}]}]",
            "exactly one of",
        ),
        ("loadBalancers: [{name: a, orgId: o, listeners: [{name: l, port: 70000}]}]", "not in 1-65535"),
    ];
    for (text, want) in cases {
        let err = Document::parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn normal_form() {
    let doc = Document::parse(
        "loadBalancers: [{name: a, orgId: o, vip: '2001:db8:0:0::1', listeners: [{name: l, rules: [{name: r, conditions: [{hostHeader: [API.Example.com]}]}]}]}]",
    )
    .unwrap();
    let lb = &doc.load_balancers[0];
    assert_eq!(lb.vip.as_deref(), Some("2001:db8::1"));
    let rules = lb.listeners[0].rules.as_ref().unwrap();
    assert_eq!(
        rules[0].conditions.as_ref().unwrap()[0].host_header,
        Some(vec!["api.example.com".to_string()])
    );
}
