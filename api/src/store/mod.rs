//! The configuration store contract: a key-value store with revisions, transactions and
//! watches, shaped after the etcd v3 API so that the embedded store (redb), the etcd/ChainFire
//! store and the in-memory test store are interchangeable.
//!
//! Every committed transaction bumps one store-wide revision; every key remembers the
//! revision that created it and the one that last modified it. Optimistic concurrency is a
//! [`Compare::ModRevision`] in the transaction that writes the object and its index keys.

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
mod memory;

pub use memory::MemoryStore;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

/// A stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `fiberlb/lbs/<id>`.
    pub key: String,
    /// Opaque value bytes (JSON of a domain object, or an id for index keys).
    pub value: Vec<u8>,
    /// Store revision of the transaction that created the key.
    pub create_revision: u64,
    /// Store revision of the transaction that last wrote the key.
    pub mod_revision: u64,
}

/// A condition a transaction checks before it applies its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given one; `0` means "the key does not exist".
    ModRevision {
        /// Key to check.
        key: String,
        /// Expected mod revision, or 0 for absent.
        revision: u64,
    },
}

impl Compare {
    /// The key must not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision: 0,
        }
    }

    /// The key must exist with exactly this mod revision.
    pub fn revision(key: impl Into<String>, revision: u64) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision,
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite a key.
    Put {
        /// Key to write.
        key: String,
        /// New value.
        value: Vec<u8>,
    },
    /// Delete a key (no error if it is absent).
    Delete {
        /// Key to delete.
        key: String,
    },
}

impl Op {
    /// Shorthand for [`Op::Put`].
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Shorthand for [`Op::Delete`].
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
}

/// A compare-and-apply transaction: if every compare holds, all ops are applied atomically
/// (and durably, before the call returns) under one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions that must all hold.
    pub compares: Vec<Compare>,
    /// Writes applied when they do.
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }

    /// Adds a write.
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
}

/// What a committed transaction did to one key, as seen by watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or overwritten.
    Put(KeyValue),
    /// The key was deleted at this revision.
    Delete {
        /// Deleted key.
        key: String,
        /// Revision of the deleting transaction.
        mod_revision: u64,
    },
}

/// A stream of committed changes in revision order.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare of the transaction did not hold; nothing was written.
    #[error("transaction conflict on {key}")]
    Conflict {
        /// The first key whose compare failed.
        key: String,
    },
    /// The store cannot be reached or is not writable right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for history that the store no longer keeps; reload everything.
    #[error("revision {requested} is compacted (oldest kept: {oldest})")]
    Compacted {
        /// Requested start revision.
        requested: u64,
        /// Oldest revision still available.
        oldest: u64,
    },
    /// The store's files or data are damaged or unreadable.
    #[error("store corrupted: {0}")]
    Corrupted(String),
}

/// The configuration store used by the API and by every node's snapshot builder.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Reads every key starting with `prefix`, in key order.
    async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError>;

    /// Applies a transaction; returns the new store revision.
    /// Fails with [`StoreError::Conflict`] if a compare does not hold.
    async fn txn(&self, txn: Txn) -> Result<u64, StoreError>;

    /// The current store revision (0 for an empty, never-written store).
    async fn revision(&self) -> Result<u64, StoreError>;

    /// Streams changes under `prefix` committed after revision `after`.
    /// Stores that keep no history return [`StoreError::Compacted`] when `after` is older
    /// than their current revision; the caller then reloads with [`ConfigStore::range`].
    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, StoreError>;

    /// A short name for status output: `embedded`, `memory`, `chainfire`.
    fn backend_name(&self) -> &'static str;
}

#[cfg(test)]
mod tests;
