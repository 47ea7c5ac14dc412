//! In-process tests of the services over the memory store: the behaviours that involve
//! several objects (uniqueness, references, revisions), without sockets.

use std::sync::Arc;

use fiberlb_proto::v1 as pb;
use pb::backend_service_server::BackendService;
use pb::lb_service_server::LbService;
use pb::listener_service_server::ListenerService;
use pb::pool_service_server::PoolService;
use tonic::{Code, Request};

use super::Api;
use crate::auth::{bootstrap_admin, BootstrapOutcome};
use crate::repo::Repo;
use crate::runtime::StaticRuntime;
use crate::store::MemoryStore;

async fn api() -> (Api, String) {
    let store = Arc::new(MemoryStore::new());
    let secret = match bootstrap_admin(&Repo::new(store.clone()), None)
        .await
        .unwrap()
    {
        BootstrapOutcome::Created { secret } => secret,
        BootstrapOutcome::AlreadyDone => unreachable!("fresh store"),
    };
    (Api::new(store, Arc::new(StaticRuntime::default())), secret)
}

fn req<T>(secret: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    r
}

async fn lb(api: &Api, s: &str, name: &str) -> pb::LoadBalancer {
    api.create_load_balancer(req(
        s,
        pb::CreateLoadBalancerRequest {
            name: name.into(),
            org_id: "acme".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn names_ports_and_references() {
    let (api, s) = api().await;
    let a = lb(&api, &s, "web").await;
    let dup = api
        .create_load_balancer(req(
            &s,
            pb::CreateLoadBalancerRequest {
                name: "web".into(),
                org_id: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert!(
        dup.message().starts_with("LB_ALREADY_EXISTS:"),
        "{}",
        dup.message()
    );

    let pool = api
        .create_pool(req(
            &s,
            pb::CreatePoolRequest {
                lb_id: a.id.clone(),
                name: "app".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let l = pb::CreateListenerRequest {
        lb_id: a.id.clone(),
        name: "http".into(),
        protocol: pb::ListenerProtocol::Http as i32,
        port: 80,
        default_pool_id: Some(pool.id.clone()),
        ..Default::default()
    };
    api.create_listener(req(&s, l.clone())).await.unwrap();
    let clash = api
        .create_listener(req(
            &s,
            pb::CreateListenerRequest {
                name: "other".into(),
                ..l.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), Code::AlreadyExists);
    assert_eq!(
        clash.message(),
        "LISTENER_PORT_CONFLICT: port 80 already used by listener http"
    );
    let udp = pb::CreateListenerRequest {
        name: "dns".into(),
        protocol: pb::ListenerProtocol::Udp as i32,
        default_pool_id: None,
        ..l
    };
    api.create_listener(req(&s, udp))
        .await
        .expect("udp and tcp share a port number");

    let in_use = api
        .delete_pool(req(
            &s,
            pb::DeletePoolRequest {
                pool_id: pool.id.clone(),
                revision: None,
            },
        ))
        .await
        .unwrap_err();
    assert!(
        in_use.message().starts_with("POOL_IN_USE:"),
        "{}",
        in_use.message()
    );
    let has = api
        .delete_load_balancer(req(
            &s,
            pb::DeleteLoadBalancerRequest {
                lb_id: a.id.clone(),
                force: false,
                revision: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(has.code(), Code::FailedPrecondition);
    api.delete_load_balancer(req(
        &s,
        pb::DeleteLoadBalancerRequest {
            lb_id: a.id.clone(),
            force: true,
            revision: None,
        },
    ))
    .await
    .unwrap();
    let gone = api
        .get_pool(req(&s, pb::GetPoolRequest { pool_id: pool.id }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn stale_revisions_abort_and_change_nothing() {
    let (api, s) = api().await;
    let a = lb(&api, &s, "web").await;
    let upd = |rev, d: &str| pb::UpdateLoadBalancerRequest {
        lb_id: a.id.clone(),
        description: Some(d.into()),
        revision: Some(rev),
        ..Default::default()
    };
    let b = api
        .update_load_balancer(req(&s, upd(a.revision, "one")))
        .await
        .unwrap()
        .into_inner();
    assert!(b.revision > a.revision);
    let stale = api
        .update_load_balancer(req(&s, upd(a.revision, "two")))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let now = api
        .get_load_balancer(req(
            &s,
            pb::GetLoadBalancerRequest {
                lb_id: a.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now, b);
}

#[tokio::test]
async fn pools_with_backends_are_not_deleted() {
    let (api, s) = api().await;
    let a = lb(&api, &s, "web").await;
    let pool = api
        .create_pool(req(
            &s,
            pb::CreatePoolRequest {
                lb_id: a.id.clone(),
                name: "app".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let add = pb::AddBackendRequest {
        pool_id: pool.id.clone(),
        name: "b1".into(),
        address: Some(pb::BackendAddress {
            address: Some(pb::backend_address::Address::Ip("10.0.0.1".into())),
        }),
        port: 8080,
        ..Default::default()
    };
    let b = api.add_backend(req(&s, add)).await.unwrap().into_inner();
    assert_eq!(b.weight, 1);
    let err = api
        .delete_pool(req(
            &s,
            pb::DeletePoolRequest {
                pool_id: pool.id.clone(),
                revision: None,
            },
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("POOL_NOT_EMPTY:"),
        "{}",
        err.message()
    );
    api.remove_backend(req(
        &s,
        pb::RemoveBackendRequest {
            backend_id: b.id,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    api.delete_pool(req(
        &s,
        pb::DeletePoolRequest {
            pool_id: pool.id,
            revision: None,
        },
    ))
    .await
    .unwrap();
}
