//! VM-id backends resolved through the PlasmaVMC HTTP API.
//!
//! # Contract (also in `docs/plasmavmc.md`)
//!
//! `GET {endpoint}/v1/vms/{vm_id}` (the id percent-encoded as one path segment), with
//! `Accept: application/json`, answers:
//!
//! - `200` with a JSON body (at most 1 MiB; unknown fields are ignored):
//!
//!   ```json
//!   {"id": "vm-001", "state": "running",
//!    "interfaces": [{"name": "eth0", "ipv4": "10.0.0.5", "ipv6": null, "private": true}]}
//!   ```
//!
//!   `state` other than `"running"` means the VM has no address ("vm vm-001 is stopped").
//!   The address is the first `ipv4` of an interface with `"private": true`, else the
//!   first `ipv4`, else the first `ipv6`, in the order of `interfaces`. `id`, when present,
//!   must equal the requested id.
//! - `404`: no such VM.
//! - anything else, a timeout, a connection error or a body that does not parse: PlasmaVMC
//!   is unavailable, and the last good address stays in use (retried with back-off).
//!
//! Why "not running" and "not found" drop the last good address at once while errors keep
//! it: a stopped or deleted VM's IP can be handed to another VM, possibly of another
//! tenant, so using the old address would send traffic to the wrong machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::cache::Attempt;
use super::ResolveError;

/// Largest PlasmaVMC response body read; a VM document is a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

/// The VM document of `GET /v1/vms/{id}` (see the module docs for the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDocument {
    /// The VM id; optional, checked against the requested id when present.
    #[serde(default)]
    pub id: Option<String>,
    /// Lifecycle state; only `"running"` VMs have an address.
    pub state: String,
    /// Network interfaces in PlasmaVMC's order.
    #[serde(default)]
    pub interfaces: Vec<VmInterface>,
}

/// One network interface of a [`VmDocument`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInterface {
    /// Interface name, e.g. `eth0` (informational).
    #[serde(default)]
    pub name: Option<String>,
    /// IPv4 address, if any.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address, if any.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// On the tenant's private network (preferred: the load balancer reaches VMs there).
    #[serde(default)]
    pub private: bool,
}

impl VmDocument {
    /// The address to send traffic to: first private IPv4, else first IPv4, else first IPv6.
    pub fn address(&self) -> Option<IpAddr> {
        let interfaces = || self.interfaces.iter();
        interfaces()
            .filter(|nic| nic.private)
            .find_map(|nic| nic.ipv4)
            .or_else(|| interfaces().find_map(|nic| nic.ipv4))
            .map(IpAddr::V4)
            .or_else(|| interfaces().find_map(|nic| nic.ipv6).map(IpAddr::V6))
    }
}

/// A PlasmaVMC API client (plain HTTP/1.1, pooled connections, one timeout per request).
pub(super) struct VmClient {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl VmClient {
    /// A client for `endpoint` (`http://host:port[/prefix]`).
    pub(super) fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let base = endpoint.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("invalid plasmavmc endpoint {endpoint:?}: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!(
                "invalid plasmavmc endpoint {endpoint:?}: expected http://host:port"
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base,
            client,
            timeout,
        })
    }

    /// Asks PlasmaVMC for VM `id`; a good answer is reused for `cache_ttl`.
    pub(super) async fn resolve(&self, id: &str, cache_ttl: Duration) -> Attempt {
        match tokio::time::timeout(self.timeout, self.fetch(id)).await {
            Ok(Ok(document)) => classify(id, &document, cache_ttl),
            Ok(Err(Fetch::NotFound)) => {
                Attempt::Gone(ResolveError::VmNotFound { id: id.to_string() }, cache_ttl)
            }
            Ok(Err(Fetch::Failed(message))) => Attempt::Transient(ResolveError::PlasmaVmc {
                id: id.to_string(),
                message,
            }),
            Err(_) => Attempt::Transient(ResolveError::PlasmaVmc {
                id: id.to_string(),
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }

    async fn fetch(&self, id: &str) -> Result<VmDocument, Fetch> {
        let url = format!("{}/v1/vms/{}", self.base, encode_segment(id));
        let request = Request::get(url.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| Fetch::Failed(format!("cannot build request for {url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Fetch::Failed(format!("GET {url}: {e}")))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(Fetch::NotFound),
            status => return Err(Fetch::Failed(format!("GET {url}: status {status}"))),
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| Fetch::Failed(format!("GET {url}: reading body: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body)
            .map_err(|e| Fetch::Failed(format!("GET {url}: invalid vm document: {e}")))
    }
}

enum Fetch {
    NotFound,
    Failed(String),
}

/// Turns a parsed document into an attempt outcome (see the module docs).
fn classify(id: &str, document: &VmDocument, cache_ttl: Duration) -> Attempt {
    if let Some(got) = document.id.as_deref().filter(|got| *got != id) {
        return Attempt::Transient(ResolveError::PlasmaVmc {
            id: id.to_string(),
            message: format!("answer is about vm {got:?}"),
        });
    }
    if document.state != "running" {
        let state = ResolveError::VmNotRunning {
            id: id.to_string(),
            state: document.state.clone(),
        };
        return Attempt::Gone(state, cache_ttl);
    }
    match document.address() {
        Some(ip) => Attempt::Good(vec![ip].into(), cache_ttl),
        None => Attempt::Gone(ResolveError::VmNoAddress { id: id.to_string() }, cache_ttl),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so an id can never
/// change the request path (`../`, `?`, `#`).
fn encode_segment(segment: &str) -> String {
    // "." and ".." are dot segments that a server or proxy may normalise away.
    let dot_segment = matches!(segment, "." | "..");
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved && !(dot_segment && byte == b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(ipv4: Option<&str>, ipv6: Option<&str>, private: bool) -> VmInterface {
        VmInterface {
            name: None,
            ipv4: ipv4.map(|s| s.parse().unwrap()),
            ipv6: ipv6.map(|s| s.parse().unwrap()),
            private,
        }
    }

    fn doc(interfaces: Vec<VmInterface>) -> VmDocument {
        VmDocument {
            id: None,
            state: "running".into(),
            interfaces,
        }
    }

    #[test]
    fn address_prefers_private_ipv4_then_ipv4_then_ipv6() {
        let d = doc(vec![
            nic(Some("203.0.113.5"), None, false),
            nic(None, Some("fd00::5"), true),
            nic(Some("10.0.0.5"), None, true),
        ]);
        assert_eq!(d.address(), Some("10.0.0.5".parse().unwrap()));
        let d = doc(vec![
            nic(None, Some("fd00::5"), true),
            nic(Some("203.0.113.5"), None, false),
        ]);
        assert_eq!(d.address(), Some("203.0.113.5".parse().unwrap()));
        let d = doc(vec![nic(None, Some("fd00::5"), false)]);
        assert_eq!(d.address(), Some("fd00::5".parse().unwrap()));
        assert_eq!(doc(vec![]).address(), None);
    }

    #[test]
    fn parses_the_documented_example_and_ignores_unknown_fields() {
        let body = r#"{"id": "vm-1", "state": "running", "zone": "a",
            "interfaces": [{"name": "eth0", "ipv4": "10.0.0.5", "ipv6": null, "private": true, "mac": "x"}]}"#;
        let d: VmDocument = serde_json::from_str(body).unwrap();
        assert_eq!(d.address(), Some("10.0.0.5".parse().unwrap()));
        assert!(matches!(
            classify("vm-1", &d, Duration::from_secs(1)),
            Attempt::Good(..)
        ));
        assert!(matches!(
            classify("vm-2", &d, Duration::from_secs(1)),
            Attempt::Transient(..)
        ));
    }

    #[test]
    fn not_running_and_no_address_are_authoritative() {
        let mut d = doc(vec![nic(Some("10.0.0.5"), None, true)]);
        d.state = "stopped".into();
        match classify("vm-1", &d, Duration::from_secs(1)) {
            Attempt::Gone(e, _) => assert_eq!(e.to_string(), "vm vm-1 is stopped"),
            _ => panic!("expected Gone"),
        }
        assert!(matches!(
            classify("vm-1", &doc(vec![]), Duration::from_secs(1)),
            Attempt::Gone(ResolveError::VmNoAddress { .. }, _)
        ));
    }

    #[test]
    fn ids_cannot_escape_the_path_segment() {
        assert_eq!(encode_segment("vm-001_a.b~c"), "vm-001_a.b~c");
        assert_eq!(encode_segment("../x?y#z"), "..%2Fx%3Fy%23z");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment(".."), "%2E%2E");
    }

    #[test]
    fn endpoint_must_be_plain_http() {
        let t = Duration::from_secs(1);
        assert!(VmClient::new("http://127.0.0.1:8080/", t).is_ok());
        assert!(VmClient::new("https://plasmavmc:8443", t).is_err());
        assert!(VmClient::new("plasmavmc:8080", t).is_err());
        assert!(VmClient::new("not a url", t).is_err());
    }
}
