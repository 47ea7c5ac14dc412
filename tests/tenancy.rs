//! Tenancy and authorization: a tenant never sees or touches another tenant's objects
//! (they are NOT_FOUND, not PERMISSION_DENIED), actions are checked per call, and a
//! credential can only hand out what it holds.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip, self_signed, Graph};
use fiberlb_tests::{bounded, expect_err, Code, Credential, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_are_invisible_to_each_other() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut admin = node.admin()?;
    bounded(async {
        let (_, acme_secret) =
            fixtures::token(&mut admin, "acme-admin", "acme", None, &["fiberlb:*"]).await?;
        let (_, globex_secret) =
            fixtures::token(&mut admin, "globex-admin", "globex", None, &["fiberlb:*"]).await?;
        let mut acme = node.clients(Credential::Bearer(acme_secret))?;
        let mut globex = node.clients(Credential::Bearer(globex_secret))?;

        let a = fixtures::graph(&mut acme, "shop", "acme").await?;
        let g = fixtures::graph(&mut globex, "shop", "globex").await?;
        assert_eq!(a.lb.created_by, "user-acme-admin");

        for (me, other, other_org) in [(&mut globex, &a, "acme"), (&mut acme, &g, "globex")] {
            let Graph {
                lb,
                pool,
                backend: b,
            } = other;
            let r = me
                .lb
                .get_load_balancer(pb::GetLoadBalancerRequest {
                    lb_id: lb.id.clone(),
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .lb
                .get_load_balancer_status(pb::GetLoadBalancerStatusRequest {
                    lb_id: lb.id.clone(),
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .lb
                .update_load_balancer(pb::UpdateLoadBalancerRequest {
                    lb_id: lb.id.clone(),
                    description: Some("pwned".into()),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .lb
                .disable_load_balancer(pb::DisableLoadBalancerRequest {
                    lb_id: lb.id.clone(),
                    revision: None,
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .lb
                .delete_load_balancer(pb::DeleteLoadBalancerRequest {
                    lb_id: lb.id.clone(),
                    force: true,
                    revision: None,
                })
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .listener
                .create_listener(fixtures::listener(
                    &lb.id,
                    "sneaky",
                    pb::ListenerProtocol::Tcp,
                    9999,
                ))
                .await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me.pool.create_pool(fixtures::pool(&lb.id, "sneaky")).await;
            expect_err(r, Code::NotFound, "LB_NOT_FOUND");
            let r = me
                .pool
                .get_pool(pb::GetPoolRequest {
                    pool_id: pool.id.clone(),
                })
                .await;
            expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
            let r = me
                .pool
                .delete_pool(pb::DeletePoolRequest {
                    pool_id: pool.id.clone(),
                    revision: None,
                })
                .await;
            expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
            let r = me
                .backend
                .add_backend(backend(&pool.id, "sneaky", ip("10.9.9.9"), 80))
                .await;
            expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
            let r = me
                .backend
                .list_backends(pb::ListBackendsRequest {
                    pool_id: pool.id.clone(),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
            let r = me
                .backend
                .get_backend(pb::GetBackendRequest {
                    backend_id: b.id.clone(),
                })
                .await;
            expect_err(r, Code::NotFound, "BACKEND_NOT_FOUND");
            let r = me
                .backend
                .remove_backend(pb::RemoveBackendRequest {
                    backend_id: b.id.clone(),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::NotFound, "BACKEND_NOT_FOUND");

            // Its own listing shows only its own load balancer; naming the other org is refused.
            let mine = me
                .lb
                .list_load_balancers(pb::ListLoadBalancersRequest::default())
                .await?
                .into_inner();
            assert_eq!(mine.total_count, 1);
            assert_ne!(mine.load_balancers[0].id, lb.id);
            let r = me
                .lb
                .list_load_balancers(pb::ListLoadBalancersRequest {
                    org_id: other_org.into(),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
            let r = me
                .lb
                .create_load_balancer(fixtures::lb("intruder", other_org))
                .await;
            expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        }
        // Nothing of acme's changed.
        let still = admin
            .lb
            .get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: a.lb.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(still, a.lb);
        let backends = admin
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: a.pool.id.clone(),
            })
            .await?
            .into_inner()
            .backends;
        assert_eq!(backends, vec![a.backend.id.clone()]);

        // Certificates are tenant objects too.
        let cert = self_signed(&["shop.acme.example"]);
        let acme_cert = acme
            .cert
            .create_certificate(pb::CreateCertificateRequest {
                name: "shop".into(),
                org_id: "acme".into(),
                certificate_pem: cert.cert_pem,
                private_key_pem: cert.key_pem,
                ..Default::default()
            })
            .await?
            .into_inner();
        let r = globex
            .cert
            .get_certificate(pb::GetCertificateRequest {
                certificate_id: acme_cert.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "CERTIFICATE_NOT_FOUND");
        let theft = globex
            .listener
            .create_listener(pb::CreateListenerRequest {
                tls_config: Some(pb::TlsConfig {
                    certificate_id: acme_cert.id.clone(),
                    ..Default::default()
                }),
                ..fixtures::listener(&g.lb.id, "https", pb::ListenerProtocol::Https, 443)
            })
            .await;
        expect_err(theft, Code::NotFound, "CERTIFICATE_NOT_FOUND");
        let listed = globex
            .cert
            .list_certificates(pb::ListCertificatesRequest::default())
            .await?
            .into_inner();
        assert_eq!(listed.total_count, 0);
        let tokens = globex
            .access
            .list_tokens(pb::ListTokensRequest {
                org_id: Some("acme".into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(
            tokens.tokens.is_empty(),
            "another org's tokens are invisible: {:?}",
            tokens.tokens
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_read_org_objects_but_not_other_projects() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut admin = node.admin()?;
    bounded(async {
        let shared = admin
            .lb
            .create_load_balancer(fixtures::lb("shared", "acme"))
            .await?
            .into_inner();
        let blog = admin
            .lb
            .create_load_balancer(pb::CreateLoadBalancerRequest {
                project_id: Some("blog".into()),
                ..fixtures::lb("blog", "acme")
            })
            .await?
            .into_inner();
        let (_, secret) =
            fixtures::token(&mut admin, "shop-dev", "acme", Some("shop"), &["fiberlb:*"]).await?;
        let mut shop = node.clients(Credential::Bearer(secret))?;
        let own = shop
            .lb
            .create_load_balancer(pb::CreateLoadBalancerRequest {
                project_id: Some("shop".into()),
                ..fixtures::lb("shop", "acme")
            })
            .await?
            .into_inner();

        let got = shop
            .lb
            .get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: shared.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(
            got.id, shared.id,
            "org-level objects are readable by the org's projects"
        );
        let r = shop
            .lb
            .update_load_balancer(pb::UpdateLoadBalancerRequest {
                lb_id: shared.id.clone(),
                description: Some("x".into()),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = shop.pool.create_pool(fixtures::pool(&shared.id, "p")).await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = shop
            .lb
            .get_load_balancer(pb::GetLoadBalancerRequest {
                lb_id: blog.id.clone(),
            })
            .await;
        expect_err(r, Code::NotFound, "LB_NOT_FOUND");
        let r = shop
            .lb
            .create_load_balancer(fixtures::lb("org-level", "acme"))
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = shop
            .lb
            .create_load_balancer(pb::CreateLoadBalancerRequest {
                project_id: Some("blog".into()),
                ..fixtures::lb("x", "acme")
            })
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");

        let list = shop
            .lb
            .list_load_balancers(pb::ListLoadBalancersRequest::default())
            .await?
            .into_inner();
        let mut names: Vec<String> = list.load_balancers.into_iter().map(|lb| lb.name).collect();
        names.sort();
        assert_eq!(names, ["shared", "shop"]);
        shop.lb
            .delete_load_balancer(pb::DeleteLoadBalancerRequest {
                lb_id: own.id,
                ..Default::default()
            })
            .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_checked_and_never_widened() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut admin = node.admin()?;
    bounded(async {
        let Graph { lb, .. } = fixtures::graph(&mut admin, "ro", "acme").await?;
        let empty = admin
            .pool
            .create_pool(fixtures::pool(&lb.id, "empty"))
            .await?
            .into_inner();
        let reader_actions = [
            "fiberlb:pools:get",
            "fiberlb:pools:list",
            "fiberlb:loadbalancers:get",
            "fiberlb:loadbalancers:list",
            "fiberlb:tokens:create",
        ];
        let (_, secret) =
            fixtures::token(&mut admin, "reader", "acme", None, &reader_actions).await?;
        let mut reader = node.clients(Credential::Bearer(secret))?;
        reader
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: empty.id.clone(),
            })
            .await?;
        let pools = reader
            .pool
            .list_pools(pb::ListPoolsRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await?;
        assert_eq!(pools.into_inner().total_count, 2);
        reader
            .lb
            .list_load_balancers(pb::ListLoadBalancersRequest::default())
            .await?;
        let r = reader
            .pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: empty.id.clone(),
                revision: None,
            })
            .await;
        let s = expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        assert!(
            s.message().contains("fiberlb:pools:delete"),
            "{}",
            s.message()
        );
        let r = reader
            .pool
            .update_pool(pb::UpdatePoolRequest {
                pool_id: empty.id.clone(),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = reader
            .lb
            .create_load_balancer(fixtures::lb("nope", "acme"))
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = reader
            .backend
            .add_backend(backend(&empty.id, "b", ip("10.0.0.1"), 80))
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = reader
            .cluster
            .get_node_status(pb::GetNodeStatusRequest {})
            .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        // The pool is still there.
        admin
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: empty.id.clone(),
            })
            .await?;

        // A credential can hand out a subset of what it holds, never more.
        let (sub, _) = fixtures::token(
            &mut reader,
            "sub",
            "acme",
            Some("shop"),
            &["fiberlb:pools:get"],
        )
        .await?;
        assert_eq!(sub.created_by, "user-reader");
        let r = fixtures::token(&mut reader, "wider", "acme", None, &["fiberlb:pools:*"]).await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = fixtures::token(&mut reader, "wider", "acme", None, &["fiberlb:*"]).await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = fixtures::token(&mut reader, "system", "", None, &["fiberlb:pools:get"]).await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = fixtures::token(
            &mut reader,
            "elsewhere",
            "globex",
            None,
            &["fiberlb:pools:get"],
        )
        .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let (_, proj_secret) =
            fixtures::token(&mut admin, "proj", "acme", Some("shop"), &["fiberlb:*"]).await?;
        let mut proj = node.clients(Credential::Bearer(proj_secret))?;
        let r = fixtures::token(&mut proj, "org-wide", "acme", None, &["fiberlb:pools:get"]).await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        let r = fixtures::token(
            &mut proj,
            "sibling",
            "acme",
            Some("blog"),
            &["fiberlb:pools:get"],
        )
        .await;
        expect_err(r, Code::PermissionDenied, "ACCESS_DENIED");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_is_unauthenticated() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut anon = node.clients(Credential::None)?;
    bounded(async {
        let r = anon
            .lb
            .list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "acme".into(),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::Unauthenticated, "UNAUTHENTICATED");
        let r = anon
            .lb
            .create_load_balancer(fixtures::lb("anon", "acme"))
            .await;
        expect_err(r, Code::Unauthenticated, "UNAUTHENTICATED");
        let r = anon.access.who_am_i(pb::WhoAmIRequest {}).await;
        expect_err(r, Code::Unauthenticated, "UNAUTHENTICATED");
        let r = anon
            .cluster
            .get_node_status(pb::GetNodeStatusRequest {})
            .await;
        expect_err(r, Code::Unauthenticated, "UNAUTHENTICATED");
        let mut wrong_key = node.clients(Credential::ApiKey("fblb_wrong".into()))?;
        let r = wrong_key
            .lb
            .get_load_balancer(pb::GetLoadBalancerRequest { lb_id: "x".into() })
            .await;
        expect_err(r, Code::Unauthenticated, "UNAUTHENTICATED");
        // The admin token also works as an API key.
        let mut as_key = node.clients(Credential::ApiKey(node.admin_token().to_string()))?;
        as_key.access.who_am_i(pb::WhoAmIRequest {}).await?;
        Ok(())
    })
    .await
}
