//! Client certificates: None / Optional / Required against a CA bundle, the verified
//! subject, and resumption never bypassing client authentication.

use fiberlb_api::model::ClientAuthMode;
use rustls::HandshakeKind;

use super::test_support::*;
use super::{build, peer_subject, TlsBuildError};
use crate::settings::ProxyTlsSettings;

struct Setup {
    ca: TestCa,
    certs: std::collections::HashMap<String, std::sync::Arc<fiberlb_api::model::Certificate>>,
}

/// A server certificate `srv`, and a CA bundle `ca` holding an unrelated CA first and the
/// CA that signs the test clients second (every certificate of the bundle is trusted).
fn setup() -> Setup {
    let ca = TestCa::new("Test Client CA");
    let unrelated = TestCa::new("Unrelated CA");
    let server = server_cert(&["a.example.com"]);
    let bundle = format!("{}{}", unrelated.pem(), ca.pem());
    let certs = cert_map(vec![cert_obj("srv", &[], &server), ca_obj("ca", bundle)]);
    Setup { ca, certs }
}

fn server(s: &Setup, id: &str, mode: ClientAuthMode) -> std::sync::Arc<rustls::ServerConfig> {
    let mut t = tls("srv");
    t.client_auth = mode;
    t.client_ca_certificate_id = Some("ca".into());
    build(&listener(id, t), &s.certs, &ProxyTlsSettings::default())
        .unwrap()
        .config
}

fn client_with_cert(issued: &Issued) -> std::sync::Arc<rustls::ClientConfig> {
    client(ClientOpts {
        client_cert: Some((issued.der.clone(), issued.key_der.clone_key())),
        ..Default::default()
    })
}

#[test]
fn required_refuses_anonymous_and_foreign_clients_and_accepts_signed_ones() {
    let s = setup();
    let server = server(&s, "mtls-req", ClientAuthMode::Required);

    let err = handshake(
        &client(ClientOpts::default()),
        &server,
        Some("a.example.com"),
    );
    assert!(err.is_err(), "a client without a certificate is refused");

    let stranger = TestCa::new("Stranger CA").client_cert("mallory");
    assert!(handshake(&client_with_cert(&stranger), &server, Some("a.example.com")).is_err());
    let self_signed = server_cert(&["client.example.com"]);
    assert!(handshake(
        &client_with_cert(&self_signed),
        &server,
        Some("a.example.com")
    )
    .is_err());

    let good = s.ca.client_cert("client-1");
    let (_, conn) = handshake(&client_with_cert(&good), &server, Some("a.example.com")).unwrap();
    let subject = peer_subject(&conn).unwrap();
    assert!(subject.contains("CN=client-1"), "{subject}");
    assert!(subject.contains("O=Acme"), "{subject}");
}

#[test]
fn required_over_tls12_too() {
    let s = setup();
    let server = server(&s, "mtls-req12", ClientAuthMode::Required);
    let anon = client(ClientOpts {
        versions: TLS12_ONLY,
        ..Default::default()
    });
    assert!(handshake(&anon, &server, Some("a.example.com")).is_err());
    let good = s.ca.client_cert("client-12");
    let cfg = client(ClientOpts {
        versions: TLS12_ONLY,
        client_cert: Some((good.der.clone(), good.key_der.clone_key())),
        ..Default::default()
    });
    let (_, conn) = handshake(&cfg, &server, Some("a.example.com")).unwrap();
    assert!(peer_subject(&conn).unwrap().contains("CN=client-12"));
}

#[test]
fn optional_accepts_both_and_still_verifies_given_certificates() {
    let s = setup();
    let server = server(&s, "mtls-opt", ClientAuthMode::Optional);

    let (_, conn) = handshake(
        &client(ClientOpts::default()),
        &server,
        Some("a.example.com"),
    )
    .unwrap();
    assert_eq!(peer_subject(&conn), None);

    let good = s.ca.client_cert("client-2");
    let (_, conn) = handshake(&client_with_cert(&good), &server, Some("a.example.com")).unwrap();
    assert!(peer_subject(&conn).unwrap().contains("CN=client-2"));

    let stranger = TestCa::new("Stranger CA").client_cert("mallory");
    assert!(handshake(&client_with_cert(&stranger), &server, Some("a.example.com")).is_err());
}

#[test]
fn none_asks_for_no_certificate() {
    let s = setup();
    let server = server(&s, "mtls-none", ClientAuthMode::None);
    let good = s.ca.client_cert("client-3");
    let (_, conn) = handshake(&client_with_cert(&good), &server, Some("a.example.com")).unwrap();
    assert_eq!(peer_subject(&conn), None);
}

#[test]
fn resumption_keeps_the_subject_and_never_skips_client_auth() {
    let s = setup();
    let good = s.ca.client_cert("client-4");
    let authed = client_with_cert(&good);
    let required = server(&s, "mtls-resume", ClientAuthMode::Required);
    handshake(&authed, &required, Some("a.example.com")).unwrap();
    let (c, conn) = handshake(&authed, &required, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    assert!(peer_subject(&conn).unwrap().contains("CN=client-4"));

    // A session made while the listener had no client auth must not resume once it
    // requires it: the anonymous client has to do (and fail) a full handshake.
    let anon = client(ClientOpts::default());
    let open = server(&s, "mtls-switch", ClientAuthMode::None);
    handshake(&anon, &open, Some("a.example.com")).unwrap();
    let (c, _) = handshake(&anon, &open, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    let now_required = server(&s, "mtls-switch", ClientAuthMode::Required);
    assert!(handshake(&anon, &now_required, Some("a.example.com")).is_err());

    // The same from Optional (same CA bundle) to Required.
    let anon = client(ClientOpts::default());
    let optional = server(&s, "mtls-tighten", ClientAuthMode::Optional);
    handshake(&anon, &optional, Some("a.example.com")).unwrap();
    let (c, _) = handshake(&anon, &optional, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    let now_required = server(&s, "mtls-tighten", ClientAuthMode::Required);
    assert!(handshake(&anon, &now_required, Some("a.example.com")).is_err());
}

#[test]
fn client_ca_errors() {
    let s = setup();
    let mut t = tls("srv");
    t.client_auth = ClientAuthMode::Required;
    let err = build(
        &listener("l", t.clone()),
        &s.certs,
        &ProxyTlsSettings::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TlsBuildError::MissingClientCa { .. }),
        "{err}"
    );

    t.client_ca_certificate_id = Some("nope".into());
    let err = build(
        &listener("l", t.clone()),
        &s.certs,
        &ProxyTlsSettings::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("client CA certificate nope"),
        "{err}"
    );

    let mut certs = s.certs.clone();
    certs.insert(
        "ca".into(),
        std::sync::Arc::new(ca_obj("ca", "garbage".into())),
    );
    t.client_ca_certificate_id = Some("ca".into());
    let err = build(&listener("l", t), &certs, &ProxyTlsSettings::default()).unwrap_err();
    assert!(
        err.to_string().contains("certificate ca-name (ca)"),
        "{err}"
    );
}

#[test]
fn peer_subject_escapes_control_characters() {
    let ca = TestCa::new("Test CA");
    let s = Setup {
        certs: cert_map(vec![
            cert_obj("srv", &[], &server_cert(&["a.example.com"])),
            ca_obj("ca", ca.pem()),
        ]),
        ca,
    };
    let server = server(&s, "mtls-ctl", ClientAuthMode::Required);
    let evil = s.ca.client_cert("evil\r\nX-Injected: 1");
    let (_, conn) = handshake(&client_with_cert(&evil), &server, Some("a.example.com")).unwrap();
    let subject = peer_subject(&conn).unwrap();
    assert!(!subject.chars().any(char::is_control), "{subject:?}");
    assert!(subject.contains("evil\\0D\\0AX-Injected: 1"), "{subject:?}");
    assert!(http::HeaderValue::from_str(&subject).is_ok());
}
