//! Certificate selection, versions, suites, ALPN, build errors, rotation and resumption,
//! each through a real rustls handshake in memory.

use fiberlb_api::model::TlsVersion;
use rustls::crypto::ring::cipher_suite;
use rustls::{CipherSuite, HandshakeKind};

use super::test_support::*;
use super::{build, TlsBuildError};
use crate::settings::{self, ProxyTlsSettings};

fn defaults() -> ProxyTlsSettings {
    ProxyTlsSettings::default()
}

#[test]
fn certificate_selection_by_sni() {
    let default = server_cert(&["default.example.net"]);
    let exact = server_cert(&["api.example.com"]);
    let wild = server_cert(&["*.example.com"]);
    // Claims names that the SNI map also covers: the map must win for those.
    let by_subject = server_cert(&["shop.example.org", "api.example.com", "www.example.com"]);
    let by_subject_wild = server_cert(&["*.apps.example.org"]);
    let other_tenant = server_cert(&["other.example.org"]);
    let mut other = cert_obj("other", &["other.example.org"], &other_tenant);
    other.scope = scope("org-2");
    let certs = cert_map(vec![
        cert_obj("default", &["default.example.net"], &default),
        cert_obj("exact", &["api.example.com"], &exact),
        cert_obj("wild", &["*.example.com"], &wild),
        cert_obj(
            "subj",
            &["shop.example.org", "api.example.com", "www.example.com"],
            &by_subject,
        ),
        cert_obj("subj-wild", &["*.apps.example.org"], &by_subject_wild),
        other,
    ]);
    let mut t = tls("default");
    t.sni_certificates
        .insert("API.example.com".into(), "exact".into());
    t.sni_certificates
        .insert("*.example.com".into(), "wild".into());
    let server = build(&listener("l1", t), &certs, &defaults())
        .unwrap()
        .config;
    let client = client(ClientOpts::default());

    let cases = [
        (
            Some("api.example.com"),
            &exact,
            "exact SNI entry, case-insensitive",
        ),
        (
            Some("www.example.com"),
            &wild,
            "wildcard SNI entry beats a subject name",
        ),
        (
            Some("a.b.example.com"),
            &default,
            "wildcard covers one label only",
        ),
        (
            Some("shop.example.org"),
            &by_subject,
            "certificate's own subject name",
        ),
        (
            Some("x.apps.example.org"),
            &by_subject_wild,
            "certificate's wildcard subject name",
        ),
        (
            Some("other.example.org"),
            &default,
            "another tenant's certificate is never used",
        ),
        (Some("unknown.example.net"), &default, "no match: default"),
        (None, &default, "no SNI: default"),
    ];
    for (sni, want, why) in cases {
        let (c, _) = handshake(&client, &server, sni).unwrap();
        assert_eq!(served_leaf(&c), want.der, "{sni:?}: {why}");
    }
}

#[test]
fn newest_certificate_wins_among_subject_name_matches() {
    let default = server_cert(&["default.example.net"]);
    let old = server_cert(&["api.example.org"]);
    let new = server_cert(&["api.example.org"]);
    let mut old_obj = cert_obj("a-old", &["api.example.org"], &old);
    old_obj.not_after = 1_000;
    let mut new_obj = cert_obj("b-new", &["api.example.org"], &new);
    new_obj.not_after = 2_000;
    let certs = cert_map(vec![cert_obj("default", &[], &default), old_obj, new_obj]);
    let server = build(&listener("l1", tls("default")), &certs, &defaults())
        .unwrap()
        .config;
    let (c, _) = handshake(
        &client(ClientOpts::default()),
        &server,
        Some("api.example.org"),
    )
    .unwrap();
    assert_eq!(served_leaf(&c), new.der);
}

#[test]
fn alpn_prefers_h2_then_http11() {
    let cert = server_cert(&["a.example.com"]);
    let certs = cert_map(vec![cert_obj("c", &["a.example.com"], &cert)]);
    let server = build(&listener("l1", tls("c")), &certs, &defaults())
        .unwrap()
        .config;
    for (offer, want) in [
        (vec![&b"http/1.1"[..], b"h2"], &b"h2"[..]),
        (vec![&b"http/1.1"[..]], &b"http/1.1"[..]),
    ] {
        let client = client(ClientOpts {
            alpn: offer,
            ..Default::default()
        });
        let (_, s) = handshake(&client, &server, Some("a.example.com")).unwrap();
        assert_eq!(s.alpn_protocol(), Some(want));
    }
}

#[test]
fn min_version_tls13_refuses_tls12_client() {
    let cert = server_cert(&["a.example.com"]);
    let certs = cert_map(vec![cert_obj("c", &["a.example.com"], &cert)]);
    let tls12_client = client(ClientOpts {
        versions: TLS12_ONLY,
        ..Default::default()
    });

    let mut t = tls("c");
    t.min_version = Some(TlsVersion::Tls13);
    let strict = build(&listener("l1", t), &certs, &defaults())
        .unwrap()
        .config;
    assert!(handshake(&tls12_client, &strict, Some("a.example.com")).is_err());
    let (c, _) = handshake(
        &client(ClientOpts::default()),
        &strict,
        Some("a.example.com"),
    )
    .unwrap();
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

    // No listener setting: the server default decides.
    let lax = build(&listener("l1", tls("c")), &certs, &defaults())
        .unwrap()
        .config;
    let (c, _) = handshake(&tls12_client, &lax, Some("a.example.com")).unwrap();
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let strict_default = ProxyTlsSettings {
        default_min_version: settings::TlsVersion::Tls13,
        ..defaults()
    };
    let strict = build(&listener("l1", tls("c")), &certs, &strict_default)
        .unwrap()
        .config;
    assert!(handshake(&tls12_client, &strict, Some("a.example.com")).is_err());
    // A listener's explicit tls12 overrides a tls13 server default.
    let mut t = tls("c");
    t.min_version = Some(TlsVersion::Tls12);
    let lax = build(&listener("l1", t), &certs, &strict_default)
        .unwrap()
        .config;
    assert!(handshake(&tls12_client, &lax, Some("a.example.com")).is_ok());
}

#[test]
fn cipher_suites_are_restricted() {
    let cert = server_cert(&["a.example.com"]);
    let certs = cert_map(vec![cert_obj("c", &["a.example.com"], &cert)]);
    let mut t = tls("c");
    t.cipher_suites = vec!["tls13_aes_256_gcm_sha384".into()];
    let server = build(&listener("l1", t), &certs, &defaults())
        .unwrap()
        .config;

    let (_, s) = handshake(
        &client(ClientOpts::default()),
        &server,
        Some("a.example.com"),
    )
    .unwrap();
    let suite = s.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, CipherSuite::TLS13_AES_256_GCM_SHA384);
    let aes128_only = client(ClientOpts {
        suites: Some(vec![cipher_suite::TLS13_AES_128_GCM_SHA256]),
        ..Default::default()
    });
    assert!(handshake(&aes128_only, &server, Some("a.example.com")).is_err());

    let mut t = tls("c");
    t.cipher_suites = vec![
        "TLS13_AES_256_GCM_SHA384".into(),
        "TLS_RSA_WITH_NULL".into(),
    ];
    let err = build(&listener("l1", t), &certs, &defaults()).unwrap_err();
    assert!(
        matches!(&err, TlsBuildError::UnknownCipherSuite { name, .. } if name == "TLS_RSA_WITH_NULL")
    );

    // Only TLS 1.2 suites but TLS 1.3 required: nothing could ever be negotiated.
    let mut t = tls("c");
    t.cipher_suites = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()];
    t.min_version = Some(TlsVersion::Tls13);
    let err = build(&listener("l1", t), &certs, &defaults()).unwrap_err();
    assert!(matches!(err, TlsBuildError::Rustls { .. }), "{err}");
}

#[test]
fn build_errors_name_the_certificate() {
    let good = server_cert(&["a.example.com"]);
    let other = server_cert(&["b.example.com"]);
    let check = |certs: Vec<fiberlb_api::model::Certificate>, t, want: &str| {
        let err = build(&listener("l1", t), &cert_map(certs), &defaults()).unwrap_err();
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
    };

    let mut garbage = cert_obj("bad", &[], &good);
    garbage.certificate_pem = "not a pem".into();
    check(vec![garbage], tls("bad"), "certificate bad-name (bad)");

    let mut corrupt = cert_obj("bad", &[], &good);
    corrupt.certificate_pem =
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".into();
    check(vec![corrupt], tls("bad"), "bad-name");

    let mut bad_key = cert_obj("bad", &[], &good);
    bad_key.private_key_pem =
        Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
    check(vec![bad_key], tls("bad"), "bad-name");

    let mut mismatch = cert_obj("bad", &[], &good);
    mismatch.private_key_pem = Some(other.key_pem.clone());
    check(vec![mismatch], tls("bad"), "bad-name");

    let mut keyless = cert_obj("nokey", &[], &good);
    keyless.private_key_pem = None;
    check(
        vec![keyless],
        tls("nokey"),
        "certificate nokey-name (nokey): no private key",
    );

    check(
        vec![],
        tls("missing"),
        "default certificate missing does not exist",
    );

    let mut t = tls("ok");
    t.sni_certificates
        .insert("*.example.com".into(), "gone".into());
    check(
        vec![cert_obj("ok", &[], &good)],
        t,
        "SNI *.example.com certificate gone",
    );

    // A broken certificate found only by subject name is skipped, not fatal.
    let mut broken = cert_obj("broken", &["z.example.com"], &good);
    broken.private_key_pem = Some(other.key_pem.clone());
    let certs = cert_map(vec![cert_obj("ok", &[], &good), broken]);
    let server = build(&listener("l1", tls("ok")), &certs, &defaults())
        .unwrap()
        .config;
    let (c, _) = handshake(
        &client(ClientOpts::default()),
        &server,
        Some("z.example.com"),
    )
    .unwrap();
    assert_eq!(served_leaf(&c), good.der);

    let mut l = listener("l1", tls("ok"));
    l.tls = None;
    let err = build(&l, &cert_map(vec![]), &defaults()).unwrap_err();
    assert!(matches!(err, TlsBuildError::NoTlsConfig { .. }));
}

#[test]
fn rotation_serves_the_new_leaf_and_keeps_sessions() {
    let v1 = server_cert(&["a.example.com"]);
    let v2 = server_cert(&["a.example.com"]);
    let l = listener("rot", tls("c"));
    let client = client(ClientOpts::default());

    let server_v1 = build(&l, &cert_map(vec![cert_obj("c", &[], &v1)]), &defaults()).unwrap();
    let (c, _) = handshake(&client, &server_v1.config, Some("a.example.com")).unwrap();
    assert_eq!(served_leaf(&c), v1.der);

    // The same certificate id updated through the API: the next snapshot's config.
    let server_v2 = build(&l, &cert_map(vec![cert_obj("c", &[], &v2)]), &defaults()).unwrap();
    let (c, _) = handshake(&client, &server_v2.config, Some("a.example.com")).unwrap();
    assert_eq!(
        c.handshake_kind(),
        Some(HandshakeKind::Resumed),
        "ticket survives the rebuild"
    );
    let fresh = client_fresh();
    let (c, _) = handshake(&fresh, &server_v2.config, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(served_leaf(&c), v2.der);
    // Connections still on the old snapshot keep the old certificate.
    let (c, _) = handshake(&client_fresh(), &server_v1.config, Some("a.example.com")).unwrap();
    assert_eq!(served_leaf(&c), v1.der);
}

fn client_fresh() -> std::sync::Arc<rustls::ClientConfig> {
    client(ClientOpts::default())
}

#[test]
fn tls13_tickets_resume_on_the_same_listener_only() {
    let cert = server_cert(&["a.example.com"]);
    let certs = cert_map(vec![cert_obj("c", &[], &cert)]);
    let server = build(&listener("t13", tls("c")), &certs, &defaults())
        .unwrap()
        .config;
    let client = client(ClientOpts::default());
    let (c, s) = handshake(&client, &server, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(s.handshake_kind(), Some(HandshakeKind::Full));
    let (c, s) = handshake(&client, &server, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(s.handshake_kind(), Some(HandshakeKind::Resumed));

    // Another listener serving the same certificate does not honour this listener's tickets.
    let other = build(&listener("t13-other", tls("c")), &certs, &defaults())
        .unwrap()
        .config;
    let (c, _) = handshake(&client, &other, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
}

#[test]
fn tls12_session_ids_resume_from_the_cache() {
    let cert = server_cert(&["a.example.com"]);
    let certs = cert_map(vec![cert_obj("c", &[], &cert)]);
    let server = build(&listener("t12", tls("c")), &certs, &defaults())
        .unwrap()
        .config;
    let mut cfg = (*client(ClientOpts {
        versions: TLS12_ONLY,
        ..Default::default()
    }))
    .clone();
    cfg.resumption = rustls::client::Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let client = std::sync::Arc::new(cfg);
    let (c, _) = handshake(&client, &server, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
    let (c, s) = handshake(&client, &server, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));

    // With the cache off (size 0) the same client gets full handshakes.
    let no_cache = ProxyTlsSettings {
        session_cache_size: 0,
        ..defaults()
    };
    let server = build(&listener("t12-nc", tls("c")), &certs, &no_cache)
        .unwrap()
        .config;
    handshake(&client, &server, Some("a.example.com")).unwrap();
    let (c, _) = handshake(&client, &server, Some("a.example.com")).unwrap();
    assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
}
