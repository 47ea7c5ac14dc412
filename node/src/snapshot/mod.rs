//! The immutable configuration snapshot the data plane runs on, and the watcher that
//! rebuilds it from the store.
//!
//! Every node (the API writer too) learns changes only from the store watch. A change
//! rebuilds the whole snapshot off the hot path (balancers included) and publishes it with
//! one atomic pointer swap; connections read the pointer once and keep the snapshot they
//! started with.

mod build;
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
    /// Which backends may take a new connection now: enabled, active (not draining),
    /// healthy; backups only when no primary can.
    pub fn eligible(&self) -> Vec<bool> {
        let check = self.pool.has_active_check();
        crate::balance::eligible_mask(&self.endpoints, |i| {
            self.backends[i].accepts_new_connections()
                && self.states[i].is_healthy(check)
                && self.states[i].circuit_admits()
        })
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
