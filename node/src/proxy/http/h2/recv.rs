//! A request body arriving in DATA frames: the connection pushes what it reads, the
//! request's handler (the upload to the backend) takes it as an `http_body::Body`.
//!
//! Flow control is the back-pressure: the window the client may fill is handed back
//! (WINDOW_UPDATE) only for bytes the handler has taken, so a backend that reads slowly
//! holds the client back instead of the proxy buffering the body. Each chunk taken is
//! reported to the connection as a credit; the connection decides when a credit is
//! worth a WINDOW_UPDATE.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::frame::Reason;

/// The request body ended in error: the stream was reset, or the connection closed.
#[derive(Debug, thiserror::Error)]
#[error("HTTP/2 request body: {0}")]
pub struct RecvError(pub &'static str);

/// Bytes taken by handlers, per stream, waiting to be handed back to the client.
#[derive(Debug, Default)]
pub(crate) struct Credits {
    /// (stream, bytes); bytes 0 with `gone` = the body was dropped.
    taken: Mutex<Vec<Credit>>,
    /// The connection's task.
    pub waker: AtomicWaker,
}

/// One report from a body to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credit {
    pub stream: u32,
    pub bytes: u32,
    /// The body was dropped: nothing more will be taken from this stream.
    pub gone: bool,
    /// The handler wants the body the client holds back for `expect: 100-continue`:
    /// send it a 100.
    pub proceed: bool,
}

impl Credits {
    fn push(&self, c: Credit) {
        lock(&self.taken).push(c);
        self.waker.wake();
    }

    /// Takes the reports so far.
    pub fn drain(&self, into: &mut Vec<Credit>) {
        let mut taken = lock(&self.taken);
        into.append(&mut taken);
    }
}

/// A poisoned lock still holds consistent data here (every critical section is a few
/// assignments), so it is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the connection and the body share for one stream.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
    error: Option<&'static str>,
    waker: Option<Waker>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        let waker = {
            let mut s = lock(&self.state);
            f(&mut s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Data from the client.
    pub fn push(&self, data: Bytes, end: bool) {
        self.update(|s| {
            if !data.is_empty() {
                s.chunks.push_back(data);
            }
            s.end |= end;
        });
    }

    /// The client's trailers; they end the body.
    pub fn trailers(&self, t: HeaderMap) {
        self.update(|s| {
            s.trailers = Some(t);
            s.end = true;
        });
    }

    /// The body cannot complete (`why`: the stream was reset or the connection closed).
    pub fn fail(&self, why: &'static str) {
        self.update(|s| {
            if !s.end {
                s.error = Some(why);
            }
        });
    }

    /// The stream ended in error with `reason` sent or received.
    pub fn reset(&self, reason: Reason) {
        self.fail(if reason == Reason::NO_ERROR {
            "stream closed early"
        } else {
            "stream reset"
        });
    }
}

/// The body a handler reads.
#[derive(Debug)]
pub struct RecvBody {
    stream: u32,
    shared: Arc<Shared>,
    credits: Arc<Credits>,
    /// The declared content-length, for `size_hint`.
    length: Option<u64>,
    /// The client waits for a 100 (Continue) before it sends the body.
    expect_continue: bool,
    done: bool,
}

impl RecvBody {
    pub(crate) fn new(
        stream: u32,
        shared: Arc<Shared>,
        credits: Arc<Credits>,
        length: Option<u64>,
        expect_continue: bool,
    ) -> Self {
        RecvBody {
            stream,
            shared,
            credits,
            length,
            expect_continue,
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
        let mut s = lock(&self.shared.state);
        if let Some(chunk) = s.chunks.pop_front() {
            drop(s);
            self.expect_continue = false;
            self.credits.push(Credit {
                stream: self.stream,
                bytes: chunk.len() as u32,
                gone: false,
                proceed: false,
            });
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(why) = s.error {
            drop(s);
            self.done = true;
            return Poll::Ready(Some(Err(RecvError(why))));
        }
        if let Some(t) = s.trailers.take() {
            drop(s);
            self.done = true;
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if s.end {
            drop(s);
            self.done = true;
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        drop(s);
        if std::mem::take(&mut self.expect_continue) {
            // Like hyper: the 100 goes out when the body is first wanted, so a request
            // answered without its body (401, 413, a redirect) never asks for it.
            self.credits.push(Credit {
                stream: self.stream,
                bytes: 0,
                gone: false,
                proceed: true,
            });
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let s = lock(&self.shared.state);
        s.end && s.chunks.is_empty() && s.trailers.is_none() && s.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        // What was received but never taken is handed back to the connection window.
        let left: usize = {
            let mut s = lock(&self.shared.state);
            s.waker = None;
            s.chunks.drain(..).map(|c| c.len()).sum()
        };
        self.credits.push(Credit {
            stream: self.stream,
            bytes: left as u32,
            gone: true,
            proceed: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_trailers_and_credits_reach_their_sides() {
        let shared = Arc::new(Shared::default());
        let credits = Arc::new(Credits::default());
        let mut body = RecvBody::new(3, shared.clone(), credits.clone(), None, false);
        shared.push(Bytes::from_static(b"abc"), false);
        shared.push(Bytes::from_static(b"de"), false);
        let mut t = HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        shared.trailers(t);
        let got = (&mut body).collect().await.expect("body");
        assert_eq!(
            got.trailers().map(|t| t["grpc-status"].clone()),
            Some("0".parse().unwrap())
        );
        assert_eq!(got.to_bytes(), Bytes::from_static(b"abcde"));
        let mut c = Vec::new();
        credits.drain(&mut c);
        assert_eq!(c.iter().map(|c| c.bytes).sum::<u32>(), 5);
        drop(body);
        credits.drain(&mut c);
        assert_eq!(
            c.last().copied(),
            Some(Credit {
                stream: 3,
                bytes: 0,
                gone: true,
                proceed: false
            })
        );
    }

    #[tokio::test]
    async fn a_reset_ends_the_body_in_error_and_unread_bytes_are_handed_back() {
        let shared = Arc::new(Shared::default());
        let credits = Arc::new(Credits::default());
        let mut body = RecvBody::new(5, shared.clone(), credits.clone(), Some(10), true);
        let waiter = tokio::spawn(async move {
            let r = body.frame().await;
            (body, r.map(|r| r.is_err()))
        });
        tokio::task::yield_now().await;
        shared.reset(Reason::PROTOCOL_ERROR);
        let (body, errored) = waiter.await.expect("task");
        assert_eq!(errored, Some(true));
        drop(body);
        // The body was wanted before anything arrived: the client is told to go on.
        let mut c = Vec::new();
        credits.drain(&mut c);
        assert!(c.contains(&Credit {
            stream: 5,
            bytes: 0,
            gone: false,
            proceed: true
        }));

        let shared = Arc::new(Shared::default());
        let body = RecvBody::new(7, shared.clone(), credits.clone(), None, false);
        shared.push(Bytes::from_static(b"unread"), false);
        drop(body);
        let mut c = Vec::new();
        credits.drain(&mut c);
        assert!(c.contains(&Credit {
            stream: 7,
            bytes: 6,
            gone: true,
            proceed: false
        }));
    }
}
