//! What a ticket says: the claims sealed inside it, their lifetimes, and the payloads of
//! the two kinds of ticket.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::TicketError;
use crate::identity::{AuthMethod, Group, Identity};

/// What a ticket is for. Bound into the AEAD's associated data, so a ticket sealed for
/// one purpose cannot be opened as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Purpose {
    /// A session cookie after an ordinary Kerberos/NTLM login.
    Session,
    /// An impersonation cookie ("act as another user").
    Impersonation,
}

impl Purpose {
    /// Every purpose, for diagnosing a ticket opened under the wrong one.
    pub const ALL: [Purpose; 2] = [Purpose::Session, Purpose::Impersonation];

    /// The name bound into the associated data and the claims.
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::Impersonation => "impersonation",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A random 128-bit ticket id: the handle for server-side revocation. Kept across
/// renewals, so revoking it revokes every renewed copy of the cookie.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(pub [u8; 16]);

impl TicketId {
    /// A fresh random id.
    pub fn random() -> Result<TicketId, TicketError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| TicketError::RandomUnavailable)?;
        Ok(TicketId(id))
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketId({self})")
    }
}

// On the wire (inside the ciphertext): a byte array.
impl Serialize for TicketId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TicketId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(TicketId)
    }
}

/// Who a ticket is bound to: the real, authenticated user who obtained it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `user@REALM`.
    pub principal: String,
    /// The user's SID, when known.
    pub sid: Option<String>,
}

impl Subject {
    /// The subject for `identity`.
    pub fn of(identity: &Identity) -> Subject {
        Subject {
            principal: identity.principal.clone(),
            sid: identity.sid.clone(),
        }
    }
}

/// How long a ticket lives: an idle window that slides on use, and an absolute cap
/// counted from issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketLifetime {
    /// A ticket not renewed for this long expires.
    pub idle_timeout: Duration,
    /// A ticket expires this long after issue, however often it is renewed.
    pub absolute: Duration,
}

impl TicketLifetime {
    /// Issue 5's defaults: 30 minutes idle, 8 hours absolute.
    pub const DEFAULT: TicketLifetime = TicketLifetime {
        idle_timeout: Duration::from_secs(30 * 60),
        absolute: Duration::from_secs(8 * 3600),
    };
}

impl Default for TicketLifetime {
    fn default() -> Self {
        TicketLifetime::DEFAULT
    }
}

/// Seconds since the Unix epoch, floored; 0 for times before it.
pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn to_system_time(secs: u64) -> SystemTime {
    // Saturate rather than panic on absurd values (they come from our own sealed data,
    // but a far-future time must not become a panic).
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
}

/// The claims sealed in a ticket. Times are kept at one-second resolution.
///
/// A ticket is valid at `now` when none of its deadlines has passed (a deadline is the
/// last valid second): `last_renewed_at + idle_timeout`, `absolute_expiry`, and
/// `not_after` when present; and when it was not issued in the future (beyond the
/// codec's clock skew).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims<T> {
    purpose: Purpose,
    ticket_id: TicketId,
    subject: Subject,
    issued_at: u64,
    last_renewed_at: u64,
    absolute_expiry: u64,
    idle_timeout_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<u64>,
    payload: T,
}

impl<T> TicketClaims<T> {
    /// New claims issued at `now` with a fresh random ticket id. `not_after` is a hard
    /// upper bound beyond which the ticket never lives, whatever `lifetime` says (for a
    /// session ticket: the Kerberos ticket's end time, [`Identity::expires`]).
    pub fn issue(
        purpose: Purpose,
        subject: Subject,
        payload: T,
        lifetime: TicketLifetime,
        not_after: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<Self, TicketError> {
        let now = unix_secs(now);
        Ok(TicketClaims {
            purpose,
            ticket_id: TicketId::random()?,
            subject,
            issued_at: now,
            last_renewed_at: now,
            absolute_expiry: now.saturating_add(lifetime.absolute.as_secs()),
            idle_timeout_secs: lifetime.idle_timeout.as_secs(),
            not_after: not_after.map(unix_secs),
            payload,
        })
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    pub fn ticket_id(&self) -> TicketId {
        self.ticket_id
    }

    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    pub fn payload(&self) -> &T {
        &self.payload
    }

    pub fn into_payload(self) -> T {
        self.payload
    }

    pub fn issued_at(&self) -> SystemTime {
        to_system_time(self.issued_at)
    }

    pub fn last_renewed_at(&self) -> SystemTime {
        to_system_time(self.last_renewed_at)
    }

    pub fn absolute_expiry(&self) -> SystemTime {
        to_system_time(self.absolute_expiry)
    }

    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after.map(to_system_time)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The last second the ticket can ever be valid, however it is renewed:
    /// `min(absolute_expiry, not_after)`. Use it as the `until` of a revocation.
    pub fn hard_expiry(&self) -> SystemTime {
        to_system_time(self.hard_expiry_secs())
    }

    /// The last second the ticket is valid unless renewed.
    pub fn expires_at(&self) -> SystemTime {
        to_system_time(self.expires_at_secs())
    }

    fn hard_expiry_secs(&self) -> u64 {
        match self.not_after {
            Some(n) => n.min(self.absolute_expiry),
            None => self.absolute_expiry,
        }
    }

    fn idle_deadline_secs(&self) -> u64 {
        self.last_renewed_at.saturating_add(self.idle_timeout_secs)
    }

    fn expires_at_secs(&self) -> u64 {
        self.idle_deadline_secs().min(self.hard_expiry_secs())
    }

    /// Checks the ticket's times at `now`. `clock_skew` tolerates a ticket issued by an
    /// instance whose clock runs ahead of ours. The first failing check is reported, in
    /// this order: not yet valid, absolute cap, `not_after`, idle timeout.
    pub fn check_times(&self, now: SystemTime, clock_skew: Duration) -> Result<(), TicketError> {
        let now_s = unix_secs(now);
        let latest_start = now_s.saturating_add(clock_skew.as_secs());
        if self.issued_at > latest_start || self.last_renewed_at > latest_start {
            return Err(TicketError::NotYetValid {
                issued_at: self.issued_at(),
                now,
            });
        }
        if now_s > self.absolute_expiry {
            return Err(TicketError::AbsoluteExpired {
                at: self.absolute_expiry(),
            });
        }
        if let Some(n) = self.not_after {
            if now_s > n {
                return Err(TicketError::CredentialExpired {
                    at: to_system_time(n),
                });
            }
        }
        if now_s > self.idle_deadline_secs() {
            return Err(TicketError::IdleExpired {
                at: to_system_time(self.idle_deadline_secs()),
            });
        }
        Ok(())
    }

    /// Whether sliding expiration should renew the ticket now: half of the idle window
    /// has passed since the last renewal, and renewing would actually move the expiry
    /// (it cannot once the absolute cap or `not_after` is nearer than a full idle
    /// window; re-issuing the cookie then gains nothing).
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        let now_s = unix_secs(now);
        let half = self.idle_timeout_secs / 2;
        let due = now_s >= self.last_renewed_at.saturating_add(half);
        let gains = now_s
            .saturating_add(self.idle_timeout_secs)
            .min(self.hard_expiry_secs())
            > self.expires_at_secs();
        due && gains
    }

    /// The same ticket renewed at `now`: `last_renewed_at` moves to `now` (never
    /// backwards); the ticket id, the absolute cap and `not_after` are unchanged, so a
    /// renewal never extends past them. Call it on claims that
    /// [`TicketCodec::open`](super::TicketCodec::open) just accepted, then seal the result.
    #[must_use]
    pub fn renew(mut self, now: SystemTime) -> Self {
        self.last_renewed_at = self.last_renewed_at.max(unix_secs(now));
        self
    }

    /// Whether the ticket belongs to the real user `principal` (with `sid` when known)
    /// who presents it:
    ///
    /// - when both the ticket and the presenter have a SID, the SIDs must be equal
    ///   (ASCII case-insensitively; a SID names an account across renames), and the
    ///   principal is not compared;
    /// - otherwise the principals must be byte-for-byte equal (pass the canonical
    ///   principal the authenticator produced, not what the user typed).
    ///
    /// Principals and SIDs are not secrets, so plain comparison is fine here.
    ///
    /// The HTTP layer authenticates the request first (Kerberos, NTLM or a session
    /// ticket), then opens the impersonation cookie and calls this with that real
    /// identity. On `false` the cookie is ignored (the request proceeds as the real
    /// user, not impersonating) and an audit event records the mismatch: a cookie
    /// copied into another user's browser does nothing there.
    pub fn bound_to(&self, principal: &str, sid: Option<&str>) -> bool {
        match (self.subject.sid.as_deref(), sid) {
            (Some(mine), Some(theirs)) => mine.eq_ignore_ascii_case(theirs),
            _ => self.subject.principal == principal,
        }
    }

    /// Whether the ticket was revoked server-side.
    pub fn check_revocation(
        &self,
        store: &dyn super::RevocationStore,
        now: SystemTime,
    ) -> Result<(), TicketError> {
        if store.is_revoked(&self.ticket_id, now) {
            Err(TicketError::Revoked)
        } else {
            Ok(())
        }
    }
}

/// A verified identity as carried in a ticket (serde both ways, unlike [`Identity`]).
/// Groups are stored as `[sid, name]` pairs to keep cookies small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketIdentity {
    pub user: String,
    pub realm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<(Option<String>, Option<String>)>,
    /// `Kerberos`, `NTLM` or `Fake` ([`AuthMethod::as_str`]).
    pub method: String,
}

impl From<&Identity> for TicketIdentity {
    fn from(id: &Identity) -> Self {
        TicketIdentity {
            user: id.user.clone(),
            realm: id.realm.clone(),
            domain: id.domain.clone(),
            principal: id.principal.clone(),
            sid: id.sid.clone(),
            groups: id
                .groups
                .iter()
                .map(|g| (g.sid.clone(), g.name.clone()))
                .collect(),
            method: id.method.as_str().to_owned(),
        }
    }
}

impl TicketIdentity {
    /// Back to an [`Identity`]; `expires` becomes [`Identity::expires`] (pass the
    /// ticket's `not_after`).
    pub fn to_identity(&self, expires: Option<SystemTime>) -> Result<Identity, TicketError> {
        let method = [AuthMethod::Kerberos, AuthMethod::Ntlm, AuthMethod::Fake]
            .into_iter()
            .find(|m| m.as_str() == self.method)
            .ok_or(TicketError::InvalidClaims)?;
        Ok(Identity {
            user: self.user.clone(),
            realm: self.realm.clone(),
            domain: self.domain.clone(),
            principal: self.principal.clone(),
            sid: self.sid.clone(),
            groups: self
                .groups
                .iter()
                .map(|(sid, name)| Group {
                    sid: sid.clone(),
                    name: name.clone(),
                })
                .collect(),
            method,
            expires,
        })
    }
}

/// The payload of a [`Purpose::Session`] ticket: the identity the login established.
/// Its upper bound (the Kerberos ticket's end time) is the claims' `not_after`.
pub type SessionPayload = TicketIdentity;

/// The payload of a [`Purpose::Impersonation`] ticket: whom the subject acts as, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpersonationPayload {
    pub target: TicketIdentity,
    pub reason: String,
}
