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
pub struct ConnectionAuth {
    state: Arc<Mutex<State>>,
    binding: Option<Arc<ChannelBinding>>,
}

/// Extended Protection for Authentication: whether logins on a TLS connection must
/// be bound to it (IIS's `extendedProtection tokenChecking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtendedProtection {
    /// No channel bindings are passed or checked.
    Off,
    /// Bindings a client sends must match this channel; clients that send none are
    /// accepted (IIS's `Allow`).
    #[default]
    Allow,
    /// Every login must carry bindings that match this channel (IIS's `Require`).
    Require,
}

/// The channel bindings of one TLS server certificate (RFC 5929
/// `tls-server-end-point`), computed once per certificate and shared by every
/// connection that presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    /// `"tls-server-end-point:"` followed by the certificate hash: the GSS channel
    /// bindings application data.
    application_data: Vec<u8>,
    /// NTLM's `MsvAvChannelBindings` for it: MD5 of the gss_channel_bindings struct.
    ntlm: [u8; 16],
    mode: ExtendedProtection,
}

impl ChannelBinding {
    /// Bindings for a certificate whose RFC 5929 hash is `cert_hash` (SHA-256 of the
    /// DER for certificates signed with MD5, SHA-1 or SHA-256; else the signature's
    /// hash).
    pub fn tls_server_end_point(cert_hash: &[u8], mode: ExtendedProtection) -> Self {
        let mut application_data = b"tls-server-end-point:".to_vec();
        application_data.extend_from_slice(cert_hash);
        ChannelBinding {
            ntlm: iwa_proto::ntlm::crypto::tls_server_end_point_channel_bindings(cert_hash),
            application_data,
            mode,
        }
    }

    /// The GSS channel bindings application data.
    pub fn application_data(&self) -> &[u8] {
        &self.application_data
    }

    /// The expected NTLM `MsvAvChannelBindings`.
    pub fn ntlm_hash(&self) -> &[u8; 16] {
        &self.ntlm
    }

    pub fn mode(&self) -> ExtendedProtection {
        self.mode
    }
}

impl ConnectionAuth {
    /// State for a TLS connection whose logins are checked against `binding`.
    pub fn with_channel_binding(binding: Arc<ChannelBinding>) -> Self {
        ConnectionAuth {
            state: Arc::default(),
            binding: Some(binding),
        }
    }

    /// This connection's channel bindings, when it is TLS with Extended Protection.
    pub fn channel_binding(&self) -> Option<&ChannelBinding> {
        self.binding.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
