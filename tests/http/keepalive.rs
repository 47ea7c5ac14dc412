//! Idle keep-alive connections: the node lets go of the connection's HTTP/1 server state
//! (its buffers) after a short idle spell and waits on the bare socket; the next request on
//! the same connection must be served as usual, over plain HTTP and over TLS, and the idle
//! timeout must still close it.

use crate::common::*;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends one `GET` on `s` and reads one response (head + `content-length` body).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    path: &str,
) -> anyhow::Result<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let (head, body) = response(s, &mut Vec::new()).await?;
    anyhow::ensure!(head.starts_with("http/1.1 200"), "status line: {head}");
    Ok(body)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_serves_again_and_still_times_out() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("app").await?;
        let mut lb = start_with("[proxy]\nhttp_idle_timeout_seconds = 2\n").await?;
        let pool = lb.pool("app", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;

        let mut s = TcpStream::connect(addr).await?;
        assert_eq!(exchange(&mut s, "/1").await?, "app");
        // Idle past the park delay (100 ms), several times over: same connection each time.
        for i in 2..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(
                exchange(&mut s, &format!("/{i}")).await?,
                "app",
                "request {i}"
            );
        }
        // Two requests in one write (pipelined) after a park.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
            .await?;
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        let answers = |b: &[u8]| b.windows(12).filter(|w| *w == b"HTTP/1.1 200").count();
        while answers(&all) < 2 || !all.ends_with(b"\r\n\r\napp") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "closed during pipelined answers");
            all.extend_from_slice(&chunk[..n]);
        }
        // Still parked-idle: the idle timeout (2 s) closes it.
        let started = Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut chunk)).await??;
        assert_eq!(n, 0, "the server closes an idle connection");
        let took = started.elapsed();
        println!("idle keep-alive connection closed {took:?} after its last answer");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
            "closed after {took:?}, idle timeout 2 s"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_idle_https_keep_alive_connection_serves_again() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("secure").await?;
        let mut lb = start().await?;
        let pool = lb.pool("secure", &[b.addr]).await?;
        let c = fixtures::self_signed(&["app.example.com"]);
        let id = lb.cert("app", &c.cert_pem, &c.key_pem).await?;
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Https, 0);
        req.default_pool_id = Some(pool.clone());
        req.tls_config = Some(pb::TlsConfig {
            certificate_id: id,
            ..Default::default()
        });
        let (_, addr) = lb.listener_with(req).await?;
        let cfg = tls_client(&[&c.cert_pem], &[b"http/1.1"], None)?;
        let mut s = tls_connect(addr, "app.example.com", cfg).await?;
        for i in 0..4 {
            assert_eq!(
                exchange(&mut s, &format!("/{i}")).await?,
                "secure",
                "request {i}"
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok(())
    })
    .await
}

/// The listener's `connection_limit` counts open client connections, idle keep-alive ones
/// included (after their park, an HTTP/1 connection lives on in a task of its own, which
/// must keep holding its place).
#[tokio::test]
async fn the_connection_limit_counts_idle_keep_alive_connections() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("app").await?;
        let mut lb = start().await?;
        let pool = lb.pool("app", &[b.addr]).await?;
        let mut req = fixtures::listener("", "", pb::ListenerProtocol::Http, 0);
        req.default_pool_id = Some(pool);
        req.connection_limit = Some(2);
        let (_, addr) = lb.listener_with(req).await?;
        // The readiness probe's connection has gone.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut first = TcpStream::connect(addr).await?;
        assert_eq!(exchange(&mut first, "/1").await?, "app");
        let mut second = TcpStream::connect(addr).await?;
        assert_eq!(exchange(&mut second, "/2").await?, "app");
        // Both idle past the park delay (100 ms).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut third = TcpStream::connect(addr).await?;
        assert!(
            exchange(&mut third, "/3").await.is_err(),
            "a third connection is refused while two idle ones are open"
        );
        // One leaves: there is room again, and the parked one still serves.
        drop(first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut fourth = TcpStream::connect(addr).await?;
        assert_eq!(exchange(&mut fourth, "/4").await?, "app");
        assert_eq!(exchange(&mut second, "/5").await?, "app");
        Ok(())
    })
    .await
}

/// A backend that speaks HTTP/1.0 (one response per connection, then close) does not make
/// the proxy answer its HTTP/1.1 client in HTTP/1.0: an intermediary sends its own
/// version (RFC 9110, section 6.2), and the client's connection stays alive.
#[tokio::test]
async fn an_http_1_0_backend_does_not_end_the_clients_keep_alive() -> anyhow::Result<()> {
    bounded(async {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let backend_addr = backend.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold")
                        .await;
                });
            }
        });
        let mut lb = start().await?;
        let pool = lb.pool("old", &[backend_addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let mut s = TcpStream::connect(addr).await?;
        for i in 0..3 {
            assert_eq!(
                exchange(&mut s, &format!("/{i}")).await?,
                "old",
                "request {i}"
            );
        }
        server.abort();
        Ok(())
    })
    .await
}
