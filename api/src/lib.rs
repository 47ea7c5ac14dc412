//! FiberLB management plane: the domain model, the configuration store contract, request
//! validation, authentication and authorization, and the tonic services of `fiberlb.v1`.
//!
//! The services write the store and nothing else: every node (the writer too) learns of
//! changes through the store watch and rebuilds its data-plane snapshot. Runtime state
//! (health, circuit states) is read through [`runtime::RuntimeView`], which the node
//! implements.
#![deny(missing_docs)]

pub mod auth;
pub mod convert;
pub mod error;
pub mod keys;
pub mod model;
pub mod repo;
pub mod runtime;
pub mod service;
pub mod store;
pub mod validate;
