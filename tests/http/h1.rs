//! HTTP/1 connection semantics through our HTTP/1 server, over raw sockets: HTTP/1.0
//! keep-alive, `expect: 100-continue`, pipelined requests with bodies, a body the proxy
//! answers without reading, chunked bodies with trailers.

use crate::common::*;

/// A node with an HTTP listener in front of one backend named `name`.
async fn proxied(name: &str) -> anyhow::Result<(HttpBackend, Lb, String, SocketAddr)> {
    let b = HttpBackend::start(name).await?;
    let mut lb = start().await?;
    let pool = lb.pool(name, &[b.addr]).await?;
    let (listener, addr) = lb.http_listener(Some(&pool)).await?;
    Ok((b, lb, listener, addr))
}

/// Whether the server closes `s` within a few seconds (reading and dropping what comes).
async fn closes(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn http_1_0_clients_get_keep_alive_only_when_they_ask() -> anyhow::Result<()> {
    bounded(async {
        let (b, _lb, _, addr) = proxied("old").await?;
        let mut s = TcpStream::connect(addr).await?;
        let mut rest = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
                .await?;
            let (head, body) = response(&mut s, &mut rest).await?;
            assert!(head.contains("\r\nconnection: keep-alive"), "{head}");
            assert_eq!(body, "old");
        }
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
        let (head, body) = response(&mut s, &mut rest).await?;
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert_eq!(body, "old");
        assert!(
            closes(&mut s).await,
            "an HTTP/1.0 request without keep-alive ends the connection"
        );
        assert_eq!(b.hits(), 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn expect_continue_gets_a_100_before_the_body_is_sent() -> anyhow::Result<()> {
    bounded(async {
        let (_b, _lb, _, addr) = proxied("echo").await?;
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await?;
        // Nothing of the body is sent before the 100 arrives.
        let mut got = vec![0u8; 25];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await??;
        assert_eq!(&got[..], b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"hello").await?;
        let mut rest = Vec::new();
        let (head, body) = response(&mut s, &mut rest).await?;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "hello");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_answered_in_order() -> anyhow::Result<()> {
    bounded(async {
        let (b, _lb, _, addr) = proxied("echo").await?;
        let mut s = TcpStream::connect(addr).await?;
        // A length body, a chunked body with trailers, a GET, all in one write.
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst\
              POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3;ext=1\r\nond\r\n0\r\nX-Sum: 6\r\n\r\n\
              GET /third HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await?;
        let mut rest = Vec::new();
        let bodies = [
            response(&mut s, &mut rest).await?.1,
            response(&mut s, &mut rest).await?.1,
            response(&mut s, &mut rest).await?.1,
        ];
        assert_eq!(bodies, ["first", "second", "echo"]);
        assert_eq!(b.hits(), 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_body_answered_without_being_read_does_not_become_a_request() -> anyhow::Result<()> {
    bounded(async {
        let (b, mut lb, l, addr) = proxied("app").await?;
        lb.rule(
            &l,
            "fixed",
            10,
            vec![Condition::PathExact(pb::PathExactCondition {
                value: "/fixed".into(),
            })],
            Action::FixedResponse(pb::FixedResponseAction {
                status_code: 200,
                content_type: "text/plain".into(),
                body: "fixed".into(),
            }),
        )
        .await?;
        eventually("the fixed rule applied", || async {
            Ok(get(addr, "x", "/fixed", &[]).await?.text() == "fixed")
        })
        .await?;
        let before = b.hits();
        // The body looks like a request: it must never be served as one.
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!(
                "POST /fixed HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await?;
        let mut rest = Vec::new();
        assert_eq!(response(&mut s, &mut rest).await?.1, "fixed");
        // The unread body was already here: it is skipped and the connection goes on.
        assert_eq!(response(&mut s, &mut rest).await?.1, "app");
        assert_eq!(b.hits() - before, 1);
        assert_eq!(b.last().map(|seen| seen.uri), Some("/".to_string()));

        // A body that has not arrived yet cannot be skipped: the connection closes.
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"POST /fixed HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
            .await?;
        let mut rest = Vec::new();
        let (head, body) = response(&mut s, &mut rest).await?;
        assert_eq!(body, "fixed");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        s.write_all(smuggled.as_bytes()).await.ok();
        assert!(closes(&mut s).await);
        assert_eq!(b.hits() - before, 1);
        Ok(())
    })
    .await
}
