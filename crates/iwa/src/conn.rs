//! Per-connection authentication state: the identity a connection has authenticated
//! as (NTLM always; Kerberos when `connection_bound`), and an NTLM handshake waiting
//! for its AUTHENTICATE. NTLM is connection-bound by design (MS-NLMP over HTTP): the
//! CHALLENGE and the AUTHENTICATE must travel on the same TCP connection.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use iwa_proto::ntlm::ChallengeSent;

use crate::identity::Identity;

/// How an NTLM handshake is carried over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NtlmWrap {
    /// `Authorization: NTLM <raw NTLMSSP>`.
    Ntlm,
    /// `Authorization: Negotiate <raw NTLMSSP>` (no SPNEGO).
    NegotiateRaw,
    /// NTLM inside SPNEGO; keeps the DER mechTypes list for the mechListMIC.
    Spnego { mech_types_der: Vec<u8> },
}

/// An NTLM CHALLENGE sent on this connection, not yet answered.
#[derive(Debug)]
pub(crate) struct PendingNtlm {
    pub state: ChallengeSent,
    pub started: Instant,
    pub wrap: NtlmWrap,
}

#[derive(Debug, Default)]
struct State {
    identity: Option<Identity>,
    pending: Option<PendingNtlm>,
}

/// Per-connection authentication state. A server that gives each TCP connection its
/// own value and puts it into the extensions of every request on that connection (the
/// iwa gateway does) enables NTLM and, with `IwaLayer::connection_bound`, Kerberos
/// logins that last for the connection (IIS's `authPersistNonNTLM`, mod_auth_gssapi's
/// `GssapiConnectionBound`). Without it, NTLM is refused and nothing is remembered.
///
/// Only sound when every request on a connection comes from the same client: never
/// behind an HTTP load balancer that pools connections across users (use L4).
#[derive(Debug, Clone, Default)]
pub struct ConnectionAuth(Arc<Mutex<State>>);

impl ConnectionAuth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity this connection authenticated as, unless it has expired.
    pub fn identity(&self) -> Option<Identity> {
        let guard = self.lock();
        let id = guard.identity.as_ref()?;
        match id.expires {
            Some(t) if t <= SystemTime::now() => None,
            _ => Some(id.clone()),
        }
    }

    pub(crate) fn set_identity(&self, identity: Option<Identity>) {
        self.lock().identity = identity;
    }

    pub(crate) fn set_pending(&self, pending: PendingNtlm) {
        let mut s = self.lock();
        s.pending = Some(pending);
        // A new handshake replaces whatever the connection was before.
        s.identity = None;
    }

    pub(crate) fn take_pending(&self) -> Option<PendingNtlm> {
        self.lock().pending.take()
    }

    /// Whether an NTLM-in-SPNEGO handshake waits for its next leg.
    pub(crate) fn spnego_pending(&self) -> bool {
        matches!(
            self.lock().pending,
            Some(PendingNtlm {
                wrap: NtlmWrap::Spnego { .. },
                ..
            })
        )
    }
}
