//! HTTP and HTTPS checks: one request on a fresh connection (`Connection: close`), passing
//! when the status is one of the expected codes. HTTPS verifies the backend certificate
//! unless the check says not to, sending the host header's name as SNI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fiberlb_api::model::HttpMethod;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::CheckError;

/// What to send and accept.
#[derive(Debug, Clone, Copy)]
pub(super) struct HttpProbe<'a> {
    pub method: HttpMethod,
    pub path: &'a str,
    pub expected_codes: &'a [u16],
    /// Host header (and SNI); `None` = `default_host`.
    pub host_header: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    /// User-Agent (names the probing node in a fleet); the check's headers may override it.
    pub user_agent: &'a HeaderValue,
}

/// Runs the check against `addr`; `tls` = HTTPS with that client configuration.
/// `default_host` is the backend's address as written in its config (with the port when
/// it is not the scheme's default).
pub(super) async fn check(
    addr: SocketAddr,
    default_host: &str,
    probe: HttpProbe<'_>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), CheckError> {
    let host = probe
        .host_header
        .filter(|h| !h.is_empty())
        .unwrap_or(default_host);
    let req = request(probe, host)?;
    let tcp = super::tcp::connect(addr).await?;
    let status = match tls {
        None => exchange(tcp, req).await?,
        Some(cfg) => {
            let name = ServerName::try_from(host_name(host).to_string()).map_err(|e| {
                CheckError::Config(format!("{host:?} is not a TLS server name: {e}"))
            })?;
            let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| CheckError::Tls(e.to_string()))?;
            exchange(stream, req).await?
        }
    };
    let expected: &[u16] = if probe.expected_codes.is_empty() {
        &[200]
    } else {
        probe.expected_codes
    };
    if expected.contains(&status) {
        Ok(())
    } else {
        Err(CheckError::Status {
            got: status,
            expected: expected.to_vec(),
        })
    }
}

fn request(p: HttpProbe<'_>, host: &str) -> Result<Request<Empty<Bytes>>, CheckError> {
    let path = if p.path.is_empty() { "/" } else { p.path };
    let method = Method::from_bytes(p.method.as_str().as_bytes())
        .map_err(|e| CheckError::Config(e.to_string()))?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(Empty::new())
        .map_err(|e| CheckError::Config(format!("path {path:?}: {e}")))?;
    let h = req.headers_mut();
    h.insert(HOST, value(host)?);
    h.insert(USER_AGENT, p.user_agent.clone());
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    for (k, v) in p.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| CheckError::Config(format!("header {k:?}: {e}")))?;
        h.insert(name, value(v)?);
    }
    Ok(req)
}

fn value(v: &str) -> Result<HeaderValue, CheckError> {
    HeaderValue::from_str(v).map_err(|e| CheckError::Config(format!("header value {v:?}: {e}")))
}

/// The host part of a Host header value: without the port, IPv6 without brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Aborts the connection task when the check ends (or its timeout drops it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(io: S, req: Request<Empty<Bytes>>) -> Result<u16, CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| CheckError::Http(e.to_string()))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CheckError::Http(e.to_string()))?;
    // The body is not read: the status decides, and the connection closes with the check.
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_drop_the_port_and_brackets() {
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("example.com:8443"), "example.com");
        assert_eq!(host_name("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_name("[::1]:443"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("::1"), "::1");
    }

    #[test]
    fn requests_carry_host_agent_close_and_extra_headers() {
        let headers = BTreeMap::from([("x-probe".to_string(), "1".to_string())]);
        let agent = HeaderValue::from_static("fiberlb-health-check/0 (node-a)");
        let p = HttpProbe {
            method: HttpMethod::Head,
            path: "",
            expected_codes: &[],
            host_header: None,
            headers: &headers,
            user_agent: &agent,
        };
        let r = request(p, "svc:8080").expect("valid");
        assert_eq!(r.method(), Method::HEAD);
        assert_eq!(r.uri(), "/");
        assert_eq!(r.headers()[HOST], "svc:8080");
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.headers()[USER_AGENT], "fiberlb-health-check/0 (node-a)");
        assert_eq!(r.headers()["x-probe"], "1");
        let bad = BTreeMap::from([("bad header".to_string(), "1".to_string())]);
        let p = HttpProbe { headers: &bad, ..p };
        assert!(matches!(request(p, "svc"), Err(CheckError::Config(_))));
    }
}
