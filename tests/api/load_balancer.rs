//! Load balancers: create, get, update, list, enable/disable, status, delete.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::{bounded, expect_err, Code, Node};

use crate::map;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_lifecycle() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let created =
            c.lb.create_load_balancer(pb::CreateLoadBalancerRequest {
                name: "web".into(),
                org_id: "acme".into(),
                project_id: Some("shop".into()),
                description: Some("front door".into()),
                tags: map(&[("env", "prod")]),
                metadata: map(&[("owner", "team-a")]),
                vip: Some("192.0.2.10".into()),
            })
            .await?
            .into_inner();
        assert!(!created.id.is_empty());
        assert_eq!(
            (created.name.as_str(), created.org_id.as_str()),
            ("web", "acme")
        );
        assert_eq!(created.project_id.as_deref(), Some("shop"));
        assert_eq!(created.description.as_deref(), Some("front door"));
        assert_eq!(created.status, pb::LbStatus::Active as i32);
        assert_eq!(created.vip, "192.0.2.10");
        assert_eq!(created.tags, map(&[("env", "prod")]));
        assert_eq!(created.metadata, map(&[("owner", "team-a")]));
        assert_eq!(created.created_by, "admin");
        assert!(created.revision > 0 && created.created_at > 0);

        let got =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got, created);

        let updated =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: created.id.clone(),
                name: Some("web-2".into()),
                description: Some("renamed".into()),
                tags: map(&[("env", "staging"), ("tier", "1")]),
                revision: Some(created.revision),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(updated.name, "web-2");
        assert_eq!(updated.description.as_deref(), Some("renamed"));
        assert_eq!(updated.tags, map(&[("env", "staging"), ("tier", "1")]));
        assert_eq!(updated.metadata, created.metadata, "metadata untouched");
        assert_eq!(updated.vip, created.vip);
        assert!(updated.revision > created.revision);

        // Clearing tags and the VIP.
        let cleared =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: created.id.clone(),
                clear_tags: true,
                vip: Some(String::new()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(cleared.tags.is_empty());
        assert_eq!(cleared.vip, "");

        let list =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "acme".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(list.total_count, 1);
        assert_eq!(list.load_balancers[0].id, created.id);
        assert!(list.next_page_token.is_empty());

        let disabled =
            c.lb.disable_load_balancer(pb::DisableLoadBalancerRequest {
                lb_id: created.id.clone(),
                revision: None,
            })
            .await?
            .into_inner();
        assert_eq!(disabled.status, pb::LbStatus::Disabled as i32);
        let filtered =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "acme".into(),
                status_filter: Some(pb::LbStatus::Active as i32),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(filtered.total_count, 0, "a disabled LB is not ACTIVE");
        let status =
            c.lb.get_load_balancer_status(pb::GetLoadBalancerStatusRequest {
                lb_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(status.status, pb::LbStatus::Disabled as i32);
        let enabled =
            c.lb.enable_load_balancer(pb::EnableLoadBalancerRequest {
                lb_id: created.id.clone(),
                revision: Some(disabled.revision),
            })
            .await?
            .into_inner();
        assert_eq!(enabled.status, pb::LbStatus::Active as i32);

        // Status counts what hangs under the LB; the default pool is settable and clearable.
        let pool = c
            .pool
            .create_pool(fixtures::pool(&created.id, "app"))
            .await?
            .into_inner();
        c.backend
            .add_backend(backend(&pool.id, "app-1", ip("10.0.0.1"), 80))
            .await?;
        c.backend
            .add_backend(backend(&pool.id, "app-2", ip("10.0.0.2"), 80))
            .await?;
        let listener = c
            .listener
            .create_listener(fixtures::listener(
                &created.id,
                "http",
                pb::ListenerProtocol::Tcp,
                8080,
            ))
            .await?
            .into_inner();
        let status =
            c.lb.get_load_balancer_status(pb::GetLoadBalancerStatusRequest {
                lb_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(
            (
                status.listener_count,
                status.pool_count,
                status.backend_count
            ),
            (1, 1, 2)
        );
        assert_eq!(status.status, pb::LbStatus::Active as i32);
        let with_pool =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: created.id.clone(),
                default_pool_id: Some(pool.id.clone()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(with_pool.default_pool_id.as_deref(), Some(pool.id.as_str()));
        assert_eq!(with_pool.listeners, vec![listener.id.clone()]);
        let without =
            c.lb.update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: created.id.clone(),
                default_pool_id: Some(String::new()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(without.default_pool_id, None);

        c.listener
            .delete_listener(pb::DeleteListenerRequest {
                listener_id: listener.id,
                revision: None,
            })
            .await?;
        let del =
            c.lb.delete_load_balancer(pb::DeleteLoadBalancerRequest {
                lb_id: created.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(del.lb_id, created.id);
        let gone =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: created.id.clone(),
            })
            .await;
        expect_err(gone, Code::NotFound, "LB_NOT_FOUND");
        let gone = c
            .pool
            .get_pool(pb::GetPoolRequest { pool_id: pool.id })
            .await;
        expect_err(gone, Code::NotFound, "POOL_NOT_FOUND");
        Ok(())
    })
    .await
}
