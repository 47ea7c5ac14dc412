//! Listener ports, protocols, TLS settings and references.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures;
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::ListenerProtocol as P;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_ports_protocols_and_tls() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let lb =
            c.lb.create_load_balancer(fixtures::lb("ports", "acme"))
                .await?
                .into_inner();
        for port in [0, 65_536, 70_000] {
            let r = c
                .listener
                .create_listener(fixtures::listener(&lb.id, "bad-port", P::Tcp, port))
                .await;
            expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        }
        let r = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "no-proto", P::Unspecified, 80))
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");

        let web = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "web", P::Tcp, 80))
            .await?
            .into_inner();
        let clash = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "web-2", P::Http, 80))
            .await;
        let s = expect_err(clash, Code::AlreadyExists, "LISTENER_PORT_CONFLICT");
        assert!(
            s.message().contains("web"),
            "names the listener holding the port: {}",
            s.message()
        );
        // UDP and TCP ports are different ports.
        c.listener
            .create_listener(fixtures::listener(&lb.id, "dns", P::Udp, 80))
            .await?;
        let udp_clash = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "dns-2", P::Udp, 80))
            .await;
        expect_err(udp_clash, Code::AlreadyExists, "LISTENER_PORT_CONFLICT");
        // Moving a listener onto a taken port is refused too; another LB's ports are its own.
        let alt = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "alt", P::Tcp, 81))
            .await?
            .into_inner();
        let moved = c
            .listener
            .update_listener(pb::UpdateListenerRequest {
                listener_id: alt.id,
                port: Some(80),
                ..Default::default()
            })
            .await;
        expect_err(moved, Code::AlreadyExists, "LISTENER_PORT_CONFLICT");
        let other =
            c.lb.create_load_balancer(fixtures::lb("ports-2", "acme"))
                .await?
                .into_inner();
        c.listener
            .create_listener(fixtures::listener(&other.id, "web", P::Tcp, 80))
            .await?;
        let same_name = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "web", P::Tcp, 82))
            .await;
        expect_err(same_name, Code::AlreadyExists, "LISTENER_ALREADY_EXISTS");

        let r = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "tls", P::Https, 443))
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        let tls = Some(pb::TlsConfig {
            certificate_id: "some-cert".into(),
            ..Default::default()
        });
        let r = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                tls_config: tls,
                ..fixtures::listener(&lb.id, "tcp-tls", P::Tcp, 444)
            })
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        let tls = Some(pb::TlsConfig {
            certificate_id: "no-such-cert".into(),
            ..Default::default()
        });
        let r = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                tls_config: tls,
                ..fixtures::listener(&lb.id, "tls", P::Https, 443)
            })
            .await;
        expect_err(r, Code::NotFound, "CERTIFICATE_NOT_FOUND");
        let r = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                default_pool_id: Some("no-such-pool".into()),
                ..fixtures::listener(&lb.id, "nopool", P::Tcp, 445)
            })
            .await;
        expect_err(r, Code::NotFound, "POOL_NOT_FOUND");
        let r = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                timeout_client: Some(0),
                ..fixtures::listener(&lb.id, "t", P::Tcp, 446)
            })
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        let r = c.listener.update_listener(pb::UpdateListenerRequest {
            listener_id: web.id,
            port: Some(0),
            ..Default::default()
        });
        expect_err(r.await, Code::InvalidArgument, "INVALID_ARGUMENT");
        Ok(())
    })
    .await
}
