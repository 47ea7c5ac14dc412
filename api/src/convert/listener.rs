//! Listener sub-messages: TLS settings and routing rules.

use fiberlb_proto::v1 as pb;
use pb::rule_action::Action as PbAction;
use pb::rule_condition::Condition as PbCond;

use super::enums::*;
use crate::error::{ApiError, ApiResult};
use crate::model::*;
use crate::validate;

/// Patterns longer than this are refused: the regex engine is linear-time, but a huge
/// pattern still costs memory in every node's compiled route table.
const MAX_REGEX_LEN: usize = 1024;

/// Validates TLS settings (certificate references are checked by the service).
pub fn tls_from_proto(t: &pb::TlsConfig) -> ApiResult<TlsConfig> {
    validate::id_ref("tls_config.certificate_id", &t.certificate_id)?;
    let known: Vec<&str> = rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect();
    for s in &t.cipher_suites {
        if !known.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "tls_config.cipher_suites",
                format!("unknown suite {s:?}; known: {}", known.join(", ")),
            ));
        }
    }
    let client_auth = client_auth_from(t.client_auth)?;
    if let Some(ca) = &t.client_ca_certificate_id {
        validate::id_ref("tls_config.client_ca_certificate_id", ca)?;
    }
    if client_auth != ClientAuthMode::None && t.client_ca_certificate_id.is_none() {
        return Err(ApiError::invalid(
            "tls_config.client_ca_certificate_id",
            "required when client_auth is optional or required",
        ));
    }
    let mut sni = std::collections::BTreeMap::new();
    for (host, cert) in &t.sni_certificates {
        let host = validate::host_pattern("tls_config.sni_certificates", host)?;
        validate::id_ref("tls_config.sni_certificates", cert)?;
        sni.insert(host, cert.clone());
    }
    Ok(TlsConfig {
        certificate_id: t.certificate_id.clone(),
        min_version: tls_version_from(t.min_version)?,
        cipher_suites: t.cipher_suites.clone(),
        client_auth,
        sni_certificates: sni,
        client_ca_certificate_id: t.client_ca_certificate_id.clone(),
    })
}

/// TLS settings to proto.
pub fn tls_to_proto(t: &TlsConfig) -> pb::TlsConfig {
    pb::TlsConfig {
        certificate_id: t.certificate_id.clone(),
        min_version: tls_version_to(t.min_version),
        cipher_suites: t.cipher_suites.clone(),
        client_auth: client_auth_to(t.client_auth),
        sni_certificates: t.sni_certificates.clone().into_iter().collect(),
        client_ca_certificate_id: t.client_ca_certificate_id.clone(),
    }
}

fn condition_from(i: usize, c: &pb::RuleCondition) -> ApiResult<Condition> {
    let field = format!("rule.conditions[{i}]");
    let f = |sub: &str| format!("{field}.{sub}");
    let path = |sub: &str, v: &str| -> ApiResult<String> {
        if v.starts_with('/') && v.len() <= 2048 && !v.chars().any(char::is_control) {
            Ok(v.to_string())
        } else {
            Err(ApiError::invalid(
                &f(sub),
                format!("{v:?} must start with / (at most 2048 bytes)"),
            ))
        }
    };
    Ok(
        match c
            .condition
            .as_ref()
            .ok_or_else(|| ApiError::invalid(&field, "condition required"))?
        {
            PbCond::HostHeader(h) => {
                if h.values.is_empty() {
                    return Err(ApiError::invalid(
                        &f("host_header.values"),
                        "at least one host",
                    ));
                }
                let values = h
                    .values
                    .iter()
                    .map(|v| validate::host_pattern(&f("host_header.values"), v))
                    .collect::<ApiResult<_>>()?;
                Condition::HostHeader { values }
            }
            PbCond::PathPrefix(p) => Condition::PathPrefix {
                value: path("path_prefix.value", &p.value)?,
            },
            PbCond::PathExact(p) => Condition::PathExact {
                value: path("path_exact.value", &p.value)?,
            },
            PbCond::PathRegex(p) => {
                if p.pattern.is_empty() || p.pattern.len() > MAX_REGEX_LEN {
                    return Err(ApiError::invalid(
                        &f("path_regex.pattern"),
                        "must be 1-1024 bytes",
                    ));
                }
                regex::RegexBuilder::new(&p.pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        ApiError::invalid(
                            &f("path_regex.pattern"),
                            format!("does not compile: {e}"),
                        )
                    })?;
                Condition::PathRegex {
                    pattern: p.pattern.clone(),
                }
            }
            PbCond::Header(h) => {
                let name = h.name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ApiError::invalid(
                        &f("header.name"),
                        format!("{:?} is not a header name", h.name),
                    ));
                }
                if h.values.is_empty() {
                    return Err(ApiError::invalid(&f("header.values"), "at least one value"));
                }
                Condition::Header {
                    name,
                    values: h.values.clone(),
                }
            }
            PbCond::Method(m) => {
                if m.methods.is_empty() {
                    return Err(ApiError::invalid(
                        &f("method.methods"),
                        "at least one method",
                    ));
                }
                let methods = m
                    .methods
                    .iter()
                    .map(|v| method_from(&f("method.methods"), *v))
                    .collect::<ApiResult<_>>()?;
                Condition::Method { methods }
            }
            PbCond::QueryParam(q) => {
                if q.name.is_empty() {
                    return Err(ApiError::invalid(&f("query_param.name"), "required"));
                }
                Condition::QueryParam {
                    name: q.name.clone(),
                    value: q.value.clone(),
                }
            }
            PbCond::SourceIp(s) => {
                if s.cidrs.is_empty() {
                    return Err(ApiError::invalid(
                        &f("source_ip.cidrs"),
                        "at least one CIDR",
                    ));
                }
                let cidrs = s
                    .cidrs
                    .iter()
                    .map(|c| {
                        c.parse::<ipnet::IpNet>()
                            .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| {
                                ApiError::invalid(
                                    &f("source_ip.cidrs"),
                                    format!("{c:?} is not a CIDR"),
                                )
                            })
                    })
                    .collect::<ApiResult<_>>()?;
                Condition::SourceIp { cidrs }
            }
        },
    )
}

fn action_from(a: Option<&pb::RuleAction>) -> ApiResult<RuleAction> {
    let a = a
        .and_then(|a| a.action.as_ref())
        .ok_or_else(|| ApiError::invalid("rule.action", "required"))?;
    Ok(match a {
        PbAction::ForwardToPool(f) => {
            validate::id_ref("rule.action.forward_to_pool.pool_id", &f.pool_id)?;
            RuleAction::ForwardToPool {
                pool_id: f.pool_id.clone(),
            }
        }
        PbAction::Redirect(r) => {
            if !matches!(r.status_code, 301 | 302 | 307 | 308) {
                return Err(ApiError::invalid(
                    "rule.action.redirect.status_code",
                    format!("{} is not one of 301, 302, 307, 308", r.status_code),
                ));
            }
            if r.url.is_empty() || r.url.len() > 2048 || r.url.parse::<http::HeaderValue>().is_err()
            {
                return Err(ApiError::invalid(
                    "rule.action.redirect.url",
                    "must be a URL of at most 2048 bytes",
                ));
            }
            RuleAction::Redirect {
                url: r.url.clone(),
                status_code: r.status_code as u16,
            }
        }
        PbAction::FixedResponse(r) => {
            if !(200..=599).contains(&r.status_code) {
                return Err(ApiError::invalid(
                    "rule.action.fixed_response.status_code",
                    format!("{} is outside 200-599", r.status_code),
                ));
            }
            if r.body.len() > 64 * 1024 {
                return Err(ApiError::invalid(
                    "rule.action.fixed_response.body",
                    "at most 64 KiB",
                ));
            }
            let content_type = if r.content_type.is_empty() {
                "text/plain".to_string()
            } else {
                r.content_type.clone()
            };
            if content_type.parse::<http::HeaderValue>().is_err() {
                return Err(ApiError::invalid(
                    "rule.action.fixed_response.content_type",
                    "not a header value",
                ));
            }
            RuleAction::FixedResponse {
                status_code: r.status_code as u16,
                content_type,
                body: r.body.clone(),
            }
        }
    })
}

/// Validates a rule for a listener of `protocol`, keeping `id`. Pool references are checked
/// by the service.
pub fn rule_from_proto(
    r: &pb::RoutingRule,
    id: String,
    protocol: ListenerProtocol,
) -> ApiResult<RoutingRule> {
    validate::object_name("rule.name", &r.name)?;
    if !protocol.supports_rules() {
        return Err(ApiError::invalid(
            "listener",
            "routing rules apply to http, https and tcp_tls listeners only",
        ));
    }
    let conditions = r
        .conditions
        .iter()
        .enumerate()
        .map(|(i, c)| condition_from(i, c))
        .collect::<ApiResult<Vec<_>>>()?;
    if conditions.len() > 32 {
        return Err(ApiError::invalid(
            "rule.conditions",
            "at most 32 conditions",
        ));
    }
    let action = action_from(r.action.as_ref())?;
    if protocol == ListenerProtocol::TcpTls {
        // Passthrough sees only the SNI: host conditions and forwarding are all it can do.
        if conditions
            .iter()
            .any(|c| !matches!(c, Condition::HostHeader { .. }))
        {
            return Err(ApiError::invalid(
                "rule.conditions",
                "tcp_tls listeners route on host_header (SNI) only",
            ));
        }
        if !matches!(action, RuleAction::ForwardToPool { .. }) {
            return Err(ApiError::invalid(
                "rule.action",
                "tcp_tls listeners can only forward_to_pool",
            ));
        }
    }
    Ok(RoutingRule {
        id,
        name: r.name.clone(),
        priority: r.priority,
        conditions,
        action,
        enabled: r.enabled,
    })
}

fn condition_to(c: &Condition) -> pb::RuleCondition {
    let condition = match c {
        Condition::HostHeader { values } => PbCond::HostHeader(pb::HostHeaderCondition {
            values: values.clone(),
        }),
        Condition::PathPrefix { value } => PbCond::PathPrefix(pb::PathPrefixCondition {
            value: value.clone(),
        }),
        Condition::PathExact { value } => PbCond::PathExact(pb::PathExactCondition {
            value: value.clone(),
        }),
        Condition::PathRegex { pattern } => PbCond::PathRegex(pb::PathRegexCondition {
            pattern: pattern.clone(),
        }),
        Condition::Header { name, values } => PbCond::Header(pb::HeaderCondition {
            name: name.clone(),
            values: values.clone(),
        }),
        Condition::Method { methods } => PbCond::Method(pb::MethodCondition {
            methods: methods.iter().map(|m| method_to(*m)).collect(),
        }),
        Condition::QueryParam { name, value } => PbCond::QueryParam(pb::QueryParamCondition {
            name: name.clone(),
            value: value.clone(),
        }),
        Condition::SourceIp { cidrs } => PbCond::SourceIp(pb::SourceIpCondition {
            cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        }),
    };
    pb::RuleCondition {
        condition: Some(condition),
    }
}

/// A rule to proto.
pub fn rule_to_proto(r: &RoutingRule) -> pb::RoutingRule {
    let action = match &r.action {
        RuleAction::ForwardToPool { pool_id } => PbAction::ForwardToPool(pb::ForwardToPoolAction {
            pool_id: pool_id.clone(),
        }),
        RuleAction::Redirect { url, status_code } => PbAction::Redirect(pb::RedirectAction {
            url: url.clone(),
            status_code: *status_code as u32,
        }),
        RuleAction::FixedResponse {
            status_code,
            content_type,
            body,
        } => PbAction::FixedResponse(pb::FixedResponseAction {
            status_code: *status_code as u32,
            content_type: content_type.clone(),
            body: body.clone(),
        }),
    };
    pb::RoutingRule {
        id: r.id.clone(),
        name: r.name.clone(),
        priority: r.priority,
        conditions: r.conditions.iter().map(condition_to).collect(),
        action: Some(pb::RuleAction {
            action: Some(action),
        }),
        enabled: r.enabled,
    }
}
