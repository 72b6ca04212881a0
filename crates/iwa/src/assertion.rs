//! The signed identity assertion (`X-Iwa-Assertion`): a compact JWS (RFC 7515) with
//! HS256 (RFC 7518 §3.2) over the verified identity, so a backend can check that the
//! identity headers really came from its gateway and were meant for it. Short-lived,
//! bound to the request's method and path and to an audience naming the backend.
//!
//! Claims: `sub` (`X-Remote-User`), `upn` (principal), `sid`, `groups`, `group_sids`,
//! `amr` (`Kerberos`/`NTLM`/`Fake`), `act` (the impersonator, when impersonating), `iat`,
//! `exp`, `aud`, `htm` (method), `htu` (path and query).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity::Identity;

type HmacSha256 = Hmac<Sha256>;

/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The claims of an assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub upn: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub group_sids: Vec<String>,
    pub amr: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub aud: String,
    pub htm: String,
    pub htu: String,
}

/// Why an assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("unsupported JWS header (only HS256 is accepted)")]
    UnsupportedAlgorithm,
    #[error("signature does not verify (wrong secret, or the assertion was altered)")]
    BadSignature,
    #[error("claims are not valid JSON of the expected shape")]
    BadClaims,
    #[error("assertion expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("assertion issued in the future ({iat}, now {now})")]
    NotYetValid { iat: u64, now: u64 },
    #[error("assertion is for audience {found:?}, not {expected:?}")]
    WrongAudience { expected: String, found: String },
    #[error("assertion is for {found}, not this request ({expected})")]
    WrongRequest { expected: String, found: String },
    #[error("the assertion secret must be at least 32 bytes")]
    ShortSecret,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs assertions with a shared secret (≥ 32 bytes).
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
    pub audience: String,
    pub lifetime: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn mac(secret: &[u8], signing_input: &str) -> Result<HmacSha256, AssertionError> {
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(secret).map_err(|_| AssertionError::ShortSecret)?;
    m.update(signing_input.as_bytes());
    Ok(m)
}

impl Signer {
    pub fn new(
        secret: Vec<u8>,
        audience: impl Into<String>,
        lifetime: Duration,
    ) -> Result<Self, AssertionError> {
        if secret.len() < 32 {
            return Err(AssertionError::ShortSecret);
        }
        Ok(Signer {
            secret,
            audience: audience.into(),
            lifetime,
        })
    }

    /// The assertion for `identity` on request `method` `path_and_query` at `now`.
    pub fn sign(
        &self,
        identity: &Identity,
        impersonator: Option<&str>,
        method: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> Result<String, AssertionError> {
        let iat = unix(now);
        let claims = Claims {
            sub: identity.remote_user(),
            upn: identity.principal.clone(),
            sid: identity.sid.clone(),
            groups: identity
                .groups
                .iter()
                .filter_map(|g| g.name.clone())
                .collect(),
            group_sids: identity
                .groups
                .iter()
                .filter_map(|g| g.sid.clone())
                .collect(),
            amr: identity.method.as_str().to_owned(),
            act: impersonator.map(str::to_owned),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
            aud: self.audience.clone(),
            htm: method.to_owned(),
            htu: path_and_query.to_owned(),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| AssertionError::BadClaims)?;
        let input = format!("{HEADER_B64}.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = mac(&self.secret, &input)?.finalize().into_bytes();
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }
}

/// What a backend checks, with the shared secret: signature (constant time), algorithm,
/// expiry (with `leeway`), audience, and that the assertion is for this request.
pub fn verify(
    secret: &[u8],
    token: &str,
    audience: &str,
    method: &str,
    path_and_query: &str,
    now: SystemTime,
    leeway: Duration,
) -> Result<Claims, AssertionError> {
    if token.len() > 16 * 1024 {
        return Err(AssertionError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed);
    };
    if h != HEADER_B64 {
        return Err(AssertionError::UnsupportedAlgorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AssertionError::Malformed)?;
    let input_len = h.len() + 1 + p.len();
    let input = token.get(..input_len).ok_or(AssertionError::Malformed)?;
    mac(secret, input)?
        .verify_slice(&sig)
        .map_err(|_| AssertionError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| AssertionError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| AssertionError::BadClaims)?;
    let now = unix(now);
    let leeway = leeway.as_secs();
    if now > claims.exp.saturating_add(leeway) {
        return Err(AssertionError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(AssertionError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if claims.aud != audience {
        return Err(AssertionError::WrongAudience {
            expected: audience.to_owned(),
            found: claims.aud,
        });
    }
    if claims.htm != method || claims.htu != path_and_query {
        return Err(AssertionError::WrongRequest {
            expected: format!("{method} {path_and_query}"),
            found: format!("{} {}", claims.htm, claims.htu),
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group};
    use std::collections::BTreeMap;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn alice() -> Identity {
        let mut m = BTreeMap::new();
        m.insert("EX.TEST".to_owned(), "EX".to_owned());
        let mut id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &m);
        id.groups.push(Group {
            sid: Some("S-1-5-21-1-2-3-513".into()),
            name: Some("EX\\Domain Users".into()),
        });
        id
    }

    #[test]
    fn header_constant_is_hs256() {
        let h = URL_SAFE_NO_PAD.decode(HEADER_B64).unwrap();
        assert_eq!(h, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn sign_then_verify() {
        let s = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60)).unwrap();
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/x?y=1", now).unwrap();
        let c = verify(
            SECRET,
            &t,
            "app",
            "GET",
            "/x?y=1",
            now,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(c.sub, "EX\\alice");
        assert_eq!(c.upn, "alice@EX.TEST");
        assert_eq!(c.amr, "Kerberos");
        assert_eq!(c.groups, vec!["EX\\Domain Users"]);
        assert_eq!(c.group_sids, vec!["S-1-5-21-1-2-3-513"]);
    }

    #[test]
    fn every_refusal() {
        let s = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60)).unwrap();
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/x", now).unwrap();
        let v = |tok: &str, aud: &str, m: &str, p: &str, at: SystemTime| {
            verify(SECRET, tok, aud, m, p, at, Duration::from_secs(5))
        };
        assert_eq!(
            v(&t, "other", "GET", "/x", now).unwrap_err(),
            AssertionError::WrongAudience {
                expected: "other".into(),
                found: "app".into()
            }
        );
        assert!(matches!(
            v(&t, "app", "POST", "/x", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/y", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/x", now + Duration::from_secs(120)),
            Err(AssertionError::Expired { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/x", now - Duration::from_secs(120)),
            Err(AssertionError::NotYetValid { .. })
        ));
        assert_eq!(
            verify(
                b"another-secret-another-secret-xx",
                &t,
                "app",
                "GET",
                "/x",
                now,
                Duration::ZERO
            )
            .unwrap_err(),
            AssertionError::BadSignature
        );
        // Tamper with the payload: swap in other claims under the old signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap()
                .replace("alice", "admin"),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            v(&forged, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::BadSignature
        );
        // alg=none and friends.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(
            v(&none, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::UnsupportedAlgorithm
        );
        assert_eq!(
            v("a.b", "app", "GET", "/x", now).unwrap_err(),
            AssertionError::Malformed
        );
        assert!(Signer::new(b"short".to_vec(), "app", Duration::from_secs(60)).is_err());
    }
}
