//! Active checks that see a backend die and come back: TCP, HTTP, HTTPS.

use super::*;
use fiberlb_tests::bounded;
use std::sync::atomic::AtomicBool;

#[tokio::test]
async fn a_killed_tcp_backend_is_out_within_2_5_s_and_back_after_healthy_threshold_checks(
) -> anyhow::Result<()> {
    bounded(async {
        let a = TagServer::start(b'A', "127.0.0.1:0".parse()?).await?;
        let _b = TagServer::start(b'B', "127.0.0.1:0".parse()?).await?;
        let mut lb = start(None).await?;
        let pool = lb
            .pool("tcp", Some(check(CheckType::Tcp(pb::TcpCheck {}))), None)
            .await?;
        let ida = lb.add(&pool, "a", a.addr).await?;
        let idb = lb.add(&pool, "b", _b.addr).await?;
        let front = lb.listener(&pool).await?;
        for id in [&ida, &idb] {
            lb.wait_health(id, Duration::from_secs(10), "healthy at start", |h| {
                h.healthy
            })
            .await?;
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(tag_via(front).await?);
        }
        assert_eq!(seen.len(), 2, "both backends serve");

        // Clients keep connecting while A dies.
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tag_via(front).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        a.kill();
        let (_, took) = lb
            .wait_health(&ida, Duration::from_secs(5), "A unhealthy", |h| !h.healthy)
            .await?;
        assert!(
            took <= Duration::from_millis(2_500),
            "A was still healthy {took:?} after the kill"
        );
        stop.store(true, Ordering::Relaxed);
        client.await?;
        assert!(ok.load(Ordering::Relaxed) > 0);
        // At most the one connection A had accepted when it was killed can fail: new
        // connects to A are refused and retried on B.
        assert!(
            failed.load(Ordering::Relaxed) <= 1,
            "{} client connections failed",
            failed.load(Ordering::Relaxed)
        );
        // The clients' failed connects may eject A (passive) before the checks mark it
        // down; the checks confirm within two intervals.
        let (h, took) = lb
            .wait_health(&ida, Duration::from_secs(5), "two failed checks", |h| {
                h.consecutive_failures >= 2
            })
            .await?;
        assert!(
            took <= Duration::from_millis(2_500),
            "checks took {took:?} more"
        );
        assert!(!h.healthy, "{h:?}");
        assert!(
            h.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("refused"),
            "{h:?}"
        );

        // Now no connection is even attempted to A.
        let label = format!("backend=\"{ida}\"");
        let before = sample(
            &lb.metrics().await?,
            "fiberlb_backend_connect_failures_total",
            &label,
        );
        for _ in 0..20 {
            assert_eq!(tag_via(front).await?, b'B');
        }
        let after = sample(
            &lb.metrics().await?,
            "fiberlb_backend_connect_failures_total",
            &label,
        );
        assert_eq!(
            before, after,
            "connects were attempted to the unhealthy backend"
        );
        let status = lb.status(&pool).await?;
        assert_eq!((status.healthy_backends, status.unhealthy_backends), (1, 1));

        // Revived on the same address: healthy again after two passing checks.
        let a2 = TagServer::start(b'A', a.addr).await?;
        let (h, _) = lb
            .wait_health(&ida, Duration::from_secs(10), "A healthy again", |h| {
                h.healthy
            })
            .await?;
        assert!(
            h.consecutive_successes >= 2,
            "healthy after fewer than healthy_threshold checks: {h:?}"
        );
        assert!(h.last_healthy.is_some() && h.last_check > 0, "{h:?}");
        let start = Instant::now();
        while a2.accepted.load(Ordering::Relaxed) == 0 || tag_via(front).await? != b'A' {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(5),
                "no connection reached the revived backend"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_http_check_fails_on_500_and_passes_on_200_with_details_in_the_api() -> anyhow::Result<()>
{
    bounded(async {
        let status = Arc::new(AtomicU16::new(500));
        let (addr, _srv) = http_server(status.clone(), None).await?;
        let mut lb = start(None).await?;
        let hc = check(CheckType::Http(http_check("/healthz", None)));
        let pool = lb.pool("http", Some(hc), None).await?;
        let id = lb.add(&pool, "web", addr).await?;

        let (h, _) = lb
            .wait_health(&id, Duration::from_secs(10), "two failed checks", |h| {
                h.consecutive_failures >= 2
            })
            .await?;
        assert!(
            !h.healthy && h.last_check > 0 && h.last_healthy.is_none(),
            "{h:?}"
        );
        assert!(
            h.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("unexpected status 500"),
            "{h:?}"
        );
        let list = lb
            .api
            .backend
            .list_backend_health(pb::ListBackendHealthRequest {
                pool_id: pool.clone(),
            })
            .await?;
        let entry = &list.into_inner().entries[0];
        assert_eq!(entry.backend_id, id);
        assert!(entry
            .health_status
            .as_ref()
            .is_some_and(|h| !h.healthy && h.consecutive_failures >= 2));

        status.store(200, Ordering::Relaxed);
        let (h, _) = lb
            .wait_health(&id, Duration::from_secs(10), "healthy on 200", |h| {
                h.healthy
            })
            .await?;
        assert!(
            h.consecutive_successes >= 2 && h.consecutive_failures == 0,
            "{h:?}"
        );
        assert!(h.last_healthy.is_some(), "{h:?}");
        assert!(
            h.last_error.is_some(),
            "the last failure stays visible for diagnosis"
        );
        assert_eq!(lb.status(&pool).await?.healthy_backends, 1);

        let m = lb.metrics().await?;
        for name in [
            "fiberlb_health_checks_total",
            "fiberlb_health_check_duration_seconds",
            "fiberlb_backend_health",
            "fiberlb_pools",
            "fiberlb_backends",
        ] {
            assert!(m.contains(name), "{name} missing from /metrics");
        }
        assert!(sample(&m, "fiberlb_health_checks_total", "result=\"failure\"") >= 2.0);
        // The gauges are refreshed every second.
        let start = Instant::now();
        let mut m = m;
        while sample(&m, "fiberlb_backend_health", "status=\"healthy\"") != 1.0 {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(5),
                "fiberlb_backend_health{{status=\"healthy\"}} never showed 1"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            m = lb.metrics().await?;
        }
        assert_eq!(plain(&m, "fiberlb_pools"), Some(1.0));
        assert_eq!(plain(&m, "fiberlb_backends"), Some(1.0));
        Ok(())
    })
    .await
}

fn tls_acceptor(name: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let c = fixtures::self_signed(&[name]);
    let certs =
        CertificateDer::pem_slice_iter(c.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[tokio::test]
async fn an_https_check_rejects_a_self_signed_certificate_only_with_verification_on(
) -> anyhow::Result<()> {
    bounded(async {
        let (addr, _srv) = http_server(
            Arc::new(AtomicU16::new(200)),
            Some(tls_acceptor("svc.test")?),
        )
        .await?;
        let mut lb = start(None).await?;
        let https = |verify_tls| {
            let h = http_check("/", Some("svc.test"));
            check(CheckType::Https(pb::HttpsCheck {
                path: h.path,
                method: h.method,
                expected_codes: h.expected_codes,
                host_header: h.host_header,
                headers: Default::default(),
                verify_tls,
            }))
        };
        let strict = lb.pool("strict", Some(https(true)), None).await?;
        let lax = lb.pool("lax", Some(https(false)), None).await?;
        let id_strict = lb.add(&strict, "s", addr).await?;
        let id_lax = lb.add(&lax, "l", addr).await?;
        lb.wait_health(
            &id_lax,
            Duration::from_secs(10),
            "verify off: healthy",
            |h| h.healthy,
        )
        .await?;
        let (h, _) = lb
            .wait_health(
                &id_strict,
                Duration::from_secs(10),
                "verify on: failing",
                |h| h.consecutive_failures >= 2,
            )
            .await?;
        assert!(!h.healthy, "{h:?}");
        let err = h.last_error.unwrap_or_default().to_lowercase();
        assert!(err.contains("tls") && err.contains("certificate"), "{err}");
        Ok(())
    })
    .await
}
