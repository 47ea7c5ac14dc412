//! Deletes refused while something depends on the object; forced LB deletion.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, Graph};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::rule_action::Action;
use pb::ListenerProtocol as P;

use crate::rules::rule_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_guarded_by_dependents() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let Graph {
            lb,
            pool,
            backend: b,
        } = fixtures::graph(&mut c, "guarded", "acme").await?;
        let r = c
            .pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: pool.id.clone(),
                revision: None,
            })
            .await;
        expect_err(r, Code::FailedPrecondition, "POOL_NOT_EMPTY");

        let spare = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "spare"))
            .await?
            .into_inner();
        let l = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                default_pool_id: Some(spare.id.clone()),
                ..fixtures::listener(&lb.id, "web", P::Http, 80)
            })
            .await?
            .into_inner();
        let r = c
            .pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: spare.id.clone(),
                revision: None,
            })
            .await;
        let s = expect_err(r, Code::FailedPrecondition, "POOL_IN_USE");
        assert!(s.message().contains("web"), "{}", s.message());
        // Used by a rule, or as the load balancer's default pool: in use as well.
        let rules_pool = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "by-rule"))
            .await?
            .into_inner();
        let r = rule_with(
            None,
            Action::ForwardToPool(pb::ForwardToPoolAction {
                pool_id: rules_pool.id.clone(),
            }),
        );
        c.listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: l.id.clone(),
                rule: Some(r),
                revision: None,
            })
            .await?;
        let res = c
            .pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: rules_pool.id.clone(),
                revision: None,
            })
            .await;
        expect_err(res, Code::FailedPrecondition, "POOL_IN_USE");
        let lb_default = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "lb-default"))
            .await?
            .into_inner();
        c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
            lb_id: lb.id.clone(),
            default_pool_id: Some(lb_default.id.clone()),
            ..Default::default()
        })
        .await?;
        let res = c
            .pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: lb_default.id.clone(),
                revision: None,
            })
            .await;
        expect_err(res, Code::FailedPrecondition, "POOL_IN_USE");

        let r =
            c.lb.delete_load_balancer(pb::DeleteLoadBalancerRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await;
        let s = expect_err(r, Code::FailedPrecondition, "LB_HAS_LISTENERS");
        assert!(s.message().contains("web"), "{}", s.message());
        c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
            lb_id: lb.id.clone(),
        })
        .await?;

        c.lb.delete_load_balancer(pb::DeleteLoadBalancerRequest {
            lb_id: lb.id.clone(),
            force: true,
            revision: None,
        })
        .await?;
        let r =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: lb.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: l.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "LISTENER_NOT_FOUND");
        for p in [&pool.id, &spare.id, &rules_pool.id, &lb_default.id] {
            let r = c
                .pool
                .get_pool(pb::GetPoolRequest { pool_id: p.clone() })
                .await;
            expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
        }
        let r = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: b.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "BACKEND_NOT_FOUND");
        // The name is free again.
        c.lb.create_load_balancer(fixtures::lb("guarded", "acme"))
            .await?;
        Ok(())
    })
    .await
}
