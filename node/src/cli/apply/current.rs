//! The server's current state of one load balancer, in document terms (names instead of
//! ids, enum names, every field set) plus the ids and revisions needed to change it.
//! Built from protobuf messages here; compared with the document by `plan`.

use std::collections::HashMap;

use fiberlb_proto::v1 as pv;

use crate::cli::document::{
    ActionDoc, BackendDoc, CircuitBreakerDoc, ConditionDoc, FixedResponseDoc, HeaderMatch,
    HealthCheckDoc, ListenerDoc, LoadBalancerDoc, PersistenceDoc, PoolDoc, QueryMatch, RedirectDoc,
    RuleDoc, StringMap, TlsDoc,
};
use crate::cli::enums::{
    Algorithm, CheckKind, ClientAuth, DnsType, LbStatus, Method, Persistence, Protocol,
    ProxyProtocol, TlsVersion,
};

/// A load balancer as it is on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentLb {
    /// Server id.
    pub id: String,
    /// Store revision.
    pub revision: u64,
    /// Its fields (no pools or listeners here: they are below).
    pub spec: LoadBalancerDoc,
    /// Its pools.
    pub pools: Vec<CurrentPool>,
    /// Its listeners.
    pub listeners: Vec<CurrentListener>,
}

/// A pool as it is on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentPool {
    /// Server id.
    pub id: String,
    /// Store revision.
    pub revision: u64,
    /// Its fields (no backends here).
    pub spec: PoolDoc,
    /// Its backends.
    pub backends: Vec<CurrentBackend>,
}

/// A backend as it is on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentBackend {
    /// Server id.
    pub id: String,
    /// Store revision.
    pub revision: u64,
    /// Its fields.
    pub spec: BackendDoc,
}

/// A listener as it is on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentListener {
    /// Server id.
    pub id: String,
    /// Store revision.
    pub revision: u64,
    /// Its fields (`rules` is `None`: they are below, with their ids).
    pub spec: ListenerDoc,
    /// Its rules in server order.
    pub rules: Vec<CurrentRule>,
}

/// A routing rule as it is on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentRule {
    /// Server id.
    pub id: String,
    /// Its fields.
    pub spec: RuleDoc,
}

/// Id → name lookups for references (pools of the same load balancer, certificates); an
/// id that cannot be named (a dangling reference) is shown as the id itself.
pub struct Names<'a> {
    /// Pool id → pool name.
    pub pools: &'a HashMap<String, String>,
    /// Certificate id → certificate name.
    pub certs: &'a HashMap<String, String>,
}

impl Names<'_> {
    fn pool(&self, id: &str) -> String {
        self.pools
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn cert(&self, id: &str) -> String {
        if id.is_empty() {
            return String::new();
        }
        self.certs
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

fn sorted(m: &HashMap<String, String>) -> StringMap {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl CurrentLb {
    /// The current state from the load balancer and its children.
    pub fn from_proto(
        lb: &pv::LoadBalancer,
        pools: &[(pv::Pool, Vec<pv::Backend>)],
        listeners: &[pv::Listener],
        certs: &HashMap<String, String>,
    ) -> CurrentLb {
        let pool_names: HashMap<String, String> = pools
            .iter()
            .map(|(p, _)| (p.id.clone(), p.name.clone()))
            .collect();
        let names = Names {
            pools: &pool_names,
            certs,
        };
        let spec = LoadBalancerDoc {
            name: lb.name.clone(),
            org_id: lb.org_id.clone(),
            project_id: lb.project_id.clone().filter(|p| !p.is_empty()),
            description: Some(lb.description.clone().unwrap_or_default()),
            vip: Some(lb.vip.clone()),
            enabled: Some(LbStatus::from_proto(lb.status) != Some(LbStatus::Disabled)),
            tags: Some(sorted(&lb.tags)),
            metadata: Some(sorted(&lb.metadata)),
            default_pool: Some(
                lb.default_pool_id
                    .as_deref()
                    .map(|id| names.pool(id))
                    .unwrap_or_default(),
            ),
            pools: Vec::new(),
            listeners: Vec::new(),
        };
        let mut current = CurrentLb {
            id: lb.id.clone(),
            revision: lb.revision,
            spec,
            pools: pools
                .iter()
                .map(|(p, bs)| CurrentPool::from_proto(p, bs))
                .collect(),
            listeners: listeners
                .iter()
                .map(|l| CurrentListener::from_proto(l, &names))
                .collect(),
        };
        current.normalize();
        current
    }

    /// Normalises the children the way documents are (see `LoadBalancerDoc::normalize`).
    fn normalize(&mut self) {
        let mut whole = self.to_doc();
        whole.normalize();
        self.spec = LoadBalancerDoc {
            pools: Vec::new(),
            listeners: Vec::new(),
            ..whole.clone()
        };
        for (cur, norm) in self.pools.iter_mut().zip(whole.pools) {
            for (b, nb) in cur.backends.iter_mut().zip(norm.backends) {
                b.spec = nb;
            }
            cur.spec = PoolDoc {
                backends: Vec::new(),
                ..norm
            };
        }
        for (cur, norm) in self.listeners.iter_mut().zip(whole.listeners) {
            for (r, nr) in cur.rules.iter_mut().zip(norm.rules.unwrap_or_default()) {
                r.spec = nr;
            }
            cur.spec = ListenerDoc {
                rules: None,
                ..norm
            };
        }
    }

    /// The whole load balancer as a document entry, children in server order.
    pub fn to_doc(&self) -> LoadBalancerDoc {
        LoadBalancerDoc {
            pools: self
                .pools
                .iter()
                .map(|p| PoolDoc {
                    backends: p.backends.iter().map(|b| b.spec.clone()).collect(),
                    ..p.spec.clone()
                })
                .collect(),
            listeners: self
                .listeners
                .iter()
                .map(|l| ListenerDoc {
                    rules: Some(l.rules.iter().map(|r| r.spec.clone()).collect()),
                    ..l.spec.clone()
                })
                .collect(),
            ..self.spec.clone()
        }
    }
}

impl CurrentPool {
    fn from_proto(p: &pv::Pool, backends: &[pv::Backend]) -> CurrentPool {
        CurrentPool {
            id: p.id.clone(),
            revision: p.revision,
            spec: PoolDoc {
                name: p.name.clone(),
                algorithm: Some(
                    Algorithm::from_proto(p.algorithm).unwrap_or(Algorithm::RoundRobin),
                ),
                enabled: Some(p.enabled),
                health_check: p.health_check.as_ref().map(health_check),
                session_persistence: p.session_persistence.as_ref().map(|s| PersistenceDoc {
                    mode: Some(Persistence::from_proto(s.mode).unwrap_or(Persistence::None)),
                    cookie_name: Some(s.cookie_name.clone().unwrap_or_default()),
                    ttl_seconds: Some(s.ttl_seconds),
                }),
                circuit_breaker: p.circuit_breaker.as_ref().map(|c| CircuitBreakerDoc {
                    enabled: Some(c.enabled),
                    failure_threshold: Some(c.failure_threshold),
                    success_threshold: Some(c.success_threshold),
                    timeout_seconds: Some(c.timeout_seconds),
                    failure_rate_threshold: Some(c.failure_rate_threshold),
                    min_request_volume: Some(c.min_request_volume),
                    slow_call_threshold_ms: Some(c.slow_call_threshold_ms),
                    slow_call_rate_threshold: Some(c.slow_call_rate_threshold),
                    half_open_max_requests: Some(c.half_open_max_requests),
                }),
                proxy_protocol: Some(
                    ProxyProtocol::from_proto(p.proxy_protocol).unwrap_or(ProxyProtocol::None),
                ),
                backends: Vec::new(),
            },
            backends: backends.iter().map(CurrentBackend::from_proto).collect(),
        }
    }
}

fn health_check(hc: &pv::HealthCheck) -> HealthCheckDoc {
    use pv::health_check::CheckType;
    let mut doc = HealthCheckDoc {
        kind: CheckKind::Tcp,
        path: None,
        method: None,
        expected_codes: None,
        host_header: None,
        headers: None,
        verify_tls: None,
        hostname: None,
        record_type: None,
        expected_address: None,
        service: None,
        interval: Some(hc.interval),
        timeout: Some(hc.timeout),
        healthy_threshold: Some(hc.healthy_threshold),
        unhealthy_threshold: Some(hc.unhealthy_threshold),
        enabled: Some(hc.enabled),
    };
    fn http(
        doc: &mut HealthCheckDoc,
        path: &str,
        method: i32,
        codes: &[u32],
        host: &Option<String>,
        headers: &HashMap<String, String>,
    ) {
        doc.path = Some(path.to_string());
        doc.method = Some(Method::from_proto(method).unwrap_or(Method::Get));
        doc.expected_codes = Some(codes.to_vec());
        doc.host_header = Some(host.clone().unwrap_or_default());
        doc.headers = Some(sorted(headers));
    }
    match &hc.check_type {
        None | Some(CheckType::Tcp(_)) => {}
        Some(CheckType::Http(h)) => {
            doc.kind = CheckKind::Http;
            http(
                &mut doc,
                &h.path,
                h.method,
                &h.expected_codes,
                &h.host_header,
                &h.headers,
            );
        }
        Some(CheckType::Https(h)) => {
            doc.kind = CheckKind::Https;
            http(
                &mut doc,
                &h.path,
                h.method,
                &h.expected_codes,
                &h.host_header,
                &h.headers,
            );
            doc.verify_tls = Some(h.verify_tls);
        }
        Some(CheckType::Dns(d)) => {
            doc.kind = CheckKind::Dns;
            doc.hostname = Some(d.hostname.clone());
            doc.record_type = Some(DnsType::from_proto(d.record_type).unwrap_or(DnsType::A));
            doc.expected_address = Some(d.expected_address.clone().unwrap_or_default());
        }
        Some(CheckType::Grpc(g)) => {
            doc.kind = CheckKind::Grpc;
            doc.service = Some(g.service.clone().unwrap_or_default());
        }
    }
    doc
}

impl CurrentBackend {
    fn from_proto(b: &pv::Backend) -> CurrentBackend {
        use pv::backend_address::Address;
        let addr = b.address.as_ref().and_then(|a| a.address.as_ref());
        CurrentBackend {
            id: b.id.clone(),
            revision: b.revision,
            spec: BackendDoc {
                name: b.name.clone(),
                ip: match addr {
                    Some(Address::Ip(ip)) => Some(ip.clone()),
                    _ => None,
                },
                hostname: match addr {
                    Some(Address::Hostname(h)) => Some(h.clone()),
                    _ => None,
                },
                vm_id: match addr {
                    Some(Address::VmId(v)) => Some(v.clone()),
                    _ => None,
                },
                port: Some(b.port),
                weight: Some(b.weight),
                backup: Some(b.backup),
                // Unlimited as an explicit 0: a document saying `maxConnections: 0`
                // then matches it and plans no update.
                max_connections: Some(b.max_connections.unwrap_or(0)),
                enabled: Some(b.enabled),
                metadata: Some(sorted(&b.metadata)),
            },
        }
    }
}

impl CurrentListener {
    fn from_proto(l: &pv::Listener, names: &Names<'_>) -> CurrentListener {
        CurrentListener {
            id: l.id.clone(),
            revision: l.revision,
            spec: ListenerDoc {
                name: l.name.clone(),
                protocol: Protocol::from_proto(l.protocol),
                port: Some(l.port),
                default_pool: Some(
                    l.default_pool_id
                        .as_deref()
                        .map(|id| names.pool(id))
                        .unwrap_or_default(),
                ),
                tls: l.tls_config.as_ref().map(|t| TlsDoc {
                    certificate: Some(names.cert(&t.certificate_id)),
                    min_version: TlsVersion::from_proto(t.min_version),
                    cipher_suites: Some(t.cipher_suites.clone()),
                    client_auth: Some(
                        ClientAuth::from_proto(t.client_auth).unwrap_or(ClientAuth::None),
                    ),
                    sni_certificates: Some(
                        t.sni_certificates
                            .iter()
                            .map(|(sni, id)| (sni.clone(), names.cert(id)))
                            .collect(),
                    ),
                    client_ca_certificate: Some(
                        t.client_ca_certificate_id
                            .as_deref()
                            .map(|id| names.cert(id))
                            .unwrap_or_default(),
                    ),
                }),
                connection_limit: Some(l.connection_limit.unwrap_or(0)),
                timeout_client: Some(l.timeout_client),
                timeout_backend: Some(l.timeout_backend),
                enabled: Some(l.enabled),
                rules: None,
            },
            rules: l
                .rules
                .iter()
                .map(|r| CurrentRule {
                    id: r.id.clone(),
                    spec: rule(r, names),
                })
                .collect(),
        }
    }
}

fn rule(r: &pv::RoutingRule, names: &Names<'_>) -> RuleDoc {
    use pv::rule_action::Action;
    use pv::rule_condition::Condition;
    let conditions = r
        .conditions
        .iter()
        .filter_map(|c| c.condition.as_ref())
        .map(|c| match c {
            Condition::HostHeader(h) => ConditionDoc {
                host_header: Some(h.values.clone()),
                ..Default::default()
            },
            Condition::PathPrefix(p) => ConditionDoc {
                path_prefix: Some(p.value.clone()),
                ..Default::default()
            },
            Condition::PathExact(p) => ConditionDoc {
                path_exact: Some(p.value.clone()),
                ..Default::default()
            },
            Condition::PathRegex(p) => ConditionDoc {
                path_regex: Some(p.pattern.clone()),
                ..Default::default()
            },
            Condition::Header(h) => ConditionDoc {
                header: Some(HeaderMatch {
                    name: h.name.clone(),
                    values: h.values.clone(),
                }),
                ..Default::default()
            },
            Condition::Method(m) => ConditionDoc {
                method: Some(
                    m.methods
                        .iter()
                        .filter_map(|m| Method::from_proto(*m))
                        .collect(),
                ),
                ..Default::default()
            },
            Condition::QueryParam(q) => ConditionDoc {
                query_param: Some(QueryMatch {
                    name: q.name.clone(),
                    value: q.value.clone(),
                }),
                ..Default::default()
            },
            Condition::SourceIp(s) => ConditionDoc {
                source_ip: Some(s.cidrs.clone()),
                ..Default::default()
            },
        })
        .collect();
    let action = r
        .action
        .as_ref()
        .and_then(|a| a.action.as_ref())
        .map(|a| match a {
            Action::ForwardToPool(f) => ActionDoc {
                forward_to_pool: Some(names.pool(&f.pool_id)),
                ..Default::default()
            },
            Action::Redirect(rd) => ActionDoc {
                redirect: Some(RedirectDoc {
                    url: rd.url.clone(),
                    status_code: Some(rd.status_code),
                }),
                ..Default::default()
            },
            Action::FixedResponse(f) => ActionDoc {
                fixed_response: Some(FixedResponseDoc {
                    status_code: f.status_code,
                    content_type: Some(f.content_type.clone()),
                    body: Some(f.body.clone()),
                }),
                ..Default::default()
            },
        });
    RuleDoc {
        name: r.name.clone(),
        priority: Some(r.priority),
        enabled: Some(r.enabled),
        conditions: Some(conditions),
        action,
    }
}
