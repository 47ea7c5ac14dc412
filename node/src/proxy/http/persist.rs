//! Session persistence ("sticky sessions") of a pool: `SourceIp`, `Cookie` and `AppCookie`
//! (spec §3.4).
//!
//! The proxy asks [`Sticky::lookup`] before balancing; a pin is honoured only while its
//! backend is eligible, so a backend that turns unhealthy, is disabled or drains loses its
//! clients to the balancer instead of keeping them. After the choice, [`Sticky::on_chosen`]
//! records it (and, in cookie mode, says which `Set-Cookie` to add to the response);
//! [`Sticky::on_response`] learns application cookies.
//!
//! - **Cookie** is stateless: the LB-inserted cookie's value is a token derived from the
//!   backend id with a fixed-key hash, so every fleet node (and every restart) maps it to
//!   the same backend, and the cookie never reveals a backend address.
//! - **SourceIp** and **AppCookie** keep a table *per node*: client IP (or application
//!   cookie value) → backend id, with a sliding TTL (refreshed by each request) and a bound
//!   on its size; expired entries are dropped and, when full, the entry closest to expiry
//!   among a few sampled is evicted. A client that moves to another fleet node is balanced
//!   afresh there (use the `Maglev`/`IpHash` algorithms for fleet-wide IP affinity).
//!
//! A `Sticky` is meant to live as long as its pool, across configuration snapshots: it
//! stores backend ids, never indexes, and resolves them against the plan it is given.

mod cookie;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use fiberlb_api::model::{PersistenceMode, SessionPersistence};
use http::HeaderValue;

use crate::balance::stable_hash;
use crate::snapshot::PoolPlan;
use cookie::SetCookie;
use table::TtlTable;

/// Cookie name of `Cookie` mode when the pool names none.
pub const DEFAULT_COOKIE_NAME: &str = "FIBERLB_SRV";
/// Lifetime of `SourceIp` / `AppCookie` entries when the pool's `ttl_seconds` is 0 (for
/// `Cookie` mode, 0 means a browser-session cookie instead).
pub const DEFAULT_TABLE_TTL: Duration = Duration::from_secs(3600);
/// A reasonable table bound per pool: about 4 MiB at most.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// Keys of the fixed-key hash that turns a backend id into its cookie token. Changing them
/// re-pins every cookie client once (an unknown token is just balanced afresh).
const TOKEN_KEYS: (u64, u64) = (0x6669_6265_726c_6231, 0x7374_6963_6b79_2d31);
/// Backend ids remembered for token lookups before the cache starts over.
const TOKEN_CACHE_MAX: usize = 16_384;

/// Token → backend id for every backend seen, so a cookie lookup costs one hash-map probe
/// instead of hashing every backend id of the pool.
#[derive(Debug, Default)]
struct TokenCache {
    by_token: HashMap<u128, Arc<str>>,
    known: HashSet<Arc<str>>,
}

/// The persistence state of one pool. See the module documentation.
#[derive(Debug)]
pub struct Sticky {
    table: TtlTable,
    tokens: ArcSwap<TokenCache>,
    /// Per-node random keys hashing application cookie values into table keys: values of
    /// any length take 16 bytes, and clients cannot aim collisions at other sessions.
    app_keys: (RandomState, RandomState),
}

impl Sticky {
    /// A persistence state whose `SourceIp`/`AppCookie` table holds at most `max_entries`.
    pub fn new(max_entries: usize) -> Self {
        Sticky {
            table: TtlTable::new(max_entries),
            tokens: ArcSwap::from_pointee(TokenCache::default()),
            app_keys: (RandomState::new(), RandomState::new()),
        }
    }

    /// The backend `req` is pinned to, if that backend is still usable (`eligible[i]`). A
    /// pinned backend that is not eligible is not returned: the caller balances, and
    /// [`Sticky::on_chosen`] then re-pins the client.
    pub fn lookup(
        &self,
        plan: &PoolPlan,
        eligible: &[bool],
        req: &http::request::Parts,
        client_ip: IpAddr,
        now: Instant,
    ) -> Option<usize> {
        let settings = active(plan)?;
        let index = match settings.mode {
            PersistenceMode::None => None,
            PersistenceMode::SourceIp => self
                .table
                .with(ip_key(client_ip), now, |id| index_of(plan, id))?,
            PersistenceMode::Cookie => {
                let value = cookie::request_cookie(&req.headers, cookie_name(settings))?;
                self.index_for_token(plan, parse_token(value)?)
            }
            PersistenceMode::AppCookie => {
                let value = cookie::request_cookie(&req.headers, settings.cookie_name.as_deref()?)?;
                self.table
                    .with(self.app_key(value), now, |id| index_of(plan, id))?
            }
        }?;
        eligible
            .get(index)
            .copied()
            .unwrap_or(false)
            .then_some(index)
    }

    /// Records that backend `index` serves this request. Returns the `Set-Cookie` to add to
    /// the response in `Cookie` mode when the client does not already hold the right one
    /// (`name=token; Path=/; HttpOnly`, plus `Max-Age` when the TTL is set and `Secure` on
    /// HTTPS listeners).
    pub fn on_chosen(
        &self,
        plan: &PoolPlan,
        index: usize,
        req: &http::request::Parts,
        client_ip: IpAddr,
        https: bool,
        now: Instant,
    ) -> Option<HeaderValue> {
        let settings = active(plan)?;
        let id = &plan.endpoints.get(index)?.id;
        match settings.mode {
            PersistenceMode::None => None,
            PersistenceMode::SourceIp => {
                self.table
                    .put(ip_key(client_ip), id, now + table_ttl(settings), now);
                None
            }
            PersistenceMode::Cookie => {
                let name = cookie_name(settings);
                let token = token_of(id);
                let held = cookie::request_cookie(&req.headers, name).and_then(parse_token);
                if held == Some(token) {
                    return None;
                }
                set_cookie(name, token, settings.ttl_seconds, https)
            }
            PersistenceMode::AppCookie => {
                // Follow the session to wherever it is served now: if its backend went away
                // and the new one accepts the session, the client stays there.
                if let Some(value) =
                    cookie::request_cookie(&req.headers, settings.cookie_name.as_deref()?)
                {
                    self.table
                        .put(self.app_key(value), id, now + table_ttl(settings), now);
                }
                None
            }
        }
    }

    /// `AppCookie` mode: learns the application's cookie from the response of backend
    /// `index`; a deleted cookie (`Max-Age` ≤ 0) is forgotten.
    pub fn on_response(
        &self,
        plan: &PoolPlan,
        index: usize,
        resp: &http::response::Parts,
        now: Instant,
    ) {
        let Some(settings) = active(plan).filter(|s| s.mode == PersistenceMode::AppCookie) else {
            return;
        };
        let (Some(name), Some(endpoint)) =
            (settings.cookie_name.as_deref(), plan.endpoints.get(index))
        else {
            return;
        };
        for c in cookie::response_cookies(&resp.headers, name) {
            match c {
                SetCookie::Set(value) => {
                    self.table.put(
                        self.app_key(value),
                        &endpoint.id,
                        now + table_ttl(settings),
                        now,
                    );
                }
                SetCookie::Cleared(value) if !value.is_empty() => {
                    self.table.remove(self.app_key(value))
                }
                SetCookie::Cleared(_) => {}
            }
        }
    }

    /// Entries in the per-node table (`SourceIp` / `AppCookie`), expired ones not yet
    /// dropped included; for metrics and tests.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    fn app_key(&self, value: &[u8]) -> u128 {
        (u128::from(self.app_keys.0.hash_one(value)) << 64)
            | u128::from(self.app_keys.1.hash_one(value))
    }

    /// The index in `plan` of the backend whose token is `token`.
    fn index_for_token(&self, plan: &PoolPlan, token: u128) -> Option<usize> {
        let cache = self.tokens.load();
        if let Some(id) = cache.by_token.get(&token) {
            return index_of(plan, id);
        }
        // Unknown token: either a backend not hashed yet (new in this plan) or a stale or
        // forged cookie. Only hash the backends the cache does not know.
        if plan.endpoints.iter().all(|e| cache.known.contains(&e.id)) {
            return None;
        }
        let mut next = if cache.known.len() + plan.endpoints.len() > TOKEN_CACHE_MAX {
            TokenCache::default()
        } else {
            TokenCache {
                by_token: cache.by_token.clone(),
                known: cache.known.clone(),
            }
        };
        for e in &plan.endpoints {
            if next.known.insert(e.id.clone()) {
                next.by_token.insert(token_of(&e.id), e.id.clone());
            }
        }
        let found = next.by_token.get(&token).and_then(|id| index_of(plan, id));
        self.tokens.store(Arc::new(next));
        found
    }
}

/// The pool's persistence settings, unless persistence is off.
fn active(plan: &PoolPlan) -> Option<&SessionPersistence> {
    plan.pool
        .session_persistence
        .as_ref()
        .filter(|s| s.mode != PersistenceMode::None)
}

fn cookie_name(s: &SessionPersistence) -> &str {
    s.cookie_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_COOKIE_NAME)
}

fn table_ttl(s: &SessionPersistence) -> Duration {
    match s.ttl_seconds {
        0 => DEFAULT_TABLE_TTL,
        n => Duration::from_secs(u64::from(n)),
    }
}

/// Table key of a client address; an IPv4 client is the same key whether it arrived on an
/// IPv4 or a dual-stack socket.
fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Where backend `id` sits in `plan` (backends are sorted by id; a linear scan covers a
/// plan that is not).
fn index_of(plan: &PoolPlan, id: &str) -> Option<usize> {
    match plan.endpoints.binary_search_by(|e| (*e.id).cmp(id)) {
        Ok(i) => Some(i),
        Err(_) => plan.endpoints.iter().position(|e| *e.id == *id),
    }
}

/// The cookie token of a backend: a stable 128-bit keyed hash of its id.
pub fn token_of(backend_id: &str) -> u128 {
    let (k1, k2) = TOKEN_KEYS;
    (u128::from(stable_hash(k1, backend_id.as_bytes())) << 64)
        | u128::from(stable_hash(k2, backend_id.as_bytes()))
}

/// A token as written in the cookie: 32 hex digits.
fn parse_token(value: &[u8]) -> Option<u128> {
    if value.len() != 32 {
        return None;
    }
    let s = std::str::from_utf8(value).ok()?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None; // from_str_radix would accept a leading `+`
    }
    u128::from_str_radix(s, 16).ok()
}

fn set_cookie(name: &str, token: u128, ttl_seconds: u32, https: bool) -> Option<HeaderValue> {
    let mut v = format!("{name}={token:032x}; Path=/; HttpOnly");
    if ttl_seconds > 0 {
        let _ = write!(v, "; Max-Age={ttl_seconds}");
    }
    if https {
        v.push_str("; Secure");
    }
    match HeaderValue::try_from(v) {
        Ok(h) => Some(h),
        Err(_) => {
            // The API only accepts token characters in cookie names; an older object may not.
            tracing::warn!(cookie = %name, "persistence cookie name is not usable in a header");
            None
        }
    }
}
