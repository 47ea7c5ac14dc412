//! Authentication (bearer tokens and API keys, stored hashed) and authorization (action
//! patterns of spec §5.3 on org / org+project scopes), plus the audit log.
//!
//! Objects outside a principal's scope are reported as not found, never as denied, so a
//! tenant learns nothing about another tenant's objects.

mod token;

pub use token::{bootstrap_admin, hash_secret, new_secret, BootstrapOutcome};

use tonic::metadata::MetadataMap;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::{now_ms, AccessToken, Scope, TokenScope};
use crate::repo::Repo;

/// Who is calling, resolved from a credential.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The credential's id.
    pub token_id: String,
    /// The principal id the credential names.
    pub principal: String,
    /// Reach.
    pub scope: TokenScope,
    /// Allowed action patterns.
    pub actions: Vec<String>,
}

impl Principal {
    /// Whether an action such as `fiberlb:pools:delete` matches one of the patterns.
    pub fn may(&self, action: &str) -> bool {
        self.actions.iter().any(|p| pattern_matches(p, action))
    }

    /// Whether an object of `scope` is visible. Project principals also read org-level
    /// objects of their org (those are shared across projects, spec §5.1), but cannot change them.
    pub fn sees(&self, scope: &Scope, read_only: bool) -> bool {
        match &self.scope {
            TokenScope::System => true,
            TokenScope::Org { org_id } => &scope.org_id == org_id,
            TokenScope::Project { org_id, project_id } => {
                &scope.org_id == org_id
                    && match &scope.project_id {
                        Some(p) => p == project_id,
                        None => read_only,
                    }
            }
        }
    }

    /// Authorizes an action on an existing object: out of scope → `not_found`, in scope but
    /// the action is not granted → ACCESS_DENIED.
    pub fn authorize(
        &self,
        action: &str,
        scope: &Scope,
        not_found: impl FnOnce() -> ApiError,
    ) -> ApiResult<()> {
        let read_only = action.ends_with(":get") || action.ends_with(":list");
        if !self.sees(scope, read_only) {
            return Err(not_found());
        }
        self.require(action)
    }

    /// Authorizes creating an object in `scope` (the caller named the scope, so a refusal
    /// reveals nothing).
    pub fn authorize_in(&self, action: &str, scope: &Scope) -> ApiResult<()> {
        if !self.sees(scope, false) {
            return Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("{} may not act in {}", self.principal, scope.path()),
            ));
        }
        self.require(action)
    }

    /// Requires an action regardless of scope.
    pub fn require(&self, action: &str) -> ApiResult<()> {
        if self.may(action) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("{} lacks {action}", self.principal),
            ))
        }
    }

    /// The org a listing is confined to: the principal's own unless it is a system principal.
    pub fn list_org(&self, requested: &str) -> ApiResult<String> {
        match (&self.scope, requested) {
            (TokenScope::System, "") => Err(ApiError::invalid("org_id", "required")),
            (TokenScope::System, r) => Ok(r.to_string()),
            (TokenScope::Org { org_id } | TokenScope::Project { org_id, .. }, r)
                if r.is_empty() || r == org_id =>
            {
                Ok(org_id.clone())
            }
            (_, r) => Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("{} may not list objects of org {r}", self.principal),
            )),
        }
    }

    /// Whether this principal's reach includes everything `other` reaches.
    pub fn covers(&self, other: &TokenScope) -> bool {
        match (&self.scope, other) {
            (TokenScope::System, _) => true,
            (TokenScope::Org { org_id: a }, TokenScope::Org { org_id: b })
            | (TokenScope::Org { org_id: a }, TokenScope::Project { org_id: b, .. }) => a == b,
            (
                TokenScope::Project {
                    org_id: a,
                    project_id: p,
                },
                TokenScope::Project {
                    org_id: b,
                    project_id: q,
                },
            ) => a == b && p == q,
            _ => false,
        }
    }
}

/// Glob match where `*` stands for any run of characters (so `fiberlb:*` grants everything).
pub fn pattern_matches(pattern: &str, action: &str) -> bool {
    fn rec(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| rec(rest, &a[i..])),
            Some((c, rest)) => a.first() == Some(c) && rec(rest, &a[1..]),
        }
    }
    rec(pattern.as_bytes(), action.as_bytes())
}

/// How long a verified credential is trusted without asking the store again (so a
/// revocation takes effect fleet-wide within this time).
const CACHE_FRESH_MS: u64 = 5_000;

type TokenCache =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (AccessToken, u64)>>>;

/// Resolves credentials of a request against the stored tokens. Verified credentials are
/// cached briefly: the store is not read on every call, and while the store is unreachable
/// known credentials keep working (status and reads from caches stay possible in an
/// outage; writes fail on the store anyway).
#[derive(Clone)]
pub struct Authenticator {
    repo: Repo,
    cache: TokenCache,
}

impl Authenticator {
    /// Over the given store.
    pub fn new(repo: Repo) -> Self {
        Self {
            repo,
            cache: TokenCache::default(),
        }
    }

    fn cached(&self, hash: &str) -> Option<(AccessToken, u64)> {
        self.cache.lock().ok()?.get(hash).cloned()
    }

    /// The principal of a request, from `authorization: Bearer …` or `x-api-key`.
    pub async fn authenticate(&self, md: &MetadataMap) -> ApiResult<Principal> {
        let secret = credential(md).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "no credential: send `authorization: Bearer <token>` or `x-api-key`",
            )
        })?;
        let rejected = || {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "invalid, expired or revoked credential",
            )
        };
        let hash = hash_secret(&secret);
        let now = now_ms();
        let token = match self.cached(&hash) {
            Some((t, at)) if now.saturating_sub(at) < CACHE_FRESH_MS => t,
            cached => match self.lookup(&hash).await {
                Ok(Some(t)) => {
                    if let Ok(mut c) = self.cache.lock() {
                        if c.len() > 10_000 {
                            c.clear();
                        }
                        c.insert(hash.clone(), (t.clone(), now));
                    }
                    t
                }
                Ok(None) => {
                    if let Ok(mut c) = self.cache.lock() {
                        c.remove(&hash);
                    }
                    return Err(rejected());
                }
                Err(e) if e.code == ErrorCode::StoreUnavailable => match cached {
                    Some((t, _)) => t,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            },
        };
        if token.revoked || token.expires_at.is_some_and(|t| t <= now) {
            return Err(rejected());
        }
        Ok(Principal {
            token_id: token.id,
            principal: token.principal,
            scope: token.scope,
            actions: token.actions,
        })
    }

    /// Drops a credential from this node's cache (after a revocation made here).
    pub fn forget(&self, secret_sha256: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(secret_sha256);
        }
    }

    async fn lookup(&self, hash: &str) -> ApiResult<Option<AccessToken>> {
        let Some(id) = self.repo.index(&keys::token_by_hash(hash)).await? else {
            return Ok(None);
        };
        self.repo.find(&id).await
    }
}

fn credential(md: &MetadataMap) -> Option<String> {
    if let Some(v) = md.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    md.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Writes one audit line for a mutating call.
pub fn audit(p: &Principal, action: &str, resource: &str, error: Option<&ApiError>) {
    let outcome = error.map(|e| e.code.as_str()).unwrap_or("ok");
    tracing::info!(target: "fiberlb::audit", principal = %p.principal, token = %p.token_id, action, resource, result = %outcome, "audit");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope: TokenScope, actions: &[&str]) -> Principal {
        Principal {
            token_id: "t".into(),
            principal: "p".into(),
            scope,
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("fiberlb:*", "fiberlb:pools:delete"));
        assert!(pattern_matches("fiberlb:pools:*", "fiberlb:pools:delete"));
        assert!(!pattern_matches("fiberlb:pools:*", "fiberlb:backends:add"));
        assert!(pattern_matches("fiberlb:*:get", "fiberlb:pools:get"));
        assert!(!pattern_matches("fiberlb:*:get", "fiberlb:pools:delete"));
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("fiberlb:pools:get", "fiberlb:pools:getx"));
    }

    #[test]
    fn scopes() {
        let s = |o: &str, p: Option<&str>| Scope {
            org_id: o.into(),
            project_id: p.map(Into::into),
        };
        let proj = principal(
            TokenScope::Project {
                org_id: "a".into(),
                project_id: "x".into(),
            },
            &["fiberlb:*"],
        );
        assert!(proj.sees(&s("a", Some("x")), false));
        assert!(!proj.sees(&s("a", Some("y")), true));
        assert!(
            proj.sees(&s("a", None), true),
            "org-level objects are readable by the org's projects"
        );
        assert!(!proj.sees(&s("a", None), false));
        assert!(!proj.sees(&s("b", Some("x")), true));
        let org = principal(TokenScope::Org { org_id: "a".into() }, &["fiberlb:*:get"]);
        assert!(org.sees(&s("a", Some("z")), false));
        assert!(!org.sees(&s("b", None), true));
        let nf = || ApiError::new(ErrorCode::LbNotFound, "x");
        assert_eq!(
            org.authorize("fiberlb:pools:delete", &s("a", None), nf)
                .unwrap_err()
                .code,
            ErrorCode::AccessDenied
        );
        assert_eq!(
            org.authorize("fiberlb:pools:get", &s("b", None), nf)
                .unwrap_err()
                .code,
            ErrorCode::LbNotFound
        );
        assert!(org.covers(&TokenScope::Project {
            org_id: "a".into(),
            project_id: "q".into()
        }));
        assert!(!proj.covers(&TokenScope::Org { org_id: "a".into() }));
    }
}
