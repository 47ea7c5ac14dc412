//! One module per resource: its clap subcommands and the calls they make.

pub mod backend;
pub mod cert;
pub mod lb;
pub mod listener;
pub mod node;
pub mod pool;
pub mod rule;
pub mod token;

mod health_flags;
