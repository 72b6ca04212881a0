//! The LDAP messages of a SASL GSSAPI bind (RFC 4511 §4.2, RFC 4752) and the SASL
//! security layer's framing (RFC 4422 §3.7), for the directory client's own security
//! layer on plain `ldap://`.
//!
//! Only what the bind needs: encoding a SASL `BindRequest`, decoding a
//! `BindResponse`, finding where one LDAP message ends in a byte stream, the RFC 4752
//! security-layer offer and choice, and the 4-octet length of a SASL buffer. Everything
//! after the bind is ordinary LDAP that the LDAP library encodes and decodes itself,
//! carried inside the SASL buffers.
//!
//! Active Directory writes BER lengths in the non-minimal 4-octet long form, so the
//! decoders use [`Reader::new_ber`]: definite lengths of at most 4 octets, bounded by
//! the enclosing element, nothing else relaxed.

use crate::der::{write_tlv, DerError, Reader, Tag};

/// The largest LDAP message [`message_length`] accepts during the bind (a bind
/// response carries at most a Kerberos AP-REP or a 4-octet wrapped offer).
pub const MAX_BIND_MESSAGE: usize = 64 * 1024;

/// `saslBindInProgress` (RFC 4511 §4.1.9): the server wants another leg.
pub const SASL_BIND_IN_PROGRESS: u32 = 14;

/// RFC 4752 §3.3 security-layer bits.
pub mod layer {
    /// No security layer.
    pub const NONE: u8 = 1;
    /// Integrity protection.
    pub const INTEGRITY: u8 = 2;
    /// Confidentiality (and integrity) protection.
    pub const CONFIDENTIALITY: u8 = 4;
}

/// `[APPLICATION 0]` constructed: `BindRequest`.
const BIND_REQUEST: Tag = Tag(0x60);
/// `[APPLICATION 1]` constructed: `BindResponse`.
const BIND_RESPONSE: Tag = Tag(0x61);
/// `[3]` constructed inside `AuthenticationChoice`: `SaslCredentials`.
const SASL_CREDENTIALS: Tag = Tag(0xa3);
/// `[3]` constructed inside `LDAPResult`: `Referral`.
const REFERRAL: Tag = Tag(0xa3);
/// `[7]` primitive inside `BindResponse`: `serverSaslCreds`.
const SERVER_SASL_CREDS: Tag = Tag(0x87);
/// `[0]` constructed after the protocol op: `Controls`.
const CONTROLS: Tag = Tag(0xa0);

/// Why bytes from the directory were not a usable bind answer or SASL buffer.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    /// The BER underneath is malformed.
    #[error("malformed LDAP message: {0}")]
    Der(#[from] DerError),
    /// A message longer than the caller's bound.
    #[error("an LDAP message of {len} bytes is over the bound of {max}")]
    TooLong {
        /// Its announced length (header included).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A message that does not start with `SEQUENCE`.
    #[error("an LDAP message must start with SEQUENCE (0x30), found 0x{found:02x}")]
    NotAMessage {
        /// The first octet.
        found: u8,
    },
    /// A message whose protocol operation is not a `BindResponse`: for example the
    /// server's notice of disconnection (an `ExtendedResponse`, message ID 0).
    #[error("expected a BindResponse, the server sent protocol operation 0x{found:02x} (message ID {message_id})")]
    NotABindResponse {
        /// The message ID.
        message_id: u32,
        /// The protocol operation's tag.
        found: u8,
    },
    /// The RFC 4752 security-layer offer is not 4 octets.
    #[error("the SASL GSSAPI security-layer message has {len} octets, not 4")]
    BadOffer {
        /// Its length.
        len: usize,
    },
    /// A SASL buffer announced as empty or longer than agreed.
    #[error("a SASL buffer of {len} bytes is outside 1..={max}")]
    BadFrame {
        /// The announced length.
        len: usize,
        /// The agreed maximum.
        max: usize,
    },
}

/// An `LDAPMessage` holding a `BindRequest` (version 3, empty name) with
/// `SaslCredentials { mechanism, credentials }`.
pub fn sasl_bind_request(message_id: u32, mechanism: &str, credentials: Option<&[u8]>) -> Vec<u8> {
    let mut sasl = Vec::new();
    write_tlv(&mut sasl, Tag::OCTET_STRING, mechanism.as_bytes());
    if let Some(c) = credentials {
        write_tlv(&mut sasl, Tag::OCTET_STRING, c);
    }
    let mut bind = Vec::new();
    write_tlv(&mut bind, Tag::INTEGER, &[3]);
    write_tlv(&mut bind, Tag::OCTET_STRING, b"");
    write_tlv(&mut bind, SASL_CREDENTIALS, &sasl);
    let mut msg = Vec::new();
    write_tlv(&mut msg, Tag::INTEGER, &integer_contents(message_id));
    write_tlv(&mut msg, BIND_REQUEST, &bind);
    let mut out = Vec::with_capacity(msg.len() + 6);
    write_tlv(&mut out, Tag::SEQUENCE, &msg);
    out
}

/// The minimal two's-complement contents of a non-negative INTEGER.
fn integer_contents(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut out = Vec::with_capacity(5);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// A decoded `BindResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindResponse<'a> {
    /// The message ID it answers.
    pub message_id: u32,
    /// `resultCode`: 0 success, [`SASL_BIND_IN_PROGRESS`] for another leg.
    pub result_code: u32,
    /// `diagnosticMessage` (the server's own words; Active Directory puts its
    /// `DSID-…` code and Win32 error here).
    pub diagnostic: &'a [u8],
    /// `serverSaslCreds`, the server's GSSAPI token or wrapped offer.
    pub server_sasl_creds: Option<&'a [u8]>,
}

impl BindResponse<'_> {
    /// The diagnostic message as text (lossy, at most 200 characters, control
    /// characters replaced), for error messages.
    pub fn diagnostic_text(&self) -> String {
        String::from_utf8_lossy(self.diagnostic)
            .chars()
            .filter(|c| *c != '\0')
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect::<String>()
            .trim()
            .to_owned()
    }
}

/// Decodes one complete `LDAPMessage` that must be a `BindResponse`.
pub fn decode_bind_response(msg: &[u8]) -> Result<BindResponse<'_>, LdapError> {
    let mut top = Reader::new_ber(msg);
    let first = top.peek_tag().map_or(0, |t| t.0);
    if first != Tag::SEQUENCE.0 {
        return Err(LdapError::NotAMessage { found: first });
    }
    let mut m = top.read_nested(Tag::SEQUENCE)?;
    top.expect_end()?;
    let message_id = m.read_unsigned_integer()?;
    let op = m.peek_tag().map_or(0, |t| t.0);
    if op != BIND_RESPONSE.0 {
        return Err(LdapError::NotABindResponse {
            message_id,
            found: op,
        });
    }
    let mut r = m.read_nested(BIND_RESPONSE)?;
    // Controls may follow the operation; nothing else may.
    m.read_optional(CONTROLS)?;
    m.expect_end()?;
    let result_code = r.read_enumerated()?;
    let _matched_dn = r.read_octet_string()?;
    let diagnostic = r.read_octet_string()?;
    r.read_optional(REFERRAL)?;
    let server_sasl_creds = r.read_optional(SERVER_SASL_CREDS)?.map(|e| e.contents());
    r.expect_end()?;
    Ok(BindResponse {
        message_id,
        result_code,
        diagnostic,
        server_sasl_creds,
    })
}

/// The length (header included) of the LDAP message that starts `buf`, once its
/// tag and length octets are there: `Ok(None)` while more bytes are needed. Over
/// `max`, or not a `SEQUENCE`, is an error before anything more is read.
pub fn message_length(buf: &[u8], max: usize) -> Result<Option<usize>, LdapError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != Tag::SEQUENCE.0 {
        return Err(LdapError::NotAMessage { found: first });
    }
    let Some(&len0) = buf.get(1) else {
        return Ok(None);
    };
    let (header, len) = if len0 < 0x80 {
        (2, usize::from(len0))
    } else {
        let octets = usize::from(len0 & 0x7f);
        if octets == 0 {
            return Err(DerError::IndefiniteLength.into());
        }
        if octets > crate::der::MAX_LENGTH_OCTETS {
            return Err(DerError::LengthTooLarge {
                octets,
                max: crate::der::MAX_LENGTH_OCTETS,
            }
            .into());
        }
        let Some(bytes) = buf.get(2..2 + octets) else {
            return Ok(None);
        };
        let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        (2 + octets, usize::try_from(len).unwrap_or(usize::MAX))
    };
    let total = header.saturating_add(len);
    if total > max {
        return Err(LdapError::TooLong { len: total, max });
    }
    Ok(Some(total))
}

/// The server's RFC 4752 §3.1 offer (the unwrapped last bind token): which
/// security layers it supports and the largest SASL buffer it can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityOffer {
    /// [`layer`] bits.
    pub layers: u8,
    /// The largest wrapped buffer the server accepts (0: none, only without a layer).
    pub max_size: u32,
}

/// Decodes the unwrapped offer.
pub fn decode_security_offer(unwrapped: &[u8]) -> Result<SecurityOffer, LdapError> {
    match unwrapped {
        [layers, a, b, c] => Ok(SecurityOffer {
            layers: *layers,
            max_size: u32::from_be_bytes([0, *a, *b, *c]),
        }),
        _ => Err(LdapError::BadOffer {
            len: unwrapped.len(),
        }),
    }
}

/// The client's choice (to be wrapped): one [`layer`] bit and the largest SASL
/// buffer it will receive (at most 2^24 − 1), with no authorization identity.
pub fn security_choice(layer: u8, max_size: u32) -> [u8; 4] {
    let [_, a, b, c] = max_size.min(0x00ff_ffff).to_be_bytes();
    [layer, a, b, c]
}

/// The length a SASL buffer's 4-octet header announces, checked against `max`
/// (RFC 4422 §3.7: a buffer larger than agreed is a protocol error; so is an
/// empty one, which no GSSAPI wrap token can be).
pub fn sasl_frame_length(header: [u8; 4], max: usize) -> Result<usize, LdapError> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len == 0 || len > max {
        return Err(LdapError::BadFrame { len, max });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_request_encoding() {
        // RFC 4511 §4.2 with SaslCredentials, checked octet by octet.
        let req = sasl_bind_request(1, "GSSAPI", Some(b"\x60\x01\x00"));
        assert_eq!(
            req,
            [
                0x30, 0x19, // LDAPMessage
                0x02, 0x01, 0x01, // messageID 1
                0x60, 0x14, // [APPLICATION 0] BindRequest
                0x02, 0x01, 0x03, // version 3
                0x04, 0x00, // name ""
                0xa3, 0x0d, // [3] SaslCredentials
                0x04, 0x06, b'G', b'S', b'S', b'A', b'P', b'I', // mechanism
                0x04, 0x03, 0x60, 0x01, 0x00, // credentials
            ]
        );
        // No credentials: the OCTET STRING is absent, not empty.
        let req = sasl_bind_request(200, "GSSAPI", None);
        assert_eq!(&req[2..6], &[0x02, 0x02, 0x00, 0xc8]);
        assert_eq!(&req[req.len() - 10..], b"\xa3\x08\x04\x06GSSAPI");
        assert_eq!(message_length(&req, 1000), Ok(Some(req.len())));
    }

    #[test]
    fn integers_are_minimal_twos_complement() {
        assert_eq!(integer_contents(0), [0]);
        assert_eq!(integer_contents(127), [127]);
        assert_eq!(integer_contents(128), [0, 128]);
        assert_eq!(integer_contents(0x0102), [1, 2]);
        assert_eq!(integer_contents(u32::MAX), [0, 255, 255, 255, 255]);
    }

    /// A BindResponse as Active Directory writes it: 4-octet lengths everywhere.
    fn ad_style_response(id: u8, rc: u8, creds: Option<&[u8]>) -> Vec<u8> {
        fn tlv4(tag: u8, contents: &[u8]) -> Vec<u8> {
            let mut v = vec![tag, 0x84];
            v.extend_from_slice(&(contents.len() as u32).to_be_bytes());
            v.extend_from_slice(contents);
            v
        }
        let mut op = vec![0x0a, 0x01, rc, 0x04, 0x00];
        op.extend(tlv4(0x04, b"80090308: LdapErr: DSID-0C09\0"));
        if let Some(c) = creds {
            op.extend(tlv4(0x87, c));
        }
        let mut msg = vec![0x02, 0x01, id];
        msg.extend(tlv4(0x61, &op));
        tlv4(0x30, &msg)
    }

    #[test]
    fn bind_response_in_ad_form() {
        let bytes = ad_style_response(2, 14, Some(b"token"));
        assert_eq!(message_length(&bytes, 1000), Ok(Some(bytes.len())));
        let r = decode_bind_response(&bytes).unwrap();
        assert_eq!(r.message_id, 2);
        assert_eq!(r.result_code, SASL_BIND_IN_PROGRESS);
        assert_eq!(r.server_sasl_creds, Some(&b"token"[..]));
        assert_eq!(r.diagnostic_text(), "80090308: LdapErr: DSID-0C09");
        let refused = ad_style_response(3, 49, None);
        let r = decode_bind_response(&refused).unwrap();
        assert_eq!((r.result_code, r.server_sasl_creds), (49, None));
    }

    #[test]
    fn bind_response_in_samba_form_with_controls() {
        // Minimal lengths, a referral-less success with an empty token and controls.
        let mut op = vec![0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00, 0x87, 0x00];
        let mut msg = vec![0x02, 0x01, 0x05, 0x61, op.len() as u8];
        msg.append(&mut op);
        msg.extend([0xa0, 0x00]);
        let mut bytes = vec![0x30, msg.len() as u8];
        bytes.extend(msg);
        let r = decode_bind_response(&bytes).unwrap();
        assert_eq!(
            (r.message_id, r.result_code, r.server_sasl_creds),
            (5, 0, Some(&b""[..]))
        );
    }

    #[test]
    fn other_messages_are_named() {
        // The notice of disconnection: ExtendedResponse (0x78), message ID 0.
        let notice = [
            0x30, 0x0c, 0x02, 0x01, 0x00, 0x78, 0x07, 0x0a, 0x01, 0x34, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(
            decode_bind_response(&notice),
            Err(LdapError::NotABindResponse {
                message_id: 0,
                found: 0x78
            })
        );
        assert_eq!(
            decode_bind_response(b"\x04\x00"),
            Err(LdapError::NotAMessage { found: 4 })
        );
        let mut trailing = ad_style_response(2, 0, None);
        trailing.push(0);
        assert!(matches!(
            decode_bind_response(&trailing),
            Err(LdapError::Der(DerError::TrailingData { len: 1 }))
        ));
        let whole = ad_style_response(2, 0, Some(b"abc"));
        for cut in 0..whole.len() {
            assert!(decode_bind_response(&whole[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn message_length_waits_then_bounds() {
        assert_eq!(message_length(b"", 100), Ok(None));
        assert_eq!(message_length(b"\x30", 100), Ok(None));
        assert_eq!(message_length(b"\x30\x84\x00\x00", 100), Ok(None));
        assert_eq!(message_length(b"\x30\x05", 100), Ok(Some(7)));
        assert_eq!(
            message_length(b"\x30\x84\x00\x00\x00\x5e", 100),
            Ok(Some(100))
        );
        assert_eq!(
            message_length(b"\x30\x84\x00\x00\x00\x5f", 100),
            Err(LdapError::TooLong { len: 101, max: 100 })
        );
        assert_eq!(
            message_length(b"\x30\x84\xff\xff\xff\xff", MAX_BIND_MESSAGE),
            Err(LdapError::TooLong {
                len: 6 + 0xffff_ffff,
                max: MAX_BIND_MESSAGE
            })
        );
        assert!(matches!(
            message_length(b"\x30\x80", 100),
            Err(LdapError::Der(DerError::IndefiniteLength))
        ));
        assert!(matches!(
            message_length(b"\x30\x85\x00\x00\x00\x00\x01", 100),
            Err(LdapError::Der(DerError::LengthTooLarge { octets: 5, .. }))
        ));
        assert_eq!(
            message_length(b"\x61\x00", 100),
            Err(LdapError::NotAMessage { found: 0x61 })
        );
    }

    #[test]
    fn security_layer_offer_and_choice() {
        // Samba and AD offer all three layers and a 64 KiB-ish buffer.
        assert_eq!(
            decode_security_offer(&[0x07, 0x00, 0xff, 0xff]),
            Ok(SecurityOffer {
                layers: layer::NONE | layer::INTEGRITY | layer::CONFIDENTIALITY,
                max_size: 0xffff
            })
        );
        assert_eq!(
            decode_security_offer(&[1, 2, 3]),
            Err(LdapError::BadOffer { len: 3 })
        );
        assert_eq!(
            security_choice(layer::CONFIDENTIALITY, 0x0080_0000),
            [4, 0x80, 0, 0]
        );
        assert_eq!(
            security_choice(layer::CONFIDENTIALITY, u32::MAX),
            [4, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn sasl_frames_are_bounded() {
        assert_eq!(sasl_frame_length([0, 0, 1, 0], 256), Ok(256));
        assert_eq!(
            sasl_frame_length([0, 0, 1, 1], 256),
            Err(LdapError::BadFrame { len: 257, max: 256 })
        );
        assert_eq!(
            sasl_frame_length([0, 0, 0, 0], 256),
            Err(LdapError::BadFrame { len: 0, max: 256 })
        );
    }
}
