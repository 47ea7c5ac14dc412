//! The L7 data plane (in progress): routing rules and session persistence.

pub mod persist;
pub mod route;
