//! The create and update calls of the executor.

use fiberlb_proto::v1 as pv;

use super::Executor;
use crate::cli::apply::requests::{self, Resolve};
use crate::cli::document::{BackendDoc, ListenerDoc, LoadBalancerDoc, PoolDoc};
use crate::cli::error::CliError;

impl Executor<'_> {
    pub(super) async fn create_lb(
        &mut self,
        lb: usize,
        spec: &LoadBalancerDoc,
    ) -> Result<(), CliError> {
        let req = pv::CreateLoadBalancerRequest {
            name: spec.name.clone(),
            org_id: spec.org_id.clone(),
            project_id: spec.project_id.clone(),
            description: spec.description.clone().filter(|d| !d.is_empty()),
            tags: requests::string_map(&spec.tags),
            metadata: requests::string_map(&spec.metadata),
            vip: spec.vip.clone().filter(|v| !v.is_empty()),
        };
        let r = self
            .api
            .lb
            .clone()
            .create_load_balancer(req)
            .await?
            .into_inner();
        self.seen(&r.id, r.revision);
        if let Some(slot) = self.lb_ids.get_mut(lb) {
            *slot = Some(r.id.clone());
        }
        if spec.enabled == Some(false) {
            let delta = LoadBalancerDoc {
                enabled: Some(false),
                ..Default::default()
            };
            self.update_lb(&r.id, &delta).await?;
        }
        Ok(())
    }

    pub(super) async fn update_lb(
        &mut self,
        id: &str,
        delta: &LoadBalancerDoc,
    ) -> Result<(), CliError> {
        if delta.description.is_some()
            || delta.vip.is_some()
            || delta.tags.is_some()
            || delta.metadata.is_some()
        {
            let (tags, clear_tags) = requests::map_update(&delta.tags);
            let (metadata, clear_metadata) = requests::map_update(&delta.metadata);
            let req = pv::UpdateLoadBalancerRequest {
                lb_id: id.to_string(),
                description: delta.description.clone(),
                vip: delta.vip.clone(),
                tags,
                clear_tags,
                metadata,
                clear_metadata,
                revision: self.rev(id),
                ..Default::default()
            };
            let r = self
                .api
                .lb
                .clone()
                .update_load_balancer(req)
                .await?
                .into_inner();
            self.seen(&r.id, r.revision);
        }
        let r = match delta.enabled {
            Some(true) => {
                let req = pv::EnableLoadBalancerRequest {
                    lb_id: id.to_string(),
                    revision: self.rev(id),
                };
                self.api
                    .lb
                    .clone()
                    .enable_load_balancer(req)
                    .await?
                    .into_inner()
            }
            Some(false) => {
                let req = pv::DisableLoadBalancerRequest {
                    lb_id: id.to_string(),
                    revision: self.rev(id),
                };
                self.api
                    .lb
                    .clone()
                    .disable_load_balancer(req)
                    .await?
                    .into_inner()
            }
            None => return Ok(()),
        };
        self.seen(&r.id, r.revision);
        Ok(())
    }

    pub(super) async fn create_pool(&mut self, lb: usize, spec: &PoolDoc) -> Result<(), CliError> {
        let req = pv::CreatePoolRequest {
            lb_id: self.lb_id(lb)?,
            name: spec.name.clone(),
            algorithm: spec.algorithm.map_or(0, |a| a.to_proto()),
            health_check: spec.health_check.as_ref().map(requests::health_check),
            session_persistence: spec.session_persistence.as_ref().map(requests::persistence),
            circuit_breaker: spec.circuit_breaker.as_ref().map(requests::circuit_breaker),
            proxy_protocol: spec.proxy_protocol.map_or(0, |p| p.to_proto()),
        };
        let r = self.api.pool.clone().create_pool(req).await?.into_inner();
        self.seen(&r.id, r.revision);
        self.pool_ids.insert((lb, spec.name.clone()), r.id.clone());
        if spec.enabled == Some(false) {
            let delta = PoolDoc {
                enabled: Some(false),
                ..Default::default()
            };
            self.update_pool(&r.id, &delta).await?;
        }
        Ok(())
    }

    pub(super) async fn update_pool(&mut self, id: &str, delta: &PoolDoc) -> Result<(), CliError> {
        if delta.algorithm.is_some()
            || delta.enabled.is_some()
            || delta.session_persistence.is_some()
            || delta.circuit_breaker.is_some()
            || delta.proxy_protocol.is_some()
        {
            let req = pv::UpdatePoolRequest {
                pool_id: id.to_string(),
                name: None,
                algorithm: delta.algorithm.map(|a| a.to_proto()),
                session_persistence: delta
                    .session_persistence
                    .as_ref()
                    .map(requests::persistence),
                circuit_breaker: delta
                    .circuit_breaker
                    .as_ref()
                    .map(requests::circuit_breaker),
                enabled: delta.enabled,
                revision: self.rev(id),
                proxy_protocol: delta.proxy_protocol.map(|p| p.to_proto()),
            };
            let r = self.api.pool.clone().update_pool(req).await?.into_inner();
            self.seen(&r.id, r.revision);
        }
        if let Some(hc) = &delta.health_check {
            let req = pv::SetHealthCheckRequest {
                pool_id: id.to_string(),
                health_check: Some(requests::health_check(hc)),
                revision: self.rev(id),
            };
            let r = self
                .api
                .pool
                .clone()
                .set_health_check(req)
                .await?
                .into_inner();
            self.seen(&r.id, r.revision);
        }
        Ok(())
    }

    pub(super) async fn create_backend(
        &mut self,
        pool_id: &str,
        spec: &BackendDoc,
    ) -> Result<(), CliError> {
        let req = pv::AddBackendRequest {
            pool_id: pool_id.to_string(),
            name: spec.name.clone(),
            address: requests::address(spec),
            port: spec.port.unwrap_or(0),
            weight: spec.weight,
            metadata: requests::string_map(&spec.metadata),
            backup: spec.backup,
            max_connections: spec.max_connections.filter(|m| *m > 0),
        };
        let r = self
            .api
            .backend
            .clone()
            .add_backend(req)
            .await?
            .into_inner();
        self.seen(&r.id, r.revision);
        if spec.enabled == Some(false) {
            let delta = BackendDoc {
                enabled: Some(false),
                ..Default::default()
            };
            self.update_backend(&r.id, &delta).await?;
        }
        Ok(())
    }

    pub(super) async fn update_backend(
        &mut self,
        id: &str,
        delta: &BackendDoc,
    ) -> Result<(), CliError> {
        let req = pv::UpdateBackendRequest {
            backend_id: id.to_string(),
            name: None,
            port: delta.port,
            weight: delta.weight,
            enabled: delta.enabled,
            revision: self.rev(id),
            backup: delta.backup,
            address: requests::address(delta),
            max_connections: delta.max_connections,
        };
        let r = self
            .api
            .backend
            .clone()
            .update_backend(req)
            .await?
            .into_inner();
        self.seen(&r.id, r.revision);
        Ok(())
    }

    pub(super) async fn create_listener(
        &mut self,
        lb: usize,
        spec: &ListenerDoc,
    ) -> Result<(), CliError> {
        let scope = self.scope(lb);
        let req = pv::CreateListenerRequest {
            lb_id: self.lb_id(lb)?,
            name: spec.name.clone(),
            protocol: spec.protocol.map_or(0, |p| p.to_proto()),
            port: spec.port.unwrap_or(0),
            tls_config: spec
                .tls
                .as_ref()
                .map(|t| requests::tls(t, &scope))
                .transpose()?,
            default_pool_id: spec
                .default_pool
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|p| scope.pool_id(p))
                .transpose()?,
            connection_limit: spec.connection_limit.filter(|l| *l > 0),
            timeout_client: spec.timeout_client,
            timeout_backend: spec.timeout_backend,
        };
        let r = self
            .api
            .listener
            .clone()
            .create_listener(req)
            .await?
            .into_inner();
        self.seen(&r.id, r.revision);
        self.listener_ids
            .insert((lb, spec.name.clone()), r.id.clone());
        if spec.enabled == Some(false) {
            let delta = ListenerDoc {
                enabled: Some(false),
                ..Default::default()
            };
            self.update_listener(lb, &r.id, &delta).await?;
        }
        Ok(())
    }

    pub(super) async fn update_listener(
        &mut self,
        lb: usize,
        id: &str,
        delta: &ListenerDoc,
    ) -> Result<(), CliError> {
        let scope = self.scope(lb);
        let default_pool_id = match delta.default_pool.as_deref() {
            None => None,
            Some("") => Some(String::new()),
            Some(p) => Some(scope.pool_id(p)?),
        };
        let req = pv::UpdateListenerRequest {
            listener_id: id.to_string(),
            name: None,
            tls_config: delta
                .tls
                .as_ref()
                .map(|t| requests::tls(t, &scope))
                .transpose()?,
            default_pool_id,
            connection_limit: delta.connection_limit,
            timeout_client: delta.timeout_client,
            timeout_backend: delta.timeout_backend,
            enabled: delta.enabled,
            revision: self.rev(id),
            port: delta.port,
        };
        let r = self
            .api
            .listener
            .clone()
            .update_listener(req)
            .await?
            .into_inner();
        self.seen(&r.id, r.revision);
        Ok(())
    }
}
