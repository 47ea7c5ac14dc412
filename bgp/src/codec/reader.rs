//! Bounds-checked cursor over untrusted bytes: every read returns the caller's chosen
//! decode error instead of panicking.

use super::malformed;
use crate::error::BgpError;

/// What to report when a read runs past the end: (reason, NOTIFICATION code, subcode).
pub(crate) type ErrSpec = (&'static str, u8, u8);

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize, err: ErrSpec) -> Result<&'a [u8], BgpError> {
        if n > self.buf.len() {
            return Err(malformed(err.0, err.1, err.2, Vec::new()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, err: ErrSpec) -> Result<u8, BgpError> {
        Ok(self.take(1, err)?[0])
    }

    pub(crate) fn u16(&mut self, err: ErrSpec) -> Result<u16, BgpError> {
        let b = self.take(2, err)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, err: ErrSpec) -> Result<u32, BgpError> {
        let b = self.take(4, err)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}
