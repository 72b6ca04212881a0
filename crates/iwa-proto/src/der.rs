//! A bounded DER reader and a few writer helpers.
//!
//! One discipline for every DER structure this crate decodes (after rustls'
//! `codec.rs`): a [`Reader`] walks a `&[u8]`; reading an element yields an
//! [`Element`] whose contents are a sub-slice, and [`Element::reader`] gives a
//! sub-reader that can only see those contents. A sub-reader can therefore never
//! run past the bound of the element it was made from.
//!
//! What the reader accepts (X.690 DER, the subset SPNEGO needs):
//! - single-octet identifiers only (tag numbers 0..=30); the high-tag-number form
//!   is rejected;
//! - definite lengths only; the indefinite form (`0x80`) is rejected;
//! - long-form lengths of at most 4 length octets, minimally encoded (no leading
//!   zero octet, no long form for lengths below 128);
//! - a length must fit in what remains of the enclosing element;
//! - sub-readers nest at most [`MAX_DEPTH`] levels.
//!
//! The reader never allocates and never panics: every read is a checked
//! `get`/`split_at_checked`-style operation.

use std::fmt;

/// How deeply sub-readers may nest before [`DerError::TooDeep`].
///
/// SPNEGO needs 5 levels (`[APPLICATION 0]` → `[0]` → `SEQUENCE` → `[0]` →
/// `SEQUENCE OF`); 16 leaves room for other schemas without permitting a
/// depth bomb.
pub const MAX_DEPTH: usize = 16;

/// The most length octets a long-form length may have (lengths up to 4 GiB).
pub const MAX_LENGTH_OCTETS: usize = 4;

/// A single-octet DER identifier (class, constructed bit and tag number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub u8);

impl Tag {
    /// `BOOLEAN`
    pub const BOOLEAN: Tag = Tag(0x01);
    /// `INTEGER`
    pub const INTEGER: Tag = Tag(0x02);
    /// `BIT STRING` (primitive)
    pub const BIT_STRING: Tag = Tag(0x03);
    /// `OCTET STRING` (primitive)
    pub const OCTET_STRING: Tag = Tag(0x04);
    /// `NULL`
    pub const NULL: Tag = Tag(0x05);
    /// `OBJECT IDENTIFIER`
    pub const OID: Tag = Tag(0x06);
    /// `ENUMERATED`
    pub const ENUMERATED: Tag = Tag(0x0a);
    /// `SEQUENCE` / `SEQUENCE OF` (constructed)
    pub const SEQUENCE: Tag = Tag(0x30);
    /// `[APPLICATION 0]` constructed: the RFC 2743 §3.1 GSS-API token framing.
    pub const APPLICATION_0: Tag = Tag(0x60);

    const CLASS_MASK: u8 = 0xc0;
    const CONSTRUCTED: u8 = 0x20;
    const NUMBER_MASK: u8 = 0x1f;

    /// Constructed context-specific tag `[n]`, as used by EXPLICIT tagging.
    ///
    /// `n` must be below 31; larger values are masked (the high-tag-number form
    /// is not supported).
    pub const fn context(n: u8) -> Tag {
        Tag(0xa0 | (n & 0x1f))
    }

    /// The tag number (low five bits).
    pub const fn number(self) -> u8 {
        self.0 & Self::NUMBER_MASK
    }

    /// Whether the constructed bit is set.
    pub const fn is_constructed(self) -> bool {
        self.0 & Self::CONSTRUCTED != 0
    }

    /// If this is a constructed context-specific tag `[n]`, its number `n`.
    pub const fn context_number(self) -> Option<u8> {
        if self.0 & (Self::CLASS_MASK | Self::CONSTRUCTED) == 0xa0 {
            Some(self.number())
        } else {
            None
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Tag::BOOLEAN => Some("BOOLEAN"),
            Tag::INTEGER => Some("INTEGER"),
            Tag::BIT_STRING => Some("BIT STRING"),
            Tag::OCTET_STRING => Some("OCTET STRING"),
            Tag::NULL => Some("NULL"),
            Tag::OID => Some("OBJECT IDENTIFIER"),
            Tag::ENUMERATED => Some("ENUMERATED"),
            Tag::SEQUENCE => Some("SEQUENCE"),
            Tag::APPLICATION_0 => Some("[APPLICATION 0]"),
            _ => None,
        };
        match (name, self.context_number()) {
            (Some(name), _) => write!(f, "0x{:02x} {name}", self.0),
            (None, Some(n)) => write!(f, "0x{:02x} [{n}]", self.0),
            (None, None) => write!(f, "0x{:02x}", self.0),
        }
    }
}

/// Why DER input was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The input ends before the element does.
    #[error("DER input truncated: needed {needed} more bytes, only {remaining} remain (the token was cut short or its length field is corrupt)")]
    Truncated {
        /// Bytes the element claims to need.
        needed: usize,
        /// Bytes actually left in the enclosing element.
        remaining: usize,
    },
    /// A different element was expected at this position.
    #[error("unexpected DER element: expected tag {expected}, found {found}")]
    UnexpectedTag {
        /// The tag the schema requires here.
        expected: Tag,
        /// The tag present in the input.
        found: Tag,
    },
    /// The input ended where the schema requires another element.
    #[error("DER input ended where a {expected} element was expected")]
    MissingElement {
        /// The tag the schema requires here.
        expected: Tag,
    },
    /// High-tag-number identifiers (tag number ≥ 31) are not used by any
    /// structure this crate decodes.
    #[error("DER identifier 0x{found:02x} uses the high-tag-number form, which is not supported")]
    HighTagNumber {
        /// The first identifier octet.
        found: u8,
    },
    /// BER indefinite length (`0x80`); DER requires definite lengths.
    #[error("DER element uses the indefinite length form, which DER forbids")]
    IndefiniteLength,
    /// More than [`MAX_LENGTH_OCTETS`] length octets, or a length that does not
    /// fit in `usize`.
    #[error("DER length field has {octets} length octets; at most {max} are supported")]
    LengthTooLarge {
        /// Number of length octets announced.
        octets: usize,
        /// The supported maximum.
        max: usize,
    },
    /// A long-form length that could have been shorter (BER, not DER).
    #[error("DER length {len} is not minimally encoded (BER-style length, not DER)")]
    NonMinimalLength {
        /// The decoded length.
        len: usize,
    },
    /// Sub-readers nested deeper than [`MAX_DEPTH`].
    #[error("DER nesting deeper than {max} levels")]
    TooDeep {
        /// The depth limit.
        max: usize,
    },
    /// Bytes left over after the last expected element.
    #[error("{len} unexpected bytes after the end of a DER element")]
    TrailingData {
        /// Number of leftover bytes.
        len: usize,
    },
    /// An element whose content may not be empty was empty.
    #[error("DER {tag} element is empty")]
    EmptyContent {
        /// The element's tag.
        tag: Tag,
    },
    /// An OBJECT IDENTIFIER whose subidentifiers are not well-formed.
    #[error("malformed OBJECT IDENTIFIER encoding")]
    InvalidOid,
    /// An INTEGER/ENUMERATED that is negative, not minimal or larger than
    /// `max_octets`.
    #[error("INTEGER/ENUMERATED value is negative, not minimally encoded or longer than {max_octets} octets")]
    InvalidInteger {
        /// The largest accepted content length.
        max_octets: usize,
    },
    /// A BIT STRING whose unused-bits octet is out of range or inconsistent.
    #[error("malformed BIT STRING (unused-bits octet {unused_bits})")]
    InvalidBitString {
        /// The unused-bits octet as received.
        unused_bits: u8,
    },
}

/// One decoded TLV: its tag, its contents and the raw bytes including header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    tag: Tag,
    contents: &'a [u8],
    raw: &'a [u8],
    depth: usize,
    ber_lengths: bool,
}

impl<'a> Element<'a> {
    /// The element's identifier.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The contents octets (without tag and length).
    pub fn contents(&self) -> &'a [u8] {
        self.contents
    }

    /// The complete encoding: tag, length and contents.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// A reader bounded to this element's contents, one level deeper.
    pub fn reader(&self) -> Result<Reader<'a>, DerError> {
        let depth = self
            .depth
            .checked_add(1)
            .ok_or(DerError::TooDeep { max: MAX_DEPTH })?;
        if depth > MAX_DEPTH {
            return Err(DerError::TooDeep { max: MAX_DEPTH });
        }
        Ok(Reader {
            buf: self.contents,
            depth,
            ber_lengths: self.ber_lengths,
        })
    }
}

/// A forward-only reader over a byte slice, bounded to that slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    depth: usize,
    ber_lengths: bool,
}

impl<'a> Reader<'a> {
    /// A top-level reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            depth: 0,
            ber_lengths: false,
        }
    }

    /// A top-level reader that also takes BER's non-minimal long-form lengths
    /// (`0x84 0x00 0x00 0x00 0x05`), here and in every sub-reader: Active Directory's
    /// LDAP server writes every constructed length that way. Everything else is as
    /// strict as [`Reader::new`] (definite lengths of at most 4 octets, bounded).
    pub fn new_ber(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            depth: 0,
            ber_lengths: true,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The nesting depth of this reader (0 for a top-level reader).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The unconsumed bytes, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    /// The identifier of the next element, if any, without consuming it.
    pub fn peek_tag(&self) -> Option<Tag> {
        self.buf.first().copied().map(Tag)
    }

    /// Consume exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DerError> {
        if n > self.buf.len() {
            return Err(DerError::Truncated {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn take_u8(&mut self) -> Result<u8, DerError> {
        let (&first, tail) = self.buf.split_first().ok_or(DerError::Truncated {
            needed: 1,
            remaining: 0,
        })?;
        self.buf = tail;
        Ok(first)
    }

    /// Error unless everything has been consumed.
    pub fn expect_end(&self) -> Result<(), DerError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData {
                len: self.buf.len(),
            })
        }
    }

    /// Read the next TLV, whatever its tag.
    pub fn read_element(&mut self) -> Result<Element<'a>, DerError> {
        let start = self.buf;
        let tag = Tag(self.take_u8()?);
        if tag.number() == Tag::NUMBER_MASK {
            return Err(DerError::HighTagNumber { found: tag.0 });
        }
        let len = self.read_length()?;
        let contents = self.take(len)?;
        // `self.buf` is a suffix of `start`, so this never saturates.
        let consumed = start.len().saturating_sub(self.buf.len());
        let raw = start.get(..consumed).ok_or(DerError::Truncated {
            needed: consumed,
            remaining: start.len(),
        })?;
        Ok(Element {
            tag,
            contents,
            raw,
            depth: self.depth,
            ber_lengths: self.ber_lengths,
        })
    }

    fn read_length(&mut self) -> Result<usize, DerError> {
        let first = self.take_u8()?;
        if first < 0x80 {
            return Ok(usize::from(first));
        }
        if first == 0x80 {
            return Err(DerError::IndefiniteLength);
        }
        let octets = usize::from(first & 0x7f);
        if octets > MAX_LENGTH_OCTETS || octets > std::mem::size_of::<usize>() {
            return Err(DerError::LengthTooLarge {
                octets,
                max: MAX_LENGTH_OCTETS,
            });
        }
        let bytes = self.take(octets)?;
        let mut len: usize = 0;
        for &b in bytes {
            len = len
                .checked_mul(256)
                .and_then(|l| l.checked_add(usize::from(b)))
                .ok_or(DerError::LengthTooLarge {
                    octets,
                    max: MAX_LENGTH_OCTETS,
                })?;
        }
        if !self.ber_lengths && (bytes.first() == Some(&0) || len < 0x80) {
            return Err(DerError::NonMinimalLength { len });
        }
        Ok(len)
    }

    /// Read the next element and require its tag to be `expected`.
    pub fn read_expected(&mut self, expected: Tag) -> Result<Element<'a>, DerError> {
        match self.peek_tag() {
            None => Err(DerError::MissingElement { expected }),
            Some(found) if found != expected => Err(DerError::UnexpectedTag { expected, found }),
            Some(_) => self.read_element(),
        }
    }

    /// Read the next element if its tag is `tag`; otherwise consume nothing.
    pub fn read_optional(&mut self, tag: Tag) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_element().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Read an element with tag `expected` and return a reader over its contents.
    pub fn read_nested(&mut self, expected: Tag) -> Result<Reader<'a>, DerError> {
        self.read_expected(expected)?.reader()
    }

    /// Read an EXPLICIT `[n]`-tagged element holding exactly one inner element
    /// with tag `inner`, and return that inner element.
    pub fn read_explicit(&mut self, n: u8, inner: Tag) -> Result<Element<'a>, DerError> {
        let mut r = self.read_nested(Tag::context(n))?;
        let el = r.read_expected(inner)?;
        r.expect_end()?;
        Ok(el)
    }

    /// Read an `OCTET STRING` and return its contents.
    pub fn read_octet_string(&mut self) -> Result<&'a [u8], DerError> {
        Ok(self.read_expected(Tag::OCTET_STRING)?.contents())
    }

    /// Read an `OBJECT IDENTIFIER` and return its (validated) contents.
    pub fn read_oid(&mut self) -> Result<&'a [u8], DerError> {
        let el = self.read_expected(Tag::OID)?;
        validate_oid(el.contents())?;
        Ok(el.contents())
    }

    /// Read an `ENUMERATED` of at most 4 content octets as a non-negative value.
    pub fn read_enumerated(&mut self) -> Result<u32, DerError> {
        let el = self.read_expected(Tag::ENUMERATED)?;
        parse_unsigned(el.contents(), Tag::ENUMERATED)
    }

    /// Read an `INTEGER` of at most 4 content octets as a non-negative value.
    pub fn read_unsigned_integer(&mut self) -> Result<u32, DerError> {
        let el = self.read_expected(Tag::INTEGER)?;
        parse_unsigned(el.contents(), Tag::INTEGER)
    }

    /// Read a primitive `BIT STRING`; returns (unused bits, bit octets).
    pub fn read_bit_string(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let el = self.read_expected(Tag::BIT_STRING)?;
        let (&unused_bits, bits) = el.contents().split_first().ok_or(DerError::EmptyContent {
            tag: Tag::BIT_STRING,
        })?;
        if unused_bits > 7 || (bits.is_empty() && unused_bits != 0) {
            return Err(DerError::InvalidBitString { unused_bits });
        }
        Ok((unused_bits, bits))
    }
}

/// Check that `contents` is a well-formed OBJECT IDENTIFIER encoding: non-empty,
/// every subidentifier minimally encoded (no leading `0x80`) and terminated.
pub fn validate_oid(contents: &[u8]) -> Result<(), DerError> {
    if contents.is_empty() {
        return Err(DerError::EmptyContent { tag: Tag::OID });
    }
    let mut at_start = true;
    for &b in contents {
        if at_start && b == 0x80 {
            return Err(DerError::InvalidOid);
        }
        at_start = b & 0x80 == 0;
    }
    if !at_start {
        // last octet had its continuation bit set
        return Err(DerError::InvalidOid);
    }
    Ok(())
}

fn parse_unsigned(contents: &[u8], tag: Tag) -> Result<u32, DerError> {
    const MAX: usize = 4;
    let invalid = DerError::InvalidInteger { max_octets: MAX };
    match contents {
        [] => return Err(DerError::EmptyContent { tag }),
        [first, ..] if first & 0x80 != 0 => return Err(invalid),
        [0, second, ..] if second & 0x80 == 0 => return Err(invalid),
        _ => {}
    }
    // Allow one extra leading zero octet for values with the top bit set.
    let significant = match contents {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => contents,
    };
    if significant.len() > MAX {
        return Err(invalid);
    }
    Ok(significant
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Append the DER length octets for `len`.
pub fn write_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // fits in 7 bits
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = bytes.get(skip..).unwrap_or(&[]);
    // at most size_of::<usize>() (8) octets, so this fits in 7 bits
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// Append a complete TLV.
pub fn write_tlv(out: &mut Vec<u8>, tag: Tag, contents: &[u8]) {
    out.push(tag.0);
    write_length(out, contents.len());
    out.extend_from_slice(contents);
}

/// A complete TLV as a new vector.
pub fn tlv(tag: Tag, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len().saturating_add(6));
    write_tlv(&mut out, tag, contents);
    out
}

/// Append an EXPLICIT `[n]` wrapper around an already-encoded element.
pub fn write_explicit(out: &mut Vec<u8>, n: u8, inner_der: &[u8]) {
    write_tlv(out, Tag::context(n), inner_der);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        let mut r = Reader::new(&[0x04, 0x02, 0xaa, 0xbb]);
        assert_eq!(r.read_octet_string(), Ok(&[0xaa, 0xbb][..]));
        assert!(r.is_empty());

        let mut buf = vec![0x04, 0x81, 0x80];
        buf.extend(std::iter::repeat_n(7, 0x80));
        let mut r = Reader::new(&buf);
        let el = r.read_element().unwrap();
        assert_eq!(el.contents().len(), 0x80);
        assert_eq!(el.raw(), &buf[..]);

        let mut buf = vec![0x04, 0x82, 0x01, 0x00];
        buf.extend(std::iter::repeat_n(7, 0x100));
        assert_eq!(
            Reader::new(&buf).read_element().unwrap().contents().len(),
            256
        );
    }

    #[test]
    fn rejects_indefinite_length() {
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0x00, 0x00]).read_element(),
            Err(DerError::IndefiniteLength)
        );
    }

    #[test]
    fn ber_reader_takes_non_minimal_lengths_in_sub_readers_too() {
        // SEQUENCE { OCTET STRING "ab" }, both lengths in AD's 4-octet long form.
        let bytes = [
            0x30, 0x84, 0, 0, 0, 0x08, 0x04, 0x84, 0, 0, 0, 0x02, b'a', b'b',
        ];
        assert!(matches!(
            Reader::new(&bytes).read_element(),
            Err(DerError::NonMinimalLength { len: 8 })
        ));
        let mut outer = Reader::new_ber(&bytes);
        let mut inner = outer.read_nested(Tag::SEQUENCE).unwrap();
        assert_eq!(inner.read_octet_string().unwrap(), b"ab");
        assert!(outer.is_empty() && inner.is_empty());
        // Still definite and bounded.
        assert!(matches!(
            Reader::new_ber(&[0x30, 0x80, 0, 0]).read_element(),
            Err(DerError::IndefiniteLength)
        ));
        assert!(matches!(
            Reader::new_ber(&[0x04, 0x84, 0, 0, 0, 0x09, 1]).read_element(),
            Err(DerError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_non_minimal_lengths() {
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x01, 0x00]).read_element(),
            Err(DerError::NonMinimalLength { len: 1 })
        );
        let mut buf = vec![0x04, 0x82, 0x00, 0x80];
        buf.extend(std::iter::repeat_n(0, 0x80));
        assert_eq!(
            Reader::new(&buf).read_element(),
            Err(DerError::NonMinimalLength { len: 0x80 })
        );
    }

    #[test]
    fn rejects_length_overflow() {
        assert_eq!(
            Reader::new(&[0x04, 0x85, 1, 2, 3, 4, 5]).read_element(),
            Err(DerError::LengthTooLarge { octets: 5, max: 4 })
        );
        assert_eq!(
            Reader::new(&[0x04, 0xff]).read_element(),
            Err(DerError::LengthTooLarge {
                octets: 127,
                max: 4
            })
        );
        assert_eq!(
            Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0]).read_element(),
            Err(DerError::Truncated {
                needed: 0xffff_ffff,
                remaining: 1
            })
        );
    }

    #[test]
    fn missing_element() {
        assert_eq!(
            Reader::new(&[]).read_expected(Tag::OID),
            Err(DerError::MissingElement { expected: Tag::OID })
        );
        // An EXPLICIT [0] wrapper with nothing inside.
        assert_eq!(
            Reader::new(&[0xa0, 0x00]).read_explicit(0, Tag::SEQUENCE),
            Err(DerError::MissingElement {
                expected: Tag::SEQUENCE
            })
        );
        // ... and with two elements inside.
        assert_eq!(
            Reader::new(&[0xa0, 0x04, 0x30, 0x00, 0x30, 0x00]).read_explicit(0, Tag::SEQUENCE),
            Err(DerError::TrailingData { len: 2 })
        );
    }

    #[test]
    fn rejects_high_tag_number() {
        assert_eq!(
            Reader::new(&[0x1f, 0x81, 0x00, 0x00]).read_element(),
            Err(DerError::HighTagNumber { found: 0x1f })
        );
    }

    #[test]
    fn sub_reader_is_bounded() {
        // SEQUENCE of length 2 containing an OCTET STRING claiming 3 bytes.
        let buf = [0x30, 0x02, 0x04, 0x03, 0xaa, 0xbb, 0xcc];
        let mut r = Reader::new(&buf);
        let mut inner = r.read_nested(Tag::SEQUENCE).unwrap();
        assert_eq!(
            inner.read_octet_string(),
            Err(DerError::Truncated {
                needed: 3,
                remaining: 0
            })
        );
        // The outer reader still has the 3 bytes after the SEQUENCE.
        assert_eq!(r.remaining(), 3);
    }

    #[test]
    fn depth_is_bounded() {
        let mut der = vec![0x05, 0x00];
        for _ in 0..MAX_DEPTH + 2 {
            der = tlv(Tag::SEQUENCE, &der);
        }
        let mut r = Reader::new(&der);
        let mut levels = 0;
        let err = loop {
            match r.read_nested(Tag::SEQUENCE) {
                Ok(inner) => {
                    r = inner;
                    levels += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, DerError::TooDeep { max: MAX_DEPTH });
        assert_eq!(levels, MAX_DEPTH);
    }

    #[test]
    fn oid_validation() {
        assert!(validate_oid(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]).is_ok());
        assert_eq!(
            validate_oid(&[]),
            Err(DerError::EmptyContent { tag: Tag::OID })
        );
        assert_eq!(validate_oid(&[0x2b, 0x86]), Err(DerError::InvalidOid));
        assert_eq!(validate_oid(&[0x2b, 0x80, 0x01]), Err(DerError::InvalidOid));
    }

    #[test]
    fn enumerated() {
        assert_eq!(Reader::new(&[0x0a, 0x01, 0x02]).read_enumerated(), Ok(2));
        assert_eq!(
            Reader::new(&[0x0a, 0x02, 0x00, 0x80]).read_enumerated(),
            Ok(128)
        );
        assert!(Reader::new(&[0x0a, 0x01, 0x80]).read_enumerated().is_err());
        assert!(Reader::new(&[0x0a, 0x02, 0x00, 0x01])
            .read_enumerated()
            .is_err());
        assert!(Reader::new(&[0x0a, 0x00]).read_enumerated().is_err());
        assert!(Reader::new(&[0x0a, 0x05, 0x01, 0, 0, 0, 0])
            .read_enumerated()
            .is_err());
        assert_eq!(
            Reader::new(&[0x0a, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]).read_enumerated(),
            Ok(u32::MAX)
        );
    }

    #[test]
    fn bit_string() {
        assert_eq!(
            Reader::new(&[0x03, 0x02, 0x01, 0xfe]).read_bit_string(),
            Ok((1, &[0xfe][..]))
        );
        assert_eq!(
            Reader::new(&[0x03, 0x01, 0x00]).read_bit_string(),
            Ok((0, &[][..]))
        );
        assert!(Reader::new(&[0x03, 0x01, 0x01]).read_bit_string().is_err());
        assert!(Reader::new(&[0x03, 0x02, 0x08, 0x00])
            .read_bit_string()
            .is_err());
        assert!(Reader::new(&[0x03, 0x00]).read_bit_string().is_err());
    }

    #[test]
    fn writer_roundtrip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 70000] {
            let contents = vec![0x5a; len];
            let der = tlv(Tag::OCTET_STRING, &contents);
            let mut r = Reader::new(&der);
            assert_eq!(r.read_octet_string().unwrap().len(), len);
            assert!(r.expect_end().is_ok());
        }
    }

    #[test]
    fn tag_display() {
        assert_eq!(Tag::SEQUENCE.to_string(), "0x30 SEQUENCE");
        assert_eq!(Tag::context(2).to_string(), "0xa2 [2]");
        assert_eq!(Tag(0x42).to_string(), "0x42");
    }
}
