//! The one bounded little-endian reader behind the NTLM and PAC decoders (DER has its own
//! TLV reader in [`crate::der`]). Every read is checked against the slice; [`LeReader::sub`]
//! hands out a child reader that can only see the bytes it was given; alignment (NDR's
//! 2/4/8-byte rule) counts from the start of the stream the reader was created for. The
//! error type is the decoder's own: it only needs to say what was cut short.

use std::marker::PhantomData;

/// A read that ran past the end of its slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short {
    pub(crate) what: &'static str,
    pub(crate) needed: usize,
    pub(crate) remaining: usize,
}

/// A cursor over a byte slice whose reads fail with `E` (from [`Short`]).
#[derive(Debug)]
pub(crate) struct LeReader<'a, E> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the stream alignment is counted from.
    base: usize,
    _error: PhantomData<fn() -> E>,
}

impl<E> Clone for LeReader<'_, E> {
    fn clone(&self) -> Self {
        LeReader {
            buf: self.buf,
            pos: self.pos,
            base: self.base,
            _error: PhantomData,
        }
    }
}

impl<'a, E: From<Short>> LeReader<'a, E> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        LeReader {
            buf,
            pos: 0,
            base: 0,
            _error: PhantomData,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], E> {
        let short = Short {
            what,
            needed: n,
            remaining: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or(short)?;
        let out = self.buf.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(out)
    }

    /// The next `n` bytes as a reader of their own; this reader moves past them.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Self, E> {
        let base = self.base.saturating_add(self.pos);
        let buf = self.take(n, what)?;
        Ok(LeReader {
            buf,
            pos: 0,
            base,
            _error: PhantomData,
        })
    }

    /// Skips padding so that the next read starts on a multiple of `n` (a power of
    /// two) from the start of the stream.
    pub(crate) fn align(&mut self, n: usize, what: &'static str) -> Result<(), E> {
        let abs = self.base.saturating_add(self.pos);
        let pad = abs.wrapping_neg() & n.saturating_sub(1);
        self.take(pad, what).map(|_| ())
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], E> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| {
            E::from(Short {
                what,
                needed: N,
                remaining: bytes.len(),
            })
        })
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, E> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, E> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, E> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, E> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}
