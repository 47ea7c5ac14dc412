use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Scope;

/// What a listener speaks (spec §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// L4 TCP.
    Tcp,
    /// L4 UDP.
    Udp,
    /// L7 HTTP (HTTP/1.x and h2c).
    Http,
    /// L7 HTTPS with TLS termination.
    Https,
    /// L4 TCP with TLS passthrough, routed by SNI.
    TcpTls,
}

impl ListenerProtocol {
    /// Whether the listener uses a UDP socket (ports of UDP and TCP listeners do not clash).
    pub fn is_udp(self) -> bool {
        self == ListenerProtocol::Udp
    }

    /// Whether the client sends first on every connection (an HTTP request, a TLS
    /// ClientHello); a plain TCP listener may carry a protocol where the server does.
    pub fn client_speaks_first(self) -> bool {
        matches!(
            self,
            ListenerProtocol::Http | ListenerProtocol::Https | ListenerProtocol::TcpTls
        )
    }

    /// Whether routing rules apply (HTTP/HTTPS, and SNI host rules for TLS passthrough).
    pub fn supports_rules(self) -> bool {
        matches!(
            self,
            ListenerProtocol::Http | ListenerProtocol::Https | ListenerProtocol::TcpTls
        )
    }
}

/// Lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Whether HTTPS clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// No client certificate is asked for.
    None,
    /// Asked for and verified when given.
    Optional,
    /// Required and verified.
    Required,
}

/// TLS settings of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsConfig {
    /// Default certificate.
    pub certificate_id: String,
    /// `None` = the server default (`[proxy.tls] default_min_version`).
    pub min_version: Option<TlsVersion>,
    /// rustls cipher suite names; empty = the provider's defaults.
    pub cipher_suites: Vec<String>,
    /// Client certificate policy.
    pub client_auth: ClientAuthMode,
    /// SNI name (exact or `*.suffix`) → certificate id.
    pub sni_certificates: BTreeMap<String, String>,
    /// CA bundle (a certificate object) verifying client certificates.
    pub client_ca_certificate_id: Option<String>,
}

/// HTTP methods usable in rules and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// HEAD
    Head,
    /// OPTIONS
    Options,
}

impl HttpMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Head => "HEAD",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

/// One condition of a routing rule; all conditions of a rule must match (spec §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Host header (or SNI for TLS passthrough) equals one value; `*.example.com` wildcards.
    HostHeader {
        /// Accepted hosts, lower-case.
        values: Vec<String>,
    },
    /// Path starts with the value.
    PathPrefix {
        /// Prefix, starting with `/`.
        value: String,
    },
    /// Path equals the value.
    PathExact {
        /// Path, starting with `/`.
        value: String,
    },
    /// Path matches a regular expression (validated on write).
    PathRegex {
        /// `regex` crate syntax.
        pattern: String,
    },
    /// A header has one of the values.
    Header {
        /// Header name, lower-case.
        name: String,
        /// Accepted values (any).
        values: Vec<String>,
    },
    /// The request method is one of these.
    Method {
        /// Accepted methods.
        methods: Vec<HttpMethod>,
    },
    /// A query parameter has this value.
    QueryParam {
        /// Parameter name.
        name: String,
        /// Required value.
        value: String,
    },
    /// The client address is inside one of the networks.
    SourceIp {
        /// Networks.
        cidrs: Vec<IpNet>,
    },
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Send the request to a pool of the same load balancer.
    ForwardToPool {
        /// Target pool.
        pool_id: String,
    },
    /// Answer with a redirect.
    Redirect {
        /// Location.
        url: String,
        /// 301, 302, 307 or 308.
        status_code: u16,
    },
    /// Answer with a fixed response.
    FixedResponse {
        /// HTTP status.
        status_code: u16,
        /// Content-Type header.
        content_type: String,
        /// Body.
        body: String,
    },
}

/// An L7 routing rule (spec §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingRule {
    /// UUID.
    pub id: String,
    /// Unique within the listener.
    pub name: String,
    /// Lower is evaluated first.
    pub priority: u32,
    /// All must match; empty matches everything.
    pub conditions: Vec<Condition>,
    /// What to do on a match.
    pub action: RuleAction,
    /// Disabled rules are skipped.
    pub enabled: bool,
}

/// A network endpoint of a load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// UUID.
    pub id: String,
    /// Parent load balancer.
    pub lb_id: String,
    /// The load balancer's scope.
    pub scope: Scope,
    /// Unique within the load balancer.
    pub name: String,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Port, unique within the load balancer per transport (TCP-family or UDP).
    pub port: u16,
    /// TLS termination (HTTPS only).
    pub tls: Option<TlsConfig>,
    /// Pool for traffic no rule claims.
    pub default_pool_id: Option<String>,
    /// Routing rules, kept sorted by priority then name.
    pub rules: Vec<RoutingRule>,
    /// Maximum concurrent connections.
    pub connection_limit: Option<u32>,
    /// Client-side idle timeout (ms).
    pub timeout_client_ms: u32,
    /// Backend-side timeout (ms).
    pub timeout_backend_ms: u32,
    /// Disabled listeners are not bound.
    pub enabled: bool,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last modification (Unix ms).
    pub updated_at: u64,
    /// Store revision (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}

impl Listener {
    /// Default client timeout when the request gives none: 60 s.
    pub const DEFAULT_TIMEOUT_CLIENT_MS: u32 = 60_000;
    /// Default backend timeout when the request gives none: 30 s.
    pub const DEFAULT_TIMEOUT_BACKEND_MS: u32 = 30_000;

    /// Every pool this listener refers to (default pool and rule targets).
    pub fn referenced_pools(&self) -> impl Iterator<Item = &str> {
        self.default_pool_id
            .as_deref()
            .into_iter()
            .chain(self.rules.iter().filter_map(|r| match &r.action {
                RuleAction::ForwardToPool { pool_id } => Some(pool_id.as_str()),
                _ => None,
            }))
    }

    /// Every certificate this listener refers to.
    pub fn referenced_certificates(&self) -> Vec<&str> {
        let mut v = Vec::new();
        if let Some(tls) = &self.tls {
            v.push(tls.certificate_id.as_str());
            v.extend(tls.sni_certificates.values().map(String::as_str));
            v.extend(tls.client_ca_certificate_id.as_deref());
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Keeps rules in evaluation order.
    pub fn sort_rules(&mut self) {
        self.rules.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
    }
}
