//! The authenticator: request headers in, a verified identity (or a reason) out.
//!
//! `Authorization: Negotiate <b64>` → SPNEGO (decoded by `iwa_proto`) → the Kerberos
//! mechanism token → MIT GSSAPI with an acceptor credential acquired once at start-up.
//! We unwrap SPNEGO ourselves rather than handing it to MIT's SPNEGO mechanism, so that
//! (a) only Kerberos reaches GSSAPI — no GSS plugin mechanism installed on the host can
//! sneak in — and (b) NTLM inside SPNEGO can go to our own NTLM acceptor later.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use iwa_proto::authz::{self, ChallengeScheme, Credentials};
use iwa_proto::spnego::{self, InitialToken, Mech, NegState};
use tracing::{debug, instrument};

use crate::error::{AuthError, Challenge};
use crate::gss::{self, AcceptorCred, Step};
use crate::identity::{AuthMethod, Identity};
use crate::replay::{MemoryReplayCache, ReplayCache, Tag};

/// How to accept Kerberos.
#[derive(Debug, Clone, Default)]
pub struct KerberosSettings {
    /// The keytab holding the service key(s).
    pub keytab: PathBuf,
    /// Accept only tickets for this principal (`HTTP/host@REALM`); default: any key in
    /// the keytab.
    pub service_principal: Option<String>,
    /// An MIT replay cache name (`dfl:`, `file2:/path`) to use MIT's file-based replay
    /// cache. Default (`None`): iwa's in-memory replay cache, with MIT's turned off.
    pub replay_cache: Option<String>,
    /// Realm → NetBIOS domain, for `DOMAIN\user`.
    pub realm_domains: BTreeMap<String, String>,
}

/// A Kerberos acceptor: the credential acquired once, shared by all handshakes.
#[derive(Debug)]
pub struct KerberosAcceptor {
    cred: AcceptorCred,
    realm_domains: BTreeMap<String, String>,
    /// Our in-memory replay cache; `None` when MIT's own (configured) cache is used.
    replay: Option<Box<dyn ReplayCache>>,
}

/// MIT's default `clockskew`; the replay window is twice this.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Replay-cache key of an authenticator: SHA-256 of its ciphertext, truncated.
fn replay_tag(authenticator_cipher: &[u8]) -> Tag {
    let digest = Sha256::digest(authenticator_cipher);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&digest[..16]);
    tag
}

/// A completed Kerberos acceptance.
#[derive(Debug)]
pub struct KerberosSuccess {
    pub identity: Identity,
    /// The token to return in `WWW-Authenticate: Negotiate <token>`, if any.
    pub response_token: Option<Vec<u8>>,
    /// Whether the client's channel bindings were verified.
    pub channel_bound: bool,
}

impl KerberosAcceptor {
    /// Acquires the acceptor credential. Fails when the keytab is unreadable or holds no
    /// usable key (for `service_principal`, if set).
    pub fn new(settings: &KerberosSettings) -> Result<Self, gss::GssError> {
        // Without an explicit MIT replay cache, MIT's is turned off for this credential
        // and ours (in memory, same rule) takes its place; see `replay`.
        let (rcache, replay): (&str, Option<Box<dyn ReplayCache>>) =
            match settings.replay_cache.as_deref() {
                Some(name) => (name, None),
                None => (
                    "none:",
                    Some(Box::new(MemoryReplayCache::new(DEFAULT_CLOCK_SKEW))),
                ),
            };
        let cred = AcceptorCred::acquire(
            &settings.keytab,
            settings.service_principal.as_deref(),
            Some(rcache),
        )?;
        Ok(KerberosAcceptor {
            cred,
            realm_domains: settings.realm_domains.clone(),
            replay,
        })
    }

    /// Accepts the token from `Authorization: Negotiate`. Blocking (keytab and replay
    /// cache I/O); call it on a blocking thread.
    pub fn accept_negotiate(
        &self,
        token: &[u8],
        channel_bindings: Option<&[u8]>,
    ) -> Result<KerberosSuccess, AuthError> {
        match spnego::decode_initial_token(token)? {
            InitialToken::Kerberos { token } => {
                let (identity, out, flags) = self.accept_kerberos(token, channel_bindings)?;
                Ok(KerberosSuccess {
                    identity,
                    response_token: out.0,
                    channel_bound: flags & gss::CHANNEL_BOUND_FLAG != 0,
                })
            }
            InitialToken::Ntlmssp { .. } => Err(AuthError::MechanismNotEnabled("NTLM".into())),
            InitialToken::Spnego(init) => {
                let first = init.mech_types.first().copied();
                let mech = first.map(|o| o.mech());
                match mech {
                    Some(Mech::Kerberos) | Some(Mech::MsKerberos) => {}
                    Some(Mech::Ntlm) => {
                        return Err(AuthError::MechanismNotEnabled("NTLM".into()));
                    }
                    Some(_) | None => {
                        let name = first.map_or_else(|| "(none)".to_owned(), |o| o.to_dotted());
                        return Err(AuthError::MechanismNotEnabled(name));
                    }
                }
                let mech = mech.unwrap_or(Mech::Kerberos);
                let mech_token = init
                    .mech_token
                    .ok_or_else(|| AuthError::NoMechToken("Kerberos".into()))?;
                let (identity, out, flags) = self.accept_kerberos(mech_token, channel_bindings)?;
                let (ap_rep, mut ctx) = out;
                // RFC 4178 §5: a MIC from the initiator is verified, and answered in kind.
                let our_mic = match init.mech_list_mic {
                    Some(mic) => {
                        ctx.verify_mic(init.mech_types_der, mic)
                            .map_err(AuthError::BadMechListMic)?;
                        Some(
                            ctx.get_mic(init.mech_types_der)
                                .map_err(AuthError::BadMechListMic)?,
                        )
                    }
                    None => None,
                };
                let resp = spnego::encode_neg_token_resp(
                    Some(NegState::AcceptCompleted),
                    Some(mech),
                    ap_rep.as_deref(),
                    our_mic.as_deref(),
                );
                Ok(KerberosSuccess {
                    identity,
                    response_token: Some(resp),
                    channel_bound: flags & gss::CHANNEL_BOUND_FLAG != 0,
                })
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn accept_kerberos(
        &self,
        token: &[u8],
        channel_bindings: Option<&[u8]>,
    ) -> Result<(Identity, (Option<Vec<u8>>, gss::SecContext), u32), AuthError> {
        // The clear parts of the AP-REQ: its authenticator keys replay detection, its
        // ticket's SPN/kvno/enctype make a refusal explainable. A token we cannot parse
        // still goes to GSSAPI (which has the final word) only when MIT's own replay
        // cache is in force; otherwise it could not be checked for replay.
        let info = iwa_proto::krb5::parse_initial_context_token(token);
        let describe = |info: &Result<iwa_proto::krb5::ApReqInfo<'_>, _>| {
            info.as_ref().ok().map(|i| {
                format!(
                    "ticket for {} ({}, {})",
                    i.service_principal(),
                    i.ticket_kvno
                        .map_or_else(|| "no kvno".to_owned(), |k| format!("kvno {k}")),
                    crate::keytab::enctype_name(i32::try_from(i.ticket_etype).unwrap_or(-1)),
                )
            })
        };
        if self.replay.is_some() {
            if let Err(e) = &info {
                return Err(AuthError::MalformedKerberos(e.clone()));
            }
        }
        let step = gss::accept(&self.cred, token, channel_bindings)
            .map_err(|e| AuthError::kerberos(e).with_ticket(describe(&info)))?;
        match step {
            Step::ContinueNeeded(_) => Err(AuthError::ContinueNeeded),
            Step::Complete(acc) => {
                if let (Some(cache), Ok(i)) = (&self.replay, &info) {
                    if !cache.insert_new(replay_tag(i.authenticator_cipher), Instant::now()) {
                        return Err(AuthError::Replay {
                            ticket: describe(&info),
                        });
                    }
                }
                let mut identity = Identity::from_principal(
                    &acc.principal,
                    AuthMethod::Kerberos,
                    &self.realm_domains,
                );
                identity.expires = SystemTime::now()
                    .checked_add(Duration::from_secs(u64::from(acc.lifetime_secs)));
                Ok((identity, (acc.output_token, acc.context), acc.flags))
            }
        }
    }
}

/// What the authenticator decided about one request.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// The client sent no credentials (or only ones for a scheme we do not offer and
    /// should simply be challenged).
    NoCredentials,
    Authenticated(Authenticated),
    Failed(AuthError),
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Identity,
    /// `WWW-Authenticate` value to return with the response (mutual authentication).
    pub response_header: Option<HeaderValue>,
}

/// Authenticates requests. Cheap to share (`Arc`); build one per process.
#[derive(Debug, Clone)]
pub struct Authenticator {
    kerberos: Option<Arc<KerberosAcceptor>>,
    challenge: Challenge,
}

impl Authenticator {
    /// An authenticator that accepts Kerberos through `Negotiate`.
    pub fn kerberos(settings: &KerberosSettings) -> Result<Self, gss::GssError> {
        Ok(Authenticator {
            kerberos: Some(Arc::new(KerberosAcceptor::new(settings)?)),
            challenge: Challenge::negotiate(),
        })
    }

    /// The challenges to send with a 401.
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Authenticates one request from its headers.
    #[instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, headers: &HeaderMap) -> Outcome {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Outcome::NoCredentials;
        };
        if values.next().is_some() {
            return Outcome::Failed(AuthError::MultipleAuthorizationHeaders);
        }
        let token = match authz::parse_authorization(value.as_bytes()) {
            Ok(Credentials::Negotiate(token)) => token,
            Ok(Credentials::Ntlm(_)) => {
                return Outcome::Failed(AuthError::MechanismNotEnabled("NTLM".into()))
            }
            Ok(Credentials::Other(scheme)) => {
                return Outcome::Failed(AuthError::UnsupportedScheme(scheme))
            }
            Err(e) => return Outcome::Failed(AuthError::MalformedHeader(e)),
        };
        let Some(kerberos) = self.kerberos.clone() else {
            return Outcome::Failed(AuthError::MechanismNotEnabled("Kerberos".into()));
        };
        let result =
            tokio::task::spawn_blocking(move || kerberos.accept_negotiate(&token, None)).await;
        match result {
            Ok(Ok(success)) => {
                debug!(principal = %success.identity.principal, "kerberos accepted");
                let response_header = success.response_token.map(|t| {
                    let v = authz::challenge_value(ChallengeScheme::Negotiate, Some(&t));
                    // base64 and a fixed scheme name are always a valid header value.
                    HeaderValue::from_str(&v)
                        .unwrap_or_else(|_| HeaderValue::from_static("Negotiate"))
                });
                Outcome::Authenticated(Authenticated {
                    identity: success.identity,
                    response_header,
                })
            }
            Ok(Err(e)) => Outcome::Failed(e),
            Err(join) => Outcome::Failed(AuthError::Internal(format!(
                "Kerberos acceptance task failed: {join}"
            ))),
        }
    }
}
