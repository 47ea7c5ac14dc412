//! Backend weights, ports and every malformed address form.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, backend, hostname, ip, Graph};
use fiberlb_tests::{bounded, expect_err, Code, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_weights_and_addresses() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let Graph {
            pool, backend: b, ..
        } = fixtures::graph(&mut c, "weights", "acme").await?;
        for weight in [0, 101] {
            let r = c
                .backend
                .add_backend(pb::AddBackendRequest {
                    weight: Some(weight),
                    ..backend(&pool.id, "w", ip("10.0.0.5"), 80)
                })
                .await;
            expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
            let r = c
                .backend
                .update_backend(pb::UpdateBackendRequest {
                    backend_id: b.id.clone(),
                    weight: Some(weight),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        }
        for weight in [1, 100] {
            let name = format!("w{weight}");
            c.backend
                .add_backend(pb::AddBackendRequest {
                    weight: Some(weight),
                    ..backend(&pool.id, &name, ip("10.0.0.5"), 80)
                })
                .await?;
        }
        let bad_addresses = [
            ip("10.0.0.256"),
            ip("not-an-ip"),
            ip(""),
            ip("0.0.0.0"),
            ip("224.0.0.1"),
            hostname("-bad.example.com"),
            hostname("a..b"),
            hostname("under_score.example.com"),
            hostname(""),
            hostname("10.0.0.1"),
            fixtures::vm("vm/../etc"),
            fixtures::vm(""),
            None,
            Some(pb::BackendAddress { address: None }),
        ];
        for addr in bad_addresses {
            let r = c
                .backend
                .add_backend(backend(&pool.id, "bad", addr.clone(), 80))
                .await;
            let s = expect_err(r, Code::InvalidArgument, "INVALID_BACKEND_ADDRESS");
            assert!(s.message().contains("address"), "{addr:?}: {}", s.message());
        }
        let r = c
            .backend
            .update_backend(pb::UpdateBackendRequest {
                backend_id: b.id.clone(),
                address: ip("300.1.1.1"),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_BACKEND_ADDRESS");
        for port in [0, 65_536] {
            let r = c
                .backend
                .add_backend(backend(&pool.id, "p", ip("10.0.0.6"), port))
                .await;
            expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        }
        let r = c
            .backend
            .drain_backend(pb::DrainBackendRequest {
                backend_id: b.id.clone(),
                timeout_seconds: Some(86_401),
                revision: None,
            })
            .await;
        expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        Ok(())
    })
    .await
}
