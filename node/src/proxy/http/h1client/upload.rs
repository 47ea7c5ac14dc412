//! Sending a request to a backend: its head, then its body frame by frame, framed as the
//! head announced. It runs beside the reading of the response, first while waiting for
//! the head and then, if the backend answered before the whole body was sent (a
//! streaming backend, or an early 413), from the response body's polls, so neither
//! direction waits for the other.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame};
use tokio::io::AsyncWrite;

use super::super::body::ProxyBody;
use super::super::client::BackendStream;
use super::encode::{self, BodyFraming};
use super::SendError;

/// Request bytes buffered ahead of the socket at most.
const MAX_PENDING: usize = 64 * 1024;

/// A request on its way to the backend.
pub(super) struct Upload {
    body: ProxyBody,
    /// The body has been read to its end (or has none).
    body_done: bool,
    /// The request head, written from `head_sent` on before anything in `out`. Kept
    /// whole (not consumed) so that a request resent on a new connection needs no copy.
    head: Bytes,
    head_sent: usize,
    /// Body bytes encoded but not yet written.
    out: BytesMut,
    framing: BodyFraming,
    /// Body bytes taken (checked against a declared length).
    sent: u64,
    /// A body frame was taken from the client: the request can no longer be resent.
    pub touched: bool,
    /// Writing failed: nothing more is sent (the response may still be readable).
    write_error: Option<io::Error>,
}

impl Upload {
    /// Starts with the encoded `head`.
    pub fn new(head: Bytes, body: ProxyBody, framing: BodyFraming) -> Self {
        Upload {
            body,
            body_done: matches!(framing, BodyFraming::None | BodyFraming::Length(0)),
            head,
            head_sent: 0,
            out: BytesMut::new(),
            framing,
            sent: 0,
            touched: false,
            write_error: None,
        }
    }

    /// Everything was sent.
    pub fn is_done(&self) -> bool {
        self.body_done && self.pending() == 0 && self.write_error.is_none()
    }

    /// Bytes encoded and not yet written.
    fn pending(&self) -> usize {
        self.head.len() - self.head_sent + self.out.len()
    }

    /// The write error, if writing failed.
    pub fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    /// The same request from its start, for sending it again on another connection
    /// (only if not `touched`: no body byte was taken yet).
    pub fn restart(self) -> Upload {
        Upload::new(self.head, self.body, self.framing)
    }

    /// Moves the request as far as it can go without waiting; `Ok(true)` if anything
    /// moved. Fails only when the client's body does (a write error is kept instead).
    pub fn poll_progress(
        &mut self,
        stream: &mut BackendStream,
        cx: &mut Context<'_>,
    ) -> Result<bool, SendError> {
        let mut progress = false;
        loop {
            let mut moved = false;
            while !self.body_done && self.write_error.is_none() && self.out.len() < MAX_PENDING {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.touched = true;
                        moved = true;
                        self.encode(frame)?;
                    }
                    Poll::Ready(None) => {
                        self.touched = true;
                        moved = true;
                        self.end(None)?;
                    }
                    Poll::Ready(Some(Err(e))) => return Err(SendError::Body(e)),
                    Poll::Pending => break,
                }
            }
            while self.pending() > 0 && self.write_error.is_none() {
                let unsent_head = self.head_sent < self.head.len();
                let bytes = if unsent_head {
                    &self.head[self.head_sent..]
                } else {
                    &self.out[..]
                };
                match Pin::new(&mut *stream).poll_write(cx, bytes) {
                    Poll::Ready(Ok(0)) => self.write_error = Some(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) if unsent_head => {
                        self.head_sent += n;
                        moved = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.out.advance(n);
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => self.write_error = Some(e),
                    Poll::Pending => break,
                }
                if self.write_error.is_some() {
                    self.head_sent = self.head.len();
                    self.out.clear();
                }
            }
            if !moved {
                return Ok(progress);
            }
            progress = true;
        }
    }

    fn encode(&mut self, frame: Frame<bytes::Bytes>) -> Result<(), SendError> {
        self.head_into_out();
        match frame.into_data() {
            Ok(data) => {
                self.sent += data.len() as u64;
                match self.framing {
                    BodyFraming::Chunked => encode::chunk(&mut self.out, &data),
                    BodyFraming::Length(n) if self.sent <= n => self.out.put_slice(&data),
                    _ => {
                        return Err(SendError::Body(
                            "request body longer than its Content-Length".into(),
                        ))
                    }
                }
                Ok(())
            }
            Err(frame) => match frame.into_trailers() {
                // Trailers end the body; HTTP/1 carries them only in chunked coding.
                Ok(trailers) => self.end(Some(&trailers)),
                Err(_) => Ok(()),
            },
        }
    }

    /// Moves what is unsent of the head in front of the body bytes, so that the head and
    /// the body's first bytes leave in one write. Only once a body frame was taken: the
    /// request cannot be resent then, so the head is not needed whole any more.
    fn head_into_out(&mut self) {
        if self.head_sent < self.head.len() {
            let mut out = BytesMut::with_capacity(self.pending());
            out.put_slice(&self.head[self.head_sent..]);
            out.put_slice(&self.out);
            self.out = out;
            self.head_sent = self.head.len();
        }
    }

    fn end(&mut self, trailers: Option<&http::HeaderMap>) -> Result<(), SendError> {
        if self.body_done {
            return Ok(());
        }
        self.head_into_out();
        self.body_done = true;
        match self.framing {
            BodyFraming::Chunked => encode::last_chunk(&mut self.out, trailers),
            BodyFraming::Length(n) if self.sent != n => {
                return Err(SendError::Body(
                    format!("request body ended after {} of {n} bytes", self.sent).into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("body_done", &self.body_done)
            .field("pending", &self.pending())
            .field("sent", &self.sent)
            .field("write_error", &self.write_error)
            .finish()
    }
}
