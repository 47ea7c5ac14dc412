//! Compare-and-swap updates refuse a stale revision without changing anything.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, Graph};
use fiberlb_tests::{bounded, expect_err, Code, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_revisions_are_aborted() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let Graph { lb, pool, backend } = fixtures::graph(&mut c, "cas", "acme").await?;

        // Load balancer.
        let r =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: lb.id.clone(),
            })
            .await?
            .into_inner()
            .revision;
        let update = |desc: &str, rev: u64| pb::UpdateLoadBalancerRequest {
            lb_id: lb.id.clone(),
            description: Some(desc.into()),
            revision: Some(rev),
            ..Default::default()
        };
        let second =
            c.lb.update_load_balancer(update("second", r))
                .await?
                .into_inner();
        assert!(second.revision > r);
        let stale = c.lb.update_load_balancer(update("third", r)).await;
        let s = expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        assert!(s.message().contains(&r.to_string()), "{}", s.message());
        let stale =
            c.lb.disable_load_balancer(pb::DisableLoadBalancerRequest {
                lb_id: lb.id.clone(),
                revision: Some(r),
            })
            .await;
        expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        let stale =
            c.lb.delete_load_balancer(pb::DeleteLoadBalancerRequest {
                lb_id: lb.id.clone(),
                force: true,
                revision: Some(r),
            })
            .await;
        expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        let now =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: lb.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now, second, "a refused update changes nothing");

        // Pool.
        let r = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: pool.id.clone(),
            })
            .await?
            .into_inner()
            .revision;
        let update = |name: &str, rev: u64| pb::UpdatePoolRequest {
            pool_id: pool.id.clone(),
            name: Some(name.into()),
            revision: Some(rev),
            ..Default::default()
        };
        let second = c.pool.update_pool(update("second", r)).await?.into_inner();
        assert!(second.revision > r);
        expect_err(
            c.pool.update_pool(update("third", r)).await,
            Code::Aborted,
            "REVISION_CONFLICT",
        );
        let hc = pb::HealthCheck {
            check_type: Some(pb::health_check::CheckType::Tcp(pb::TcpCheck {})),
            ..Default::default()
        };
        let stale = c
            .pool
            .set_health_check(pb::SetHealthCheckRequest {
                pool_id: pool.id.clone(),
                health_check: Some(hc),
                revision: Some(r),
            })
            .await;
        expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        let now = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: pool.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now, second);

        // Backend.
        let r = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: backend.id.clone(),
            })
            .await?
            .into_inner()
            .revision;
        let update = |weight: u32, rev: u64| pb::UpdateBackendRequest {
            backend_id: backend.id.clone(),
            weight: Some(weight),
            revision: Some(rev),
            ..Default::default()
        };
        let second = c.backend.update_backend(update(20, r)).await?.into_inner();
        assert!(second.revision > r);
        expect_err(
            c.backend.update_backend(update(30, r)).await,
            Code::Aborted,
            "REVISION_CONFLICT",
        );
        let stale = c
            .backend
            .remove_backend(pb::RemoveBackendRequest {
                backend_id: backend.id.clone(),
                revision: Some(r),
                ..Default::default()
            })
            .await;
        expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        let stale = c
            .backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: backend.id.clone(),
                revision: Some(r),
                ..Default::default()
            })
            .await;
        expect_err(stale, Code::Aborted, "REVISION_CONFLICT");
        let now = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: backend.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now, second);

        // Listener.
        let l = c
            .listener
            .create_listener(fixtures::listener(
                &lb.id,
                "web",
                pb::ListenerProtocol::Tcp,
                80,
            ))
            .await?
            .into_inner();
        let update = |port: u32, rev: u64| pb::UpdateListenerRequest {
            listener_id: l.id.clone(),
            port: Some(port),
            revision: Some(rev),
            ..Default::default()
        };
        let second = c
            .listener
            .update_listener(update(81, l.revision))
            .await?
            .into_inner();
        expect_err(
            c.listener.update_listener(update(82, l.revision)).await,
            Code::Aborted,
            "REVISION_CONFLICT",
        );
        let now = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: l.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now, second);
        Ok(())
    })
    .await
}
