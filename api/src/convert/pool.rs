//! Pool sub-messages: health checks, session persistence, circuit breakers.

use fiberlb_proto::v1 as pb;
use pb::health_check::CheckType;

use super::enums::*;
use crate::error::{ApiError, ApiResult};
use crate::model::*;
use crate::validate;

fn expected_codes(field: &str, codes: &[u32]) -> ApiResult<Vec<u16>> {
    if codes.len() > 32 {
        return Err(ApiError::invalid(field, "at most 32 codes"));
    }
    let v = codes
        .iter()
        .map(|c| match u16::try_from(*c) {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(ApiError::invalid(
                field,
                format!("{c} is not an HTTP status"),
            )),
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(if v.is_empty() { vec![200] } else { v })
}

/// The parts HTTP and HTTPS checks share, validated.
struct HttpProbe {
    path: String,
    method: HttpMethod,
    expected_codes: Vec<u16>,
    host_header: Option<String>,
    headers: std::collections::BTreeMap<String, String>,
}

fn http_parts(
    prefix: &str,
    path: &str,
    method: i32,
    codes: &[u32],
    host: &Option<String>,
    headers: &std::collections::HashMap<String, String>,
) -> ApiResult<HttpProbe> {
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(ApiError::invalid(
            &format!("{prefix}.path"),
            format!("{path:?} must be a path starting with /"),
        ));
    }
    let method = match method {
        0 => HttpMethod::Get,
        m => method_from(&format!("{prefix}.method"), m)?,
    };
    if !matches!(method, HttpMethod::Get | HttpMethod::Head) {
        return Err(ApiError::invalid(
            &format!("{prefix}.method"),
            "health checks use GET or HEAD",
        ));
    }
    if let Some(h) = host {
        if h.parse::<http::HeaderValue>().is_err() || h.is_empty() {
            return Err(ApiError::invalid(
                &format!("{prefix}.host_header"),
                "not a header value",
            ));
        }
    }
    for (k, v) in headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || v.parse::<http::HeaderValue>().is_err()
        {
            return Err(ApiError::invalid(
                &format!("{prefix}.headers"),
                format!("{k:?} is not a valid header"),
            ));
        }
    }
    Ok(HttpProbe {
        path,
        method,
        expected_codes: expected_codes(&format!("{prefix}.expected_codes"), codes)?,
        host_header: host.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    })
}

/// Validates a health check, assigning `id` when it has none.
pub fn health_check_from_proto(h: &pb::HealthCheck) -> ApiResult<HealthCheck> {
    let kind = match h
        .check_type
        .as_ref()
        .ok_or_else(|| ApiError::invalid("health_check.check_type", "required"))?
    {
        CheckType::Tcp(_) => CheckKind::Tcp,
        CheckType::Http(c) => {
            let HttpProbe {
                path,
                method,
                expected_codes,
                host_header,
                headers,
            } = http_parts(
                "health_check.http",
                &c.path,
                c.method,
                &c.expected_codes,
                &c.host_header,
                &c.headers,
            )?;
            CheckKind::Http {
                path,
                method,
                expected_codes,
                host_header,
                headers,
            }
        }
        CheckType::Https(c) => {
            let HttpProbe {
                path,
                method,
                expected_codes,
                host_header,
                headers,
            } = http_parts(
                "health_check.https",
                &c.path,
                c.method,
                &c.expected_codes,
                &c.host_header,
                &c.headers,
            )?;
            CheckKind::Https {
                path,
                method,
                expected_codes,
                host_header,
                headers,
                verify_tls: c.verify_tls,
            }
        }
        CheckType::Dns(d) => {
            if !validate::is_valid_hostname(&d.hostname) {
                return Err(ApiError::invalid(
                    "health_check.dns.hostname",
                    format!("{:?} is not a host name", d.hostname),
                ));
            }
            let record_type = dns_type_from(d.record_type)?;
            let expected_address = match &d.expected_address {
                None => None,
                Some(a) => {
                    let ip: std::net::IpAddr = a.parse().map_err(|_| {
                        ApiError::invalid(
                            "health_check.dns.expected_address",
                            format!("{a:?} is not an IP address"),
                        )
                    })?;
                    if ip.is_ipv4() != (record_type == DnsRecordType::A) {
                        return Err(ApiError::invalid(
                            "health_check.dns.expected_address",
                            "address family does not match record_type",
                        ));
                    }
                    Some(ip)
                }
            };
            CheckKind::Dns {
                hostname: d.hostname.clone(),
                record_type,
                expected_address,
            }
        }
        CheckType::Grpc(g) => CheckKind::Grpc {
            service: g.service.clone().filter(|s| !s.is_empty()),
        },
    };
    if h.interval > 3600 {
        return Err(ApiError::invalid(
            "health_check.interval",
            "at most 3600 seconds",
        ));
    }
    if h.timeout > 600 {
        return Err(ApiError::invalid(
            "health_check.timeout",
            "at most 600 seconds",
        ));
    }
    if h.interval != 0 && h.timeout > h.interval {
        return Err(ApiError::invalid(
            "health_check.timeout",
            "must not exceed the interval",
        ));
    }
    if h.healthy_threshold > 100 || h.unhealthy_threshold > 100 {
        return Err(ApiError::invalid(
            "health_check.healthy_threshold",
            "thresholds are at most 100",
        ));
    }
    Ok(HealthCheck {
        id: if h.id.is_empty() {
            new_id()
        } else {
            h.id.clone()
        },
        kind,
        interval_seconds: h.interval,
        timeout_seconds: h.timeout,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        enabled: h.enabled,
    })
}

/// A health check to proto.
pub fn health_check_to_proto(h: &HealthCheck) -> pb::HealthCheck {
    let check_type = match &h.kind {
        CheckKind::Tcp => CheckType::Tcp(pb::TcpCheck {}),
        CheckKind::Http {
            path,
            method,
            expected_codes,
            host_header,
            headers,
        } => CheckType::Http(pb::HttpCheck {
            path: path.clone(),
            method: method_to(*method),
            expected_codes: expected_codes.iter().map(|c| *c as u32).collect(),
            host_header: host_header.clone(),
            headers: headers.clone().into_iter().collect(),
        }),
        CheckKind::Https {
            path,
            method,
            expected_codes,
            host_header,
            headers,
            verify_tls,
        } => CheckType::Https(pb::HttpsCheck {
            path: path.clone(),
            method: method_to(*method),
            expected_codes: expected_codes.iter().map(|c| *c as u32).collect(),
            host_header: host_header.clone(),
            headers: headers.clone().into_iter().collect(),
            verify_tls: *verify_tls,
        }),
        CheckKind::Dns {
            hostname,
            record_type,
            expected_address,
        } => CheckType::Dns(pb::DnsCheck {
            hostname: hostname.clone(),
            record_type: dns_type_to(*record_type),
            expected_address: expected_address.map(|a| a.to_string()),
        }),
        CheckKind::Grpc { service } => CheckType::Grpc(pb::GrpcCheck {
            service: service.clone(),
        }),
    };
    pb::HealthCheck {
        id: h.id.clone(),
        check_type: Some(check_type),
        interval: h.interval_seconds,
        timeout: h.timeout_seconds,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        enabled: h.enabled,
    }
}

/// Validates session persistence.
pub fn persistence_from_proto(s: &pb::SessionPersistence) -> ApiResult<SessionPersistence> {
    let mode = persistence_mode_from(s.mode)?;
    let cookie_name = s.cookie_name.clone().filter(|c| !c.is_empty());
    if let Some(c) = &cookie_name {
        let token = c.len() <= 64
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ApiError::invalid(
                "session_persistence.cookie_name",
                format!("{c:?} is not a cookie name"),
            ));
        }
    }
    if mode == PersistenceMode::AppCookie && cookie_name.is_none() {
        return Err(ApiError::invalid(
            "session_persistence.cookie_name",
            "required for app_cookie",
        ));
    }
    if s.ttl_seconds > 30 * 86_400 {
        return Err(ApiError::invalid(
            "session_persistence.ttl_seconds",
            "at most 30 days",
        ));
    }
    Ok(SessionPersistence {
        mode,
        cookie_name,
        ttl_seconds: s.ttl_seconds,
    })
}

/// Session persistence to proto.
pub fn persistence_to_proto(s: &SessionPersistence) -> pb::SessionPersistence {
    pb::SessionPersistence {
        mode: persistence_mode_to(s.mode),
        cookie_name: s.cookie_name.clone(),
        ttl_seconds: s.ttl_seconds,
    }
}

/// Validates a circuit breaker. A zero `failure_threshold`, `success_threshold` or
/// `timeout_seconds` is kept: it means "the node's `[circuit_breaker]` default", resolved
/// by each node (and again when a reload changes the defaults). Other zero fields take
/// the spec defaults.
pub fn circuit_breaker_from_proto(c: &pb::CircuitBreakerConfig) -> ApiResult<CircuitBreakerConfig> {
    let d = CircuitBreakerConfig::default();
    let or = |v: u32, dv: u32| if v == 0 { dv } else { v };
    for (field, v) in [
        ("failure_rate_threshold", c.failure_rate_threshold),
        ("slow_call_rate_threshold", c.slow_call_rate_threshold),
    ] {
        if !(0.0..=1.0).contains(&v) || v.is_nan() {
            return Err(ApiError::invalid(
                &format!("circuit_breaker.{field}"),
                format!("{v} is outside 0.0-1.0"),
            ));
        }
    }
    if c.timeout_seconds > 86_400 {
        return Err(ApiError::invalid(
            "circuit_breaker.timeout_seconds",
            "at most 86400",
        ));
    }
    Ok(CircuitBreakerConfig {
        enabled: c.enabled,
        failure_threshold: c.failure_threshold,
        success_threshold: c.success_threshold,
        timeout_seconds: c.timeout_seconds,
        failure_rate_threshold: if c.failure_rate_threshold == 0.0 {
            d.failure_rate_threshold
        } else {
            c.failure_rate_threshold
        },
        min_request_volume: or(c.min_request_volume, d.min_request_volume),
        slow_call_threshold_ms: or(c.slow_call_threshold_ms, d.slow_call_threshold_ms),
        slow_call_rate_threshold: if c.slow_call_rate_threshold == 0.0 {
            d.slow_call_rate_threshold
        } else {
            c.slow_call_rate_threshold
        },
        half_open_max_requests: or(c.half_open_max_requests, d.half_open_max_requests),
    })
}

/// A circuit breaker to proto.
pub fn circuit_breaker_to_proto(c: &CircuitBreakerConfig) -> pb::CircuitBreakerConfig {
    pb::CircuitBreakerConfig {
        enabled: c.enabled,
        failure_threshold: c.failure_threshold,
        success_threshold: c.success_threshold,
        timeout_seconds: c.timeout_seconds,
        failure_rate_threshold: c.failure_rate_threshold,
        min_request_volume: c.min_request_volume,
        slow_call_threshold_ms: c.slow_call_threshold_ms,
        slow_call_rate_threshold: c.slow_call_rate_threshold,
        half_open_max_requests: c.half_open_max_requests,
    }
}
