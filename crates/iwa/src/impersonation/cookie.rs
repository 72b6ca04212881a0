//! The impersonation cookie: starting, honouring and stopping "act as another user".
//!
//! The cookie holds an AEAD ticket ([`crate::ticket`], purpose `impersonation`) that
//! names the target and is bound to the real user who started it. On every request the
//! HTTP layer authenticates the real user first and then calls [`Impersonator::resolve`]:
//! the ticket is honoured only when it opens under the key ring, is within its idle and
//! absolute windows, is not revoked, is bound to that real user, and the real user may
//! *still* impersonate the target under the current policy ([`super::decide`], so taking
//! AllowImpersonation away ends running impersonations at their next request).
//! Anything else is ignored: the request goes on as the real user and the cookie is
//! cleared. Stopping revokes the ticket id server-side, so a copy of the old cookie is
//! dead too.
//!
//! No I/O and no clock: `now` is a parameter everywhere.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderValue};

use super::{decide, Decision, ImpersonationPolicy};
use crate::access::AccessRule;
use crate::identity::Identity;
use crate::session::{cookie_value, set_cookie_header, strip_cookie};
use crate::ticket::{
    ImpersonationPayload, Purpose, RevocationStore, Subject, TicketClaims, TicketCodec,
    TicketError, TicketId, TicketIdentity, TicketLifetime,
};

/// Longest accepted reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest cookie value we set (browsers keep at least 4096 bytes per cookie,
/// name and attributes included).
const MAX_COOKIE_VALUE: usize = 3900;

/// How impersonation tickets are issued and honoured.
#[derive(Debug, Clone)]
pub struct ImpersonationSettings {
    pub codec: Arc<TicketCodec>,
    pub revocations: Arc<dyn RevocationStore>,
    pub policy: Arc<ImpersonationPolicy>,
    /// The route rules that make up an identity's permissions.
    pub rules: Arc<Vec<AccessRule>>,
    /// Cookie name (default `iwa_impersonation`).
    pub cookie_name: String,
    pub lifetime: TicketLifetime,
    /// Add `Secure` to the cookie (TLS listeners).
    pub secure: bool,
    /// Whether `start` needs a non-empty reason.
    pub require_reason: bool,
}

/// A running impersonation, as found on a request.
#[derive(Debug, Clone)]
pub struct Active {
    /// Whom the real user acts as: the identity the backend sees.
    pub target: Identity,
    pub reason: String,
    pub ticket_id: TicketId,
    pub started_at: SystemTime,
    /// When the ticket expires if not used again.
    pub expires_at: SystemTime,
    /// The latest the ticket could ever live (a revocation is kept until then).
    pub hard_expiry: SystemTime,
    /// `Set-Cookie` to send back when the sliding window moved.
    pub renewed: Option<HeaderValue>,
}

/// Why a request's impersonation cookie was not honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ignored {
    /// It does not open or is out of its time windows (tampered, foreign key, idle or
    /// absolute expiry, ...).
    #[error("{0}")]
    Ticket(TicketError),
    /// It was stopped (revoked) earlier.
    #[error("the impersonation was stopped; this is a copy of the old cookie")]
    Revoked { ticket_id: TicketId },
    /// It belongs to another real user.
    #[error("the cookie belongs to {owner}, not to the user presenting it")]
    OtherUser { owner: String, ticket_id: TicketId },
    /// The policy no longer allows it.
    #[error("no longer permitted: {reason}")]
    NoLongerPermitted {
        code: &'static str,
        reason: String,
        ticket_id: TicketId,
    },
}

impl Ignored {
    /// A stable code for logs and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Ignored::Ticket(TicketError::IdleExpired { .. }) => "expired_idle",
            Ignored::Ticket(TicketError::AbsoluteExpired { .. }) => "expired_absolute",
            Ignored::Ticket(_) => "invalid_ticket",
            Ignored::Revoked { .. } => "revoked",
            Ignored::OtherUser { .. } => "other_user",
            Ignored::NoLongerPermitted { .. } => "no_longer_permitted",
        }
    }
}

/// What a request's impersonation cookie amounts to.
#[derive(Debug)]
#[must_use]
pub enum Resolution {
    /// No impersonation cookie.
    None,
    Active(Active),
    /// A cookie that is ignored; `clear` deletes it in the browser.
    Ignored {
        why: Ignored,
        clear: Option<HeaderValue>,
    },
}

/// A refused `start`: an HTTP-ish status class and a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// `bad_request`, `not_permitted`, `nested`, `self`, `protected_target`,
    /// `escalation`, `target_too_large`, `internal`.
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// A started impersonation.
#[derive(Debug, Clone)]
pub struct Started {
    pub set_cookie: HeaderValue,
    pub ticket_id: TicketId,
    pub expires_at: SystemTime,
}

/// A stop: what was running (if the cookie was valid and the caller's) and the
/// `Set-Cookie` that deletes the cookie.
#[derive(Debug)]
pub struct Stopped {
    pub was: Option<Active>,
    pub clear: Option<HeaderValue>,
}

/// Starts, honours and stops impersonations. Cheap to share (`Arc` inside).
#[derive(Debug, Clone)]
pub struct Impersonator {
    settings: ImpersonationSettings,
}

impl Impersonator {
    pub fn new(settings: ImpersonationSettings) -> Self {
        Impersonator { settings }
    }

    pub fn settings(&self) -> &ImpersonationSettings {
        &self.settings
    }

    pub fn cookie_name(&self) -> &str {
        &self.settings.cookie_name
    }

    fn clear_cookie(&self) -> Option<HeaderValue> {
        set_cookie_header(&self.settings.cookie_name, "", self.settings.secure, true)
    }

    /// Whether the request carries an impersonation cookie at all.
    pub fn has_cookie(&self, headers: &HeaderMap) -> bool {
        cookie_value(headers, &self.settings.cookie_name).is_some()
    }

    /// Removes the impersonation cookie before the request is forwarded.
    pub fn strip(&self, headers: &mut HeaderMap) {
        strip_cookie(headers, &self.settings.cookie_name);
    }

    /// Opens and checks the request's impersonation cookie for the authenticated `real`
    /// user (see the module docs for every check).
    pub fn resolve(&self, real: &Identity, headers: &HeaderMap, now: SystemTime) -> Resolution {
        let Some(value) = cookie_value(headers, &self.settings.cookie_name) else {
            return Resolution::None;
        };
        match self.check(real, value, now) {
            Ok(active) => Resolution::Active(active),
            Err(why) => Resolution::Ignored {
                why,
                clear: self.clear_cookie(),
            },
        }
    }

    fn check(&self, real: &Identity, value: &str, now: SystemTime) -> Result<Active, Ignored> {
        let s = &self.settings;
        let claims: TicketClaims<ImpersonationPayload> = s
            .codec
            .open(Purpose::Impersonation, value, now)
            .map_err(Ignored::Ticket)?;
        let ticket_id = claims.ticket_id();
        if claims
            .check_revocation(s.revocations.as_ref(), now)
            .is_err()
        {
            return Err(Ignored::Revoked { ticket_id });
        }
        if !claims.bound_to(&real.principal, real.sid.as_deref()) {
            return Err(Ignored::OtherUser {
                owner: claims.subject().principal.clone(),
                ticket_id,
            });
        }
        let target = claims
            .payload()
            .target
            .to_identity(None)
            .map_err(Ignored::Ticket)?;
        if let Decision::Deny { code, reason } = decide(real, false, &target, &s.policy, &s.rules) {
            s.revocations.revoke(ticket_id, claims.hard_expiry());
            return Err(Ignored::NoLongerPermitted {
                code,
                reason,
                ticket_id,
            });
        }
        let reason = claims.payload().reason.clone();
        let started_at = claims.issued_at();
        let (claims, renewed) = if claims.needs_renewal(now) {
            let claims = claims.renew(now);
            let cookie = s
                .codec
                .seal(&claims)
                .ok()
                .and_then(|v| set_cookie_header(&s.cookie_name, &v, s.secure, false));
            (claims, cookie)
        } else {
            (claims, None)
        };
        Ok(Active {
            target,
            reason,
            ticket_id,
            started_at,
            expires_at: claims.expires_at(),
            hard_expiry: claims.hard_expiry(),
            renewed,
        })
    }

    /// Starts impersonating `target` as `real`. `real_is_impersonating` says whether the
    /// request already carried a valid impersonation (no nesting).
    pub fn start(
        &self,
        real: &Identity,
        real_is_impersonating: bool,
        target: &Identity,
        reason: &str,
        now: SystemTime,
    ) -> Result<Started, Refusal> {
        let s = &self.settings;
        let reason = reason.trim();
        if s.require_reason && reason.is_empty() {
            return Err(Refusal::new(
                "reason_required",
                "say why you impersonate (a ticket number, for example): the reason is audited",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(Refusal::new(
                "bad_request",
                format!("the reason is longer than {MAX_REASON_CHARS} characters"),
            ));
        }
        if let Decision::Deny { code, reason } =
            decide(real, real_is_impersonating, target, &s.policy, &s.rules)
        {
            return Err(Refusal::new(code, reason));
        }
        let internal = |e: TicketError| Refusal::new("internal", e.to_string());
        let claims = TicketClaims::issue(
            Purpose::Impersonation,
            Subject::of(real),
            ImpersonationPayload {
                target: TicketIdentity::from(target),
                reason: reason.to_owned(),
            },
            s.lifetime,
            None,
            now,
        )
        .map_err(internal)?;
        let too_large = |len: usize| {
            Refusal::new(
                "target_too_large",
                format!(
                    "{} is in too many groups to fit in a cookie ({len} bytes)",
                    target.remote_user()
                ),
            )
        };
        let value = s.codec.seal(&claims).map_err(|e| match e {
            TicketError::TooLarge { len, .. } => too_large(len),
            e => internal(e),
        })?;
        if value.len() > MAX_COOKIE_VALUE {
            return Err(too_large(value.len()));
        }
        let set_cookie = set_cookie_header(&s.cookie_name, &value, s.secure, false)
            .ok_or_else(|| Refusal::new("internal", "cookie value is not a header value"))?;
        Ok(Started {
            set_cookie,
            ticket_id: claims.ticket_id(),
            expires_at: claims.expires_at(),
        })
    }

    /// Stops `active`, the impersonation [`resolve`](Self::resolve) found on the
    /// request (so it is valid and bound to the caller): revokes its ticket id, so every
    /// copy of the cookie is dead, and returns the `Set-Cookie` that deletes it. With
    /// `None` there is nothing to revoke; the cookie is cleared all the same.
    pub fn stop(&self, active: Option<Active>) -> Stopped {
        if let Some(a) = &active {
            self.settings.revocations.revoke(a.ticket_id, a.hard_expiry);
        }
        Stopped {
            was: active,
            clear: self.clear_cookie(),
        }
    }
}

#[cfg(test)]
mod tests;
