//! The one bounded little-endian reader of the PAC decoders.
//!
//! A [`Reader`] walks a slice. [`Reader::sub`] takes the next `n` bytes as a
//! child reader that can only see those bytes, so a decoder handed a
//! sub-reader cannot run past the buffer it was given. Alignment (NDR's
//! 2/4/8-byte rule) is counted from the start of the stream the reader was
//! created for, and a sub-reader remembers where in that stream it starts.

use super::PacError;

/// A cursor over a byte slice; every read is checked.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the stream alignment is counted from.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
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

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PacError> {
        let truncated = PacError::Truncated {
            what,
            needed: n,
            remaining: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let out = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// The next `n` bytes as a reader of their own; this reader moves past them.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, PacError> {
        let base = self.base.saturating_add(self.pos);
        let buf = self.take(n, what)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Skips padding so that the next read starts on a multiple of `n`
    /// (a power of two) from the start of the stream.
    pub(crate) fn align(&mut self, n: usize, what: &'static str) -> Result<(), PacError> {
        let abs = self.base.saturating_add(self.pos);
        let pad = abs.wrapping_neg() & n.saturating_sub(1);
        self.take(pad, what).map(|_| ())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PacError> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| PacError::Truncated {
            what,
            needed: N,
            remaining: bytes.len(),
        })
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, PacError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, PacError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, PacError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, PacError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn bytes<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], PacError> {
        self.array(what)
    }

    // ----- NDR primitives: aligned to their size --------------------------

    pub(crate) fn ndr_u16(&mut self, what: &'static str) -> Result<u16, PacError> {
        self.align(2, what)?;
        self.u16(what)
    }

    pub(crate) fn ndr_u32(&mut self, what: &'static str) -> Result<u32, PacError> {
        self.align(4, what)?;
        self.u32(what)
    }
}

/// Decodes UTF-16LE strictly: an odd length or an unpaired surrogate is an
/// error (a lossy decode could make two different names look alike).
pub(crate) fn utf16le(bytes: &[u8], field: &'static str) -> Result<String, PacError> {
    if bytes.len() % 2 != 0 {
        return Err(PacError::OddStringLength {
            field,
            len: bytes.len(),
        });
    }
    let units = bytes.chunks_exact(2).map(|c| match c {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0, // unreachable: chunks_exact(2) yields 2-byte chunks
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| PacError::InvalidUtf16 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_reader_cannot_run_past_its_bound() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut r = Reader::new(&data);
        let mut s = r.sub(3, "sub").unwrap();
        assert_eq!(s.take(3, "x").unwrap(), &[1, 2, 3]);
        assert!(matches!(
            s.u8("y"),
            Err(PacError::Truncated {
                needed: 1,
                remaining: 0,
                ..
            })
        ));
        assert_eq!(r.u8("z").unwrap(), 4);
        assert!(r.sub(5, "too long").is_err());
        assert!(r.take(usize::MAX, "huge").is_err());
    }

    #[test]
    fn alignment_counts_from_the_stream_start() {
        let data = [0u8; 16];
        let mut r = Reader::new(&data);
        r.u8("a").unwrap();
        let mut s = r.sub(10, "sub").unwrap(); // starts at stream offset 1
        s.u8("b").unwrap(); // stream offset 2
        s.align(4, "pad").unwrap();
        assert_eq!(s.position(), 3); // stream offset 4
        s.align(4, "pad").unwrap();
        assert_eq!(s.position(), 3);
        s.align(8, "pad").unwrap();
        assert_eq!(s.position(), 7); // stream offset 8
        assert!(s.align(16, "pad").is_err()); // would need 8 more bytes, 3 remain
    }

    #[test]
    fn utf16_is_strict() {
        assert_eq!(utf16le(&[0x41, 0], "f").unwrap(), "A");
        assert!(matches!(
            utf16le(&[0x41], "f"),
            Err(PacError::OddStringLength { len: 1, .. })
        ));
        assert!(matches!(
            utf16le(&[0x00, 0xd8], "f"),
            Err(PacError::InvalidUtf16 { .. })
        ));
    }
}
