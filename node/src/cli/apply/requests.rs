//! Document entries to API messages. Names of pools and certificates become ids through
//! a resolver; a field the document leaves out becomes the message's "server default"
//! value (0, empty), except the flags that must default to on (`enabled` of rules,
//! health checks and circuit breakers) and a redirect's status (302).

use fiberlb_proto::v1 as pv;

use crate::cli::document::{
    ActionDoc, BackendDoc, CircuitBreakerDoc, ConditionDoc, HealthCheckDoc, PersistenceDoc,
    RuleDoc, StringMap, TlsDoc,
};
use crate::cli::enums::{CheckKind, Method};
use crate::cli::error::CliError;

/// Maps the names a document uses to ids.
pub trait Resolve {
    /// Id of the pool `name` of the load balancer at hand.
    fn pool_id(&self, name: &str) -> Result<String, CliError>;
    /// Id of the certificate `name` in the load balancer's scope.
    fn cert_id(&self, name: &str) -> Result<String, CliError>;
}

fn map(m: &Option<StringMap>) -> std::collections::HashMap<String, String> {
    m.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// The health check message.
pub fn health_check(hc: &HealthCheckDoc) -> pv::HealthCheck {
    use pv::health_check::CheckType;
    let method = hc.method.unwrap_or(Method::Get).to_proto();
    let check = match hc.kind {
        CheckKind::Tcp => CheckType::Tcp(pv::TcpCheck {}),
        CheckKind::Http => CheckType::Http(pv::HttpCheck {
            path: hc.path.clone().unwrap_or_default(),
            method,
            expected_codes: hc.expected_codes.clone().unwrap_or_default(),
            host_header: non_empty(&hc.host_header),
            headers: map(&hc.headers),
        }),
        CheckKind::Https => CheckType::Https(pv::HttpsCheck {
            path: hc.path.clone().unwrap_or_default(),
            method,
            expected_codes: hc.expected_codes.clone().unwrap_or_default(),
            host_header: non_empty(&hc.host_header),
            headers: map(&hc.headers),
            verify_tls: hc.verify_tls.unwrap_or(false),
        }),
        CheckKind::Dns => CheckType::Dns(pv::DnsCheck {
            hostname: hc.hostname.clone().unwrap_or_default(),
            record_type: hc.record_type.map_or(0, |t| t.to_proto()),
            expected_address: non_empty(&hc.expected_address),
        }),
        CheckKind::Grpc => CheckType::Grpc(pv::GrpcCheck {
            service: non_empty(&hc.service),
        }),
    };
    pv::HealthCheck {
        id: String::new(),
        check_type: Some(check),
        interval: hc.interval.unwrap_or(0),
        timeout: hc.timeout.unwrap_or(0),
        healthy_threshold: hc.healthy_threshold.unwrap_or(0),
        unhealthy_threshold: hc.unhealthy_threshold.unwrap_or(0),
        enabled: hc.enabled.unwrap_or(true),
    }
}

/// The session persistence message.
pub fn persistence(p: &PersistenceDoc) -> pv::SessionPersistence {
    pv::SessionPersistence {
        mode: p.mode.map_or(0, |m| m.to_proto()),
        cookie_name: non_empty(&p.cookie_name),
        ttl_seconds: p.ttl_seconds.unwrap_or(0),
    }
}

/// The circuit breaker message.
pub fn circuit_breaker(c: &CircuitBreakerDoc) -> pv::CircuitBreakerConfig {
    pv::CircuitBreakerConfig {
        enabled: c.enabled.unwrap_or(true),
        failure_threshold: c.failure_threshold.unwrap_or(0),
        success_threshold: c.success_threshold.unwrap_or(0),
        timeout_seconds: c.timeout_seconds.unwrap_or(0),
        failure_rate_threshold: c.failure_rate_threshold.unwrap_or(0.0),
        min_request_volume: c.min_request_volume.unwrap_or(0),
        slow_call_threshold_ms: c.slow_call_threshold_ms.unwrap_or(0),
        slow_call_rate_threshold: c.slow_call_rate_threshold.unwrap_or(0.0),
        half_open_max_requests: c.half_open_max_requests.unwrap_or(0),
    }
}

/// The backend's address, if the document gives one.
pub fn address(b: &BackendDoc) -> Option<pv::BackendAddress> {
    use pv::backend_address::Address;
    let a = match (&b.ip, &b.hostname, &b.vm_id) {
        (Some(ip), _, _) => Address::Ip(ip.clone()),
        (_, Some(h), _) => Address::Hostname(h.clone()),
        (_, _, Some(v)) => Address::VmId(v.clone()),
        _ => return None,
    };
    Some(pv::BackendAddress { address: Some(a) })
}

/// The TLS message, certificates by id.
pub fn tls(t: &TlsDoc, r: &dyn Resolve) -> Result<pv::TlsConfig, CliError> {
    let cert = |name: &Option<String>| non_empty(name).map(|n| r.cert_id(&n)).transpose();
    Ok(pv::TlsConfig {
        certificate_id: cert(&t.certificate)?.unwrap_or_default(),
        min_version: t.min_version.map_or(0, |v| v.to_proto()),
        cipher_suites: t.cipher_suites.clone().unwrap_or_default(),
        client_auth: t.client_auth.map_or(0, |c| c.to_proto()),
        sni_certificates: t
            .sni_certificates
            .iter()
            .flatten()
            .map(|(sni, name)| Ok((sni.clone(), r.cert_id(name)?)))
            .collect::<Result<_, CliError>>()?,
        client_ca_certificate_id: cert(&t.client_ca_certificate)?,
    })
}

/// The routing rule message (no id).
pub fn rule(rd: &RuleDoc, r: &dyn Resolve) -> Result<pv::RoutingRule, CliError> {
    Ok(pv::RoutingRule {
        id: String::new(),
        name: rd.name.clone(),
        priority: rd.priority.unwrap_or(0),
        conditions: rd
            .conditions
            .iter()
            .flatten()
            .filter_map(condition)
            .collect(),
        action: rd.action.as_ref().map(|a| action(a, r)).transpose()?,
        enabled: rd.enabled.unwrap_or(true),
    })
}

fn condition(c: &ConditionDoc) -> Option<pv::RuleCondition> {
    use pv::rule_condition::Condition;
    let cond = if let Some(v) = &c.host_header {
        Condition::HostHeader(pv::HostHeaderCondition { values: v.clone() })
    } else if let Some(v) = &c.path_prefix {
        Condition::PathPrefix(pv::PathPrefixCondition { value: v.clone() })
    } else if let Some(v) = &c.path_exact {
        Condition::PathExact(pv::PathExactCondition { value: v.clone() })
    } else if let Some(v) = &c.path_regex {
        Condition::PathRegex(pv::PathRegexCondition { pattern: v.clone() })
    } else if let Some(h) = &c.header {
        Condition::Header(pv::HeaderCondition {
            name: h.name.clone(),
            values: h.values.clone(),
        })
    } else if let Some(m) = &c.method {
        Condition::Method(pv::MethodCondition {
            methods: m.iter().map(|m| m.to_proto()).collect(),
        })
    } else if let Some(q) = &c.query_param {
        Condition::QueryParam(pv::QueryParamCondition {
            name: q.name.clone(),
            value: q.value.clone(),
        })
    } else if let Some(s) = &c.source_ip {
        Condition::SourceIp(pv::SourceIpCondition { cidrs: s.clone() })
    } else {
        return None;
    };
    Some(pv::RuleCondition {
        condition: Some(cond),
    })
}

fn action(a: &ActionDoc, r: &dyn Resolve) -> Result<pv::RuleAction, CliError> {
    use pv::rule_action::Action;
    let act = if let Some(pool) = &a.forward_to_pool {
        Action::ForwardToPool(pv::ForwardToPoolAction {
            pool_id: r.pool_id(pool)?,
        })
    } else if let Some(rd) = &a.redirect {
        Action::Redirect(pv::RedirectAction {
            url: rd.url.clone(),
            status_code: rd.status_code.unwrap_or(302),
        })
    } else if let Some(f) = &a.fixed_response {
        Action::FixedResponse(pv::FixedResponseAction {
            status_code: f.status_code,
            content_type: f.content_type.clone().unwrap_or_default(),
            body: f.body.clone().unwrap_or_default(),
        })
    } else {
        return Err(CliError::invalid(
            "a rule action needs forwardToPool, redirect or fixedResponse",
        ));
    };
    Ok(pv::RuleAction { action: Some(act) })
}

/// A map for a request's tags/metadata, and whether to clear (an empty map given).
pub fn map_update(m: &Option<StringMap>) -> (std::collections::HashMap<String, String>, bool) {
    match m {
        Some(m) if m.is_empty() => (Default::default(), true),
        other => (map(other), false),
    }
}

/// A request's tags/metadata map.
pub fn string_map(m: &Option<StringMap>) -> std::collections::HashMap<String, String> {
    map(m)
}
