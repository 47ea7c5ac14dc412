//! `max_connections` through the BackendService over the memory store: set on add,
//! changed and cleared by update, untouched by updates that do not name it, bounded.

use std::sync::Arc;

use fiberlb_proto::v1 as pb;
use pb::backend_service_server::BackendService;
use pb::lb_service_server::LbService;
use pb::pool_service_server::PoolService;
use tonic::{Code, Request};

use super::super::Api;
use crate::auth::{bootstrap_admin, BootstrapOutcome};
use crate::model::Backend;
use crate::repo::Repo;
use crate::runtime::StaticRuntime;
use crate::store::MemoryStore;
use crate::validate::MAX_BACKEND_CONNECTIONS;

fn req<T>(secret: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    r
}

/// An API over a fresh memory store, its admin secret and a pool id.
async fn with_pool() -> (Api, Arc<MemoryStore>, String, String) {
    let store = Arc::new(MemoryStore::new());
    let secret = match bootstrap_admin(&Repo::new(store.clone()), None)
        .await
        .unwrap()
    {
        BootstrapOutcome::Created { secret } => secret,
        BootstrapOutcome::AlreadyDone => unreachable!("fresh store"),
    };
    let api = Api::new(store.clone(), Arc::new(StaticRuntime::default()));
    let lb = api
        .create_load_balancer(req(
            &secret,
            pb::CreateLoadBalancerRequest {
                name: "web".into(),
                org_id: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let pool = api
        .create_pool(req(
            &secret,
            pb::CreatePoolRequest {
                lb_id: lb.id,
                name: "app".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (api, store, secret, pool.id)
}

fn add(pool: &str, name: &str, max_connections: Option<u32>) -> pb::AddBackendRequest {
    pb::AddBackendRequest {
        pool_id: pool.into(),
        name: name.into(),
        address: Some(pb::BackendAddress {
            address: Some(pb::backend_address::Address::Ip("10.0.0.1".into())),
        }),
        port: 8080,
        max_connections,
        ..Default::default()
    }
}

#[tokio::test]
async fn max_connections_is_set_changed_and_cleared() {
    let (api, store, s, pool) = with_pool().await;
    let b = BackendService::add_backend(&api, req(&s, add(&pool, "limited", Some(5))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.max_connections, Some(5));
    let unlimited = BackendService::add_backend(&api, req(&s, add(&pool, "open", Some(0))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlimited.max_connections, None, "0 on add = unlimited");

    // The stored value carries it: what every node's snapshot is built from.
    let stored: Backend = Repo::new(store).get(&b.id).await.unwrap();
    assert_eq!(stored.max_connections, Some(5));

    let update = |max_connections, weight| pb::UpdateBackendRequest {
        backend_id: b.id.clone(),
        max_connections,
        weight,
        ..Default::default()
    };
    let u = BackendService::update_backend(&api, req(&s, update(None, Some(3))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (u.weight, u.max_connections),
        (3, Some(5)),
        "an update without the field keeps it"
    );
    let u = BackendService::update_backend(&api, req(&s, update(Some(7), None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.max_connections, Some(7));
    let u = BackendService::update_backend(&api, req(&s, update(Some(0), None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.max_connections, None, "0 clears it");
    let got = BackendService::get_backend(
        &api,
        req(
            &s,
            pb::GetBackendRequest {
                backend_id: b.id.clone(),
            },
        ),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(got.max_connections, None);
}

#[tokio::test]
async fn max_connections_out_of_bounds_is_refused() {
    let (api, _, s, pool) = with_pool().await;
    let err = BackendService::add_backend(
        &api,
        req(&s, add(&pool, "huge", Some(MAX_BACKEND_CONNECTIONS + 1))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("INVALID_ARGUMENT: max_connections"),
        "{}",
        err.message()
    );
    let b = BackendService::add_backend(
        &api,
        req(&s, add(&pool, "edge", Some(MAX_BACKEND_CONNECTIONS))),
    )
    .await
    .unwrap()
    .into_inner();
    let err = BackendService::update_backend(
        &api,
        req(
            &s,
            pb::UpdateBackendRequest {
                backend_id: b.id,
                max_connections: Some(u32::MAX),
                ..Default::default()
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
