//! Building a [`Snapshot`] from the store's key-value pairs.

use std::collections::HashMap;
use std::sync::Arc;

use fiberlb_api::keys;
use fiberlb_api::model::{Backend, Certificate, Listener, ListenerProtocol, LoadBalancer, Pool};
use fiberlb_api::repo::{decode, Stored};
use fiberlb_api::store::KeyValue;

use super::{PoolPlan, Snapshot};
use crate::proxy::http::route::RouteTable;
use crate::state::RuntimeState;

/// The object id of `key` if it is an object key directly under `prefix` (index keys have
/// more path segments).
fn object_id<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

fn collect<T: Stored>(kvs: &[KeyValue], prefix: &str) -> Vec<T> {
    kvs.iter()
        .filter(|kv| object_id(&kv.key, prefix).is_some())
        .filter_map(|kv| match decode::<T>(kv) {
            Ok(v) => Some(v),
            Err(e) => {
                // One unreadable object must not take the whole data plane down.
                tracing::error!(key = %kv.key, error = %e, "skipping unreadable object");
                None
            }
        })
        .collect()
}

/// Builds a snapshot of everything under `fiberlb/` at `revision`, registering every
/// backend in `state` and forgetting backends that are gone.
pub fn build(revision: u64, kvs: &[KeyValue], state: &RuntimeState) -> Snapshot {
    let lbs: HashMap<String, Arc<LoadBalancer>> = collect::<LoadBalancer>(kvs, keys::LB_PREFIX)
        .into_iter()
        .map(|v| (v.id.clone(), Arc::new(v)))
        .collect();
    let listeners: HashMap<String, Arc<Listener>> = collect::<Listener>(kvs, "fiberlb/listeners/")
        .into_iter()
        .filter(|l| lbs.contains_key(&l.lb_id))
        .map(|v| (v.id.clone(), Arc::new(v)))
        .collect();
    let certificates: HashMap<String, Arc<Certificate>> =
        collect::<Certificate>(kvs, "fiberlb/certs/")
            .into_iter()
            .map(|v| (v.id.clone(), Arc::new(v)))
            .collect();
    let mut by_pool: HashMap<String, Vec<Backend>> = HashMap::new();
    for b in collect::<Backend>(kvs, "fiberlb/backends/") {
        by_pool.entry(b.pool_id.clone()).or_default().push(b);
    }
    let mut pools = HashMap::new();
    for pool in collect::<Pool>(kvs, "fiberlb/pools/") {
        let mut backends = by_pool.remove(&pool.id).unwrap_or_default();
        backends.sort_by(|a, b| a.id.cmp(&b.id));
        pools.insert(
            pool.id.clone(),
            Arc::new(PoolPlan::new(pool, backends, state)),
        );
    }
    state.retain(|id| {
        pools
            .values()
            .any(|p| p.backends.iter().any(|b| b.id == id))
    });
    let routes = listeners
        .values()
        .filter(|l| matches!(l.protocol, ListenerProtocol::Http | ListenerProtocol::Https))
        .filter_map(|l| {
            let lb = lbs.get(&l.lb_id)?;
            Some((l.id.clone(), Arc::new(RouteTable::compile(l, lb))))
        })
        .collect();
    Snapshot {
        revision,
        lbs,
        listeners,
        pools,
        certificates,
        routes,
    }
}
