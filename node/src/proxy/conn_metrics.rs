//! Per (load balancer, listener, backend) metric handles, registered once and reused, so a
//! new connection costs no label allocation or registry lookup — only a hash-map probe.
//!
//! The cache is per thread: a data-plane worker finds its handles without touching a lock
//! or a reference count that another core writes too (a shared map cost two contended
//! atomic operations per lookup, and the shared `Arc` two more). The handles themselves
//! point at the process-wide registry's counters, so every thread adds to the same series.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Gauge};

use crate::balance::stable_hash;

/// The L4 connection metrics of one label set.
pub struct ConnMetrics {
    /// `fiberlb_connections_total`
    pub total: Counter,
    /// `fiberlb_connections_active`
    pub active: Gauge,
    /// `fiberlb_bytes_in_total` (client → backend)
    pub bytes_in: Counter,
    /// `fiberlb_bytes_out_total` (backend → client)
    pub bytes_out: Counter,
}

/// Label sets seen by one thread; cleared wholesale if configuration churn ever makes it
/// this large.
const MAX_ENTRIES: usize = 10_000;

thread_local! {
    static CACHE: RefCell<HashMap<u128, Arc<ConnMetrics>>> = RefCell::new(HashMap::new());
}

/// The handles for a label set.
pub fn get(lb: &str, listener: &str, backend: &str) -> Arc<ConnMetrics> {
    let h = |seed: u64| {
        stable_hash(seed, lb.as_bytes())
            ^ stable_hash(seed + 1, listener.as_bytes()).rotate_left(21)
            ^ stable_hash(seed + 2, backend.as_bytes()).rotate_left(42)
    };
    let key = (u128::from(h(1)) << 64) | u128::from(h(11));
    CACHE.with_borrow_mut(|cache| {
        if let Some(m) = cache.get(&key) {
            return m.clone();
        }
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        let labels = [
            ("lb", lb.to_string()),
            ("listener", listener.to_string()),
            ("backend", backend.to_string()),
        ];
        let m = Arc::new(ConnMetrics {
            total: metrics::counter!("fiberlb_connections_total", &labels),
            active: metrics::gauge!("fiberlb_connections_active", &labels),
            bytes_in: metrics::counter!("fiberlb_bytes_in_total", &labels),
            bytes_out: metrics::counter!("fiberlb_bytes_out_total", &labels),
        });
        cache.insert(key, m.clone());
        m
    })
}
