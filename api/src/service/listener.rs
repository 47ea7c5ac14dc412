//! `ListenerService`: listeners and their routing rules.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, reply, Api};
use crate::auth::Principal;
use crate::convert::{protocol_from, rule_from_proto, tls_from_proto};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{check_revision, contended, not_found, MAX_ATTEMPTS};
use crate::store::Txn;
use crate::validate;

/// Largest number of rules on one listener.
const MAX_RULES: usize = 256;

impl Api {
    async fn listener_for(&self, p: &Principal, id: &str, action: &str) -> ApiResult<Listener> {
        let l: Listener = self.repo.get(id).await?;
        p.authorize(action, &l.scope, || not_found::<Listener>(id))?;
        Ok(l)
    }

    /// Checks every reference of `l` (pools of its LB, certificates visible to its scope)
    /// and adds "still there" compares for them to `txn`.
    async fn check_listener_refs(&self, l: &Listener, mut txn: Txn) -> ApiResult<Txn> {
        let mut seen = Vec::new();
        if let Some(id) = &l.default_pool_id {
            let pool = self.pool_of_lb(l, id, "default_pool_id").await?;
            seen.push(pool.id.clone());
            txn = index::under(txn, &pool);
        }
        for r in &l.rules {
            if let RuleAction::ForwardToPool { pool_id } = &r.action {
                if !seen.contains(pool_id) {
                    let pool = self
                        .pool_of_lb(
                            l,
                            pool_id,
                            &format!("rule {} forward_to_pool.pool_id", r.name),
                        )
                        .await?;
                    seen.push(pool.id.clone());
                    txn = index::under(txn, &pool);
                }
            }
        }
        if let Some(tls) = &l.tls {
            let needs_key: Vec<&str> = std::iter::once(tls.certificate_id.as_str())
                .chain(tls.sni_certificates.values().map(String::as_str))
                .collect();
            for id in l.referenced_certificates() {
                let cert = match self.repo.find::<Certificate>(id).await? {
                    Some(c)
                        if c.scope.org_id == l.scope.org_id
                            && (c.scope.project_id.is_none()
                                || c.scope.project_id == l.scope.project_id) =>
                    {
                        c
                    }
                    _ => {
                        return Err(ApiError::new(
                            ErrorCode::CertificateNotFound,
                            format!(
                                "tls_config: certificate {id} does not exist in {}",
                                l.scope.path()
                            ),
                        ))
                    }
                };
                if needs_key.contains(&id) && cert.private_key_pem.is_none() {
                    return Err(ApiError::invalid(
                        "tls_config",
                        format!("certificate {} has no private key", cert.name),
                    ));
                }
                txn = index::under(txn, &cert);
            }
        }
        Ok(txn)
    }

    /// Reports a taken port or name in the listener's LB.
    async fn check_listener_unique(&self, l: &Listener) -> ApiResult<()> {
        if let Some(id) = self
            .repo
            .index(&keys::listener_by_port(
                &l.lb_id,
                l.port,
                l.protocol.is_udp(),
            ))
            .await?
        {
            if id != l.id {
                let holder = self
                    .repo
                    .find::<Listener>(&id)
                    .await?
                    .map(|h| h.name)
                    .unwrap_or(id);
                return Err(ApiError::new(
                    ErrorCode::ListenerPortConflict,
                    format!("port {} already used by listener {holder}", l.port),
                ));
            }
        }
        if let Some(id) = self
            .repo
            .index(&keys::listener_by_name(&l.lb_id, &l.name))
            .await?
        {
            if id != l.id {
                return Err(ApiError::new(
                    ErrorCode::ListenerAlreadyExists,
                    format!(
                        "a listener named {} already exists in load balancer {}",
                        l.name, l.lb_id
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn create_listener(
        &self,
        p: &Principal,
        r: pb::CreateListenerRequest,
    ) -> ApiResult<(pb::Listener, String)> {
        validate::object_name("name", &r.name)?;
        let protocol = protocol_from(r.protocol)?;
        let port = validate::port("port", r.port)?;
        let tls = r.tls_config.as_ref().map(tls_from_proto).transpose()?;
        check_tls_fits(protocol, tls.as_ref())?;
        let connection_limit = r.connection_limit.map(connection_limit).transpose()?;
        let timeout_client_ms = r
            .timeout_client
            .map(|v| validate::timeout_ms("timeout_client", v))
            .transpose()?
            .unwrap_or(Listener::DEFAULT_TIMEOUT_CLIENT_MS);
        let timeout_backend_ms = r
            .timeout_backend
            .map(|v| validate::timeout_ms("timeout_backend", v))
            .transpose()?
            .unwrap_or(Listener::DEFAULT_TIMEOUT_BACKEND_MS);
        for _ in 0..MAX_ATTEMPTS {
            let lb = self.lb_for(p, &r.lb_id, "fiberlb:listeners:create").await?;
            let now = now_ms();
            let mut l = Listener {
                id: new_id(),
                lb_id: lb.id.clone(),
                scope: lb.scope.clone(),
                name: r.name.clone(),
                protocol,
                port,
                tls: tls.clone(),
                default_pool_id: r.default_pool_id.clone().filter(|s| !s.is_empty()),
                rules: Vec::new(),
                connection_limit,
                timeout_client_ms,
                timeout_backend_ms,
                enabled: true,
                created_at: now,
                updated_at: now,
                revision: 0,
            };
            self.check_listener_unique(&l).await?;
            let txn = self
                .check_listener_refs(&l, index::under(Txn::new(), &lb))
                .await?;
            if let Some(rev) = self.repo.commit(index::write(txn, None, &l)).await? {
                l.revision = rev;
                let path = listener_path(&l);
                return Ok((l.to_proto(), path));
            }
        }
        Err(contended("create listener"))
    }

    /// Reads, changes and writes a listener with retries and reference checks.
    async fn modify_listener(
        &self,
        p: &Principal,
        id: &str,
        revision: Option<u64>,
        what: &str,
        change: impl Fn(&mut Listener) -> ApiResult<()>,
    ) -> ApiResult<(pb::Listener, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let old = self.listener_for(p, id, "fiberlb:listeners:update").await?;
            check_revision(&old, revision)?;
            let mut l = old.clone();
            change(&mut l)?;
            check_tls_fits(l.protocol, l.tls.as_ref())?;
            l.sort_rules();
            l.updated_at = now_ms();
            self.check_listener_unique(&l).await?;
            let txn = self
                .check_listener_refs(&l, index::touch(Txn::new(), &l.lb_id))
                .await?;
            let txn = old
                .referenced_certificates()
                .into_iter()
                .fold(txn, index::touch);
            if let Some(rev) = self.repo.commit(index::write(txn, Some(&old), &l)).await? {
                l.revision = rev;
                let path = listener_path(&l);
                return Ok((l.to_proto(), path));
            }
        }
        Err(contended(what))
    }

    async fn delete_listener(
        &self,
        p: &Principal,
        r: pb::DeleteListenerRequest,
    ) -> ApiResult<(pb::DeleteListenerResponse, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let l = self
                .listener_for(p, &r.listener_id, "fiberlb:listeners:delete")
                .await?;
            check_revision(&l, r.revision)?;
            let txn = index::touch(index::delete(Txn::new(), &l), &l.lb_id);
            let txn = l
                .referenced_certificates()
                .into_iter()
                .fold(txn, index::touch);
            if self.repo.commit(txn).await?.is_some() {
                let path = listener_path(&l);
                return Ok((pb::DeleteListenerResponse { listener_id: l.id }, path));
            }
        }
        Err(contended("delete listener"))
    }

    async fn list_listeners(
        &self,
        p: &Principal,
        r: pb::ListListenersRequest,
    ) -> ApiResult<pb::ListListenersResponse> {
        let lb = self.lb_for(p, &r.lb_id, "fiberlb:listeners:list").await?;
        let protocol = r.protocol_filter.map(protocol_from).transpose()?;
        let items: Vec<Listener> = self
            .repo
            .list_by_index::<Listener>(&keys::listener_by_lb_prefix(&lb.id))
            .await?
            .into_iter()
            .filter(|l| protocol.is_none_or(|pr| l.protocol == pr))
            .filter(|l| {
                r.name_filter
                    .as_deref()
                    .is_none_or(|f| l.name.starts_with(f))
            })
            .collect();
        let page = paginate(items, |l| name_key(&l.name, &l.id), r.limit, &r.page_token)?;
        Ok(pb::ListListenersResponse {
            listeners: page.items.iter().map(Listener::to_proto).collect(),
            next_page_token: page.next_page_token,
            total_count: page.total_count,
        })
    }
}

fn connection_limit(v: u32) -> ApiResult<u32> {
    if v == 0 {
        Err(ApiError::invalid("connection_limit", "must be at least 1"))
    } else {
        Ok(v)
    }
}

fn check_tls_fits(protocol: ListenerProtocol, tls: Option<&TlsConfig>) -> ApiResult<()> {
    match (protocol, tls) {
        (ListenerProtocol::Https, None) => Err(ApiError::invalid(
            "tls_config",
            "required for https listeners",
        )),
        (ListenerProtocol::Https, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(ApiError::invalid(
            "tls_config",
            "only https listeners terminate TLS (tcp_tls passes it through untouched)",
        )),
    }
}

fn listener_path(l: &Listener) -> String {
    format!("{}/lb/{}/listener/{}", l.scope.path(), l.lb_id, l.id)
}

fn find_rule<'a>(l: &'a mut Listener, rule_id: &str) -> ApiResult<&'a mut RoutingRule> {
    let lid = l.id.clone();
    l.rules.iter_mut().find(|r| r.id == rule_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RuleNotFound,
            format!("rule {rule_id} does not exist on listener {lid}"),
        )
    })
}

fn ensure_rule_name_free(l: &Listener, name: &str, except: Option<&str>) -> ApiResult<()> {
    if l.rules
        .iter()
        .any(|r| r.name == name && Some(r.id.as_str()) != except)
    {
        return Err(ApiError::new(
            ErrorCode::RuleAlreadyExists,
            format!("listener {} already has a rule named {name}", l.name),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::listener_service_server::ListenerService for Api {
    async fn create_listener(
        &self,
        req: Request<pb::CreateListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}/listener/{}", r.lb_id, r.name);
        audited(
            &p,
            "fiberlb:listeners:create",
            &fallback,
            Api::create_listener(self, &p, r),
        )
        .await
    }

    async fn get_listener(
        &self,
        req: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().listener_id;
        reply(
            self.listener_for(&p, &id, "fiberlb:listeners:get")
                .await
                .map(|l| l.to_proto()),
        )
    }

    async fn update_listener(
        &self,
        req: Request<pb::UpdateListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("listener/{}", r.listener_id);
        let fut = async {
            if let Some(n) = &r.name {
                validate::object_name("name", n)?;
            }
            let tls = r.tls_config.as_ref().map(tls_from_proto).transpose()?;
            let port = r.port.map(|v| validate::port("port", v)).transpose()?;
            let tc = r
                .timeout_client
                .map(|v| validate::timeout_ms("timeout_client", v))
                .transpose()?;
            let tb = r
                .timeout_backend
                .map(|v| validate::timeout_ms("timeout_backend", v))
                .transpose()?;
            self.modify_listener(&p, &r.listener_id, r.revision, "update listener", |l| {
                if let Some(n) = &r.name {
                    l.name = n.clone();
                }
                if let Some(t) = &tls {
                    l.tls = Some(t.clone());
                }
                if let Some(d) = &r.default_pool_id {
                    l.default_pool_id = Some(d.clone()).filter(|d| !d.is_empty());
                }
                if let Some(c) = r.connection_limit {
                    l.connection_limit = Some(c).filter(|c| *c > 0);
                }
                if let Some(v) = tc {
                    l.timeout_client_ms = v;
                }
                if let Some(v) = tb {
                    l.timeout_backend_ms = v;
                }
                if let Some(e) = r.enabled {
                    l.enabled = e;
                }
                if let Some(pt) = port {
                    l.port = pt;
                }
                Ok(())
            })
            .await
        };
        audited(&p, "fiberlb:listeners:update", &fallback, fut).await
    }

    async fn delete_listener(
        &self,
        req: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("listener/{}", r.listener_id);
        audited(
            &p,
            "fiberlb:listeners:delete",
            &fallback,
            Api::delete_listener(self, &p, r),
        )
        .await
    }

    async fn list_listeners(
        &self,
        req: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(Api::list_listeners(self, &p, req.into_inner()).await)
    }

    async fn add_routing_rule(
        &self,
        req: Request<pb::AddRoutingRuleRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("listener/{}", r.listener_id);
        let rule = r.rule.clone().unwrap_or_default();
        let id = new_id();
        let fut = self.modify_listener(&p, &r.listener_id, r.revision, "add routing rule", |l| {
            if l.rules.len() >= MAX_RULES {
                return Err(ApiError::invalid(
                    "rule",
                    format!("a listener has at most {MAX_RULES} rules"),
                ));
            }
            let rule = rule_from_proto(&rule, id.clone(), l.protocol)?;
            ensure_rule_name_free(l, &rule.name, None)?;
            l.rules.push(rule);
            Ok(())
        });
        audited(&p, "fiberlb:listeners:update", &fallback, fut).await
    }

    async fn update_routing_rule(
        &self,
        req: Request<pb::UpdateRoutingRuleRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("listener/{}/rule/{}", r.listener_id, r.rule_id);
        let rule = r.rule.clone().unwrap_or_default();
        let fut =
            self.modify_listener(&p, &r.listener_id, r.revision, "update routing rule", |l| {
                let new = rule_from_proto(&rule, r.rule_id.clone(), l.protocol)?;
                ensure_rule_name_free(l, &new.name, Some(&r.rule_id))?;
                *find_rule(l, &r.rule_id)? = new;
                Ok(())
            });
        audited(&p, "fiberlb:listeners:update", &fallback, fut).await
    }

    async fn remove_routing_rule(
        &self,
        req: Request<pb::RemoveRoutingRuleRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("listener/{}/rule/{}", r.listener_id, r.rule_id);
        let fut =
            self.modify_listener(&p, &r.listener_id, r.revision, "remove routing rule", |l| {
                find_rule(l, &r.rule_id)?;
                l.rules.retain(|x| x.id != r.rule_id);
                Ok(())
            });
        audited(&p, "fiberlb:listeners:update", &fallback, fut).await
    }
}
