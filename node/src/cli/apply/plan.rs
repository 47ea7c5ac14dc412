//! The pure part of `apply`: the document and the server's current state in, the ordered
//! list of changes out. No I/O here, so the whole diff logic is tested in memory.
//!
//! Order (so that every reference exists when it is made and nothing in use is deleted):
//! load balancer, pools (each after pruning its stale backends), backends, pruned
//! listeners, listeners, rules, the load balancer's default pool, pruned pools.

mod planner;

use std::fmt;

use super::current::CurrentLb;
use crate::cli::document::{Document, ListenerDoc, LoadBalancerDoc, PoolDoc, RuleDoc};
use planner::LbPlanner;

/// Why a document cannot be applied (found before anything is changed).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A field needed to create an object is missing.
    #[error("{kind} {path}: {field} is required to create it")]
    Missing {
        /// Object kind.
        kind: Kind,
        /// Object path.
        path: String,
        /// Document field.
        field: &'static str,
    },
    /// A reference to a pool the load balancer will not have.
    #[error("{kind} {path}: pool {pool:?} is not a pool of load balancer {lb}")]
    UnknownPool {
        /// Kind of the referring object.
        kind: Kind,
        /// Path of the referring object.
        path: String,
        /// The pool name.
        pool: String,
        /// The load balancer.
        lb: String,
    },
    /// A field the API cannot change on an existing object.
    #[error(
        "{kind} {path}: {field} cannot be changed in place ({detail}); delete the {kind} first"
    )]
    Immutable {
        /// Object kind.
        kind: Kind,
        /// Object path.
        path: String,
        /// Document field.
        field: &'static str,
        /// Current and desired values.
        detail: String,
    },
}

/// Kinds of objects `apply` manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Load balancer.
    Lb,
    /// Pool.
    Pool,
    /// Backend.
    Backend,
    /// Listener.
    Listener,
    /// Routing rule.
    Rule,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Lb => "lb",
            Kind::Pool => "pool",
            Kind::Backend => "backend",
            Kind::Listener => "listener",
            Kind::Rule => "rule",
        })
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Deleted (`--prune`, or a rule the document no longer lists).
    Deleted,
    /// Already as described.
    Unchanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
            Change::Unchanged => "unchanged",
        })
    }
}

/// The line printed for an object: `created pool web/app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What happened.
    pub change: Change,
    /// To what kind of object.
    pub kind: Kind,
    /// `lb[/pool|listener[/backend|rule]]`.
    pub path: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.change, self.kind, self.path)
    }
}

/// One step. `lb` is the index of the load balancer in the document; pools and listeners
/// are named, and the executor maps names to ids (including those it creates).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Nothing to do (an unchanged object).
    Nothing,
    /// Create the load balancer (without its default pool), disabled if so described.
    CreateLb { lb: usize, spec: LoadBalancerDoc },
    /// Change the fields that are set; `enabled` enables or disables.
    UpdateLb { lb: usize, delta: LoadBalancerDoc },
    /// Set (or with `""` clear) the load balancer's default pool.
    SetLbDefaultPool { lb: usize, pool: String },
    /// Create a pool (with its health check), disabled if so described.
    CreatePool { lb: usize, spec: PoolDoc },
    /// Change the fields that are set (the health check through SetHealthCheck).
    UpdatePool {
        lb: usize,
        pool: String,
        delta: PoolDoc,
    },
    /// Delete a pool.
    DeletePool { lb: usize, pool: String },
    /// Add a backend to a pool, disabled if so described.
    CreateBackend {
        lb: usize,
        pool: String,
        spec: crate::cli::document::BackendDoc,
    },
    /// Change the fields that are set.
    UpdateBackend {
        id: String,
        delta: crate::cli::document::BackendDoc,
    },
    /// Remove a backend at once.
    DeleteBackend { id: String },
    /// Create a listener (rules follow as AddRule), disabled if so described.
    CreateListener { lb: usize, spec: ListenerDoc },
    /// Change the fields that are set.
    UpdateListener {
        lb: usize,
        listener: String,
        delta: ListenerDoc,
    },
    /// Delete a listener.
    DeleteListener { lb: usize, listener: String },
    /// Add a rule.
    AddRule {
        lb: usize,
        listener: String,
        rule: RuleDoc,
    },
    /// Replace a rule.
    UpdateRule {
        lb: usize,
        listener: String,
        rule_id: String,
        rule: RuleDoc,
    },
    /// Remove a rule.
    RemoveRule {
        lb: usize,
        listener: String,
        rule_id: String,
    },
}

/// A step and the line to print once it is done (`None` for follow-up steps of an object
/// already reported).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The line to print.
    pub report: Option<Report>,
    /// The work.
    pub op: Op,
}

pub(super) fn act(change: Change, kind: Kind, path: String, op: Op) -> Action {
    Action {
        report: Some(Report { change, kind, path }),
        op,
    }
}

/// The steps that make the server match `doc`. `current[i]` is the server's state of the
/// document's i-th load balancer (`None`: it does not exist yet). With `prune`, pools,
/// backends and listeners of those load balancers that the document does not name are
/// deleted.
pub fn plan(
    doc: &Document,
    current: &[Option<CurrentLb>],
    prune: bool,
) -> Result<Vec<Action>, PlanError> {
    let mut out = Vec::new();
    for (i, want) in doc.load_balancers.iter().enumerate() {
        let cur = current.get(i).and_then(Option::as_ref);
        LbPlanner {
            lb: i,
            want,
            cur,
            prune,
            out: &mut out,
        }
        .run()?;
    }
    Ok(out)
}

/// Counts of reported changes: created, updated, deleted, unchanged.
pub fn summary<'a>(reports: impl IntoIterator<Item = &'a Report>) -> String {
    let mut n = [0usize; 4];
    for r in reports {
        n[r.change as usize] += 1;
    }
    format!(
        "{} created, {} updated, {} deleted, {} unchanged",
        n[0], n[1], n[2], n[3]
    )
}
