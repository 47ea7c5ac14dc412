//! The L7 route table of one listener: its routing rules (spec §3.3) compiled once per
//! configuration snapshot, then matched per request without allocating.
//!
//! Rules are tried lowest priority number first (then by name, so every node agrees); the
//! first rule whose conditions all hold decides. No matching rule sends the request to the
//! listener's default pool, else the load balancer's; with neither the answer is 404.
//!
//! Compilation never fails: a condition that cannot be compiled (a regex or header name
//! that slipped past the API's validation, say from an older version) makes its rule
//! never match, and is logged once per snapshot instead of per request.

mod cond;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use fiberlb_api::model::{Listener, LoadBalancer, RoutingRule, RuleAction};
use http::StatusCode;

use cond::Matcher;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Route<'a> {
    /// Proxy it to a pool.
    Forward {
        /// Target pool id.
        pool_id: &'a str,
        /// Name of the rule that matched; `None` for the default pool (for logs).
        rule: Option<&'a str>,
    },
    /// Answer with a redirect.
    Redirect {
        /// `Location` header value (already checked to be a valid header value).
        location: &'a str,
        /// A 3xx status.
        status: StatusCode,
    },
    /// Answer with a fixed response.
    Fixed {
        /// Status.
        status: StatusCode,
        /// `Content-Type` header value (already checked to be a valid header value).
        content_type: &'a str,
        /// Body (a cheap reference-counted clone).
        body: Bytes,
    },
    /// No rule matched and there is no default pool: answer 404.
    NotFound,
}

/// What a route decision may depend on, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// `Host` header or `:authority`, any case; a port is stripped here if still present.
    pub host: Option<&'a str>,
    /// URI path, not percent-decoded.
    pub path: &'a str,
    /// Raw query string (without `?`).
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The client's address (after PROXY protocol / trusted forwarding, if any).
    pub client_ip: std::net::IpAddr,
}

/// What a compiled rule does.
#[derive(Debug)]
enum Action {
    Forward(String),
    Redirect {
        location: String,
        status: StatusCode,
    },
    Fixed {
        status: StatusCode,
        content_type: String,
        body: Bytes,
    },
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    /// All must match; empty matches everything.
    matchers: Vec<Matcher>,
    action: Action,
}

/// A listener's rules, compiled for matching.
#[derive(Debug)]
pub struct RouteTable {
    /// Enabled rules in evaluation order.
    rules: Vec<CompiledRule>,
    default_pool: Option<String>,
    /// The load balancer's id, shared by every request's access record (a copy would be
    /// an allocation per request).
    lb_id: Arc<str>,
}

impl RouteTable {
    /// Compiles `listener`'s rules: enabled ones only, in priority order (then name); the
    /// default pool is the listener's, else `lb`'s.
    pub fn compile(listener: &Listener, lb: &LoadBalancer) -> RouteTable {
        let mut ordered: Vec<&RoutingRule> = listener.rules.iter().filter(|r| r.enabled).collect();
        // The store keeps them sorted already; sorting again costs nothing and keeps the
        // order right even for a listener written by an older version.
        ordered.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let rules = ordered
            .into_iter()
            .map(|rule| compile_rule(listener, rule))
            .collect();
        let default_pool = listener
            .default_pool_id
            .clone()
            .or_else(|| lb.default_pool_id.clone())
            .filter(|p| !p.is_empty());
        RouteTable {
            rules,
            default_pool,
            lb_id: Arc::from(lb.id.as_str()),
        }
    }

    /// The id of the listener's load balancer.
    pub fn lb_id(&self) -> &Arc<str> {
        &self.lb_id
    }

    /// Decides what to do with `req`. Does not allocate.
    pub fn route(&self, req: &RequestView<'_>) -> Route<'_> {
        let host = req.host.map(strip_port);
        let view = RequestView { host, ..*req };
        for rule in &self.rules {
            if rule.matchers.iter().all(|m| m.matches(&view)) {
                return match &rule.action {
                    Action::Forward(pool_id) => Route::Forward {
                        pool_id,
                        rule: Some(&rule.name),
                    },
                    Action::Redirect { location, status } => Route::Redirect {
                        location,
                        status: *status,
                    },
                    Action::Fixed {
                        status,
                        content_type,
                        body,
                    } => Route::Fixed {
                        status: *status,
                        content_type,
                        body: body.clone(),
                    },
                };
            }
        }
        match &self.default_pool {
            Some(pool_id) => Route::Forward {
                pool_id,
                rule: None,
            },
            None => Route::NotFound,
        }
    }

    /// The pool taking requests no rule claims, if any.
    pub fn default_pool(&self) -> Option<&str> {
        self.default_pool.as_deref()
    }

    /// Number of enabled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Compiles one rule; anything invalid turns it into a rule that never matches.
fn compile_rule(listener: &Listener, rule: &RoutingRule) -> CompiledRule {
    let never = |why: String| {
        tracing::warn!(
            listener = %listener.id,
            rule = %rule.name,
            reason = %why,
            "routing rule is invalid and will never match"
        );
        CompiledRule {
            name: rule.name.clone(),
            matchers: vec![Matcher::Never],
            action: Action::Forward(String::new()),
        }
    };
    let mut matchers = Vec::with_capacity(rule.conditions.len());
    for c in &rule.conditions {
        match Matcher::compile(c) {
            Ok(m) => matchers.push(m),
            Err(why) => return never(why),
        }
    }
    let action = match &rule.action {
        RuleAction::ForwardToPool { pool_id } => Action::Forward(pool_id.clone()),
        RuleAction::Redirect { url, status_code } => {
            let status = match StatusCode::from_u16(*status_code) {
                Ok(s) if s.is_redirection() => s,
                _ => return never(format!("redirect status {status_code} is not 3xx")),
            };
            if http::HeaderValue::from_str(url).is_err() {
                return never(format!("redirect location {url:?} is not a header value"));
            }
            Action::Redirect {
                location: url.clone(),
                status,
            }
        }
        RuleAction::FixedResponse {
            status_code,
            content_type,
            body,
        } => {
            let Ok(status) = StatusCode::from_u16(*status_code) else {
                return never(format!("fixed response status {status_code} is invalid"));
            };
            if http::HeaderValue::from_str(content_type).is_err() {
                return never(format!(
                    "content type {content_type:?} is not a header value"
                ));
            }
            Action::Fixed {
                status,
                content_type: content_type.clone(),
                body: Bytes::from(body.clone().into_bytes()),
            }
        }
    };
    CompiledRule {
        name: rule.name.clone(),
        matchers,
        action,
    }
}

/// `host` without a trailing `:port`: `example.com:8080` → `example.com`,
/// `[::1]:443` → `[::1]`. A bare IPv6 address (several colons, no brackets) is left as is.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: keep the brackets, drop what follows them.
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}
