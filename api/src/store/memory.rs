//! An in-memory [`ConfigStore`] for unit tests: same semantics, no durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{Compare, ConfigStore, KeyValue, Op, StoreError, Txn, WatchEvent, WatchStream};

/// A [`ConfigStore`] kept in a `BTreeMap` behind a mutex.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    events: broadcast::Sender<WatchEvent>,
}

#[derive(Default)]
struct Inner {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner::default()),
            events,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store poisoned".into()))
    }
}

/// Applies `txn` to a map under `revision + 1`; shared with tests of other stores' semantics.
pub(crate) fn check_compares(
    txn: &Txn,
    current: impl Fn(&str) -> Option<u64>,
) -> Result<(), StoreError> {
    for c in &txn.compares {
        match c {
            Compare::ModRevision { key, revision } => {
                let actual = current(key).unwrap_or(0);
                if actual != *revision {
                    return Err(StoreError::Conflict { key: key.clone() });
                }
            }
        }
    }
    Ok(())
}

#[async_trait]
impl ConfigStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock()?.kv.get(key).cloned())
    }

    async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn txn(&self, txn: Txn) -> Result<u64, StoreError> {
        let mut inner = self.lock()?;
        check_compares(&txn, |k| inner.kv.get(k).map(|kv| kv.mod_revision))?;
        let rev = inner.revision + 1;
        let mut events = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            match op {
                Op::Put { key, value } => {
                    let create_revision = inner
                        .kv
                        .get(&key)
                        .map(|kv| kv.create_revision)
                        .unwrap_or(rev);
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision,
                        mod_revision: rev,
                    };
                    events.push(WatchEvent::Put(kv.clone()));
                    inner.kv.insert(key, kv);
                }
                Op::Delete { key } => {
                    if inner.kv.remove(&key).is_some() {
                        events.push(WatchEvent::Delete {
                            key,
                            mod_revision: rev,
                        });
                    }
                }
            }
        }
        inner.revision = rev;
        for e in events {
            // No receivers is fine: nobody watches.
            let _ = self.events.send(e);
        }
        Ok(rev)
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.revision)
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, StoreError> {
        let inner = self.lock()?;
        if after < inner.revision {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: inner.revision,
            });
        }
        // Subscribing while holding the lock: no commit can slip between check and subscribe.
        let rx = self.events.subscribe();
        drop(inner);
        let prefix = prefix.to_string();
        let stream = BroadcastStream::new(rx).filter_map(move |e| {
            let prefix = prefix.clone();
            async move {
                match e {
                    Ok(ev) => {
                        let key = match &ev {
                            WatchEvent::Put(kv) => &kv.key,
                            WatchEvent::Delete { key, .. } => key,
                        };
                        key.starts_with(&prefix).then_some(Ok(ev))
                    }
                    Err(_lagged) => Some(Err(StoreError::Compacted {
                        requested: after,
                        oldest: after + 1,
                    })),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
