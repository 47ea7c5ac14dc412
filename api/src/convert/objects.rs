//! Top-level objects to proto, and backend addresses from proto.

use fiberlb_proto::v1 as pb;
use pb::backend_address::Address as PbAddr;

use super::enums::*;
use super::listener::{rule_to_proto, tls_to_proto};
use super::pool::{circuit_breaker_to_proto, health_check_to_proto, persistence_to_proto};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::model::*;
use crate::validate;

/// Validates a backend address: an IP literal, an RFC 1123 host name or a VM id.
pub fn backend_address_from_proto(a: Option<&pb::BackendAddress>) -> ApiResult<BackendAddress> {
    let bad = |m: String| ApiError::new(ErrorCode::InvalidBackendAddress, m);
    match a.and_then(|a| a.address.as_ref()) {
        None => Err(bad(
            "address: one of ip, hostname or vm_id is required".into()
        )),
        Some(PbAddr::Ip(ip)) => {
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|_| bad(format!("address.ip: {ip:?} is not an IP address")))?;
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(bad(format!("address.ip: {ip} cannot be a backend")));
            }
            Ok(BackendAddress::Ip(ip))
        }
        Some(PbAddr::Hostname(h)) => {
            if h.parse::<std::net::IpAddr>().is_ok() {
                return Err(bad(format!(
                    "address.hostname: {h:?} is an IP address; use address.ip"
                )));
            }
            if !validate::is_valid_hostname(h) {
                return Err(bad(format!(
                    "address.hostname: {h:?} is not a valid host name"
                )));
            }
            Ok(BackendAddress::Hostname(h.to_ascii_lowercase()))
        }
        Some(PbAddr::VmId(v)) => {
            if v.is_empty()
                || v.len() > 128
                || !v
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            {
                return Err(bad(format!("address.vm_id: {v:?} is not a VM id")));
            }
            Ok(BackendAddress::VmId(v.clone()))
        }
    }
}

/// A backend address to proto.
pub fn backend_address_to_proto(a: &BackendAddress) -> pb::BackendAddress {
    pb::BackendAddress {
        address: Some(match a {
            BackendAddress::Ip(ip) => PbAddr::Ip(ip.to_string()),
            BackendAddress::Hostname(h) => PbAddr::Hostname(h.clone()),
            BackendAddress::VmId(v) => PbAddr::VmId(v.clone()),
        }),
    }
}

/// Health status to proto.
pub fn health_to_proto(h: &HealthStatus) -> pb::HealthStatus {
    pb::HealthStatus {
        healthy: h.healthy,
        last_check: h.last_check,
        last_healthy: h.last_healthy,
        consecutive_failures: h.consecutive_failures,
        consecutive_successes: h.consecutive_successes,
        last_error: h.last_error.clone(),
    }
}

impl LoadBalancer {
    /// To proto, with the ids of its listeners.
    pub fn to_proto(&self, listeners: Vec<String>) -> pb::LoadBalancer {
        pb::LoadBalancer {
            id: self.id.clone(),
            name: self.name.clone(),
            org_id: self.scope.org_id.clone(),
            project_id: self.scope.project_id.clone(),
            description: self.description.clone(),
            listeners,
            default_pool_id: self.default_pool_id.clone(),
            status: lb_status_to(self.status),
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.clone(),
            metadata: self.metadata.clone().into_iter().collect(),
            tags: self.tags.clone().into_iter().collect(),
            vip: self.vip.map(|v| v.to_string()).unwrap_or_default(),
            revision: self.revision,
            status_message: self.status_message.clone(),
        }
    }
}

impl Listener {
    /// To proto.
    pub fn to_proto(&self) -> pb::Listener {
        pb::Listener {
            id: self.id.clone(),
            lb_id: self.lb_id.clone(),
            name: self.name.clone(),
            protocol: protocol_to(self.protocol),
            port: self.port as u32,
            tls_config: self.tls.as_ref().map(tls_to_proto),
            default_pool_id: self.default_pool_id.clone(),
            rules: self.rules.iter().map(rule_to_proto).collect(),
            connection_limit: self.connection_limit,
            timeout_client: self.timeout_client_ms,
            timeout_backend: self.timeout_backend_ms,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

impl Pool {
    /// To proto, with the ids of its backends.
    pub fn to_proto(&self, backends: Vec<String>) -> pb::Pool {
        pb::Pool {
            id: self.id.clone(),
            lb_id: self.lb_id.clone(),
            name: self.name.clone(),
            algorithm: algorithm_to(self.algorithm),
            backends,
            health_check: self.health_check.as_ref().map(health_check_to_proto),
            session_persistence: self.session_persistence.as_ref().map(persistence_to_proto),
            circuit_breaker: self.circuit_breaker.as_ref().map(circuit_breaker_to_proto),
            proxy_protocol: proxy_protocol_to(self.proxy_protocol),
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

impl Backend {
    /// To proto, with its current health.
    pub fn to_proto(&self, health: &HealthStatus) -> pb::Backend {
        pb::Backend {
            id: self.id.clone(),
            pool_id: self.pool_id.clone(),
            name: self.name.clone(),
            address: Some(backend_address_to_proto(&self.address)),
            port: self.port as u32,
            weight: self.weight,
            status: backend_status_to(self.status),
            health_status: Some(health_to_proto(health)),
            enabled: self.enabled,
            metadata: self.metadata.clone().into_iter().collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
            backup: self.backup,
            drain_deadline: self.drain_deadline,
            max_connections: self.max_connections,
            // Runtime facts: filled in by the service from the answering node.
            active_connections: 0,
            drained: false,
        }
    }
}

impl Certificate {
    /// To proto; the private key is never included.
    pub fn to_proto(&self) -> pb::Certificate {
        pb::Certificate {
            id: self.id.clone(),
            name: self.name.clone(),
            org_id: self.scope.org_id.clone(),
            project_id: self.scope.project_id.clone(),
            certificate_pem: self.certificate_pem.clone(),
            subject_names: self.subject_names.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            fingerprint_sha256: self.fingerprint_sha256.clone(),
            has_private_key: self.private_key_pem.is_some(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

impl AccessToken {
    /// To proto; the secret hash is never included.
    pub fn to_proto(&self) -> pb::AccessToken {
        let (org_id, project_id) = match &self.scope {
            TokenScope::System => (String::new(), None),
            TokenScope::Org { org_id } => (org_id.clone(), None),
            TokenScope::Project { org_id, project_id } => {
                (org_id.clone(), Some(project_id.clone()))
            }
        };
        pb::AccessToken {
            id: self.id.clone(),
            name: self.name.clone(),
            principal: self.principal.clone(),
            org_id,
            project_id,
            actions: self.actions.clone(),
            kind: credential_kind_to(self.kind),
            created_at: self.created_at,
            expires_at: self.expires_at,
            created_by: self.created_by.clone(),
            revoked: self.revoked,
        }
    }
}
