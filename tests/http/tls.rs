use crate::common::*;

#[tokio::test]
async fn https_with_two_sni_certificates_h2_and_mtls_required() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("secure").await?;
        let mut lb = start().await?;
        let pool = lb.pool("secure", &[b.addr]).await?;
        let a = fixtures::self_signed(&["a.example.com"]);
        let bb = fixtures::self_signed(&["b.example.com"]);
        let a_id = lb.cert("a", &a.cert_pem, &a.key_pem).await?;
        let b_id = lb.cert("b", &bb.cert_pem, &bb.key_pem).await?;
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Https, 0);
        req.default_pool_id = Some(pool.clone());
        req.tls_config = Some(pb::TlsConfig {
            certificate_id: a_id,
            sni_certificates: [("b.example.com".to_string(), b_id)].into_iter().collect(),
            ..Default::default()
        });
        let (_, addr) = lb.listener_with(req).await?;

        // Each name gets its own certificate: trusting only that one must succeed.
        for (sni, cert) in [
            ("a.example.com", &a.cert_pem),
            ("b.example.com", &bb.cert_pem),
        ] {
            let cfg = tls_client(&[cert], &[b"http/1.1"], None)?;
            let s = tls_connect(addr, sni, cfg).await?;
            let r = send_on(s, false, request("GET", sni, "/tls", &[], "", false)).await?;
            assert_eq!(
                (r.status.as_u16(), r.text().as_str()),
                (200, "secure"),
                "{sni}"
            );
            assert_eq!(b.last().unwrap().headers["x-forwarded-proto"], "https");
        }
        // The wrong trust anchor fails: b's name is not served with a's certificate.
        let cfg = tls_client(&[&a.cert_pem], &[b"http/1.1"], None)?;
        assert!(tls_connect(addr, "b.example.com", cfg).await.is_err());

        // h2 by ALPN.
        let cfg = tls_client(&[&a.cert_pem], &[b"h2", b"http/1.1"], None)?;
        let s = tls_connect(addr, "a.example.com", cfg).await?;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let r = send_on(
            s,
            true,
            request("GET", "a.example.com", "/over-h2", &[], "", true),
        )
        .await?;
        assert_eq!((r.status.as_u16(), r.version), (200, http::Version::HTTP_2));

        // mTLS Required.
        let pki = fiberlb_tests::pki::Pki::generate()?;
        let server_id = lb
            .cert("server", &pki.server.cert_pem, &pki.server.key_pem)
            .await?;
        let ca_id = lb.cert("client-ca", &pki.ca_pem, "").await?;
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Https, 0);
        req.default_pool_id = Some(pool);
        req.tls_config = Some(pb::TlsConfig {
            certificate_id: server_id,
            client_auth: pb::ClientAuthMode::Required as i32,
            client_ca_certificate_id: Some(ca_id),
            ..Default::default()
        });
        let (_, addr) = lb.listener_with(req).await?;
        let anonymous = async {
            let cfg = tls_client(&[&pki.ca_pem], &[b"http/1.1"], None)?;
            let s = tls_connect(addr, "localhost", cfg).await?;
            send_on(s, false, request("GET", "localhost", "/", &[], "", false)).await
        };
        assert!(
            anonymous.await.is_err(),
            "a client without a certificate must be refused"
        );
        let cfg = tls_client(
            &[&pki.ca_pem],
            &[b"http/1.1"],
            Some((&pki.client.cert_pem, &pki.client.key_pem)),
        )?;
        let s = tls_connect(addr, "localhost", cfg).await?;
        let r = send_on(
            s,
            false,
            request(
                "GET",
                "localhost",
                "/",
                &[("x-client-cert-subject", "CN=forged")],
                "",
                false,
            ),
        )
        .await?;
        assert_eq!(r.status, 200);
        let subject = b.last().unwrap().headers["x-client-cert-subject"]
            .to_str()?
            .to_string();
        assert!(subject.contains("fiberlb-test-client"), "{subject}");
        Ok(())
    })
    .await
}

/// Pool name, backend metadata, expected status, protocol the backend sees.
type BackendCase<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, http::Version);

#[tokio::test]
async fn tls_to_backends_verifies_against_a_ca_or_skips_when_told() -> anyhow::Result<()> {
    bounded(async {
        let pki = fiberlb_tests::pki::Pki::generate()?;
        let b = HttpBackend::start_tls("reencrypted", &pki.server.cert_pem, &pki.server.key_pem)
            .await?;
        let mut lb = start().await?;
        let ca = lb.cert("backend-ca", &pki.ca_pem, "").await?;
        let ca = ca.as_str();
        let cases: [BackendCase; 4] = [
            (
                "verified",
                &[("tls", "true"), ("tls_ca", ca)],
                200,
                http::Version::HTTP_11,
            ),
            (
                "unknown-ca",
                &[("tls", "true")],
                502,
                http::Version::HTTP_11,
            ),
            (
                "skip-verify",
                &[("tls", "true"), ("tls_skip_verify", "true")],
                200,
                http::Version::HTTP_11,
            ),
            (
                "h2",
                &[("tls", "true"), ("tls_ca", ca), ("http2", "true")],
                200,
                http::Version::HTTP_2,
            ),
        ];
        for (name, meta, status, version) in cases {
            let (pool, _) = lb
                .pool_with(fixtures::pool("", name), &[(b.addr, meta)])
                .await?;
            let (_, addr) = lb.http_listener(Some(&pool)).await?;
            let r = get(addr, "app.example.com", "/", &[]).await?;
            assert_eq!(r.status.as_u16(), status, "{name}");
            if status == 200 {
                let seen = b.last().expect("backend saw it");
                assert_eq!(seen.version, version, "{name}");
                assert_eq!(r.text(), "reencrypted");
            }
        }
        Ok(())
    })
    .await
}
