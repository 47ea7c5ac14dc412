//! Per-thread caches of metric handles by label set, so a connection or request costs no
//! label allocation and no registry lookup: one hash of its label values and a probe of a
//! map no other thread touches.
//!
//! Why per thread: the data plane runs one worker per core, and a shared map cost two
//! contended atomic operations per lookup (shard lock) plus the shared `Arc`'s count. The
//! handles point at the process-wide registry's series, so every thread adds to the same
//! counters. Why a 128-bit hash as the key instead of the label strings: the strings would
//! have to be compared (or copied into the key) on every lookup; two label sets meeting on
//! 128 bits is as likely as a hardware error.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::FixedState;

/// Label sets one thread keeps; the map is cleared wholesale if configuration churn ever
/// makes it this large (handles are cheap to register again).
const MAX_ENTRIES: usize = 10_000;

/// The cache key of a label set: `values` hashed with two independent seeds.
pub fn key(values: impl Hash + Copy) -> u128 {
    let h = |seed: u64| FixedState::with_seed(seed).hash_one(values);
    (u128::from(h(0x9e37_79b9_7f4a_7c15)) << 64) | u128::from(h(0xc2b2_ae3d_27d4_eb4f))
}

/// One thread's cache of handle sets `T` (use inside `thread_local!`).
pub struct LabelCache<T> {
    map: RefCell<HashMap<u128, Arc<T>, FixedState>>,
}

impl<T> Default for LabelCache<T> {
    fn default() -> Self {
        LabelCache {
            map: RefCell::new(HashMap::with_hasher(FixedState::with_seed(0))),
        }
    }
}

impl<T> LabelCache<T> {
    /// The handles for `key`, registered with `make` the first time this thread sees it.
    pub fn get(&self, key: u128, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(m) = self.map.borrow().get(&key) {
            return m.clone();
        }
        // Registered outside the borrow: `make` calls into the metrics recorder.
        let m = Arc::new(make());
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, m.clone());
        m
    }

    /// Label sets held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.map.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_labels_share_handles_and_different_ones_do_not() {
        let cache = LabelCache::<u32>::default();
        let mut made = 0;
        let a = cache.get(key(("lb", "l1", "b1", 200u16)), || {
            made += 1;
            1
        });
        let b = cache.get(key(("lb", "l1", "b1", 200u16)), || {
            made += 1;
            2
        });
        assert!(Arc::ptr_eq(&a, &b));
        // Moving a byte between values changes the key (tuples hash their lengths).
        let c = cache.get(key(("lb", "l1b", "1", 200u16)), || {
            made += 1;
            3
        });
        let d = cache.get(key(("lb", "l1", "b1", 503u16)), || {
            made += 1;
            4
        });
        assert_eq!((*c, *d, made, cache.held()), (3, 4, 3, 3));
    }

    #[test]
    fn churn_clears_instead_of_growing() {
        let cache = LabelCache::<usize>::default();
        for i in 0..MAX_ENTRIES + 5 {
            cache.get(key(("lb", i)), || i);
        }
        assert!(cache.held() <= MAX_ENTRIES);
        assert_eq!(cache.held(), 5);
    }
}
