//! One HTTP/2 client connection: frames in, requests to the handler, responses out.
//!
//! Everything of a connection runs in its one task. Each request's handler (routing,
//! the backend exchange) and each response body waiting for its backend are futures in
//! a `FuturesUnordered` polled by this task, so no task is spawned per request, and the
//! frames all streams produce in one turn of the worker leave in one write: the first
//! write after a flush waits until the worker has run the other tasks that were ready
//! (see `Server::poll`), by which time more responses have usually joined it.
//!
//! Flow control in both directions follows RFC 9113 section 5.2: a response body is
//! polled only while its stream and the connection have window, so a client that reads
//! slowly holds its backends back; a request body's window is handed back as the
//! handler takes the data (see `recv`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use foldhash::fast::FixedState;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Frame as BodyFrame};
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{self, setting, Frame, H2Error, Reason};
use super::hpack::{self, BlockError};
use super::recv::{self, Credit, Credits, RecvBody};
use crate::proxy::http::body::{ClientBody, ResponseBody};
use crate::proxy::http::service::{self, ConnCtx};
use crate::proxy::http::BoxError;

/// Streams a client may have open at once (our SETTINGS_MAX_CONCURRENT_STREAMS).
pub(crate) const MAX_STREAMS: u32 = 256;
/// The window each request body starts with (our SETTINGS_INITIAL_WINDOW_SIZE).
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's receive window: what all request bodies of a connection may have
/// buffered in the proxy at once.
const CONN_WINDOW: u32 = 1 << 20;
/// Output buffered beyond this stops reading requests and polling response bodies until
/// the client has taken some.
const HIGH_WATER: usize = 64 << 10;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 << 10;
/// A header block (HEADERS and its CONTINUATIONs) may be this much larger than the
/// header list limit (HPACK makes a list smaller, rarely larger) before the connection
/// is closed: CONTINUATION floods end here.
const BLOCK_SLACK: usize = 16 << 10;
/// Client resets of streams still being handled that are forgiven; each answered
/// request earns one back (up to this). Past it the connection is closed: a "rapid
/// reset" client (CVE-2023-44487) makes the proxy start work it cancels at once.
const RESET_BUDGET: i64 = 200;

/// How a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// The client broke the protocol; a GOAWAY with the reason was sent.
    #[error(transparent)]
    Protocol(#[from] H2Error),
    /// Reading or writing the socket failed (a timeout included).
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// Cancels a stream's work from the connection (the client reset the stream).
#[derive(Debug, Default)]
struct Cancel {
    flag: AtomicBool,
    waker: AtomicWaker,
}

impl Cancel {
    fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// A response from the handler.
type Answer = Result<Response<ResponseBody>, std::convert::Infallible>;
/// One request's handler.
type Handling = Pin<Box<dyn Future<Output = Answer> + Send>>;
/// What polling a response body gave.
type Polled = Option<Result<BodyFrame<Bytes>, BoxError>>;

/// What a stream is waiting for, as a future the connection polls.
struct Work {
    id: u32,
    cancel: Arc<Cancel>,
    kind: WorkKind,
}

enum WorkKind {
    /// The handler, until it answers.
    Handle(Handling),
    /// The next frame of the response body.
    Body(Option<Box<ResponseBody>>),
}

/// What a piece of work came to.
// A value passed back from a poll, never stored: the response is not worth a box.
#[allow(clippy::large_enum_variant)]
enum Done {
    Response(Response<ResponseBody>),
    Frame(
        Box<ResponseBody>,
        Option<Result<BodyFrame<Bytes>, BoxError>>,
    ),
    Cancelled,
}

impl Future for Work {
    type Output = (u32, Done);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(u32, Done)> {
        let id = self.id;
        if self.cancel.cancelled() {
            return Poll::Ready((id, Done::Cancelled));
        }
        let polled = match &mut self.kind {
            WorkKind::Handle(h) => h.as_mut().poll(cx).map(|r| match r {
                Ok(resp) => Done::Response(resp),
                Err(never) => match never {},
            }),
            WorkKind::Body(body) => match body.as_mut() {
                None => Poll::Ready(Done::Cancelled),
                Some(b) => Pin::new(b)
                    .poll_frame(cx)
                    .map(|f| body.take().map_or(Done::Cancelled, |b| Done::Frame(b, f))),
            },
        };
        match polled {
            Poll::Ready(d) => Poll::Ready((id, d)),
            Poll::Pending => {
                self.cancel.waker.register(cx.waker());
                if self.cancel.cancelled() {
                    return Poll::Ready((id, Done::Cancelled));
                }
                Poll::Pending
            }
        }
    }
}

/// Where a stream's response stands.
enum Sending {
    /// The handler has not answered yet.
    Handling,
    /// The body's next frame is being waited for (in `work`).
    Polling,
    /// Data waits for window; `end`: it is the body's last.
    Blocked {
        body: Option<Box<ResponseBody>>,
        pending: Bytes,
        end: bool,
    },
    /// The response is complete (END_STREAM sent).
    Done,
}

struct Stream {
    send: Sending,
    send_window: i64,
    /// Window the client still has for this stream's body.
    recv_window: i64,
    /// Bytes taken by the handler not yet handed back.
    recv_unacked: u32,
    /// Where request body data goes; None for a request without body.
    recv: Option<Arc<recv::Shared>>,
    /// The client may still send DATA or trailers.
    recv_open: bool,
    /// The handler dropped the request body: data is discarded.
    body_gone: bool,
    received: u64,
    content_length: Option<u64>,
    cancel: Arc<Cancel>,
}

/// A header block being assembled from HEADERS and CONTINUATION frames.
struct Assembling {
    stream: u32,
    end_stream: bool,
    block: BytesMut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 24-byte client preface.
    Preface,
    /// The preface arrived; the next frame must be SETTINGS.
    Settings,
    Open,
}

/// One HTTP/2 connection being served.
pub(crate) struct Server<S> {
    io: S,
    conn: Arc<ConnCtx>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    scratch: BytesMut,
    decoder: hpack::Decoder,
    max_list: usize,
    phase: Phase,
    streams: HashMap<u32, Stream, FixedState>,
    work: FuturesUnordered<Work>,
    credits: Arc<Credits>,
    credit_buf: Vec<Credit>,
    /// Highest stream id the client opened.
    last_stream: u32,
    assembling: Option<Assembling>,
    conn_send: i64,
    conn_recv: i64,
    conn_unacked: u32,
    peer_window: u32,
    peer_max_frame: u32,
    /// Streams waiting for connection window.
    blocked: VecDeque<u32>,
    /// We sent GOAWAY: no new streams; close once the open ones are done.
    going_away: bool,
    /// The client sent GOAWAY or closed its side: close once the open ones are done.
    peer_done: bool,
    /// The client closed its side: nothing more to read.
    eof: bool,
    /// A connection error: flush what is buffered (the GOAWAY) and close.
    failed: Option<ServeError>,
    /// The current batch of output has waited one worker turn.
    yielded: bool,
    resets: i64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Server<S> {
    /// Serves `io` (the client preface not yet read) for `conn`.
    pub(crate) fn new(io: S, conn: Arc<ConnCtx>) -> Self {
        let max_list = conn.live.http.limits.max_header;
        let mut wbuf = BytesMut::with_capacity(256);
        frame::settings(
            &mut wbuf,
            &[
                (setting::MAX_CONCURRENT_STREAMS, MAX_STREAMS),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    u32::try_from(max_list).unwrap_or(u32::MAX),
                ),
            ],
        );
        frame::window_update(&mut wbuf, 0, CONN_WINDOW - frame::DEFAULT_WINDOW);
        Server {
            io,
            conn,
            rbuf: BytesMut::new(),
            wbuf,
            scratch: BytesMut::new(),
            decoder: hpack::Decoder::new(max_list),
            max_list,
            phase: Phase::Preface,
            streams: HashMap::with_hasher(FixedState::with_seed(0)),
            work: FuturesUnordered::new(),
            credits: Arc::new(Credits::default()),
            credit_buf: Vec::new(),
            last_stream: 0,
            assembling: None,
            conn_send: frame::DEFAULT_WINDOW as i64,
            conn_recv: CONN_WINDOW as i64,
            conn_unacked: 0,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            blocked: VecDeque::new(),
            going_away: false,
            peer_done: false,
            eof: false,
            failed: None,
            yielded: false,
            resets: RESET_BUDGET,
        }
    }

    /// Stops taking new streams (GOAWAY with the last one we saw); the open ones finish.
    pub(crate) fn graceful(&mut self) {
        if !self.going_away {
            self.going_away = true;
            frame::go_away(&mut self.wbuf, self.last_stream, Reason::NO_ERROR);
        }
    }

    /// Ends the connection over a protocol error: GOAWAY, then close.
    fn fail(&mut self, e: H2Error) {
        let reason = match &e {
            H2Error::Connection(r, _) => *r,
            H2Error::Stream(_, r, _) => *r,
        };
        frame::go_away(&mut self.wbuf, self.last_stream, reason);
        self.close_streams("connection closed");
        self.failed = Some(ServeError::Protocol(e));
    }

    fn close_streams(&mut self, why: &'static str) {
        for (_, s) in self.streams.drain() {
            s.cancel.cancel();
            if let Some(r) = &s.recv {
                r.fail(why);
            }
        }
        self.blocked.clear();
    }

    /// Reads and handles frames until the socket has nothing more or output is backed up.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        let mut reads = 0;
        loop {
            if let Err(e) = self.parse_frames() {
                return Poll::Ready(Err(ServeError::Protocol(e)));
            }
            if self.wbuf.len() >= HIGH_WATER || self.failed.is_some() {
                return Poll::Ready(Ok(()));
            }
            if reads == 16 {
                // Fair to the worker's other connections: more next turn.
                cx.waker().wake_by_ref();
                return Poll::Ready(Ok(()));
            }
            reads += 1;
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.peer_done = true;
                    self.eof = true;
                    if !self.rbuf.is_empty() || self.assembling.is_some() {
                        // Ended inside a frame.
                        self.close_streams("client closed the connection");
                    }
                    for s in self.streams.values_mut() {
                        if s.recv_open {
                            s.recv_open = false;
                            if let Some(r) = &s.recv {
                                r.fail("client closed the connection");
                            }
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ServeError::Io(e))),
            }
        }
    }

    fn parse_frames(&mut self) -> Result<(), H2Error> {
        if self.phase == Phase::Preface {
            let n = self.rbuf.len().min(frame::PREFACE.len());
            if self.rbuf[..n] != frame::PREFACE[..n] {
                return Err(H2Error::Connection(
                    Reason::PROTOCOL_ERROR,
                    "not the HTTP/2 client preface",
                ));
            }
            if n < frame::PREFACE.len() {
                return Ok(());
            }
            self.rbuf.advance(n);
            self.phase = Phase::Settings;
        }
        while self.wbuf.len() < HIGH_WATER {
            let Some(f) = frame::parse(&mut self.rbuf, frame::DEFAULT_MAX_FRAME)? else {
                break;
            };
            if self.phase == Phase::Settings {
                if !matches!(f, Frame::Settings { ack: false, .. }) {
                    return Err(H2Error::Connection(
                        Reason::PROTOCOL_ERROR,
                        "first frame is not SETTINGS",
                    ));
                }
                self.phase = Phase::Open;
            }
            match self.on_frame(f) {
                Ok(()) => {}
                Err(H2Error::Stream(id, reason, why)) => {
                    tracing::debug!(client = %self.conn.peer, stream = id, %reason, why, "HTTP/2 stream reset");
                    self.reset(id, reason);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Resets stream `id` from our side.
    fn reset(&mut self, id: u32, reason: Reason) {
        frame::reset(&mut self.wbuf, id, reason);
        if let Some(s) = self.streams.remove(&id) {
            s.cancel.cancel();
            if let Some(r) = &s.recv {
                r.reset(reason);
            }
        }
    }

    fn on_frame(&mut self, f: Frame) -> Result<(), H2Error> {
        use H2Error::{Connection as Conn, Stream as Strm};
        if let Some(a) = &mut self.assembling {
            let Frame::Continuation {
                stream,
                block,
                end_headers,
            } = f
            else {
                return Err(Conn(Reason::PROTOCOL_ERROR, "header block interrupted"));
            };
            if stream != a.stream {
                return Err(Conn(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION on another stream",
                ));
            }
            if a.block.len() + block.len() > self.max_list + BLOCK_SLACK {
                return Err(Conn(Reason::ENHANCE_YOUR_CALM, "header block too large"));
            }
            a.block.extend_from_slice(&block);
            if end_headers {
                if let Some(a) = self.assembling.take() {
                    return self.on_header_block(a.stream, &a.block, a.end_stream);
                }
            }
            return Ok(());
        }
        match f {
            Frame::Data {
                stream,
                data,
                end,
                flow,
            } => self.on_data(stream, data, end, flow),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
            } => {
                if end_headers {
                    return self.on_header_block(stream, &block, end_stream);
                }
                if block.len() > self.max_list + BLOCK_SLACK {
                    return Err(Conn(Reason::ENHANCE_YOUR_CALM, "header block too large"));
                }
                self.assembling = Some(Assembling {
                    stream,
                    end_stream,
                    block: BytesMut::from(&block[..]),
                });
                Ok(())
            }
            Frame::Continuation { .. } => {
                Err(Conn(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"))
            }
            Frame::Priority | Frame::Unknown => Ok(()),
            Frame::Reset { stream, reason } => {
                if stream > self.last_stream {
                    return Err(Conn(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
                }
                if let Some(s) = self.streams.remove(&stream) {
                    s.cancel.cancel();
                    if let Some(r) = &s.recv {
                        r.reset(reason);
                    }
                    if !matches!(s.send, Sending::Done) {
                        self.resets -= 1;
                        if self.resets < 0 {
                            return Err(Conn(Reason::ENHANCE_YOUR_CALM, "too many streams reset"));
                        }
                    }
                }
                Ok(())
            }
            Frame::Settings { ack, values } => {
                if !ack {
                    self.apply_settings(&values)?;
                    frame::settings_ack(&mut self.wbuf);
                }
                Ok(())
            }
            Frame::PushPromise => Err(Conn(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client")),
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::ping_ack(&mut self.wbuf, data);
                }
                Ok(())
            }
            Frame::GoAway { reason, .. } => {
                if reason != Reason::NO_ERROR {
                    tracing::debug!(client = %self.conn.peer, %reason, "client sent GOAWAY");
                }
                self.peer_done = true;
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream == 0 {
                    if increment == 0 {
                        return Err(Conn(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
                    }
                    self.conn_send += increment as i64;
                    if self.conn_send > frame::MAX_WINDOW {
                        return Err(Conn(Reason::FLOW_CONTROL_ERROR, "window past 2^31-1"));
                    }
                    self.unblock();
                    return Ok(());
                }
                let Some(s) = self.streams.get_mut(&stream) else {
                    if stream > self.last_stream {
                        return Err(Conn(
                            Reason::PROTOCOL_ERROR,
                            "WINDOW_UPDATE on an idle stream",
                        ));
                    }
                    return Ok(());
                };
                if increment == 0 {
                    return Err(Strm(stream, Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
                }
                s.send_window += increment as i64;
                if s.send_window > frame::MAX_WINDOW {
                    return Err(Strm(
                        stream,
                        Reason::FLOW_CONTROL_ERROR,
                        "window past 2^31-1",
                    ));
                }
                if matches!(s.send, Sending::Blocked { .. }) {
                    self.flush_blocked(stream);
                }
                Ok(())
            }
        }
    }

    fn apply_settings(&mut self, values: &[frame::Setting]) -> Result<(), H2Error> {
        use H2Error::Connection as Conn;
        for &(id, v) in values {
            match id {
                setting::ENABLE_PUSH if v > 1 => {
                    return Err(Conn(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if v as i64 > frame::MAX_WINDOW {
                        return Err(Conn(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE too large",
                        ));
                    }
                    let delta = v as i64 - self.peer_window as i64;
                    self.peer_window = v;
                    let mut grew = Vec::new();
                    for (id, s) in self.streams.iter_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(Conn(Reason::FLOW_CONTROL_ERROR, "window past 2^31-1"));
                        }
                        if delta > 0 && matches!(s.send, Sending::Blocked { .. }) {
                            grew.push(*id);
                        }
                    }
                    for id in grew {
                        self.flush_blocked(id);
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=16_777_215).contains(&v) {
                        return Err(Conn(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = v;
                }
                // HEADER_TABLE_SIZE: our encoder never uses the dynamic table.
                // MAX_CONCURRENT_STREAMS: we never push. MAX_HEADER_LIST_SIZE: advisory.
                _ => {}
            }
        }
        Ok(())
    }

    fn on_data(&mut self, stream: u32, data: Bytes, end: bool, flow: u32) -> Result<(), H2Error> {
        use H2Error::{Connection as Conn, Stream as Strm};
        self.conn_recv -= flow as i64;
        if self.conn_recv < 0 {
            return Err(Conn(
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            ));
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_stream {
                return Err(Conn(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A stream already closed (by a reset of ours, say): the window is handed
            // back, the data dropped.
            self.conn_unacked += flow;
            return Ok(());
        };
        // Whatever happens to the data, its window comes back to the connection when
        // it is taken (or now, if it is not kept).
        if !s.recv_open {
            self.conn_unacked += flow;
            return Err(Strm(stream, Reason::STREAM_CLOSED, "DATA after END_STREAM"));
        }
        s.recv_window -= flow as i64;
        if s.recv_window < 0 {
            self.conn_unacked += flow;
            return Err(Strm(
                stream,
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the stream window",
            ));
        }
        s.received += data.len() as u64;
        if s.content_length
            .is_some_and(|n| s.received > n || (end && s.received != n))
        {
            self.conn_unacked += flow;
            return Err(Strm(
                stream,
                Reason::PROTOCOL_ERROR,
                "DATA does not match content-length",
            ));
        }
        let padding = flow - data.len() as u32;
        self.conn_unacked += padding;
        s.recv_unacked += padding;
        if end {
            s.recv_open = false;
        }
        match &s.recv {
            Some(r) if !s.body_gone => r.push(data, end),
            _ => {
                let n = data.len() as u32;
                self.conn_unacked += n;
                s.recv_unacked += n;
            }
        }
        if !s.recv_open {
            self.maybe_close(stream);
        } else {
            self.stream_credit(stream);
        }
        Ok(())
    }

    fn on_header_block(
        &mut self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
    ) -> Result<(), H2Error> {
        use H2Error::{Connection as Conn, Stream as Strm};
        let compression = |e: &BlockError| -> Result<(), H2Error> {
            if *e == BlockError::Compression {
                Err(Conn(
                    Reason::COMPRESSION_ERROR,
                    "header block cannot be decoded",
                ))
            } else {
                Ok(())
            }
        };
        if let Some(s) = self.streams.get_mut(&stream) {
            // Trailers.
            let trailers = self.decoder.trailers(block);
            if let Err(e) = &trailers {
                compression(e)?;
            }
            if !s.recv_open {
                return Err(Strm(
                    stream,
                    Reason::STREAM_CLOSED,
                    "HEADERS after END_STREAM",
                ));
            }
            let t = match trailers {
                Ok(t) => t,
                Err(_) => return Err(Strm(stream, Reason::PROTOCOL_ERROR, "malformed trailers")),
            };
            if !end_stream {
                return Err(Strm(
                    stream,
                    Reason::PROTOCOL_ERROR,
                    "trailers without END_STREAM",
                ));
            }
            if s.content_length.is_some_and(|n| n != s.received) {
                return Err(Strm(
                    stream,
                    Reason::PROTOCOL_ERROR,
                    "body shorter than content-length",
                ));
            }
            s.recv_open = false;
            if let Some(r) = s.recv.as_ref().filter(|_| !s.body_gone) {
                r.trailers(t);
            }
            self.maybe_close(stream);
            return Ok(());
        }
        if stream.is_multiple_of(2) {
            return Err(Conn(
                Reason::PROTOCOL_ERROR,
                "stream id of the server's kind",
            ));
        }
        if stream <= self.last_stream {
            // A stream we closed already: decoded only to keep the table in step.
            if let Err(e) = self.decoder.trailers(block) {
                compression(&e)?;
            }
            return Ok(());
        }
        self.last_stream = stream;
        let head = self.decoder.request(block);
        let head = match head {
            Ok(h) => h,
            Err(BlockError::Compression) => {
                return Err(Conn(
                    Reason::COMPRESSION_ERROR,
                    "header block cannot be decoded",
                ))
            }
            Err(BlockError::TooLarge) => {
                self.local_answer(
                    stream,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    end_stream,
                );
                return Ok(());
            }
            Err(BlockError::Malformed(why)) => {
                return Err(Strm(stream, Reason::PROTOCOL_ERROR, why))
            }
        };
        if self.going_away {
            return Err(Strm(
                stream,
                Reason::REFUSED_STREAM,
                "connection is closing",
            ));
        }
        if self.streams.len() >= MAX_STREAMS as usize {
            return Err(Strm(
                stream,
                Reason::REFUSED_STREAM,
                "too many concurrent streams",
            ));
        }
        if end_stream && head.content_length.is_some_and(|n| n != 0) {
            return Err(Strm(
                stream,
                Reason::PROTOCOL_ERROR,
                "no body but content-length",
            ));
        }
        let cancel = Arc::new(Cancel::default());
        let (recv, body) = if end_stream {
            (None, ClientBody::Empty)
        } else {
            let shared = Arc::new(recv::Shared::default());
            let body = RecvBody::new(
                stream,
                shared.clone(),
                self.credits.clone(),
                head.content_length,
                head.expect_continue,
            );
            (Some(shared), ClientBody::H2(body))
        };
        self.streams.insert(
            stream,
            Stream {
                send: Sending::Handling,
                send_window: self.peer_window as i64,
                recv_window: STREAM_WINDOW as i64,
                recv_unacked: 0,
                recv,
                recv_open: !end_stream,
                body_gone: false,
                received: 0,
                content_length: head.content_length,
                cancel: cancel.clone(),
            },
        );
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = head.headers;
        let handling: Handling = Box::pin(service::handle(self.conn.clone(), req));
        self.work.push(Work {
            id: stream,
            cancel,
            kind: WorkKind::Handle(handling),
        });
        Ok(())
    }

    /// Answers a request the proxy refuses before routing (431: its header list is too
    /// large), without a stream entry.
    fn local_answer(&mut self, stream: u32, status: StatusCode, end_stream: bool) {
        tracing::warn!(client = %self.conn.peer, stream, status = status.as_u16(), "HTTP/2 request refused");
        self.scratch.clear();
        hpack::response(&mut self.scratch, status, &http::HeaderMap::new());
        frame::headers(
            &mut self.wbuf,
            stream,
            &self.scratch,
            true,
            self.peer_max_frame,
        );
        if !end_stream {
            frame::reset(&mut self.wbuf, stream, Reason::NO_ERROR);
        }
    }

    /// Hands back window of a stream whose body is being taken, once it is worth a frame.
    fn stream_credit(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if s.recv_open && s.recv_unacked >= STREAM_WINDOW / 2 {
                frame::window_update(&mut self.wbuf, id, s.recv_unacked);
                s.recv_window += s.recv_unacked as i64;
                s.recv_unacked = 0;
            }
        }
        self.conn_credit();
    }

    fn conn_credit(&mut self) {
        if self.conn_unacked >= CONN_WINDOW / 2 {
            frame::window_update(&mut self.wbuf, 0, self.conn_unacked);
            self.conn_recv += self.conn_unacked as i64;
            self.conn_unacked = 0;
        }
    }

    fn apply_credits(&mut self) {
        self.credits.drain(&mut self.credit_buf);
        let mut taken = std::mem::take(&mut self.credit_buf);
        for c in taken.drain(..) {
            self.conn_unacked += c.bytes;
            if let Some(s) = self.streams.get_mut(&c.stream) {
                if c.proceed && matches!(s.send, Sending::Handling) {
                    self.scratch.clear();
                    hpack::response(
                        &mut self.scratch,
                        StatusCode::CONTINUE,
                        &http::HeaderMap::new(),
                    );
                    frame::headers(
                        &mut self.wbuf,
                        c.stream,
                        &self.scratch,
                        false,
                        self.peer_max_frame,
                    );
                }
                s.recv_unacked += c.bytes;
                if c.gone {
                    s.body_gone = true;
                    s.recv = None;
                    self.maybe_close(c.stream);
                }
                self.stream_credit(c.stream);
            }
        }
        self.credit_buf = taken;
        self.conn_credit();
    }

    /// Removes a stream whose response is complete and whose request needs nothing more.
    fn maybe_close(&mut self, id: u32) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if !matches!(s.send, Sending::Done) {
            return;
        }
        if !s.recv_open {
            self.streams.remove(&id);
        } else if s.body_gone || s.recv.is_none() {
            // The answer is complete and nobody reads the rest of the request: tell the
            // client to stop sending it (RFC 9113 section 8.1).
            self.reset(id, Reason::NO_ERROR);
        }
    }

    fn on_done(&mut self, id: u32, done: Done, cx: &mut Context<'_>) {
        if !self.streams.contains_key(&id) {
            return;
        }
        match done {
            Done::Cancelled => {}
            Done::Response(resp) => {
                self.resets = (self.resets + 1).min(RESET_BUDGET);
                let (parts, body) = resp.into_parts();
                self.scratch.clear();
                hpack::response(&mut self.scratch, parts.status, &parts.headers);
                let end = body.is_end_stream();
                frame::headers(&mut self.wbuf, id, &self.scratch, end, self.peer_max_frame);
                if end {
                    self.finish(id);
                    drop(body);
                } else {
                    self.pump(id, Box::new(body), None, cx);
                }
            }
            Done::Frame(body, frame) => self.pump(id, body, Some(frame), cx),
        }
    }

    fn finish(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.send = Sending::Done;
        }
        self.maybe_close(id);
    }

    /// Polls a response body for as long as it has frames ready, the windows have room
    /// and output is not backed up; `next` is a frame already polled. A loop, not
    /// recursion: a backend's many small chunks read in one go are as many frames ready
    /// at once. Such a run of data frames goes out as one DATA frame (up to the frame
    /// size): a client may take a flood of tiny frames for an attack (the `h2` crate
    /// closes the connection with "too_many_data_frames").
    fn pump(
        &mut self,
        id: u32,
        mut body: Box<ResponseBody>,
        mut next: Option<Polled>,
        cx: &mut Context<'_>,
    ) {
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => {
                    if self.wbuf.len() >= HIGH_WATER {
                        return self.wait_body(id, body);
                    }
                    match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Pending => return self.wait_body(id, body),
                        Poll::Ready(frame) => frame,
                    }
                }
            };
            // Whether a data frame is the body's last: known when the frame after it was
            // polled already (trailers follow, or the end), else asked of the body.
            let (frame, last) = match frame {
                Some(Ok(f)) if f.is_data() => {
                    let first = f.into_data().unwrap_or_default();
                    let (data, after) = self.gather(&mut body, first, cx);
                    let last = match &after {
                        None => None,
                        Some(None) => Some(true),
                        Some(Some(_)) => Some(false),
                    };
                    next = after.filter(Option::is_some);
                    (Some(Ok(BodyFrame::data(data))), last)
                }
                other => (other, None),
            };
            match self.on_body_frame(id, body, frame, last) {
                Some(more) => body = more,
                None => return,
            }
        }
    }

    /// `first` and the data frames the body has ready right after it, joined up to one
    /// frame's size; also the first frame polled that was not joined, if any.
    fn gather(
        &self,
        body: &mut ResponseBody,
        first: Bytes,
        cx: &mut Context<'_>,
    ) -> (Bytes, Option<Polled>) {
        let max = self.peer_max_frame.min(frame::DEFAULT_MAX_FRAME) as usize;
        if first.len() >= max {
            return (first, None);
        }
        let mut joined: Option<BytesMut> = None;
        let mut len = first.len();
        let mut after = None;
        while len < max {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) if f.is_data() => {
                    let more = f.into_data().unwrap_or_default();
                    len += more.len();
                    joined
                        .get_or_insert_with(|| BytesMut::from(&first[..]))
                        .extend_from_slice(&more);
                }
                Poll::Ready(other) => {
                    after = Some(other);
                    break;
                }
                Poll::Pending => break,
            }
        }
        (joined.map_or(first, BytesMut::freeze), after)
    }

    fn wait_body(&mut self, id: u32, body: Box<ResponseBody>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.send = Sending::Polling;
        self.work.push(Work {
            id,
            cancel: s.cancel.clone(),
            kind: WorkKind::Body(Some(body)),
        });
    }

    /// Sends one frame of a response body (`last`: whether a data frame is the body's
    /// last, if known); returns the body when it is to be polled on.
    fn on_body_frame(
        &mut self,
        id: u32,
        body: Box<ResponseBody>,
        frame: Polled,
        last: Option<bool>,
    ) -> Option<Box<ResponseBody>> {
        match frame {
            None => {
                frame::data(&mut self.wbuf, id, &[], true);
                drop(body);
                self.finish(id);
                None
            }
            Some(Err(e)) => {
                tracing::debug!(client = %self.conn.peer, stream = id, error = %e, "HTTP/2 response body failed");
                drop(body);
                self.reset(id, Reason::INTERNAL_ERROR);
                None
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(data) => {
                    let end = last.unwrap_or_else(|| body.is_end_stream());
                    let s = self.streams.get_mut(&id)?;
                    s.send = Sending::Blocked {
                        body: Some(body),
                        pending: data,
                        end,
                    };
                    self.send_pending(id)
                }
                Err(f) => match f.into_trailers() {
                    Ok(t) => {
                        self.scratch.clear();
                        hpack::fields(&mut self.scratch, &t);
                        frame::headers(
                            &mut self.wbuf,
                            id,
                            &self.scratch,
                            true,
                            self.peer_max_frame,
                        );
                        drop(body);
                        self.finish(id);
                        None
                    }
                    // Neither data nor trailers: nothing to send.
                    Err(_) => Some(body),
                },
            },
        }
    }

    /// Sends what a blocked stream holds as far as the windows allow; returns the body
    /// when all was sent and the body has more.
    fn send_pending(&mut self, id: u32) -> Option<Box<ResponseBody>> {
        let s = self.streams.get_mut(&id)?;
        let Sending::Blocked { body, pending, end } = &mut s.send else {
            return None;
        };
        if pending.is_empty() && *end {
            frame::data(&mut self.wbuf, id, &[], true);
        }
        while !pending.is_empty() {
            let n = (pending.len() as i64)
                .min(s.send_window)
                .min(self.conn_send)
                .min(self.peer_max_frame as i64);
            if n <= 0 {
                if self.conn_send <= 0 && !self.blocked.contains(&id) {
                    self.blocked.push_back(id);
                }
                return None;
            }
            let chunk = pending.split_to(n as usize);
            let last = pending.is_empty() && *end;
            frame::data(&mut self.wbuf, id, &chunk, last);
            s.send_window -= n;
            self.conn_send -= n;
        }
        let done = *end;
        let body = body.take();
        if done {
            drop(body);
            self.finish(id);
            return None;
        }
        s.send = Sending::Polling;
        body
    }

    /// A stream's window grew: send what it holds, then go on reading its body.
    fn flush_blocked(&mut self, id: u32) {
        if let Some(body) = self.send_pending(id) {
            self.wait_body(id, body);
        }
    }

    /// The connection's window grew: blocked streams go on in the order they stopped.
    fn unblock(&mut self) {
        while self.conn_send > 0 {
            let Some(id) = self.blocked.pop_front() else {
                break;
            };
            self.flush_blocked(id);
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        if self.wbuf.capacity() > 4 * HIGH_WATER {
            self.wbuf = BytesMut::new();
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK {
            self.rbuf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// A connection with nothing in flight gives its buffers back: idle HTTP/2
    /// connections (a gRPC client's, say) can be many, and the next request after a
    /// pause allocates them again at a cost far below a system call.
    fn shed(&mut self) {
        if !self.streams.is_empty() || !self.rbuf.is_empty() || !self.wbuf.is_empty() {
            return;
        }
        self.rbuf = BytesMut::new();
        self.wbuf = BytesMut::new();
        self.scratch = BytesMut::new();
        if self.streams.capacity() > 16 {
            self.streams = HashMap::with_hasher(FixedState::with_seed(0));
        }
        self.credit_buf = Vec::new();
    }

    /// Nothing is open and nothing more will be: the connection can close.
    fn finished(&self) -> bool {
        self.failed.is_some() || ((self.going_away || self.peer_done) && self.streams.is_empty())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Server<S> {
    type Output = Result<(), ServeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.credits.waker.register(cx.waker());
        for _ in 0..4 {
            let mut again = false;
            if this.failed.is_none() && !this.eof {
                match this.poll_read(cx) {
                    Poll::Ready(Err(ServeError::Protocol(e))) => {
                        tracing::debug!(client = %this.conn.peer, error = %e, "HTTP/2 connection error");
                        this.fail(e);
                    }
                    Poll::Ready(Err(ServeError::Io(e))) => {
                        if e.kind() == io::ErrorKind::TimedOut {
                            // Idle or slow: say goodbye properly.
                            this.graceful();
                            this.close_streams("connection timed out");
                            this.failed = Some(ServeError::Io(e));
                        } else {
                            this.close_streams("connection failed");
                            return Poll::Ready(Err(ServeError::Io(e)));
                        }
                    }
                    Poll::Ready(Ok(())) => again = this.wbuf.len() >= HIGH_WATER,
                    Poll::Pending => {}
                }
            }
            this.apply_credits();
            while this.failed.is_none() && this.wbuf.len() < HIGH_WATER {
                match this.work.poll_next_unpin(cx) {
                    Poll::Ready(Some((id, done))) => this.on_done(id, done, cx),
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if this.wbuf.len() >= HIGH_WATER {
                again = true;
            }
            if !this.wbuf.is_empty() {
                if !this.yielded && this.failed.is_none() {
                    // Let the worker run the other tasks that are ready first: their
                    // responses join this write (see the module documentation).
                    this.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                match this.poll_write(cx) {
                    Poll::Ready(Ok(())) => this.yielded = false,
                    Poll::Ready(Err(e)) => {
                        this.close_streams("connection failed");
                        return Poll::Ready(Err(ServeError::Io(e)));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if this.finished() {
                std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx)).ok();
                return Poll::Ready(match this.failed.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                });
            }
            if !again {
                this.shed();
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
