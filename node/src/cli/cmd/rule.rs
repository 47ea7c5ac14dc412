//! `fiberlb rule ...`: the routing rules of a listener (ListenerService rule RPCs).

use fiberlb_proto::v1 as pv;
use pv::rule_action::Action;
use pv::rule_condition::Condition;

use crate::cli::args::{key_value, name_values};
use crate::cli::conn::Api;
use crate::cli::enums::Method;
use crate::cli::error::CliError;
use crate::cli::output::{print_object, Format};

/// Conditions (all must match) and the action of a rule.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleFlags {
    /// Rule name, unique within the listener.
    #[arg(long)]
    pub name: Option<String>,
    /// Lower is evaluated first.
    #[arg(long)]
    pub priority: Option<u32>,
    /// Enable (true, the default for new rules) or disable (false) the rule.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enabled: Option<bool>,
    /// Condition: Host header (or SNI) is one of these (repeatable).
    #[arg(long = "host", value_name = "HOST", help_heading = "Conditions")]
    pub hosts: Vec<String>,
    /// Condition: path starts with this (repeatable: all must match).
    #[arg(long, value_name = "PREFIX", help_heading = "Conditions")]
    pub path_prefix: Vec<String>,
    /// Condition: path equals this.
    #[arg(long, value_name = "PATH", help_heading = "Conditions")]
    pub path_exact: Vec<String>,
    /// Condition: path matches this regular expression.
    #[arg(long, value_name = "REGEX", help_heading = "Conditions")]
    pub path_regex: Vec<String>,
    /// Condition: header NAME has one of the values (repeatable).
    #[arg(long, value_name = "NAME=V1,V2", value_parser = name_values, help_heading = "Conditions")]
    pub header: Vec<(String, Vec<String>)>,
    /// Condition: method is one of these.
    #[arg(
        long,
        value_name = "METHODS",
        value_enum,
        value_delimiter = ',',
        ignore_case = true,
        help_heading = "Conditions"
    )]
    pub method: Vec<Method>,
    /// Condition: query parameter NAME equals VALUE (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = key_value, help_heading = "Conditions")]
    pub query: Vec<(String, String)>,
    /// Condition: client address is in one of these networks (repeatable).
    #[arg(long, value_name = "CIDR", help_heading = "Conditions")]
    pub source_cidr: Vec<String>,
    /// Update only: remove every condition (the rule then matches everything).
    #[arg(long, help_heading = "Conditions")]
    pub clear_conditions: bool,
    /// Action: forward to this pool.
    #[arg(
        long,
        value_name = "POOL_ID",
        help_heading = "Action (one of)",
        group = "rule_action"
    )]
    pub forward_pool: Option<String>,
    /// Action: redirect to this URL.
    #[arg(
        long,
        value_name = "URL",
        help_heading = "Action (one of)",
        group = "rule_action"
    )]
    pub redirect: Option<String>,
    /// Redirect status: 301, 302 (default), 307 or 308.
    #[arg(
        long,
        value_name = "CODE",
        requires = "redirect",
        help_heading = "Action (one of)"
    )]
    pub status: Option<u32>,
    /// Action: answer with this status.
    #[arg(
        long,
        value_name = "CODE",
        help_heading = "Action (one of)",
        group = "rule_action"
    )]
    pub fixed_status: Option<u32>,
    /// Fixed response Content-Type.
    #[arg(long, requires = "fixed_status", help_heading = "Action (one of)")]
    pub content_type: Option<String>,
    /// Fixed response body.
    #[arg(long, requires = "fixed_status", help_heading = "Action (one of)")]
    pub body: Option<String>,
}

impl RuleFlags {
    fn conditions(&self) -> Vec<pv::RuleCondition> {
        let mut out = Vec::new();
        if !self.hosts.is_empty() {
            out.push(Condition::HostHeader(pv::HostHeaderCondition {
                values: self.hosts.clone(),
            }));
        }
        out.extend(
            self.path_prefix
                .iter()
                .map(|v| Condition::PathPrefix(pv::PathPrefixCondition { value: v.clone() })),
        );
        out.extend(
            self.path_exact
                .iter()
                .map(|v| Condition::PathExact(pv::PathExactCondition { value: v.clone() })),
        );
        out.extend(
            self.path_regex
                .iter()
                .map(|p| Condition::PathRegex(pv::PathRegexCondition { pattern: p.clone() })),
        );
        out.extend(self.header.iter().map(|(n, v)| {
            Condition::Header(pv::HeaderCondition {
                name: n.clone(),
                values: v.clone(),
            })
        }));
        if !self.method.is_empty() {
            let methods = self.method.iter().map(|m| m.to_proto()).collect();
            out.push(Condition::Method(pv::MethodCondition { methods }));
        }
        out.extend(self.query.iter().map(|(n, v)| {
            Condition::QueryParam(pv::QueryParamCondition {
                name: n.clone(),
                value: v.clone(),
            })
        }));
        if !self.source_cidr.is_empty() {
            out.push(Condition::SourceIp(pv::SourceIpCondition {
                cidrs: self.source_cidr.clone(),
            }));
        }
        out.into_iter()
            .map(|c| pv::RuleCondition { condition: Some(c) })
            .collect()
    }

    fn action(&self) -> Option<pv::RuleAction> {
        let a = if let Some(pool) = &self.forward_pool {
            Action::ForwardToPool(pv::ForwardToPoolAction {
                pool_id: pool.clone(),
            })
        } else if let Some(url) = &self.redirect {
            Action::Redirect(pv::RedirectAction {
                url: url.clone(),
                status_code: self.status.unwrap_or(302),
            })
        } else if let Some(status) = self.fixed_status {
            Action::FixedResponse(pv::FixedResponseAction {
                status_code: status,
                content_type: self.content_type.clone().unwrap_or_default(),
                body: self.body.clone().unwrap_or_default(),
            })
        } else {
            return None;
        };
        Some(pv::RuleAction { action: Some(a) })
    }

    /// `base` with the given flags applied: conditions and action are replaced when any
    /// of their flags is given.
    fn apply_to(&self, mut base: pv::RoutingRule) -> pv::RoutingRule {
        if let Some(n) = &self.name {
            base.name = n.clone();
        }
        if let Some(p) = self.priority {
            base.priority = p;
        }
        if let Some(e) = self.enabled {
            base.enabled = e;
        }
        let conditions = self.conditions();
        if !conditions.is_empty() || self.clear_conditions {
            base.conditions = conditions;
        }
        if let Some(a) = self.action() {
            base.action = Some(a);
        }
        base
    }
}

/// Rule commands.
#[derive(Debug, clap::Subcommand)]
pub enum RuleCmd {
    /// Add a routing rule to a listener.
    #[command(
        after_help = "Example:\n  fiberlb rule add --listener L --name api --priority 10 \\\n    --host api.example.com --path-prefix /v1/ --method GET,POST --forward-pool P"
    )]
    Add {
        /// Listener id.
        #[arg(long, alias = "listener-id")]
        listener: String,
        #[command(flatten)]
        rule: RuleFlags,
        /// Fail unless the listener is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Change a routing rule (flags given replace those parts; the rest is kept).
    Update {
        /// Listener id.
        #[arg(long, alias = "listener-id")]
        listener: String,
        /// Rule id (or name).
        rule_id: String,
        #[command(flatten)]
        rule: RuleFlags,
        /// Fail unless the listener is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Remove a routing rule.
    Remove {
        /// Listener id.
        #[arg(long, alias = "listener-id")]
        listener: String,
        /// Rule id (or name).
        rule_id: String,
        /// Fail unless the listener is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// The listener's rule whose id (or else name) is `key`.
async fn find_rule(api: &Api, listener: &str, key: &str) -> Result<pv::RoutingRule, CliError> {
    let l = api
        .listener
        .clone()
        .get_listener(pv::GetListenerRequest {
            listener_id: listener.to_string(),
        })
        .await?;
    let rules = l.into_inner().rules;
    let found = rules
        .iter()
        .find(|r| r.id == key)
        .or_else(|| rules.iter().find(|r| r.name == key));
    found
        .cloned()
        .ok_or_else(|| CliError::invalid(format!("listener {listener} has no rule {key:?}")))
}

/// Runs one rule command.
pub async fn run(api: Api, cmd: RuleCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.listener.clone();
    match cmd {
        RuleCmd::Add {
            listener,
            rule,
            revision,
        } => {
            if rule.name.is_none() {
                return Err(CliError::invalid("--name is required"));
            }
            if rule.action().is_none() {
                return Err(CliError::invalid(
                    "an action is required: --forward-pool, --redirect or --fixed-status",
                ));
            }
            let new = rule.apply_to(pv::RoutingRule {
                enabled: true,
                ..Default::default()
            });
            let req = pv::AddRoutingRuleRequest {
                listener_id: listener,
                rule: Some(new),
                revision,
            };
            print_object(fmt, &c.add_routing_rule(req).await?.into_inner())
        }
        RuleCmd::Update {
            listener,
            rule_id,
            rule,
            revision,
        } => {
            let cur = find_rule(&api, &listener, &rule_id).await?;
            let id = cur.id.clone();
            let req = pv::UpdateRoutingRuleRequest {
                listener_id: listener,
                rule_id: id,
                rule: Some(rule.apply_to(cur)),
                revision,
            };
            print_object(fmt, &c.update_routing_rule(req).await?.into_inner())
        }
        RuleCmd::Remove {
            listener,
            rule_id,
            revision,
        } => {
            let id = find_rule(&api, &listener, &rule_id).await?.id;
            let req = pv::RemoveRoutingRuleRequest {
                listener_id: listener,
                rule_id: id,
                revision,
            };
            print_object(fmt, &c.remove_routing_rule(req).await?.into_inner())
        }
    }
}
