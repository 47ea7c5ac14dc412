//! Session resumption that survives config rebuilds.
//!
//! Configs are rebuilt for every snapshot, so per-config ticket keys or caches would make
//! every API write (a certificate rotation, a backend added) cost all clients a full
//! handshake. Instead the ticket keys (`rustls::crypto::ring::Ticketer`: ChaCha20-Poly1305,
//! rotated every 6 h, a retired key still accepted for another 6 h) and the session-ID cache
//! (`ServerSessionMemoryCache`, for TLS 1.2 clients without ticket support) are one per
//! process, and each config gets a thin wrapper that:
//! - binds every ticket and cache entry to a resumption context (listener, client-auth mode,
//!   CA bundle), since rustls does not re-check client authentication when resuming: a
//!   ticket from another listener, or from before mTLS was switched on, is not accepted;
//! - stamps the issue time and refuses anything older than `session_timeout_seconds`
//!   (rustls itself does not expire session-ID cache entries). Key rotation caps the real
//!   ticket lifetime at 6-12 h whatever the setting; later clients just do a full handshake.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};

/// Bytes of the resumption context prefix.
const CONTEXT_LEN: usize = 32;
/// Bytes of the issue-time stamp (Unix seconds, big-endian).
const STAMP_LEN: usize = 8;

static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();

/// The session-ID cache and the size it was made with; replaced when the size changes.
static SESSIONS: Mutex<Option<(usize, Arc<ServerSessionMemoryCache>)>> = Mutex::new(None);

/// A ticketer using the process-wide ticket keys, bound to `context`, honouring tickets
/// for `lifetime` seconds.
pub(super) fn ticketer(
    context: [u8; CONTEXT_LEN],
    lifetime: u32,
) -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    let inner = match TICKETER.get() {
        Some(t) => t.clone(),
        // A racing first call may create a second one; the one stored first is used by all.
        None => {
            let fresh = rustls::crypto::ring::Ticketer::new()?;
            TICKETER.get_or_init(|| fresh).clone()
        }
    };
    Ok(Arc::new(BoundTickets {
        inner,
        context,
        lifetime: lifetime.max(1),
    }))
}

/// A session-ID store over the process-wide cache of `size` entries (0 = none), bound to
/// `context`, keeping sessions for `lifetime` seconds.
pub(super) fn session_store(
    size: usize,
    context: [u8; CONTEXT_LEN],
    lifetime: u32,
) -> Arc<dyn StoresServerSessions> {
    if size == 0 {
        return Arc::new(NoServerSessionStorage {});
    }
    let inner = {
        let mut guard = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        match &*guard {
            Some((s, cache)) if *s == size => cache.clone(),
            _ => {
                let cache = ServerSessionMemoryCache::new(size);
                *guard = Some((size, cache.clone()));
                cache
            }
        }
    };
    Arc::new(BoundSessions {
        inner,
        context,
        lifetime: lifetime.max(1),
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `context || issued_at || payload`.
fn seal(context: &[u8; CONTEXT_LEN], issued_at: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT_LEN + STAMP_LEN + payload.len());
    out.extend_from_slice(context);
    out.extend_from_slice(&issued_at.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of `sealed` if it was made for `context` no more than `lifetime` seconds
/// before `now`.
fn open<'a>(
    sealed: &'a [u8],
    context: &[u8; CONTEXT_LEN],
    lifetime: u32,
    now: u64,
) -> Option<&'a [u8]> {
    let (ctx, rest) = sealed.split_at_checked(CONTEXT_LEN)?;
    let (stamp, payload) = rest.split_at_checked(STAMP_LEN)?;
    let issued_at = u64::from_be_bytes(stamp.try_into().ok()?);
    (ctx == context && now.saturating_sub(issued_at) <= u64::from(lifetime)).then_some(payload)
}

struct BoundTickets {
    inner: Arc<dyn ProducesTickets>,
    context: [u8; CONTEXT_LEN],
    lifetime: u32,
}

impl ProducesTickets for BoundTickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    /// The hint sent to clients: never longer than the keys are kept.
    fn lifetime(&self) -> u32 {
        self.lifetime.min(self.inner.lifetime())
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(&seal(&self.context, now_secs(), plain))
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher)?;
        open(&plain, &self.context, self.lifetime, now_secs()).map(<[u8]>::to_vec)
    }
}

impl fmt::Debug for BoundTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundTickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Keys are `context || session id`, so listeners never see (or `take`) each other's
/// entries; values carry the issue time.
struct BoundSessions {
    inner: Arc<ServerSessionMemoryCache>,
    context: [u8; CONTEXT_LEN],
    lifetime: u32,
}

impl BoundSessions {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(CONTEXT_LEN + key.len());
        k.extend_from_slice(&self.context);
        k.extend_from_slice(key);
        k
    }

    fn unwrap_value(&self, sealed: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let sealed = sealed?;
        let (stamp, value) = sealed.split_at_checked(STAMP_LEN)?;
        let issued_at = u64::from_be_bytes(stamp.try_into().ok()?);
        (now_secs().saturating_sub(issued_at) <= u64::from(self.lifetime)).then(|| value.to_vec())
    }
}

impl StoresServerSessions for BoundSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut v = Vec::with_capacity(STAMP_LEN + value.len());
        v.extend_from_slice(&now_secs().to_be_bytes());
        v.extend_from_slice(&value);
        self.inner.put(self.key(&key), v)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.unwrap_value(self.inner.get(&self.key(key)))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.unwrap_value(self.inner.take(&self.key(key)))
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

impl fmt::Debug for BoundSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundSessions")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tickets_are_bound_to_context_and_age() {
        let a = [1u8; CONTEXT_LEN];
        let b = [2u8; CONTEXT_LEN];
        let sealed = seal(&a, 1_000, b"session");
        assert_eq!(open(&sealed, &a, 60, 1_000), Some(&b"session"[..]));
        assert_eq!(open(&sealed, &a, 60, 1_060), Some(&b"session"[..]));
        assert_eq!(open(&sealed, &a, 60, 1_061), None, "expired");
        assert_eq!(open(&sealed, &b, 60, 1_000), None, "other listener");
        assert_eq!(
            open(&sealed[..CONTEXT_LEN + 3], &a, 60, 1_000),
            None,
            "truncated"
        );
        assert_eq!(open(&[], &a, 60, 1_000), None);
    }

    #[test]
    fn tickets_round_trip_only_within_their_context() {
        let t1 = ticketer([7; CONTEXT_LEN], 3600).unwrap();
        let t1_again = ticketer([7; CONTEXT_LEN], 3600).unwrap();
        let t2 = ticketer([8; CONTEXT_LEN], 3600).unwrap();
        let ticket = t1.encrypt(b"state").unwrap();
        assert_eq!(
            t1_again.decrypt(&ticket).as_deref(),
            Some(&b"state"[..]),
            "rebuild"
        );
        assert_eq!(t2.decrypt(&ticket), None);
        assert!(t1.lifetime() <= 3600);
        assert_eq!(ticketer([7; CONTEXT_LEN], 60).unwrap().lifetime(), 60);
    }

    #[test]
    fn session_cache_is_shared_but_partitioned() {
        let s1 = session_store(10_000, [3; CONTEXT_LEN], 3600);
        let s1_again = session_store(10_000, [3; CONTEXT_LEN], 3600);
        let s2 = session_store(10_000, [4; CONTEXT_LEN], 3600);
        assert!(s1.put(b"id".to_vec(), b"v".to_vec()));
        assert_eq!(s2.take(b"id"), None);
        assert_eq!(s1_again.get(b"id").as_deref(), Some(&b"v"[..]));
        assert_eq!(s1.take(b"id").as_deref(), Some(&b"v"[..]));
        assert_eq!(s1.get(b"id"), None);
        assert!(!session_store(0, [3; CONTEXT_LEN], 3600).can_cache());
    }
}
