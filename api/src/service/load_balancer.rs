//! `LbService`: load balancers.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, reply, Api};
use crate::auth::Principal;
use crate::convert::lb_status_from;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{check_revision, contended, not_found, MAX_ATTEMPTS};
use crate::store::{Compare, Txn};
use crate::validate;

mod vip;

fn parse_vip(v: &str) -> ApiResult<Option<std::net::IpAddr>> {
    if v.is_empty() {
        return Ok(None);
    }
    let ip: std::net::IpAddr = v
        .parse()
        .map_err(|_| ApiError::invalid("vip", format!("{v:?} is not an IP address")))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(ApiError::invalid("vip", format!("{ip} cannot be a VIP")));
    }
    Ok(Some(ip))
}

impl Api {
    /// Reads a load balancer the principal may act on (`action`), else LB_NOT_FOUND / ACCESS_DENIED.
    pub(crate) async fn lb_for(
        &self,
        p: &Principal,
        id: &str,
        action: &str,
    ) -> ApiResult<LoadBalancer> {
        let lb: LoadBalancer = self.repo.get(id).await?;
        p.authorize(action, &lb.scope, || not_found::<LoadBalancer>(id))?;
        Ok(lb)
    }

    pub(crate) async fn lb_proto(&self, lb: &LoadBalancer) -> ApiResult<pb::LoadBalancer> {
        let ids = self
            .repo
            .ids_under(&keys::listener_by_lb_prefix(&lb.id))
            .await?;
        Ok(lb.to_proto(ids))
    }

    async fn check_vip_free(&self, vip: &std::net::IpAddr, own: Option<&str>) -> ApiResult<()> {
        if let Some(holder) = self.repo.index(&keys::vip(vip)).await? {
            if Some(holder.as_str()) != own {
                return Err(ApiError::new(
                    ErrorCode::VipConflict,
                    format!("vip {vip} is already used by another load balancer"),
                ));
            }
        }
        Ok(())
    }

    async fn check_lb_name_free(&self, scope: &Scope, name: &str) -> ApiResult<()> {
        if self
            .repo
            .index(&keys::lb_by_name(
                &scope.org_id,
                scope.project_id.as_deref(),
                name,
            ))
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorCode::LbAlreadyExists,
                format!(
                    "a load balancer named {name} already exists in {}",
                    scope.path()
                ),
            ));
        }
        Ok(())
    }

    async fn create_lb(
        &self,
        p: &Principal,
        r: pb::CreateLoadBalancerRequest,
    ) -> ApiResult<(pb::LoadBalancer, String)> {
        validate::lb_name(&r.name)?;
        validate::tenant_id("org_id", &r.org_id)?;
        if let Some(pj) = &r.project_id {
            validate::tenant_id("project_id", pj)?;
        }
        if let Some(d) = &r.description {
            validate::text("description", d)?;
        }
        let tags = validate::labels("tags", &r.tags)?;
        let metadata = validate::labels("metadata", &r.metadata)?;
        let vip = parse_vip(r.vip.as_deref().unwrap_or(""))?;
        let scope = Scope {
            org_id: r.org_id.clone(),
            project_id: r.project_id.clone(),
        };
        p.authorize_in("fiberlb:loadbalancers:create", &scope)?;
        let now = now_ms();
        let mut lb = LoadBalancer {
            id: new_id(),
            name: r.name.clone(),
            scope,
            description: r.description.clone().filter(|d| !d.is_empty()),
            default_pool_id: None,
            status: LbStatus::Active,
            status_message: None,
            last_transition: now,
            vip,
            created_at: now,
            updated_at: now,
            created_by: p.principal.clone(),
            metadata,
            tags,
            revision: 0,
        };
        for _ in 0..MAX_ATTEMPTS {
            self.check_lb_name_free(&lb.scope, &lb.name).await?;
            match &vip {
                Some(v) => self.check_vip_free(v, None).await?,
                // No VIP asked for: the lowest free one of the pool (if configured). Two
                // nodes picking the same one race on its index key; the loser retries.
                None => lb.vip = self.allocate_vip().await?,
            }
            if let Some(rev) = self
                .repo
                .commit(index::write(Txn::new(), None, &lb))
                .await?
            {
                lb.revision = rev;
                let path = format!("{}/lb/{}", lb.scope.path(), lb.id);
                return Ok((lb.to_proto(Vec::new()), path));
            }
        }
        Err(contended("create load balancer"))
    }

    async fn update_lb(
        &self,
        p: &Principal,
        r: pb::UpdateLoadBalancerRequest,
    ) -> ApiResult<(pb::LoadBalancer, String)> {
        if let Some(n) = &r.name {
            validate::lb_name(n)?;
        }
        if let Some(d) = &r.description {
            validate::text("description", d)?;
        }
        let tags = validate::labels("tags", &r.tags)?;
        let metadata = validate::labels("metadata", &r.metadata)?;
        let vip = r.vip.as_deref().map(parse_vip).transpose()?;
        for _ in 0..MAX_ATTEMPTS {
            let old = self
                .lb_for(p, &r.lb_id, "fiberlb:loadbalancers:update")
                .await?;
            check_revision(&old, r.revision)?;
            let mut lb = old.clone();
            let mut txn = Txn::new();
            if let Some(n) = &r.name {
                if *n != old.name {
                    self.check_lb_name_free(&old.scope, n).await?;
                }
                lb.name = n.clone();
            }
            if let Some(d) = &r.description {
                lb.description = Some(d.clone()).filter(|d| !d.is_empty());
            }
            if !tags.is_empty() || r.clear_tags {
                lb.tags = tags.clone();
            }
            if !metadata.is_empty() || r.clear_metadata {
                lb.metadata = metadata.clone();
            }
            if let Some(v) = vip {
                if let Some(ip) = &v {
                    self.check_vip_free(ip, Some(&old.id)).await?;
                }
                lb.vip = v;
            }
            if let Some(pool_id) = &r.default_pool_id {
                if pool_id.is_empty() {
                    lb.default_pool_id = None;
                } else {
                    let pool = self.pool_of_lb(&old, pool_id, "default_pool_id").await?;
                    txn = index::under(txn, &pool);
                    lb.default_pool_id = Some(pool_id.clone());
                }
            }
            lb.updated_at = now_ms();
            if let Some(rev) = self.repo.commit(index::write(txn, Some(&old), &lb)).await? {
                lb.revision = rev;
                let path = format!("{}/lb/{}", lb.scope.path(), lb.id);
                return Ok((self.lb_proto(&lb).await?, path));
            }
        }
        Err(contended("update load balancer"))
    }

    async fn set_lb_status(
        &self,
        p: &Principal,
        id: &str,
        rev: Option<u64>,
        enabled: bool,
    ) -> ApiResult<(pb::LoadBalancer, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let old = self.lb_for(p, id, "fiberlb:loadbalancers:update").await?;
            check_revision(&old, rev)?;
            let mut lb = old.clone();
            let status = if enabled {
                LbStatus::Active
            } else {
                LbStatus::Disabled
            };
            if lb.status != status {
                lb.status = status;
                lb.last_transition = now_ms();
                lb.status_message = None;
            }
            lb.updated_at = now_ms();
            if let Some(rev) = self
                .repo
                .commit(index::write(Txn::new(), Some(&old), &lb))
                .await?
            {
                lb.revision = rev;
                let path = format!("{}/lb/{}", lb.scope.path(), lb.id);
                return Ok((self.lb_proto(&lb).await?, path));
            }
        }
        Err(contended("change load balancer status"))
    }

    async fn delete_lb(
        &self,
        p: &Principal,
        r: pb::DeleteLoadBalancerRequest,
    ) -> ApiResult<(pb::DeleteLoadBalancerResponse, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let lb = self
                .lb_for(p, &r.lb_id, "fiberlb:loadbalancers:delete")
                .await?;
            check_revision(&lb, r.revision)?;
            let gen_rev = self.repo.key_revision(&keys::gen(&lb.id)).await?;
            let listeners: Vec<Listener> = self
                .repo
                .list_by_index(&keys::listener_by_lb_prefix(&lb.id))
                .await?;
            if !listeners.is_empty() && !r.force {
                let names: Vec<_> = listeners.iter().map(|l| l.name.as_str()).collect();
                return Err(ApiError::new(
                    ErrorCode::LbHasListeners,
                    format!(
                        "load balancer {} has listeners ({}); delete them or pass force",
                        lb.name,
                        names.join(", ")
                    ),
                ));
            }
            // Pools and backends belong to the load balancer and go with it.
            let mut txn = Txn::new().when(Compare::revision(keys::gen(&lb.id), gen_rev));
            for l in &listeners {
                txn = index::delete(txn, l);
                for c in l.referenced_certificates() {
                    txn = index::touch(txn, c);
                }
            }
            let pools: Vec<Pool> = self
                .repo
                .list_by_index(&keys::pool_by_lb_prefix(&lb.id))
                .await?;
            for pool in &pools {
                let pool_gen = self.repo.key_revision(&keys::gen(&pool.id)).await?;
                txn = txn.when(Compare::revision(keys::gen(&pool.id), pool_gen));
                let backends: Vec<Backend> = self
                    .repo
                    .list_by_index(&keys::backend_by_pool_prefix(&pool.id))
                    .await?;
                for b in &backends {
                    txn = index::delete(txn, b);
                }
                txn = index::delete(txn, pool);
            }
            txn = index::delete(txn, &lb);
            if self.repo.commit(txn).await?.is_some() {
                let path = format!("{}/lb/{}", lb.scope.path(), lb.id);
                return Ok((pb::DeleteLoadBalancerResponse { lb_id: lb.id }, path));
            }
        }
        Err(contended("delete load balancer"))
    }

    async fn list_lbs(
        &self,
        p: &Principal,
        r: pb::ListLoadBalancersRequest,
    ) -> ApiResult<pb::ListLoadBalancersResponse> {
        p.require("fiberlb:loadbalancers:list")?;
        let org = p.list_org(&r.org_id)?;
        let status = r.status_filter.map(lb_status_from).transpose()?;
        let prefix = match &r.project_id {
            Some(pj) => {
                validate::tenant_id("project_id", pj)?;
                keys::lb_by_project_prefix(&org, pj)
            }
            None => keys::lb_by_org_prefix(&org),
        };
        let all: Vec<LoadBalancer> = self.repo.list_by_index(&prefix).await?;
        let items: Vec<LoadBalancer> = all
            .into_iter()
            .filter(|lb| p.sees(&lb.scope, true))
            .filter(|lb| {
                r.name_filter
                    .as_deref()
                    .is_none_or(|f| lb.name.starts_with(f))
            })
            .filter(|lb| status.is_none_or(|s| lb.status == s))
            .collect();
        let page = paginate(
            items,
            |lb| name_key(&lb.name, &lb.id),
            r.limit,
            &r.page_token,
        )?;
        let mut load_balancers = Vec::with_capacity(page.items.len());
        for lb in &page.items {
            load_balancers.push(self.lb_proto(lb).await?);
        }
        Ok(pb::ListLoadBalancersResponse {
            load_balancers,
            next_page_token: page.next_page_token,
            total_count: page.total_count,
        })
    }

    async fn lb_status(&self, p: &Principal, id: &str) -> ApiResult<pb::LoadBalancerStatus> {
        let lb = self.lb_for(p, id, "fiberlb:loadbalancers:get").await?;
        let listener_count = self
            .repo
            .count(&keys::listener_by_lb_prefix(&lb.id))
            .await? as u32;
        let pools: Vec<Pool> = self
            .repo
            .list_by_index(&keys::pool_by_lb_prefix(&lb.id))
            .await?;
        let (mut backend_count, mut healthy_backends) = (0, 0);
        for pool in &pools {
            let backends: Vec<Backend> = self
                .repo
                .list_by_index(&keys::backend_by_pool_prefix(&pool.id))
                .await?;
            backend_count += backends.len() as u32;
            healthy_backends += backends
                .iter()
                .filter(|b| self.runtime.backend_health(pool, b).healthy)
                .count() as u32;
        }
        Ok(pb::LoadBalancerStatus {
            lb_id: lb.id.clone(),
            status: crate::convert::lb_status_to(lb.status),
            message: lb.status_message.clone(),
            last_transition: lb.last_transition,
            listener_count,
            pool_count: pools.len() as u32,
            backend_count,
            healthy_backends,
        })
    }
}

#[tonic::async_trait]
impl pb::lb_service_server::LbService for Api {
    async fn create_load_balancer(
        &self,
        req: Request<pb::CreateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("org/{}/lb/{}", r.org_id, r.name);
        audited(
            &p,
            "fiberlb:loadbalancers:create",
            &fallback,
            self.create_lb(&p, r),
        )
        .await
    }

    async fn get_load_balancer(
        &self,
        req: Request<pb::GetLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().lb_id;
        reply(
            async {
                self.lb_proto(&self.lb_for(&p, &id, "fiberlb:loadbalancers:get").await?)
                    .await
            }
            .await,
        )
    }

    async fn update_load_balancer(
        &self,
        req: Request<pb::UpdateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}", r.lb_id);
        audited(
            &p,
            "fiberlb:loadbalancers:update",
            &fallback,
            self.update_lb(&p, r),
        )
        .await
    }

    async fn delete_load_balancer(
        &self,
        req: Request<pb::DeleteLoadBalancerRequest>,
    ) -> Result<Response<pb::DeleteLoadBalancerResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}", r.lb_id);
        audited(
            &p,
            "fiberlb:loadbalancers:delete",
            &fallback,
            self.delete_lb(&p, r),
        )
        .await
    }

    async fn list_load_balancers(
        &self,
        req: Request<pb::ListLoadBalancersRequest>,
    ) -> Result<Response<pb::ListLoadBalancersResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(self.list_lbs(&p, req.into_inner()).await)
    }

    async fn get_load_balancer_status(
        &self,
        req: Request<pb::GetLoadBalancerStatusRequest>,
    ) -> Result<Response<pb::LoadBalancerStatus>, Status> {
        let p = self.principal(&req).await?;
        reply(self.lb_status(&p, &req.into_inner().lb_id).await)
    }

    async fn enable_load_balancer(
        &self,
        req: Request<pb::EnableLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}", r.lb_id);
        audited(
            &p,
            "fiberlb:loadbalancers:update",
            &fallback,
            self.set_lb_status(&p, &r.lb_id, r.revision, true),
        )
        .await
    }

    async fn disable_load_balancer(
        &self,
        req: Request<pb::DisableLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}", r.lb_id);
        audited(
            &p,
            "fiberlb:loadbalancers:update",
            &fallback,
            self.set_lb_status(&p, &r.lb_id, r.revision, false),
        )
        .await
    }
}
