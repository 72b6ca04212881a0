//! The one error type of the NTLM layer.

use super::FileTime;

/// Why an NTLM message was rejected or an NTLM handshake refused.
///
/// Variants are precise so that a log line says exactly what a client did;
/// callers map every variant to the same 401 for the client.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    // ----- framing -------------------------------------------------------
    /// No bytes at all.
    #[error("NTLM message is empty")]
    Empty,
    /// Larger than [`super::MAX_MESSAGE_LEN`]; rejected without parsing.
    #[error("NTLM message is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside a fixed-size structure.
    #[error("NTLM {what} truncated: needed {needed} bytes, only {remaining} remain")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// The message does not start with `NTLMSSP\0`.
    #[error("not an NTLMSSP message (signature is not \"NTLMSSP\\0\")")]
    BadSignature,
    /// A message type other than 1, 2 or 3.
    #[error("unknown NTLM message type {found}")]
    UnknownMessageType {
        /// The MessageType field.
        found: u32,
    },
    /// A valid message, but not the one expected at this point of the handshake.
    #[error("expected an NTLM {expected} message, got message type {found}")]
    UnexpectedMessageType {
        /// The message expected ("NEGOTIATE", "CHALLENGE", "AUTHENTICATE").
        expected: &'static str,
        /// The MessageType field found.
        found: u32,
    },

    // ----- payload fields ------------------------------------------------
    /// A payload field starts inside the fixed header of its message.
    #[error("NTLM {field} field at offset {offset} overlaps the {header_len}-byte message header")]
    FieldOverlapsHeader {
        /// Field name.
        field: &'static str,
        /// Its offset.
        offset: u32,
        /// Length of the header it overlaps.
        header_len: usize,
    },
    /// A payload field extends past the end of the message.
    #[error("NTLM {field} field (offset {offset}, length {len}) runs past the end of the {message_len}-byte message")]
    FieldOutOfBounds {
        /// Field name.
        field: &'static str,
        /// Its offset.
        offset: u32,
        /// Its length.
        len: u16,
        /// Message length.
        message_len: usize,
    },
    /// Two payload fields share bytes.
    #[error("NTLM {first} and {second} fields overlap")]
    FieldsOverlap {
        /// One field.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// A value too long for a 16-bit length field (encoding only).
    #[error("NTLM {field} is {len} bytes, more than a 16-bit length field holds")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A UTF-16LE string with an odd number of bytes.
    #[error("NTLM {field} is a Unicode string of odd length {len}")]
    OddUnicodeLength {
        /// Field name.
        field: &'static str,
        /// Byte length.
        len: usize,
    },
    /// A UTF-16LE string with unpaired surrogates.
    #[error("NTLM {field} is not valid UTF-16")]
    InvalidUnicode {
        /// Field name.
        field: &'static str,
    },
    /// An OEM-charset string with non-ASCII bytes. The OEM code page of the
    /// client is unknown, so iwa does not guess: only ASCII is accepted.
    #[error(
        "NTLM {field} is an OEM string with non-ASCII bytes (the client's code page is unknown)"
    )]
    NonAsciiOemString {
        /// Field name.
        field: &'static str,
    },

    // ----- AV_PAIR lists -------------------------------------------------
    /// The list ends without `MsvAvEOL`.
    #[error("NTLM AV_PAIR list is not terminated by MsvAvEOL")]
    AvListUnterminated,
    /// More than [`super::MAX_AV_PAIRS`] pairs.
    #[error("NTLM AV_PAIR list has more than {max} entries")]
    TooManyAvPairs {
        /// The limit.
        max: usize,
    },
    /// An AV_PAIR id that appears twice (ambiguous; refused).
    #[error("NTLM AV_PAIR id {id} appears more than once")]
    DuplicateAvPair {
        /// The AvId.
        id: u16,
    },
    /// An AV_PAIR whose value has the wrong size for its id.
    #[error("NTLM AV_PAIR id {id} has a {len}-byte value; {expected} expected")]
    AvPairBadLength {
        /// The AvId.
        id: u16,
        /// Value length received.
        len: usize,
        /// Value length required.
        expected: usize,
    },

    // ----- NTLMv2 response ------------------------------------------------
    /// An NT response longer than 24 bytes but too short for an NTLMv2
    /// response (NTProofStr + the fixed part of the client challenge + MsvAvEOL).
    #[error("NTLMv2 response is {len} bytes, shorter than the {min}-byte minimum")]
    BlobTruncated {
        /// NT response length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// `RespType`/`HiRespType` not 1.
    #[error("NTLMv2 client challenge has RespType {resp_type} / HiRespType {hi_resp_type}; both must be 1")]
    UnsupportedRespType {
        /// RespType.
        resp_type: u8,
        /// HiRespType.
        hi_resp_type: u8,
    },

    // ----- refusals by policy ----------------------------------------------
    /// Anonymous logon (empty user name and empty responses, or the
    /// anonymous flag).
    #[error("anonymous NTLM logon refused")]
    AnonymousRefused,
    /// An empty user name with non-empty responses.
    #[error("NTLM AUTHENTICATE with an empty user name refused")]
    EmptyUserName,
    /// Only an LM response (no NT response).
    #[error("LM-only NTLM authentication refused (no NT response)")]
    LmRefused,
    /// A 24-byte NT response: NTLMv1.
    #[error("NTLMv1 authentication refused (24-byte NT response)")]
    NtlmV1Refused,
    /// A 24-byte NT response with extended session security: NTLM2 session
    /// response (NTLMv1 with a client nonce).
    #[error("NTLM2 session response (NTLMv1 with extended session security) refused")]
    Ntlm2SessionResponseRefused,

    // ----- verification ------------------------------------------------------
    /// The user is unknown to the hash lookup.
    #[error("NTLM user is unknown")]
    UnknownUser,
    /// NTProofStr does not match: wrong password, wrong challenge, or a
    /// tampered client challenge blob.
    #[error("NTLMv2 proof does not match (wrong password, or the response was tampered with)")]
    NtProofMismatch,
    /// The client's timestamp is too far from the server's clock.
    #[error(
        "NTLMv2 timestamp {client:?} is more than {max_skew_secs} s from the server time {now:?}"
    )]
    TimestampOutOfSkew {
        /// The blob's timestamp.
        client: FileTime,
        /// The server's time.
        now: FileTime,
        /// Allowed skew in seconds.
        max_skew_secs: u64,
    },
    /// MsvAvFlags says a MIC is present but the message has no room for one.
    #[error("NTLM MsvAvFlags announces a MIC but the AUTHENTICATE message has none")]
    MicAbsent,
    /// The configuration requires a MIC and the client sent none.
    #[error("NTLM AUTHENTICATE carries no MIC and the server requires one")]
    MicRequired,
    /// The MIC does not match the three messages.
    #[error("NTLM MIC does not match the NEGOTIATE/CHALLENGE/AUTHENTICATE messages")]
    MicMismatch,
    /// NTLMSSP_NEGOTIATE_KEY_EXCH without a 16-byte EncryptedRandomSessionKey.
    #[error("NTLM key exchange negotiated but EncryptedRandomSessionKey is {len} bytes, not 16")]
    BadEncryptedSessionKey {
        /// Length received.
        len: usize,
    },
    /// Channel binding is enforced and the client sent none (or all zeros).
    #[error("NTLM channel bindings required but the client sent none")]
    ChannelBindingsAbsent,
    /// Channel binding hash differs from the TLS connection's.
    #[error("NTLM channel bindings do not match this TLS connection")]
    ChannelBindingsMismatch,
    /// A server name that the OEM character set cannot carry (encoding).
    #[error("NTLM {field} {value:?} is not ASCII and the client negotiated the OEM character set")]
    NotEncodableAsOem {
        /// Field name.
        field: &'static str,
        /// The value.
        value: String,
    },
}
