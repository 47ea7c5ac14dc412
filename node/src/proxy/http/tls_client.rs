//! rustls client configurations for TLS to backends (re-encryption).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A client config offering `alpn`, verifying against the Mozilla roots plus `ca_pem`,
/// or accepting any certificate when `skip_verify`.
pub fn config(
    skip_verify: bool,
    ca_pem: Option<&str>,
    alpn: &[u8],
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::skip_verify::AcceptAnyCertificate(
                provider,
            )))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = ca_pem {
            let mut added = 0;
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let c = c.map_err(|e| format!("tls_ca bundle: {e}"))?;
                roots.add(c).map_err(|e| format!("tls_ca bundle: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err("tls_ca bundle holds no certificate".into());
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build() {
        let c = config(false, None, b"h2").unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(config(true, None, b"http/1.1").is_ok());
        assert!(config(false, Some("not pem"), b"h2").is_err());
    }
}
