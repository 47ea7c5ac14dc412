//! TLS client configurations for HTTPS checks: one that verifies the backend certificate
//! against the system's trust store, one that accepts any certificate (`verify_tls: false`,
//! for self-signed backends). Built once per checker.
//!
//! Trust roots: the PEM bundle named by `SSL_CERT_FILE`, else the first of the usual
//! system bundle paths that exists (Debian, Fedora, NixOS). No bundle means no root, and
//! every verified check fails with a certificate error that says so.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// System bundles tried in order when `SSL_CERT_FILE` is unset.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The two client configurations.
#[derive(Debug, Clone)]
pub(super) struct TlsClients {
    /// Verifies chain and name.
    pub verify: Arc<ClientConfig>,
    /// Accepts any certificate (handshake signatures are still checked).
    pub insecure: Arc<ClientConfig>,
}

impl TlsClients {
    /// Builds both; `None` only if rustls rejects its own ring provider's defaults.
    pub(super) fn new() -> Option<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = system_roots();
        let verify = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tracing::error!(error = %e, "tls client config for health checks"))
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let insecure = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::skip_verify::AcceptAnyCertificate(
                provider,
            )))
            .with_no_client_auth();
        Some(Self {
            verify: Arc::new(with_alpn(verify)),
            insecure: Arc::new(with_alpn(insecure)),
        })
    }
}

fn with_alpn(mut c: ClientConfig) -> ClientConfig {
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            BUNDLES
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.is_file())
        });
    let Some(path) = path else {
        tracing::warn!("no CA bundle found; HTTPS health checks with verification will fail");
        return roots;
    };
    match CertificateDer::pem_file_iter(&path) {
        Ok(certs) => {
            let (added, skipped) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
            tracing::debug!(bundle = %path.display(), added, skipped, "health check trust roots");
        }
        Err(e) => tracing::warn!(bundle = %path.display(), error = %e, "cannot read CA bundle"),
    }
    roots
}
