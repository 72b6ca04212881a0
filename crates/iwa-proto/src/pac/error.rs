//! The one error type of the PAC decoders.

use crate::sid::SidError;

/// Why a PAC, one of its buffers, or a `KERB_VALIDATION_INFO` was rejected.
///
/// Variants say exactly what was wrong, so a log line can name the field; a
/// caller treats every variant the same way (no usable PAC).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacError {
    // ----- framing -------------------------------------------------------
    /// Larger than [`super::MAX_PAC_LEN`]; rejected without parsing.
    #[error("PAC data is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside something being read.
    #[error("PAC {what} truncated: needed {needed} bytes, only {remaining} remain")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left in the enclosing buffer.
        remaining: usize,
    },
    /// More bytes after a structure than alignment padding (7) explains.
    #[error("{len} unexpected bytes after the {what}")]
    TrailingData {
        /// The structure.
        what: &'static str,
        /// How many bytes follow it.
        len: usize,
    },

    // ----- PACTYPE / PAC_INFO_BUFFER (MS-PAC 2.3, 2.4) --------------------
    /// `PACTYPE.Version` is not 0.
    #[error("PAC version {found} is not supported (must be 0)")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// `cBuffers` above [`super::MAX_BUFFERS`].
    #[error("PAC declares {count} buffers, more than the {max} accepted")]
    TooManyBuffers {
        /// `cBuffers`.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// A buffer offset that is not a multiple of 8.
    #[error("PAC buffer {index} (type {buffer_type}) offset {offset} is not 8-byte aligned")]
    BufferMisaligned {
        /// Position in the `Buffers` array.
        index: usize,
        /// Its `ulType`.
        buffer_type: u32,
        /// Its `Offset`.
        offset: u64,
    },
    /// A buffer that starts inside the PACTYPE header and buffer array.
    #[error("PAC buffer {index} (type {buffer_type}) at offset {offset} overlaps the {header_len}-byte PAC header")]
    BufferOverlapsHeader {
        /// Position in the `Buffers` array.
        index: usize,
        /// Its `ulType`.
        buffer_type: u32,
        /// Its `Offset`.
        offset: u64,
        /// Length of `PACTYPE` with its buffer array.
        header_len: usize,
    },
    /// A buffer that runs past the end of the PAC.
    #[error("PAC buffer {index} (type {buffer_type}, offset {offset}, size {size}) runs past the end of the {pac_len}-byte PAC")]
    BufferOutOfBounds {
        /// Position in the `Buffers` array.
        index: usize,
        /// Its `ulType`.
        buffer_type: u32,
        /// Its `Offset`.
        offset: u64,
        /// Its `cbBufferSize`.
        size: u32,
        /// Length of the PAC.
        pac_len: usize,
    },
    /// Two buffers share bytes.
    #[error("PAC buffers {first} and {second} overlap")]
    BuffersOverlap {
        /// Position of one in the `Buffers` array.
        first: usize,
        /// Position of the other.
        second: usize,
    },
    /// A buffer of a known type did not decode.
    #[error("PAC buffer {index} (type {buffer_type}): {source}")]
    InBuffer {
        /// Position in the `Buffers` array.
        index: usize,
        /// Its `ulType`.
        buffer_type: u32,
        /// What was wrong with it.
        #[source]
        source: Box<PacError>,
    },

    // ----- type serialization (MS-RPCE 2.2.6) ------------------------------
    /// Common header `Version` is not 1.
    #[error("NDR type serialization version {found} is not supported (must be 1)")]
    SerializationVersion {
        /// The version found.
        found: u8,
    },
    /// Common header `Endianness` is not 0x10 (little-endian).
    #[error("NDR stream endianness byte 0x{found:02x} is not supported (only little-endian 0x10)")]
    UnsupportedEndianness {
        /// The byte found.
        found: u8,
    },
    /// Common header `CommonHeaderLength` is not 8.
    #[error("NDR common header length {found} is not 8")]
    CommonHeaderLength {
        /// The length found.
        found: u16,
    },

    // ----- NDR data (MS-RPCE, C706 14) -------------------------------------
    /// A null pointer where the structure needs data.
    #[error("{field} is a null pointer but is required")]
    NullPointer {
        /// The field.
        field: &'static str,
    },
    /// An `RPC_UNICODE_STRING` with a null buffer but a non-zero length.
    #[error("{field} has a null buffer but Length {length}")]
    NullPointerWithLength {
        /// The field.
        field: &'static str,
        /// Its `Length`.
        length: u16,
    },
    /// An array pointer that is null while its count is not zero.
    #[error("{field} is a null pointer but its count is {count}")]
    NullArrayWithCount {
        /// The field.
        field: &'static str,
        /// The count field.
        count: u32,
    },
    /// A UTF-16 string whose byte length is odd.
    #[error("{field} has odd UTF-16 byte length {len}")]
    OddStringLength {
        /// The field.
        field: &'static str,
        /// The length.
        len: usize,
    },
    /// `RPC_UNICODE_STRING.Length` above its `MaximumLength`.
    #[error("{field} Length {length} exceeds its MaximumLength {maximum_length}")]
    StringLengthExceedsMaximum {
        /// The field.
        field: &'static str,
        /// `Length`.
        length: u16,
        /// `MaximumLength`.
        maximum_length: u16,
    },
    /// A string longer than [`super::MAX_STRING_UNITS`] UTF-16 code units.
    #[error("{field} is {units} UTF-16 code units, more than the {max} accepted")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length in code units.
        units: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-16 (an unpaired surrogate).
    #[error("{field} is not valid UTF-16")]
    InvalidUtf16 {
        /// The field.
        field: &'static str,
    },
    /// A conformant array whose max count differs from the count the
    /// structure declares for it.
    #[error("{field} conformance (max count) is {found}, expected {expected}")]
    ConformanceMismatch {
        /// The field.
        field: &'static str,
        /// From the structure.
        expected: u32,
        /// On the wire.
        found: u32,
    },
    /// A varying array whose offset is not 0.
    #[error("{field} variance offset is {offset}, must be 0")]
    NonZeroVarianceOffset {
        /// The field.
        field: &'static str,
        /// The offset found.
        offset: u32,
    },
    /// A varying array whose actual count differs from the length the
    /// structure declares for it.
    #[error("{field} actual count is {found}, expected {expected}")]
    VarianceMismatch {
        /// The field.
        field: &'static str,
        /// From the structure.
        expected: u32,
        /// On the wire.
        found: u32,
    },
    /// A count above [`super::MAX_GROUPS`].
    #[error("{field} is {count}, more than the {max} accepted")]
    CountTooLarge {
        /// The count field.
        field: &'static str,
        /// Its value.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// A SID that did not decode.
    #[error("{field}: {source}")]
    InvalidSid {
        /// The field.
        field: &'static str,
        /// Why.
        #[source]
        source: SidError,
    },

    // ----- plain buffers (MS-PAC 2.7, 2.8, 2.10) ---------------------------
    /// A signature buffer whose size does not fit its `SignatureType`.
    #[error("PAC signature of type 0x{signature_type:08x} has {found} bytes after the type, expected {expected} (or 2 more for an RODC identifier)")]
    SignatureLength {
        /// `SignatureType`.
        signature_type: u32,
        /// Signature size for that type.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// An offset/length field that points outside its buffer.
    #[error(
        "{field} (offset {offset}, length {len}) runs past the end of the {buffer_len}-byte buffer"
    )]
    FieldOutOfBounds {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: u16,
        /// Its length.
        len: u16,
        /// Buffer length.
        buffer_len: usize,
    },
    /// An offset/length field that points into its structure's fixed header.
    #[error("{field} at offset {offset} overlaps the {header_len}-byte header")]
    FieldOverlapsHeader {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: u16,
        /// Header length.
        header_len: usize,
    },
}

impl PacError {
    pub(crate) fn sid(field: &'static str) -> impl FnOnce(SidError) -> PacError {
        move |source| PacError::InvalidSid { field, source }
    }
}
