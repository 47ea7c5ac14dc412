//! Typed reads and transaction building over the key-value [`ConfigStore`]: objects are
//! JSON values at their id key; index keys hold the id they point to.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::{AccessToken, Backend, Certificate, Listener, LoadBalancer, Pool};
use crate::store::{ConfigStore, KeyValue, StoreError, Txn};

/// An object kept in the store under its id key.
pub trait Stored: Serialize + DeserializeOwned + Clone + Send {
    /// Human name of the kind, for messages.
    const KIND: &'static str;
    /// Error code when it is missing.
    const NOT_FOUND: ErrorCode;
    /// Its key.
    fn key_of(id: &str) -> String;
    /// Its id.
    fn id(&self) -> &str;
    /// Sets the revision read from the store.
    fn set_revision(&mut self, rev: u64);
    /// The revision it was read at.
    fn revision(&self) -> u64;
}

macro_rules! stored {
    ($t:ty, $kind:literal, $nf:expr, $key:path) => {
        impl Stored for $t {
            const KIND: &'static str = $kind;
            const NOT_FOUND: ErrorCode = $nf;
            fn key_of(id: &str) -> String {
                $key(id)
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn set_revision(&mut self, rev: u64) {
                self.revision = rev;
            }
            fn revision(&self) -> u64 {
                self.revision
            }
        }
    };
}

stored!(
    LoadBalancer,
    "load balancer",
    ErrorCode::LbNotFound,
    keys::lb
);
stored!(
    Listener,
    "listener",
    ErrorCode::ListenerNotFound,
    keys::listener
);
stored!(Pool, "pool", ErrorCode::PoolNotFound, keys::pool);
stored!(
    Backend,
    "backend",
    ErrorCode::BackendNotFound,
    keys::backend
);
stored!(
    Certificate,
    "certificate",
    ErrorCode::CertificateNotFound,
    keys::cert
);
stored!(AccessToken, "token", ErrorCode::TokenNotFound, keys::token);

/// Typed access to the store.
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn ConfigStore>,
}

/// Decodes a stored object, tagging it with its revision.
pub fn decode<T: Stored>(kv: &KeyValue) -> ApiResult<T> {
    let mut v: T = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("stored {} at {} is unreadable: {e}", T::KIND, kv.key),
        )
    })?;
    v.set_revision(kv.mod_revision);
    Ok(v)
}

/// Encodes an object for the store.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain structs of strings, numbers and maps with string keys cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Repo {
    /// Wraps a store.
    pub fn new(store: Arc<dyn ConfigStore>) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ConfigStore> {
        &self.store
    }

    /// Reads an object by id, if present.
    pub async fn find<T: Stored>(&self, id: &str) -> ApiResult<Option<T>> {
        if id.is_empty() || id.contains('/') {
            return Ok(None);
        }
        match self.store.get(&T::key_of(id)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Reads an object by id or fails with its NOT_FOUND code.
    pub async fn get<T: Stored>(&self, id: &str) -> ApiResult<T> {
        self.find(id).await?.ok_or_else(|| not_found::<T>(id))
    }

    /// Reads the id an index key points to.
    pub async fn index(&self, key: &str) -> ApiResult<Option<String>> {
        Ok(self
            .store
            .get(key)
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Reads every object whose id is the last segment of keys under `prefix`.
    pub async fn list_by_index<T: Stored>(&self, prefix: &str) -> ApiResult<Vec<T>> {
        let mut out = Vec::new();
        for kv in self.store.range(prefix).await? {
            let id = kv.key.rsplit('/').next().unwrap_or_default();
            // An index entry whose object vanished is skipped: the index and the object are
            // written in one transaction, so this only happens mid-delete on another node.
            if let Some(obj) = self.find::<T>(id).await? {
                out.push(obj);
            }
        }
        Ok(out)
    }

    /// The ids that index keys under `prefix` point to, sorted.
    pub async fn ids_under(&self, prefix: &str) -> ApiResult<Vec<String>> {
        let mut ids: Vec<String> = self
            .store
            .range(prefix)
            .await?
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Number of keys under a prefix.
    pub async fn count(&self, prefix: &str) -> ApiResult<usize> {
        Ok(self.store.range(prefix).await?.len())
    }

    /// The mod revision of a key (0 = absent), for "unchanged since I looked" compares.
    pub async fn key_revision(&self, key: &str) -> ApiResult<u64> {
        Ok(self
            .store
            .get(key)
            .await?
            .map(|kv| kv.mod_revision)
            .unwrap_or(0))
    }

    /// Commits a transaction. A failed compare comes back as `Ok(None)` so callers can
    /// re-read and retry; other failures are errors.
    pub async fn commit(&self, txn: Txn) -> ApiResult<Option<u64>> {
        match self.store.txn(txn).await {
            Ok(rev) => Ok(Some(rev)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The NOT_FOUND error of a kind.
pub fn not_found<T: Stored>(id: &str) -> ApiError {
    ApiError::new(T::NOT_FOUND, format!("{} {id} does not exist", T::KIND))
}

/// Checks a client-supplied revision against the object's.
pub fn check_revision<T: Stored>(obj: &T, given: Option<u64>) -> ApiResult<()> {
    match given {
        Some(g) if g != obj.revision() => {
            Err(ApiError::stale(T::KIND, obj.id(), g, obj.revision()))
        }
        _ => Ok(()),
    }
}

/// How many times a write re-reads and retries after a concurrent change it can absorb.
pub const MAX_ATTEMPTS: usize = 8;

/// The error after [`MAX_ATTEMPTS`] lost races.
pub fn contended(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RevisionConflict,
        format!("{what}: too many concurrent modifications, retry"),
    )
}
