//! Planning one load balancer: the diff of one document entry against its current state.

use std::collections::HashSet;

use super::{act, Action, Change, Kind, Op, PlanError, Report};
use crate::cli::apply::current::{CurrentLb, CurrentListener, CurrentPool};
use crate::cli::apply::merge;
use crate::cli::document::{ListenerDoc, LoadBalancerDoc, PoolDoc, RuleDoc};

pub(super) struct LbPlanner<'a> {
    pub(super) lb: usize,
    pub(super) want: &'a LoadBalancerDoc,
    pub(super) cur: Option<&'a CurrentLb>,
    pub(super) prune: bool,
    pub(super) out: &'a mut Vec<Action>,
}

impl LbPlanner<'_> {
    pub(super) fn run(mut self) -> Result<(), PlanError> {
        self.check_pool_references()?;
        let name = self.want.name.clone();
        // The default pool is set last (its pool may be created below); its report goes on
        // the first step when something else changes too, else on that last step.
        let default_pool_step = match self.cur {
            None => {
                let spec = LoadBalancerDoc {
                    pools: Vec::new(),
                    listeners: Vec::new(),
                    ..self.want.clone()
                };
                self.out.push(act(
                    Change::Created,
                    Kind::Lb,
                    name.clone(),
                    Op::CreateLb { lb: self.lb, spec },
                ));
                self.want
                    .default_pool
                    .clone()
                    .filter(|p| !p.is_empty())
                    .map(|pool| Action {
                        report: None,
                        op: Op::SetLbDefaultPool { lb: self.lb, pool },
                    })
            }
            Some(cur) => {
                let desired = merge::merge_lb(&cur.spec, self.want);
                let delta = merge::delta_lb(&desired, &cur.spec);
                let new_default = desired
                    .default_pool
                    .clone()
                    .filter(|_| desired.default_pool != cur.spec.default_pool);
                let set_default = |report| {
                    new_default.clone().map(|pool| Action {
                        report,
                        op: Op::SetLbDefaultPool { lb: self.lb, pool },
                    })
                };
                match delta {
                    Some(delta) => {
                        self.out.push(act(
                            Change::Updated,
                            Kind::Lb,
                            name.clone(),
                            Op::UpdateLb { lb: self.lb, delta },
                        ));
                        set_default(None)
                    }
                    None if new_default.is_some() => set_default(Some(Report {
                        change: Change::Updated,
                        kind: Kind::Lb,
                        path: name.clone(),
                    })),
                    None => {
                        self.out
                            .push(act(Change::Unchanged, Kind::Lb, name.clone(), Op::Nothing));
                        None
                    }
                }
            }
        };
        for pool in &self.want.pools {
            self.pool(pool)?;
        }
        self.listeners()?;
        self.out.extend(default_pool_step);
        self.prune_pools();
        Ok(())
    }

    fn path(&self, parts: &[&str]) -> String {
        std::iter::once(self.want.name.as_str())
            .chain(parts.iter().copied())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn cur_pool(&self, name: &str) -> Option<&CurrentPool> {
        self.cur
            .and_then(|c| c.pools.iter().find(|p| p.spec.name == name))
    }

    fn cur_listener(&self, name: &str) -> Option<&CurrentListener> {
        self.cur
            .and_then(|c| c.listeners.iter().find(|l| l.spec.name == name))
    }

    /// Every pool named by the load balancer, its listeners and rules must exist after the
    /// apply: in the document, or on the server and not pruned.
    fn check_pool_references(&self) -> Result<(), PlanError> {
        let mut known: HashSet<&str> = self.want.pools.iter().map(|p| p.name.as_str()).collect();
        if !self.prune {
            known.extend(
                self.cur
                    .iter()
                    .flat_map(|c| c.pools.iter().map(|p| p.spec.name.as_str())),
            );
        }
        let check = |kind: Kind, path: String, pool: Option<&String>| match pool {
            Some(p) if !p.is_empty() && !known.contains(p.as_str()) => {
                Err(PlanError::UnknownPool {
                    kind,
                    path,
                    pool: p.clone(),
                    lb: self.want.name.clone(),
                })
            }
            _ => Ok(()),
        };
        check(Kind::Lb, self.path(&[]), self.want.default_pool.as_ref())?;
        for l in &self.want.listeners {
            check(
                Kind::Listener,
                self.path(&[&l.name]),
                l.default_pool.as_ref(),
            )?;
            for r in l.rules.iter().flatten() {
                let target = r.action.as_ref().and_then(|a| a.forward_to_pool.as_ref());
                check(Kind::Rule, self.path(&[&l.name, &r.name]), target)?;
            }
        }
        Ok(())
    }

    fn pool(&mut self, want: &PoolDoc) -> Result<(), PlanError> {
        let path = self.path(&[&want.name]);
        let cur = self.cur_pool(&want.name).cloned();
        match &cur {
            None => {
                let spec = PoolDoc {
                    backends: Vec::new(),
                    ..want.clone()
                };
                self.out.push(act(
                    Change::Created,
                    Kind::Pool,
                    path,
                    Op::CreatePool { lb: self.lb, spec },
                ));
            }
            Some(c) => {
                let desired = merge::merge_pool(&c.spec, want);
                let action = match merge::delta_pool(&desired, &c.spec) {
                    Some(delta) => act(
                        Change::Updated,
                        Kind::Pool,
                        path,
                        Op::UpdatePool {
                            lb: self.lb,
                            pool: want.name.clone(),
                            delta,
                        },
                    ),
                    None => act(Change::Unchanged, Kind::Pool, path, Op::Nothing),
                };
                self.out.push(action);
                if self.prune {
                    for b in c
                        .backends
                        .iter()
                        .filter(|b| !want.backends.iter().any(|w| w.name == b.spec.name))
                    {
                        let bpath = self.path(&[&want.name, &b.spec.name]);
                        self.out.push(act(
                            Change::Deleted,
                            Kind::Backend,
                            bpath,
                            Op::DeleteBackend { id: b.id.clone() },
                        ));
                    }
                }
            }
        }
        for b in &want.backends {
            let bpath = self.path(&[&want.name, &b.name]);
            let existing = cur
                .as_ref()
                .and_then(|c| c.backends.iter().find(|cb| cb.spec.name == b.name));
            let action = match existing {
                None => {
                    if b.ip.is_none() && b.hostname.is_none() && b.vm_id.is_none() {
                        return Err(PlanError::Missing {
                            kind: Kind::Backend,
                            path: bpath,
                            field: "ip, hostname or vmId",
                        });
                    }
                    if b.port.is_none() {
                        return Err(PlanError::Missing {
                            kind: Kind::Backend,
                            path: bpath,
                            field: "port",
                        });
                    }
                    let op = Op::CreateBackend {
                        lb: self.lb,
                        pool: want.name.clone(),
                        spec: b.clone(),
                    };
                    act(Change::Created, Kind::Backend, bpath, op)
                }
                Some(cb) => {
                    let desired = merge::merge_backend(&cb.spec, b);
                    match merge::delta_backend(&desired, &cb.spec) {
                        Some(delta) if delta.metadata.is_some() => {
                            return Err(PlanError::Immutable {
                                kind: Kind::Backend,
                                path: bpath,
                                field: "metadata",
                                detail: "the API sets it only when the backend is added".into(),
                            })
                        }
                        Some(delta) => act(
                            Change::Updated,
                            Kind::Backend,
                            bpath,
                            Op::UpdateBackend {
                                id: cb.id.clone(),
                                delta,
                            },
                        ),
                        None => act(Change::Unchanged, Kind::Backend, bpath, Op::Nothing),
                    }
                }
            };
            self.out.push(action);
        }
        Ok(())
    }

    fn listeners(&mut self) -> Result<(), PlanError> {
        if let (true, Some(cur)) = (self.prune, self.cur) {
            for l in cur
                .listeners
                .iter()
                .filter(|l| !self.want.listeners.iter().any(|w| w.name == l.spec.name))
            {
                let op = Op::DeleteListener {
                    lb: self.lb,
                    listener: l.spec.name.clone(),
                };
                self.out.push(act(
                    Change::Deleted,
                    Kind::Listener,
                    self.path(&[&l.spec.name]),
                    op,
                ));
            }
        }
        for want in &self.want.listeners {
            self.listener(want)?;
        }
        Ok(())
    }

    fn listener(&mut self, want: &ListenerDoc) -> Result<(), PlanError> {
        let path = self.path(&[&want.name]);
        let cur = self.cur_listener(&want.name).cloned();
        match &cur {
            None => {
                for (field, missing) in [
                    ("protocol", want.protocol.is_none()),
                    ("port", want.port.is_none()),
                ] {
                    if missing {
                        return Err(PlanError::Missing {
                            kind: Kind::Listener,
                            path,
                            field,
                        });
                    }
                }
                let spec = ListenerDoc {
                    rules: None,
                    ..want.clone()
                };
                self.out.push(act(
                    Change::Created,
                    Kind::Listener,
                    path,
                    Op::CreateListener { lb: self.lb, spec },
                ));
            }
            Some(c) => {
                let desired = merge::merge_listener(&c.spec, want);
                let action = match merge::delta_listener(&desired, &c.spec) {
                    Some(delta) if delta.protocol.is_some() => {
                        let show = |p: Option<crate::cli::enums::Protocol>| {
                            p.map_or("unset", |p| p.as_str())
                        };
                        return Err(PlanError::Immutable {
                            kind: Kind::Listener,
                            path,
                            field: "protocol",
                            detail: format!(
                                "{} -> {}",
                                show(c.spec.protocol),
                                show(delta.protocol)
                            ),
                        });
                    }
                    Some(delta) => {
                        let op = Op::UpdateListener {
                            lb: self.lb,
                            listener: want.name.clone(),
                            delta,
                        };
                        act(Change::Updated, Kind::Listener, path, op)
                    }
                    None => act(Change::Unchanged, Kind::Listener, path, Op::Nothing),
                };
                self.out.push(action);
            }
        }
        if let Some(rules) = &want.rules {
            self.rules(want, rules, cur.as_ref())?;
        }
        Ok(())
    }

    /// Makes the listener's rules the listed ones, matched by name: stale ones (and
    /// duplicates of a name) are removed first, then each listed rule is added or updated.
    fn rules(
        &mut self,
        listener: &ListenerDoc,
        rules: &[RuleDoc],
        cur: Option<&CurrentListener>,
    ) -> Result<(), PlanError> {
        let mut kept: HashSet<&str> = HashSet::new();
        let mut matched = Vec::new();
        for r in cur.map(|c| c.rules.as_slice()).unwrap_or_default() {
            let listed = rules.iter().any(|w| w.name == r.spec.name);
            if listed && kept.insert(r.spec.name.as_str()) {
                matched.push(r);
            } else {
                let op = Op::RemoveRule {
                    lb: self.lb,
                    listener: listener.name.clone(),
                    rule_id: r.id.clone(),
                };
                let label = if r.spec.name.is_empty() {
                    r.id.as_str()
                } else {
                    r.spec.name.as_str()
                };
                self.out.push(act(
                    Change::Deleted,
                    Kind::Rule,
                    self.path(&[&listener.name, label]),
                    op,
                ));
            }
        }
        for want in rules {
            let path = self.path(&[&listener.name, &want.name]);
            let action = match matched.iter().find(|r| r.spec.name == want.name) {
                None => {
                    if want.action.is_none() {
                        return Err(PlanError::Missing {
                            kind: Kind::Rule,
                            path,
                            field: "action",
                        });
                    }
                    let op = Op::AddRule {
                        lb: self.lb,
                        listener: listener.name.clone(),
                        rule: want.clone(),
                    };
                    act(Change::Created, Kind::Rule, path, op)
                }
                Some(c) => {
                    let desired = merge::merge_rule(&c.spec, want);
                    if desired == c.spec {
                        act(Change::Unchanged, Kind::Rule, path, Op::Nothing)
                    } else {
                        let op = Op::UpdateRule {
                            lb: self.lb,
                            listener: listener.name.clone(),
                            rule_id: c.id.clone(),
                            rule: desired,
                        };
                        act(Change::Updated, Kind::Rule, path, op)
                    }
                }
            };
            self.out.push(action);
        }
        Ok(())
    }

    fn prune_pools(&mut self) {
        let (true, Some(cur)) = (self.prune, self.cur) else {
            return;
        };
        for p in cur
            .pools
            .iter()
            .filter(|p| !self.want.pools.iter().any(|w| w.name == p.spec.name))
        {
            for b in &p.backends {
                let path = self.path(&[&p.spec.name, &b.spec.name]);
                self.out.push(act(
                    Change::Deleted,
                    Kind::Backend,
                    path,
                    Op::DeleteBackend { id: b.id.clone() },
                ));
            }
            let op = Op::DeletePool {
                lb: self.lb,
                pool: p.spec.name.clone(),
            };
            self.out.push(act(
                Change::Deleted,
                Kind::Pool,
                self.path(&[&p.spec.name]),
                op,
            ));
        }
    }
}
