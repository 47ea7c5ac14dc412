//! A backend response body read straight from the backend connection by the task that
//! writes it to the client (no connection task in between), which gives the connection
//! back to the pool once the body has been read to its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio_util::io::poll_read_buf;

use super::super::client::BackendStream;
use super::super::BoxError;
use super::decode::{Chunked, Framing, ProtoError, Step};
use super::pool::IdlePool;
use super::upload::Upload;

/// First read size; doubled while reads fill the buffer, up to [`MAX_READ`].
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// The connection a body is read from.
#[derive(Debug)]
pub(super) struct Conn {
    pub stream: BackendStream,
    /// Bytes read but not yet returned.
    pub buf: BytesMut,
}

impl Conn {
    /// Reads more into the buffer: `Ok(0)` at end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < want / 2 {
            self.buf.reserve(want);
        }
        poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

/// A response body from an HTTP/1 backend. Dropped before its end, it closes the
/// connection (the rest of the response would be in the way of the next one).
#[derive(Debug)]
pub struct BackendBody {
    conn: Option<Conn>,
    /// The rest of the request, when the backend answered before it was all sent: sent
    /// from here while the response streams.
    upload: Option<Upload>,
    state: State,
    /// Whether the connection may be reused once the body has ended.
    reusable: bool,
    pool: Arc<IdlePool>,
    read_size: usize,
}

impl BackendBody {
    pub(super) fn new(
        conn: Conn,
        upload: Upload,
        framing: Framing,
        reusable: bool,
        pool: Arc<IdlePool>,
    ) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::default()),
            Framing::Close => State::Close,
        };
        let mut body = BackendBody {
            conn: Some(conn),
            upload: (!upload.is_done()).then_some(upload),
            state,
            reusable,
            pool,
            read_size: MIN_READ,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The body has been read to its end: the connection goes back to the pool when the
    /// backend keeps it and nothing unread follows.
    fn finish(&mut self) {
        self.state = State::Done;
        // A request not completely sent leaves the connection mid-message.
        let sent = self.upload.take().is_none();
        if let Some(conn) = self.conn.take() {
            if self.reusable && sent && conn.buf.is_empty() {
                self.pool.put(conn.stream);
            }
        }
    }

    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BoxError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err("backend connection already released".into()));
        };
        match conn.poll_fill(cx, self.read_size) {
            Poll::Ready(Ok(n)) => {
                if n >= self.read_size / 2 {
                    self.read_size = (self.read_size * 2).min(MAX_READ);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(Box::new(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        match self.conn.as_mut() {
            Some(c) => c.buf.split_to(n).freeze(),
            None => Bytes::new(),
        }
    }

    fn buffered(&self) -> &[u8] {
        self.conn.as_ref().map_or(&[], |c| &c.buf[..])
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let (Some(upload), Some(conn)) = (this.upload.as_mut(), this.conn.as_mut()) {
            if let Err(e) = upload.poll_progress(&mut conn.stream, cx) {
                // The client's request body failed: the exchange cannot complete.
                return this.fail(Box::new(e));
            }
            if upload.is_done() {
                this.upload = None;
            }
        }
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    let left = *left;
                    let have = this.buffered().len();
                    if have > 0 {
                        let n = usize::try_from(left).unwrap_or(usize::MAX).min(have);
                        let rest = left - n as u64;
                        this.state = State::Length(rest);
                        let data = this.take(n);
                        if rest == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match this.fill(cx) {
                        Poll::Ready(Ok(0)) => {
                            this.conn = None;
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(format!(
                                "backend closed the connection {left} bytes before the end of the body"
                            )
                            .into())));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return this.fail(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Chunked(decoder) => {
                    let step = match this.conn.as_ref() {
                        Some(c) => decoder.step(&c.buf),
                        None => Err(ProtoError("backend connection already released")),
                    };
                    match step {
                        Ok(Step::Data(n)) => {
                            return Poll::Ready(Some(Ok(Frame::data(this.take(n)))))
                        }
                        Ok(Step::Skip(n)) => {
                            if let Some(c) = this.conn.as_mut() {
                                c.buf.advance(n);
                            }
                        }
                        Ok(Step::Trailers(t, n)) => {
                            if let Some(c) = this.conn.as_mut() {
                                c.buf.advance(n);
                            }
                            this.finish();
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                        Ok(Step::End(n)) => {
                            if let Some(c) = this.conn.as_mut() {
                                c.buf.advance(n);
                            }
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(Step::NeedMore) => match this.fill(cx) {
                            Poll::Ready(Ok(0)) => {
                                return this.fail(
                                    "backend closed the connection inside a chunked body".into(),
                                )
                            }
                            Poll::Ready(Ok(_)) => {}
                            Poll::Ready(Err(e)) => return this.fail(e),
                            Poll::Pending => return Poll::Pending,
                        },
                        Err(e) => return this.fail(Box::new(e)),
                    }
                }
                State::Close => {
                    let have = this.buffered().len();
                    if have > 0 {
                        return Poll::Ready(Some(Ok(Frame::data(this.take(have)))));
                    }
                    match this.fill(cx) {
                        Poll::Ready(Ok(0)) => {
                            this.conn = None;
                            this.state = State::Done;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return this.fail(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl BackendBody {
    fn fail(&mut self, e: BoxError) -> Polled {
        self.conn = None;
        self.state = State::Done;
        Poll::Ready(Some(Err(e)))
    }
}
