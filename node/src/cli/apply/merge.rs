//! Overlaying a document entry on the current state ("a field the document leaves out
//! keeps the server's value") and reducing the result to the fields that differ.
//!
//! `merge_*` gives the desired state: the current one with every field the document sets
//! replaced. `delta_*` keeps only the fields of the desired state that differ from the
//! current one; an all-`None` delta means "unchanged".

use crate::cli::document::{
    ActionDoc, BackendDoc, CircuitBreakerDoc, HealthCheckDoc, ListenerDoc, LoadBalancerDoc,
    PersistenceDoc, PoolDoc, RuleDoc, TlsDoc,
};

fn pick<T: Clone>(cur: &Option<T>, want: &Option<T>) -> Option<T> {
    want.clone().or_else(|| cur.clone())
}

fn changed<T: Clone + PartialEq>(desired: &Option<T>, cur: &Option<T>) -> Option<T> {
    if desired != cur {
        desired.clone()
    } else {
        None
    }
}

/// Desired load balancer fields (no children).
pub fn merge_lb(cur: &LoadBalancerDoc, want: &LoadBalancerDoc) -> LoadBalancerDoc {
    LoadBalancerDoc {
        name: cur.name.clone(),
        org_id: cur.org_id.clone(),
        project_id: cur.project_id.clone(),
        description: pick(&cur.description, &want.description),
        vip: pick(&cur.vip, &want.vip),
        enabled: pick(&cur.enabled, &want.enabled),
        tags: pick(&cur.tags, &want.tags),
        metadata: pick(&cur.metadata, &want.metadata),
        default_pool: pick(&cur.default_pool, &want.default_pool),
        pools: Vec::new(),
        listeners: Vec::new(),
    }
}

/// The load balancer fields that change, except the default pool (set last, once the
/// pools exist).
pub fn delta_lb(desired: &LoadBalancerDoc, cur: &LoadBalancerDoc) -> Option<LoadBalancerDoc> {
    let d = LoadBalancerDoc {
        name: cur.name.clone(),
        org_id: cur.org_id.clone(),
        project_id: cur.project_id.clone(),
        description: changed(&desired.description, &cur.description),
        vip: changed(&desired.vip, &cur.vip),
        enabled: changed(&desired.enabled, &cur.enabled),
        tags: changed(&desired.tags, &cur.tags),
        metadata: changed(&desired.metadata, &cur.metadata),
        default_pool: None,
        pools: Vec::new(),
        listeners: Vec::new(),
    };
    let any = d.description.is_some()
        || d.vip.is_some()
        || d.enabled.is_some()
        || d.tags.is_some()
        || d.metadata.is_some();
    any.then_some(d)
}

/// Desired pool fields (no backends).
pub fn merge_pool(cur: &PoolDoc, want: &PoolDoc) -> PoolDoc {
    PoolDoc {
        name: cur.name.clone(),
        algorithm: pick(&cur.algorithm, &want.algorithm),
        enabled: pick(&cur.enabled, &want.enabled),
        health_check: merge_health_check(cur.health_check.as_ref(), want.health_check.as_ref()),
        session_persistence: match (&cur.session_persistence, &want.session_persistence) {
            (Some(c), Some(w)) => Some(PersistenceDoc {
                mode: pick(&c.mode, &w.mode),
                cookie_name: pick(&c.cookie_name, &w.cookie_name),
                ttl_seconds: pick(&c.ttl_seconds, &w.ttl_seconds),
            }),
            (c, w) => pick(c, w),
        },
        circuit_breaker: match (&cur.circuit_breaker, &want.circuit_breaker) {
            (Some(c), Some(w)) => Some(CircuitBreakerDoc {
                enabled: pick(&c.enabled, &w.enabled),
                failure_threshold: pick(&c.failure_threshold, &w.failure_threshold),
                success_threshold: pick(&c.success_threshold, &w.success_threshold),
                timeout_seconds: pick(&c.timeout_seconds, &w.timeout_seconds),
                failure_rate_threshold: pick(&c.failure_rate_threshold, &w.failure_rate_threshold),
                min_request_volume: pick(&c.min_request_volume, &w.min_request_volume),
                slow_call_threshold_ms: pick(&c.slow_call_threshold_ms, &w.slow_call_threshold_ms),
                slow_call_rate_threshold: pick(
                    &c.slow_call_rate_threshold,
                    &w.slow_call_rate_threshold,
                ),
                half_open_max_requests: pick(&c.half_open_max_requests, &w.half_open_max_requests),
            }),
            (c, w) => pick(c, w),
        },
        proxy_protocol: pick(&cur.proxy_protocol, &want.proxy_protocol),
        backends: Vec::new(),
    }
}

/// The pool fields that change; the health check, session persistence and circuit
/// breaker are whole messages (the API replaces them whole).
pub fn delta_pool(desired: &PoolDoc, cur: &PoolDoc) -> Option<PoolDoc> {
    let d = PoolDoc {
        name: cur.name.clone(),
        algorithm: changed(&desired.algorithm, &cur.algorithm),
        enabled: changed(&desired.enabled, &cur.enabled),
        health_check: changed(&desired.health_check, &cur.health_check),
        session_persistence: changed(&desired.session_persistence, &cur.session_persistence),
        circuit_breaker: changed(&desired.circuit_breaker, &cur.circuit_breaker),
        proxy_protocol: changed(&desired.proxy_protocol, &cur.proxy_protocol),
        backends: Vec::new(),
    };
    let any = d.algorithm.is_some()
        || d.enabled.is_some()
        || d.health_check.is_some()
        || d.session_persistence.is_some()
        || d.circuit_breaker.is_some()
        || d.proxy_protocol.is_some();
    any.then_some(d)
}

/// A health check of the same type is merged field by field; a new type starts from the
/// document's fields and keeps only the current type-independent ones it leaves out.
fn merge_health_check(
    cur: Option<&HealthCheckDoc>,
    want: Option<&HealthCheckDoc>,
) -> Option<HealthCheckDoc> {
    let (c, w) = match (cur, want) {
        (c, None) => return c.cloned(),
        (None, Some(w)) => return Some(w.clone()),
        (Some(c), Some(w)) => (c, w),
    };
    let common = HealthCheckDoc {
        interval: pick(&c.interval, &w.interval),
        timeout: pick(&c.timeout, &w.timeout),
        healthy_threshold: pick(&c.healthy_threshold, &w.healthy_threshold),
        unhealthy_threshold: pick(&c.unhealthy_threshold, &w.unhealthy_threshold),
        enabled: pick(&c.enabled, &w.enabled),
        ..w.clone()
    };
    if c.kind != w.kind {
        return Some(common);
    }
    Some(HealthCheckDoc {
        path: pick(&c.path, &w.path),
        method: pick(&c.method, &w.method),
        expected_codes: pick(&c.expected_codes, &w.expected_codes),
        host_header: pick(&c.host_header, &w.host_header),
        headers: pick(&c.headers, &w.headers),
        verify_tls: pick(&c.verify_tls, &w.verify_tls),
        hostname: pick(&c.hostname, &w.hostname),
        record_type: pick(&c.record_type, &w.record_type),
        expected_address: pick(&c.expected_address, &w.expected_address),
        service: pick(&c.service, &w.service),
        ..common
    })
}

/// Desired backend fields. The address is one value: a document naming any of ip,
/// hostname or vmId replaces it.
pub fn merge_backend(cur: &BackendDoc, want: &BackendDoc) -> BackendDoc {
    let (ip, hostname, vm_id) =
        if want.ip.is_some() || want.hostname.is_some() || want.vm_id.is_some() {
            (want.ip.clone(), want.hostname.clone(), want.vm_id.clone())
        } else {
            (cur.ip.clone(), cur.hostname.clone(), cur.vm_id.clone())
        };
    BackendDoc {
        name: cur.name.clone(),
        ip,
        hostname,
        vm_id,
        port: pick(&cur.port, &want.port),
        weight: pick(&cur.weight, &want.weight),
        backup: pick(&cur.backup, &want.backup),
        max_connections: pick(&cur.max_connections, &want.max_connections),
        enabled: pick(&cur.enabled, &want.enabled),
        metadata: pick(&cur.metadata, &want.metadata),
    }
}

/// The backend fields that change (the address as a whole: all three or none).
pub fn delta_backend(desired: &BackendDoc, cur: &BackendDoc) -> Option<BackendDoc> {
    let address_changed =
        (&desired.ip, &desired.hostname, &desired.vm_id) != (&cur.ip, &cur.hostname, &cur.vm_id);
    let d = BackendDoc {
        name: cur.name.clone(),
        ip: if address_changed {
            desired.ip.clone()
        } else {
            None
        },
        hostname: if address_changed {
            desired.hostname.clone()
        } else {
            None
        },
        vm_id: if address_changed {
            desired.vm_id.clone()
        } else {
            None
        },
        port: changed(&desired.port, &cur.port),
        weight: changed(&desired.weight, &cur.weight),
        backup: changed(&desired.backup, &cur.backup),
        max_connections: changed(&desired.max_connections, &cur.max_connections),
        enabled: changed(&desired.enabled, &cur.enabled),
        metadata: changed(&desired.metadata, &cur.metadata),
    };
    let any = address_changed
        || d.port.is_some()
        || d.weight.is_some()
        || d.backup.is_some()
        || d.max_connections.is_some()
        || d.enabled.is_some()
        || d.metadata.is_some();
    any.then_some(d)
}

/// Desired listener fields (rules are handled one by one).
pub fn merge_listener(cur: &ListenerDoc, want: &ListenerDoc) -> ListenerDoc {
    ListenerDoc {
        name: cur.name.clone(),
        protocol: pick(&cur.protocol, &want.protocol),
        port: pick(&cur.port, &want.port),
        default_pool: pick(&cur.default_pool, &want.default_pool),
        tls: match (&cur.tls, &want.tls) {
            (Some(c), Some(w)) => Some(merge_tls(c, w)),
            (c, w) => pick(c, w),
        },
        connection_limit: pick(&cur.connection_limit, &want.connection_limit),
        timeout_client: pick(&cur.timeout_client, &want.timeout_client),
        timeout_backend: pick(&cur.timeout_backend, &want.timeout_backend),
        enabled: pick(&cur.enabled, &want.enabled),
        rules: None,
    }
}

fn merge_tls(c: &TlsDoc, w: &TlsDoc) -> TlsDoc {
    TlsDoc {
        certificate: pick(&c.certificate, &w.certificate),
        min_version: pick(&c.min_version, &w.min_version),
        cipher_suites: pick(&c.cipher_suites, &w.cipher_suites),
        client_auth: pick(&c.client_auth, &w.client_auth),
        sni_certificates: pick(&c.sni_certificates, &w.sni_certificates),
        client_ca_certificate: pick(&c.client_ca_certificate, &w.client_ca_certificate),
    }
}

/// The listener fields that change (TLS as a whole: the API replaces it whole).
pub fn delta_listener(desired: &ListenerDoc, cur: &ListenerDoc) -> Option<ListenerDoc> {
    let d = ListenerDoc {
        name: cur.name.clone(),
        protocol: changed(&desired.protocol, &cur.protocol),
        port: changed(&desired.port, &cur.port),
        default_pool: changed(&desired.default_pool, &cur.default_pool),
        tls: changed(&desired.tls, &cur.tls),
        connection_limit: changed(&desired.connection_limit, &cur.connection_limit),
        timeout_client: changed(&desired.timeout_client, &cur.timeout_client),
        timeout_backend: changed(&desired.timeout_backend, &cur.timeout_backend),
        enabled: changed(&desired.enabled, &cur.enabled),
        rules: None,
    };
    let any = d.protocol.is_some()
        || d.port.is_some()
        || d.default_pool.is_some()
        || d.tls.is_some()
        || d.connection_limit.is_some()
        || d.timeout_client.is_some()
        || d.timeout_backend.is_some()
        || d.enabled.is_some();
    any.then_some(d)
}

/// Desired rule. An action of the same kind keeps the current optional parts (redirect
/// status, fixed-response type and body) the document leaves out.
pub fn merge_rule(cur: &RuleDoc, want: &RuleDoc) -> RuleDoc {
    let action = match (&cur.action, &want.action) {
        (Some(c), Some(w)) => Some(merge_action(c, w)),
        (c, w) => pick(c, w),
    };
    RuleDoc {
        name: cur.name.clone(),
        priority: pick(&cur.priority, &want.priority),
        enabled: pick(&cur.enabled, &want.enabled),
        conditions: pick(&cur.conditions, &want.conditions),
        action,
    }
}

fn merge_action(c: &ActionDoc, w: &ActionDoc) -> ActionDoc {
    let mut out = w.clone();
    if let (Some(cr), Some(wr)) = (&c.redirect, &mut out.redirect) {
        wr.status_code = pick(&cr.status_code, &wr.status_code);
    }
    if let (Some(cf), Some(wf)) = (&c.fixed_response, &mut out.fixed_response) {
        wf.content_type = pick(&cf.content_type, &wf.content_type);
        wf.body = pick(&cf.body, &wf.body);
    }
    out
}
