//! The immutable configuration snapshot the data plane runs on, and the watcher that
//! rebuilds it from the store.
//!
//! Every node (the API writer too) learns changes only from the store watch. A change
//! rebuilds the whole snapshot off the hot path (balancers included) and publishes it with
//! one atomic pointer swap; connections read the pointer once and keep the snapshot they
//! started with.

mod build;
#[cfg(test)]
mod tests;
mod watcher;

pub use build::build;
pub use watcher::{watch_store, SnapshotCell};

use std::collections::HashMap;
use std::sync::Arc;

use fiberlb_api::model::{Backend, Certificate, Listener, LoadBalancer, Pool};

use crate::balance::{Balancer, Endpoint};
use crate::state::BackendState;

/// A pool ready for picking.
#[derive(Debug)]
pub struct PoolPlan {
    /// The pool's configuration.
    pub pool: Pool,
    /// Its backends, in the order of `endpoints` (sorted by id, so every node agrees).
    pub backends: Vec<Backend>,
    /// Runtime state of each backend, same order.
    pub states: Vec<Arc<BackendState>>,
    /// What the balancer sees, same order.
    pub endpoints: Vec<Endpoint>,
    /// The pool's balancer over `endpoints`.
    pub balancer: Arc<dyn Balancer>,
}

impl PoolPlan {
    /// The plan of `pool` over `backends` (in the order given; the snapshot sorts them by
    /// id), with each backend's runtime state from `state` and the pool's balancer.
    pub fn new(pool: Pool, backends: Vec<Backend>, state: &crate::state::RuntimeState) -> Self {
        let states: Vec<_> = backends.iter().map(|b| state.backend(&b.id)).collect();
        let endpoints: Vec<Endpoint> = backends
            .iter()
            .zip(&states)
            .map(|(b, s)| Endpoint {
                id: b.id.as_str().into(),
                weight: b.weight,
                backup: b.backup,
                stats: s.stats.clone(),
            })
            .collect();
        let balancer = crate::balance::build(pool.algorithm, &endpoints);
        PoolPlan {
            pool,
            backends,
            states,
            endpoints,
            balancer,
        }
    }

    /// Which backends may serve now: enabled, active (not draining), healthy, circuit
    /// closed; backups only when no primary can.
    ///
    /// Capacity (`max_connections`) is deliberately not part of it: a full backend is
    /// still a working one, so it must neither bring in the backups nor make BGP withdraw
    /// the VIP (which reads this mask). The data plane checks capacity at pick time
    /// instead ([`PoolPlan::has_room`]), on the one backend the balancer chose.
    pub fn eligible(&self) -> crate::balance::Mask {
        let check = self.pool.has_active_check();
        crate::balance::eligible_mask(&self.endpoints, |i| {
            self.backends[i].accepts_new_connections()
                && self.states[i].is_healthy(check)
                && self.states[i].circuit_admits()
        })
    }

    /// The `max_connections` of backend `i` (`None` = unlimited, or no such backend).
    pub fn max_connections(&self, i: usize) -> Option<u32> {
        self.backends.get(i).and_then(|b| b.max_connections)
    }

    /// Whether backend `i` can take one more connection: its connections on this node
    /// plus those the other fleet members gossiped are below its `max_connections`. Two
    /// atomic loads, and only for a backend that has a limit.
    pub fn has_room(&self, i: usize) -> bool {
        self.states
            .get(i)
            .is_some_and(|s| s.stats.has_room(self.max_connections(i)))
    }

    /// Whether the pool turns new connections away for capacity alone: some backend is
    /// [`eligible`](PoolPlan::eligible), and every eligible one is full. For the error
    /// path (the message a client gets), not the hot path.
    pub fn at_capacity(&self) -> bool {
        let eligible = self.eligible();
        eligible.iter().any(|e| *e)
            && eligible
                .iter()
                .enumerate()
                .all(|(i, e)| !*e || !self.has_room(i))
    }
}

/// Everything the data plane needs, at one store revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Store revision it reflects.
    pub revision: u64,
    /// Load balancers by id.
    pub lbs: HashMap<String, Arc<LoadBalancer>>,
    /// Listeners by id.
    pub listeners: HashMap<String, Arc<Listener>>,
    /// Pools by id.
    pub pools: HashMap<String, Arc<PoolPlan>>,
    /// Certificates by id.
    pub certificates: HashMap<String, Arc<Certificate>>,
    /// Compiled routing rules of every HTTP/HTTPS listener, by listener id.
    pub routes: HashMap<String, Arc<crate::proxy::http::route::RouteTable>>,
}

impl Snapshot {
    /// A listener and its load balancer, if both exist and both are enabled.
    pub fn active_listener(&self, id: &str) -> Option<(&Arc<Listener>, &Arc<LoadBalancer>)> {
        let l = self.listeners.get(id)?;
        let lb = self.lbs.get(&l.lb_id)?;
        (l.enabled && lb.is_enabled()).then_some((l, lb))
    }
}
