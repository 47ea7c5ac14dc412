//! Consistency checks on a parsed document, and the normal form both the document and the
//! server's current state are put in before they are compared (so that, e.g., `API.Example.com`
//! and the server's lower-cased `api.example.com` are not a difference).

use std::collections::HashSet;
use std::net::IpAddr;

use super::{
    ConditionDoc, Document, DocumentError, HealthCheckDoc, ListenerDoc, LoadBalancerDoc, PoolDoc,
    RuleDoc, TlsDoc,
};
use crate::cli::enums::CheckKind;

fn invalid(path: &str, message: impl Into<String>) -> DocumentError {
    DocumentError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Fails on an empty name or one seen before in the same scope.
fn unique<'a>(
    seen: &mut HashSet<&'a str>,
    name: &'a str,
    path: &str,
    what: &str,
) -> Result<(), DocumentError> {
    if name.trim().is_empty() {
        return Err(invalid(path, format!("{what} without a name")));
    }
    if !seen.insert(name) {
        return Err(invalid(path, format!("{what} {name:?} appears twice")));
    }
    Ok(())
}

fn check_port(port: Option<u32>, path: &str) -> Result<(), DocumentError> {
    match port {
        Some(p) if p == 0 || p > 65_535 => {
            Err(invalid(path, format!("port {p} is not in 1-65535")))
        }
        _ => Ok(()),
    }
}

impl Document {
    /// Names present and unique in their scope, one condition/action per entry, health
    /// check fields that belong to its type, ports in range.
    pub fn validate(&self) -> Result<(), DocumentError> {
        let mut lbs = HashSet::new();
        for lb in &self.load_balancers {
            let path = format!("loadBalancers[{}]", lb.name);
            if lb.name.trim().is_empty() {
                return Err(invalid("loadBalancers", "load balancer without a name"));
            }
            if lb.org_id.trim().is_empty() {
                return Err(invalid(&path, "orgId is required"));
            }
            if !lbs.insert((
                lb.org_id.as_str(),
                lb.project_id.as_deref(),
                lb.name.as_str(),
            )) {
                return Err(invalid(&path, "this load balancer appears twice"));
            }
            lb.validate(&path)?;
        }
        Ok(())
    }
}

impl LoadBalancerDoc {
    fn validate(&self, path: &str) -> Result<(), DocumentError> {
        let mut pools = HashSet::new();
        for p in &self.pools {
            unique(&mut pools, &p.name, path, "pool")?;
            p.validate(&format!("{path}.pools[{}]", p.name))?;
        }
        let mut listeners = HashSet::new();
        for l in &self.listeners {
            unique(&mut listeners, &l.name, path, "listener")?;
            l.validate(&format!("{path}.listeners[{}]", l.name))?;
        }
        Ok(())
    }
}

impl PoolDoc {
    fn validate(&self, path: &str) -> Result<(), DocumentError> {
        if let Some(hc) = &self.health_check {
            hc.validate(&format!("{path}.healthCheck"))?;
        }
        let mut backends = HashSet::new();
        for b in &self.backends {
            unique(&mut backends, &b.name, path, "backend")?;
            let bpath = format!("{path}.backends[{}]", b.name);
            let addresses = [&b.ip, &b.hostname, &b.vm_id]
                .iter()
                .filter(|a| a.is_some())
                .count();
            if addresses > 1 {
                return Err(invalid(&bpath, "give only one of ip, hostname and vmId"));
            }
            if let Some(ip) = &b.ip {
                ip.parse::<IpAddr>()
                    .map_err(|_| invalid(&bpath, format!("ip {ip:?} is not an IP address")))?;
            }
            check_port(b.port, &bpath)?;
        }
        Ok(())
    }
}

impl HealthCheckDoc {
    /// Fails when a field does not belong to the check's type (also used for flags).
    pub fn check(&self) -> Result<(), DocumentError> {
        self.validate("healthCheck")
    }

    fn validate(&self, path: &str) -> Result<(), DocumentError> {
        let http = matches!(self.kind, CheckKind::Http | CheckKind::Https);
        let misplaced = [
            ("path", self.path.is_some() && !http),
            ("method", self.method.is_some() && !http),
            ("expectedCodes", self.expected_codes.is_some() && !http),
            ("hostHeader", self.host_header.is_some() && !http),
            ("headers", self.headers.is_some() && !http),
            (
                "verifyTls",
                self.verify_tls.is_some() && self.kind != CheckKind::Https,
            ),
            (
                "hostname",
                self.hostname.is_some() && self.kind != CheckKind::Dns,
            ),
            (
                "recordType",
                self.record_type.is_some() && self.kind != CheckKind::Dns,
            ),
            (
                "expectedAddress",
                self.expected_address.is_some() && self.kind != CheckKind::Dns,
            ),
            (
                "service",
                self.service.is_some() && self.kind != CheckKind::Grpc,
            ),
        ];
        match misplaced.iter().find(|(_, bad)| *bad) {
            Some((field, _)) => Err(invalid(
                path,
                format!("{field} does not apply to a {} check", self.kind.as_str()),
            )),
            None => Ok(()),
        }
    }
}

impl ListenerDoc {
    fn validate(&self, path: &str) -> Result<(), DocumentError> {
        check_port(self.port, path)?;
        let mut rules = HashSet::new();
        for r in self.rules.iter().flatten() {
            unique(&mut rules, &r.name, path, "rule")?;
            r.validate(&format!("{path}.rules[{}]", r.name))?;
        }
        Ok(())
    }
}

impl RuleDoc {
    fn validate(&self, path: &str) -> Result<(), DocumentError> {
        for (i, c) in self.conditions.iter().flatten().enumerate() {
            if c.count() != 1 {
                return Err(invalid(
                    &format!("{path}.conditions[{i}]"),
                    "each condition needs exactly one field",
                ));
            }
        }
        if let Some(a) = &self.action {
            let n = [
                a.forward_to_pool.is_some(),
                a.redirect.is_some(),
                a.fixed_response.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                return Err(invalid(
                    &format!("{path}.action"),
                    "give exactly one of forwardToPool, redirect, fixedResponse",
                ));
            }
        }
        Ok(())
    }
}

impl ConditionDoc {
    fn count(&self) -> usize {
        [
            self.host_header.is_some(),
            self.path_prefix.is_some(),
            self.path_exact.is_some(),
            self.path_regex.is_some(),
            self.header.is_some(),
            self.method.is_some(),
            self.query_param.is_some(),
            self.source_ip.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
    }
}

// ───────────────────────────── normal form ─────────────────────────────

/// An IP address in its canonical text form; anything else unchanged.
fn canonical_ip(s: &mut String) {
    if let Ok(ip) = s.parse::<IpAddr>() {
        *s = ip.to_string();
    }
}

impl Document {
    /// Puts every load balancer in normal form.
    pub fn normalize(&mut self) {
        self.load_balancers
            .iter_mut()
            .for_each(LoadBalancerDoc::normalize);
    }
}

impl LoadBalancerDoc {
    /// Case-insensitive names lower-cased, IP addresses canonical.
    pub fn normalize(&mut self) {
        if let Some(vip) = &mut self.vip {
            canonical_ip(vip);
        }
        for p in &mut self.pools {
            if let Some(hc) = &mut p.health_check {
                hc.headers = hc.headers.take().map(|h| {
                    h.into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v))
                        .collect()
                });
            }
            for b in &mut p.backends {
                if let Some(ip) = &mut b.ip {
                    canonical_ip(ip);
                }
                if let Some(h) = &mut b.hostname {
                    *h = h.to_ascii_lowercase();
                }
            }
        }
        for l in &mut self.listeners {
            if let Some(tls) = &mut l.tls {
                tls.normalize();
            }
            for r in l.rules.iter_mut().flatten() {
                for c in r.conditions.iter_mut().flatten() {
                    if let Some(hosts) = &mut c.host_header {
                        hosts.iter_mut().for_each(|h| *h = h.to_ascii_lowercase());
                    }
                    if let Some(h) = &mut c.header {
                        h.name = h.name.to_ascii_lowercase();
                    }
                }
            }
        }
    }
}

impl TlsDoc {
    fn normalize(&mut self) {
        self.sni_certificates = self.sni_certificates.take().map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        });
    }
}
