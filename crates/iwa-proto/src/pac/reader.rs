//! The one bounded little-endian reader of the PAC decoders.
//!
//! A [`Reader`] walks a slice. [`Reader::sub`] takes the next `n` bytes as a
//! child reader that can only see those bytes, so a decoder handed a
//! sub-reader cannot run past the buffer it was given. Alignment (NDR's
//! 2/4/8-byte rule) is counted from the start of the stream the reader was
//! created for, and a sub-reader remembers where in that stream it starts.

use super::PacError;

/// The crate's bounded reader, failing with [`PacError::Truncated`].
pub(crate) type Reader<'a> = crate::le::LeReader<'a, PacError>;

impl From<crate::le::Short> for PacError {
    fn from(s: crate::le::Short) -> Self {
        PacError::Truncated {
            what: s.what,
            needed: s.needed,
            remaining: s.remaining,
        }
    }
}

impl Reader<'_> {
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
