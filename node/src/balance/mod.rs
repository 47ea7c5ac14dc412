//! Backend selection: one [`Balancer`] trait, one algorithm per file.
//!
//! A balancer is built once per pool per configuration snapshot (off the hot path: Maglev
//! tables, weight schedules) over the pool's endpoints in a fixed order, and then asked per
//! connection or request to pick among the endpoints that are *eligible right now*. Health
//! changes therefore never rebuild a balancer; they only change the `eligible` mask.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::Algorithm;

/// Live numbers of one backend, shared by every snapshot that contains it.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Connections (L4) or in-flight requests (L7) this node has open to the backend.
    pub active: AtomicU64,
    /// The same, summed over the other fleet members (from gossip); 0 without a fleet.
    pub fleet_active: AtomicU64,
    /// EWMA of connect / first-byte time in microseconds; 0 = nothing measured yet.
    pub ewma_micros: AtomicU64,
}

impl BackendStats {
    /// Fleet-wide active count: what least-connections compares.
    pub fn total_active(&self) -> u64 {
        self.active.load(Ordering::Relaxed) + self.fleet_active.load(Ordering::Relaxed)
    }

    /// Folds one latency sample into the EWMA (weight 1/8 for the new sample).
    pub fn observe_latency(&self, d: Duration) {
        let sample = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.ewma_micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 { sample } else { old - old / 8 + sample / 8 })
        });
    }
}

/// One backend as a balancer sees it; fixed for the lifetime of the balancer.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Backend id: the identity hashed by Maglev, so every node agrees.
    pub id: Arc<str>,
    /// 1-100.
    pub weight: u32,
    /// Serves only when no primary is eligible.
    pub backup: bool,
    /// Live numbers.
    pub stats: Arc<BackendStats>,
}

/// What a pick may depend on.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The client's address (IP hash uses the IP, Maglev the IP and port).
    pub client: SocketAddr,
}

/// Picks a backend.
pub trait Balancer: Send + Sync + Debug {
    /// Index of the chosen endpoint among those with `eligible[i] == true`, or `None` when
    /// none is eligible. `eligible.len()` equals the number of endpoints it was built with.
    fn pick(&self, ctx: &PickContext, eligible: &[bool]) -> Option<usize>;
}

/// The algorithm name used in logs and metrics.
pub fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RoundRobin => "round_robin",
        Algorithm::LeastConnections => "least_connections",
        Algorithm::IpHash => "ip_hash",
        Algorithm::Random => "random",
        Algorithm::WeightedRoundRobin => "weighted_round_robin",
        Algorithm::LeastResponseTime => "least_response_time",
        Algorithm::WeightedLeastConnections => "weighted_least_connections",
        Algorithm::Maglev => "maglev",
    }
}
