//! `BackendService`: backends, drain, and their health as the fleet sees it.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, reply, Api};
use crate::auth::Principal;
use crate::convert::{backend_address_from_proto, health_to_proto};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{check_revision, contended, not_found, MAX_ATTEMPTS};
use crate::store::Txn;
use crate::validate;

/// Drain time when a request gives none.
const DEFAULT_DRAIN_SECONDS: u32 = 300;
/// Longest drain.
const MAX_DRAIN_SECONDS: u32 = 86_400;

impl Api {
    async fn backend_for(&self, p: &Principal, id: &str, action: &str) -> ApiResult<Backend> {
        let b: Backend = self.repo.get(id).await?;
        p.authorize(action, &b.scope, || not_found::<Backend>(id))?;
        Ok(b)
    }

    async fn backend_proto(&self, b: &Backend) -> ApiResult<pb::Backend> {
        let pool: Pool = self.repo.get(&b.pool_id).await?;
        Ok(self.backend_with_runtime(b, &self.runtime.backend_health(&pool, b)))
    }

    /// The proto of a backend with this node's runtime facts filled in.
    fn backend_with_runtime(&self, b: &Backend, health: &HealthStatus) -> pb::Backend {
        let mut out = b.to_proto(health);
        out.active_connections = self.runtime.active_connections(&b.id);
        out.drained = b.status == BackendStatus::Draining
            && (out.active_connections == 0 || b.drain_deadline.is_some_and(|d| d <= now_ms()));
        out
    }

    async fn check_backend_name_free(&self, pool_id: &str, name: &str, own: &str) -> ApiResult<()> {
        if let Some(id) = self
            .repo
            .index(&keys::backend_by_name(pool_id, name))
            .await?
        {
            if id != own {
                return Err(ApiError::new(
                    ErrorCode::BackendAlreadyExists,
                    format!("pool {pool_id} already has a backend named {name}"),
                ));
            }
        }
        Ok(())
    }

    async fn add_backend(
        &self,
        p: &Principal,
        r: pb::AddBackendRequest,
    ) -> ApiResult<(pb::Backend, String)> {
        validate::object_name("name", &r.name)?;
        let address = backend_address_from_proto(r.address.as_ref())?;
        let port = validate::port("port", r.port)?;
        let weight = validate::weight(r.weight.unwrap_or(1))?;
        let max_connections = validate::max_connections(r.max_connections.unwrap_or(0))?;
        let metadata = validate::labels("metadata", &r.metadata)?;
        for _ in 0..MAX_ATTEMPTS {
            let pool = self.pool_for(p, &r.pool_id, "fiberlb:backends:add").await?;
            let now = now_ms();
            let mut b = Backend {
                id: new_id(),
                pool_id: pool.id.clone(),
                lb_id: pool.lb_id.clone(),
                scope: pool.scope.clone(),
                name: r.name.clone(),
                address: address.clone(),
                port,
                weight,
                status: BackendStatus::Active,
                enabled: true,
                backup: r.backup.unwrap_or(false),
                max_connections,
                metadata: metadata.clone(),
                drain_deadline: None,
                remove_after_drain: false,
                created_at: now,
                updated_at: now,
                revision: 0,
            };
            self.check_backend_name_free(&pool.id, &b.name, &b.id)
                .await?;
            let txn = index::write(index::under(Txn::new(), &pool), None, &b);
            if let Some(rev) = self.repo.commit(txn).await? {
                b.revision = rev;
                let path = backend_path(&b);
                return Ok((
                    self.backend_with_runtime(&b, &self.runtime.backend_health(&pool, &b)),
                    path,
                ));
            }
        }
        Err(contended("add backend"))
    }

    /// Reads, changes and writes a backend with retries.
    async fn modify_backend(
        &self,
        p: &Principal,
        id: &str,
        revision: Option<u64>,
        action: &str,
        change: impl Fn(&mut Backend) -> ApiResult<()>,
    ) -> ApiResult<(Backend, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let old = self.backend_for(p, id, action).await?;
            check_revision(&old, revision)?;
            let mut b = old.clone();
            change(&mut b)?;
            if b.name != old.name {
                self.check_backend_name_free(&b.pool_id, &b.name, &b.id)
                    .await?;
            }
            b.updated_at = now_ms();
            let txn = index::touch(Txn::new(), &b.pool_id);
            if let Some(rev) = self.repo.commit(index::write(txn, Some(&old), &b)).await? {
                b.revision = rev;
                let path = backend_path(&b);
                return Ok((b, path));
            }
        }
        Err(contended(action))
    }

    async fn remove_backend(
        &self,
        p: &Principal,
        r: pb::RemoveBackendRequest,
    ) -> ApiResult<(pb::RemoveBackendResponse, String)> {
        if r.drain_first {
            let secs = drain_seconds(r.drain_timeout_seconds)?;
            let (b, path) = self
                .modify_backend(
                    p,
                    &r.backend_id,
                    r.revision,
                    "fiberlb:backends:remove",
                    |b| {
                        start_drain(b, secs);
                        b.remove_after_drain = true;
                        Ok(())
                    },
                )
                .await?;
            return Ok((
                pb::RemoveBackendResponse {
                    backend_id: b.id,
                    removed: false,
                    drain_deadline: b.drain_deadline,
                },
                path,
            ));
        }
        for _ in 0..MAX_ATTEMPTS {
            let b = self
                .backend_for(p, &r.backend_id, "fiberlb:backends:remove")
                .await?;
            check_revision(&b, r.revision)?;
            let txn = index::touch(index::delete(Txn::new(), &b), &b.pool_id);
            if self.repo.commit(txn).await?.is_some() {
                let path = backend_path(&b);
                return Ok((
                    pb::RemoveBackendResponse {
                        backend_id: b.id,
                        removed: true,
                        drain_deadline: None,
                    },
                    path,
                ));
            }
        }
        Err(contended("remove backend"))
    }

    async fn list_backends(
        &self,
        p: &Principal,
        r: pb::ListBackendsRequest,
    ) -> ApiResult<pb::ListBackendsResponse> {
        let pool = self
            .pool_for(p, &r.pool_id, "fiberlb:backends:list")
            .await?;
        let items: Vec<(Backend, HealthStatus)> = self
            .repo
            .list_by_index::<Backend>(&keys::backend_by_pool_prefix(&pool.id))
            .await?
            .into_iter()
            .map(|b| {
                let h = self.runtime.backend_health(&pool, &b);
                (b, h)
            })
            .filter(|(_, h)| !r.healthy_only.unwrap_or(false) || h.healthy)
            .filter(|(b, _)| {
                r.name_filter
                    .as_deref()
                    .is_none_or(|f| b.name.starts_with(f))
            })
            .collect();
        let page = paginate(
            items,
            |(b, _)| name_key(&b.name, &b.id),
            r.limit,
            &r.page_token,
        )?;
        Ok(pb::ListBackendsResponse {
            backends: page
                .items
                .iter()
                .map(|(b, h)| self.backend_with_runtime(b, h))
                .collect(),
            next_page_token: page.next_page_token,
            total_count: page.total_count,
        })
    }
}

fn drain_seconds(v: Option<u32>) -> ApiResult<u32> {
    match v.unwrap_or(DEFAULT_DRAIN_SECONDS) {
        s if s <= MAX_DRAIN_SECONDS => Ok(s),
        s => Err(ApiError::invalid(
            "timeout_seconds",
            format!("{s} exceeds {MAX_DRAIN_SECONDS}"),
        )),
    }
}

fn start_drain(b: &mut Backend, secs: u32) {
    b.status = BackendStatus::Draining;
    b.drain_deadline = Some(now_ms() + u64::from(secs) * 1000);
}

fn backend_path(b: &Backend) -> String {
    format!(
        "{}/lb/{}/pool/{}/backend/{}",
        b.scope.path(),
        b.lb_id,
        b.pool_id,
        b.id
    )
}

#[tonic::async_trait]
impl pb::backend_service_server::BackendService for Api {
    async fn add_backend(
        &self,
        req: Request<pb::AddBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("pool/{}/backend/{}", r.pool_id, r.name);
        audited(
            &p,
            "fiberlb:backends:add",
            &fallback,
            Api::add_backend(self, &p, r),
        )
        .await
    }

    async fn get_backend(
        &self,
        req: Request<pb::GetBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().backend_id;
        reply(
            async {
                self.backend_proto(&self.backend_for(&p, &id, "fiberlb:backends:get").await?)
                    .await
            }
            .await,
        )
    }

    async fn update_backend(
        &self,
        req: Request<pb::UpdateBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("backend/{}", r.backend_id);
        let fut = async {
            if let Some(n) = &r.name {
                validate::object_name("name", n)?;
            }
            let port = r.port.map(|v| validate::port("port", v)).transpose()?;
            let weight = r.weight.map(validate::weight).transpose()?;
            let max_connections = r
                .max_connections
                .map(validate::max_connections)
                .transpose()?;
            let address = r
                .address
                .as_ref()
                .map(|a| backend_address_from_proto(Some(a)))
                .transpose()?;
            let (b, path) = self
                .modify_backend(
                    &p,
                    &r.backend_id,
                    r.revision,
                    "fiberlb:backends:update",
                    |b| {
                        if let Some(n) = &r.name {
                            b.name = n.clone();
                        }
                        if let Some(v) = port {
                            b.port = v;
                        }
                        if let Some(w) = weight {
                            b.weight = w;
                        }
                        if let Some(e) = r.enabled {
                            b.enabled = e;
                        }
                        if let Some(x) = r.backup {
                            b.backup = x;
                        }
                        if let Some(m) = max_connections {
                            b.max_connections = m;
                        }
                        if let Some(a) = &address {
                            b.address = a.clone();
                        }
                        Ok(())
                    },
                )
                .await?;
            Ok((self.backend_proto(&b).await?, path))
        };
        audited(&p, "fiberlb:backends:update", &fallback, fut).await
    }

    async fn remove_backend(
        &self,
        req: Request<pb::RemoveBackendRequest>,
    ) -> Result<Response<pb::RemoveBackendResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("backend/{}", r.backend_id);
        audited(
            &p,
            "fiberlb:backends:remove",
            &fallback,
            Api::remove_backend(self, &p, r),
        )
        .await
    }

    async fn list_backends(
        &self,
        req: Request<pb::ListBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(Api::list_backends(self, &p, req.into_inner()).await)
    }

    async fn drain_backend(
        &self,
        req: Request<pb::DrainBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("backend/{}", r.backend_id);
        let fut = async {
            let secs = drain_seconds(r.timeout_seconds)?;
            let (b, path) = self
                .modify_backend(
                    &p,
                    &r.backend_id,
                    r.revision,
                    "fiberlb:backends:drain",
                    |b| {
                        start_drain(b, secs);
                        Ok(())
                    },
                )
                .await?;
            Ok((self.backend_proto(&b).await?, path))
        };
        audited(&p, "fiberlb:backends:drain", &fallback, fut).await
    }

    async fn undrain_backend(
        &self,
        req: Request<pb::UndrainBackendRequest>,
    ) -> Result<Response<pb::Backend>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("backend/{}", r.backend_id);
        let fut = async {
            let (b, path) = self
                .modify_backend(
                    &p,
                    &r.backend_id,
                    r.revision,
                    "fiberlb:backends:drain",
                    |b| {
                        b.status = BackendStatus::Active;
                        b.drain_deadline = None;
                        b.remove_after_drain = false;
                        Ok(())
                    },
                )
                .await?;
            Ok((self.backend_proto(&b).await?, path))
        };
        audited(&p, "fiberlb:backends:drain", &fallback, fut).await
    }

    async fn get_backend_health(
        &self,
        req: Request<pb::GetBackendHealthRequest>,
    ) -> Result<Response<pb::HealthStatus>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().backend_id;
        reply(
            async {
                let b = self.backend_for(&p, &id, "fiberlb:backends:get").await?;
                let pool: Pool = self.repo.get(&b.pool_id).await?;
                Ok(health_to_proto(&self.runtime.backend_health(&pool, &b)))
            }
            .await,
        )
    }

    async fn list_backend_health(
        &self,
        req: Request<pb::ListBackendHealthRequest>,
    ) -> Result<Response<pb::ListBackendHealthResponse>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().pool_id;
        reply(
            async {
                let pool = self.pool_for(&p, &id, "fiberlb:backends:list").await?;
                let mut backends: Vec<Backend> = self
                    .repo
                    .list_by_index(&keys::backend_by_pool_prefix(&pool.id))
                    .await?;
                backends.sort_by(|a, b| a.name.cmp(&b.name));
                let entries = backends
                    .iter()
                    .map(|b| pb::BackendHealthEntry {
                        backend_id: b.id.clone(),
                        backend_name: b.name.clone(),
                        health_status: Some(health_to_proto(
                            &self.runtime.backend_health(&pool, b),
                        )),
                    })
                    .collect();
                Ok(pb::ListBackendHealthResponse { entries })
            }
            .await,
        )
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
