//! Name rules (INVALID_LB_NAME, INVALID_NAME), tenant ids, and uniqueness in scope.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::ListenerProtocol as P;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_uniqueness() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let too_long = "a".repeat(64);
        for bad in ["1abc", "Web", "a-", too_long.as_str(), "", "a_b", "-a"] {
            let r = c.lb.create_load_balancer(fixtures::lb(bad, "acme")).await;
            expect_err(r, Code::InvalidArgument, "INVALID_LB_NAME");
        }
        let ok63 = "a".repeat(63);
        c.lb.create_load_balancer(fixtures::lb(&ok63, "acme"))
            .await?;

        let web =
            c.lb.create_load_balancer(fixtures::lb("web", "acme"))
                .await?
                .into_inner();
        let dup = c.lb.create_load_balancer(fixtures::lb("web", "acme")).await;
        let s = expect_err(dup, Code::AlreadyExists, "LB_ALREADY_EXISTS");
        assert!(s.message().contains("web"), "{}", s.message());
        // The same name is fine in another org and in a project of the same org.
        c.lb.create_load_balancer(fixtures::lb("web", "globex"))
            .await?;
        c.lb.create_load_balancer(pb::CreateLoadBalancerRequest {
            project_id: Some("shop".into()),
            ..fixtures::lb("web", "acme")
        })
        .await?;
        // Renaming onto a taken name is refused as well.
        let other =
            c.lb.create_load_balancer(fixtures::lb("api", "acme"))
                .await?
                .into_inner();
        let rename =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: other.id.clone(),
                name: Some("web".into()),
                ..Default::default()
            })
            .await;
        expect_err(rename, Code::AlreadyExists, "LB_ALREADY_EXISTS");
        let bad_rename =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: other.id,
                name: Some("API".into()),
                ..Default::default()
            })
            .await;
        expect_err(bad_rename, Code::InvalidArgument, "INVALID_LB_NAME");

        // Other objects follow the same name rule with INVALID_NAME, and are unique per parent.
        let r = c.pool.create_pool(fixtures::pool(&web.id, "App")).await;
        expect_err(r, Code::InvalidArgument, "INVALID_NAME");
        let pool = c
            .pool
            .create_pool(fixtures::pool(&web.id, "app"))
            .await?
            .into_inner();
        let r = c.pool.create_pool(fixtures::pool(&web.id, "app")).await;
        expect_err(r, Code::AlreadyExists, "POOL_ALREADY_EXISTS");
        let r = c
            .backend
            .add_backend(backend(&pool.id, "B1", ip("10.0.0.1"), 80))
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_NAME");
        c.backend
            .add_backend(backend(&pool.id, "b1", ip("10.0.0.1"), 80))
            .await?;
        let r = c
            .backend
            .add_backend(backend(&pool.id, "b1", ip("10.0.0.2"), 80))
            .await;
        expect_err(r, Code::AlreadyExists, "BACKEND_ALREADY_EXISTS");
        let r = c
            .listener
            .create_listener(fixtures::listener(&web.id, "a-", P::Tcp, 80))
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_NAME");

        // Tenant ids become store keys: no slashes.
        let r =
            c.lb.create_load_balancer(fixtures::lb("x", "acme/evil"))
                .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        let r = c.lb.create_load_balancer(fixtures::lb("x", "")).await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        let r = c.lb.create_load_balancer(pb::CreateLoadBalancerRequest {
            vip: Some("not-an-ip".into()),
            ..fixtures::lb("x", "acme")
        });
        expect_err(r.await, Code::InvalidArgument, "INVALID_ARGUMENT");
        Ok(())
    })
    .await
}
