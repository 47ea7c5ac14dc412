//! Removes backends whose `RemoveBackend(drain_first)` deadline has passed. Every node runs
//! it periodically; the delete is a compare-and-swap, so nodes racing on one backend
//! remove it once.

use super::index;
use crate::error::ApiResult;
use crate::model::{now_ms, Backend};
use crate::repo::{decode, Repo};
use crate::store::Txn;

/// Deletes every backend marked `remove_after_drain` whose drain deadline is past;
/// returns how many this call removed.
pub async fn reap_drained_backends(repo: &Repo) -> ApiResult<usize> {
    let now = now_ms();
    let mut removed = 0;
    for kv in repo.store().range("fiberlb/backends/").await? {
        // Object keys are `fiberlb/backends/{id}`; index keys have more segments.
        if kv.key["fiberlb/backends/".len()..].contains('/') {
            continue;
        }
        let b: Backend = decode(&kv)?;
        if b.remove_after_drain && b.drain_deadline.is_some_and(|d| d <= now) {
            let txn = index::touch(index::delete(Txn::new(), &b), &b.pool_id);
            if repo.commit(txn).await?.is_some() {
                tracing::info!(backend = %b.id, pool = %b.pool_id, "drained backend removed");
                removed += 1;
            }
        }
    }
    Ok(removed)
}
