//! Unknown and malformed ids are NOT_FOUND with the error code of the kind asked for.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::ListenerProtocol as P;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_not_found() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let id = "00000000-0000-4000-8000-000000000000".to_string();
        let r =
            c.lb.get_load_balancer(pb::GetLoadBalancerRequest { lb_id: id.clone() })
                .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r =
            c.lb.get_load_balancer_status(pb::GetLoadBalancerStatusRequest { lb_id: id.clone() })
                .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r =
            c.lb.delete_load_balancer(pb::DeleteLoadBalancerRequest {
                lb_id: id.clone(),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r =
            c.lb.enable_load_balancer(pb::EnableLoadBalancerRequest {
                lb_id: id.clone(),
                revision: None,
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = c
            .listener
            .create_listener(fixtures::listener(&id, "l", P::Tcp, 80))
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = c
            .listener
            .list_listeners(pb::ListListenersRequest {
                lb_id: id.clone(),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = c.pool.create_pool(fixtures::pool(&id, "p")).await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "LISTENER_NOT_FOUND");
        let r = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
        let r = c
            .backend
            .add_backend(backend(&id, "b", ip("10.0.0.1"), 80))
            .await;
        expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
        let r = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "BACKEND_NOT_FOUND");
        let r = c
            .backend
            .get_backend_health(pb::GetBackendHealthRequest {
                backend_id: id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "BACKEND_NOT_FOUND");
        let r = c
            .cert
            .get_certificate(pb::GetCertificateRequest {
                certificate_id: id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "CERTIFICATE_NOT_FOUND");
        // Ids are not paths: nothing reaches an index key or another object kind through one.
        let lb =
            c.lb.create_load_balancer(fixtures::lb("real", "acme"))
                .await?
                .into_inner();
        for weird in [
            "",
            "by-name/acme/real",
            "by-org/acme",
            "../pools/x",
            &format!("{}/", lb.id),
        ] {
            let r =
                c.lb.get_load_balancer(pb::GetLoadBalancerRequest {
                    lb_id: weird.to_string(),
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        }
        let r = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: lb.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
        Ok(())
    })
    .await
}
