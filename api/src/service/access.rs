//! `AccessService`: credentials bound to a principal, a scope and action patterns. A
//! principal can only hand out what it holds: the new scope must be within its own and
//! every action pattern must be granted to it.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, reply, Api};
use crate::auth::{hash_secret, new_secret, Principal};
use crate::convert::credential_kind_from;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{contended, decode, not_found, MAX_ATTEMPTS};
use crate::store::Txn;
use crate::validate;

fn token_scope(org: &str, project: Option<&str>) -> ApiResult<TokenScope> {
    match (org, project) {
        ("", None) => Ok(TokenScope::System),
        ("", Some(_)) => Err(ApiError::invalid("org_id", "required with project_id")),
        (o, None) => {
            validate::tenant_id("org_id", o)?;
            Ok(TokenScope::Org { org_id: o.into() })
        }
        (o, Some(p)) => {
            validate::tenant_id("org_id", o)?;
            validate::tenant_id("project_id", p)?;
            Ok(TokenScope::Project {
                org_id: o.into(),
                project_id: p.into(),
            })
        }
    }
}

fn check_action_pattern(a: &str) -> ApiResult<()> {
    let ok = !a.is_empty()
        && a.len() <= 128
        && a.bytes()
            .all(|c| c.is_ascii_lowercase() || matches!(c, b':' | b'*' | b'-' | b'_'));
    if ok && (a == "*" || a.starts_with("fiberlb:")) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "actions",
            format!("{a:?} is not an action pattern such as fiberlb:pools:*"),
        ))
    }
}

impl Api {
    async fn create_token(
        &self,
        p: &Principal,
        r: pb::CreateTokenRequest,
    ) -> ApiResult<(pb::CreateTokenResponse, String)> {
        p.require("fiberlb:tokens:create")?;
        validate::object_name("name", &r.name)?;
        if r.principal.is_empty()
            || r.principal.len() > 128
            || r.principal.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "principal",
                "must be 1-128 printable characters",
            ));
        }
        if r.actions.is_empty() {
            return Err(ApiError::invalid("actions", "at least one action pattern"));
        }
        for a in &r.actions {
            check_action_pattern(a)?;
            if !p.may(a) {
                return Err(ApiError::new(
                    ErrorCode::AccessDenied,
                    format!("{} cannot grant {a}: it does not hold it", p.principal),
                ));
            }
        }
        let scope = token_scope(&r.org_id, r.project_id.as_deref())?;
        if !p.covers(&scope) {
            return Err(ApiError::new(
                ErrorCode::AccessDenied,
                format!("{} cannot grant a scope wider than its own", p.principal),
            ));
        }
        let secret = new_secret();
        let now = now_ms();
        let mut t = AccessToken {
            id: new_id(),
            name: r.name.clone(),
            principal: r.principal.clone(),
            scope,
            actions: r.actions.clone(),
            kind: credential_kind_from(r.kind)?,
            created_at: now,
            expires_at: r
                .ttl_seconds
                .map(|s| now.saturating_add(s.saturating_mul(1000))),
            created_by: p.principal.clone(),
            revoked: false,
            secret_sha256: hash_secret(&secret),
            revision: 0,
        };
        match self.repo.commit(index::write(Txn::new(), None, &t)).await? {
            Some(rev) => {
                t.revision = rev;
                Ok((
                    pb::CreateTokenResponse {
                        token: Some(t.to_proto()),
                        secret,
                    },
                    format!("token/{}", t.id),
                ))
            }
            None => Err(contended("create token")),
        }
    }

    /// Tokens visible to `p`: those whose scope it covers.
    async fn visible_tokens(&self, p: &Principal) -> ApiResult<Vec<AccessToken>> {
        let mut out = Vec::new();
        for kv in self.repo.store().range(keys::TOKEN_PREFIX).await? {
            if kv.key[keys::TOKEN_PREFIX.len()..].contains('/') {
                continue;
            }
            let t: AccessToken = decode(&kv)?;
            if p.covers(&t.scope) {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn revoke_token(&self, p: &Principal, id: &str) -> ApiResult<(pb::AccessToken, String)> {
        p.require("fiberlb:tokens:revoke")?;
        for _ in 0..MAX_ATTEMPTS {
            let old: AccessToken = self.repo.get(id).await?;
            if !p.covers(&old.scope) {
                return Err(not_found::<AccessToken>(id));
            }
            let mut t = old.clone();
            t.revoked = true;
            if let Some(rev) = self
                .repo
                .commit(index::write(Txn::new(), Some(&old), &t))
                .await?
            {
                t.revision = rev;
                self.auth.forget(&t.secret_sha256);
                return Ok((t.to_proto(), format!("token/{}", t.id)));
            }
        }
        Err(contended("revoke token"))
    }
}

#[tonic::async_trait]
impl pb::access_service_server::AccessService for Api {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("token/{}", r.name);
        audited(
            &p,
            "fiberlb:tokens:create",
            &fallback,
            Api::create_token(self, &p, r),
        )
        .await
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        reply(
            async {
                p.require("fiberlb:tokens:list")?;
                let items: Vec<AccessToken> = self
                    .visible_tokens(&p)
                    .await?
                    .into_iter()
                    .filter(|t| match (&r.org_id, &t.scope) {
                        (None, _) => true,
                        (
                            Some(o),
                            TokenScope::Org { org_id } | TokenScope::Project { org_id, .. },
                        ) => o == org_id,
                        (Some(o), TokenScope::System) => o.is_empty(),
                    })
                    .collect();
                let page = paginate(items, |t| name_key(&t.name, &t.id), r.limit, &r.page_token)?;
                Ok(pb::ListTokensResponse {
                    tokens: page.items.iter().map(AccessToken::to_proto).collect(),
                    next_page_token: page.next_page_token,
                    total_count: page.total_count,
                })
            }
            .await,
        )
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().token_id;
        let fallback = format!("token/{id}");
        audited(
            &p,
            "fiberlb:tokens:revoke",
            &fallback,
            Api::revoke_token(self, &p, &id),
        )
        .await
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let p = self.principal(&req).await?;
        reply(
            self.repo
                .get::<AccessToken>(&p.token_id)
                .await
                .map(|t| t.to_proto()),
        )
    }
}
