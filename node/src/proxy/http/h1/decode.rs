//! Taking a request body off the front of the connection's read buffer, by length or
//! chunk by chunk (the chunked decoder is the backend client's, which is just as strict:
//! a malformed chunk fails the body instead of being read some other way).

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use super::super::h1client::decode::{Chunked, Step};

/// What the front of the buffer held.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// Body data.
    Data(Bytes),
    /// The body ended (with the client's trailers, if any).
    End(Option<HeaderMap>),
    /// More bytes are needed.
    Need,
}

/// A request body decoder.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
    /// The body ended.
    Done,
}

impl Decoder {
    /// Whether the whole body was taken.
    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }

    /// Takes what it can from the front of `buf`; `Err` names what is malformed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
        loop {
            match self {
                Decoder::Done => return Ok(Decoded::End(None)),
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::Need);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    let data = buf.split_to(n).freeze();
                    if *left == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Decoded::Data(data));
                }
                Decoder::Chunked(c) => match c.step(buf).map_err(|e| e.0)? {
                    Step::Data(n) => return Ok(Decoded::Data(buf.split_to(n).freeze())),
                    Step::Skip(n) => buf.advance(n),
                    Step::Trailers(t, n) => {
                        buf.advance(n);
                        *self = Decoder::Done;
                        return Ok(Decoded::End(Some(t)));
                    }
                    Step::End(n) => {
                        buf.advance(n);
                        *self = Decoder::Done;
                        return Ok(Decoded::End(None));
                    }
                    Step::NeedMore => return Ok(Decoded::Need),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed `piece` bytes at a time: the body, and what was left over.
    fn decode(
        mut d: Decoder,
        wire: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => body.extend_from_slice(&b),
                Decoded::End(_) => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&wire[fed..]);
                    return Ok((body, rest));
                }
                Decoded::Need if fed == wire.len() => return Err("incomplete"),
                Decoded::Need => {
                    let end = (fed + piece).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn bodies_end_where_their_framing_says_whatever_the_reads() {
        for piece in [1, 3, 1000] {
            let (body, rest) = decode(Decoder::Length(5), b"helloGET /", piece).unwrap();
            assert_eq!((&body[..], &rest[..]), (&b"hello"[..], &b"GET /"[..]));
            let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /";
            let (body, rest) = decode(Decoder::Chunked(Chunked::default()), wire, piece).unwrap();
            assert_eq!((&body[..], &rest[..]), (&b"hello world"[..], &b"GET /"[..]));
        }
    }

    #[test]
    fn malformed_chunks_fail() {
        for wire in [
            &b"zz\r\n"[..],
            b"0x3\r\nabc\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcXY0\r\n\r\n",
            b"-1\r\n",
            b" 5\r\n",
            b"11111111111111111\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(decode(Decoder::Chunked(Chunked::default()), wire, 1000).is_err());
        }
    }
}
