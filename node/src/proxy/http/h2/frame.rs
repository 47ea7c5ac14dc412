//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte header, parsing a frame out of
//! bytes read from the client, and writing the frames a server sends.
//!
//! Parsing borrows nothing: a frame's payload is split off the read buffer as `Bytes`, so
//! a DATA payload goes on to the request body without a copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The client connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Size of a frame header.
pub(crate) const HEADER_LEN: usize = 9;
/// The largest frame payload a peer may send before it learns our settings, and the one
/// we keep (we never raise SETTINGS_MAX_FRAME_SIZE).
pub(crate) const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window both sides start with before SETTINGS change it.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types (RFC 9113 section 6).
pub(crate) mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub(crate) mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub(crate) mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RFC 9113 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);

    /// The code's name, for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:x})", self.name(), self.0)
    }
}

/// A violation that ends the whole connection (GOAWAY) or one stream (RST_STREAM).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum H2Error {
    /// The connection is unusable: GOAWAY with this code, then close.
    #[error("connection error {0}: {1}")]
    Connection(Reason, &'static str),
    /// Only this stream is: RST_STREAM with this code.
    #[error("stream {0} error {1}: {2}")]
    Stream(u32, Reason, &'static str),
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// Reads a header from the first 9 bytes of `b` (None when fewer are there).
    pub fn parse(b: &[u8]) -> Option<Head> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    pub(crate) fn write(self, out: &mut BytesMut) {
        let len = self.len.to_be_bytes();
        out.put_slice(&len[1..]);
        out.put_u8(self.kind);
        out.put_u8(self.flags);
        out.put_u32(self.stream);
    }
}

/// One SETTINGS parameter.
pub(crate) type Setting = (u16, u32);

/// A frame as received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// DATA: the payload without padding; `flow` is what counts against flow control
    /// (the whole frame payload, padding included).
    Data {
        stream: u32,
        data: Bytes,
        end: bool,
        flow: u32,
    },
    /// HEADERS: a header block fragment (padding and priority removed).
    Headers {
        stream: u32,
        block: Bytes,
        end_stream: bool,
        end_headers: bool,
    },
    /// CONTINUATION of a header block.
    Continuation {
        stream: u32,
        block: Bytes,
        end_headers: bool,
    },
    Priority,
    Reset {
        stream: u32,
        reason: Reason,
    },
    Settings {
        ack: bool,
        values: Vec<Setting>,
    },
    PushPromise,
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last: u32,
        reason: Reason,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    /// A frame type this server does not know; ignored (RFC 9113 section 4.1).
    Unknown,
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` when more bytes are
/// needed. `max_frame` is the largest payload we accept (our SETTINGS_MAX_FRAME_SIZE).
pub(crate) fn parse(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Frame>, H2Error> {
    let Some(head) = Head::parse(buf) else {
        return Ok(None);
    };
    if head.len > max_frame {
        return Err(H2Error::Connection(
            Reason::FRAME_SIZE_ERROR,
            "frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let total = HEADER_LEN + head.len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(head.len as usize).freeze();
    decode(head, payload).map(Some)
}

/// The frame `head` introduces, from its `payload`.
fn decode(head: Head, mut payload: Bytes) -> Result<Frame, H2Error> {
    use H2Error::Connection as Conn;
    let stream = head.stream;
    let need_stream = |what: &'static str| {
        if stream == 0 {
            Err(Conn(Reason::PROTOCOL_ERROR, what))
        } else {
            Ok(())
        }
    };
    let no_stream = |what: &'static str| {
        if stream != 0 {
            Err(Conn(Reason::PROTOCOL_ERROR, what))
        } else {
            Ok(())
        }
    };
    match head.kind {
        kind::DATA => {
            need_stream("DATA on stream 0")?;
            let flow = head.len;
            let data = unpad(head.flags, &mut payload, "DATA padding too long")?;
            Ok(Frame::Data {
                stream,
                data,
                end: head.flags & flag::END_STREAM != 0,
                flow,
            })
        }
        kind::HEADERS => {
            need_stream("HEADERS on stream 0")?;
            let mut block = unpad(head.flags, &mut payload, "HEADERS padding too long")?;
            if head.flags & flag::PRIORITY != 0 {
                if block.len() < 5 {
                    return Err(Conn(Reason::FRAME_SIZE_ERROR, "HEADERS priority truncated"));
                }
                let dependency = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                if dependency & 0x7fff_ffff == stream {
                    return Err(H2Error::Stream(
                        stream,
                        Reason::PROTOCOL_ERROR,
                        "stream depends on itself",
                    ));
                }
                block.advance(5);
            }
            Ok(Frame::Headers {
                stream,
                block,
                end_stream: head.flags & flag::END_STREAM != 0,
                end_headers: head.flags & flag::END_HEADERS != 0,
            })
        }
        kind::CONTINUATION => {
            need_stream("CONTINUATION on stream 0")?;
            Ok(Frame::Continuation {
                stream,
                block: payload,
                end_headers: head.flags & flag::END_HEADERS != 0,
            })
        }
        kind::PRIORITY => {
            need_stream("PRIORITY on stream 0")?;
            if payload.len() != 5 {
                return Err(H2Error::Stream(
                    stream,
                    Reason::FRAME_SIZE_ERROR,
                    "PRIORITY is not 5 bytes",
                ));
            }
            Ok(Frame::Priority)
        }
        kind::RST_STREAM => {
            need_stream("RST_STREAM on stream 0")?;
            let b: [u8; 4] = payload[..]
                .try_into()
                .map_err(|_| Conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes"))?;
            Ok(Frame::Reset {
                stream,
                reason: Reason(u32::from_be_bytes(b)),
            })
        }
        kind::SETTINGS => {
            no_stream("SETTINGS on a stream")?;
            let ack = head.flags & flag::ACK != 0;
            if ack && !payload.is_empty() {
                return Err(Conn(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ack with a payload",
                ));
            }
            if !payload.len().is_multiple_of(6) {
                return Err(Conn(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS not a multiple of 6",
                ));
            }
            let values = payload
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
            Ok(Frame::Settings { ack, values })
        }
        kind::PUSH_PROMISE => Ok(Frame::PushPromise),
        kind::PING => {
            no_stream("PING on a stream")?;
            let data: [u8; 8] = payload[..]
                .try_into()
                .map_err(|_| Conn(Reason::FRAME_SIZE_ERROR, "PING is not 8 bytes"))?;
            Ok(Frame::Ping {
                ack: head.flags & flag::ACK != 0,
                data,
            })
        }
        kind::GOAWAY => {
            no_stream("GOAWAY on a stream")?;
            if payload.len() < 8 {
                return Err(Conn(
                    Reason::FRAME_SIZE_ERROR,
                    "GOAWAY shorter than 8 bytes",
                ));
            }
            Ok(Frame::GoAway {
                last: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff,
                reason: Reason(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ])),
            })
        }
        kind::WINDOW_UPDATE => {
            let b: [u8; 4] = payload[..]
                .try_into()
                .map_err(|_| Conn(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes"))?;
            Ok(Frame::WindowUpdate {
                stream,
                increment: u32::from_be_bytes(b) & 0x7fff_ffff,
            })
        }
        _ => Ok(Frame::Unknown),
    }
}

/// Removes the padding of a PADDED frame.
fn unpad(flags: u8, payload: &mut Bytes, what: &'static str) -> Result<Bytes, H2Error> {
    if flags & flag::PADDED == 0 {
        return Ok(std::mem::take(payload));
    }
    let Some(&pad) = payload.first() else {
        return Err(H2Error::Connection(Reason::FRAME_SIZE_ERROR, what));
    };
    let pad = pad as usize;
    if pad >= payload.len() {
        return Err(H2Error::Connection(Reason::PROTOCOL_ERROR, what));
    }
    let end = payload.len() - pad;
    Ok(payload.slice(1..end))
}

/// Writes a SETTINGS frame with `values`.
pub(crate) fn settings(out: &mut BytesMut, values: &[Setting]) {
    Head {
        len: (values.len() * 6) as u32,
        kind: kind::SETTINGS,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for (id, v) in values {
        out.put_u16(*id);
        out.put_u32(*v);
    }
}

/// Writes a SETTINGS acknowledgement.
pub(crate) fn settings_ack(out: &mut BytesMut) {
    Head {
        len: 0,
        kind: kind::SETTINGS,
        flags: flag::ACK,
        stream: 0,
    }
    .write(out);
}

/// Writes a PING acknowledgement echoing `data`.
pub(crate) fn ping_ack(out: &mut BytesMut, data: [u8; 8]) {
    Head {
        len: 8,
        kind: kind::PING,
        flags: flag::ACK,
        stream: 0,
    }
    .write(out);
    out.put_slice(&data);
}

/// Writes a WINDOW_UPDATE.
pub(crate) fn window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    Head {
        len: 4,
        kind: kind::WINDOW_UPDATE,
        flags: 0,
        stream,
    }
    .write(out);
    out.put_u32(increment);
}

/// Writes a RST_STREAM.
pub(crate) fn reset(out: &mut BytesMut, stream: u32, reason: Reason) {
    Head {
        len: 4,
        kind: kind::RST_STREAM,
        flags: 0,
        stream,
    }
    .write(out);
    out.put_u32(reason.0);
}

/// Writes a GOAWAY naming the last stream we process.
pub(crate) fn go_away(out: &mut BytesMut, last: u32, reason: Reason) {
    Head {
        len: 8,
        kind: kind::GOAWAY,
        flags: 0,
        stream: 0,
    }
    .write(out);
    out.put_u32(last);
    out.put_u32(reason.0);
}

/// Writes a DATA frame carrying `data` (at most the peer's frame size: the caller cuts).
pub(crate) fn data(out: &mut BytesMut, stream: u32, data: &[u8], end: bool) {
    Head {
        len: data.len() as u32,
        kind: kind::DATA,
        flags: if end { flag::END_STREAM } else { 0 },
        stream,
    }
    .write(out);
    out.put_slice(data);
}

/// Writes a header block as HEADERS plus CONTINUATION frames of at most `max_frame`
/// bytes each.
pub(crate) fn headers(out: &mut BytesMut, stream: u32, block: &[u8], end: bool, max_frame: u32) {
    let max = max_frame.max(1) as usize;
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let last = chunks.peek().is_none();
    Head {
        len: first.len() as u32,
        kind: kind::HEADERS,
        flags: (if end { flag::END_STREAM } else { 0 })
            | (if last { flag::END_HEADERS } else { 0 }),
        stream,
    }
    .write(out);
    out.put_slice(first);
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        Head {
            len: chunk.len() as u32,
            kind: kind::CONTINUATION,
            flags: if last { flag::END_HEADERS } else { 0 },
            stream,
        }
        .write(out);
        out.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        Head {
            len: payload.len() as u32,
            kind,
            flags,
            stream,
        }
        .write(&mut b);
        b.put_slice(payload);
        b
    }

    #[test]
    fn a_frame_arriving_in_pieces_is_parsed_once_complete() {
        let whole = raw(kind::DATA, flag::END_STREAM, 1, b"hello");
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(parse(&mut buf, DEFAULT_MAX_FRAME), Ok(None), "byte {i}");
            buf.put_u8(*byte);
        }
        assert_eq!(
            parse(&mut buf, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Data {
                stream: 1,
                data: Bytes::from_static(b"hello"),
                end: true,
                flow: 5
            }))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn padding_is_removed_and_still_counts_for_flow_control() {
        let mut buf = raw(kind::DATA, flag::PADDED, 3, b"\x03abcXYZ");
        assert_eq!(
            parse(&mut buf, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Data {
                stream: 3,
                data: Bytes::from_static(b"abc"),
                end: false,
                flow: 7
            }))
        );
        let mut bad = raw(kind::DATA, flag::PADDED, 3, b"\x07abc");
        assert!(matches!(
            parse(&mut bad, DEFAULT_MAX_FRAME),
            Err(H2Error::Connection(Reason::PROTOCOL_ERROR, _))
        ));
    }

    #[test]
    fn headers_with_priority_and_padding_keep_only_the_block() {
        let mut p = vec![2u8]; // pad length
        p.extend_from_slice(&[0, 0, 0, 0, 16]); // dependency 0, weight 16
        p.extend_from_slice(b"blk");
        p.extend_from_slice(&[0, 0]);
        let mut buf = raw(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            5,
            &p,
        );
        assert_eq!(
            parse(&mut buf, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Headers {
                stream: 5,
                block: Bytes::from_static(b"blk"),
                end_stream: false,
                end_headers: true
            }))
        );
    }

    #[test]
    fn oversized_and_malformed_frames_are_connection_errors() {
        let mut big = raw(kind::DATA, 0, 1, &vec![0; DEFAULT_MAX_FRAME as usize + 1]);
        assert!(matches!(
            parse(&mut big, DEFAULT_MAX_FRAME),
            Err(H2Error::Connection(Reason::FRAME_SIZE_ERROR, _))
        ));
        let mut ping = raw(kind::PING, 0, 0, b"1234567");
        assert!(parse(&mut ping, DEFAULT_MAX_FRAME).is_err());
        let mut settings = raw(kind::SETTINGS, 0, 0, b"12345");
        assert!(parse(&mut settings, DEFAULT_MAX_FRAME).is_err());
        let mut data0 = raw(kind::DATA, 0, 0, b"x");
        assert!(parse(&mut data0, DEFAULT_MAX_FRAME).is_err());
        let mut unknown = raw(0xfa, 0, 7, b"whatever");
        assert_eq!(
            parse(&mut unknown, DEFAULT_MAX_FRAME),
            Ok(Some(Frame::Unknown))
        );
    }

    #[test]
    fn a_long_header_block_is_split_into_continuations() {
        let block: Vec<u8> = (0..40u8).collect();
        let mut out = BytesMut::new();
        headers(&mut out, 9, &block, true, 16);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(f) = parse(&mut out, DEFAULT_MAX_FRAME).expect("valid") {
            frames += 1;
            match f {
                Frame::Headers {
                    block,
                    end_stream,
                    end_headers,
                    ..
                } => {
                    assert!(end_stream && !end_headers);
                    got.extend_from_slice(&block);
                }
                Frame::Continuation {
                    block, end_headers, ..
                } => {
                    assert_eq!(end_headers, frames == 3);
                    got.extend_from_slice(&block);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(frames, 3);
        assert_eq!(got, block);
    }
}
