//! One HTTP/1 connection's busy period: read a head, serve the request (its handler, its
//! request body, its response) in this task, write the response, and go on with the
//! next request, until the connection idles, ends or is upgraded.
//!
//! Timers: a connection keeps one timer, and a request does not touch it. It fires every
//! [`CHECK_EVERY`] or sooner while the connection is open; each firing reads the clock
//! once and decides what is due: the header-read timeout (slowloris), the idle timeout,
//! handing an idle connection back ([`PARK_AFTER`]), a listener stop or the node's
//! shutdown. Keep-alive requests so cost no timer operation and no clock reading here (a
//! response done counts as done at the next firing: deadlines are late by at most
//! [`CHECK_EVERY`], never early).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Response, StatusCode, Version};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::decode::{Decoded, Decoder};
use super::head::{self, BodyKind, Head, Refusal};
use super::recv::{RecvBody, Shared};
use super::upgrade::{OnUpgrade, Upgraded};
use super::write::{self, Framing, Out, RequestFacts};
use crate::proxy::http::body::{ClientBody, ResponseBody};
use crate::proxy::http::conn::WaitReadable;
use crate::proxy::http::service::{self, ConnCtx};

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 8192;
/// Response bytes queued before the body is asked for more.
const HIGH_WATER: usize = 64 * 1024;
/// How long an idle keep-alive connection keeps its buffers and task state before it is
/// handed back to wait without them (see `conn`): long enough that a busy connection
/// never pays for a park and a wake-up (a few µs, once per idle spell), short enough
/// that thousands of idle connections cost no buffers.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(100);
/// The longest the connection's timer sleeps: how soon a listener stop or the node's
/// shutdown is noticed by a connection that is not idle in the idle set.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How a busy period ended.
pub(crate) enum Outcome<S> {
    /// Idle with nothing buffered since `since`: the socket waits for the next request
    /// without this state.
    Idle {
        /// The client socket.
        io: S,
        /// When the last response was done.
        since: Instant,
    },
    /// The connection is closed (or became a tunnel).
    Closed,
}

/// What comes next between requests.
enum Next {
    Head(Box<Head>),
    Refused(Refusal),
    Park,
    Close(&'static str),
}

/// How an exchange ended.
enum After {
    KeepAlive,
    Close,
    Upgrade(oneshot::Sender<Upgraded>),
}

/// The boxed future of one request's handler.
type Handling = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// Serves requests on `io` (with `buf` already read from it) until the connection idles
/// for [`PARK_AFTER`], ends, or is upgraded. `fresh`: no request was served on the
/// connection yet, so its first head is due within the header timeout of now.
pub(crate) async fn serve<S>(
    io: S,
    buf: BytesMut,
    conn: &Arc<ConnCtx>,
    stop: &CancellationToken,
    fresh: bool,
) -> Outcome<S>
where
    S: AsyncRead + AsyncWrite + WaitReadable + Send + Unpin + 'static,
{
    let now = Instant::now();
    let limits = conn.live.http.limits;
    let mut c = Conn {
        io,
        buf,
        conn,
        stop,
        eof: false,
        since: now,
        served: false,
        fresh,
        head_started: None,
        tick: None,
        tick_at: now,
        tick_polled: false,
        max_head: limits.max_header,
        head_timeout: limits.head_timeout,
        idle_timeout: limits.idle_timeout,
        out: Out::default(),
    };
    loop {
        let head = match poll_fn(|cx| c.poll_next(cx)).await {
            Next::Head(h) => h,
            Next::Refused(r) => {
                c.refuse(r).await;
                return Outcome::Closed;
            }
            Next::Park => {
                return Outcome::Idle {
                    io: c.io,
                    since: c.since,
                }
            }
            Next::Close(why) => {
                tracing::debug!(client = %conn.peer, why, "closing client connection");
                c.close().await;
                return Outcome::Closed;
            }
        };
        match c.exchange(*head).await {
            Ok(After::KeepAlive) => {
                // No clock reading here: the next timer firing stamps `since`.
                c.served = true;
                c.fresh = false;
            }
            Ok(After::Close) => {
                c.close().await;
                return Outcome::Closed;
            }
            Ok(After::Upgrade(to)) => {
                let pre = std::mem::take(&mut c.buf).freeze();
                // Dropped only if the tunnel gave up already: then the socket closes.
                let _ = to.send(Upgraded::new(Box::new(c.io), pre));
                return Outcome::Closed;
            }
            Err(e) => {
                tracing::debug!(client = %conn.peer, error = %e, "client connection ended with an error");
                return Outcome::Closed;
            }
        }
    }
}

struct Conn<'a, S> {
    io: S,
    /// Read from the client, not yet taken.
    buf: BytesMut,
    conn: &'a Arc<ConnCtx>,
    stop: &'a CancellationToken,
    /// The client closed its side.
    eof: bool,
    /// When the last response was done (or the busy period began), as of the last timer
    /// firing: a response done since then (`served`) counts as done at the next one, so
    /// park and idle deadlines are up to [`CHECK_EVERY`] late, never early.
    since: Instant,
    /// A response was done since the timer last fired.
    served: bool,
    /// No request yet on this connection.
    fresh: bool,
    /// When the head being read started to arrive (only for heads that took more than
    /// one read: a whole head costs no clock reading).
    head_started: Option<Instant>,
    /// Set up the first time the connection has to wait (a connection that is served
    /// and closed without waiting needs none).
    tick: Option<Pin<Box<Sleep>>>,
    tick_at: Instant,
    /// The timer was polled since it was last set (so it will wake this task).
    tick_polled: bool,
    max_head: usize,
    head_timeout: Duration,
    idle_timeout: Duration,
    out: Out,
}

impl<S> Conn<'_, S>
where
    S: AsyncRead + AsyncWrite + WaitReadable + Send + Unpin + 'static,
{
    /// Reads once into the buffer; sets `eof` when the client closed its side.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Uninitialised: zeroing 8 KiB per read shows in profiles.
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut rb = ReadBuf::uninit(&mut chunk);
        std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        if rb.filled().is_empty() {
            self.eof = true;
        } else {
            self.buf.extend_from_slice(rb.filled());
        }
        Poll::Ready(Ok(()))
    }

    /// Sets the timer to fire by `at` (it is only ever moved earlier, or set anew once it
    /// fired).
    fn arm(&mut self, at: Instant) {
        match self.tick.as_mut() {
            None => self.tick = Some(Box::pin(tokio::time::sleep_until(at))),
            Some(t) if at < self.tick_at || t.is_elapsed() => t.as_mut().reset(at),
            Some(_) => return,
        }
        self.tick_at = at;
        self.tick_polled = false;
    }

    /// `Some(now)` when the timer fired.
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        if self.tick.is_none() {
            let first = if self.fresh {
                self.since + self.head_timeout.min(CHECK_EVERY)
            } else {
                Instant::now() + CHECK_EVERY
            };
            self.arm(first);
        }
        let tick = self.tick.as_mut()?;
        if self.tick_polled && !tick.is_elapsed() {
            return None;
        }
        self.tick_polled = true;
        match tick.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let now = Instant::now();
                if std::mem::take(&mut self.served) {
                    self.since = now;
                }
                Some(now)
            }
            Poll::Pending => None,
        }
    }

    /// Waits for the next request head (or a reason to stop waiting).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        loop {
            if !self.buf.is_empty() {
                match head::parse(&mut self.buf, self.max_head) {
                    Ok(Some(h)) => {
                        self.head_started = None;
                        return Poll::Ready(Next::Head(Box::new(h)));
                    }
                    Ok(None) => {}
                    Err(r) => return Poll::Ready(Next::Refused(r)),
                }
            }
            if self.eof {
                return Poll::Ready(Next::Close(if self.buf.is_empty() {
                    "client closed"
                } else {
                    "client closed inside a request head"
                }));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Next::Close("read error")),
                Poll::Pending => {}
            }
            if !self.buf.is_empty() && self.head_started.is_none() {
                let now = Instant::now();
                self.head_started = Some(now);
                self.arm(now + self.head_timeout);
            }
            let Some(now) = self.poll_tick(cx) else {
                return Poll::Pending;
            };
            if let Some(next) = self.on_tick_between(now) {
                return Poll::Ready(next);
            }
        }
    }

    /// The timer fired while no request is in flight: decides what is due, and sets the
    /// timer for the next decision.
    fn on_tick_between(&mut self, now: Instant) -> Option<Next> {
        if self.stop.is_cancelled() {
            return Some(Next::Close("listener stopped"));
        }
        let due = if !self.buf.is_empty() || self.fresh {
            let due = self.head_started.unwrap_or(self.since) + self.head_timeout;
            if now >= due {
                metrics::counter!("fiberlb_http_header_timeouts_total").increment(1);
                return Some(Next::Close("request head not received in time"));
            }
            due
        } else {
            if now >= self.since + self.idle_timeout {
                return Some(Next::Close("idle timeout"));
            }
            let park = self.since + PARK_AFTER;
            if now >= park {
                return Some(Next::Park);
            }
            park
        };
        self.arm(due.min(now + CHECK_EVERY));
        None
    }

    /// Answers a refused head and closes.
    async fn refuse(&mut self, r: Refusal) {
        tracing::info!(client = %self.conn.peer, status = r.status.as_u16(), reason = r.reason, "request refused");
        metrics::counter!("fiberlb_http_rejected_requests_total", "reason" => r.reason)
            .increment(1);
        let answer = write::refusal(r.status);
        let io = &mut self.io;
        let _ = tokio::time::timeout(self.head_timeout, async {
            io.write_all(&answer).await?;
            io.shutdown().await
        })
        .await;
    }

    /// Ends the connection: TLS close_notify if it can be sent at once; a plain socket's
    /// FIN goes when it is dropped.
    async fn close(&mut self) {
        if !S::SHUTDOWN_TO_CLOSE {
            return;
        }
        let io = &mut self.io;
        poll_fn(|cx| match Pin::new(&mut *io).poll_shutdown(cx) {
            Poll::Pending => Poll::Ready(()),
            Poll::Ready(_) => Poll::Ready(()),
        })
        .await;
    }

    /// Serves one request: its handler, its body, its response.
    async fn exchange(&mut self, head: Head) -> io::Result<After> {
        let Head {
            req,
            body,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let facts = RequestFacts {
            head: req.method() == Method::HEAD,
            http10: req.version() == Version::HTTP_10,
        };
        let (feed, client_body) = match body {
            BodyKind::None => (None, ClientBody::Empty),
            BodyKind::Length(n) => {
                let shared = Arc::new(Shared::default());
                let body = ClientBody::H1(RecvBody::new(shared.clone(), Some(n)));
                (
                    Some(Feed::new(shared, Decoder::Length(n), expect_continue)),
                    body,
                )
            }
            BodyKind::Chunked => {
                let shared = Arc::new(Shared::default());
                let body = ClientBody::H1(RecvBody::new(shared.clone(), None));
                let decoder = Decoder::Chunked(Default::default());
                (Some(Feed::new(shared, decoder, expect_continue)), body)
            }
        };
        let mut req = req.map(|()| client_body);
        let upgrade_to = upgrade.then(|| {
            let (tx, rx) = oneshot::channel();
            req.extensions_mut().insert(OnUpgrade::new(rx));
            tx
        });
        let handler: Handling = Box::pin(service::handle(self.conn.clone(), req));
        let mut ex = Exchange {
            handler: Some(handler),
            sending: None,
            feed,
            keep_alive,
            facts,
            head_queued: false,
            switching: false,
            done: false,
            yielded: false,
        };
        poll_fn(|cx| self.poll_exchange(&mut ex, cx)).await?;
        if ex.switching {
            if let Some(to) = upgrade_to {
                return Ok(After::Upgrade(to));
            }
            return Ok(After::Close);
        }
        if let Some(feed) = ex.feed.as_mut() {
            // A body the handler left unread: what already arrived may finish it (then
            // the connection goes on); otherwise the rest would be read as a request.
            if !feed.finish_from(&mut self.buf) {
                ex.keep_alive = false;
            }
        }
        Ok(if ex.keep_alive && !self.eof {
            After::KeepAlive
        } else {
            After::Close
        })
    }

    fn poll_exchange(&mut self, ex: &mut Exchange, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut progress = false;
            if ex.feed.as_ref().is_some_and(|f| !f.over) {
                progress |= self.poll_feed(ex, cx);
            }
            if let Some(h) = ex.handler.as_mut() {
                if let Poll::Ready(Ok(resp)) = h.as_mut().poll(cx) {
                    ex.handler = None;
                    self.start_response(ex, resp);
                    progress = true;
                }
            }
            if let Some(s) = ex.sending.as_mut() {
                while self.out.len() < HIGH_WATER {
                    match Pin::new(&mut s.body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                write::data(
                                    &mut self.out,
                                    &mut s.framing,
                                    data,
                                    &mut ex.keep_alive,
                                );
                            }
                            // Trailers have no place in an HTTP/1 response to a client
                            // that did not ask for them: dropped, as hyper does.
                            progress = true;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            // The body failed midway: what was sent cannot be completed;
                            // closing tells the client it is incomplete.
                            tracing::debug!(client = %self.conn.peer, error = %e, "response body failed");
                            ex.keep_alive = false;
                            ex.sending = None;
                            ex.done = true;
                            progress = true;
                            break;
                        }
                        Poll::Ready(None) => {
                            write::end(&mut self.out, s.framing, &mut ex.keep_alive);
                            ex.sending = None;
                            ex.done = true;
                            progress = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            if !self.out.is_empty() {
                if !ex.yielded {
                    // Let the worker run the other tasks that are ready first, then
                    // write: the responses of one turn leave together, and the client
                    // (or load generator) reading them is woken once for all of them
                    // rather than once per response. Waking a sleeping reader is the
                    // costliest part of a small send on loopback (by hand at 64
                    // connections, alternating runs: 61.8-70.3k
                    // requests/s against 56.6-68.3k without).
                    ex.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                match self.out.poll_write(&mut self.io, cx) {
                    Poll::Ready(Ok(_)) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if ex.done && self.out.is_empty() {
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            if progress {
                continue;
            }
            if let Some(now) = self.poll_tick(cx) {
                if self.conn.ctx.shutdown.is_cancelled() {
                    return Poll::Ready(Err(io::Error::other("node shutdown")));
                }
                if self.stop.is_cancelled() {
                    // Graceful: this response is the last one.
                    ex.keep_alive = false;
                }
                self.arm(now + CHECK_EVERY);
                continue;
            }
            return Poll::Pending;
        }
    }

    /// The handler answered: queue the head and start on the body.
    fn start_response(&mut self, ex: &mut Exchange, resp: Response<ResponseBody>) {
        let (parts, body) = resp.into_parts();
        if let Some(feed) = ex.feed.as_mut() {
            if feed.expect_continue && !feed.continued {
                // The client still waits for a 100 before it sends the body, and now
                // never gets one: the connection cannot tell a body from the next
                // request.
                ex.keep_alive = false;
            } else if feed.shared.is_gone() && !feed.finish_from(&mut self.buf) {
                // Answered without its body being read (a local answer, a refusal): what
                // already arrived is skipped; if more is due the connection ends after
                // this response, and the head says so.
                ex.keep_alive = false;
            }
        }
        let framing = write::head(
            &mut self.out,
            &parts,
            ex.facts,
            &body.size_hint(),
            &mut ex.keep_alive,
        );
        ex.head_queued = true;
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            ex.switching = true;
        }
        ex.sending = Some(Sending { body, framing });
    }

    /// Reads and decodes for the request body while it wants more. Returns whether
    /// anything happened.
    fn poll_feed(&mut self, ex: &mut Exchange, cx: &mut Context<'_>) -> bool {
        let Some(feed) = ex.feed.as_mut() else {
            return false;
        };
        feed.shared.conn.register(cx.waker());
        if feed.shared.is_gone() || !feed.shared.wants() {
            return false;
        }
        let mut progress = false;
        if feed.expect_continue && !feed.continued {
            feed.continued = true;
            if !ex.head_queued {
                self.out.small(b"HTTP/1.1 100 Continue\r\n\r\n");
                progress = true;
            }
        }
        while feed.shared.wants() {
            match feed.decoder.decode(&mut self.buf) {
                Ok(Decoded::Data(data)) => {
                    feed.shared.push(data);
                    progress = true;
                }
                Ok(Decoded::End(trailers)) => {
                    feed.shared.end(trailers);
                    feed.over = true;
                    return true;
                }
                Err(why) => {
                    tracing::info!(client = %self.conn.peer, reason = why, "request body refused: malformed chunked framing");
                    metrics::counter!("fiberlb_http_rejected_requests_total", "reason" => why)
                        .increment(1);
                    feed.shared.fail(why);
                    feed.over = true;
                    ex.keep_alive = false;
                    return true;
                }
                Ok(Decoded::Need) => {
                    if self.eof {
                        feed.shared.fail("the client closed before the body ended");
                        feed.over = true;
                        ex.keep_alive = false;
                        return true;
                    }
                    match self.poll_fill(cx) {
                        Poll::Ready(Ok(())) => progress = true,
                        Poll::Ready(Err(_)) => {
                            feed.shared.fail("reading from the client failed");
                            feed.over = true;
                            ex.keep_alive = false;
                            return true;
                        }
                        Poll::Pending => return progress,
                    }
                }
            }
        }
        progress
    }
}

/// One request in progress.
struct Exchange {
    handler: Option<Handling>,
    sending: Option<Sending>,
    feed: Option<Feed>,
    keep_alive: bool,
    facts: RequestFacts,
    head_queued: bool,
    /// The response is `101 Switching Protocols`.
    switching: bool,
    /// The response is complete (or failed).
    done: bool,
    /// The task yielded once before its first write (see `poll_exchange`).
    yielded: bool,
}

/// A response being written.
struct Sending {
    body: ResponseBody,
    framing: Framing,
}

/// The connection's side of a request body.
struct Feed {
    shared: Arc<Shared>,
    decoder: Decoder,
    expect_continue: bool,
    /// The 100 was sent or is no longer due.
    continued: bool,
    /// Nothing more is fed (ended, failed).
    over: bool,
}

impl Feed {
    fn new(shared: Arc<Shared>, decoder: Decoder, expect_continue: bool) -> Self {
        Feed {
            shared,
            decoder,
            expect_continue,
            continued: false,
            over: false,
        }
    }

    /// Finishes the body from what is buffered, discarding it; whether it ended cleanly.
    fn finish_from(&mut self, buf: &mut BytesMut) -> bool {
        while !self.over {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::End(_)) => self.over = true,
                Ok(Decoded::Need) => return false,
                Err(_) => self.over = true,
            }
        }
        self.decoder.is_done()
    }
}
