//! AEAD tickets under a key ring: the sealed cookies behind session logins and
//! impersonation. No HTTP here; the gateway sets and reads the cookies.
//!
//! # Wire format
//!
//! A cookie value is base64url without padding of
//!
//! ```text
//! version (1 byte, = 1) ‖ key id (8) ‖ nonce (24) ‖ ciphertext ‖ tag (16)
//! ```
//!
//! sealed with **XChaCha20-Poly1305** under the key ring's current key. The associated
//! data is `"iwa-ticket" ‖ version ‖ key id ‖ purpose name`, so the header cannot be
//! altered and a ticket sealed for one [`Purpose`] cannot be opened as another. The
//! plaintext is the [`TicketClaims`] as compact JSON. Values longer than
//! [`MAX_TICKET_LEN`] characters are refused before any decoding.
//!
//! Why XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`) rather than AES-256-GCM: its
//! 192-bit nonce can be drawn at random for every ticket with no practical chance of a
//! repeat, across restarts and across instances sharing a key, with no counter to keep;
//! AES-GCM's 96-bit random nonces reach collision risk after ~2³² tickets per key, and a
//! repeat breaks both confidentiality and authenticity. It is also constant-time in
//! software, with no dependence on AES-NI.
//!
//! # Using it (what the HTTP layer does)
//!
//! - Sealing: [`TicketClaims::issue`] then [`TicketCodec::seal`]. A ticket over
//!   [`MAX_TICKET_LEN`] (a user in very many groups) is refused with
//!   [`TicketError::TooLarge`]: set no cookie and carry on without a session.
//! - Opening: [`TicketCodec::open`] (authenticity, purpose, times), then
//!   [`TicketClaims::check_revocation`], then for impersonation tickets
//!   [`TicketClaims::bound_to`] with the real identity authenticated on this request.
//!   Any error means: ignore the cookie (and clear it); never a 5xx. Errors never contain
//!   the cookie or key material, so they may be logged.
//! - Sliding expiration: when [`TicketClaims::needs_renewal`], seal
//!   [`TicketClaims::renew`] and set the cookie again. The ticket id is kept, so a
//!   revocation covers every renewed copy.
//! - Stopping: revoke [`TicketClaims::ticket_id`] until [`TicketClaims::hard_expiry`].
//! - Cookie attributes: `HttpOnly; SameSite=Lax; Path=/`, `Secure` on TLS listeners;
//!   `Max-Age` at most the seconds until [`TicketClaims::hard_expiry`] (or none: a
//!   browser-session cookie). The ticket's own times decide validity, not the browser.
//!
//! # What each ticket is bound to
//!
//! - An **impersonation** ticket is never authentication by itself: the request is
//!   authenticated first (Kerberos, NTLM or a session ticket) and the ticket is honoured
//!   only if [`TicketClaims::bound_to`] that real user. A copy in another user's browser
//!   is ignored there (and worth an audit event).
//! - A **session** ticket *is* the authentication for the requests that carry it: a
//!   bearer credential, like mod_auth_gssapi's session cookie. No client attribute is
//!   both stable and unforgeable (addresses change behind NAT and proxies; headers are
//!   the client's to choose; the TLS server certificate is the same for everyone), so it
//!   is bound to nothing a thief could forge either; what limits a stolen copy is
//!   `HttpOnly`/`Secure`/`SameSite`, the idle window, the absolute cap, the Kerberos end
//!   time (`not_after`), and revocation by id.

mod claims;
mod keys;
mod revocation;

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use claims::{
    ImpersonationPayload, Purpose, SessionPayload, Subject, TicketClaims, TicketId, TicketIdentity,
    TicketLifetime,
};
pub use keys::{KeyError, KeyFormatError, KeyId, KeyRing, KEY_ID_LEN, KEY_LEN};
pub use revocation::{MemoryRevocationStore, RevocationStore};

/// The wire format version this code writes and reads.
pub const TICKET_VERSION: u8 = 1;
/// Longest cookie value accepted or produced, in characters (browsers keep cookies up
/// to about 4096 bytes including the name).
pub const MAX_TICKET_LEN: usize = 4096;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const AAD_LABEL: &[u8] = b"iwa-ticket";

/// Why a ticket was not sealed or not accepted. Every variant is a distinct cause; none
/// carries the ticket or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    #[error("ticket is {len} characters long, over the {max}-character limit")]
    TooLarge { len: usize, max: usize },
    #[error("ticket is not unpadded base64url (a mangled or foreign cookie)")]
    NotBase64,
    #[error("ticket is {len} bytes, shorter than the {min} bytes of header and tag")]
    Truncated { len: usize, min: usize },
    #[error(
        "ticket format version {found} is not supported (this gateway reads version \
         {TICKET_VERSION})"
    )]
    UnsupportedVersion { found: u8 },
    #[error(
        "ticket was sealed under key {key_id}, which is not in the key ring \
         (rotated out, or another gateway's key; add its file to the previous keys to accept it)"
    )]
    UnknownKey { key_id: KeyId },
    #[error(
        "ticket failed authentication: it was altered or truncated, or sealed by a \
         different key"
    )]
    Forged,
    #[error("ticket was sealed for {found} but presented as {expected}")]
    WrongPurpose { expected: Purpose, found: Purpose },
    #[error(
        "ticket authenticated but its claims do not decode (sealed by an incompatible \
         gateway version?)"
    )]
    InvalidClaims,
    #[error(
        "ticket issued in the future (at unix time {}, now {}): clocks differ between \
         gateway instances by more than the allowed skew",
        unix(issued_at),
        unix(now)
    )]
    NotYetValid {
        issued_at: SystemTime,
        now: SystemTime,
    },
    #[error("ticket reached its absolute lifetime cap at unix time {}", unix(at))]
    AbsoluteExpired { at: SystemTime },
    #[error(
        "ticket outlived the credential it came from (Kerberos ticket end time: unix time {})",
        unix(at)
    )]
    CredentialExpired { at: SystemTime },
    #[error(
        "ticket expired at unix time {} after being idle longer than its idle timeout",
        unix(at)
    )]
    IdleExpired { at: SystemTime },
    #[error("ticket was revoked")]
    Revoked,
    #[error("the operating system's random number generator failed")]
    RandomUnavailable,
    #[error("ticket claims could not be encoded")]
    Encode,
}

fn unix(t: &SystemTime) -> u64 {
    claims::unix_secs(*t)
}

fn aad(version: u8, key_id: KeyId, purpose: Purpose) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + KEY_ID_LEN + 16);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(version);
    aad.extend_from_slice(&key_id.0);
    aad.extend_from_slice(purpose.as_str().as_bytes());
    aad
}

/// Seals and opens tickets with a [`KeyRing`]. To reload keys, build a new codec and
/// swap it in.
#[derive(Debug)]
pub struct TicketCodec {
    keys: KeyRing,
    clock_skew: Duration,
}

impl TicketCodec {
    /// How far in the future a ticket's issue time may be (another instance's clock
    /// running ahead of ours).
    pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

    pub fn new(keys: KeyRing) -> Self {
        TicketCodec {
            keys,
            clock_skew: Self::DEFAULT_CLOCK_SKEW,
        }
    }

    #[must_use]
    pub fn with_clock_skew(mut self, clock_skew: Duration) -> Self {
        self.clock_skew = clock_skew;
        self
    }

    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }

    /// How far in the future an issue time may be ([`TicketClaims::check_times`]).
    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    /// Seals `claims` under the current key with a fresh random nonce; the purpose is
    /// the claims' own. Returns the cookie value.
    pub fn seal<T: Serialize>(&self, claims: &TicketClaims<T>) -> Result<String, TicketError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| TicketError::RandomUnavailable)?;
        self.seal_with_nonce(claims, nonce)
    }

    fn seal_with_nonce<T: Serialize>(
        &self,
        claims: &TicketClaims<T>,
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, TicketError> {
        let plaintext = serde_json::to_vec(claims).map_err(|_| TicketError::Encode)?;
        // Refuse early what cannot fit (unpadded base64: 4 characters per 3 bytes).
        let raw_len = HEADER_LEN + plaintext.len() + TAG_LEN;
        let encoded_len = raw_len.saturating_mul(4).div_ceil(3);
        if encoded_len > MAX_TICKET_LEN {
            return Err(TicketError::TooLarge {
                len: encoded_len,
                max: MAX_TICKET_LEN,
            });
        }
        let key = &self.keys.current;
        let aad = aad(TICKET_VERSION, key.id, claims.purpose());
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| TicketError::Encode)?;
        let mut raw = Vec::with_capacity(HEADER_LEN + sealed.len());
        raw.push(TICKET_VERSION);
        raw.extend_from_slice(&key.id.0);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Opens a cookie value expected to hold a `purpose` ticket and checks its times at
    /// `now`. Does not consult revocations or the binding; see the module docs.
    pub fn open<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        cookie_value: &str,
        now: SystemTime,
    ) -> Result<TicketClaims<T>, TicketError> {
        if cookie_value.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLarge {
                len: cookie_value.len(),
                max: MAX_TICKET_LEN,
            });
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cookie_value)
            .map_err(|_| TicketError::NotBase64)?;
        let truncated = TicketError::Truncated {
            len: raw.len(),
            min: HEADER_LEN + TAG_LEN,
        };
        let Some((&version, rest)) = raw.split_first() else {
            return Err(truncated);
        };
        if version != TICKET_VERSION {
            return Err(TicketError::UnsupportedVersion { found: version });
        }
        let Some((key_id, rest)) = rest.split_first_chunk::<KEY_ID_LEN>() else {
            return Err(truncated);
        };
        let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(truncated);
        };
        if sealed.len() < TAG_LEN {
            return Err(truncated);
        }
        let key_id = KeyId(*key_id);
        let key = self
            .keys
            .find(key_id)
            .ok_or(TicketError::UnknownKey { key_id })?;
        let nonce = XNonce::from(*nonce);
        let decrypt = |p: Purpose| {
            key.cipher.decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad(version, key_id, p),
                },
            )
        };
        let plaintext = match decrypt(purpose) {
            Ok(p) => p,
            Err(_) => {
                // Tell purpose confusion apart from forgery: it authenticates under
                // another purpose's associated data. (The holder of the cookie learns
                // nothing from this that the cookie's name did not already say.)
                let found = Purpose::ALL
                    .into_iter()
                    .filter(|&p| p != purpose)
                    .find(|&p| decrypt(p).is_ok());
                return Err(match found {
                    Some(found) => TicketError::WrongPurpose {
                        expected: purpose,
                        found,
                    },
                    None => TicketError::Forged,
                });
            }
        };
        let claims: TicketClaims<T> =
            serde_json::from_slice(&plaintext).map_err(|_| TicketError::InvalidClaims)?;
        if claims.purpose() != purpose {
            // Unreachable unless the sealing side lied; checked anyway.
            return Err(TicketError::WrongPurpose {
                expected: purpose,
                found: claims.purpose(),
            });
        }
        claims.check_times(now, self.clock_skew)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
