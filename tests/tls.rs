//! TLS and mTLS on the gRPC management API: a node started with `[server.tls]` serves
//! clients that trust its CA (and, with `ca_file`, present a certificate signed by it),
//! refuses everyone else, and refuses to start on an unusable key file.

use std::path::Path;

use fiberlb_proto::v1 as pb;
use fiberlb_tests::cli::{run_raw, CliOutput};
use fiberlb_tests::fixtures::lb;
use fiberlb_tests::pki::{Pki, PkiFiles};
use fiberlb_tests::{bounded, Clients, Credential, Node};
use tempfile::TempDir;

/// A node serving TLS with a fresh PKI; `mtls` also sets `ca_file`.
struct TlsNode {
    node: Node,
    pki: Pki,
    files: PkiFiles,
    _data: TempDir,
    _pki_dir: TempDir,
}

impl TlsNode {
    async fn start(mtls: bool) -> anyhow::Result<TlsNode> {
        let pki = Pki::generate()?;
        let pki_dir = tempfile::tempdir()?;
        let files = pki.write(pki_dir.path())?;
        let mut toml = format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            files.server_cert.display().to_string(),
            files.server_key.display().to_string()
        );
        if mtls {
            toml.push_str(&format!("ca_file = {:?}\n", files.ca.display().to_string()));
        }
        let config = pki_dir.path().join("fiberlb.toml");
        std::fs::write(&config, toml)?;
        let data = tempfile::tempdir()?;
        let node = Node::start_with(data.path(), &["-c", path_str(&config)]).await?;
        Ok(TlsNode {
            node,
            pki,
            files,
            _data: data,
            _pki_dir: pki_dir,
        })
    }

    fn https_url(&self) -> String {
        format!("https://{}", self.node.grpc_addr())
    }

    fn admin(&self) -> Credential {
        Credential::Bearer(self.node.admin_token().to_string())
    }

    /// Runs the CLI against the node over TLS with the admin token and `args`.
    async fn cli(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        let mut full = vec![
            "--endpoint".to_string(),
            self.https_url(),
            "--token".to_string(),
            self.node.admin_token().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        run_raw(&full).await
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

async fn list(c: &Clients, org: &str) -> Result<Vec<String>, tonic::Status> {
    let mut lb = c.lb.clone();
    let resp = lb
        .list_load_balancers(pb::ListLoadBalancersRequest {
            org_id: org.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(resp.load_balancers.into_iter().map(|l| l.name).collect())
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() -> anyhow::Result<()> {
    bounded(async {
        let t = TlsNode::start(false).await?;
        let c = Clients::connect_tls(&t.https_url(), t.pki.client_tls(), t.admin())?;
        c.lb.clone().create_load_balancer(lb("web", "acme")).await?;
        assert_eq!(list(&c, "acme").await?, vec!["web".to_string()]);

        // Plaintext HTTP/2 to the TLS port gets no answer.
        let plain = t.node.admin()?;
        assert!(
            list(&plain, "acme").await.is_err(),
            "plaintext call succeeded"
        );

        // A client trusting another CA refuses the node's certificate.
        let other = Pki::generate()?;
        let wrong = Clients::connect_tls(&t.https_url(), other.client_tls(), t.admin())?;
        assert!(
            list(&wrong, "acme").await.is_err(),
            "untrusted server accepted"
        );

        // The CLI: --ca-file, and --tls-server-name checked against the DNS name.
        let ca = path_str(&t.files.ca);
        let out = t
            .cli(&["--ca-file", ca, "lb", "list", "--org", "acme", "-o", "json"])
            .await?
            .ok()?;
        assert!(out.contains("\"web\""), "lb list output: {out}");
        let out = t
            .cli(&[
                "--ca-file",
                ca,
                "--tls-server-name",
                "localhost",
                "lb",
                "list",
                "--org",
                "acme",
            ])
            .await?
            .ok()?;
        assert!(out.contains("web"), "lb list output: {out}");
        let out = t
            .cli(&[
                "--ca-file",
                ca,
                "--tls-server-name",
                "other.example",
                "lb",
                "list",
                "--org",
                "acme",
            ])
            .await?;
        assert_eq!(out.code, Some(1), "wrong server name accepted: {out:?}");

        // Without --ca-file the CLI uses the public roots, which do not include our CA.
        let out = t.cli(&["lb", "list", "--org", "acme"]).await?;
        assert_eq!(out.code, Some(1), "untrusted CA accepted: {out:?}");
        assert!(
            out.stderr.contains("cannot connect"),
            "stderr: {}",
            out.stderr
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_signed_by_the_ca() -> anyhow::Result<()> {
    bounded(async {
        let t = TlsNode::start(true).await?;
        let with_cert =
            Clients::connect_tls(&t.https_url(), t.pki.client_tls_with_identity(), t.admin())?;
        with_cert
            .lb
            .clone()
            .create_load_balancer(lb("api", "acme"))
            .await?;
        assert_eq!(list(&with_cert, "acme").await?, vec!["api".to_string()]);

        let without = Clients::connect_tls(&t.https_url(), t.pki.client_tls(), t.admin())?;
        assert!(
            list(&without, "acme").await.is_err(),
            "client without a certificate was served"
        );

        // A certificate from another CA is refused as well.
        let other = Pki::generate()?;
        let foreign = t
            .pki
            .client_tls()
            .identity(tonic::transport::Identity::from_pem(
                &other.client.cert_pem,
                &other.client.key_pem,
            ));
        let foreign = Clients::connect_tls(&t.https_url(), foreign, t.admin())?;
        assert!(
            list(&foreign, "acme").await.is_err(),
            "client certificate of another CA was accepted"
        );

        let ca = path_str(&t.files.ca);
        let out = t
            .cli(&[
                "--ca-file",
                ca,
                "--client-cert",
                path_str(&t.files.client_cert),
                "--client-key",
                path_str(&t.files.client_key),
                "lb",
                "list",
                "--org",
                "acme",
                "-o",
                "json",
            ])
            .await?
            .ok()?;
        assert!(out.contains("\"api\""), "lb list output: {out}");
        let out = t
            .cli(&["--ca-file", ca, "lb", "list", "--org", "acme"])
            .await?;
        assert_eq!(
            out.code,
            Some(1),
            "CLI without a certificate was served: {out:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn unusable_key_file_stops_the_node_and_is_named() -> anyhow::Result<()> {
    bounded(async {
        let pki = Pki::generate()?;
        let dir = tempfile::tempdir()?;
        let files = pki.write(dir.path())?;
        // The key of another certificate: readable PEM, wrong key.
        std::fs::write(&files.server_key, &pki.client.key_pem)?;
        let config = dir.path().join("fiberlb.toml");
        std::fs::write(
            &config,
            format!(
                "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
                path_str(&files.server_cert),
                path_str(&files.server_key)
            ),
        )?;
        let data = tempfile::tempdir()?;
        let err = match Node::start_with(data.path(), &["-c", path_str(&config)]).await {
            Ok(_) => anyhow::bail!("node started with a key that does not match its certificate"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("server.tls.key_file"), "{err}");
        assert!(err.contains("does not match the certificate"), "{err}");
        Ok(())
    })
    .await
}
