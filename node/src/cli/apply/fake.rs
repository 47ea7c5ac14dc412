//! An in-memory stand-in for the API, for the plan tests: it carries out plan steps the
//! way the server does (same request messages, server-side defaults such as weight 1 or
//! health-check intervals, rules kept sorted) so that "apply twice" and
//! "export → import → export" are tested end to end without a server.

use std::collections::HashMap;

use fiberlb_proto::v1 as pv;

use super::current::CurrentLb;
use super::plan::Op;
use super::requests::{self, Resolve};
use crate::cli::document::Document;
use crate::cli::error::CliError;

#[derive(Debug, Clone)]
pub struct FakeLb {
    pub lb: pv::LoadBalancer,
    pub pools: Vec<(pv::Pool, Vec<pv::Backend>)>,
    pub listeners: Vec<pv::Listener>,
}

/// Load balancers by document index, certificates by name.
#[derive(Debug, Default)]
pub struct Fake {
    pub lbs: Vec<Option<FakeLb>>,
    pub certs: HashMap<String, String>,
    next: u64,
}

struct Names<'a>(&'a FakeLb, &'a HashMap<String, String>);

impl Resolve for Names<'_> {
    fn pool_id(&self, name: &str) -> Result<String, CliError> {
        self.0
            .pools
            .iter()
            .find(|(p, _)| p.name == name)
            .map(|(p, _)| p.id.clone())
            .ok_or_else(|| CliError::invalid(name))
    }
    fn cert_id(&self, name: &str) -> Result<String, CliError> {
        self.1
            .get(name)
            .cloned()
            .ok_or_else(|| CliError::invalid(name))
    }
}

fn health_defaults(mut hc: pv::HealthCheck) -> pv::HealthCheck {
    use pv::health_check::CheckType;
    let or = |v: u32, d: u32| if v == 0 { d } else { v };
    hc.id = "hc".into();
    hc.interval = or(hc.interval, 5);
    hc.timeout = or(hc.timeout, 2);
    hc.healthy_threshold = or(hc.healthy_threshold, 2);
    hc.unhealthy_threshold = or(hc.unhealthy_threshold, 3);
    if let Some(CheckType::Http(h)) = &mut hc.check_type {
        if h.path.is_empty() {
            h.path = "/".into();
        }
        if h.expected_codes.is_empty() {
            h.expected_codes = vec![200];
        }
    }
    hc
}

impl Fake {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }

    /// The state `apply` would read, document index by index.
    pub fn current(&self) -> Vec<Option<CurrentLb>> {
        let by_id: HashMap<String, String> = self
            .certs
            .iter()
            .map(|(n, i)| (i.clone(), n.clone()))
            .collect();
        self.lbs
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|f| CurrentLb::from_proto(&f.lb, &f.pools, &f.listeners, &by_id))
            })
            .collect()
    }

    fn lb(&mut self, i: usize) -> &mut FakeLb {
        self.lbs[i].as_mut().expect("load balancer exists")
    }

    fn find_backend(&mut self, id: &str) -> (usize, usize, usize) {
        for (i, lb) in self.lbs.iter().enumerate() {
            for (p, (_, bs)) in lb.iter().flat_map(|l| l.pools.iter()).enumerate() {
                if let Some(b) = bs.iter().position(|b| b.id == id) {
                    return (i, p, b);
                }
            }
        }
        panic!("no backend {id}")
    }

    /// Carries out one step like the server would.
    pub fn run(&mut self, doc: &Document, op: &Op) {
        if self.lbs.len() < doc.load_balancers.len() {
            self.lbs.resize(doc.load_balancers.len(), None);
        }
        let certs = self.certs.clone();
        match op {
            Op::Nothing => {}
            Op::CreateLb { lb, spec } => {
                let id = self.id("lb");
                let disabled = spec.enabled == Some(false);
                self.lbs[*lb] = Some(FakeLb {
                    lb: pv::LoadBalancer {
                        id,
                        name: spec.name.clone(),
                        org_id: spec.org_id.clone(),
                        project_id: spec.project_id.clone(),
                        description: spec.description.clone().filter(|d| !d.is_empty()),
                        vip: spec.vip.clone().unwrap_or_default(),
                        tags: requests::string_map(&spec.tags),
                        metadata: requests::string_map(&spec.metadata),
                        status: if disabled {
                            pv::LbStatus::Disabled
                        } else {
                            pv::LbStatus::Active
                        } as i32,
                        revision: 1,
                        ..Default::default()
                    },
                    pools: Vec::new(),
                    listeners: Vec::new(),
                });
            }
            Op::UpdateLb { lb, delta } => {
                let l = &mut self.lb(*lb).lb;
                if let Some(d) = &delta.description {
                    l.description = Some(d.clone());
                }
                if let Some(v) = &delta.vip {
                    l.vip = v.clone();
                }
                if delta.tags.is_some() {
                    l.tags = requests::string_map(&delta.tags);
                }
                if delta.metadata.is_some() {
                    l.metadata = requests::string_map(&delta.metadata);
                }
                if let Some(e) = delta.enabled {
                    l.status = if e {
                        pv::LbStatus::Active
                    } else {
                        pv::LbStatus::Disabled
                    } as i32;
                }
                l.revision += 1;
            }
            Op::SetLbDefaultPool { lb, pool } => {
                let f = self.lb(*lb);
                let id = if pool.is_empty() {
                    None
                } else {
                    Some(Names(f, &certs).pool_id(pool).unwrap())
                };
                f.lb.default_pool_id = id;
                f.lb.revision += 1;
            }
            Op::CreatePool { lb, spec } => {
                let id = self.id("pool");
                let pool = pv::Pool {
                    id,
                    name: spec.name.clone(),
                    algorithm: spec
                        .algorithm
                        .map_or(pv::Algorithm::RoundRobin as i32, |a| a.to_proto()),
                    health_check: spec
                        .health_check
                        .as_ref()
                        .map(|h| health_defaults(requests::health_check(h))),
                    session_persistence: spec
                        .session_persistence
                        .as_ref()
                        .map(requests::persistence),
                    circuit_breaker: spec.circuit_breaker.as_ref().map(requests::circuit_breaker),
                    proxy_protocol: spec.proxy_protocol.map_or(0, |p| p.to_proto()),
                    enabled: spec.enabled != Some(false),
                    revision: 1,
                    ..Default::default()
                };
                self.lb(*lb).pools.push((pool, Vec::new()));
            }
            Op::UpdatePool { lb, pool, delta } => {
                let (p, _) = self
                    .lb(*lb)
                    .pools
                    .iter_mut()
                    .find(|(p, _)| &p.name == pool)
                    .expect("pool");
                if let Some(a) = delta.algorithm {
                    p.algorithm = a.to_proto();
                }
                if let Some(e) = delta.enabled {
                    p.enabled = e;
                }
                if let Some(h) = &delta.health_check {
                    p.health_check = Some(health_defaults(requests::health_check(h)));
                }
                if let Some(s) = &delta.session_persistence {
                    p.session_persistence = Some(requests::persistence(s));
                }
                if let Some(c) = &delta.circuit_breaker {
                    p.circuit_breaker = Some(requests::circuit_breaker(c));
                }
                if let Some(v) = delta.proxy_protocol {
                    p.proxy_protocol = v.to_proto();
                }
                p.revision += 1;
            }
            Op::DeletePool { lb, pool } => {
                let f = self.lb(*lb);
                let (_, backends) = f.pools.iter().find(|(p, _)| &p.name == pool).expect("pool");
                assert!(backends.is_empty(), "pool {pool} still has backends");
                let id = f
                    .pools
                    .iter()
                    .find(|(p, _)| &p.name == pool)
                    .map(|(p, _)| p.id.clone())
                    .unwrap_or_default();
                assert!(
                    f.lb.default_pool_id.as_deref() != Some(&id),
                    "pool {pool} is the default pool"
                );
                f.pools.retain(|(p, _)| &p.name != pool);
            }
            Op::CreateBackend { lb, pool, spec } => {
                let id = self.id("backend");
                let backend = pv::Backend {
                    id,
                    name: spec.name.clone(),
                    address: requests::address(spec),
                    port: spec.port.unwrap_or(0),
                    weight: spec.weight.unwrap_or(1),
                    backup: spec.backup.unwrap_or(false),
                    max_connections: spec.max_connections.filter(|m| *m > 0),
                    enabled: spec.enabled != Some(false),
                    metadata: requests::string_map(&spec.metadata),
                    status: pv::BackendStatus::Active as i32,
                    revision: 1,
                    ..Default::default()
                };
                let (p, bs) = self
                    .lb(*lb)
                    .pools
                    .iter_mut()
                    .find(|(p, _)| &p.name == pool)
                    .expect("pool");
                bs.push(pv::Backend {
                    pool_id: p.id.clone(),
                    ..backend
                });
            }
            Op::UpdateBackend { id, delta } => {
                let (i, p, b) = self.find_backend(id);
                let b = &mut self.lb(i).pools[p].1[b];
                if let Some(a) = requests::address(delta) {
                    b.address = Some(a);
                }
                b.port = delta.port.unwrap_or(b.port);
                b.weight = delta.weight.unwrap_or(b.weight);
                b.backup = delta.backup.unwrap_or(b.backup);
                if let Some(m) = delta.max_connections {
                    b.max_connections = Some(m).filter(|m| *m > 0);
                }
                b.enabled = delta.enabled.unwrap_or(b.enabled);
                b.revision += 1;
            }
            Op::DeleteBackend { id } => {
                let (i, p, b) = self.find_backend(id);
                self.lb(i).pools[p].1.remove(b);
            }
            Op::CreateListener { lb, spec } => {
                let id = self.id("listener");
                let f = self.lb(*lb);
                let names = Names(f, &certs);
                let listener = pv::Listener {
                    id,
                    lb_id: f.lb.id.clone(),
                    name: spec.name.clone(),
                    protocol: spec.protocol.map_or(0, |p| p.to_proto()),
                    port: spec.port.unwrap_or(0),
                    tls_config: spec.tls.as_ref().map(|t| requests::tls(t, &names).unwrap()),
                    default_pool_id: spec
                        .default_pool
                        .as_ref()
                        .filter(|p| !p.is_empty())
                        .map(|p| names.pool_id(p).unwrap()),
                    connection_limit: spec.connection_limit.filter(|c| *c > 0),
                    timeout_client: spec.timeout_client.unwrap_or(60_000),
                    timeout_backend: spec.timeout_backend.unwrap_or(30_000),
                    enabled: spec.enabled != Some(false),
                    revision: 1,
                    ..Default::default()
                };
                f.listeners.push(listener);
            }
            Op::UpdateListener {
                lb,
                listener,
                delta,
            } => {
                let f = self.lb(*lb);
                let names = Names(f, &certs);
                let tls = delta
                    .tls
                    .as_ref()
                    .map(|t| requests::tls(t, &names).unwrap());
                let pool = delta.default_pool.as_ref().map(|p| {
                    if p.is_empty() {
                        None
                    } else {
                        Some(names.pool_id(p).unwrap())
                    }
                });
                let l = f
                    .listeners
                    .iter_mut()
                    .find(|l| &l.name == listener)
                    .expect("listener");
                if tls.is_some() {
                    l.tls_config = tls;
                }
                if let Some(p) = pool {
                    l.default_pool_id = p;
                }
                if let Some(c) = delta.connection_limit {
                    l.connection_limit = Some(c).filter(|c| *c > 0);
                }
                l.port = delta.port.unwrap_or(l.port);
                l.timeout_client = delta.timeout_client.unwrap_or(l.timeout_client);
                l.timeout_backend = delta.timeout_backend.unwrap_or(l.timeout_backend);
                l.enabled = delta.enabled.unwrap_or(l.enabled);
                l.revision += 1;
            }
            Op::DeleteListener { lb, listener } => {
                self.lb(*lb).listeners.retain(|l| &l.name != listener)
            }
            Op::AddRule { lb, listener, rule }
            | Op::UpdateRule {
                lb, listener, rule, ..
            } => {
                let rule_id = match op {
                    Op::UpdateRule { rule_id, .. } => rule_id.clone(),
                    _ => self.id("rule"),
                };
                let f = self.lb(*lb);
                let mut r = requests::rule(rule, &Names(f, &certs)).unwrap();
                r.id = rule_id.clone();
                let l = f
                    .listeners
                    .iter_mut()
                    .find(|l| &l.name == listener)
                    .expect("listener");
                l.rules.retain(|x| x.id != rule_id);
                l.rules.push(r);
                l.rules
                    .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
                l.revision += 1;
            }
            Op::RemoveRule {
                lb,
                listener,
                rule_id,
            } => {
                let l = self
                    .lb(*lb)
                    .listeners
                    .iter_mut()
                    .find(|l| &l.name == listener)
                    .expect("listener");
                l.rules.retain(|r| &r.id != rule_id);
                l.revision += 1;
            }
        }
    }
}
