//! Contract tests every [`ConfigStore`] must pass; other crates call [`contract`] on theirs.

use super::MemoryStore;

#[tokio::test]
async fn memory_store_passes_contract() {
    super::contract::run_all(&MemoryStore::new()).await;
}
