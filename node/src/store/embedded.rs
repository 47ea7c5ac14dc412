//! [`EmbeddedStore`]: the [`ConfigStore`] of a single node, one redb file under the data dir.
//!
//! Layout: table `kv` maps each key to a record (`record.rs`: revisions + value bytes);
//! table `meta` holds the store-wide `revision` and the record `format`. Both are written in
//! the same redb write transaction, so the revision on disk always matches the data.
//!
//! Every [`ConfigStore::txn`] is one redb write transaction committed with immediate
//! durability (fsync) before the call returns. Commits are serialised by an async mutex
//! that watch subscriptions take too, so a watcher subscribes exactly between two commits:
//! it never misses an event after its start revision and never sees one twice.
//! Watches are live only (no history is kept): starting one at an older revision returns
//! [`StoreError::Compacted`], and the caller reloads with [`ConfigStore::range`].

#[cfg(test)]
mod crash_tests;
mod record;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use fiberlb_api::store::{
    Compare, ConfigStore, KeyValue, Op, StoreError, Txn, WatchEvent, WatchStream,
};
use futures::StreamExt;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::{broadcast, Mutex};
use tokio_stream::wrappers::BroadcastStream;

use record::AtFile;

/// Key → record (`create_revision`, `mod_revision`, value).
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Store metadata: [`META_REVISION`] and [`META_FORMAT`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The store-wide revision of the last committed transaction.
const META_REVISION: &str = "revision";
/// Version of the record format in `kv`, so a future format change is detected, not misread.
const META_FORMAT: &str = "format";
/// The record format this code reads and writes.
const FORMAT_VERSION: u64 = 1;
/// Events buffered per watcher before it lags and is told to reload.
const WATCH_BUFFER: usize = 4096;
/// Page cache of the database; the config store is small.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A [`ConfigStore`] in one redb file, durable across crashes, for a single node.
///
/// Only one process may have the file open; a second open fails with
/// [`StoreError::Unavailable`]. Dropping the store closes the file and ends its watch
/// streams (they hold no reference to the database).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Database,
    path: PathBuf,
    /// Held while a transaction commits and publishes its events, and while a watch checks
    /// its start revision and subscribes: the two never interleave.
    commit: Arc<Mutex<()>>,
    /// Revision of the last committed transaction (authoritative copy in `meta`).
    revision: Arc<AtomicU64>,
    events: broadcast::Sender<WatchEvent>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .finish()
    }
}

impl EmbeddedStore {
    /// The file name callers use under the data directory.
    pub const FILE_NAME: &'static str = "fiberlb.redb";

    /// Opens the store at `path`, creating the file (and its parent directories) if needed.
    ///
    /// The integrity of the whole file is checked on every open (the config store is small),
    /// so a damaged or foreign file is reported as [`StoreError::Corrupted`] instead of being
    /// trusted. A file held by another process gives [`StoreError::Unavailable`].
    /// This does blocking file I/O; call it before serving or from a blocking task.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let db = open_database(path)?;
        let revision = init_tables(&db, path)?;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        tracing::info!(path = %path.display(), revision, "embedded store opened");
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                path: path.to_path_buf(),
                commit: Arc::new(Mutex::new(())),
                revision: Arc::new(AtomicU64::new(revision)),
                events,
            }),
        })
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs blocking redb work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }
}

/// Opens or creates the redb file. A panic inside redb on a damaged file is turned into
/// [`StoreError::Corrupted`]: a bad file must never take the node down.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        builder
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true);
        builder.create(path)
    });
    match opened {
        Ok(result) => result.at_file(path),
        Err(_) => Err(StoreError::Corrupted(format!(
            "{}: database file is damaged",
            path.display()
        ))),
    }
}

/// Creates the tables of a new store, checks the format of an existing one and returns its
/// revision.
fn init_tables(db: &Database, path: &Path) -> Result<u64, StoreError> {
    let wtx = db.begin_write().at_file(path)?;
    let staged = (|| {
        wtx.open_table(KV).at_file(path)?;
        let mut meta = wtx.open_table(META).at_file(path)?;
        let format = meta.get(META_FORMAT).at_file(path)?.map(|g| g.value());
        let revision = meta.get(META_REVISION).at_file(path)?.map(|g| g.value());
        match (format, revision) {
            (Some(FORMAT_VERSION), Some(rev)) => Ok(rev),
            (None, None) => {
                meta.insert(META_FORMAT, FORMAT_VERSION).at_file(path)?;
                meta.insert(META_REVISION, 0).at_file(path)?;
                Ok(0)
            }
            (Some(FORMAT_VERSION), None) | (None, Some(_)) => Err(StoreError::Corrupted(format!(
                "{}: store metadata incomplete (format {format:?}, revision {revision:?})",
                path.display()
            ))),
            (Some(other), _) => Err(StoreError::Unavailable(format!(
                "{}: store format {other} is not supported (this build reads {FORMAT_VERSION})",
                path.display()
            ))),
        }
    })();
    finish(wtx, staged, path)
}

/// Commits `wtx` if staging succeeded, aborts it otherwise.
fn finish<T>(
    wtx: WriteTransaction,
    staged: Result<T, StoreError>,
    path: &Path,
) -> Result<T, StoreError> {
    match staged {
        Ok(v) => {
            wtx.commit().at_file(path)?;
            Ok(v)
        }
        Err(e) => {
            if let Err(abort) = wtx.abort() {
                tracing::warn!(path = %path.display(), error = %abort, "aborting store transaction failed");
            }
            Err(e)
        }
    }
}

/// Checks the compares of `txn` and stages its ops under `revision + 1` in `wtx`.
/// Returns the new revision and the events to publish once committed.
fn stage(
    wtx: &WriteTransaction,
    txn: Txn,
    path: &Path,
) -> Result<(u64, Vec<WatchEvent>), StoreError> {
    let mut kv = wtx.open_table(KV).at_file(path)?;
    let mut meta = wtx.open_table(META).at_file(path)?;
    let current = meta
        .get(META_REVISION)
        .at_file(path)?
        .map(|g| g.value())
        .unwrap_or(0);
    for c in &txn.compares {
        match c {
            Compare::ModRevision { key, revision } => {
                let actual = match kv.get(key.as_str()).at_file(path)? {
                    Some(raw) => record::revisions(path, key, raw.value())?.1,
                    None => 0,
                };
                if actual != *revision {
                    return Err(StoreError::Conflict { key: key.clone() });
                }
            }
        }
    }
    let rev = current + 1;
    let mut events = Vec::with_capacity(txn.ops.len());
    for op in txn.ops {
        match op {
            Op::Put { key, value } => {
                let create_revision = match kv.get(key.as_str()).at_file(path)? {
                    Some(raw) => record::revisions(path, &key, raw.value())?.0,
                    None => rev,
                };
                kv.insert(
                    key.as_str(),
                    record::encode(create_revision, rev, &value).as_slice(),
                )
                .at_file(path)?;
                events.push(WatchEvent::Put(KeyValue {
                    key,
                    value,
                    create_revision,
                    mod_revision: rev,
                }));
            }
            Op::Delete { key } => {
                if kv.remove(key.as_str()).at_file(path)?.is_some() {
                    events.push(WatchEvent::Delete {
                        key,
                        mod_revision: rev,
                    });
                }
            }
        }
    }
    meta.insert(META_REVISION, rev).at_file(path)?;
    Ok((rev, events))
}

/// The key an event is about, for prefix filtering.
fn event_key(event: &WatchEvent) -> &str {
    match event {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

#[async_trait]
impl ConfigStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.blocking(move |s| {
            let path = s.path.as_path();
            let rtx = s.db.begin_read().at_file(path)?;
            let table = rtx.open_table(KV).at_file(path)?;
            let raw = table.get(key.as_str()).at_file(path)?;
            raw.map(|raw| record::decode(path, &key, raw.value()))
                .transpose()
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |s| {
            let path = s.path.as_path();
            let rtx = s.db.begin_read().at_file(path)?;
            let table = rtx.open_table(KV).at_file(path)?;
            let mut out = Vec::new();
            for entry in table.range::<&str>(prefix.as_str()..).at_file(path)? {
                let (key, raw) = entry.at_file(path)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                out.push(record::decode(path, key.value(), raw.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<u64, StoreError> {
        // The guard moves into the blocking task: if this future is dropped, the commit still
        // finishes and publishes its events before the next one starts.
        let guard = Arc::clone(&self.shared.commit).lock_owned().await;
        self.blocking(move |s| {
            let _guard = guard;
            let mut wtx = s.db.begin_write().at_file(&s.path)?;
            wtx.set_durability(Durability::Immediate).at_file(&s.path)?;
            let staged = stage(&wtx, txn, &s.path);
            let (rev, events) = finish(wtx, staged, &s.path)?;
            s.revision.store(rev, Ordering::Release);
            for event in events {
                // No receivers is fine: nobody watches.
                let _ = s.events.send(event);
            }
            Ok(rev)
        })
        .await
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, StoreError> {
        let rx = {
            let _guard = self.shared.commit.lock().await;
            let current = self.shared.revision.load(Ordering::Acquire);
            if after < current {
                return Err(StoreError::Compacted {
                    requested: after,
                    oldest: current,
                });
            }
            self.shared.events.subscribe()
        };
        let prefix = prefix.to_string();
        let revision = Arc::clone(&self.shared.revision);
        // After a lag the watcher has missed events: it gets one Compacted error and the
        // stream ends, so it cannot mistake the events that follow for a complete history.
        let stream = BroadcastStream::new(rx)
            .scan(false, move |lagged, e| {
                let item = match e {
                    _ if *lagged => None,
                    Ok(ev) => Some(
                        event_key(&ev)
                            .starts_with(prefix.as_str())
                            .then_some(Ok(ev)),
                    ),
                    Err(_) => {
                        *lagged = true;
                        let oldest = revision.load(Ordering::Acquire);
                        tracing::warn!(
                            after,
                            oldest,
                            "embedded store watcher lagged; it must reload"
                        );
                        Some(Some(Err(StoreError::Compacted {
                            requested: after,
                            oldest,
                        })))
                    }
                };
                std::future::ready(item)
            })
            .filter_map(std::future::ready);
        Ok(Box::pin(stream))
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}
