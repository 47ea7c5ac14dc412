//! Our HTTP/2 server with bodies in both directions: flow control has to hand windows
//! back as data moves, or these transfers stall.

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// An h2c connection whose windows are the protocol's smallest default (64 KiB), so a
/// response larger than that moves only as WINDOW_UPDATEs come back.
async fn small_window_client(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let io = TokioIo::new(TcpStream::connect(addr).await?);
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .adaptive_window(false)
        .handshake(io)
        .await?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn send(
    mut tx: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://h2.example.com{path}"))
        .version(http::Version::HTTP_2)
        .body(Full::new(body))?;
    let resp = tx.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

#[tokio::test]
async fn uploads_and_downloads_stream_concurrently_on_one_connection() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("h2bodies").await?;
        let mut lb = start().await?;
        let pool = lb.pool("h2bodies", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let tx = small_window_client(addr).await?;
        // 3 MiB up (three times the proxy's connection window), patterned so a lost or
        // reordered chunk shows; 8 MiB down; small requests beside them.
        let upload: Bytes = (0..3u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let (echo, big, small) = tokio::join!(
            send(tx.clone(), "POST", "/echo", upload.clone()),
            send(tx.clone(), "GET", "/big/8388608", Bytes::new()),
            futures::future::try_join_all((0..20).map(|_| send(
                tx.clone(),
                "GET",
                "/",
                Bytes::new()
            ))),
        );
        let (status, echoed) = echo?;
        assert_eq!(status, 200);
        assert_eq!(echoed.len(), upload.len());
        assert!(echoed == upload, "the echoed body differs");
        let (status, big) = big?;
        assert_eq!((status, big.len()), (200, 8 << 20));
        assert!(big.iter().all(|b| *b == 0));
        for (status, body) in small? {
            assert_eq!((status, &body[..]), (200, &b"h2bodies"[..]));
        }
        Ok(())
    })
    .await
}

fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

#[tokio::test]
async fn a_slow_h2_reader_holds_the_backend_back_instead_of_filling_memory() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("h2slow").await?;
        let mut lb = start().await?;
        let pool = lb.pool("h2slow", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        // Warm up, then ask for 128 MiB and read none of it for a while.
        let (status, _) = send(
            small_window_client(addr).await?,
            "GET",
            "/big/1048576",
            Bytes::new(),
        )
        .await?;
        assert_eq!(status, 200);
        let before = rss_kib(lb.node.pid())?;
        let mut tx = small_window_client(addr).await?;
        let req = http::Request::builder()
            .uri("http://h2.example.com/big/134217728")
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))?;
        let resp = tx.send_request(req).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stalled = rss_kib(lb.node.pid())?;
        assert!(
            stalled.saturating_sub(before) < 32 * 1024,
            "proxy RSS grew from {before} KiB to {stalled} KiB while the client read nothing"
        );
        // Then all of it arrives.
        let mut body = resp.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                total += d.len();
            }
        }
        assert_eq!(total, 128 << 20);
        let after = rss_kib(lb.node.pid())?;
        assert!(
            after.saturating_sub(before) < 64 * 1024,
            "proxy RSS grew from {before} KiB to {after} KiB"
        );
        Ok(())
    })
    .await
}
