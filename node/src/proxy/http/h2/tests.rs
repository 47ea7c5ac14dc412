//! The HTTP/2 server against a client written frame by frame, over an in-memory pipe.
//! The test context has no listener, so every request the server hands on is answered
//! 503 by the request handler: what these tests look at is the protocol around it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::frame::{self, flag, kind, Frame, Head, Reason};
use super::server::{ServeError, MAX_STREAMS};
use crate::proxy::http::io::ConnShared;
use crate::proxy::http::service::ConnCtx;

const WAIT: Duration = Duration::from_secs(5);

struct Client {
    io: DuplexStream,
    buf: BytesMut,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

fn ctx(max_header: usize) -> Arc<ConnCtx> {
    let settings = crate::settings::ProxySettings {
        max_header_size_bytes: max_header,
        ..Default::default()
    };
    let ctx = crate::proxy::ProxyContext::for_tests(&settings);
    Arc::new(ConnCtx {
        live: ctx.live(),
        ctx: Arc::new(ctx),
        listener_id: Arc::from("l"),
        peer: "127.0.0.1:40000".parse().expect("addr"),
        https: false,
        subject: None,
        shared: ConnShared::new(),
    })
}

impl Client {
    /// A server on one end of a pipe; the client preface and an empty SETTINGS sent.
    async fn start() -> Client {
        Client::with_limit(16 << 10).await
    }

    async fn with_limit(max_header: usize) -> Client {
        let (mut io, server_io) = tokio::io::duplex(1 << 20);
        let conn = ctx(max_header);
        let stop = CancellationToken::new();
        let (s, shutdown) = (stop.clone(), CancellationToken::new());
        let task = tokio::spawn(async move { super::serve(server_io, conn, &s, &shutdown).await });
        let mut hello = BytesMut::from(frame::PREFACE);
        frame::settings(&mut hello, &[]);
        io.write_all(&hello).await.expect("preface");
        Client {
            io,
            buf: BytesMut::new(),
            stop,
            task,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// The next frame; None at the end of the connection.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = frame::parse(&mut self.buf, 1 << 24).expect("server frames parse") {
                return Some(f);
            }
            let n = tokio::time::timeout(WAIT, self.io.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    /// Frames until `want` matches one (which is returned), skipping the rest.
    async fn until(&mut self, want: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            match self.frame().await {
                Some(f) if want(&f) => return f,
                Some(_) => {}
                None => panic!("connection closed before the awaited frame"),
            }
        }
    }

    /// Reads to the end of the connection, returning the GOAWAY seen, if any.
    async fn go_away(&mut self) -> Option<(u32, Reason)> {
        let mut seen = None;
        while let Some(f) = self.frame().await {
            if let Frame::GoAway { last, reason } = f {
                seen = Some((last, reason));
            }
        }
        seen
    }
}

/// An HPACK literal field without indexing, new name, no Huffman (all lengths < 127).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", method);
    literal(&mut b, ":scheme", "http");
    literal(&mut b, ":authority", "example.com");
    literal(&mut b, ":path", path);
    for (n, v) in extra {
        literal(&mut b, n, v);
    }
    b
}

fn raw(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    Head {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    }
    .write(out);
    out.put_slice(payload);
}

fn get(out: &mut BytesMut, stream: u32) {
    raw(
        out,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        stream,
        &block("GET", "/", &[]),
    );
}

fn status(f: &Frame) -> Option<(u32, String)> {
    let Frame::Headers { stream, block, .. } = f else {
        return None;
    };
    let fields = loona_hpack::Decoder::new()
        .decode(block)
        .expect("our block decodes");
    let (_, v) = fields.iter().find(|(n, _)| n == b":status")?;
    Some((*stream, String::from_utf8_lossy(v).into_owned()))
}

fn is_reset(stream: u32) -> impl Fn(&Frame) -> bool {
    move |f| matches!(f, Frame::Reset { stream: s, .. } if *s == stream)
}

#[tokio::test]
async fn settings_are_acknowledged_and_pings_answered() {
    let mut c = Client::start().await;
    let first = c.frame().await.expect("server settings");
    assert!(
        matches!(first, Frame::Settings { ack: false, ref values } if values.contains(&(frame::setting::MAX_CONCURRENT_STREAMS, MAX_STREAMS)))
    );
    c.until(|f| matches!(f, Frame::Settings { ack: true, .. }))
        .await;
    let mut b = BytesMut::new();
    raw(&mut b, kind::PING, 0, 0, b"12345678");
    c.send(&b).await;
    let pong = c.until(|f| matches!(f, Frame::Ping { .. })).await;
    assert_eq!(
        pong,
        Frame::Ping {
            ack: true,
            data: *b"12345678"
        }
    );
}

#[tokio::test]
async fn every_request_of_one_write_is_answered() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    for i in 0..100u32 {
        get(&mut b, 1 + 2 * i);
    }
    c.send(&b).await;
    let mut answered = std::collections::BTreeSet::new();
    let mut ended = 0;
    while ended < 100 {
        match c.frame().await.expect("open") {
            f @ Frame::Headers { .. } => {
                let (stream, code) = status(&f).expect(":status");
                assert_eq!(code, "503");
                answered.insert(stream);
                if matches!(
                    f,
                    Frame::Headers {
                        end_stream: true,
                        ..
                    }
                ) {
                    ended += 1;
                }
            }
            Frame::Data { end: true, .. } => ended += 1,
            Frame::Reset { stream, reason } => panic!("stream {stream} reset: {reason}"),
            _ => {}
        }
    }
    assert_eq!(answered.len(), 100);
}

#[tokio::test]
async fn a_malformed_request_resets_only_its_stream() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    let cases: [&[(&str, &str)]; 4] = [
        &[("X-Upper", "1")],
        &[("connection", "keep-alive")],
        &[("transfer-encoding", "chunked")],
        &[("te", "gzip")],
    ];
    for (i, extra) in cases.iter().enumerate() {
        raw(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1 + 2 * i as u32,
            &block("GET", "/", extra),
        );
    }
    get(&mut b, 9);
    c.send(&b).await;
    for stream in [1, 3, 5, 7] {
        let f = c
            .until(|f| matches!(f, Frame::Reset { .. }) || status(f).is_some())
            .await;
        assert_eq!(
            f,
            Frame::Reset {
                stream,
                reason: Reason::PROTOCOL_ERROR
            }
        );
    }
    let f = c.until(|f| status(f).is_some()).await;
    assert_eq!(
        status(&f),
        Some((9, "503".into())),
        "the connection goes on"
    );
}

#[tokio::test]
async fn a_body_that_disagrees_with_content_length_is_reset() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    raw(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &block("POST", "/", &[("content-length", "5")]),
    );
    raw(&mut b, kind::DATA, flag::END_STREAM, 1, b"0123456789");
    c.send(&b).await;
    let f = c.until(is_reset(1)).await;
    assert_eq!(
        f,
        Frame::Reset {
            stream: 1,
            reason: Reason::PROTOCOL_ERROR
        }
    );
}

#[tokio::test]
async fn a_header_list_over_the_limit_gets_431() {
    let mut c = Client::with_limit(1024).await;
    let mut b = BytesMut::new();
    let big = "v".repeat(120);
    let extra: Vec<(String, String)> = (0..12).map(|i| (format!("x-h{i}"), big.clone())).collect();
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    raw(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block("GET", "/", &extra),
    );
    get(&mut b, 3);
    c.send(&b).await;
    let f = c.until(|f| status(f).is_some()).await;
    assert_eq!(status(&f), Some((1, "431".into())));
    let f = c.until(|f| status(f).is_some()).await;
    assert_eq!(
        status(&f),
        Some((3, "503".into())),
        "the connection goes on"
    );
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    raw(&mut b, kind::HEADERS, 0, 1, &block("GET", "/", &[]));
    c.send(&b).await;
    // 64 KiB of CONTINUATION, none ending the block: past the 16 KiB limit plus slack.
    let mut flood = BytesMut::new();
    for _ in 0..64 {
        let mut piece = Vec::new();
        for _ in 0..8 {
            literal(&mut piece, "x-flood", &"y".repeat(100));
        }
        raw(&mut flood, kind::CONTINUATION, 0, 1, &piece);
    }
    // The server may close before reading it all.
    let _ = c.io.write_all(&flood).await;
    // The block never completed: no stream was opened.
    assert_eq!(c.go_away().await, Some((0, Reason::ENHANCE_YOUR_CALM)));
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    let n = MAX_STREAMS + 10;
    // Requests with bodies to come keep their streams open.
    for i in 0..n {
        raw(
            &mut b,
            kind::HEADERS,
            flag::END_HEADERS,
            1 + 2 * i,
            &block("POST", "/", &[]),
        );
    }
    c.send(&b).await;
    let mut refused = 0;
    while refused < 10 {
        if let Frame::Reset { stream, reason } = c.until(|f| matches!(f, Frame::Reset { .. })).await
        {
            if reason == Reason::REFUSED_STREAM {
                assert!(stream > 2 * MAX_STREAMS, "stream {stream} refused");
                refused += 1;
            }
        }
    }
}

#[tokio::test]
async fn rapid_resets_end_the_connection() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    for i in 0..400u32 {
        let id = 1 + 2 * i;
        get(&mut b, id);
        raw(&mut b, kind::RST_STREAM, 0, id, &8u32.to_be_bytes());
    }
    let _ = c.io.write_all(&b).await;
    let (_, reason) = c.go_away().await.expect("GOAWAY");
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM);
}

#[tokio::test]
async fn protocol_errors_end_the_connection_with_their_code() {
    let mut b = BytesMut::new();
    raw(
        &mut b,
        kind::WINDOW_UPDATE,
        0,
        0,
        &0x7fff_ffffu32.to_be_bytes(),
    );
    let overflow = b.clone();
    b.clear();
    raw(&mut b, kind::DATA, 0, 7, b"x");
    let idle_data = b.clone();
    b.clear();
    raw(
        &mut b,
        kind::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
        &[0, 0, 0, 2],
    );
    let push = b.clone();
    b.clear();
    raw(&mut b, kind::PING, 0, 0, b"short");
    let short_ping = b.clone();
    for (bytes, want) in [
        (overflow, Reason::FLOW_CONTROL_ERROR),
        (idle_data, Reason::PROTOCOL_ERROR),
        (push, Reason::PROTOCOL_ERROR),
        (short_ping, Reason::FRAME_SIZE_ERROR),
    ] {
        let mut c = Client::start().await;
        let _ = c.io.write_all(&bytes).await;
        let (_, reason) = c.go_away().await.expect("GOAWAY");
        assert_eq!(reason, want);
        let ended = tokio::time::timeout(WAIT, c.task)
            .await
            .expect("server ends");
        assert!(
            matches!(ended, Ok(Err(ServeError::Protocol(_)))),
            "{ended:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_is_not_http2_is_closed() {
    let (mut io, server_io) = tokio::io::duplex(1 << 16);
    let (stop, shutdown) = (CancellationToken::new(), CancellationToken::new());
    let task =
        tokio::spawn(async move { super::serve(server_io, ctx(16 << 10), &stop, &shutdown).await });
    io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let ended = tokio::time::timeout(WAIT, task).await.expect("server ends");
    assert!(
        matches!(ended, Ok(Err(ServeError::Protocol(_)))),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_stopped_listener_sends_goaway_and_closes_when_idle() {
    let mut c = Client::start().await;
    let mut b = BytesMut::new();
    get(&mut b, 1);
    c.send(&b).await;
    c.until(|f| status(f).is_some()).await;
    c.stop.cancel();
    assert_eq!(c.go_away().await, Some((1, Reason::NO_ERROR)));
    let ended = tokio::time::timeout(WAIT, c.task)
        .await
        .expect("server ends");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[test]
fn decoding_does_not_depend_on_how_the_bytes_are_split() {
    let mut b = BytesMut::new();
    get(&mut b, 1);
    let head = block("POST", "/up", &[("content-length", "5")]);
    raw(&mut b, kind::HEADERS, 0, 3, &head[..10]);
    raw(
        &mut b,
        kind::CONTINUATION,
        flag::END_HEADERS,
        3,
        &head[10..],
    );
    raw(&mut b, kind::DATA, flag::PADDED, 3, b"\x02hello\x00\x00");
    let mut trailers = Vec::new();
    literal(&mut trailers, "grpc-status", "0");
    raw(
        &mut b,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &trailers,
    );
    let whole = super::decode_client_bytes(&b, b.len());
    assert_eq!(whole.len(), 4, "{whole:?}");
    assert!(whole[0].starts_with("request 1 Ok"), "{}", whole[0]);
    assert!(whole[1].starts_with("request 3 Ok"), "{}", whole[1]);
    assert!(whole[3].starts_with("trailers 3 Ok"), "{}", whole[3]);
    for split in 0..b.len() {
        assert_eq!(
            super::decode_client_bytes(&b, split),
            whole,
            "split at {split}"
        );
    }
}
