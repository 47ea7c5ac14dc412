//! Certificates: create, get (never the key), list, rotate, delete, in-use protection.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, self_signed};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use prost::Message;

/// The base64 body of a PEM block (what would leak if a key were echoed back).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_lifecycle_never_returns_the_key() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let first = self_signed(&["api.example.com", "www.example.com"]);
        let key_body = pem_body(&first.key_pem);
        let created = c
            .cert
            .create_certificate(pb::CreateCertificateRequest {
                name: "api".into(),
                org_id: "acme".into(),
                project_id: None,
                certificate_pem: first.cert_pem.clone(),
                private_key_pem: first.key_pem.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(created.certificate_pem, first.cert_pem);
        assert_eq!(
            created.subject_names,
            ["api.example.com", "www.example.com"]
        );
        assert!(created.has_private_key);
        assert_eq!(created.fingerprint_sha256.len(), 64);
        assert!(created.not_after > created.not_before);
        let got = c
            .cert
            .get_certificate(pb::GetCertificateRequest {
                certificate_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got, created);
        let wire = got.encode_to_vec();
        assert!(
            !String::from_utf8_lossy(&wire).contains(&key_body[..40]),
            "the key is write-only"
        );
        assert!(!format!("{got:?}").contains("PRIVATE KEY"));

        // A CA bundle carries no key.
        let ca = self_signed(&["ca.example.com"]);
        let bundle = c
            .cert
            .create_certificate(pb::CreateCertificateRequest {
                name: "client-ca".into(),
                org_id: "acme".into(),
                certificate_pem: ca.cert_pem,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(!bundle.has_private_key);

        let list = c
            .cert
            .list_certificates(pb::ListCertificatesRequest {
                org_id: "acme".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(list.total_count, 2);
        assert_eq!(
            list.certificates
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["api", "client-ca"]
        );
        assert!(list
            .certificates
            .iter()
            .all(|x| !format!("{x:?}").contains(&key_body[..40])));
        let filtered = c
            .cert
            .list_certificates(pb::ListCertificatesRequest {
                org_id: "acme".into(),
                name_filter: Some("client".into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(filtered.certificates.len(), 1);

        // Rotation: a new chain and key, same id.
        let second = self_signed(&["api.example.com"]);
        let rotated = c
            .cert
            .update_certificate(pb::UpdateCertificateRequest {
                certificate_id: created.id.clone(),
                certificate_pem: second.cert_pem.clone(),
                private_key_pem: second.key_pem.clone(),
                revision: Some(created.revision),
            })
            .await?
            .into_inner();
        assert_eq!(rotated.id, created.id);
        assert_eq!(rotated.certificate_pem, second.cert_pem);
        assert_ne!(rotated.fingerprint_sha256, created.fingerprint_sha256);
        assert!(rotated.revision > created.revision);
        // Rotating to a chain whose key is missing or does not match is refused.
        let no_key = c
            .cert
            .update_certificate(pb::UpdateCertificateRequest {
                certificate_id: created.id.clone(),
                certificate_pem: first.cert_pem.clone(),
                ..Default::default()
            })
            .await;
        expect_err(no_key, Code::InvalidArgument, "INVALID_ARGUMENT");
        let mismatch = c
            .cert
            .update_certificate(pb::UpdateCertificateRequest {
                certificate_id: created.id.clone(),
                certificate_pem: first.cert_pem.clone(),
                private_key_pem: second.key_pem.clone(),
                revision: None,
            })
            .await;
        expect_err(mismatch, Code::InvalidArgument, "INVALID_CERTIFICATE");
        let garbage = c
            .cert
            .create_certificate(pb::CreateCertificateRequest {
                name: "junk".into(),
                org_id: "acme".into(),
                certificate_pem: "not a certificate".into(),
                ..Default::default()
            })
            .await;
        expect_err(garbage, Code::InvalidArgument, "INVALID_CERTIFICATE");

        // In use by an HTTPS listener: cannot be deleted until the listener is gone.
        let lb =
            c.lb.create_load_balancer(fixtures::lb("tls", "acme"))
                .await?
                .into_inner();
        let https = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                tls_config: Some(pb::TlsConfig {
                    certificate_id: created.id.clone(),
                    min_version: pb::TlsVersion::Tls13 as i32,
                    ..Default::default()
                }),
                ..fixtures::listener(&lb.id, "https", pb::ListenerProtocol::Https, 443)
            })
            .await?
            .into_inner();
        assert_eq!(
            https.tls_config.as_ref().map(|t| t.certificate_id.as_str()),
            Some(created.id.as_str())
        );
        let in_use = c
            .cert
            .delete_certificate(pb::DeleteCertificateRequest {
                certificate_id: created.id.clone(),
                revision: None,
            })
            .await;
        let s = expect_err(in_use, Code::FailedPrecondition, "CERTIFICATE_IN_USE");
        assert!(
            s.message().contains(&https.id),
            "names the listener: {}",
            s.message()
        );
        // A key-less bundle cannot serve as the listener's certificate.
        let keyless = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                tls_config: Some(pb::TlsConfig {
                    certificate_id: bundle.id.clone(),
                    ..Default::default()
                }),
                ..fixtures::listener(&lb.id, "https-2", pb::ListenerProtocol::Https, 8443)
            })
            .await;
        expect_err(keyless, Code::InvalidArgument, "INVALID_ARGUMENT");

        c.listener
            .delete_listener(pb::DeleteListenerRequest {
                listener_id: https.id,
                revision: None,
            })
            .await?;
        let del = c
            .cert
            .delete_certificate(pb::DeleteCertificateRequest {
                certificate_id: created.id.clone(),
                revision: None,
            })
            .await?
            .into_inner();
        assert_eq!(del.certificate_id, created.id);
        let gone = c
            .cert
            .get_certificate(pb::GetCertificateRequest {
                certificate_id: created.id,
            })
            .await;
        expect_err(gone, Code::NotFound, "CERTIFICATE_NOT_FOUND");
        Ok(())
    })
    .await
}
