//! Per (load balancer, listener, backend) L4 metric handles, registered once per thread and
//! reused (see [`super::label_cache`]).

use std::sync::Arc;

use metrics::{Counter, Gauge};

use super::label_cache::{self, LabelCache};

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

thread_local! {
    static CACHE: LabelCache<ConnMetrics> = LabelCache::default();
}

/// The handles for a label set.
pub fn get(lb: &str, listener: &str, backend: &str) -> Arc<ConnMetrics> {
    CACHE.with(|cache| {
        cache.get(label_cache::key((lb, listener, backend)), || {
            let labels = [
                ("lb", lb.to_string()),
                ("listener", listener.to_string()),
                ("backend", backend.to_string()),
            ];
            ConnMetrics {
                total: metrics::counter!("fiberlb_connections_total", &labels),
                active: metrics::gauge!("fiberlb_connections_active", &labels),
                bytes_in: metrics::counter!("fiberlb_bytes_in_total", &labels),
                bytes_out: metrics::counter!("fiberlb_bytes_out_total", &labels),
            }
        })
    })
}
