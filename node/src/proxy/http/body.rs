//! Body types of the proxy. Bodies stream frame by frame in both directions (hyper's
//! flow control is the back-pressure); nothing here buffers a whole body.
//!
//! - [`RequestBody`]: the client's body on its way to a backend: counts bytes, enforces
//!   `[proxy] max_body_size_bytes` on bodies of unknown length, and can hold one frame
//!   read ahead (see `service::read_first_frame`).
//! - [`ResponseBody`]: what goes back to the client (a backend body or a local answer):
//!   counts bytes, keeps the request's guards alive until the last byte is sent, then
//!   writes the access log line. It also ends the body when the backend must be cut off
//!   (drain deadline) or the node shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::access::{Record, RequestMetrics};
use super::io::InFlight;
use super::BoxError;
use crate::proxy::ProxyContext;
use crate::state::BackendState;

/// A response body that is always ready checks for a cut-off every this many frames.
const CUT_CHECK_EVERY: u32 = 16;

/// Any body the proxy sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The request body grew past `[proxy] max_body_size_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// What happened to a request body, seen by the request handler after a failed send.
#[derive(Debug, Default)]
pub struct BodyStatus {
    /// Bytes read from the client.
    pub bytes: AtomicU64,
    /// The size limit was exceeded.
    pub too_large: AtomicBool,
    /// Reading from the client failed (bad framing, reset, timeout).
    pub client_failed: AtomicBool,
}

/// A request body as the client connection delivers it: our HTTP/1 or HTTP/2 server's.
pub enum ClientBody {
    /// From our HTTP/1 server.
    H1(super::h1::RecvBody),
    /// From our HTTP/2 server.
    H2(super::h2::RecvBody),
    /// No body.
    Empty,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            ClientBody::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The client's request body on its way to a backend.
pub struct RequestBody {
    inner: ClientBody,
    first: Option<Frame<Bytes>>,
    seen: u64,
    limit: Option<u64>,
    status: Arc<BodyStatus>,
}

impl RequestBody {
    /// Wraps `inner`; `limit` is the largest accepted body (None = unlimited).
    pub fn new(inner: ClientBody, limit: Option<u64>, status: Arc<BodyStatus>) -> Self {
        RequestBody {
            inner,
            first: None,
            seen: 0,
            limit,
            status,
        }
    }

    /// Puts back a frame read ahead; it is returned first.
    pub fn unread(&mut self, frame: Frame<Bytes>) {
        self.first = Some(frame);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    self.seen += n;
                    self.status.bytes.fetch_add(n, Ordering::Relaxed);
                    if let Some(limit) = self.limit.filter(|l| self.seen > *l) {
                        self.status.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.status.client_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.first {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}

/// Holds one in-flight request on a backend: counted in `BackendStats.active` (what
/// least-connections balancing and the drain wait look at) until dropped.
#[derive(Debug)]
pub struct Active(Arc<BackendState>);

impl Active {
    /// Counts a request on `state` if the backend has room under `limit` (its
    /// `max_connections`; `None` = no limit): the check and the count are one atomic step,
    /// so requests racing for the last slot cannot both take it.
    pub fn acquire(state: Arc<BackendState>, limit: Option<u32>) -> Option<Self> {
        state.stats.try_acquire(limit).then_some(Active(state))
    }
}

impl Active {
    /// Counts the request as sent (the status page shows the rate of requests sent).
    pub fn sent(&self) {
        self.0.stats.started.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a response body keeps alive until its last byte is sent.
pub struct Finish {
    /// The access log record, written when the body ends.
    pub record: Record,
    /// The connection's in-flight count.
    pub in_flight: Option<InFlight>,
    /// The backend's active count.
    pub active: Option<Active>,
}

/// The response on its way to the client. See the module documentation.
pub struct ResponseBody {
    inner: ProxyBody,
    finish: Option<Finish>,
    sent: u64,
    /// The request's metric handles (its response bytes count as they go).
    metrics: Arc<RequestMetrics>,
    /// The node's proxy context: its shutdown ends the body early.
    ctx: Arc<ProxyContext>,
    /// Fires when the body must stop early (backend drain deadline).
    cut: Option<Arc<CancellationToken>>,
    /// Waits on the shutdown and `cut`, made only once the body has to wait for its
    /// backend: a body that is ready whenever it is polled (the common small response)
    /// only checks the tokens, which costs neither an allocation nor a waiter registration.
    waits: Vec<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Polls since the cancellation tokens were last asked.
    ready_polls: u32,
}

impl ResponseBody {
    /// Wraps `inner`; the node's shutdown (in `ctx`) and `cut` (the backend's) end it early.
    pub fn new(
        inner: ProxyBody,
        finish: Finish,
        cut: Option<Arc<CancellationToken>>,
        ctx: Arc<ProxyContext>,
    ) -> Self {
        let metrics = finish.record.metrics();
        ResponseBody {
            inner,
            finish: Some(finish),
            sent: 0,
            metrics,
            ctx,
            cut,
            waits: Vec::new(),
            ready_polls: 0,
        }
    }

    /// Whether the body must stop now. A `CancellationToken` answers under a lock (the
    /// node's shutdown token is one lock for every request of every worker), so a body
    /// that keeps being ready asks every [`CUT_CHECK_EVERY`] frames; one that waits for
    /// its backend is woken by the tokens themselves (`poll_cut`).
    fn cut_off(&mut self) -> bool {
        self.ready_polls = self.ready_polls.wrapping_add(1);
        if !self.ready_polls.is_multiple_of(CUT_CHECK_EVERY) {
            return false;
        }
        self.ctx.shutdown.is_cancelled() || self.cut.as_ref().is_some_and(|c| c.is_cancelled())
    }

    /// Registers for a wake-up on cancellation; true if one has fired meanwhile.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if self.waits.is_empty() {
            self.waits = std::iter::once(&self.ctx.shutdown)
                .chain(self.cut.as_deref())
                .map(|t| Box::pin(t.clone().cancelled_owned()))
                .collect();
        }
        self.waits
            .iter_mut()
            .any(|w| w.as_mut().poll(cx).is_ready())
    }

    fn done(&mut self, error: Option<String>) {
        if let Some(Finish {
            mut record,
            in_flight,
            active,
        }) = self.finish.take()
        {
            record.bytes_out = self.sent;
            if error.is_some() {
                record.error = error;
            }
            // The backend and the connection are free again before the line is written.
            drop(active);
            drop(in_flight);
            record.emit(&self.metrics);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let cut = |this: &mut Self| {
            this.cut = None;
            this.waits = Vec::new();
            this.done(Some(
                "response cut off: backend closed or node shutting down".into(),
            ));
            Poll::Ready(Some(Err("response cut off".into())))
        };
        if self.cut_off() {
            return cut(&mut self);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() && self.poll_cut(cx) {
            return cut(&mut self);
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    self.sent += n;
                    self.metrics.sent(n);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("backend response body failed: {e}");
                self.done(Some(why));
            }
            Poll::Ready(None) => self.done(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let bodyless = self.finish.as_ref().is_some_and(|f| f.record.bodyless());
        if self.finish.is_some() {
            let cut_short = !bodyless && !self.inner.is_end_stream();
            let why = cut_short.then(|| "client went away before the response ended".to_string());
            self.done(why);
        }
    }
}
