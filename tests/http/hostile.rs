use crate::common::*;

#[tokio::test]
async fn errors_are_502_503_504() -> anyhow::Result<()> {
    bounded(async {
        let mut lb = start().await?;
        // 503: no backend at all.
        let empty = lb.pool("empty", &[]).await?;
        let (_, addr) = lb.http_listener(Some(&empty)).await?;
        let r = get(addr, "x", "/", &[]).await?;
        assert_eq!(r.status, 503);
        assert!(r.text().starts_with("503"), "short body: {}", r.text());

        // 502: nothing listens on the backend port (the retry on another backend fails too).
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let refused = lb.pool("refused", &[dead]).await?;
        let (_, addr) = lb.http_listener(Some(&refused)).await?;
        assert_eq!(get(addr, "x", "/", &[]).await?.status, 502);

        // A GET is retried on another backend when the connect fails.
        let live = HttpBackend::start("live").await?;
        let mixed = lb.pool("mixed", &[dead, live.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&mixed)).await?;
        for _ in 0..6 {
            let r = get(addr, "x", "/", &[]).await?;
            assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "live"));
        }

        // 504: the backend does not answer within the listener's backend timeout.
        let slow = HttpBackend::start("slow").await?;
        let pool = lb.pool("slow", &[slow.addr]).await?;
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Http, 0);
        req.default_pool_id = Some(pool);
        req.timeout_backend = Some(300);
        let (_, addr) = lb.listener_with(req).await?;
        let started = Instant::now();
        assert_eq!(get(addr, "x", "/slow/5000", &[]).await?.status, 504);
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(get(addr, "x", "/slow/10", &[]).await?.status, 200);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn smuggling_requests_get_400_and_never_reach_a_backend() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("victim").await?;
        let mut lb = start().await?;
        let pool = lb.pool("victim", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let cases: &[(&str, &[u8])] = &[
            ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
            ("TE and CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG"),
            ("two CL", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"),
            ("CL list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 5\r\n\r\nabcde"),
            ("TE gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
            ("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            ("TE twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ("TE HTTP/1.0", b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
            ("chunk size 0x", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"),
            ("chunk bare LF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
            ("invalid header byte", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\x01: b\r\n\r\n"),
            ("invalid value byte", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n"),
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n"),
            ("space before colon", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc"),
            ("two Host", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
            ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        ];
        for (what, bytes) in cases {
            let text = raw(addr, bytes).await?;
            assert!(text.starts_with("HTTP/1.1 400"), "{what}: got {text:?}");
        }
        // Behind a good request on the same connection too.
        let mut pipelined = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        pipelined.extend_from_slice(cases[0].1);
        let text = raw(addr, &pipelined).await?;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains("HTTP/1.1 400"), "{text}");
        assert_eq!(b.hits(), 1, "only the good request reached the backend");
        // Each refusal is counted by its reason.
        let m = fiberlb_tests::http::get(lb.node.admin_addr(), "/metrics").await?;
        for reason in ["several Host headers", "both Content-Length and Transfer-Encoding"] {
            let n = fiberlb_tests::metrics::sum(
                &m.body,
                "fiberlb_http_rejected_requests_total",
                &format!("reason=\"{reason}\""),
            );
            assert!(n >= 1.0, "{reason}: {n}");
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn header_and_body_limits_and_slow_headers() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("limits").await?;
        let mut lb = start_with("[proxy]\nmax_header_size_bytes = 2048\nmax_body_size_bytes = 1024\nheader_read_timeout_ms = 700\n").await?;
        let pool = lb.pool("limits", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let big = "a".repeat(4096);
        let r = get(addr, "x", "/", &[("x-big", &big)]).await;
        match r {
            Ok(r) => assert_eq!(r.status, 431),
            Err(e) => panic!("expected 431, got {e}"),
        }
        let s = TcpStream::connect(addr).await?;
        let r = send_on(s, false, request("POST", "x", "/echo", &[], &"b".repeat(2000), false)).await?;
        assert_eq!(r.status, 413);
        // A chunked body of unknown length is cut at the limit too.
        let mut chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n0\r\n\r\n", 1500, "c".repeat(1500)).as_bytes());
        let text = raw(addr, &chunked).await?;
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        // A body within the limit passes.
        let s = TcpStream::connect(addr).await?;
        assert_eq!(send_on(s, false, request("POST", "x", "/echo", &[], "small", false)).await?.text(), "small");

        // Slowloris: half a head, then silence: closed after the header timeout.
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?;
        let started = Instant::now();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(n.is_ok(), "connection not closed");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!String::from_utf8_lossy(&buf).contains("200"), "no response to a partial head");
        Ok(())
    })
    .await
}

/// A backend's `max_connections` caps its in-flight requests exactly on one node: 12
/// concurrent slow requests against a limit of 2 never put a third on the backend at
/// once, and the requests that find it full are answered 503 (there is no queue to wait in).
#[tokio::test]
async fn max_connections_caps_in_flight_requests_exactly() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("app").await?;
        let mut lb = start().await?;
        let pool = lb.pool("app", &[]).await?;
        let req = pb::AddBackendRequest {
            max_connections: Some(2),
            ..backend(&pool, "app-0", ip("127.0.0.1"), u32::from(b.addr.port()))
        };
        lb.api.backend.add_backend(req).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        eventually("the backend serves", || async {
            Ok(get(addr, "a", "/", &[]).await?.status == 200)
        })
        .await?;

        let calls: Vec<_> = (0..12)
            .map(|_| tokio::spawn(async move { get(addr, "a", "/slow/400", &[]).await }))
            .collect();
        let mut statuses = Vec::new();
        for c in calls {
            statuses.push(c.await??.status.as_u16());
        }
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let full = statuses.iter().filter(|s| **s == 503).count();
        assert!(
            b.peak() <= 2,
            "the backend had {} requests at once",
            b.peak()
        );
        assert_eq!(ok + full, 12, "statuses: {statuses:?}");
        assert!(ok >= 2, "statuses: {statuses:?}");
        assert!(full >= 1, "statuses: {statuses:?}");
        Ok(())
    })
    .await
}
