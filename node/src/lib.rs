//! The `fiberlb` node and client: settings, the embedded store, the node runtime (gRPC API,
//! admin HTTP) and the command-line client. `main.rs` only calls [`cli::main`].

pub mod access_log;
pub mod alloc_trim;
pub mod balance;
pub mod cli;
pub mod fleet;
pub mod health;
pub mod proxy;
pub mod resolve;
pub mod server;
pub mod settings;
pub mod skip_verify;
pub mod snapshot;
pub mod state;
pub mod store;
