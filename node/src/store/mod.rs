//! Configuration store backends: implementations of [`fiberlb_api::store::ConfigStore`],
//! the etcd-v3-shaped key-value contract (revisions, compare-and-swap transactions, prefix
//! watches) that the API writes and every node's snapshot builder watches.
//!
//! - [`EmbeddedStore`] (`embedded.rs`): a single-file ACID store on redb under the data
//!   directory (`<data-dir>/fiberlb.redb`). The default for a single node. Every transaction
//!   is fsynced before it is acknowledged, so nothing acknowledged is lost by `kill -9`.
//!   It keeps no history: a watch can only start at the current revision, and a caller that
//!   falls behind gets [`fiberlb_api::store::StoreError::Compacted`] and reloads.
//! - [`EtcdStore`] (`etcd.rs`): the etcd v3 API (ChainFire in production, a real `etcd` in
//!   tests) for fleets. Watches resume from a revision; a compacted one means reload.
//!
//! The in-memory store for unit tests lives in `fiberlb-api` (`MemoryStore`); it is the
//! reference semantics every backend here is checked against with
//! `fiberlb_api::store::contract::run_all`.

mod embedded;
mod etcd;

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdOptions, EtcdStore};
