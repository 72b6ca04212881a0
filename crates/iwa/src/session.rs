//! Session cookies for ordinary logins (mod_auth_gssapi's `GssapiUseSessions`): after
//! a Kerberos or NTLM login the gateway sets an AEAD session ticket ([`crate::ticket`]),
//! and later requests that carry it skip the handshake. The ticket never outlives the
//! Kerberos ticket behind it, expires when idle, and has an absolute cap.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderValue, COOKIE};

use crate::identity::Identity;
use crate::ticket::{
    Purpose, SessionPayload, Subject, TicketClaims, TicketCodec, TicketError, TicketLifetime,
};

/// How session cookies are issued and read.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub codec: Arc<TicketCodec>,
    /// Cookie name (default `iwa_session`).
    pub cookie_name: String,
    pub lifetime: TicketLifetime,
    /// Add `Secure` (TLS listeners).
    pub secure: bool,
}

/// What a request's session cookie says.
#[derive(Debug)]
pub enum SessionLookup {
    /// No session cookie.
    Absent,
    /// A valid session; `renewed` is a `Set-Cookie` to send when the sliding window moved.
    Valid {
        identity: Identity,
        renewed: Option<HeaderValue>,
    },
    /// A cookie that does not open (expired, tampered, rotated-out key, ...).
    Invalid(TicketError),
}

/// The value of cookie `name` among the request's `Cookie` headers (RFC 6265 §5.4).
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

impl SessionSettings {
    pub fn new(codec: Arc<TicketCodec>) -> Self {
        SessionSettings {
            codec,
            cookie_name: "iwa_session".into(),
            lifetime: TicketLifetime::DEFAULT,
            secure: false,
        }
    }

    fn set_cookie(&self, value: &str, clear: bool) -> Option<HeaderValue> {
        set_cookie_header(&self.cookie_name, value, self.secure, clear)
    }

    /// Reads the session cookie of a request.
    pub fn lookup(&self, headers: &HeaderMap, now: SystemTime) -> SessionLookup {
        let Some(value) = cookie_value(headers, &self.cookie_name) else {
            return SessionLookup::Absent;
        };
        let claims: TicketClaims<SessionPayload> =
            match self.codec.open(Purpose::Session, value, now) {
                Ok(c) => c,
                Err(e) => return SessionLookup::Invalid(e),
            };
        let identity = match claims.payload().to_identity(claims.not_after()) {
            Ok(id) => id,
            Err(e) => return SessionLookup::Invalid(e),
        };
        let renewed = if claims.needs_renewal(now) {
            self.codec
                .seal(&claims.renew(now))
                .ok()
                .and_then(|v| self.set_cookie(&v, false))
        } else {
            None
        };
        SessionLookup::Valid { identity, renewed }
    }

    /// The `Set-Cookie` for a fresh login, or `None` when no ticket can be made (e.g. too
    /// many groups for a cookie: then every request simply authenticates again).
    pub fn issue(&self, identity: &Identity, now: SystemTime) -> Option<HeaderValue> {
        let claims = TicketClaims::issue(
            Purpose::Session,
            Subject::of(identity),
            SessionPayload::from(identity),
            self.lifetime,
            identity.expires,
            now,
        )
        .ok()?;
        match self.codec.seal(&claims) {
            Ok(v) => self.set_cookie(&v, false),
            Err(e) => {
                tracing::warn!("no session cookie for {}: {e}", identity.principal);
                None
            }
        }
    }

    /// A `Set-Cookie` that deletes the session cookie.
    pub fn clear(&self) -> Option<HeaderValue> {
        self.set_cookie("", true)
    }

    /// Removes the session cookie from a request before it is forwarded: the ticket is
    /// a bearer credential the backend has no business seeing.
    pub fn strip(&self, headers: &mut HeaderMap) {
        strip_cookie(headers, &self.cookie_name);
    }
}

/// A `Set-Cookie` value for one of the gateway's ticket cookies: `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, `Secure` on TLS listeners; `clear` deletes it.
pub fn set_cookie_header(
    name: &str,
    value: &str,
    secure: bool,
    clear: bool,
) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if clear {
        c.push_str("; Max-Age=0");
    }
    HeaderValue::from_str(&c).ok()
}

/// Removes cookie `name` from a request's `Cookie` headers, keeping the others.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    if cookie_value(headers, name).is_none() {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k != name) && !pair.is_empty())
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use crate::ticket::KeyRing;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn settings() -> SessionSettings {
        SessionSettings::new(Arc::new(TicketCodec::new(KeyRing::from_keys(
            &[9u8; 32],
            &[],
        ))))
    }

    fn cookie_header(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}; lang=en")).unwrap(),
        );
        h
    }

    fn alice(expires: Option<SystemTime>) -> Identity {
        let mut id =
            Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        id.expires = expires;
        id
    }

    #[test]
    fn issue_then_lookup_round_trips_and_strip_keeps_other_cookies() {
        let s = settings();
        let now = SystemTime::now();
        let set = s
            .issue(&alice(Some(now + Duration::from_secs(3600))), now)
            .unwrap();
        let v = set.to_str().unwrap();
        assert!(
            v.starts_with("iwa_session=") && v.contains("HttpOnly") && v.contains("SameSite=Lax")
        );
        let mut headers = cookie_header(&set);
        match s.lookup(&headers, now) {
            SessionLookup::Valid { identity, renewed } => {
                assert_eq!(identity.principal, "alice@EX.TEST");
                assert!(renewed.is_none());
            }
            other => panic!("{other:?}"),
        }
        s.strip(&mut headers);
        assert_eq!(headers[COOKIE], "theme=dark; lang=en");
    }

    #[test]
    fn never_outlives_the_kerberos_ticket_and_renews_after_half_the_idle_window() {
        let s = settings();
        let now = SystemTime::now();
        let min = |m: u64| Duration::from_secs(m * 60);
        let set = s.issue(&alice(Some(now + min(60))), now).unwrap();
        let headers = cookie_header(&set);
        match s.lookup(&headers, now + min(14)) {
            SessionLookup::Valid { renewed, .. } => {
                assert!(renewed.is_none(), "before half of 30 min idle")
            }
            other => panic!("{other:?}"),
        }
        let renewed = match s.lookup(&headers, now + min(16)) {
            SessionLookup::Valid { renewed, .. } => renewed.expect("past half of 30 min idle"),
            other => panic!("{other:?}"),
        };
        // Not renewed: idle expiry at 30 min. Renewed at 16: good until 46.
        assert!(matches!(
            s.lookup(&headers, now + min(31)),
            SessionLookup::Invalid(_)
        ));
        let renewed = cookie_header(&renewed);
        assert!(matches!(
            s.lookup(&renewed, now + min(40)),
            SessionLookup::Valid { .. }
        ));
        // Never past the Kerberos ticket's end, however it is renewed.
        assert!(matches!(
            s.lookup(&renewed, now + min(61)),
            SessionLookup::Invalid(_)
        ));
    }

    #[test]
    fn tampered_or_foreign_cookies_are_invalid() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        let other = SessionSettings::new(Arc::new(TicketCodec::new(KeyRing::from_keys(
            &[7u8; 32],
            &[],
        ))));
        assert!(matches!(
            other.lookup(&cookie_header(&set), now),
            SessionLookup::Invalid(_)
        ));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("iwa_session=AAAA"));
        assert!(matches!(s.lookup(&h, now), SessionLookup::Invalid(_)));
        assert!(matches!(
            s.lookup(&HeaderMap::new(), now),
            SessionLookup::Absent
        ));
    }
}
