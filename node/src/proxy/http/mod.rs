//! The L7 data plane: HTTP and HTTPS listeners as a reverse proxy.
//!
//! A connection (`conn`) is served by our HTTP/1 server (`h1`: HTTP/1.0 and 1.1 with
//! keep-alive and pipelining; its parser refuses request-smuggling shapes with 400 before
//! a backend sees them) or by our HTTP/2 server (`h2`: by ALPN on HTTPS or by prior
//! knowledge, h2c, on HTTP); `io` tells the two apart and times the first bytes and idle
//! HTTP/2 connections. Each request (`service`) is
//! routed by the listener's compiled [`route::RouteTable`]; redirects and fixed responses
//! are answered here; forwarded requests (`forward`) honour session persistence
//! ([`persist::Sticky`]), then the pool's balancer, and go to the backend through a pooled
//! keep-alive client (`client`: our HTTP/1.1 one, `h1client`, run inline by the request's
//! task; hyper's for HTTP/2 and upgrades; optionally TLS). Bodies stream both
//! ways with back-pressure (`body`); `Upgrade` requests become tunnels (`tunnel`). One
//! access log line and the request metrics are written per request (`access`).
//!
//! See docs/http.md for the operator's view (headers added, limits, error statuses,
//! backend metadata keys).

mod access;
mod body;
mod client;
mod conn;
mod forward;
pub mod h1;
mod h1client;
pub use h1client::decode_backend_bytes;
pub mod h2;
mod headers;
mod idle;
mod io;
mod lazy;
pub mod persist;
mod respond;
pub mod route;
mod service;
mod tls_client;
mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

pub use client::Dial;
pub use conn::serve;
pub use lazy::LazyTcp;

use crate::proxy::connect::SocketOptions;
use crate::settings::{ProxySettings, ProxyTlsSettings};
use crate::snapshot::{PoolPlan, Snapshot};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request limits and client-side timeouts from `[proxy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head, bytes (431 above).
    pub max_header: usize,
    /// Largest request body, bytes (413 above); `None` = unlimited.
    pub max_body: Option<u64>,
    /// A request head must arrive within this after its first byte (and a new
    /// connection's first head within this after the accept).
    pub head_timeout: Duration,
    /// Keep-alive connections without a request in flight close after this.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `[proxy]` sets.
    pub fn from_settings(s: &ProxySettings) -> Self {
        Limits {
            max_header: s.max_header_size_bytes.max(1024),
            max_body: (s.max_body_size_bytes > 0).then_some(s.max_body_size_bytes),
            head_timeout: s.header_read_timeout().max(Duration::from_millis(1)),
            idle_timeout: s.http_idle_timeout().max(Duration::from_millis(1)),
        }
    }
}

/// The part of the L7 configuration that SIGHUP may change: limits, timeouts and how
/// backend connections are dialled.
/// A connection takes one of these when it starts and keeps it to the end, so a reload
/// changes new connections only.
#[derive(Debug, Clone)]
pub struct HttpLive {
    /// Limits and timeouts.
    pub limits: Limits,
    /// Dialling and pooling of backend connections.
    pub dial: Dial,
}

impl HttpLive {
    /// Builds the values from `[proxy]`; backend connections are dialled with `sockets`,
    /// and `generation` orders successive versions (see [`Dial::generation`]).
    pub fn new(s: &ProxySettings, sockets: SocketOptions, generation: u64) -> Self {
        let limits = Limits::from_settings(s);
        HttpLive {
            limits,
            dial: Dial {
                sockets,
                idle: s.http_idle_timeout(),
                generation,
            },
        }
    }
}

/// State of the L7 data plane shared by all HTTP listeners of a node; it outlives
/// configuration snapshots (pooled backend connections, persistence tables).
pub struct HttpShared {
    /// Defaults for TLS termination.
    pub tls_defaults: ProxyTlsSettings,
    clients: client::Clients,
    sticky: DashMap<String, Arc<persist::Sticky>>,
}

impl std::fmt::Debug for HttpShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpShared")
            .field("sticky_pools", &self.sticky.len())
            .finish()
    }
}

impl HttpShared {
    /// Builds the shared state from `[proxy]`.
    pub fn new(s: &ProxySettings) -> Self {
        HttpShared {
            tls_defaults: s.tls.clone(),
            clients: client::Clients::default(),
            sticky: DashMap::new(),
        }
    }

    /// The persistence state of `plan`'s pool, if it has session persistence.
    pub fn sticky(&self, plan: &PoolPlan) -> Option<Arc<persist::Sticky>> {
        use fiberlb_api::model::PersistenceMode;
        plan.pool
            .session_persistence
            .as_ref()
            .filter(|s| s.mode != PersistenceMode::None)?;
        if let Some(s) = self.sticky.get(&plan.pool.id) {
            return Some(s.clone());
        }
        let s = self
            .sticky
            .entry(plan.pool.id.clone())
            .or_insert_with(|| Arc::new(persist::Sticky::new(persist::DEFAULT_MAX_ENTRIES)))
            .clone();
        Some(s)
    }

    /// Forgets persistence tables of pools and clients of backends `snapshot` no longer has.
    pub fn retain(&self, snapshot: &Snapshot) {
        self.sticky.retain(|id, _| snapshot.pools.contains_key(id));
        let backends: std::collections::HashSet<&str> = snapshot
            .pools
            .values()
            .flat_map(|p| p.backends.iter().map(|b| b.id.as_str()))
            .collect();
        self.clients.retain(|id| backends.contains(id));
    }
}
