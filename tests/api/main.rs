//! Create/read/update/delete of every resource through the gRPC API of a real node, plus the
//! node's own endpoints (status, gRPC health, admin HTTP). Each test starts its own node.

mod access;
mod backend;
mod certificate;
mod listener;
mod load_balancer;
mod node;
mod pool;

/// A string map from pairs (tags, metadata, headers).
pub(crate) fn map(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
