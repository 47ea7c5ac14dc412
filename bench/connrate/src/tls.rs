//! HTTPS with a full TLS handshake on every connection.
//!
//! Why our own client: wrk and h2load reconnect with the previous TLS session (wrk keeps
//! it across `SSL_clear`, h2load reuses it), so a "new connection per request" run with
//! them measures mostly *resumed* handshakes. Here resumption is disabled in the client
//! configuration (no session store, no tickets offered), and every handshake's kind is
//! checked and counted, so a resumed one would show up in the output.
//!
//! The server's certificate chain is not verified (the benchmark uses a self-signed
//! certificate, and wrk and h2load do not verify either), but the handshake signature is:
//! the server really proves possession of its key on every connection, as with a real
//! client.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::{http, sock};

/// Accepts any certificate chain, checks handshake signatures.
#[derive(Debug)]
struct SignaturesOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A client for full handshakes: TLS 1.2 and 1.3 (the server picks), ALPN `http/1.1`,
/// no resumption.
pub fn connector() -> io::Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignaturesOnly(algorithms)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name sent as SNI: `host` without a port when it is a DNS name; an IP address
/// (sent as no SNI at all, as RFC 6066 requires) otherwise.
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))
}

/// Connects, does a full TLS handshake, one `GET` with `Connection: close`, and waits for
/// the server to close. Returns whether the handshake was (unexpectedly) resumed.
pub async fn handshake_get(
    addr: SocketAddr,
    src: Option<IpAddr>,
    connector: &TlsConnector,
    name: ServerName<'static>,
    req: &[u8],
) -> io::Result<bool> {
    let exchange = async {
        let tcp = sock::connect(addr, src).await?;
        let mut s = connector.connect(name, tcp).await?;
        let resumed = s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        http::exchange(&mut s, req, true).await?;
        Ok(resumed)
    };
    match tokio::time::timeout(sock::ROUND_TRIP_TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect + TLS handshake + HTTP request timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_drop_the_port() {
        assert_eq!(
            server_name("bench.local:8443").unwrap(),
            ServerName::try_from("bench.local").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("::1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn connector_builds() {
        connector().unwrap();
    }
}

/// A TLS server for the tests that offers resumption (session cache and TLS 1.3 tickets
/// with rustls' defaults) and answers one HTTP request per connection. Its certificate
/// and key in `testdata/` are self-signed throwaways made for these tests.
#[cfg(test)]
pub mod testserver {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    const CERT: &str = include_str!("testdata/cert.pem");
    const KEY: &str = include_str!("testdata/key.pem");

    pub async fn spawn() -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut b = [0u8; 512];
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let resp =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                    if s.write_all(resp).await.is_ok() {
                        let _ = s.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    /// The server really resumes sessions for a client that offers one, so the rate
    /// test's zero resumptions mean the client did not offer any.
    #[tokio::test]
    async fn the_test_server_resumes_for_a_willing_client() {
        let addr = spawn().await;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesOnly(algorithms)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let willing = TlsConnector::from(Arc::new(config));
        let req = b"GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n";
        let name = server_name("bench.local").unwrap();
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let run = async {
                let tcp = sock::connect(addr, None).await.unwrap();
                let mut s = willing.connect(name.clone(), tcp).await.unwrap();
                let kind = s.get_ref().1.handshake_kind();
                // Reading the response also takes in the server's session ticket.
                http::exchange(&mut s, req, true).await.unwrap();
                kind
            };
            kinds.push(
                tokio::time::timeout(std::time::Duration::from_secs(10), run)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(
            kinds,
            [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
        );
        // Our client, against the same server: full handshakes only.
        let ours = connector().unwrap();
        for _ in 0..2 {
            let resumed = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                handshake_get(addr, None, &ours, name.clone(), req),
            )
            .await
            .unwrap()
            .unwrap();
            assert!(!resumed);
        }
    }
}
