//! The bounded little-endian reader and the payload-field discipline shared by
//! all NTLM messages.
//!
//! Fixed headers are read with a [`Reader`] that can never run past its slice.
//! Variable-length data lives in the payload and is addressed by a
//! (length, max-length, offset) triple, a [`FieldRef`]; [`resolve_fields`]
//! checks every such field against the message once, up front: inside the
//! message, outside the fixed header, and not sharing bytes with another field.

use super::NtlmError;

/// The crate's bounded reader, failing with [`NtlmError::Truncated`].
pub(crate) type Reader<'a> = crate::le::LeReader<'a, NtlmError>;

impl From<crate::le::Short> for NtlmError {
    fn from(s: crate::le::Short) -> Self {
        NtlmError::Truncated {
            what: s.what,
            needed: s.needed,
            remaining: s.remaining,
        }
    }
}

impl Reader<'_> {
    pub(crate) fn field(&mut self, name: &'static str) -> Result<FieldRef, NtlmError> {
        let len = self.u16(name)?;
        let _max_len = self.u16(name)?;
        let offset = self.u32(name)?;
        Ok(FieldRef { name, len, offset })
    }
}

/// A payload field descriptor as found in a message header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldRef {
    pub(crate) name: &'static str,
    pub(crate) len: u16,
    pub(crate) offset: u32,
}

impl FieldRef {
    fn range(&self) -> Option<(usize, usize)> {
        if self.len == 0 {
            return None;
        }
        let start = usize::try_from(self.offset).ok()?;
        Some((start, start.checked_add(usize::from(self.len))?))
    }
}

/// The smallest offset of any non-empty field, or the message length if all
/// fields are empty: where the payload starts, so how long the header may be.
pub(crate) fn payload_start(msg: &[u8], fields: &[FieldRef]) -> usize {
    fields
        .iter()
        .filter(|f| f.len != 0)
        .filter_map(|f| usize::try_from(f.offset).ok())
        .min()
        .unwrap_or(msg.len())
}

/// Resolves every field to its bytes. An empty field (length 0) is the empty
/// slice whatever its offset says.
pub(crate) fn resolve_fields<'a, const N: usize>(
    msg: &'a [u8],
    header_len: usize,
    fields: [FieldRef; N],
) -> Result<[&'a [u8]; N], NtlmError> {
    let mut out: [&'a [u8]; N] = [&[]; N];
    for (slot, field) in out.iter_mut().zip(fields.iter()) {
        let Some((start, end)) = field.range() else {
            continue;
        };
        if start < header_len {
            return Err(NtlmError::FieldOverlapsHeader {
                field: field.name,
                offset: field.offset,
                header_len,
            });
        }
        *slot = msg.get(start..end).ok_or(NtlmError::FieldOutOfBounds {
            field: field.name,
            offset: field.offset,
            len: field.len,
            message_len: msg.len(),
        })?;
    }
    for (i, a) in fields.iter().enumerate() {
        let Some((a_start, a_end)) = a.range() else {
            continue;
        };
        for b in fields.iter().skip(i.saturating_add(1)) {
            let Some((b_start, b_end)) = b.range() else {
                continue;
            };
            if a_start < b_end && b_start < a_end {
                return Err(NtlmError::FieldsOverlap {
                    first: a.name,
                    second: b.name,
                });
            }
        }
    }
    Ok(out)
}

/// Builds a message from its fixed header and payload values: appends each
/// value to the payload and writes its (len, max-len, offset) triple at the
/// given header position.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose header is `header_len` bytes (zeroed until written).
    pub(crate) fn new(header_len: usize) -> Self {
        Writer {
            buf: vec![0; header_len],
        }
    }

    pub(crate) fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), NtlmError> {
        let end = at.checked_add(bytes.len()).ok_or(NtlmError::FieldTooLong {
            field: "header",
            len: bytes.len(),
        })?;
        let slot = self.buf.get_mut(at..end).ok_or(NtlmError::FieldTooLong {
            field: "header",
            len: bytes.len(),
        })?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    /// Appends `value` to the payload and writes its field triple at `at`.
    pub(crate) fn payload(
        &mut self,
        at: usize,
        field: &'static str,
        value: &[u8],
    ) -> Result<(), NtlmError> {
        let too_long = NtlmError::FieldTooLong {
            field,
            len: value.len(),
        };
        let len = u16::try_from(value.len()).map_err(|_| too_long.clone())?;
        let offset = u32::try_from(self.buf.len()).map_err(|_| too_long)?;
        let mut triple = [0u8; 8];
        let (l, rest) = triple.split_at_mut(2);
        let (m, o) = rest.split_at_mut(2);
        l.copy_from_slice(&len.to_le_bytes());
        m.copy_from_slice(&len.to_le_bytes());
        o.copy_from_slice(&offset.to_le_bytes());
        self.put(at, &triple)?;
        self.buf.extend_from_slice(value);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// UTF-16LE bytes of `s`.
pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Decodes UTF-16LE; odd lengths and unpaired surrogates are errors.
pub(crate) fn decode_utf16le(bytes: &[u8], field: &'static str) -> Result<String, NtlmError> {
    if bytes.len() % 2 != 0 {
        return Err(NtlmError::OddUnicodeLength {
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
        .map_err(|_| NtlmError::InvalidUnicode { field })
}

/// Decodes an OEM string, accepting ASCII only.
pub(crate) fn decode_oem(bytes: &[u8], field: &'static str) -> Result<String, NtlmError> {
    if !bytes.is_ascii() {
        return Err(NtlmError::NonAsciiOemString { field });
    }
    // ASCII is valid UTF-8.
    String::from_utf8(bytes.to_vec()).map_err(|_| NtlmError::NonAsciiOemString { field })
}

/// Encodes a string for a message whose character set is Unicode (`unicode`)
/// or OEM (ASCII only).
pub(crate) fn encode_string(
    s: &str,
    unicode: bool,
    field: &'static str,
) -> Result<Vec<u8>, NtlmError> {
    if unicode {
        Ok(utf16le(s))
    } else if s.is_ascii() {
        Ok(s.as_bytes().to_vec())
    } else {
        Err(NtlmError::NotEncodableAsOem {
            field,
            value: s.to_owned(),
        })
    }
}

/// Decodes a string per the message's character set.
pub(crate) fn decode_string(
    bytes: &[u8],
    unicode: bool,
    field: &'static str,
) -> Result<String, NtlmError> {
    if unicode {
        decode_utf16le(bytes, field)
    } else {
        decode_oem(bytes, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_runs_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x"), Ok(0x0201));
        assert!(matches!(
            r.u16("x"),
            Err(NtlmError::Truncated {
                needed: 2,
                remaining: 1,
                ..
            })
        ));
        assert_eq!(r.position(), 2);
        assert_eq!(
            r.take(usize::MAX, "x").map(|_| ()),
            Err(NtlmError::Truncated {
                what: "x",
                needed: usize::MAX,
                remaining: 1
            })
        );
    }

    #[test]
    fn fields_are_checked() {
        let msg = [0u8; 20];
        let f = |name, len, offset| FieldRef { name, len, offset };
        assert!(resolve_fields(&msg, 8, [f("a", 4, 8), f("b", 4, 12)]).is_ok());
        assert_eq!(
            resolve_fields(&msg, 8, [f("a", 4, 4)]),
            Err(NtlmError::FieldOverlapsHeader {
                field: "a",
                offset: 4,
                header_len: 8
            })
        );
        assert!(matches!(
            resolve_fields(&msg, 8, [f("a", 4, 18)]),
            Err(NtlmError::FieldOutOfBounds { .. })
        ));
        assert!(matches!(
            resolve_fields(&msg, 8, [f("a", 4, u32::MAX)]),
            Err(NtlmError::FieldOutOfBounds { .. })
        ));
        assert_eq!(
            resolve_fields(&msg, 8, [f("a", 4, 8), f("b", 4, 11)]),
            Err(NtlmError::FieldsOverlap {
                first: "a",
                second: "b"
            })
        );
        // An empty field's offset is ignored.
        assert!(resolve_fields(&msg, 8, [f("a", 0, 0), f("b", 0, u32::MAX)]).is_ok());
    }

    #[test]
    fn strings() {
        assert_eq!(decode_utf16le(&utf16le("Üser"), "u"), Ok("Üser".to_owned()));
        assert!(matches!(
            decode_utf16le(&[0x41], "u"),
            Err(NtlmError::OddUnicodeLength { .. })
        ));
        assert_eq!(
            decode_utf16le(&[0x00, 0xd8], "u"),
            Err(NtlmError::InvalidUnicode { field: "u" })
        );
        assert_eq!(decode_oem(b"abc", "u"), Ok("abc".to_owned()));
        assert!(decode_oem(&[0xe9], "u").is_err());
    }
}
