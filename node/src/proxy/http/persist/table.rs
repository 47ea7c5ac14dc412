//! A bounded, sharded map from a 128-bit key to a backend id with an expiry time.
//!
//! Shards keep lock hold times short and contention low: each request touches one shard's
//! mutex for a hash-map probe. The bound is split evenly over the shards; a full shard first
//! drops its expired entries (at most once per [`SWEEP_EVERY`], so a flood of new clients
//! cannot make every insert scan the shard), then evicts the entry expiring soonest among a
//! few sampled ones, an approximation of least-recently-used that costs O(1).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Shards at most (fewer when the bound is smaller).
const SHARDS: usize = 16;
/// Minimum time between two sweeps of expired entries in one shard.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Entries sampled to choose a victim when a shard is full of live entries.
const EVICTION_SAMPLE: usize = 8;

#[derive(Debug)]
struct Entry {
    backend: Arc<str>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u128, Entry>,
    last_sweep: Option<Instant>,
}

/// See the module documentation.
#[derive(Debug)]
pub(super) struct TtlTable {
    shards: Box<[Mutex<Shard>]>,
    shard_cap: usize,
    hasher: RandomState,
}

impl TtlTable {
    /// A table holding at most `max_entries` entries (at least one).
    pub(super) fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let n = SHARDS.min(max_entries);
        TtlTable {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            shard_cap: max_entries / n,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: u128) -> MutexGuard<'_, Shard> {
        // `shards` is never empty (see `new`), and the modulo keeps the index in range.
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A panic while holding the lock cannot leave a hash map half-updated in a way that
        // matters here, so a poisoned lock is simply taken over.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the backend id stored under `key` if it has not expired at `now`; an
    /// expired entry is removed.
    pub(super) fn with<R>(&self, key: u128, now: Instant, f: impl FnOnce(&str) -> R) -> Option<R> {
        let mut shard = self.shard(key);
        match shard.map.get(&key) {
            Some(e) if e.expires > now => return Some(f(&e.backend)),
            Some(_) => {
                shard.map.remove(&key);
            }
            None => {}
        }
        None
    }

    /// Stores (or refreshes) `key` → `backend` until `expires`.
    pub(super) fn put(&self, key: u128, backend: &Arc<str>, expires: Instant, now: Instant) {
        let mut shard = self.shard(key);
        if let Some(e) = shard.map.get_mut(&key) {
            if *e.backend != **backend {
                e.backend = backend.clone();
            }
            e.expires = expires;
            return;
        }
        if shard.map.len() >= self.shard_cap {
            if shard
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                shard.map.retain(|_, e| e.expires > now);
                shard.last_sweep = Some(now);
            }
            while shard.map.len() >= self.shard_cap {
                let victim = shard
                    .map
                    .iter()
                    .take(EVICTION_SAMPLE)
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| *k);
                match victim {
                    Some(k) => shard.map.remove(&k),
                    None => break,
                };
            }
        }
        shard.map.insert(
            key,
            Entry {
                backend: backend.clone(),
                expires,
            },
        );
    }

    /// Forgets `key`.
    pub(super) fn remove(&self, key: u128) {
        self.shard(key).map.remove(&key);
    }

    /// Entries held, expired ones not yet dropped included.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn bound_holds_and_expired_go_first() {
        let t = TtlTable::new(64);
        let now = Instant::now();
        let b: Arc<str> = "b".into();
        for k in 0..10_000u128 {
            t.put(k, &b, now + Duration::from_secs(60), now);
            assert!(t.len() <= 64);
        }
        assert!(t.len() <= 64);
        // Expired entries are not returned and are removed on access.
        let t = TtlTable::new(4);
        t.put(1, &b, now + Duration::from_secs(1), now);
        assert_eq!(t.with(1, now, str::len), Some(1));
        assert_eq!(t.with(1, now + Duration::from_secs(1), str::len), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn tiny_bounds() {
        let now = Instant::now();
        let b: Arc<str> = "b".into();
        for max in [0, 1, 2, 17] {
            let t = TtlTable::new(max);
            for k in 0..100u128 {
                t.put(k, &b, now + Duration::from_secs(5), now);
            }
            assert!(t.len() <= max.max(1), "max {max}: {}", t.len());
            assert!(t.len() >= 1);
        }
    }
}
