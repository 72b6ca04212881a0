//! Audit events: one structured event per decision on the `iwa::audit` target, which
//! `[log] audit_file` also writes as JSON lines. Every event has an `event` field;
//! impersonation events name the real user (`actor`) and the `target`, and carry the
//! ticket id (never the ticket).

use std::time::{SystemTime, UNIX_EPOCH};

use iwa::ticket::TicketId;
use iwa::Identity;
use tracing::{info, warn};

fn sid(id: &Identity) -> &str {
    id.sid.as_deref().unwrap_or("-")
}

/// Seconds since the Unix epoch (0 before it), as audit events and the API report times.
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn impersonation_started(
    actor: &Identity,
    target: &Identity,
    reason: &str,
    ticket: &TicketId,
    expires: SystemTime,
) {
    crate::metrics::global().audit(crate::metrics::Audit::ImpersonationStart);
    info!(
        target: "iwa::audit",
        event = "impersonation_start",
        actor = %actor.remote_user(),
        actor_sid = sid(actor),
        target = %target.remote_user(),
        target_sid = sid(target),
        reason,
        ticket = %ticket,
        expires = unix(expires),
    );
}

pub fn impersonation_stopped(actor: &Identity, target: &Identity, ticket: &TicketId) {
    crate::metrics::global().audit(crate::metrics::Audit::ImpersonationStop);
    info!(
        target: "iwa::audit",
        event = "impersonation_stop",
        actor = %actor.remote_user(),
        actor_sid = sid(actor),
        target = %target.remote_user(),
        target_sid = sid(target),
        ticket = %ticket,
    );
}

/// A refused attempt to start; `target` is the name as requested.
pub fn impersonation_refused(actor: &Identity, target: &str, code: &str, reason: &str) {
    crate::metrics::global().audit(crate::metrics::Audit::ImpersonationRefused);
    warn!(
        target: "iwa::audit",
        event = "impersonation_refused",
        actor = %actor.remote_user(),
        actor_sid = sid(actor),
        target,
        code,
        reason,
    );
}

/// An impersonation cookie that was not honoured (tampered, expired, another user's,
/// revoked, no longer permitted).
pub fn impersonation_ignored(actor: &Identity, why: &iwa::impersonation::Ignored) {
    crate::metrics::global().audit(crate::metrics::Audit::ImpersonationIgnored);
    warn!(
        target: "iwa::audit",
        event = "impersonation_ignored",
        actor = %actor.remote_user(),
        actor_sid = sid(actor),
        code = why.code(),
        reason = %why,
    );
}

/// One request made while impersonating, with the status the client got.
pub fn impersonation_request(
    actor: &Identity,
    target: &Identity,
    ticket: &TicketId,
    method: &http::Method,
    path: &str,
    status: u16,
) {
    info!(
        target: "iwa::audit",
        event = "impersonation_request",
        actor = %actor.remote_user(),
        target = %target.remote_user(),
        ticket = %ticket,
        method = %method,
        path,
        status,
    );
}

/// A state change refused by the CSRF checks.
pub fn csrf_refused(actor: &Identity, reason: &str) {
    crate::metrics::global().audit(crate::metrics::Audit::CsrfRefused);
    warn!(
        target: "iwa::audit",
        event = "csrf_refused",
        actor = %actor.remote_user(),
        reason,
    );
}

/// A request refused by a route's access rule.
pub fn access_denied(user: &Identity, path: &str, reason: &str) {
    crate::metrics::global().audit(crate::metrics::Audit::AccessDenied);
    info!(
        target: "iwa::audit",
        event = "access_denied",
        user = %user.remote_user(),
        user_sid = sid(user),
        path,
        reason,
    );
}
