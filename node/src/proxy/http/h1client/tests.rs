//! The client against scripted backends on loopback: reuse, framings, early answers,
//! stale pooled connections, and backends that break the protocol.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Client, SendError};
use crate::proxy::http::body::{self, ProxyBody};
use crate::proxy::http::client::Connector;

/// Reads one request head (and a body of `content-length` bytes) from `s`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A backend answering every request on every connection with `answer(n)` (n counts
/// requests per connection); reports each connection's request heads on the channel.
async fn backend(
    answer: fn(usize, &str) -> Vec<u8>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(usize, String, Vec<u8>)>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn_no = 0;
        while let Ok((mut s, _)) = l.accept().await {
            conn_no += 1;
            let tx = tx.clone();
            let id = conn_no;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                while let Some((head, body)) = read_request(&mut s, &mut buf).await {
                    n += 1;
                    let _ = tx.send((id, head.clone(), body));
                    let out = answer(n, &head);
                    if out.is_empty() {
                        return;
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    if head.contains("x-then-close") {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn get(path: &str) -> Request<ProxyBody> {
    let mut r = Request::new(body::empty());
    *r.uri_mut() = path.parse().unwrap();
    r.headers_mut()
        .insert("host", http::HeaderValue::from_static("app.test"));
    r
}

async fn read_all(resp: http::Response<super::BackendBody>) -> (Vec<u8>, Option<http::HeaderMap>) {
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(Connector::plain(addr), Duration::from_secs(30))
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let (addr, mut rx) =
        backend(|_, _| b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
    let c = client(addr);
    for _ in 0..5 {
        let resp = c.send(get("/a?b=1")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(read_all(resp).await.0, b"hello");
        assert_eq!(c.idle(), 1, "the connection is back in the pool");
    }
    let conns: Vec<usize> = (0..5).map(|_| rx.try_recv().unwrap().0).collect();
    assert_eq!(conns, vec![1; 5]);
}

#[tokio::test]
async fn the_head_is_what_the_backend_reads() {
    let (addr, mut rx) = backend(|_, _| b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()).await;
    let c = client(addr);
    let mut req = Request::new(body::full(Bytes::from_static(b"payload")));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = "/submit?x=%20".parse().unwrap();
    req.headers_mut()
        .insert("x-custom", http::HeaderValue::from_static("v"));
    let resp = c.send(req).await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(read_all(resp).await.0, b"");
    let (_, head, body) = rx.recv().await.unwrap();
    assert_eq!(
        head,
        "POST /submit?x=%20 HTTP/1.1\r\nx-custom: v\r\ncontent-length: 7\r\n\r\n"
    );
    assert_eq!(body, b"payload");
    assert_eq!(c.idle(), 1);
}

#[tokio::test]
async fn chunked_responses_with_trailers_and_interim_answers() {
    let (addr, _rx) = backend(|_, _| {
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n".to_vec()
    })
    .await;
    let c = client(addr);
    for _ in 0..2 {
        let resp = c.send(get("/")).await.unwrap();
        let (body, trailers) = read_all(resp).await;
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        assert_eq!(c.idle(), 1);
    }
}

#[tokio::test]
async fn close_delimited_bodies_end_at_close_and_are_not_reused() {
    let (addr, mut rx) = backend(|_, _| b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()).await;
    let c = client(addr);
    let mut req = get("/");
    req.headers_mut()
        .insert("x-then-close", http::HeaderValue::from_static("1"));
    let resp = c.send(req).await.unwrap();
    assert_eq!(read_all(resp).await.0, b"until the end");
    assert_eq!(c.idle(), 0);
    let mut req = get("/");
    req.headers_mut()
        .insert("x-then-close", http::HeaderValue::from_static("1"));
    let _ = read_all(c.send(req).await.unwrap()).await;
    assert_eq!(rx.recv().await.unwrap().0, 1);
    assert_eq!(rx.recv().await.unwrap().0, 2, "a new connection each time");
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_is_replaced() {
    // The backend answers, then closes each connection right away (HTTP/1.1 without
    // Connection: close, as a backend whose keep-alive timeout fired would).
    let (addr, mut rx) =
        backend(|_, _| b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
    let c = client(addr);
    for i in 0..3 {
        let mut req = get("/");
        req.headers_mut()
            .insert("x-then-close", http::HeaderValue::from_static("1"));
        let resp = c.send(req).await.unwrap();
        assert_eq!(read_all(resp).await.0, b"ok", "request {i}");
        // Give the FIN time to arrive, so that the pool may (or may not) notice.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conns = Vec::new();
    while let Ok((id, _, _)) = rx.try_recv() {
        conns.push(id);
    }
    assert_eq!(conns, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_stale_connection_found_on_send_is_retried_once() {
    // The backend reads the second request of each connection and closes without an
    // answer (its keep-alive timeout fired as the request arrived): the client goes
    // again on a new connection, as the request was safe to resend.
    let (addr, mut rx) = backend(|n, _| {
        if n == 1 {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
        } else {
            Vec::new()
        }
    })
    .await;
    let c = client(addr);
    for _ in 0..2 {
        let resp = c.send(get("/")).await.unwrap();
        assert_eq!(read_all(resp).await.0, b"ok");
    }
    let conns: Vec<usize> = (0..3).map(|_| rx.try_recv().unwrap().0).collect();
    assert_eq!(conns, vec![1, 1, 2], "the second request was sent twice");
    // With a body already taken from the client, it is not resent.
    let mut req = Request::new(body::full(Bytes::from_static(b"x")));
    *req.method_mut() = Method::POST;
    let err = c.send(req).await.unwrap_err();
    assert!(matches!(err, SendError::Closed), "{err}");
}

#[tokio::test]
async fn early_answers_stop_the_upload_and_close_the_connection() {
    // 413 as soon as the head is read, without reading the body.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let c = client(addr);
    // A streamed body that never ends on its own.
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, super::BoxError>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut req = Request::new(StreamBody::new(stream).boxed_unsync());
    *req.method_mut() = Method::POST;
    let resp = tokio::time::timeout(Duration::from_secs(5), c.send(req))
        .await
        .expect("the early answer is returned while the body is still open")
        .unwrap();
    assert_eq!(resp.status(), 413);
    let _ = read_all(resp).await;
    assert_eq!(
        c.idle(),
        0,
        "a half-sent request leaves the connection unusable"
    );
    drop(tx);
}

#[tokio::test]
async fn broken_backends_are_errors_not_hangs() {
    let (addr, _rx) = backend(|_, _| b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await;
    let err = client(addr).send(get("/")).await.unwrap_err();
    assert!(matches!(err, SendError::Protocol(_)), "{err}");

    let (addr, _rx) = backend(|_, _| Vec::new()).await; // closes without answering
    let err = client(addr).send(get("/")).await.unwrap_err();
    assert!(matches!(err, SendError::Closed), "{err}");

    // A body cut short by the backend fails the body, not silently.
    let (addr, _rx) = backend(|_, h| {
        assert!(h.starts_with("GET"));
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-then-close: 1\r\n\r\nshort".to_vec()
    })
    .await;
    let c = client(addr);
    let mut req = get("/");
    req.headers_mut()
        .insert("x-then-close", http::HeaderValue::from_static("1"));
    let resp = c.send(req).await.unwrap();
    assert!(resp.into_body().collect().await.is_err());

    // Nothing listens: a connect error.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let err = client(addr).send(get("/")).await.unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn a_backend_may_stream_its_answer_while_the_body_still_uploads() {
    // An echo backend that answers with its head at once, then returns each piece of the
    // (chunked) request body as it arrives: the client sends the next piece only after
    // seeing the previous one come back, so the upload must go on after the head.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // Echo the raw chunked body back as it is (it is already chunk-framed).
        let start = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if start < seen.len() {
            s.write_all(&seen[start..]).await.unwrap();
        }
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
            if buf[..n].ends_with(b"0\r\n\r\n") {
                return;
            }
        }
    });
    let c = client(addr);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, super::BoxError>>(1);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut req = Request::new(StreamBody::new(stream).boxed_unsync());
    *req.method_mut() = Method::POST;
    tx.send(Ok(Frame::data(Bytes::from_static(b"ping-0"))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), c.send(req))
        .await
        .expect("head")
        .unwrap();
    let mut body = resp.into_body();
    let mut tx = Some(tx);
    for i in 0..5 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("each piece comes back while the upload is still open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("ping-{i}").as_bytes());
        let Some(t) = tx.as_ref() else { break };
        if i < 4 {
            t.send(Ok(Frame::data(Bytes::from(format!("ping-{}", i + 1)))))
                .await
                .unwrap();
        } else {
            tx = None; // ends the body: the last chunk goes out
        }
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}
