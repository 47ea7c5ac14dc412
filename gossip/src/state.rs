//! Replicated runtime state: last writer wins per (origin node, key) by version.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// Longest backend id accepted, so one entry always fits a broadcast item.
pub const MAX_BACKEND_ID_LEN: usize = 256;
/// Longest node id accepted on the wire.
pub const MAX_NODE_ID_LEN: usize = 128;

/// One piece of runtime state a node observed about a backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// The observer's latest active-check verdict, published while it is one of the
    /// backend's probers (passive health travels as [`Entry::Ejection`]).
    Health {
        /// Backend id.
        backend_id: String,
        /// The verdict.
        healthy: bool,
        /// When the observer decided, Unix milliseconds (its clock; informational).
        observed_at_ms: u64,
    },
    /// The observer's circuit-breaker state for a backend (closed/open/half-open as u8).
    Circuit {
        /// Backend id.
        backend_id: String,
        /// Breaker state as encoded by the node.
        state: u8,
    },
    /// The observer's count of active connections to a backend.
    Connections {
        /// Backend id.
        backend_id: String,
        /// Current count.
        count: u64,
    },
    /// Whether the observer's passive health (failures of its own traffic) ejects the
    /// backend. Appended last so the postcard tags of the other variants stay put.
    Ejection {
        /// Backend id.
        backend_id: String,
        /// Ejected now.
        ejected: bool,
    },
}

/// What an [`Entry`] replaces: one slot per kind per backend per origin.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntryKey {
    /// [`Entry::Health`].
    Health(String),
    /// [`Entry::Circuit`].
    Circuit(String),
    /// [`Entry::Connections`].
    Connections(String),
    /// [`Entry::Ejection`].
    Ejection(String),
}

impl Entry {
    /// The slot this entry occupies.
    pub fn key(&self) -> EntryKey {
        match self {
            Self::Health { backend_id, .. } => EntryKey::Health(backend_id.clone()),
            Self::Circuit { backend_id, .. } => EntryKey::Circuit(backend_id.clone()),
            Self::Connections { backend_id, .. } => EntryKey::Connections(backend_id.clone()),
            Self::Ejection { backend_id, .. } => EntryKey::Ejection(backend_id.clone()),
        }
    }

    /// The backend the entry is about.
    pub fn backend_id(&self) -> &str {
        match self {
            Self::Health { backend_id, .. }
            | Self::Circuit { backend_id, .. }
            | Self::Connections { backend_id, .. }
            | Self::Ejection { backend_id, .. } => backend_id,
        }
    }
}

/// One versioned entry as it travels in a custom broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Node id of the node that observed it.
    pub origin: String,
    /// Origin-local version; larger wins.
    pub version: u64,
    /// The observation.
    pub entry: Entry,
}

impl StateUpdate {
    /// Whether the update respects the size limits (checked on publish and on receipt).
    pub fn is_bounded(&self) -> bool {
        !self.origin.is_empty()
            && self.origin.len() <= MAX_NODE_ID_LEN
            && self.entry.backend_id().len() <= MAX_BACKEND_ID_LEN
    }
}

/// The merged view of every member's entries.
#[derive(Debug, Default)]
pub struct ReplicatedState {
    entries: BTreeMap<(String, EntryKey), (u64, Entry)>,
    /// Origins declared down: their entries are gone and late relays of them are refused
    /// until the node is seen alive again.
    down: HashSet<String>,
}

impl ReplicatedState {
    /// Applies an update; true when it changed the view (newer than what we had).
    pub fn merge(&mut self, update: StateUpdate) -> bool {
        if self.down.contains(&update.origin) || !update.is_bounded() {
            return false;
        }
        let slot = (update.origin, update.entry.key());
        match self.entries.get(&slot) {
            Some((version, _)) if *version >= update.version => false,
            _ => {
                self.entries.insert(slot, (update.version, update.entry));
                true
            }
        }
    }

    /// Whether `update` would change the view, without applying it.
    pub fn is_newer(&self, update: &StateUpdate) -> bool {
        !self.down.contains(&update.origin)
            && self
                .entries
                .get(&(update.origin.clone(), update.entry.key()))
                .is_none_or(|(v, _)| *v < update.version)
    }

    /// A member was declared down: drop its entries (they describe connections and
    /// probes that no longer exist). Returns whether anything was removed.
    pub fn expire_origin(&mut self, origin: &str) -> bool {
        self.down.insert(origin.to_owned());
        let before = self.entries.len();
        self.entries.retain(|(o, _), _| o != origin);
        before != self.entries.len()
    }

    /// A member (re)joined: accept its entries again.
    pub fn revive_origin(&mut self, origin: &str) {
        self.down.remove(origin);
    }

    /// Every entry with its origin, ordered by origin then key.
    pub fn snapshot(&self) -> Vec<(String, Entry)> {
        self.entries
            .iter()
            .map(|((origin, _), (_, entry))| (origin.clone(), entry.clone()))
            .collect()
    }

    /// The entries of one origin with their versions (for periodic re-broadcast).
    pub fn of_origin(&self, origin: &str) -> Vec<StateUpdate> {
        self.entries
            .iter()
            .filter(|((o, _), _)| o == origin)
            .map(|((o, _), (version, entry))| StateUpdate {
                origin: o.clone(),
                version: *version,
                entry: entry.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(origin: &str, version: u64, healthy: bool) -> StateUpdate {
        StateUpdate {
            origin: origin.into(),
            version,
            entry: Entry::Health {
                backend_id: "b1".into(),
                healthy,
                observed_at_ms: version,
            },
        }
    }

    #[test]
    fn newer_version_wins_per_origin_and_key() {
        let mut s = ReplicatedState::default();
        assert!(s.merge(health("a", 5, true)));
        assert!(!s.merge(health("a", 4, false)), "older loses");
        assert!(!s.merge(health("a", 5, false)), "equal loses");
        assert!(
            s.merge(health("b", 1, false)),
            "other origin is its own slot"
        );
        assert!(s.is_newer(&health("a", 6, false)));
        assert!(s.merge(health("a", 6, false)));
        let conns = StateUpdate {
            origin: "a".into(),
            version: 2,
            entry: Entry::Connections {
                backend_id: "b1".into(),
                count: 3,
            },
        };
        assert!(s.merge(conns), "other kind is its own slot");
        let ejection = StateUpdate {
            origin: "a".into(),
            version: 3,
            entry: Entry::Ejection {
                backend_id: "b1".into(),
                ejected: true,
            },
        };
        assert!(s.merge(ejection), "ejections are their own slot too");
        let snap = s.snapshot();
        assert_eq!(snap.len(), 4);
        assert!(snap.contains(&(
            "a".into(),
            Entry::Health {
                backend_id: "b1".into(),
                healthy: false,
                observed_at_ms: 6
            }
        )));
    }

    #[test]
    fn entries_of_dead_member_expire_until_it_returns() {
        let mut s = ReplicatedState::default();
        s.merge(health("a", 1, true));
        s.merge(health("b", 1, true));
        assert!(s.expire_origin("a"));
        assert_eq!(s.snapshot().len(), 1);
        assert!(!s.merge(health("a", 9, true)), "late relay refused");
        s.revive_origin("a");
        assert!(s.merge(health("a", 10, true)));
        assert_eq!(s.of_origin("a").len(), 1);
    }

    #[test]
    fn oversized_updates_refused() {
        let mut s = ReplicatedState::default();
        let mut u = health("a", 1, true);
        u.entry = Entry::Circuit {
            backend_id: "x".repeat(MAX_BACKEND_ID_LEN + 1),
            state: 1,
        };
        assert!(!s.merge(u));
        assert!(!s.merge(health("", 1, true)));
    }
}
