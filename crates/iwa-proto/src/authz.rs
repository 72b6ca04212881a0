//! The `Authorization` / `WWW-Authenticate` header grammar for Negotiate and NTLM.
//!
//! RFC 7235 §2.1 (`credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`)
//! and RFC 4559 §4 (Negotiate carries one base64 token68).
//!
//! Leniency, each one seen in the field: the scheme name is matched without
//! regard to case; several spaces (or tabs) may separate scheme and token;
//! whitespace around the whole value is ignored; the base64 token may be padded
//! or unpadded, but either way must be canonical.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Max length of the base64 token text in an Authorization header we accept.
///
/// 64 KiB of base64 is 48 KiB of token, which matches Windows' default
/// `MaxTokenSize`; larger tokens come from users in very many groups.
pub const MAX_TOKEN_B64_LEN: usize = 64 * 1024;

/// Longest scheme name kept in [`Credentials::Other`].
pub const MAX_OTHER_SCHEME_LEN: usize = 32;

/// The credentials in one `Authorization` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Negotiate <token>`: the decoded token (SPNEGO, Kerberos or NTLMSSP).
    Negotiate(Vec<u8>),
    /// `NTLM <token>`: the decoded NTLMSSP message.
    Ntlm(Vec<u8>),
    /// any other scheme, e.g. Basic; name as sent, truncated to 32 chars
    Other(String),
}

/// The schemes iwa challenges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeScheme {
    /// `Negotiate` (RFC 4559)
    Negotiate,
    /// `NTLM` (MS-NTHT)
    Ntlm,
}

impl ChallengeScheme {
    /// The scheme name as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChallengeScheme::Negotiate => NEGOTIATE,
            ChallengeScheme::Ntlm => NTLM,
        }
    }
}

impl fmt::Display for ChallengeScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const NEGOTIATE: &str = "Negotiate";
const NTLM: &str = "NTLM";

/// Why an `Authorization` header value was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthHeaderError {
    /// The value is empty or only whitespace.
    #[error("Authorization header is empty")]
    Empty,
    /// A byte outside visible ASCII, space and tab (control character or non-ASCII).
    #[error("Authorization header contains a control character or non-ASCII byte")]
    NotVisibleAscii,
    /// The scheme name is not an RFC 7230 token.
    #[error("Authorization header does not start with a valid scheme name")]
    InvalidScheme,
    /// `Negotiate`/`NTLM` with nothing after it.
    #[error("Authorization header names the {scheme} scheme but carries no token")]
    MissingToken {
        /// "Negotiate" or "NTLM".
        scheme: &'static str,
    },
    /// The token text exceeds [`MAX_TOKEN_B64_LEN`]; not decoded.
    #[error("Authorization token is {len} characters of base64, more than the {max} accepted (a Kerberos ticket with a very large PAC, e.g. a user in very many groups)")]
    TooLong {
        /// Length of the base64 token text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not canonical standard-alphabet base64.
    #[error("{scheme} token is not valid base64 (standard alphabet, canonical padding)")]
    InvalidBase64 {
        /// "Negotiate" or "NTLM".
        scheme: &'static str,
    },
    /// More than one whitespace-separated word after the scheme.
    #[error("{scheme} token is followed by further data; expected exactly one base64 token")]
    TrailingData {
        /// "Negotiate" or "NTLM".
        scheme: &'static str,
    },
    /// The token decodes to zero bytes.
    #[error("{scheme} token decodes to nothing")]
    EmptyToken {
        /// "Negotiate" or "NTLM".
        scheme: &'static str,
    },
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

const PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
const UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Parse one Authorization header value (RFC 7235 `credentials = auth-scheme
/// [ 1*SP ( token68 / #auth-param ) ]`, RFC 4559 for Negotiate).
///
/// The header value is given as raw bytes (from `http::HeaderValue::as_bytes()`).
/// For schemes other than Negotiate and NTLM only the scheme name is
/// examined and returned; their parameters are not validated beyond the
/// visible-ASCII check that applies to the whole value.
pub fn parse_authorization(value: &[u8]) -> Result<Credentials, AuthHeaderError> {
    if !value.iter().all(|&b| is_ows(b) || b.is_ascii_graphic()) {
        return Err(AuthHeaderError::NotVisibleAscii);
    }
    let value = trim_ows(value);
    if value.is_empty() {
        return Err(AuthHeaderError::Empty);
    }
    let scheme_len = value.iter().position(|&b| is_ows(b)).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.iter().all(|&b| is_tchar(b)) {
        return Err(AuthHeaderError::InvalidScheme);
    }
    let scheme_name = if scheme.eq_ignore_ascii_case(NEGOTIATE.as_bytes()) {
        NEGOTIATE
    } else if scheme.eq_ignore_ascii_case(NTLM.as_bytes()) {
        NTLM
    } else {
        let kept = scheme.get(..MAX_OTHER_SCHEME_LEN).unwrap_or(scheme);
        // `kept` is all tchar, hence ASCII.
        return Ok(Credentials::Other(
            String::from_utf8_lossy(kept).into_owned(),
        ));
    };
    let token = trim_ows(rest);
    if token.is_empty() {
        return Err(AuthHeaderError::MissingToken {
            scheme: scheme_name,
        });
    }
    if token.len() > MAX_TOKEN_B64_LEN {
        return Err(AuthHeaderError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_B64_LEN,
        });
    }
    if token.iter().any(|&b| is_ows(b)) {
        return Err(AuthHeaderError::TrailingData {
            scheme: scheme_name,
        });
    }
    let engine = if token.ends_with(b"=") {
        &PADDED
    } else {
        &UNPADDED
    };
    let decoded = engine
        .decode(token)
        .map_err(|_| AuthHeaderError::InvalidBase64 {
            scheme: scheme_name,
        })?;
    if decoded.is_empty() {
        return Err(AuthHeaderError::EmptyToken {
            scheme: scheme_name,
        });
    }
    Ok(if scheme_name == NEGOTIATE {
        Credentials::Negotiate(decoded)
    } else {
        Credentials::Ntlm(decoded)
    })
}

/// Build the `WWW-Authenticate` value `"Negotiate <b64>"` / `"NTLM <b64>"` for
/// a token (standard alphabet, padded). `None` or an empty token gives the
/// bare scheme name, the initial challenge.
pub fn challenge_value(scheme: ChallengeScheme, token: Option<&[u8]>) -> String {
    match token {
        Some(token) if !token.is_empty() => {
            let mut s = String::with_capacity(scheme.as_str().len() + 1 + token.len() / 3 * 4 + 4);
            s.push_str(scheme.as_str());
            s.push(' ');
            STANDARD.encode_string(token, &mut s);
            s
        }
        _ => scheme.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(b: &[u8]) -> Result<Credentials, AuthHeaderError> {
        parse_authorization(b)
    }

    #[test]
    fn negotiate_and_ntlm() {
        assert_eq!(
            neg(b"Negotiate YIIB"),
            Ok(Credentials::Negotiate(vec![0x60, 0x82, 0x01]))
        );
        assert_eq!(
            neg(b"negotiate YIIB"),
            Ok(Credentials::Negotiate(vec![0x60, 0x82, 0x01]))
        );
        assert_eq!(
            neg(b"NEGOTIATE \t YIIB  "),
            Ok(Credentials::Negotiate(vec![0x60, 0x82, 0x01]))
        );
        assert_eq!(
            neg(b"NTLM TlRMTVNTUAABAAAA"),
            Ok(Credentials::Ntlm(b"NTLMSSP\0\x01\0\0\0".to_vec()))
        );
        assert_eq!(
            neg(b"ntlm TlRMTVNTUAA="),
            Ok(Credentials::Ntlm(b"NTLMSSP\0".to_vec()))
        );
        assert_eq!(
            neg(b"ntlm TlRMTVNTUAA"),
            Ok(Credentials::Ntlm(b"NTLMSSP\0".to_vec()))
        );
        assert_eq!(
            neg(b"  Negotiate\tYQ=="),
            Ok(Credentials::Negotiate(b"a".to_vec()))
        );
        assert_eq!(
            neg(b"Negotiate YQ"),
            Ok(Credentials::Negotiate(b"a".to_vec()))
        );
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            neg(b"Basic dXNlcjpwYXNz"),
            Ok(Credentials::Other("Basic".into()))
        );
        assert_eq!(
            neg(b"Digest username=\"a\", realm=\"b\""),
            Ok(Credentials::Other("Digest".into()))
        );
        assert_eq!(neg(b"Bearer"), Ok(Credentials::Other("Bearer".into())));
        let long = [b'X'; 100];
        assert_eq!(neg(&long), Ok(Credentials::Other("X".repeat(32))));
        // Negotiate-prefixed but a different scheme
        assert_eq!(
            neg(b"NegotiateX YQ=="),
            Ok(Credentials::Other("NegotiateX".into()))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(neg(b""), Err(AuthHeaderError::Empty));
        assert_eq!(neg(b" \t "), Err(AuthHeaderError::Empty));
        assert_eq!(
            neg(b"Negotiate"),
            Err(AuthHeaderError::MissingToken {
                scheme: "Negotiate"
            })
        );
        assert_eq!(
            neg(b"NTLM   "),
            Err(AuthHeaderError::MissingToken { scheme: "NTLM" })
        );
        assert_eq!(
            neg(b"Negotiate YQ==\0"),
            Err(AuthHeaderError::NotVisibleAscii)
        );
        assert_eq!(
            neg(b"Negotiate YQ==\r\n"),
            Err(AuthHeaderError::NotVisibleAscii)
        );
        assert_eq!(
            neg("Négotiate YQ==".as_bytes()),
            Err(AuthHeaderError::NotVisibleAscii)
        );
        assert_eq!(neg(b"Nego,tiate YQ=="), Err(AuthHeaderError::InvalidScheme));
        assert_eq!(neg(b"=YQ=="), Err(AuthHeaderError::InvalidScheme));
        assert_eq!(
            neg(b"Negotiate YQ== YQ=="),
            Err(AuthHeaderError::TrailingData {
                scheme: "Negotiate"
            })
        );
        for bad in [
            &b"Negotiate YQ="[..],    // non-canonical padding
            b"Negotiate YQ===",       // too much padding
            b"Negotiate YR==",        // non-zero trailing bits
            b"Negotiate Y",           // impossible length
            b"Negotiate YQ-_",        // URL-safe alphabet
            b"Negotiate ====",        // only padding
            b"Negotiate YQ==,",       // list separator
            b"Negotiate realm=\"x\"", // auth-param form
        ] {
            assert_eq!(
                neg(bad),
                Err(AuthHeaderError::InvalidBase64 {
                    scheme: "Negotiate"
                }),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn length_bound_checked_before_decoding() {
        let mut v = b"Negotiate ".to_vec();
        v.extend(std::iter::repeat_n(b'A', MAX_TOKEN_B64_LEN));
        assert!(
            matches!(neg(&v), Ok(Credentials::Negotiate(t)) if t.len() == MAX_TOKEN_B64_LEN / 4 * 3)
        );
        v.extend_from_slice(b"AAAA");
        assert_eq!(
            neg(&v),
            Err(AuthHeaderError::TooLong {
                len: MAX_TOKEN_B64_LEN + 4,
                max: MAX_TOKEN_B64_LEN
            })
        );
        // Over the bound *and* invalid: the bound is reported, nothing was decoded.
        let mut v = b"NTLM ".to_vec();
        v.extend(std::iter::repeat_n(b'!', MAX_TOKEN_B64_LEN + 1));
        assert!(matches!(neg(&v), Err(AuthHeaderError::TooLong { .. })));
    }

    #[test]
    fn challenge_values() {
        assert_eq!(
            challenge_value(ChallengeScheme::Negotiate, None),
            "Negotiate"
        );
        assert_eq!(challenge_value(ChallengeScheme::Ntlm, None), "NTLM");
        assert_eq!(challenge_value(ChallengeScheme::Ntlm, Some(&[])), "NTLM");
        assert_eq!(
            challenge_value(
                ChallengeScheme::Negotiate,
                Some(&[0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x00])
            ),
            "Negotiate oQcwBaADCgEA"
        );
        assert_eq!(
            challenge_value(ChallengeScheme::Ntlm, Some(b"a")),
            "NTLM YQ=="
        );
        assert_eq!(
            neg(challenge_value(ChallengeScheme::Ntlm, Some(b"NTLMSSP\0")).as_bytes()),
            Ok(Credentials::Ntlm(b"NTLMSSP\0".to_vec()))
        );
    }

    #[test]
    fn error_display_is_actionable() {
        let e = AuthHeaderError::TooLong {
            len: 70000,
            max: MAX_TOKEN_B64_LEN,
        };
        assert!(e.to_string().contains("70000"));
        assert!(e.to_string().contains("65536"));
        assert_eq!(
            AuthHeaderError::MissingToken { scheme: "NTLM" }.to_string(),
            "Authorization header names the NTLM scheme but carries no token"
        );
    }
}
