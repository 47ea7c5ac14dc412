//! The export form of a document: empty values (no tags, no default pool, no rules, ...)
//! are left out instead of written as `""`, `{}` or `[]`. On import a left-out field keeps
//! the server's value, which for a new object is that same empty value, so export →
//! import → export gives the same text.

use super::{LoadBalancerDoc, StringMap};

fn str_opt(o: &mut Option<String>) {
    if o.as_deref() == Some("") {
        *o = None;
    }
}

fn map_opt(o: &mut Option<StringMap>) {
    if o.as_ref().is_some_and(StringMap::is_empty) {
        *o = None;
    }
}

fn vec_opt<T>(o: &mut Option<Vec<T>>) {
    if o.as_ref().is_some_and(Vec::is_empty) {
        *o = None;
    }
}

impl LoadBalancerDoc {
    /// The same load balancer with empty values left out.
    pub fn without_empty(mut self) -> Self {
        str_opt(&mut self.project_id);
        str_opt(&mut self.description);
        str_opt(&mut self.vip);
        map_opt(&mut self.tags);
        map_opt(&mut self.metadata);
        str_opt(&mut self.default_pool);
        for p in &mut self.pools {
            if p.proxy_protocol == Some(crate::cli::enums::ProxyProtocol::None) {
                p.proxy_protocol = None;
            }
            if let Some(hc) = &mut p.health_check {
                str_opt(&mut hc.path);
                vec_opt(&mut hc.expected_codes);
                str_opt(&mut hc.host_header);
                map_opt(&mut hc.headers);
                str_opt(&mut hc.hostname);
                str_opt(&mut hc.expected_address);
                str_opt(&mut hc.service);
            }
            if let Some(sp) = &mut p.session_persistence {
                str_opt(&mut sp.cookie_name);
            }
            for b in &mut p.backends {
                map_opt(&mut b.metadata);
                if b.max_connections == Some(0) {
                    b.max_connections = None;
                }
            }
        }
        for l in &mut self.listeners {
            str_opt(&mut l.default_pool);
            if l.connection_limit == Some(0) {
                l.connection_limit = None;
            }
            if let Some(tls) = &mut l.tls {
                str_opt(&mut tls.certificate);
                vec_opt(&mut tls.cipher_suites);
                map_opt(&mut tls.sni_certificates);
                str_opt(&mut tls.client_ca_certificate);
            }
            for r in l.rules.iter_mut().flatten() {
                vec_opt(&mut r.conditions);
                if let Some(fr) = r.action.as_mut().and_then(|a| a.fixed_response.as_mut()) {
                    str_opt(&mut fr.content_type);
                    str_opt(&mut fr.body);
                }
            }
            vec_opt(&mut l.rules);
        }
        self
    }
}
