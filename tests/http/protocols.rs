use crate::common::*;

#[tokio::test]
async fn h2c_prior_knowledge() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("h2app").await?;
        let mut lb = start().await?;
        let pool = lb.pool("h2app", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let r = get_h2c(addr, "h2.example.com", "/over-h2c").await?;
        assert_eq!(
            (r.status.as_u16(), r.version, r.text().as_str()),
            (200, http::Version::HTTP_2, "h2app")
        );
        let seen = b.last().unwrap();
        assert_eq!(seen.uri, "/over-h2c");
        assert_eq!(
            seen.version,
            http::Version::HTTP_11,
            "plain backends get HTTP/1.1"
        );
        assert_eq!(seen.headers["host"], "h2.example.com");
        assert_eq!(seen.headers["x-forwarded-host"], "h2.example.com");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn websocket_echo_through_an_upgrade() -> anyhow::Result<()> {
    bounded(async {
        let ws = l7::ws_echo().await?;
        let mut lb = start().await?;
        let pool = lb.pool("ws", &[ws.addr]).await?;
        let (lid, addr) = lb.http_listener(Some(&pool)).await?;
        let tcp = TcpStream::connect(addr).await?;
        let (mut client, resp) =
            tokio_tungstenite::client_async(format!("ws://{addr}/chat"), tcp).await?;
        assert_eq!(resp.status(), 101);
        for i in 0..5 {
            let msg = format!("hello {i}");
            client
                .send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
                .await?;
            let back = tokio::time::timeout(Duration::from_secs(10), client.next())
                .await?
                .expect("echo")?;
            assert_eq!(back.into_text()?.as_str(), msg);
        }
        // The tunnel's bytes count for its listener while it is open: five masked frames
        // of 13 bytes in, five of 9 bytes out (the upgrade request itself has no body).
        fiberlb_tests::metrics::wait_for_bytes(
            lb.node.admin_addr(),
            &lid,
            65.0,
            45.0,
            "open WebSocket's bytes not counted",
        )
        .await?;
        client.close(None).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_through_h2c() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    bounded(async {
        let (backend, reporter) = l7::grpc_health("demo.Service").await?;
        let mut lb = start().await?;
        let pool = lb.pool("grpc", &[backend.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .timeout(Duration::from_secs(20))
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        let r = client
            .check(HealthCheckRequest {
                service: "demo.Service".into(),
            })
            .await?;
        assert_eq!(r.into_inner().status(), ServingStatus::Serving);
        // An error status travels back in the trailers.
        let e = client
            .check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);

        let mut stream = client
            .watch(HealthCheckRequest {
                service: "demo.Service".into(),
            })
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await??
            .expect("first");
        assert_eq!(first.status(), ServingStatus::Serving);
        reporter
            .set_service_status("demo.Service", tonic_health::ServingStatus::NotServing)
            .await;
        let second = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await??
            .expect("second");
        assert_eq!(second.status(), ServingStatus::NotServing);
        Ok(())
    })
    .await
}
