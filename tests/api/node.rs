//! The node itself: ClusterService status, `grpc.health.v1`, the admin HTTP endpoints and
//! the bootstrap credential file.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures;
use fiberlb_tests::{bounded, expect_err, http, Code, Node};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_health_and_admin_http() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let status = c.cluster.get_node_status(pb::GetNodeStatusRequest {}).await?.into_inner();
        assert_eq!(status.store_backend, "embedded");
        assert_eq!(status.store_state, "up");
        assert!(status.ready);
        assert!(!status.version.is_empty() && !status.node_id.is_empty());
        assert_eq!(status.grpc_addr, node.grpc_addr().to_string());
        assert_eq!(status.admin_addr, node.admin_addr().to_string());
        assert!(status.started_at > 0);

        for service in ["", "fiberlb.v1.LbService", "fiberlb.v1.PoolService"] {
            let r = c.health.check(HealthCheckRequest { service: service.into() }).await?.into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "service {service:?}");
        }
        let unknown = c.health.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
        expect_err(unknown, Code::NotFound, "");

        let health = http::get(node.admin_addr(), "/health").await?;
        assert_eq!(health.status, 200);
        let ready = http::get(node.admin_addr(), "/ready").await?;
        assert_eq!((ready.status, ready.body.trim()), (200, "ready"));
        let missing = http::get(node.admin_addr(), "/no-such-page").await?;
        assert_eq!(missing.status, 404);

        c.lb.create_load_balancer(fixtures::lb("counted", "acme")).await?;
        let dup = c.lb.create_load_balancer(fixtures::lb("counted", "acme")).await;
        expect_err(dup, Code::AlreadyExists, "LB_ALREADY_EXISTS");
        let metrics = http::get(node.admin_addr(), "/metrics").await?;
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
        for series in [
            r#"fiberlb_grpc_requests_total{method="fiberlb.v1.LbService/CreateLoadBalancer",code="Ok"} 1"#,
            r#"fiberlb_grpc_requests_total{method="fiberlb.v1.LbService/CreateLoadBalancer",code="AlreadyExists"} 1"#,
        ] {
            assert!(metrics.body.lines().any(|l| l == series), "no line {series:?} in /metrics:\n{}", metrics.body);
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_token_file_is_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::start().await?;
    let meta = std::fs::metadata(node.data_dir().join("bootstrap-token"))?;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        !node.stderr_tail(10_000).contains(node.admin_token()),
        "the bootstrap secret is never logged"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_start_says_why() -> anyhow::Result<()> {
    // The data dir is a regular file.
    let file = tempfile::NamedTempFile::new()?;
    let err = match Node::start_in(file.path()).await {
        Ok(_) => anyhow::bail!("a node started on a file as its data dir"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("exited before it was ready"), "{err}");
    assert!(
        err.contains(&file.path().display().to_string()),
        "names the path: {err}"
    );

    // A second node on a data dir in use refuses to share it.
    let first = Node::start().await?;
    let err = match Node::start_in(first.data_dir()).await {
        Ok(_) => anyhow::bail!("two nodes opened the same embedded store"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("exited before it was ready"), "{err}");
    assert!(err.contains("fiberlb.redb"), "names the store: {err}");
    // The first one is unaffected.
    let mut c = first.admin()?;
    bounded(async {
        c.lb.create_load_balancer(fixtures::lb("still-here", "acme"))
            .await?;
        Ok(())
    })
    .await
}
