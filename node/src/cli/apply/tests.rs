//! The diff logic on in-memory values: plans against a fake server state.

use super::export_lb;
use super::fake::Fake;
use super::plan::{plan, summary, Action, Change, Kind, Op, PlanError, Report};
use crate::cli::document::Document;

const DOC: &str = r#"
loadBalancers:
- name: web
  orgId: acme
  projectId: shop
  description: shop front
  vip: 10.200.0.10
  tags: {team: web}
  defaultPool: app
  pools:
  - name: app
    algorithm: least_connections
    healthCheck: {type: http, path: /health}
    sessionPersistence: {mode: cookie, cookieName: SRV, ttlSeconds: 3600}
    circuitBreaker: {failureThreshold: 5, failureRateThreshold: 0.3}
    backends:
    - {name: app-1, ip: 10.0.0.1, port: 8080, maxConnections: 50}
    - {name: app-2, hostname: App2.Internal, port: 8080, weight: 3, backup: true}
  - name: static
    backends:
    - {name: s-1, ip: 10.0.1.1, port: 80, enabled: false}
  listeners:
  - name: http
    protocol: http
    port: 80
    defaultPool: app
    rules:
    - name: assets
      priority: 5
      conditions: [{pathPrefix: /assets/}, {method: [get, head]}]
      action: {forwardToPool: static}
    - name: old
      priority: 20
      conditions: [{pathExact: /old}]
      action: {redirect: {url: "https://example.com/new"}}
  - name: https
    protocol: https
    port: 443
    tls: {certificate: web-cert, minVersion: tls12, sniCertificates: {"*.Example.com": other-cert}}
    rules:
    - name: teapot
      conditions: [{hostHeader: [Tea.example.com]}, {header: {name: X-Brew, values: [yes]}}]
      action: {fixedResponse: {statusCode: 418, body: short and stout}}
"#;

fn fake() -> Fake {
    let mut f = Fake::default();
    f.certs.insert("web-cert".into(), "cert-1".into());
    f.certs.insert("other-cert".into(), "cert-2".into());
    f
}

/// Plans against the fake's state and carries the plan out; returns the reports.
fn apply(f: &mut Fake, doc: &Document, prune: bool) -> Vec<Report> {
    let actions = plan(doc, &f.current(), prune).unwrap();
    for a in &actions {
        f.run(doc, &a.op);
    }
    actions.into_iter().filter_map(|a| a.report).collect()
}

fn count(reports: &[Report], change: Change) -> usize {
    reports.iter().filter(|r| r.change == change).count()
}

fn lines(reports: &[Report]) -> Vec<String> {
    reports.iter().map(ToString::to_string).collect()
}

#[test]
fn first_apply_creates_everything_in_order() {
    let doc = Document::parse(DOC).unwrap();
    let mut f = fake();
    let reports = apply(&mut f, &doc, false);
    assert_eq!(
        lines(&reports),
        [
            "created lb web",
            "created pool web/app",
            "created backend web/app/app-1",
            "created backend web/app/app-2",
            "created pool web/static",
            "created backend web/static/s-1",
            "created listener web/http",
            "created rule web/http/assets",
            "created rule web/http/old",
            "created listener web/https",
            "created rule web/https/teapot",
        ]
    );
    assert_eq!(
        summary(&reports),
        "11 created, 0 updated, 0 deleted, 0 unchanged"
    );
    let lb = f.lbs[0].as_ref().unwrap();
    assert_eq!(
        lb.lb.default_pool_id.as_deref(),
        Some(lb.pools[0].0.id.as_str())
    );
    assert!(!lb.pools[1].1[0].enabled);
    assert_eq!(
        lb.listeners[1].tls_config.as_ref().unwrap().certificate_id,
        "cert-1"
    );
}

#[test]
fn second_apply_is_a_no_op() {
    let doc = Document::parse(DOC).unwrap();
    let mut f = fake();
    apply(&mut f, &doc, false);
    let actions = plan(&doc, &f.current(), true).unwrap();
    assert!(actions.iter().all(|a| a.op == Op::Nothing), "{actions:#?}");
    let reports: Vec<Report> = actions.into_iter().filter_map(|a| a.report).collect();
    assert_eq!(
        summary(&reports),
        "0 created, 0 updated, 0 deleted, 11 unchanged"
    );
}

#[test]
fn only_what_differs_is_updated() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let changed = DOC
        .replace("weight: 3", "weight: 4")
        .replace("priority: 20", "priority: 30")
        .replace("description: shop front", "description: new front")
        .replace("minVersion: tls12", "minVersion: tls13");
    let doc = Document::parse(&changed).unwrap();
    let reports = apply(&mut f, &doc, false);
    let updated: Vec<String> = reports
        .iter()
        .filter(|r| r.change == Change::Updated)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        updated,
        [
            "updated lb web",
            "updated backend web/app/app-2",
            "updated rule web/http/old",
            "updated listener web/https"
        ]
    );
    assert_eq!(count(&reports, Change::Unchanged), 7);
    // The redirect status the server chose (302) is kept, not reset.
    let l = &f.lbs[0].as_ref().unwrap().listeners[0];
    let old = l.rules.iter().find(|r| r.name == "old").unwrap();
    assert_eq!(old.priority, 30);
    assert!(plan(&doc, &f.current(), false)
        .unwrap()
        .iter()
        .all(|a| a.op == Op::Nothing));
}

#[test]
fn unset_fields_keep_server_values() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    // A minimal document naming the same objects changes nothing.
    let minimal = Document::parse(
        "loadBalancers: [{name: web, orgId: acme, projectId: shop, pools: [{name: app, backends: [{name: app-2}]}], \
         listeners: [{name: http}]}]",
    )
    .unwrap();
    let actions = plan(&minimal, &f.current(), false).unwrap();
    assert!(actions.iter().all(|a| a.op == Op::Nothing), "{actions:#?}");
}

#[test]
fn default_pool_change_alone_is_one_update_done_last() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let doc = Document::parse(&DOC.replace(
        "  defaultPool: app\n  pools:",
        "  defaultPool: static\n  pools:",
    ))
    .unwrap();
    let actions = plan(&doc, &f.current(), false).unwrap();
    let last = actions.iter().rfind(|a| a.op != Op::Nothing).unwrap();
    assert_eq!(last.report.as_ref().unwrap().to_string(), "updated lb web");
    assert!(matches!(&last.op, Op::SetLbDefaultPool { pool, .. } if pool == "static"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.report.as_ref().is_some_and(|r| r.kind == Kind::Lb))
            .count(),
        1
    );
}

#[test]
fn rules_follow_the_list_and_prune_deletes_the_rest() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let smaller = r#"
loadBalancers:
- name: web
  orgId: acme
  projectId: shop
  defaultPool: app
  pools:
  - name: app
    backends:
    - {name: app-1}
  listeners:
  - name: http
    rules:
    - {name: old}
"#;
    let doc = Document::parse(smaller).unwrap();
    // Without --prune only the rules (listed explicitly) shrink.
    let reports = apply(&mut f, &doc, false);
    assert_eq!(
        lines(&reports)
            .iter()
            .filter(|l| l.starts_with("deleted"))
            .collect::<Vec<_>>(),
        ["deleted rule web/http/assets"]
    );
    let reports = apply(&mut f, &doc, true);
    assert_eq!(
        lines(&reports)
            .iter()
            .filter(|l| l.starts_with("deleted"))
            .collect::<Vec<_>>(),
        [
            "deleted backend web/app/app-2",
            "deleted listener web/https",
            "deleted backend web/static/s-1",
            "deleted pool web/static",
        ]
    );
    let lb = f.lbs[0].as_ref().unwrap();
    assert_eq!(
        (lb.pools.len(), lb.pools[0].1.len(), lb.listeners.len()),
        (1, 1, 1)
    );
    assert!(plan(&doc, &f.current(), true)
        .unwrap()
        .iter()
        .all(|a| a.op == Op::Nothing));
}

#[test]
fn export_import_export_is_identical() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let export = |f: &Fake| {
        let lbs = f
            .current()
            .into_iter()
            .flatten()
            .map(|c| export_lb(&c))
            .collect();
        Document {
            load_balancers: lbs,
        }
        .to_yaml()
        .unwrap()
    };
    let first = export(&f);
    assert!(
        !first.contains("lb-") && !first.contains("revision"),
        "ids leaked:\n{first}"
    );
    assert!(
        first.contains("defaultPool: app") && first.contains("certificate: web-cert"),
        "{first}"
    );
    let mut empty = fake();
    let reports = apply(&mut empty, &Document::parse(&first).unwrap(), false);
    assert_eq!(count(&reports, Change::Created), 11);
    assert_eq!(export(&empty), first);
    // And importing into the original server changes nothing.
    let actions = plan(&Document::parse(&first).unwrap(), &f.current(), true).unwrap();
    assert!(actions.iter().all(|a: &Action| a.op == Op::Nothing));
}

#[test]
fn impossible_documents_fail_before_any_change() {
    let mut f = fake();
    let unknown =
        Document::parse("loadBalancers: [{name: a, orgId: o, defaultPool: nope}]").unwrap();
    assert!(matches!(
        plan(&unknown, &f.current(), false),
        Err(PlanError::UnknownPool { .. })
    ));
    let no_port = Document::parse(
        "loadBalancers: [{name: a, orgId: o, listeners: [{name: l, protocol: tcp}]}]",
    )
    .unwrap();
    let err = plan(&no_port, &f.current(), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "listener a/l: port is required to create it"
    );

    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let tcp = Document::parse(&DOC.replace("protocol: http\n", "protocol: tcp\n")).unwrap();
    let err = plan(&tcp, &f.current(), false).unwrap_err();
    assert!(
        err.to_string()
            .contains("protocol cannot be changed in place (http -> tcp)"),
        "{err}"
    );
    // A pool that --prune would delete cannot be referenced.
    let doc = Document::parse(
        "loadBalancers: [{name: web, orgId: acme, projectId: shop, listeners: [{name: http, defaultPool: static}]}]",
    )
    .unwrap();
    assert!(plan(&doc, &f.current(), false).is_ok());
    assert!(matches!(
        plan(&doc, &f.current(), true),
        Err(PlanError::UnknownPool { .. })
    ));
}

#[test]
fn backend_limits_are_applied_exported_and_cleared() {
    let mut f = fake();
    apply(&mut f, &Document::parse(DOC).unwrap(), false);
    let limit = |f: &Fake| f.lbs[0].as_ref().unwrap().pools[0].1[0].max_connections;
    assert_eq!(limit(&f), Some(50));
    let exported = Document {
        load_balancers: f
            .current()
            .into_iter()
            .flatten()
            .map(|c| export_lb(&c))
            .collect(),
    }
    .to_yaml()
    .unwrap();
    assert_eq!(
        exported.matches("maxConnections").count(),
        1,
        "only the limited backend carries it:\n{exported}"
    );
    assert!(exported.contains("maxConnections: 50"), "{exported}");

    let raised = DOC.replace("maxConnections: 50", "maxConnections: 80");
    let reports = apply(&mut f, &Document::parse(&raised).unwrap(), false);
    assert_eq!(
        lines(&reports)
            .into_iter()
            .filter(|l| l.starts_with("updated"))
            .collect::<Vec<_>>(),
        ["updated backend web/app/app-1"]
    );
    assert_eq!(limit(&f), Some(80));

    // Leaving the field out keeps the limit; 0 clears it.
    let omitted = DOC.replace(", maxConnections: 50", "");
    let actions = plan(&Document::parse(&omitted).unwrap(), &f.current(), false).unwrap();
    assert!(actions.iter().all(|a| a.op == Op::Nothing), "{actions:#?}");
    let cleared = DOC.replace("maxConnections: 50", "maxConnections: 0");
    apply(&mut f, &Document::parse(&cleared).unwrap(), false);
    assert_eq!(limit(&f), None);
    let actions = plan(&Document::parse(&cleared).unwrap(), &f.current(), false).unwrap();
    assert!(actions.iter().all(|a| a.op == Op::Nothing), "{actions:#?}");
}
