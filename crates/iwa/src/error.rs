//! Why authentication failed, and the one place that turns it into an HTTP response.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use iwa_proto::authz::AuthHeaderError;
use iwa_proto::spnego::SpnegoError;

use crate::gss::GssError;

/// What went wrong with a Kerberos acceptance, in terms an admin can act on. Derived
/// from MIT's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KerberosFailure {
    /// The authenticator was seen before: a replayed token.
    Replay,
    /// The client's clock differs from ours by more than the allowed skew.
    ClockSkew,
    /// The ticket is for a service principal we hold no key for.
    NoKeyForPrincipal,
    /// The ticket's key version is not in the keytab (keytab older than the KDC's key).
    KeyVersionMismatch,
    /// The ticket could not be decrypted with our key: keytab and KDC disagree.
    WrongKey,
    /// The ticket's encryption type is not supported or not in the keytab.
    UnsupportedEnctype,
    /// The ticket has expired.
    TicketExpired,
    /// The ticket is not valid yet.
    TicketNotYetValid,
    /// The ticket is for a different server than the one we were told to be.
    WrongServer,
    /// The client's channel bindings do not match this TLS channel.
    ChannelBindingMismatch,
    /// The token is not a well-formed Kerberos token.
    DefectiveToken,
    /// The replay cache could not be read or written (a server-side problem).
    ReplayCacheUnavailable,
    /// Anything else MIT reported.
    Other,
}

impl KerberosFailure {
    /// Classifies a GSS error from `gss_accept_sec_context`.
    pub fn classify(err: &GssError) -> Self {
        use crate::gss::major;
        // krb5 com_err codes (krb5.h); GSS minor statuses carry them as u32.
        const AP_ERR_BAD_INTEGRITY: i32 = -1765328353;
        const AP_ERR_TKT_EXPIRED: i32 = -1765328352;
        const AP_ERR_TKT_NYV: i32 = -1765328351;
        const AP_ERR_REPEAT: i32 = -1765328350;
        const AP_ERR_NOT_US: i32 = -1765328349;
        const AP_ERR_BADMATCH: i32 = -1765328348;
        const AP_ERR_SKEW: i32 = -1765328347;
        const AP_ERR_MODIFIED: i32 = -1765328343;
        const AP_ERR_BADKEYVER: i32 = -1765328340;
        const AP_ERR_NOKEY: i32 = -1765328339;
        const BAD_ENCTYPE: i32 = -1765328196;
        const PROG_ETYPE_NOSUPP: i32 = -1765328234;
        const KT_NOTFOUND: i32 = -1765328203;
        const KT_KVNONOTFOUND: i32 = -1765328154;
        const RC_REPLAY: i32 = -1765328221;
        const RC_IO_FIRST: i32 = -1765328220;
        const RC_IO_LAST: i32 = -1765328213;
        const ASN1_FIRST: i32 = 1859794432;
        const ASN1_LAST: i32 = 1859794442;

        let minor = err.minor as i32;
        match minor {
            AP_ERR_REPEAT | RC_REPLAY => return KerberosFailure::Replay,
            AP_ERR_SKEW => return KerberosFailure::ClockSkew,
            AP_ERR_NOKEY | KT_NOTFOUND => return KerberosFailure::NoKeyForPrincipal,
            AP_ERR_BADKEYVER | KT_KVNONOTFOUND => return KerberosFailure::KeyVersionMismatch,
            AP_ERR_BAD_INTEGRITY | AP_ERR_MODIFIED => return KerberosFailure::WrongKey,
            BAD_ENCTYPE | PROG_ETYPE_NOSUPP => return KerberosFailure::UnsupportedEnctype,
            AP_ERR_TKT_EXPIRED => return KerberosFailure::TicketExpired,
            AP_ERR_TKT_NYV => return KerberosFailure::TicketNotYetValid,
            AP_ERR_NOT_US | AP_ERR_BADMATCH => return KerberosFailure::WrongServer,
            RC_IO_FIRST..=RC_IO_LAST => return KerberosFailure::ReplayCacheUnavailable,
            ASN1_FIRST..=ASN1_LAST => return KerberosFailure::DefectiveToken,
            _ => {}
        }
        if err.major & major::DUPLICATE_TOKEN_INFO != 0 {
            return KerberosFailure::Replay;
        }
        match crate::gss::routine_error(err.major) {
            major::BAD_BINDINGS => KerberosFailure::ChannelBindingMismatch,
            major::DEFECTIVE_TOKEN | major::BAD_MECH => KerberosFailure::DefectiveToken,
            major::CREDENTIALS_EXPIRED => KerberosFailure::TicketExpired,
            major::BAD_SIG => KerberosFailure::WrongKey,
            _ => KerberosFailure::Other,
        }
    }

    /// One sentence an admin can act on.
    pub fn explain(self) -> &'static str {
        match self {
            KerberosFailure::Replay => "replayed token refused (the same Kerberos authenticator was already used)",
            KerberosFailure::ClockSkew => "clock skew too great between client and server: check NTP on both",
            KerberosFailure::NoKeyForPrincipal => "the ticket is for a service principal that is not in the keytab (wrong SPN: check the URL's host name, the keytab, and service_principal)",
            KerberosFailure::KeyVersionMismatch => "the ticket's key version (kvno) is not in the keytab: the service key was changed at the KDC, export a fresh keytab",
            KerberosFailure::WrongKey => "the ticket cannot be decrypted with the keytab's key: the keytab is out of date with the KDC (password or key reset?)",
            KerberosFailure::UnsupportedEnctype => "the ticket's encryption type is not in the keytab or not supported: check msDS-SupportedEncryptionTypes and the keytab's enctypes",
            KerberosFailure::TicketExpired => "the client's ticket has expired: the client must renew it (kinit / log in again)",
            KerberosFailure::TicketNotYetValid => "the client's ticket is not yet valid: check clocks",
            KerberosFailure::WrongServer => "the ticket is for a different service than this server's configured principal",
            KerberosFailure::ChannelBindingMismatch => "channel bindings do not match this TLS connection (a token relayed from another channel?)",
            KerberosFailure::DefectiveToken => "malformed Kerberos token",
            KerberosFailure::ReplayCacheUnavailable => "the replay cache cannot be used (permissions or disk on the server)",
            KerberosFailure::Other => "Kerberos acceptance failed",
        }
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(#[from] AuthHeaderError),
    #[error("more than one Authorization header")]
    MultipleAuthorizationHeaders,
    #[error("unsupported authorization scheme {0:?} (only Negotiate is offered)")]
    UnsupportedScheme(String),
    #[error("not a SPNEGO or Kerberos token: {0}")]
    BadToken(#[from] SpnegoError),
    #[error("client offered mechanism {0}, which is not enabled here")]
    MechanismNotEnabled(String),
    #[error("SPNEGO token carries no mechanism token for {0}; a multi-round mechanism negotiation is not supported")]
    NoMechToken(String),
    #[error("{}: {gss}{}", .kind.explain(), .ticket.as_deref().map(|t| format!(" [{t}]")).unwrap_or_default())]
    Kerberos {
        kind: KerberosFailure,
        gss: GssError,
        /// What the AP-REQ said in clear text (service principal, kvno, enctype).
        ticket: Option<String>,
    },
    #[error("{}{}", KerberosFailure::Replay.explain(), .ticket.as_deref().map(|t| format!(" [{t}]")).unwrap_or_default())]
    Replay { ticket: Option<String> },
    #[error("malformed Kerberos token: {0}")]
    MalformedKerberos(iwa_proto::krb5::Krb5Error),
    #[error("SPNEGO mechListMIC did not verify: {0}")]
    BadMechListMic(GssError),
    #[error(
        "the Kerberos exchange needs another round trip, which HTTP Negotiate does not allow here"
    )]
    ContinueNeeded,
    #[error("NTLM: {0}")]
    Ntlm(crate::ntlm::NtlmFailure),
    #[error(
        "NTLM needs per-connection state, which this server does not provide (see ConnectionAuth)"
    )]
    NtlmNeedsConnection,
    #[error("NTLM AUTHENTICATE without a CHALLENGE on this connection (a handshake split across connections, or a replayed message)")]
    NtlmNoChallenge,
    #[error("NTLM AUTHENTICATE arrived after the handshake timeout")]
    NtlmHandshakeTimeout,
    #[error("NTLM AUTHENTICATE sent under a different scheme than the NEGOTIATE")]
    NtlmSchemeMismatch,
    #[error("NTLM message type {0} where a NEGOTIATE (1) or AUTHENTICATE (3) was expected")]
    NtlmUnexpectedMessage(u32),
    #[error("NTLM AUTHENTICATE is for target {0:?}, which is not one of ntlm.target_names (a relayed handshake?)")]
    NtlmWrongTarget(String),
    #[error("SPNEGO mechListMIC for NTLM did not verify (the negotiation was tampered with)")]
    NtlmBadMechListMic,
    #[error("{0} login without channel bindings refused: extended_protection = \"require\" needs clients that bind their login to this TLS connection")]
    ChannelBindingRequired(&'static str),
    #[error("NTLM channel bindings (MsvAvChannelBindings) do not match this TLS connection (a login relayed from another channel, or a TLS-intercepting proxy?)")]
    NtlmChannelBindingMismatch,
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    pub fn kerberos(gss: GssError) -> Self {
        AuthError::Kerberos {
            kind: KerberosFailure::classify(&gss),
            gss,
            ticket: None,
        }
    }

    /// Adds the ticket's clear-text description to a Kerberos failure.
    pub fn with_ticket(mut self, description: Option<String>) -> Self {
        if let AuthError::Kerberos { ticket, .. } = &mut self {
            *ticket = description;
        }
        self
    }

    /// A short stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MalformedHeader(_) => "malformed_header",
            AuthError::MultipleAuthorizationHeaders => "multiple_authorization",
            AuthError::UnsupportedScheme(_) => "unsupported_scheme",
            AuthError::BadToken(_) => "bad_token",
            AuthError::MechanismNotEnabled(_) => "mechanism_not_enabled",
            AuthError::NoMechToken(_) => "no_mech_token",
            AuthError::Kerberos { kind, .. } => match kind {
                KerberosFailure::Replay => "kerberos_replay",
                KerberosFailure::ClockSkew => "kerberos_clock_skew",
                KerberosFailure::NoKeyForPrincipal => "kerberos_no_key",
                KerberosFailure::KeyVersionMismatch => "kerberos_kvno",
                KerberosFailure::WrongKey => "kerberos_wrong_key",
                KerberosFailure::UnsupportedEnctype => "kerberos_enctype",
                KerberosFailure::TicketExpired => "kerberos_expired",
                KerberosFailure::TicketNotYetValid => "kerberos_not_yet_valid",
                KerberosFailure::WrongServer => "kerberos_wrong_server",
                KerberosFailure::ChannelBindingMismatch => "kerberos_channel_binding",
                KerberosFailure::DefectiveToken => "kerberos_defective_token",
                KerberosFailure::ReplayCacheUnavailable => "kerberos_rcache_unavailable",
                KerberosFailure::Other => "kerberos_other",
            },
            AuthError::Replay { .. } => "kerberos_replay",
            AuthError::MalformedKerberos(_) => "kerberos_defective_token",
            AuthError::BadMechListMic(_) => "bad_mech_list_mic",
            AuthError::ContinueNeeded => "continue_needed",
            AuthError::Ntlm(crate::ntlm::NtlmFailure::UnknownUser { .. }) => "ntlm_unknown_user",
            AuthError::Ntlm(crate::ntlm::NtlmFailure::Unavailable(_)) => {
                "ntlm_validator_unavailable"
            }
            AuthError::Ntlm(_) => "ntlm_refused",
            AuthError::NtlmNeedsConnection => "ntlm_needs_connection",
            AuthError::NtlmNoChallenge => "ntlm_no_challenge",
            AuthError::NtlmHandshakeTimeout => "ntlm_handshake_timeout",
            AuthError::NtlmSchemeMismatch => "ntlm_scheme_mismatch",
            AuthError::NtlmUnexpectedMessage(_) => "ntlm_unexpected_message",
            AuthError::NtlmBadMechListMic => "ntlm_bad_mech_list_mic",
            AuthError::NtlmWrongTarget(_) => "ntlm_wrong_target",
            AuthError::ChannelBindingRequired(_) => "channel_binding_required",
            AuthError::NtlmChannelBindingMismatch => "ntlm_channel_binding",
            AuthError::Internal(_) => "internal",
        }
    }

    /// The HTTP status this failure maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MalformedHeader(_) | AuthError::MultipleAuthorizationHeaders => {
                StatusCode::BAD_REQUEST
            }
            AuthError::Kerberos {
                kind: KerberosFailure::ReplayCacheUnavailable,
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Ntlm(crate::ntlm::NtlmFailure::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AuthError::Internal(_) | AuthError::NtlmNeedsConnection => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The `WWW-Authenticate` challenges a 401 carries.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub values: Vec<HeaderValue>,
}

impl Challenge {
    pub fn negotiate() -> Self {
        Challenge {
            values: vec![HeaderValue::from_static("Negotiate")],
        }
    }
}

/// Which flavour of body a client prefers for error pages.
fn wants_json(accept: Option<&HeaderValue>) -> bool {
    accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"))
}

/// A small error page: JSON `{"error": ..., "code": ...}` for API clients, else HTML.
pub fn error_page(
    status: StatusCode,
    code: &str,
    message: &str,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    let (ctype, body) = if wants_json(accept) {
        (
            "application/json",
            serde_json::json!({ "error": message, "code": code }).to_string(),
        )
    } else {
        let title = status.canonical_reason().unwrap_or("Error");
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} {}</title></head>\
                 <body><h1>{} {}</h1><p>{}</p></body></html>\n",
                status.as_u16(),
                title,
                status.as_u16(),
                title,
                html_escape(message)
            ),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The single mapping from "not authenticated" to an HTTP response. `err` is `None`
/// when the client sent no credentials at all. The client never learns the detailed
/// reason (that goes to the log); it gets the status and a fresh challenge.
pub fn unauthenticated_response(
    err: Option<&AuthError>,
    challenge: &Challenge,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    let status = err.map_or(StatusCode::UNAUTHORIZED, AuthError::status);
    let (code, message) = match err {
        None => (
            "authentication_required",
            "Authentication required: sign in with your Windows/Kerberos account.",
        ),
        Some(e) if status == StatusCode::BAD_REQUEST => {
            (e.code(), "The Authorization header is malformed.")
        }
        Some(e) if status == StatusCode::SERVICE_UNAVAILABLE => {
            (e.code(), "Authentication is temporarily unavailable.")
        }
        Some(e) if status == StatusCode::INTERNAL_SERVER_ERROR => {
            (e.code(), "Internal error during authentication.")
        }
        Some(e) => (
            e.code(),
            "Authentication failed: your credentials were not accepted.",
        ),
    };
    let mut resp = error_page(status, code, message, accept);
    if status == StatusCode::UNAUTHORIZED {
        for v in &challenge.values {
            resp.headers_mut().append(WWW_AUTHENTICATE, v.clone());
        }
    }
    resp
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(v.to_str().unwrap_or("?"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gss(major: u32, minor: i32) -> GssError {
        GssError {
            major,
            minor: minor as u32,
            message: String::new(),
        }
    }

    #[test]
    fn classifies_mit_minor_codes() {
        use crate::gss::major;
        assert_eq!(
            KerberosFailure::classify(&gss(major::FAILURE, -1765328350)),
            KerberosFailure::Replay
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::FAILURE, -1765328347)),
            KerberosFailure::ClockSkew
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::FAILURE, -1765328203)),
            KerberosFailure::NoKeyForPrincipal
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::FAILURE, -1765328154)),
            KerberosFailure::KeyVersionMismatch
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::DEFECTIVE_TOKEN, 0)),
            KerberosFailure::DefectiveToken
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::BAD_BINDINGS, 0)),
            KerberosFailure::ChannelBindingMismatch
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::DUPLICATE_TOKEN_INFO, 0)),
            KerberosFailure::Replay
        );
        assert_eq!(
            KerberosFailure::classify(&gss(major::FAILURE, 12345)),
            KerberosFailure::Other
        );
    }

    #[test]
    fn statuses() {
        let e = AuthError::MultipleAuthorizationHeaders;
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = AuthError::kerberos(gss(crate::gss::major::FAILURE, -1765328350));
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.code(), "kerberos_replay");
        assert!(e.to_string().starts_with("replayed token refused"));
    }

    #[test]
    fn challenge_only_on_401() {
        let c = Challenge::negotiate();
        let r = unauthenticated_response(None, &c, None);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Negotiate");
        let r = unauthenticated_response(Some(&AuthError::MultipleAuthorizationHeaders), &c, None);
        assert_eq!(r.status(), 400);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn error_page_escapes_and_negotiates_json() {
        let json = HeaderValue::from_static("application/json");
        let r = error_page(StatusCode::BAD_GATEWAY, "x", "a<b>", Some(&json));
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let r = error_page(StatusCode::BAD_GATEWAY, "x", "a<b>", None);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(html_escape("a<b>&\""), "a&lt;b&gt;&amp;&quot;");
    }
}
