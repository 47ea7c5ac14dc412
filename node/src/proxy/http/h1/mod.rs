//! Our HTTP/1.0 and 1.1 server (RFC 9112): keep-alive, pipelining, request bodies with
//! back-pressure, `expect: 100-continue`, upgrades (WebSocket), and the request checks
//! that stop smuggling.
//!
//! Why not hyper's: hyper's server meant a second parser in front of it (hyper accepts a
//! request with both `Content-Length` and `Transfer-Encoding`, so every byte first went
//! through a framing scanner of ours), a socket wrapper for our timeouts, and its
//! dispatcher's own bookkeeping (a clock read on every poll among it). At 64 keep-alive
//! connections through one worker that was ~1.3 µs of CPU per request more than
//! HAProxy's. Here one parse feeds the request, the connection's task polls the
//! request's handler itself, and a small response leaves in one `send`.
//!
//! - [`head`]: request heads and the smuggling checks;
//! - [`decode`]: request bodies off the read buffer (length or chunked);
//! - [`recv`]: the request body as the handler reads it;
//! - [`write`]: response heads, body framing and the write queue;
//! - [`upgrade`]: handing the socket to a tunnel after `101 Switching Protocols`;
//! - [`server`]: the connection.

pub(crate) mod decode;
pub(crate) mod head;
pub(crate) mod recv;
pub(crate) mod server;
pub(crate) mod upgrade;
pub(crate) mod write;

pub use recv::RecvBody;
pub(crate) use server::{serve, Outcome};
pub use upgrade::{OnUpgrade, Upgraded};

/// Runs what reads an HTTP/1 client's bytes (the head parser, then the body decoder the
/// head calls for) over `data` delivered in two reads split at `split`, as the server
/// does. Returns one line per request head, body or refusal, and ends at the first
/// refusal. For fuzzing: the result must not depend on where the bytes were split.
pub fn decode_client_bytes(data: &[u8], split: usize) -> Vec<String> {
    use bytes::BytesMut;
    let split = split.min(data.len());
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut body: Option<(decode::Decoder, usize)> = None;
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            if let Some((decoder, n)) = body.as_mut() {
                match decoder.decode(&mut buf) {
                    Ok(decode::Decoded::Data(d)) => *n += d.len(),
                    Ok(decode::Decoded::End(trailers)) => {
                        out.push(format!("body {n} bytes, trailers {trailers:?}"));
                        body = None;
                    }
                    Ok(decode::Decoded::Need) => break,
                    Err(e) => {
                        out.push(format!("body refused: {e}"));
                        return out;
                    }
                }
                continue;
            }
            match head::parse(&mut buf, 8192) {
                Ok(Some(h)) => {
                    out.push(format!(
                        "{} {} {:?} {:?} {:?} keep-alive {} upgrade {} continue {}",
                        h.req.method(),
                        h.req.uri(),
                        h.req.version(),
                        h.req.headers(),
                        h.body,
                        h.keep_alive,
                        h.upgrade,
                        h.expect_continue
                    ));
                    body = match h.body {
                        head::BodyKind::None => None,
                        head::BodyKind::Length(n) => Some((decode::Decoder::Length(n), 0)),
                        head::BodyKind::Chunked => {
                            Some((decode::Decoder::Chunked(Default::default()), 0))
                        }
                    };
                }
                Ok(None) => break,
                Err(r) => {
                    out.push(format!("refused {} {}", r.status, r.reason));
                    return out;
                }
            }
        }
    }
    out
}
