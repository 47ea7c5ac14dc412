//! DNS checks against dnsmasq, gRPC checks against a tonic health service.

use super::*;
use fiberlb_tests::bounded;
use fiberlb_tests::dns::dnsmasq;

fn dns_check(expected: &str) -> pb::HealthCheck {
    check(CheckType::Dns(pb::DnsCheck {
        hostname: "svc.test".into(),
        record_type: pb::DnsRecordType::A as i32,
        expected_address: Some(expected.into()),
    }))
}

#[tokio::test]
async fn a_dns_check_asks_flashdns_and_fails_when_it_stops_answering() -> anyhow::Result<()> {
    bounded(async {
        let (mut dns, port) = dnsmasq().await?;
        let mut lb = start(Some(format!(
            "[flashdns]\ndns_addr = \"127.0.0.1:{port}\"\n"
        )))
        .await?;
        // The backend itself is irrelevant: the check asks [flashdns] dns_addr.
        let pool = lb.pool("dns", Some(dns_check("10.1.2.3")), None).await?;
        let id = lb.add(&pool, "svc", "127.0.0.1:9".parse()?).await?;
        lb.wait_health(&id, Duration::from_secs(15), "dnsmasq answers", |h| {
            h.healthy
        })
        .await?;

        dns.kill().await?;
        let (h, _) = lb
            .wait_health(&id, Duration::from_secs(10), "dnsmasq gone", |h| !h.healthy)
            .await?;
        let err = h.last_error.unwrap_or_default();
        assert!(
            err.starts_with("dns:") || err.starts_with("timed out"),
            "{err}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn without_flashdns_a_dns_check_asks_the_backend_and_wants_the_expected_address(
) -> anyhow::Result<()> {
    bounded(async {
        let (_dns, port) = dnsmasq().await?;
        let server: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut lb = start(None).await?;
        let good = lb.pool("good", Some(dns_check("10.1.2.3")), None).await?;
        let bad = lb.pool("bad", Some(dns_check("10.9.9.9")), None).await?;
        let id_good = lb.add(&good, "ns", server).await?;
        let id_bad = lb.add(&bad, "ns", server).await?;
        lb.wait_health(
            &id_good,
            Duration::from_secs(15),
            "answer has 10.1.2.3",
            |h| h.healthy,
        )
        .await?;
        let (h, _) = lb
            .wait_health(
                &id_bad,
                Duration::from_secs(15),
                "answer lacks 10.9.9.9",
                |h| h.consecutive_failures >= 2,
            )
            .await?;
        assert!(!h.healthy);
        assert!(h
            .last_error
            .unwrap_or_default()
            .contains("10.9.9.9 not among"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_grpc_check_follows_serving_and_not_serving() -> anyhow::Result<()> {
    bounded(async {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("shop.Cart", ServingStatus::Serving)
            .await;
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)?;
        let addr = incoming.local_addr()?;
        let _srv = Aborts(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        }));
        let mut lb = start(None).await?;
        let hc = check(CheckType::Grpc(pb::GrpcCheck {
            service: Some("shop.Cart".into()),
        }));
        let pool = lb.pool("grpc", Some(hc), None).await?;
        let id = lb.add(&pool, "cart", addr).await?;
        lb.wait_health(&id, Duration::from_secs(10), "SERVING", |h| h.healthy)
            .await?;

        reporter
            .set_service_status("shop.Cart", ServingStatus::NotServing)
            .await;
        let (h, _) = lb
            .wait_health(&id, Duration::from_secs(10), "NOT_SERVING", |h| !h.healthy)
            .await?;
        assert!(h.last_error.unwrap_or_default().contains("NOT_SERVING"));

        reporter
            .set_service_status("shop.Cart", ServingStatus::Serving)
            .await;
        lb.wait_health(&id, Duration::from_secs(10), "SERVING again", |h| h.healthy)
            .await?;
        Ok(())
    })
    .await
}

/// A backend process frozen with SIGSTOP answers nothing (its sockets stay open, so a
/// plain TCP check would still pass): its DNS checks time out and it goes unhealthy; once
/// resumed with SIGCONT it passes again and is healthy after `healthy_threshold` checks.
#[tokio::test]
async fn a_frozen_backend_process_goes_unhealthy_and_comes_back_when_resumed() -> anyhow::Result<()>
{
    bounded(async {
        let (dns, port) = dnsmasq().await?;
        let pid = dns.id().ok_or_else(|| anyhow::anyhow!("dnsmasq exited"))? as i32;
        let server: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut lb = start(None).await?;
        let pool = lb.pool("ns", Some(dns_check("10.1.2.3")), None).await?;
        let id = lb.add(&pool, "ns", server).await?;
        lb.wait_health(&id, Duration::from_secs(15), "healthy", |h| h.healthy)
            .await?;

        // SAFETY: kill(2) on our own child, not yet reaped (so the PID is not reused).
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let (h, took) = lb
            .wait_health(&id, Duration::from_secs(15), "frozen: unhealthy", |h| {
                !h.healthy
            })
            .await?;
        println!("frozen (SIGSTOP) backend unhealthy after {took:?}: {h:?}");
        // Two failed checks, each up to interval 1 s + timeout 1 s, and a poll's slack.
        assert!(
            took < Duration::from_secs(5),
            "a frozen backend stayed healthy for {took:?}"
        );

        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let (_, back) = lb
            .wait_health(&id, Duration::from_secs(15), "resumed: healthy", |h| {
                h.healthy
            })
            .await?;
        println!("resumed (SIGCONT) backend healthy again after {back:?}");
        drop(dns);
        Ok(())
    })
    .await
}
