//! The L4 data plane: one module per protocol, plus what they share.
//!
//! `listeners` opens sockets from the configuration snapshot; each accepted connection is
//! handled by `tcp` (plain TCP), `passthrough` (TLS routed by SNI) or `udp` (flows), which
//! pick a backend with `connect` and move bytes with `copy`.

pub mod accept;
pub mod client_hello;
pub mod conn_metrics;
pub mod connect;
pub mod context;
pub mod copy;
pub mod host_match;
pub mod http;
pub mod label_cache;
pub mod listeners;
pub mod passthrough;
pub mod proxy_protocol;
pub mod tcp;
pub mod tls_termination;
pub mod udp;
pub mod workers;
mod zero_copy;

pub use context::ProxyContext;
pub use workers::Workers;
