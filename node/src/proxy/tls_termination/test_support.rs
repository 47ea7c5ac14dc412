//! Fixtures for the TLS termination tests: rcgen certificates, model objects, and a
//! client/server handshake driven through in-memory buffers (no sockets, no clock).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fiberlb_api::model::{
    Certificate, ClientAuthMode, Listener, ListenerProtocol, Scope, TlsConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

/// A generated certificate with its key.
pub(super) struct Issued {
    pub pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

/// A self-signed server certificate for `names`.
pub(super) fn server_cert(names: &[&str]) -> Issued {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    Issued {
        pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
        key_der: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
    }
}

/// A CA able to sign client certificates.
pub(super) struct TestCa {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(super) fn new(cn: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub(super) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate `CN=<cn>, O=Acme` signed by this CA.
    pub(super) fn client_cert(&self, cn: &str) -> Issued {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &*self.issuer).unwrap();
        Issued {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

pub(super) fn scope(org: &str) -> Scope {
    Scope {
        org_id: org.into(),
        project_id: Some("p1".into()),
    }
}

/// A certificate object of org `org-1` (project p1) with a key.
pub(super) fn cert_obj(id: &str, names: &[&str], issued: &Issued) -> Certificate {
    Certificate {
        id: id.into(),
        name: format!("{id}-name"),
        scope: scope("org-1"),
        certificate_pem: issued.pem.clone(),
        private_key_pem: Some(issued.key_pem.clone()),
        subject_names: names.iter().map(|s| s.to_string()).collect(),
        not_before: 0,
        not_after: 4_000_000_000_000,
        fingerprint_sha256: String::new(),
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

/// A CA bundle object (no key).
pub(super) fn ca_obj(id: &str, pem: String) -> Certificate {
    let mut c = cert_obj(id, &[], &server_cert(&["unused.invalid"]));
    c.certificate_pem = pem;
    c.private_key_pem = None;
    c
}

pub(super) fn cert_map(certs: Vec<Certificate>) -> HashMap<String, Arc<Certificate>> {
    certs
        .into_iter()
        .map(|c| (c.id.clone(), Arc::new(c)))
        .collect()
}

pub(super) fn tls(default_cert: &str) -> TlsConfig {
    TlsConfig {
        certificate_id: default_cert.into(),
        min_version: None,
        cipher_suites: Vec::new(),
        client_auth: ClientAuthMode::None,
        sni_certificates: BTreeMap::new(),
        client_ca_certificate_id: None,
    }
}

pub(super) fn listener(id: &str, tls: TlsConfig) -> Listener {
    Listener {
        id: id.into(),
        lb_id: "lb-1".into(),
        scope: scope("org-1"),
        name: format!("{id}-name"),
        protocol: ListenerProtocol::Https,
        port: 443,
        tls: Some(tls),
        default_pool_id: None,
        rules: Vec::new(),
        connection_limit: None,
        timeout_client_ms: Listener::DEFAULT_TIMEOUT_CLIENT_MS,
        timeout_backend_ms: Listener::DEFAULT_TIMEOUT_BACKEND_MS,
        enabled: true,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

/// Client versions for a TLS 1.2-only client.
pub(super) static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// What a test client offers.
pub(super) struct ClientOpts {
    pub versions: &'static [&'static SupportedProtocolVersion],
    pub suites: Option<Vec<rustls::SupportedCipherSuite>>,
    pub alpn: Vec<&'static [u8]>,
    pub client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            versions: rustls::ALL_VERSIONS,
            suites: None,
            alpn: vec![b"h2", b"http/1.1"],
            client_cert: None,
        }
    }
}

pub(super) fn client(opts: ClientOpts) -> Arc<ClientConfig> {
    let mut provider = ring::default_provider();
    if let Some(s) = opts.suites {
        provider.cipher_suites = s;
    }
    let provider = Arc::new(provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(opts.versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::skip_verify::AcceptAnyCertificate(
            provider,
        )));
    let mut config = match opts.client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Moves everything `from` has to send into `to`; whether anything moved.
fn transfer<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) -> bool {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        if to.read_tls(&mut rd).unwrap() == 0 {
            break;
        }
    }
    !buf.is_empty()
}

/// Runs a full handshake (and the post-handshake ticket flight) in memory. `sni` `None`
/// connects by IP address, so the client sends no SNI. An error is the first side's.
pub(super) fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    sni: Option<&str>,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    for _ in 0..32 {
        let c2s = transfer(&mut c, &mut s);
        if let Err(e) = s.process_new_packets() {
            transfer(&mut s, &mut c);
            let _ = c.process_new_packets();
            return Err(e);
        }
        let s2c = transfer(&mut s, &mut c);
        if let Err(e) = c.process_new_packets() {
            transfer(&mut c, &mut s);
            let _ = s.process_new_packets();
            return Err(e);
        }
        if !c2s && !s2c && !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
    }
    panic!("handshake did not finish in 32 rounds");
}

/// The leaf certificate the server presented.
pub(super) fn served_leaf(c: &ClientConnection) -> CertificateDer<'static> {
    c.peer_certificates().unwrap()[0].clone().into_owned()
}
