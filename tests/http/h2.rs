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

/// A client that writes HTTP/2 frames by hand, for what hyper's client will not send.
struct RawH2 {
    s: TcpStream,
    buf: Vec<u8>,
    hpack: loona_hpack::Decoder<'static>,
}

/// A frame as read: (type, flags, stream, payload).
type RawFrame = (u8, u8, u32, Vec<u8>);

impl RawH2 {
    async fn connect(addr: SocketAddr) -> anyhow::Result<RawH2> {
        let mut s = TcpStream::connect(addr).await?;
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&frame(0x4, 0, 0, &[]));
        s.write_all(&hello).await?;
        Ok(RawH2 {
            s,
            buf: Vec::new(),
            hpack: loona_hpack::Decoder::new(),
        })
    }

    async fn read(&mut self) -> anyhow::Result<RawFrame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Ok((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16384];
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next HEADERS or RST_STREAM on `stream` (other frames are skipped, header
    /// blocks of other streams still decoded): `Ok(status)` or `Err(reset code)`.
    async fn answer(&mut self, stream: u32) -> anyhow::Result<Result<u16, u32>> {
        loop {
            let (kind, _, id, payload) = self.read().await?;
            if kind == 0x1 {
                let fields = self
                    .hpack
                    .decode(&payload)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                if id == stream {
                    let status = fields
                        .iter()
                        .find(|(n, _)| n == b":status")
                        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
                        .ok_or_else(|| anyhow::anyhow!("no :status"))?;
                    return Ok(Ok(status));
                }
            }
            if kind == 0x3 && id == stream {
                return Ok(Err(u32::from_be_bytes(payload[..4].try_into()?)));
            }
        }
    }

    /// The body of `stream` up to END_STREAM.
    async fn body(&mut self, stream: u32) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (kind, flags, id, payload) = self.read().await?;
            if kind == 0x0 && id == stream {
                body.extend_from_slice(&payload);
                if flags & 0x1 != 0 {
                    return Ok(body);
                }
            }
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields (new names, no Huffman, lengths < 127).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0x00);
        b.push(n.len() as u8);
        b.extend_from_slice(n.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_wanted() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("h2expect").await?;
        let mut lb = start().await?;
        let pool = lb.pool("h2expect", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let mut c = RawH2::connect(addr).await?;
        let head = block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", "/echo"),
            ("content-length", "5"),
            ("expect", "100-continue"),
        ]);
        c.s.write_all(&frame(0x1, 0x4, 1, &head)).await?;
        // No body byte was sent: the 100 is what lets the client go on.
        assert_eq!(c.answer(1).await?, Ok(100));
        c.s.write_all(&frame(0x0, 0x1, 1, b"hello")).await?;
        assert_eq!(c.answer(1).await?, Ok(200));
        assert_eq!(c.body(1).await?, b"hello");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn malformed_h2_requests_are_reset_and_never_reach_the_backend() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("h2strict").await?;
        let mut lb = start().await?;
        let pool = lb.pool("h2strict", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let mut c = RawH2::connect(addr).await?;
        let base = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", "/"),
        ];
        let bad: [(&str, &str); 4] = [
            ("X-Upper", "1"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("te", "gzip"),
        ];
        for (i, extra) in bad.iter().enumerate() {
            let mut fields = base.to_vec();
            fields.push(*extra);
            let id = 1 + 2 * i as u32;
            c.s.write_all(&frame(0x1, 0x5, id, &block(&fields))).await?;
            assert_eq!(
                c.answer(id).await?,
                Err(1),
                "{extra:?} not reset with PROTOCOL_ERROR"
            );
        }
        // A body longer than its content-length: reset before the handler runs (the
        // DATA arrives with the HEADERS).
        let mut fields = base.to_vec();
        fields.push(("content-length", "3"));
        let mut both = frame(0x1, 0x4, 9, &block(&fields));
        both.extend_from_slice(&frame(0x0, 0x1, 9, b"smuggled"));
        c.s.write_all(&both).await?;
        assert_eq!(c.answer(9).await?, Err(1));
        // The connection goes on, and only this request reaches the backend.
        c.s.write_all(&frame(0x1, 0x5, 11, &block(&base))).await?;
        assert_eq!(c.answer(11).await?, Ok(200));
        assert_eq!(b.hits(), 1, "a malformed request reached the backend");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_response_of_many_tiny_chunks_read_at_once_arrives_whole() -> anyhow::Result<()> {
    bounded(async {
        // A backend whose chunked response is 20,000 one-byte chunks in one write: the
        // proxy has them all at once, as many body frames ready in a row.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let backend = l.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let mut resp =
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                            .to_vec();
                    for i in 0..20_000u32 {
                        resp.extend_from_slice(format!("1\r\n{}\r\n", i % 10).as_bytes());
                    }
                    resp.extend_from_slice(b"0\r\n\r\n");
                    let _ = s.write_all(&resp).await;
                });
            }
        });
        let mut lb = start().await?;
        let pool = lb.pool("tiny", &[backend]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let (status, body) = send(small_window_client(addr).await?, "GET", "/", Bytes::new()).await?;
        server.abort();
        assert_eq!(status, 200);
        let want: Vec<u8> = (0..20_000u32).map(|i| b'0' + (i % 10) as u8).collect();
        assert_eq!(body.len(), want.len());
        assert!(body[..] == want[..], "chunks lost or reordered");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stream_the_client_resets_mid_download_ends_there_and_the_connection_goes_on(
) -> anyhow::Result<()> {
    bounded(async {
        let logs = tempfile::tempdir()?;
        let path = logs.path().join("access.log");
        let b = HttpBackend::start("h2reset").await?;
        let mut lb =
            start_with(&format!("[logging]\naccess_log = \"{}\"\n", path.display())).await?;
        let pool = lb.pool("h2reset", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let mut tx = small_window_client(addr).await?;
        let req = http::Request::builder()
            .uri("http://h2.example.com/big/1073741824")
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))?;
        let mut body = tx.send_request(req).await?.into_body();
        let mut got = 0usize;
        while got < 1 << 20 {
            match body.frame().await {
                Some(f) => got += f?.data_ref().map_or(0, |d| d.len()),
                None => anyhow::bail!("the download ended early"),
            }
        }
        // Dropping the body resets the stream (RST_STREAM CANCEL): the proxy lets go of
        // the backend's response there, and says so in the request's log line.
        drop(body);
        let read = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        };
        eventually("the reset request's log line", || {
            let lines = read();
            async move { Ok(lines.iter().any(|l| l["path"] == "/big/1073741824")) }
        })
        .await?;
        let line = read()
            .into_iter()
            .find(|l| l["path"] == "/big/1073741824")
            .expect("line");
        let out = line["bytes_out"].as_u64().unwrap_or(u64::MAX);
        assert!(out < 64 << 20, "{out} bytes sent after the client left");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or("")
                .contains("client went away"),
            "{line}"
        );
        // The connection itself goes on.
        let (status, small) = send(tx, "GET", "/", Bytes::new()).await?;
        assert_eq!((status, &small[..]), (200, &b"h2reset"[..]));
        Ok(())
    })
    .await
}
