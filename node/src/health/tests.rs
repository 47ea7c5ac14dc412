//! Each check kind against a real peer on loopback: HTTP, HTTPS (self-signed, verify on
//! and off), DNS (a minimal in-test server), gRPC (tonic-health), TCP.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fiberlb_api::model::{DnsRecordType, HttpMethod};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::dns::DnsClients;
use super::http::{self, HttpProbe};
use super::tls::TlsClients;
use super::{grpc, tcp, CheckError};

const T: Duration = Duration::from_secs(5);

/// Aborts a server task when the test ends.
struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers every request with the current `status`, sending each request head to `heads`.
async fn serve_http<S>(mut s: S, status: Arc<AtomicU16>, heads: mpsc::UnboundedSender<String>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = heads.send(String::from_utf8_lossy(&buf).into_owned());
    let code = status.load(Ordering::Relaxed);
    let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

async fn http_server(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (
    SocketAddr,
    Arc<AtomicU16>,
    mpsc::UnboundedReceiver<String>,
    Server,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let status = Arc::new(AtomicU16::new(500));
    let (tx, rx) = mpsc::unbounded_channel();
    let st = status.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (st, tx, tls) = (st.clone(), tx.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_http(s, st, tx).await,
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            serve_http(s, st, tx).await
                        }
                    }
                }
            });
        }
    });
    (addr, status, rx, Server(task))
}

fn probe<'a>(host: Option<&'a str>, headers: &'a BTreeMap<String, String>) -> HttpProbe<'a> {
    HttpProbe {
        method: HttpMethod::Get,
        path: "/healthz",
        expected_codes: &[200, 204],
        host_header: host,
        headers,
        user_agent: &AGENT,
    }
}

static AGENT: ::http::HeaderValue = ::http::HeaderValue::from_static("fiberlb-health-check/test");

#[tokio::test]
async fn http_check_passes_only_on_expected_codes_and_sends_the_configured_head() {
    let (addr, status, mut heads, _srv) = http_server(None).await;
    let headers = BTreeMap::from([("x-check".to_string(), "yes".to_string())]);
    let err = http::check(addr, "10.0.0.1:8080", probe(None, &headers), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CheckError::Status {
            got: 500,
            expected: vec![200, 204]
        }
    );
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("host: 10.0.0.1:8080\r\n"), "{head}");
    assert!(head.contains("x-check: yes\r\n"), "{head}");
    status.store(204, Ordering::Relaxed);
    http::check(addr, "ignored", probe(Some("svc.test"), &headers), None)
        .await
        .unwrap();
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains("host: svc.test\r\n"), "{head}");
}

fn self_signed(name: &str) -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

#[tokio::test]
async fn https_check_rejects_a_self_signed_certificate_unless_verification_is_off() {
    let (addr, status, mut heads, _srv) = http_server(Some(self_signed("svc.test"))).await;
    status.store(200, Ordering::Relaxed);
    let tls = TlsClients::new().expect("tls clients");
    let none = BTreeMap::new();
    let err = http::check(addr, "x", probe(Some("svc.test"), &none), Some(&tls.verify))
        .await
        .unwrap_err();
    match &err {
        CheckError::Tls(m) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    http::check(
        addr,
        "x",
        probe(Some("svc.test:443"), &none),
        Some(&tls.insecure),
    )
    .await
    .unwrap();
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains("host: svc.test:443\r\n"), "{head}");
}

#[tokio::test]
async fn tcp_check_connects_or_reports_the_os_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tcp::check(addr).await.unwrap();
    drop(l);
    match tcp::check(addr).await {
        Err(CheckError::Connect { addr: a, message }) => {
            assert_eq!(a, addr);
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

/// A DNS server answering every query with one A record `answer` (no AAAA).
async fn dns_server(answer: Ipv4Addr) -> (SocketAddr, Server) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            // Header: same id, response + recursion available, 1 question.
            let qtype_at = match q[12..].iter().position(|b| *b == 0) {
                Some(p) => 12 + p + 1,
                None => continue,
            };
            if qtype_at + 4 > n {
                continue;
            }
            let is_a = q[qtype_at..qtype_at + 2] == [0, 1];
            let mut r = Vec::with_capacity(64);
            r.extend_from_slice(&q[..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qtype_at + 4]);
            if is_a {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
                r.extend_from_slice(&answer.octets());
            }
            let _ = s.send_to(&r, peer).await;
        }
    });
    (addr, Server(task))
}

#[tokio::test]
async fn dns_check_needs_records_and_the_expected_address() {
    let (server, srv) = dns_server(Ipv4Addr::new(10, 1, 2, 3)).await;
    let dns = DnsClients::default();
    let want = |a: [u8; 4]| Some(IpAddr::from(a));
    dns.check(server, "svc.test", DnsRecordType::A, None, T)
        .await
        .unwrap();
    dns.check(
        server,
        "svc.test.",
        DnsRecordType::A,
        want([10, 1, 2, 3]),
        T,
    )
    .await
    .unwrap();
    let e = dns
        .check(server, "svc.test", DnsRecordType::A, want([10, 9, 9, 9]), T)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("10.9.9.9 not among"), "{e}");
    let e = dns
        .check(server, "svc.test", DnsRecordType::Aaaa, None, T)
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Dns(_)), "{e}");
    drop(srv);
    let short = Duration::from_millis(500);
    let e = tokio::time::timeout(
        T,
        dns.check(server, "svc.test", DnsRecordType::A, None, short),
    )
    .await
    .unwrap();
    assert!(
        matches!(e, Err(CheckError::Dns(_))),
        "a dead server fails: {e:?}"
    );
}

#[tokio::test]
async fn grpc_check_follows_the_serving_status() {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("svc", ServingStatus::Serving)
        .await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _srv = Server(tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    }));
    grpc::check(addr, Some("svc"), T).await.unwrap();
    grpc::check(addr, None, T).await.unwrap();
    reporter
        .set_service_status("svc", ServingStatus::NotServing)
        .await;
    let e = grpc::check(addr, Some("svc"), T).await.unwrap_err();
    assert!(e.to_string().contains("NOT_SERVING"), "{e}");
    let e = grpc::check(addr, Some("unknown"), T).await.unwrap_err();
    assert!(e.to_string().contains("NotFound"), "{e}");
}
