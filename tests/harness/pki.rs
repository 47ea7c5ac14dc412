//! A throwaway PKI for TLS tests: a CA, a server certificate for `127.0.0.1`/`localhost`
//! and a client certificate, all signed by that CA (ECDSA P-256, rcgen), plus a TLS client
//! configuration for the harness's gRPC clients.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// The PEM files of a [`Pki`], written to a directory.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// `ca.pem`: the CA certificate.
    pub ca: PathBuf,
    /// `server.pem`: the server certificate.
    pub server_cert: PathBuf,
    /// `server.key`: the server key.
    pub server_key: PathBuf,
    /// `client.pem`: the client certificate.
    pub client_cert: PathBuf,
    /// `client.key`: the client key.
    pub client_key: PathBuf,
}

/// A CA and the certificates it signed.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Server certificate for `127.0.0.1` and `localhost` (server auth).
    pub server: CertPair,
    /// Client certificate with CN `fiberlb-test-client` (client auth).
    pub client: CertPair,
}

impl Pki {
    /// Generates a fresh CA, server and client certificate.
    pub fn generate() -> anyhow::Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fiberlb test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let leaf = |names: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(names)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![eku];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca)?;
            Ok::<_, rcgen::Error>(CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        let server = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "fiberlb-test-server",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let client = leaf(
            Vec::new(),
            "fiberlb-test-client",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Pki {
            ca_pem: ca.pem(),
            server,
            client,
        })
    }

    /// Writes every PEM into `dir` and returns the paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PkiFiles> {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&files.ca, &self.ca_pem)?;
        std::fs::write(&files.server_cert, &self.server.cert_pem)?;
        std::fs::write(&files.server_key, &self.server.key_pem)?;
        std::fs::write(&files.client_cert, &self.client.cert_pem)?;
        std::fs::write(&files.client_key, &self.client.key_pem)?;
        Ok(files)
    }

    /// A TLS client configuration trusting only this CA, without a client certificate.
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem))
    }

    /// [`Pki::client_tls`] presenting the client certificate (mTLS).
    pub fn client_tls_with_identity(&self) -> ClientTlsConfig {
        self.client_tls().identity(Identity::from_pem(
            &self.client.cert_pem,
            &self.client.key_pem,
        ))
    }
}
