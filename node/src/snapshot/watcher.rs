//! Keeps the published snapshot in step with the store.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use fiberlb_api::store::{ConfigStore, StoreError};
use futures::StreamExt;
use tokio::sync::watch;

use super::{build, Snapshot};
use crate::state::RuntimeState;

/// Changes arriving within this window are folded into one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Wait between attempts while the store is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// The current snapshot plus a change signal (the revision) for those who must react to
/// changes, such as the listener manager.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    changed: watch::Sender<u64>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl SnapshotCell {
    /// The snapshot to use for one connection or request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, s: Snapshot) {
        let rev = s.revision;
        self.current.store(Arc::new(s));
        self.changed.send_replace(rev);
    }

    /// A receiver that wakes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Loads everything, publishes, then follows the store's watch, rebuilding on each change;
/// reloads from scratch whenever the watch breaks. Returns when `stop` turns true.
/// `store_up` is told whether the store answers.
pub async fn watch_store(
    store: Arc<dyn ConfigStore>,
    cell: Arc<SnapshotCell>,
    state: Arc<RuntimeState>,
    store_up: impl Fn(bool) + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let round = async {
            // Subscribe first, then read: a commit in between shows up in the stream.
            let rev = store.revision().await?;
            let mut events = store.watch(fiberlb_api::keys::ROOT, rev).await?;
            let kvs = store.range(fiberlb_api::keys::ROOT).await?;
            let mut current = rev;
            cell.publish(build(current, &kvs, &state));
            store_up(true);
            tracing::debug!(revision = current, "configuration snapshot loaded");
            while let Some(ev) = events.next().await {
                ev?;
                // Let a burst of commits settle, then rebuild once from the store.
                tokio::time::sleep(DEBOUNCE).await;
                while let Some(Some(ev)) = futures::FutureExt::now_or_never(events.next()) {
                    ev?;
                }
                current = store.revision().await?;
                let kvs = store.range(fiberlb_api::keys::ROOT).await?;
                cell.publish(build(current, &kvs, &state));
                tracing::debug!(revision = current, "configuration snapshot rebuilt");
            }
            Err::<(), StoreError>(StoreError::Unavailable("watch stream ended".into()))
        };
        tokio::select! {
            res = round => {
                if let Err(e) = res {
                    if let StoreError::Compacted { .. } = e {
                        // A commit slipped between subscribing and reading: start over now.
                        tracing::debug!("watch restarted: {e}");
                        continue;
                    }
                    store_up(false);
                    tracing::warn!(error = %e, "configuration watch failed; serving the last snapshot");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
