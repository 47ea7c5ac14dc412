//! The data plane: one module per protocol.

pub mod client_hello;
pub mod proxy_protocol;
