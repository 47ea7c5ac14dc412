//! The `fiberlb` command-line client against a real node: imperative commands with JSON
//! output, idempotent `apply`, and `export` → `import` → `export` round trips.

use std::collections::BTreeMap;

use fiberlb_proto::v1 as pb;
use fiberlb_tests::cli::{self, run};
use fiberlb_tests::fixtures::self_signed;
use fiberlb_tests::{bounded, Clients, Node};
use serde_json::Value;

/// A document using most of the format: two load balancers (one in a project), pools with
/// health checks and persistence, every backend address kind, rules with every condition and
/// action kind, and an HTTPS listener naming its certificate.
const DOC: &str = r#"
loadBalancers:
- name: web
  orgId: acme
  description: storefront
  tags: {env: prod}
  defaultPool: app
  pools:
  - name: app
    algorithm: least_connections
    healthCheck: {type: http, path: /health, expectedCodes: [200, 204], interval: 10, timeout: 5, enabled: false}
    sessionPersistence: {mode: cookie, cookieName: lb, ttlSeconds: 600}
    backends:
    - {name: app-1, ip: 10.0.0.1, port: 8080, weight: 10}
    - {name: app-2, hostname: localhost, port: 8080}
    - {name: app-3, vmId: vm-42, port: 8080, backup: true}
  - name: static
    algorithm: maglev
    backends:
    - {name: s-1, ip: 10.0.1.1, port: 80}
  listeners:
  - name: http
    protocol: http
    port: 80
    defaultPool: app
    rules:
    - name: api
      priority: 10
      conditions: [{pathPrefix: /api/}, {method: [get, post]}, {header: {name: x-env, values: [prod]}}]
      action: {forwardToPool: static}
    - name: old
      priority: 20
      conditions: [{hostHeader: [old.example.com]}, {pathExact: /old}]
      action: {redirect: {url: "https://example.com/", statusCode: 301}}
    - name: down
      priority: 30
      conditions: [{sourceIp: [192.0.2.0/24]}, {queryParam: {name: x, value: "1"}}, {pathRegex: "^/m/.*"}]
      action: {fixedResponse: {statusCode: 503, body: maintenance}}
  - name: https
    protocol: https
    port: 443
    defaultPool: app
    tls: {certificate: site, minVersion: tls12}
  - name: dns
    protocol: udp
    port: 53
    defaultPool: static
- name: api
  orgId: acme
  projectId: shop
  pools:
  - name: p
    backends: [{name: b, ip: 10.0.2.1, port: 9000}]
  listeners:
  - {name: tcp, protocol: tcp, port: 9000, defaultPool: p}
"#;

/// Creates the certificate the document's HTTPS listener names.
async fn create_site_cert(c: &mut Clients) -> anyhow::Result<()> {
    let cert = self_signed(&["www.example.com"]);
    c.cert
        .create_certificate(pb::CreateCertificateRequest {
            name: "site".into(),
            org_id: "acme".into(),
            certificate_pem: cert.cert_pem,
            private_key_pem: cert.key_pem,
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The revision of every object under the org's load balancers, by id.
async fn revisions(c: &mut Clients, org: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let lbs =
        c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
            org_id: org.into(),
            ..Default::default()
        })
        .await?;
    for lb in lbs.into_inner().load_balancers {
        out.insert(lb.id.clone(), lb.revision);
        let ls = c
            .listener
            .list_listeners(pb::ListListenersRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await?;
        for l in ls.into_inner().listeners {
            out.insert(l.id, l.revision);
        }
        let pools = c
            .pool
            .list_pools(pb::ListPoolsRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await?;
        for p in pools.into_inner().pools {
            out.insert(p.id.clone(), p.revision);
            let bs = c
                .backend
                .list_backends(pb::ListBackendsRequest {
                    pool_id: p.id,
                    ..Default::default()
                })
                .await?;
            for b in bs.into_inner().backends {
                out.insert(b.id, b.revision);
            }
        }
    }
    Ok(out)
}

/// `(created, updated, deleted, unchanged)` from apply's summary line.
fn summary(stdout: &str) -> anyhow::Result<(u32, u32, u32, u32)> {
    let line = stdout
        .lines()
        .find(|l| l.contains(" created, ") && l.contains(" updated"))
        .ok_or_else(|| anyhow::anyhow!("no summary line in apply output:\n{stdout}"))?;
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums[..] {
        [a, b, c, d] => Ok((a, b, c, d)),
        _ => anyhow::bail!("unexpected summary {line:?}"),
    }
}

fn write_doc(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_create_and_list_as_json() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let out = run(
            &node,
            &[
                "lb", "create", "--name", "web", "--org", "acme", "--tag", "env=prod", "-o", "json",
            ],
        )
        .await?
        .ok()?;
        let created: Value = serde_json::from_str(&out)?;
        assert_eq!(created["name"], "web");
        assert_eq!(created["org_id"], "acme");
        let id = created["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id in {out}"))?
            .to_string();
        let got =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: id.clone() })
                .await?
                .into_inner();
        assert_eq!(got.tags.get("env").map(String::as_str), Some("prod"));
        run(&node, &["lb", "create", "--name", "api", "--org", "acme"])
            .await?
            .ok()?;

        let out = run(&node, &["lb", "list", "--org", "acme", "-o", "json"])
            .await?
            .ok()?;
        let list: Value = serde_json::from_str(&out)?;
        let names: Vec<&str> = list["load_balancers"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("no load_balancers in {out}"))?
            .iter()
            .filter_map(|lb| lb["name"].as_str())
            .collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(list["total_count"], 2);
        let table = run(&node, &["lb", "list", "--org", "acme"]).await?.ok()?;
        assert!(table.contains("web") && table.contains("api"), "{table}");
        let out = run(&node, &["lb", "get", &id, "-o", "json"]).await?.ok()?;
        assert_eq!(serde_json::from_str::<Value>(&out)?["id"], id.as_str());

        // API errors exit 1 with the error code on stderr.
        let missing = run(&node, &["lb", "get", "no-such-lb"]).await?;
        assert_eq!(missing.code, Some(1));
        assert!(
            missing.stderr.contains("LB_NOT_FOUND"),
            "{}",
            missing.stderr
        );
        let bad = run(&node, &["lb", "create", "--name", "Bad", "--org", "acme"]).await?;
        assert_eq!(bad.code, Some(1));
        assert!(bad.stderr.contains("INVALID_LB_NAME"), "{}", bad.stderr);
        let args: Vec<String> = [
            "--endpoint",
            &node.grpc_url(),
            "--token",
            "fblb_wrong",
            "lb",
            "list",
            "--org",
            "acme",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let denied = cli::run_raw(&args).await?;
        assert_eq!(denied.code, Some(1));
        assert!(
            denied.stderr.contains("UNAUTHENTICATED"),
            "{}",
            denied.stderr
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_changes_nothing_the_second_time() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    let dir = tempfile::tempdir()?;
    bounded(async {
        create_site_cert(&mut c).await?;
        let file = write_doc(dir.path(), "web.yaml", DOC)?;
        let first = run(&node, &["apply", "-f", &file]).await?.ok()?;
        let (created, updated, deleted, _) = summary(&first)?;
        assert_eq!((updated, deleted), (0, 0), "{first}");
        assert!(
            created >= 17,
            "2 LBs, 3 pools, 5 backends, 4 listeners, 3 rules: {first}"
        );
        let before = revisions(&mut c, "acme").await?;
        assert_eq!(
            before.len(),
            14,
            "LBs, pools, backends and listeners: {before:?}"
        );

        let second = run(&node, &["apply", "-f", &file]).await?.ok()?;
        let (created2, updated2, deleted2, unchanged2) = summary(&second)?;
        assert_eq!((created2, updated2, deleted2), (0, 0, 0), "{second}");
        assert_eq!(unchanged2, created, "{second}");
        assert_eq!(
            revisions(&mut c, "acme").await?,
            before,
            "the second apply wrote nothing"
        );

        // What apply built is what the document says.
        let lbs =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "acme".into(),
                ..Default::default()
            })
            .await?;
        let web = lbs
            .into_inner()
            .load_balancers
            .into_iter()
            .find(|lb| lb.name == "web")
            .expect("web exists");
        assert_eq!(web.description.as_deref(), Some("storefront"));
        let ls = c
            .listener
            .list_listeners(pb::ListListenersRequest {
                lb_id: web.id.clone(),
                ..Default::default()
            })
            .await?;
        let http = ls
            .into_inner()
            .listeners
            .into_iter()
            .find(|l| l.name == "http")
            .expect("http listener");
        let rules: Vec<&str> = http.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rules, ["api", "old", "down"]);

        // A changed field is one update, and only that object's revision moves.
        let changed = write_doc(
            dir.path(),
            "web2.yaml",
            &DOC.replace("weight: 10", "weight: 20"),
        )?;
        let third = run(&node, &["apply", "-f", &changed]).await?.ok()?;
        let (c3, u3, d3, _) = summary(&third)?;
        assert_eq!((c3, u3, d3), (0, 1, 0), "{third}");
        let after = revisions(&mut c, "acme").await?;
        let moved: Vec<_> = after
            .iter()
            .filter(|(id, rev)| before.get(*id) != Some(rev))
            .collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_is_byte_identical() -> anyhow::Result<()> {
    let source = Node::start().await?;
    let target = Node::start().await?;
    let (mut src, mut dst) = (source.admin()?, target.admin()?);
    let dir = tempfile::tempdir()?;
    bounded(async {
        // Certificates are referenced by name and never exported (their keys are write-only):
        // the target gets its own certificate of that name.
        create_site_cert(&mut src).await?;
        create_site_cert(&mut dst).await?;
        let file = write_doc(dir.path(), "web.yaml", DOC)?;
        run(&source, &["apply", "-f", &file]).await?.ok()?;

        let exported = run(&source, &["export", "--org", "acme"]).await?.ok()?;
        assert!(
            exported.contains("name: web") && exported.contains("projectId: shop"),
            "{exported}"
        );
        let file = write_doc(dir.path(), "exported.yaml", &exported)?;
        run(&target, &["import", "-f", &file]).await?.ok()?;
        let again = run(&target, &["export", "--org", "acme"]).await?.ok()?;
        assert_eq!(again, exported, "export after import differs");
        let json_src = run(&source, &["export", "--org", "acme", "-o", "json"])
            .await?
            .ok()?;
        let json_dst = run(&target, &["export", "--org", "acme", "-o", "json"])
            .await?
            .ok()?;
        assert_eq!(json_src, json_dst);

        // Importing the same document again changes nothing.
        let before = revisions(&mut dst, "acme").await?;
        let out = run(&target, &["import", "-f", &file]).await?.ok()?;
        let (c2, u2, d2, _) = summary(&out)?;
        assert_eq!((c2, u2, d2), (0, 0, 0), "{out}");
        assert_eq!(revisions(&mut dst, "acme").await?, before);
        Ok(())
    })
    .await
}
