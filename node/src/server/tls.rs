//! TLS (and optional mTLS) for the gRPC management API, from `[server.tls]`.
//!
//! The PEM files are read and checked here, once, before the node starts: every
//! certificate must parse, the key must be one rustls can sign with and must match the
//! certificate, and the client CA must be usable as a trust anchor. tonic would accept the
//! same bytes but report a bad file as "Error parsing TLS certificate." without saying
//! which one, or (for a CA bundle) silently skip what it cannot parse; checking first
//! turns every such mistake into a start-up error that names the setting and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::settings::ServerTlsSettings;

/// Longest a client may take to complete its TLS handshake. A peer that stalls mid-handshake
/// is dropped instead of holding a connection (and a task) open forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `[server.tls]` cannot be used. Every variant names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{setting} {}: cannot read: {source}", .path.display())]
    Read {
        /// Dotted settings key, e.g. `server.tls.cert_file`.
        setting: &'static str,
        /// The file named by the setting.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is not usable.
    #[error("{setting} {}: {reason}", .path.display())]
    Invalid {
        /// Dotted settings key.
        setting: &'static str,
        /// The file named by the setting.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `cert_file` is set without `key_file` (settings validation normally catches this).
    #[error("server.tls.key_file must be set together with server.tls.cert_file")]
    MissingKey,
    /// tonic refused the configuration that passed the checks above.
    #[error("server.tls: {0}")]
    Config(String),
}

/// The gRPC server builder for these settings: TLS (requiring client certificates signed
/// by `ca_file` when that is set) when `cert_file` is set, plaintext otherwise.
pub fn grpc_server(settings: &ServerTlsSettings) -> Result<Server, TlsError> {
    let builder = Server::builder();
    match server_config(settings)? {
        None => Ok(builder),
        Some(config) => {
            // tonic builds its rustls config with the process-wide provider: make sure it
            // is ring (a no-op when `run` installed it already).
            let _ = rustls::crypto::ring::default_provider().install_default();
            builder
                .tls_config(config)
                .map_err(|e| TlsError::Config(error_chain(&e)))
        }
    }
}

/// The checked tonic TLS config, or `None` when `[server.tls]` is off.
pub fn server_config(settings: &ServerTlsSettings) -> Result<Option<ServerTlsConfig>, TlsError> {
    let Some(cert_path) = &settings.cert_file else {
        return Ok(None);
    };
    let key_path = settings.key_file.as_ref().ok_or(TlsError::MissingKey)?;
    let provider = rustls::crypto::ring::default_provider();

    let cert = PemFile::read("server.tls.cert_file", cert_path)?;
    let key = PemFile::read("server.tls.key_file", key_path)?;
    check_identity(&cert, &key, &provider)?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert.bytes, &key.bytes))
        .timeout(HANDSHAKE_TIMEOUT);

    if let Some(ca_path) = &settings.ca_file {
        let ca = PemFile::read("server.tls.ca_file", ca_path)?;
        check_client_ca(&ca, provider)?;
        config = config.client_ca_root(Certificate::from_pem(&ca.bytes));
    }
    match &settings.ca_file {
        Some(ca) => tracing::info!(
            cert_file = %cert_path.display(),
            ca_file = %ca.display(),
            "gRPC API serves TLS and requires client certificates"
        ),
        None => tracing::info!(cert_file = %cert_path.display(), "gRPC API serves TLS"),
    }
    Ok(Some(config))
}

/// The certificate chain parses and the key can sign for its first (end-entity) certificate.
fn check_identity(
    cert: &PemFile,
    key: &PemFile,
    provider: &CryptoProvider,
) -> Result<(), TlsError> {
    let chain = cert.certificates()?;
    let key_der = key.private_key()?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| key.invalid(format!("unusable private key: {e}")))?;
    match CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(key.invalid(format!(
            "the private key does not match the certificate in {}",
            cert.path.display()
        ))),
        Err(e) => Err(cert.invalid(e.to_string())),
    }
}

/// Every certificate of the bundle is a usable trust anchor and a client verifier can be
/// built from them.
fn check_client_ca(ca: &PemFile, provider: CryptoProvider) -> Result<(), TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, der) in ca.certificates()?.into_iter().enumerate() {
        roots
            .add(der)
            .map_err(|e| ca.invalid(format!("certificate #{} is not a usable CA: {e}", i + 1)))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider))
        .build()
        .map_err(|e| ca.invalid(format!("cannot verify client certificates with it: {e}")))?;
    Ok(())
}

/// A PEM file named by a setting, read into memory.
struct PemFile {
    setting: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl PemFile {
    fn read(setting: &'static str, path: &Path) -> Result<PemFile, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            setting,
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PemFile {
            setting,
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn invalid(&self, reason: impl Into<String>) -> TlsError {
        TlsError::Invalid {
            setting: self.setting,
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Every `CERTIFICATE` block, each checked to be an X.509 certificate.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.invalid("no PEM CERTIFICATE block found"));
        }
        for (i, der) in certs.iter().enumerate() {
            ParsedCertificate::try_from(der).map_err(|e| {
                self.invalid(format!("certificate #{} is not valid X.509: {e}", i + 1))
            })?;
        }
        Ok(certs)
    }

    /// The first private key block (PKCS#8, PKCS#1 or SEC1).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                self.invalid("no PEM private key block found (PKCS#8, PKCS#1 or SEC1)")
            }
            e => self.invalid(format!("not valid PEM: {e}")),
        })
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    // Throwaway fixtures made for these tests only (openssl, EC P-256, valid until 2126):
    // a self-signed certificate (also a CA: basicConstraints CA:TRUE), its key, and an
    // unrelated key.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBmjCCAUGgAwIBAgIUI3Gf1mxEYVl5IUMSh+//9zWvFEkwCgYIKoZIzj0EAwIw\n\
FzEVMBMGA1UEAwwMZmliZXJsYi10ZXN0MCAXDTI2MTEyMzE2MzEzMFoYDzIxMjYx\n\
MDMwMTYzMTMwWjAXMRUwEwYDVQQDDAxmaWJlcmxiLXRlc3QwWTATBgcqhkjOPQIB\n\
BggqhkjOPQMBBwNCAAQBJ/AjhkrBuEPEb0unnuWiAPGWkc+cHqpQjNu5rcJw0Pvw\n\
9WHaFNXEdbwPzHkLsV4Xnr2BxNZU7E8Gf10mVgq4o2kwZzAdBgNVHQ4EFgQUkARI\n\
Z4NwfLP0k1zXsyQxu/anGMowHwYDVR0jBBgwFoAUkARIZ4NwfLP0k1zXsyQxu/an\n\
GMowDwYDVR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZI\n\
zj0EAwIDRwAwRAIgeg277YeiENT9syqQnGGuf8eggPt4DlnKlChJWD7W14oCIERf\n\
iLX0knuy6WrL/xmRMUvmeV4HNAEABTZJQoOI/Ody\n\
-----END CERTIFICATE-----\n\
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnsL6Nmr4N1NNwxMO\n\
nOz5WHmI+IomhTE6rtynewNfjIihRANCAAQBJ/AjhkrBuEPEb0unnuWiAPGWkc+c\n\
HqpQjNu5rcJw0Pvw9WHaFNXEdbwPzHkLsV4Xnr2BxNZU7E8Gf10mVgq4\n\
-----END PRIVATE KEY-----\n\
";
    const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzb31OBdzCZyC6TCZ\n\
Tg1qh6DFttE306EdEfiPUDvg2rehRANCAASd2titCD+2epi6JDjg7JF5OLPUg00e\n\
CU73ETf5snrLYjlxZG0hFKmU63FpfQPmHjlFMEa+bj4tSvjpXkxJ/VF0\n\
-----END PRIVATE KEY-----\n\
";

    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            Files(tempfile::tempdir().unwrap())
        }

        fn file(&self, name: &str, content: &str) -> PathBuf {
            let p = self.0.path().join(name);
            std::fs::write(&p, content).unwrap();
            p
        }
    }

    fn settings(cert: &Path, key: &Path, ca: Option<&Path>) -> ServerTlsSettings {
        ServerTlsSettings {
            cert_file: Some(cert.to_path_buf()),
            key_file: Some(key.to_path_buf()),
            ca_file: ca.map(Path::to_path_buf),
        }
    }

    fn err(s: &ServerTlsSettings) -> String {
        server_config(s).unwrap_err().to_string()
    }

    #[test]
    fn off_without_cert_file() {
        assert!(server_config(&ServerTlsSettings::default())
            .unwrap()
            .is_none());
        assert!(grpc_server(&ServerTlsSettings::default()).is_ok());
    }

    #[test]
    fn valid_files_build_a_server() {
        let f = Files::new();
        let (c, k) = (f.file("c.pem", CERT), f.file("k.pem", KEY));
        assert!(server_config(&settings(&c, &k, None)).unwrap().is_some());
        // The self-signed certificate doubles as a client CA.
        let s = settings(&c, &k, Some(&c));
        assert!(server_config(&s).unwrap().is_some());
        assert!(grpc_server(&s).is_ok());
        // A bundle with the key in front of the certificate is still one certificate.
        let both = f.file("both.pem", &format!("{KEY}{CERT}"));
        assert!(server_config(&settings(&both, &both, None))
            .unwrap()
            .is_some());
    }

    #[test]
    fn unreadable_files_are_named() {
        let f = Files::new();
        let k = f.file("k.pem", KEY);
        let missing = f.0.path().join("missing.pem");
        let e = err(&settings(&missing, &k, None));
        assert!(e.starts_with("server.tls.cert_file "), "{e}");
        assert!(e.contains("missing.pem: cannot read"), "{e}");
        let c = f.file("c.pem", CERT);
        let e = err(&settings(&c, &k, Some(&missing)));
        assert!(e.starts_with("server.tls.ca_file "), "{e}");
    }

    #[test]
    fn invalid_content_is_named() {
        let f = Files::new();
        let (c, k) = (f.file("c.pem", CERT), f.file("k.pem", KEY));
        let junk = f.file("junk.pem", "not pem at all\n");
        let e = err(&settings(&junk, &k, None));
        assert!(e.starts_with("server.tls.cert_file "), "{e}");
        assert!(e.contains("no PEM CERTIFICATE block"), "{e}");

        let e = err(&settings(&c, &c, None));
        assert!(e.starts_with("server.tls.key_file "), "{e}");
        assert!(e.contains("no PEM private key block"), "{e}");

        let other = f.file("other.pem", OTHER_KEY);
        let e = err(&settings(&c, &other, None));
        assert!(e.starts_with("server.tls.key_file "), "{e}");
        assert!(e.contains("does not match the certificate"), "{e}");

        let not_x509 = f.file(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let e = err(&settings(&not_x509, &k, None));
        assert!(e.contains("certificate #1 is not valid X.509"), "{e}");

        let truncated = f.file("cut.pem", &CERT[..CERT.len() / 2]);
        let e = err(&settings(&c, &k, Some(&truncated)));
        assert!(e.starts_with("server.tls.ca_file "), "{e}");
        assert!(e.contains("not valid PEM"), "{e}");

        let e = err(&settings(&c, &k, Some(&k)));
        assert!(e.starts_with("server.tls.ca_file "), "{e}");
        assert!(e.contains("no PEM CERTIFICATE block"), "{e}");
    }

    #[test]
    fn key_without_cert_is_refused() {
        let s = ServerTlsSettings {
            cert_file: Some("/x".into()),
            ..Default::default()
        };
        assert!(matches!(server_config(&s), Err(TlsError::MissingKey)));
    }
}
