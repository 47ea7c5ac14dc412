//! Backends of every address kind: add, get, update, list, drain, health, remove.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, hostname, ip, vm};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::health_check::CheckType;

use crate::map;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_lifecycle_drain_and_health() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let lb =
            c.lb.create_load_balancer(fixtures::lb("backends", "acme"))
                .await?
                .into_inner();
        let pool = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "app"))
            .await?
            .into_inner();

        let by_ip = c
            .backend
            .add_backend(pb::AddBackendRequest {
                weight: Some(5),
                metadata: map(&[("zone", "a")]),
                backup: Some(true),
                ..backend(&pool.id, "by-ip", ip("10.0.0.1"), 8080)
            })
            .await?
            .into_inner();
        assert_eq!(by_ip.address, ip("10.0.0.1"));
        assert_eq!(
            (by_ip.port, by_ip.weight, by_ip.backup, by_ip.enabled),
            (8080, 5, true, true)
        );
        assert_eq!(by_ip.status, pb::BackendStatus::Active as i32);
        assert_eq!(by_ip.metadata, map(&[("zone", "a")]));
        let by_name = c
            .backend
            .add_backend(backend(&pool.id, "by-name", hostname("localhost"), 8081))
            .await?
            .into_inner();
        assert_eq!(by_name.address, hostname("localhost"));
        assert_eq!(by_name.weight, 1, "default weight");
        let by_vm = c
            .backend
            .add_backend(backend(&pool.id, "by-vm", vm("vm-0042"), 8082))
            .await?
            .into_inner();
        assert_eq!(by_vm.address, vm("vm-0042"));
        let v6 = c
            .backend
            .add_backend(backend(&pool.id, "by-ip6", ip("2001:db8::1"), 443))
            .await?
            .into_inner();
        assert_eq!(v6.address, ip("2001:db8::1"));

        let got = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: by_ip.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got.id, by_ip.id);
        assert_eq!((got.name.as_str(), got.revision), ("by-ip", by_ip.revision));

        let updated = c
            .backend
            .update_backend(pb::UpdateBackendRequest {
                backend_id: by_ip.id.clone(),
                name: Some("by-ip-2".into()),
                port: Some(9090),
                weight: Some(100),
                enabled: Some(false),
                backup: Some(false),
                address: ip("10.0.0.9"),
                revision: Some(by_ip.revision),
                max_connections: None,
            })
            .await?
            .into_inner();
        assert_eq!(
            (updated.name.as_str(), updated.port, updated.weight),
            ("by-ip-2", 9090, 100)
        );
        assert_eq!((updated.enabled, updated.backup), (false, false));
        assert_eq!(updated.address, ip("10.0.0.9"));
        assert!(updated.revision > by_ip.revision);

        let list = c
            .backend
            .list_backends(pb::ListBackendsRequest {
                pool_id: pool.id.clone(),
                ..Default::default()
            })
            .await?;
        let list = list.into_inner();
        assert_eq!(list.total_count, 4);
        let names: Vec<&str> = list.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["by-ip-2", "by-ip6", "by-name", "by-vm"]);
        // A pool without an active check serves all its backends from the start.
        let healthy = c
            .backend
            .list_backends(pb::ListBackendsRequest {
                pool_id: pool.id.clone(),
                healthy_only: Some(true),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(healthy.total_count, 4);
        for b in &healthy.backends {
            assert!(b.health_status.as_ref().is_some_and(|h| h.healthy), "{b:?}");
        }
        // With a check against a port nothing listens on, no backend is healthy.
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let checked = c
            .pool
            .create_pool(pb::CreatePoolRequest {
                health_check: Some(pb::HealthCheck {
                    check_type: Some(CheckType::Tcp(pb::TcpCheck {})),
                    interval: 1,
                    timeout: 1,
                    enabled: true,
                    ..Default::default()
                }),
                ..fixtures::pool(&lb.id, "checked")
            })
            .await?
            .into_inner();
        c.backend
            .add_backend(backend(
                &checked.id,
                "closed",
                ip("127.0.0.1"),
                closed_port.into(),
            ))
            .await?;
        let none = c
            .backend
            .list_backends(pb::ListBackendsRequest {
                pool_id: checked.id.clone(),
                healthy_only: Some(true),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(none.total_count, 0);

        let drained = c
            .backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: by_name.id.clone(),
                timeout_seconds: Some(60),
                revision: None,
            })
            .await?
            .into_inner();
        assert_eq!(drained.status, pb::BackendStatus::Draining as i32);
        assert!(drained
            .drain_deadline
            .is_some_and(|d| d > drained.updated_at));
        let undrained = c
            .backend
            .undrain_backend(pb::UndrainBackendRequest {
                backend_id: by_name.id.clone(),
                revision: Some(drained.revision),
            })
            .await?
            .into_inner();
        assert_eq!(undrained.status, pb::BackendStatus::Active as i32);
        assert_eq!(undrained.drain_deadline, None);

        let health = c
            .backend
            .get_backend_health(pb::GetBackendHealthRequest {
                backend_id: by_vm.id.clone(),
            })
            .await?;
        assert!(health.into_inner().healthy);
        let entries = c
            .backend
            .list_backend_health(pb::ListBackendHealthRequest {
                pool_id: pool.id.clone(),
            })
            .await?;
        let entries = entries.into_inner().entries;
        let names: Vec<&str> = entries.iter().map(|e| e.backend_name.as_str()).collect();
        assert_eq!(names, ["by-ip-2", "by-ip6", "by-name", "by-vm"]);
        assert!(entries.iter().all(|e| e.health_status.is_some()));

        // Remove after draining: nothing is removed yet, the backend drains until its deadline.
        let r = c
            .backend
            .remove_backend(pb::RemoveBackendRequest {
                backend_id: by_vm.id.clone(),
                drain_first: true,
                drain_timeout_seconds: Some(600),
                revision: None,
            })
            .await?
            .into_inner();
        assert!(!r.removed);
        assert!(r.drain_deadline.is_some());
        let draining = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: by_vm.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(draining.status, pb::BackendStatus::Draining as i32);
        assert_eq!(draining.drain_deadline, r.drain_deadline);

        let r = c
            .backend
            .remove_backend(pb::RemoveBackendRequest {
                backend_id: v6.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(r.removed);
        assert_eq!(r.drain_deadline, None);
        let gone = c
            .backend
            .get_backend(pb::GetBackendRequest {
                backend_id: v6.id.clone(),
            })
            .await;
        expect_err(gone, Code::NotFound, "BACKEND_NOT_FOUND");
        let left = c
            .pool
            .get_pool(pb::GetPoolRequest {
                pool_id: pool.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(left.backends.len(), 3);
        assert!(!left.backends.contains(&v6.id));
        Ok(())
    })
    .await
}
