//! Carries [`StateUpdate`]s as foca custom broadcasts.

use std::sync::{Arc, Mutex, MutexGuard};

use foca::{BroadcastHandler, Invalidates};

use crate::identity::Identity;
use crate::state::{EntryKey, ReplicatedState, StateUpdate};

/// The merged state plus a flag telling the driver to republish its view.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: ReplicatedState,
    pub(crate) dirty: bool,
}

/// Locks the shared state; a poisoned lock still holds consistent data (every mutation
/// is a single map operation), so it is recovered rather than propagated as a panic.
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Identifies a broadcast so a newer version of the same slot replaces an older one
/// still waiting in foca's queue.
#[derive(Debug, Clone)]
pub(crate) struct UpdateKey {
    origin: String,
    key: EntryKey,
    version: u64,
}

impl Invalidates for UpdateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.origin == other.origin && self.key == other.key && self.version >= other.version
    }
}

/// A broadcast item that did not decode or broke the size limits.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BroadcastError {
    #[error("undecodable state update: {0}")]
    Decode(#[from] postcard::Error),
    #[error("state update has trailing bytes")]
    Trailing,
    #[error("state update exceeds size limits")]
    Unbounded,
}

/// foca's hook for custom broadcasts: merges what is new and asks foca to relay it.
pub(crate) struct StateHandler {
    pub(crate) shared: Arc<Mutex<Shared>>,
    /// Our node id: our own entries are authoritative locally and never taken from peers.
    pub(crate) self_id: String,
}

impl BroadcastHandler<Identity> for StateHandler {
    type Key = UpdateKey;
    type Error = BroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Identity>,
    ) -> Result<Option<UpdateKey>, BroadcastError> {
        let (update, rest): (StateUpdate, _) = postcard::take_from_bytes(data)?;
        if !rest.is_empty() {
            return Err(BroadcastError::Trailing);
        }
        if !update.is_bounded() {
            return Err(BroadcastError::Unbounded);
        }
        let key = UpdateKey {
            origin: update.origin.clone(),
            key: update.entry.key(),
            version: update.version,
        };
        if sender.is_none() {
            // Added locally by the core, which already merged it.
            return Ok(Some(key));
        }
        if update.origin == self.self_id {
            return Ok(None);
        }
        let mut shared = lock(&self.shared);
        if shared.state.merge(update) {
            shared.dirty = true;
            Ok(Some(key))
        } else {
            Ok(None)
        }
    }
}
