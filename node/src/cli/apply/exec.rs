//! Carrying out a plan against the API. Names become ids here (ids of objects created
//! earlier in the same run included), and every update carries the revision the object
//! has now, taken from the last answer about it.

use std::collections::HashMap;

use fiberlb_proto::v1 as pv;

mod write;

use super::current::CurrentLb;
use super::plan::Op;
use super::requests::{self, Resolve};
use crate::cli::conn::Api;
use crate::cli::document::Document;
use crate::cli::error::CliError;

/// Runs plan steps, keeping the name → id and id → revision maps up to date.
pub struct Executor<'a> {
    api: Api,
    doc: &'a Document,
    lb_ids: Vec<Option<String>>,
    pool_ids: HashMap<(usize, String), String>,
    listener_ids: HashMap<(usize, String), String>,
    revisions: HashMap<String, u64>,
    certs: Vec<HashMap<String, String>>,
}

/// Name resolution within one load balancer.
struct Scope<'b> {
    pools: &'b HashMap<(usize, String), String>,
    certs: Option<&'b HashMap<String, String>>,
    lb: usize,
    lb_name: &'b str,
}

impl Resolve for Scope<'_> {
    fn pool_id(&self, name: &str) -> Result<String, CliError> {
        self.pools
            .get(&(self.lb, name.to_string()))
            .cloned()
            .ok_or_else(|| {
                CliError::invalid(format!(
                    "load balancer {}: no pool named {name:?}",
                    self.lb_name
                ))
            })
    }

    fn cert_id(&self, name: &str) -> Result<String, CliError> {
        self.certs
            .and_then(|c| c.get(name))
            .cloned()
            .ok_or_else(|| {
                CliError::invalid(format!(
                    "load balancer {}: no certificate named {name:?}",
                    self.lb_name
                ))
            })
    }
}

impl<'a> Executor<'a> {
    /// An executor for `doc`, whose load balancers are `current` on the server now and
    /// whose certificate names resolve through `certs` (one map per load balancer).
    pub fn new(
        api: Api,
        doc: &'a Document,
        current: &[Option<CurrentLb>],
        certs: Vec<HashMap<String, String>>,
    ) -> Self {
        let mut ex = Executor {
            api,
            doc,
            lb_ids: current
                .iter()
                .map(|c| c.as_ref().map(|c| c.id.clone()))
                .collect(),
            pool_ids: HashMap::new(),
            listener_ids: HashMap::new(),
            revisions: HashMap::new(),
            certs,
        };
        for (i, cur) in current.iter().enumerate() {
            let Some(cur) = cur else { continue };
            ex.revisions.insert(cur.id.clone(), cur.revision);
            for p in &cur.pools {
                ex.pool_ids.insert((i, p.spec.name.clone()), p.id.clone());
                ex.revisions.insert(p.id.clone(), p.revision);
                for b in &p.backends {
                    ex.revisions.insert(b.id.clone(), b.revision);
                }
            }
            for l in &cur.listeners {
                ex.listener_ids
                    .insert((i, l.spec.name.clone()), l.id.clone());
                ex.revisions.insert(l.id.clone(), l.revision);
            }
        }
        ex
    }

    fn scope(&self, lb: usize) -> Scope<'_> {
        Scope {
            pools: &self.pool_ids,
            certs: self.certs.get(lb),
            lb,
            lb_name: self
                .doc
                .load_balancers
                .get(lb)
                .map_or("?", |l| l.name.as_str()),
        }
    }

    fn lb_id(&self, lb: usize) -> Result<String, CliError> {
        self.lb_ids
            .get(lb)
            .cloned()
            .flatten()
            .ok_or_else(|| CliError::invalid("load balancer not created yet"))
    }

    fn pool_id(&self, lb: usize, pool: &str) -> Result<String, CliError> {
        self.scope(lb).pool_id(pool)
    }

    fn listener_id(&self, lb: usize, listener: &str) -> Result<String, CliError> {
        self.listener_ids
            .get(&(lb, listener.to_string()))
            .cloned()
            .ok_or_else(|| CliError::invalid(format!("no listener named {listener:?}")))
    }

    fn rev(&self, id: &str) -> Option<u64> {
        self.revisions.get(id).copied()
    }

    fn seen(&mut self, id: &str, revision: u64) {
        self.revisions.insert(id.to_string(), revision);
    }

    /// Carries out one step.
    pub async fn run(&mut self, op: &Op) -> Result<(), CliError> {
        match op {
            Op::Nothing => Ok(()),
            Op::CreateLb { lb, spec } => self.create_lb(*lb, spec).await,
            Op::UpdateLb { lb, delta } => self.update_lb(&self.lb_id(*lb)?, delta).await,
            Op::SetLbDefaultPool { lb, pool } => {
                let id = self.lb_id(*lb)?;
                let pool_id = if pool.is_empty() {
                    String::new()
                } else {
                    self.pool_id(*lb, pool)?
                };
                let req = pv::UpdateLoadBalancerRequest {
                    lb_id: id.clone(),
                    default_pool_id: Some(pool_id),
                    revision: self.rev(&id),
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
                Ok(())
            }
            Op::CreatePool { lb, spec } => self.create_pool(*lb, spec).await,
            Op::UpdatePool { lb, pool, delta } => {
                self.update_pool(&self.pool_id(*lb, pool)?, delta).await
            }
            Op::DeletePool { lb, pool } => {
                let id = self.pool_id(*lb, pool)?;
                let req = pv::DeletePoolRequest {
                    pool_id: id.clone(),
                    revision: self.rev(&id),
                };
                self.api.pool.clone().delete_pool(req).await?;
                self.pool_ids.remove(&(*lb, pool.clone()));
                Ok(())
            }
            Op::CreateBackend { lb, pool, spec } => {
                self.create_backend(&self.pool_id(*lb, pool)?, spec).await
            }
            Op::UpdateBackend { id, delta } => self.update_backend(id, delta).await,
            Op::DeleteBackend { id } => {
                let req = pv::RemoveBackendRequest {
                    backend_id: id.clone(),
                    drain_first: false,
                    drain_timeout_seconds: None,
                    revision: self.rev(id),
                };
                self.api.backend.clone().remove_backend(req).await?;
                Ok(())
            }
            Op::CreateListener { lb, spec } => self.create_listener(*lb, spec).await,
            Op::UpdateListener {
                lb,
                listener,
                delta,
            } => {
                let id = self.listener_id(*lb, listener)?;
                self.update_listener(*lb, &id, delta).await
            }
            Op::DeleteListener { lb, listener } => {
                let id = self.listener_id(*lb, listener)?;
                let req = pv::DeleteListenerRequest {
                    listener_id: id.clone(),
                    revision: self.rev(&id),
                };
                self.api.listener.clone().delete_listener(req).await?;
                self.listener_ids.remove(&(*lb, listener.clone()));
                Ok(())
            }
            Op::AddRule { lb, listener, rule } => {
                let id = self.listener_id(*lb, listener)?;
                let req = pv::AddRoutingRuleRequest {
                    listener_id: id.clone(),
                    rule: Some(requests::rule(rule, &self.scope(*lb))?),
                    revision: self.rev(&id),
                };
                let r = self
                    .api
                    .listener
                    .clone()
                    .add_routing_rule(req)
                    .await?
                    .into_inner();
                self.seen(&r.id, r.revision);
                Ok(())
            }
            Op::UpdateRule {
                lb,
                listener,
                rule_id,
                rule,
            } => {
                let id = self.listener_id(*lb, listener)?;
                let req = pv::UpdateRoutingRuleRequest {
                    listener_id: id.clone(),
                    rule_id: rule_id.clone(),
                    rule: Some(requests::rule(rule, &self.scope(*lb))?),
                    revision: self.rev(&id),
                };
                let r = self
                    .api
                    .listener
                    .clone()
                    .update_routing_rule(req)
                    .await?
                    .into_inner();
                self.seen(&r.id, r.revision);
                Ok(())
            }
            Op::RemoveRule {
                lb,
                listener,
                rule_id,
            } => {
                let id = self.listener_id(*lb, listener)?;
                let req = pv::RemoveRoutingRuleRequest {
                    listener_id: id.clone(),
                    rule_id: rule_id.clone(),
                    revision: self.rev(&id),
                };
                let r = self
                    .api
                    .listener
                    .clone()
                    .remove_routing_rule(req)
                    .await?
                    .into_inner();
                self.seen(&r.id, r.revision);
                Ok(())
            }
        }
    }
}
