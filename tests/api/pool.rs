//! Pools: create, get, update, list, health checks of every type, status, delete.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, ip};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::health_check::CheckType;

use crate::map;

fn check(t: CheckType) -> pb::HealthCheck {
    // `enabled: false`: the pool points at nothing, the test is about the configuration.
    pb::HealthCheck {
        check_type: Some(t),
        interval: 10,
        timeout: 5,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        enabled: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_lifecycle_with_health_checks() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let lb =
            c.lb.create_load_balancer(fixtures::lb("pools", "acme"))
                .await?
                .into_inner();
        let created = c
            .pool
            .create_pool(pb::CreatePoolRequest {
                algorithm: pb::Algorithm::LeastConnections as i32,
                session_persistence: Some(pb::SessionPersistence {
                    mode: pb::PersistenceMode::Cookie as i32,
                    cookie_name: Some("lb".into()),
                    ttl_seconds: 3600,
                }),
                circuit_breaker: Some(pb::CircuitBreakerConfig {
                    enabled: true,
                    failure_threshold: 7,
                    ..Default::default()
                }),
                ..fixtures::pool(&lb.id, "app")
            })
            .await?
            .into_inner();
        assert_eq!(created.algorithm, pb::Algorithm::LeastConnections as i32);
        assert_eq!(
            created.session_persistence.as_ref().map(|s| s.mode),
            Some(pb::PersistenceMode::Cookie as i32)
        );
        let cb = created.circuit_breaker.expect("circuit breaker kept");
        assert!(cb.enabled);
        assert_eq!(cb.failure_threshold, 7);
        assert_eq!(
            cb.success_threshold, 0,
            "unset: the node's [circuit_breaker] default"
        );
        assert_eq!(
            cb.min_request_volume, 10,
            "other zero fields take the spec defaults"
        );
        assert!(created.enabled && created.health_check.is_none() && created.backends.is_empty());
        assert_eq!(
            c.pool
                .get_pool(pb::GetPoolRequest {
                    pool_id: created.id.clone()
                })
                .await?
                .into_inner(),
            created
        );

        let updated = c
            .pool
            .update_pool(pb::UpdatePoolRequest {
                pool_id: created.id.clone(),
                name: Some("app-v2".into()),
                algorithm: Some(pb::Algorithm::Maglev as i32),
                enabled: Some(false),
                revision: Some(created.revision),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(
            (updated.name.as_str(), updated.algorithm, updated.enabled),
            ("app-v2", pb::Algorithm::Maglev as i32, false)
        );
        assert_eq!(updated.session_persistence, created.session_persistence);
        assert!(updated.revision > created.revision);

        c.pool.create_pool(fixtures::pool(&lb.id, "static")).await?;
        let list = c
            .pool
            .list_pools(pb::ListPoolsRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(list.total_count, 2);
        let filtered = c
            .pool
            .list_pools(pb::ListPoolsRequest {
                lb_id: lb.id.clone(),
                name_filter: Some("app".into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(
            filtered
                .pools
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>(),
            vec![created.id.clone()]
        );

        let kinds = [
            CheckType::Tcp(pb::TcpCheck {}),
            CheckType::Http(pb::HttpCheck {
                path: "/healthz".into(),
                method: pb::HttpMethod::Get as i32,
                expected_codes: vec![200, 204],
                host_header: Some("app.example.com".into()),
                headers: map(&[("x-probe", "1")]),
            }),
            CheckType::Https(pb::HttpsCheck {
                path: "/healthz".into(),
                method: pb::HttpMethod::Head as i32,
                expected_codes: vec![200],
                verify_tls: true,
                ..Default::default()
            }),
            CheckType::Dns(pb::DnsCheck {
                hostname: "localhost".into(),
                record_type: pb::DnsRecordType::A as i32,
                expected_address: Some("127.0.0.1".into()),
            }),
            CheckType::Grpc(pb::GrpcCheck {
                service: Some("app.v1.App".into()),
            }),
        ];
        for kind in kinds {
            let pool = c
                .pool
                .set_health_check(pb::SetHealthCheckRequest {
                    pool_id: created.id.clone(),
                    health_check: Some(check(kind.clone())),
                    revision: None,
                })
                .await?
                .into_inner();
            let hc = pool.health_check.expect("health check set");
            assert_eq!(hc.check_type, Some(kind), "check type round-trips");
            assert_eq!(
                (
                    hc.interval,
                    hc.timeout,
                    hc.healthy_threshold,
                    hc.unhealthy_threshold
                ),
                (10, 5, 2, 3)
            );
            assert!(!hc.id.is_empty());
            let got = c
                .pool
                .get_pool(pb::GetPoolRequest {
                    pool_id: created.id.clone(),
                })
                .await?
                .into_inner();
            assert_eq!(got.health_check.map(|h| h.id), Some(hc.id));
        }
        let removed = c
            .pool
            .remove_health_check(pb::RemoveHealthCheckRequest {
                pool_id: created.id.clone(),
                revision: None,
            })
            .await?
            .into_inner();
        assert!(removed.health_check.is_none());

        let b = c
            .backend
            .add_backend(backend(&created.id, "a", ip("10.0.0.1"), 80))
            .await?
            .into_inner();
        c.backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: b.id.clone(),
                ..Default::default()
            })
            .await?;
        c.backend
            .add_backend(backend(&created.id, "b", ip("10.0.0.2"), 80))
            .await?;
        let status = c
            .pool
            .get_pool_status(pb::GetPoolStatusRequest {
                pool_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!((status.total_backends, status.draining_backends), (2, 1));
        assert_eq!(status.healthy_backends + status.unhealthy_backends, 2);
        let with_backends = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(with_backends.backends.len(), 2);

        let statics = c.pool.list_pools(pb::ListPoolsRequest {
            lb_id: lb.id.clone(),
            name_filter: Some("static".into()),
            ..Default::default()
        });
        let static_pool = statics.await?.into_inner().pools.remove(0);
        c.pool
            .delete_pool(pb::DeletePoolRequest {
                pool_id: static_pool.id.clone(),
                revision: Some(static_pool.revision),
            })
            .await?;
        let gone = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: static_pool.id,
            })
            .await;
        expect_err(gone, Code::NotFound, "POOL_NOT_FOUND");
        Ok(())
    })
    .await
}
