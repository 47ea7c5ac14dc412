use crate::common::*;

#[tokio::test]
async fn cookie_persistence_pins_then_moves_when_disabled() -> anyhow::Result<()> {
    bounded(async {
        let one = HttpBackend::start("one").await?;
        let two = HttpBackend::start("two").await?;
        let mut lb = start().await?;
        let mut req = fixtures::pool("", "sticky");
        req.session_persistence = Some(pb::SessionPersistence {
            mode: pb::PersistenceMode::Cookie as i32,
            cookie_name: Some("lb".into()),
            ttl_seconds: 0,
        });
        let (pool, ids) = lb
            .pool_with(req, &[(one.addr, &[]), (two.addr, &[])])
            .await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;

        let first = get(addr, "x", "/", &[]).await?;
        let set = first.header("set-cookie").to_string();
        assert!(set.starts_with("lb=") && set.contains("HttpOnly"), "{set}");
        let cookie = set.split(';').next().unwrap().to_string();
        let pinned = first.text();
        for _ in 0..50 {
            let r = get(addr, "x", "/", &[("cookie", &cookie)]).await?;
            assert_eq!(r.text(), pinned, "cookie did not pin the client");
            assert!(
                r.header("set-cookie").is_empty(),
                "a pinned client gets no new cookie"
            );
        }
        // Disable the pinned backend: the client moves and gets a new cookie.
        let pinned_id = if pinned == "one" { &ids[0] } else { &ids[1] };
        let upd = pb::UpdateBackendRequest {
            backend_id: pinned_id.clone(),
            enabled: Some(false),
            ..Default::default()
        };
        lb.api.backend.update_backend(upd).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let moved = loop {
            let r = get(addr, "x", "/", &[("cookie", &cookie)]).await?;
            if r.text() != pinned {
                break (r.text(), r.header("set-cookie").to_string());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the client never moved off the disabled backend"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (other, set) = moved;
        assert!(
            set.starts_with("lb="),
            "a new cookie pins the client to its new backend"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        for _ in 0..10 {
            assert_eq!(
                get(addr, "x", "/", &[("cookie", &cookie)]).await?.text(),
                other
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn one_gib_response_streams_with_flat_memory() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("bulk").await?;
        let mut lb = start().await?;
        let pool = lb.pool("bulk", &[b.addr]).await?;
        let (lid, addr) = lb.http_listener(Some(&pool)).await?;
        // Warm up (allocator, pools), then measure.
        assert_eq!(
            get(addr, "x", "/big/1048576", &[]).await?.body.len(),
            1 << 20
        );
        let before = rss_kib(lb.node.pid())?;
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /big/1073741824 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut peak = before;
        let mut reads = 0u64;
        let mut checked_live = false;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await??;
            if n == 0 {
                break;
            }
            total += n as u64;
            reads += 1;
            if reads.is_multiple_of(256) {
                peak = peak.max(rss_kib(lb.node.pid())?);
            }
            if total >= 64 << 20 && !checked_live {
                // Halfway through a download its bytes already count (the warm-up's
                // 1 MiB aside): the reader pauses here, the response is far from done.
                checked_live = true;
                let m = fiberlb_tests::http::get(lb.node.admin_addr(), "/metrics").await?;
                let out = fiberlb_tests::metrics::sum(
                    &m.body,
                    "fiberlb_bytes_out_total",
                    &fiberlb_tests::metrics::listener_label(&lid),
                );
                assert!(
                    out >= f64::from(32u32 << 20),
                    "a download's bytes count only at its end: {out} after {total} read"
                );
            }
        }
        let head = 1024; // the response head is part of `total`
        assert!(
            total > 1 << 30 && total < (1 << 30) + head,
            "got {total} bytes"
        );
        let after = rss_kib(lb.node.pid())?;
        peak = peak.max(after);
        assert!(
            peak.saturating_sub(before) < 64 * 1024,
            "proxy RSS grew from {before} KiB to {peak} KiB"
        );
        Ok(())
    })
    .await
}

/// A node with an HTTP listener in front of one backend, for the drain tests: the
/// backend, the node, the backend's id and the listener's address.
async fn to_be_drained() -> anyhow::Result<(HttpBackend, Lb, String, SocketAddr)> {
    let b = HttpBackend::start("drained").await?;
    let mut lb = start().await?;
    let (pool, ids) = lb
        .pool_with(fixtures::pool("", "drained"), &[(b.addr, &[])])
        .await?;
    let (_, addr) = lb.http_listener(Some(&pool)).await?;
    let id = ids
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no backend id"))?;
    Ok((b, lb, id, addr))
}

/// Starts draining `backend_id` with a 1 s deadline.
async fn drain_within_1s(lb: &mut Lb, backend_id: String) -> anyhow::Result<()> {
    lb.api
        .backend
        .drain_backend(pb::DrainBackendRequest {
            backend_id,
            timeout_seconds: Some(1),
            revision: None,
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_download_still_streaming_at_the_drain_deadline_is_cut_there() -> anyhow::Result<()> {
    bounded(async {
        let (_b, mut lb, backend_id, addr) = to_be_drained().await?;
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /big/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        // A slow reader: the backend is fast, so every time the proxy asks the body for
        // more it has some (the body is never waiting when the deadline passes).
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0usize;
        while total < 1 << 20 {
            total += tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
        }
        drain_within_1s(&mut lb, backend_id).await?;
        let started = Instant::now();
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
            if n == 0 {
                break;
            }
            total += n;
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(8),
                "the download went on long past the drain deadline ({total} bytes)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(total < 1 << 30, "the whole body arrived: {total} bytes");
        Ok(())
    })
    .await
}

/// A request still waiting for its response head when its backend's drain deadline passes
/// gets a 502 then, not when the backend finally answers.
#[tokio::test]
async fn a_request_waiting_for_its_head_at_the_drain_deadline_is_cut_there() -> anyhow::Result<()> {
    bounded(async {
        let (b, mut lb, backend_id, addr) = to_be_drained().await?;
        let slow = tokio::spawn(async move {
            let started = Instant::now();
            let r = get(addr, "x", "/slow/20000", &[]).await;
            (r.map(|r| r.status.as_u16()), started.elapsed())
        });
        // The request is at the backend before the drain starts.
        eventually("the request reached the backend", || async {
            Ok(b.hits() == 1)
        })
        .await?;
        drain_within_1s(&mut lb, backend_id).await?;
        let (status, took) = slow.await?;
        assert_eq!(status?, 502);
        assert!(
            took < Duration::from_secs(5),
            "cut {took:?} after the request started (deadline 1 s after the drain)"
        );
        Ok(())
    })
    .await
}
