//! `PoolService`: pools, their health checks and status.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, reply, Api};
use crate::auth::Principal;
use crate::convert::{
    algorithm_from, circuit_breaker_from_proto, circuit_state_to, health_check_from_proto,
    persistence_from_proto, proxy_protocol_from,
};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{check_revision, contended, not_found, MAX_ATTEMPTS};
use crate::store::{Compare, Txn};
use crate::validate;

impl Api {
    /// Reads a pool the principal may act on.
    pub(crate) async fn pool_for(&self, p: &Principal, id: &str, action: &str) -> ApiResult<Pool> {
        let pool: Pool = self.repo.get(id).await?;
        p.authorize(action, &pool.scope, || not_found::<Pool>(id))?;
        Ok(pool)
    }

    /// A pool referenced from `lb` (default pool, rule target): it must exist in that LB.
    pub(crate) async fn pool_of_lb(
        &self,
        lb_id_holder: &impl LbRef,
        pool_id: &str,
        field: &str,
    ) -> ApiResult<Pool> {
        validate::id_ref(field, pool_id)?;
        match self.repo.find::<Pool>(pool_id).await? {
            Some(pool) if pool.lb_id == lb_id_holder.lb_id() => Ok(pool),
            _ => Err(ApiError::new(
                ErrorCode::PoolNotFound,
                format!(
                    "{field}: pool {pool_id} does not exist in load balancer {}",
                    lb_id_holder.lb_id()
                ),
            )),
        }
    }

    pub(crate) async fn pool_proto(&self, pool: &Pool) -> ApiResult<pb::Pool> {
        let ids = self
            .repo
            .ids_under(&keys::backend_by_pool_prefix(&pool.id))
            .await?;
        Ok(pool.to_proto(ids))
    }

    async fn check_pool_name_free(&self, lb_id: &str, name: &str) -> ApiResult<()> {
        if self
            .repo
            .index(&keys::pool_by_name(lb_id, name))
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorCode::PoolAlreadyExists,
                format!("a pool named {name} already exists in load balancer {lb_id}"),
            ));
        }
        Ok(())
    }

    async fn create_pool(
        &self,
        p: &Principal,
        r: pb::CreatePoolRequest,
    ) -> ApiResult<(pb::Pool, String)> {
        validate::object_name("name", &r.name)?;
        let algorithm = algorithm_from(r.algorithm)?;
        let health_check = r
            .health_check
            .as_ref()
            .map(health_check_from_proto)
            .transpose()?;
        let session_persistence = r
            .session_persistence
            .as_ref()
            .map(persistence_from_proto)
            .transpose()?;
        let circuit_breaker = r
            .circuit_breaker
            .as_ref()
            .map(circuit_breaker_from_proto)
            .transpose()?;
        let proxy_protocol = proxy_protocol_from(r.proxy_protocol)?;
        for _ in 0..MAX_ATTEMPTS {
            let lb = self.lb_for(p, &r.lb_id, "fiberlb:pools:create").await?;
            self.check_pool_name_free(&lb.id, &r.name).await?;
            let now = now_ms();
            let mut pool = Pool {
                id: new_id(),
                lb_id: lb.id.clone(),
                scope: lb.scope.clone(),
                name: r.name.clone(),
                algorithm,
                health_check: health_check.clone(),
                session_persistence: session_persistence.clone(),
                circuit_breaker: circuit_breaker.clone(),
                proxy_protocol,
                enabled: true,
                created_at: now,
                updated_at: now,
                revision: 0,
            };
            let txn = index::write(index::under(Txn::new(), &lb), None, &pool);
            if let Some(rev) = self.repo.commit(txn).await? {
                pool.revision = rev;
                let path = pool_path(&pool);
                return Ok((pool.to_proto(Vec::new()), path));
            }
        }
        Err(contended("create pool"))
    }

    /// Reads, changes and writes a pool with retries; `change` may fail validation.
    async fn modify_pool(
        &self,
        p: &Principal,
        id: &str,
        revision: Option<u64>,
        what: &str,
        change: impl Fn(&mut Pool) -> ApiResult<()>,
    ) -> ApiResult<(pb::Pool, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let old = self.pool_for(p, id, "fiberlb:pools:update").await?;
            check_revision(&old, revision)?;
            let mut pool = old.clone();
            change(&mut pool)?;
            if pool.name != old.name {
                self.check_pool_name_free(&pool.lb_id, &pool.name).await?;
            }
            pool.updated_at = now_ms();
            if let Some(rev) = self
                .repo
                .commit(index::write(Txn::new(), Some(&old), &pool))
                .await?
            {
                pool.revision = rev;
                let path = pool_path(&pool);
                return Ok((self.pool_proto(&pool).await?, path));
            }
        }
        Err(contended(what))
    }

    async fn delete_pool(
        &self,
        p: &Principal,
        r: pb::DeletePoolRequest,
    ) -> ApiResult<(pb::DeletePoolResponse, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let pool = self.pool_for(p, &r.pool_id, "fiberlb:pools:delete").await?;
            check_revision(&pool, r.revision)?;
            let gen_rev = self.repo.key_revision(&keys::gen(&pool.id)).await?;
            let backends = self
                .repo
                .count(&keys::backend_by_pool_prefix(&pool.id))
                .await?;
            if backends > 0 {
                return Err(ApiError::new(
                    ErrorCode::PoolNotEmpty,
                    format!(
                        "pool {} still has {backends} backend(s); remove them first",
                        pool.name
                    ),
                ));
            }
            let lb: LoadBalancer = self.repo.get(&pool.lb_id).await?;
            if lb.default_pool_id.as_deref() == Some(pool.id.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::PoolInUse,
                    format!(
                        "pool {} is the default pool of load balancer {}",
                        pool.name, lb.name
                    ),
                ));
            }
            let listeners: Vec<Listener> = self
                .repo
                .list_by_index(&keys::listener_by_lb_prefix(&pool.lb_id))
                .await?;
            if let Some(l) = listeners
                .iter()
                .find(|l| l.referenced_pools().any(|id| id == pool.id))
            {
                return Err(ApiError::new(
                    ErrorCode::PoolInUse,
                    format!("pool {} is used by listener {}", pool.name, l.name),
                ));
            }
            let txn = Txn::new().when(Compare::revision(keys::gen(&pool.id), gen_rev));
            let txn = index::touch(index::delete(txn, &pool), &pool.lb_id);
            if self.repo.commit(txn).await?.is_some() {
                let path = pool_path(&pool);
                return Ok((pb::DeletePoolResponse { pool_id: pool.id }, path));
            }
        }
        Err(contended("delete pool"))
    }

    async fn list_pools(
        &self,
        p: &Principal,
        r: pb::ListPoolsRequest,
    ) -> ApiResult<pb::ListPoolsResponse> {
        let lb = self.lb_for(p, &r.lb_id, "fiberlb:pools:list").await?;
        let items: Vec<Pool> = self
            .repo
            .list_by_index::<Pool>(&keys::pool_by_lb_prefix(&lb.id))
            .await?
            .into_iter()
            .filter(|pl| {
                r.name_filter
                    .as_deref()
                    .is_none_or(|f| pl.name.starts_with(f))
            })
            .collect();
        let page = paginate(
            items,
            |pl| name_key(&pl.name, &pl.id),
            r.limit,
            &r.page_token,
        )?;
        let mut pools = Vec::with_capacity(page.items.len());
        for pl in &page.items {
            pools.push(self.pool_proto(pl).await?);
        }
        Ok(pb::ListPoolsResponse {
            pools,
            next_page_token: page.next_page_token,
            total_count: page.total_count,
        })
    }

    async fn pool_status(&self, p: &Principal, id: &str) -> ApiResult<pb::PoolStatus> {
        let pool = self.pool_for(p, id, "fiberlb:pools:get").await?;
        let backends: Vec<Backend> = self
            .repo
            .list_by_index(&keys::backend_by_pool_prefix(&pool.id))
            .await?;
        let mut s = pb::PoolStatus {
            pool_id: pool.id.clone(),
            total_backends: backends.len() as u32,
            ..Default::default()
        };
        let mut worst = CircuitState::Closed;
        for b in &backends {
            if self.runtime.backend_health(&pool, b).healthy {
                s.healthy_backends += 1;
            } else {
                s.unhealthy_backends += 1;
            }
            if b.status == BackendStatus::Draining {
                s.draining_backends += 1;
            }
            worst = worst.max(self.runtime.circuit_state(&b.id));
        }
        s.circuit_state = circuit_state_to(worst);
        Ok(s)
    }
}

/// Anything that names a load balancer: the LB itself, a listener, a pool.
pub(crate) trait LbRef {
    fn lb_id(&self) -> &str;
}

impl LbRef for LoadBalancer {
    fn lb_id(&self) -> &str {
        &self.id
    }
}

impl LbRef for Listener {
    fn lb_id(&self) -> &str {
        &self.lb_id
    }
}

fn pool_path(pool: &Pool) -> String {
    format!("{}/lb/{}/pool/{}", pool.scope.path(), pool.lb_id, pool.id)
}

#[tonic::async_trait]
impl pb::pool_service_server::PoolService for Api {
    async fn create_pool(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("lb/{}/pool/{}", r.lb_id, r.name);
        audited(
            &p,
            "fiberlb:pools:create",
            &fallback,
            Api::create_pool(self, &p, r),
        )
        .await
    }

    async fn get_pool(
        &self,
        req: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().pool_id;
        reply(
            async {
                self.pool_proto(&self.pool_for(&p, &id, "fiberlb:pools:get").await?)
                    .await
            }
            .await,
        )
    }

    async fn update_pool(
        &self,
        req: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("pool/{}", r.pool_id);
        let fut = async {
            if let Some(n) = &r.name {
                validate::object_name("name", n)?;
            }
            let algorithm = r.algorithm.map(algorithm_from).transpose()?;
            let persistence = r
                .session_persistence
                .as_ref()
                .map(persistence_from_proto)
                .transpose()?;
            let breaker = r
                .circuit_breaker
                .as_ref()
                .map(circuit_breaker_from_proto)
                .transpose()?;
            let proxy_protocol = r.proxy_protocol.map(proxy_protocol_from).transpose()?;
            self.modify_pool(&p, &r.pool_id, r.revision, "update pool", |pool| {
                if let Some(n) = &r.name {
                    pool.name = n.clone();
                }
                if let Some(a) = algorithm {
                    pool.algorithm = a;
                }
                if let Some(s) = &persistence {
                    pool.session_persistence =
                        Some(s.clone()).filter(|s| s.mode != PersistenceMode::None);
                }
                if let Some(b) = &breaker {
                    pool.circuit_breaker = Some(b.clone());
                }
                if let Some(e) = r.enabled {
                    pool.enabled = e;
                }
                if let Some(v) = proxy_protocol {
                    pool.proxy_protocol = v;
                }
                Ok(())
            })
            .await
        };
        audited(&p, "fiberlb:pools:update", &fallback, fut).await
    }

    async fn delete_pool(
        &self,
        req: Request<pb::DeletePoolRequest>,
    ) -> Result<Response<pb::DeletePoolResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("pool/{}", r.pool_id);
        audited(
            &p,
            "fiberlb:pools:delete",
            &fallback,
            Api::delete_pool(self, &p, r),
        )
        .await
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(Api::list_pools(self, &p, req.into_inner()).await)
    }

    async fn set_health_check(
        &self,
        req: Request<pb::SetHealthCheckRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("pool/{}", r.pool_id);
        let fut = async {
            let hc = health_check_from_proto(&r.health_check.clone().unwrap_or_default())?;
            self.modify_pool(&p, &r.pool_id, r.revision, "set health check", |pool| {
                pool.health_check = Some(hc.clone());
                Ok(())
            })
            .await
        };
        audited(&p, "fiberlb:pools:update", &fallback, fut).await
    }

    async fn remove_health_check(
        &self,
        req: Request<pb::RemoveHealthCheckRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("pool/{}", r.pool_id);
        let fut = self.modify_pool(&p, &r.pool_id, r.revision, "remove health check", |pool| {
            pool.health_check = None;
            Ok(())
        });
        audited(&p, "fiberlb:pools:update", &fallback, fut).await
    }

    async fn get_pool_status(
        &self,
        req: Request<pb::GetPoolStatusRequest>,
    ) -> Result<Response<pb::PoolStatus>, Status> {
        let p = self.principal(&req).await?;
        reply(self.pool_status(&p, &req.into_inner().pool_id).await)
    }
}
