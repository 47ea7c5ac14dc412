//! A request body read from an HTTP/1 client: the connection decodes what arrives
//! (`Content-Length` or chunked) and hands it over; the request's handler (the upload to
//! the backend) takes it as an `http_body::Body`.
//!
//! Back-pressure: the connection reads the socket for the body only while the body asks
//! for more and holds less than [`HIGH_WATER`], so a backend that reads slowly holds the
//! client back through TCP flow control instead of the proxy buffering the body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

/// Bytes held for a body before the connection stops reading for it.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// The request body ended in error.
#[derive(Debug, thiserror::Error)]
#[error("HTTP/1 request body: {0}")]
pub struct RecvError(pub &'static str);

/// What the connection and the body share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The body wants more than it holds (mirrors `State::want` for a lock-free look).
    want: AtomicBool,
    /// The body was dropped: nothing more will be taken.
    gone: AtomicBool,
    /// The connection's task, woken when the body starts wanting.
    pub conn: AtomicWaker,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    queued: usize,
    trailers: Option<HeaderMap>,
    end: bool,
    error: Option<&'static str>,
    waker: Option<Waker>,
}

/// A poisoned lock still holds consistent data here (every critical section is a few
/// assignments), so it is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Whether the connection should read and decode more for the body.
    pub fn wants(&self) -> bool {
        self.want.load(Ordering::Acquire)
    }

    /// Whether the body was dropped.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let waker = {
            let mut s = lock(&self.state);
            f(&mut s);
            if s.queued >= HIGH_WATER || s.end || s.error.is_some() {
                self.want.store(false, Ordering::Release);
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Data from the client.
    pub fn push(&self, data: Bytes) {
        self.update(|s| {
            if !data.is_empty() {
                s.queued += data.len();
                s.chunks.push_back(data);
            }
        });
    }

    /// The body ended, with the client's trailers if it sent any.
    pub fn end(&self, trailers: Option<HeaderMap>) {
        self.update(|s| {
            s.trailers = trailers;
            s.end = true;
        });
    }

    /// The body cannot complete (`why`: bad framing, the client left).
    pub fn fail(&self, why: &'static str) {
        self.update(|s| {
            if !s.end {
                s.error = Some(why);
            }
        });
    }
}

/// The body a handler reads.
#[derive(Debug)]
pub struct RecvBody {
    shared: Arc<Shared>,
    /// The declared content-length, for `size_hint`.
    length: Option<u64>,
    /// Everything was taken.
    done: bool,
}

impl RecvBody {
    /// A body of `length` bytes (`None`: chunked) fed through `shared`.
    pub(crate) fn new(shared: Arc<Shared>, length: Option<u64>) -> Self {
        RecvBody {
            shared,
            length,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = RecvError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RecvError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let shared = self.shared.clone();
        let mut s = lock(&shared.state);
        if let Some(data) = s.chunks.pop_front() {
            s.queued -= data.len();
            if let Some(n) = self.length.as_mut() {
                *n = n.saturating_sub(data.len() as u64);
            }
            if !s.end && s.error.is_none() && s.queued < HIGH_WATER / 2 {
                self.want(&shared);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(t) = s.trailers.take() {
            self.done = true;
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if s.end {
            self.done = true;
            return Poll::Ready(None);
        }
        if let Some(why) = s.error {
            self.done = true;
            return Poll::Ready(Some(Err(RecvError(why))));
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        drop(s);
        self.want(&shared);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl RecvBody {
    /// Asks the connection for more, waking it when it was not asked already.
    fn want(&self, shared: &Shared) {
        if !shared.want.swap(true, Ordering::AcqRel) {
            shared.conn.wake();
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        self.shared.gone.store(true, Ordering::Release);
        self.shared.want.store(false, Ordering::Release);
        // The connection may be waiting for the body to want more: it should look again.
        self.shared.conn.wake();
    }
}
