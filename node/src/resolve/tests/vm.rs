//! VM-id backends against the fake PlasmaVMC API.

use std::time::Duration;

use fiberlb_api::model::BackendAddress;

use super::fake_vmc::{vm, FakeVmc, Reply};
use super::{addrs, bounded, eventually, ready, resolver, state};
use crate::resolve::cache::Key;
use crate::resolve::{Lookup, ResolveError, Resolver, ResolverConfig};

fn vm_resolver(vmc: &FakeVmc, cache_ttl: Duration) -> Resolver {
    resolver(ResolverConfig {
        plasmavmc_endpoint: Some(vmc.endpoint()),
        vm_cache_ttl: cache_ttl,
        ..ResolverConfig::default()
    })
}

fn vm_id(id: &str) -> BackendAddress {
    BackendAddress::VmId(id.into())
}

#[tokio::test]
async fn running_vm_resolves_to_its_private_ipv4() {
    bounded(async {
        let vmc = FakeVmc::start().await;
        vmc.set(
            "vm-001",
            Reply::Json(
                r#"{"id": "vm-001", "state": "running", "interfaces": [
                    {"name": "eth1", "ipv4": "203.0.113.9", "ipv6": null, "private": false},
                    {"name": "eth0", "ipv4": "10.0.0.5", "ipv6": "fd00::5", "private": true}]}"#
                    .into(),
            ),
        );
        let resolver = vm_resolver(&vmc, Duration::from_secs(60));
        let backend = vm_id("vm-001");
        assert_eq!(resolver.lookup(&backend, 8080), Lookup::Pending);
        let resolved = resolver.resolve_now(&backend, 8080).await.unwrap();
        assert_eq!(&resolved[..], &addrs(&["10.0.0.5:8080"])[..]);
        assert_eq!(
            ready(&resolver.lookup(&backend, 8080)),
            Some(addrs(&["10.0.0.5:8080"]))
        );
        // Cached for vm_cache_ttl: repeated lookups do not call PlasmaVMC again.
        for _ in 0..50 {
            resolver.lookup(&backend, 8080);
        }
        assert_eq!(vmc.requests(), 1);
    })
    .await;
}

#[tokio::test]
async fn stopped_missing_and_garbage_vms_fail() {
    bounded(async {
        let vmc = FakeVmc::start().await;
        vmc.set("vm-stopped", vm("vm-stopped", "stopped", "10.0.0.6"));
        vmc.set("vm-garbage", Reply::Json("{not json".into()));
        vmc.set("vm-500", Reply::Status(500));
        vmc.set("vm-hang", Reply::Hang);
        vmc.set("vm-other", vm("vm-someone-else", "running", "10.0.0.7"));
        let resolver = vm_resolver(&vmc, Duration::from_secs(60));

        let stopped = vm_id("vm-stopped");
        assert_eq!(
            resolver.resolve_now(&stopped, 80).await.unwrap_err(),
            ResolveError::VmNotRunning {
                id: "vm-stopped".into(),
                state: "stopped".into()
            }
        );
        assert_eq!(
            resolver.lookup(&stopped, 80),
            Lookup::Failed("vm vm-stopped is stopped".into())
        );
        assert_eq!(
            resolver
                .resolve_now(&vm_id("vm-missing"), 80)
                .await
                .unwrap_err(),
            ResolveError::VmNotFound {
                id: "vm-missing".into()
            }
        );
        for id in ["vm-garbage", "vm-500", "vm-hang", "vm-other"] {
            let err = resolver.resolve_now(&vm_id(id), 80).await.unwrap_err();
            assert!(
                matches!(&err, ResolveError::PlasmaVmc { id: got, .. } if got == id),
                "{id}: {err:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn keeps_the_last_good_address_while_plasmavmc_fails() {
    bounded(async {
        let vmc = FakeVmc::start().await;
        vmc.set("vm-4", vm("vm-4", "running", "10.0.0.4"));
        let resolver = vm_resolver(&vmc, Duration::from_millis(200));
        let backend = vm_id("vm-4");
        let key = Key::vm("vm-4".into());
        resolver.resolve_now(&backend, 80).await.unwrap();

        for failure in [
            Reply::Status(503),
            Reply::Json("garbage".into()),
            Reply::Hang,
        ] {
            vmc.set("vm-4", failure.clone());
            let failures = state(&resolver, key.clone()).failures;
            eventually(Duration::from_secs(5), "a failed refresh", || {
                (state(&resolver, key.clone()).failures > failures).then_some(())
            })
            .await;
            assert_eq!(
                ready(&resolver.lookup(&backend, 80)),
                Some(addrs(&["10.0.0.4:80"])),
                "{failure:?}"
            );
        }

        // Stopped is authoritative: the old address is dropped at once.
        vmc.set("vm-4", vm("vm-4", "stopped", "10.0.0.4"));
        eventually(Duration::from_secs(5), "the stop to be seen", || {
            matches!(resolver.lookup(&backend, 80), Lookup::Failed(_)).then_some(())
        })
        .await;

        // Started again with a new address.
        vmc.set("vm-4", vm("vm-4", "running", "10.0.0.44"));
        eventually(Duration::from_secs(5), "the new address", || {
            (ready(&resolver.lookup(&backend, 80))? == addrs(&["10.0.0.44:80"])).then_some(())
        })
        .await;

        // Deleted: 404 is authoritative too.
        vmc.set("vm-4", Reply::Status(404));
        eventually(Duration::from_secs(5), "the deletion to be seen", || {
            (resolver.lookup(&backend, 80) == Lookup::Failed("vm vm-4 not found".into()))
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn vm_ids_without_an_endpoint_fail_clearly() {
    bounded(async {
        let none = resolver(ResolverConfig::default());
        assert_eq!(
            none.resolve_now(&vm_id("vm-1"), 80).await.unwrap_err(),
            ResolveError::NoPlasmaVmc { id: "vm-1".into() }
        );
        let bad = resolver(ResolverConfig {
            plasmavmc_endpoint: Some("https://plasmavmc:8443".into()),
            ..ResolverConfig::default()
        });
        let err = bad.resolve_now(&vm_id("vm-1"), 80).await.unwrap_err();
        assert!(
            err.to_string().contains("invalid plasmavmc endpoint"),
            "{err}"
        );
    })
    .await;
}
