//! The authenticator: request headers in, a verified identity (or a reason) out.
//!
//! `Authorization: Negotiate <b64>` → SPNEGO (decoded by `iwa_proto`) → the Kerberos
//! mechanism token → MIT GSSAPI with an acceptor credential acquired once at start-up.
//! We unwrap SPNEGO ourselves rather than handing it to MIT's SPNEGO mechanism, so that
//! (a) only Kerberos reaches GSSAPI — no GSS plugin mechanism installed on the host can
//! sneak in — and (b) NTLM inside SPNEGO can go to our own NTLM acceptor later.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use iwa_proto::authz::{self, ChallengeScheme, Credentials};
use iwa_proto::spnego::{self, InitialToken, Mech, NegState};
use tracing::{debug, instrument};

use crate::conn::{ChannelBinding, ConnectionAuth, ExtendedProtection, NtlmWrap, PendingNtlm};
use crate::error::{AuthError, Challenge};
use crate::gss::{self, AcceptorCred, Step};
use crate::identity::{AuthMethod, Identity};
use crate::ntlm::{NtlmFailure, NtlmSettings, NtlmUser, NtlmValidator};
use crate::replay::{MemoryReplayCache, ReplayCache, Tag};
use iwa_proto::ntlm::messages as ntlm_msg;
use iwa_proto::ntlm::sign::{Direction, Signer};
use iwa_proto::ntlm::ServerConfig;

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
    /// Read the PAC (user and group SIDs, NetBIOS domain) from each ticket.
    pub read_pac: bool,
}

/// A Kerberos acceptor: the credential acquired once, shared by all handshakes.
#[derive(Debug)]
pub struct KerberosAcceptor {
    cred: AcceptorCred,
    realm_domains: BTreeMap<String, String>,
    read_pac: bool,
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
            read_pac: settings.read_pac,
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
        match classify_negotiate(token)? {
            NegotiateRequest::Kerberos(req) => self.accept_request(req, channel_bindings),
            NegotiateRequest::Ntlm(..) => Err(AuthError::MechanismNotEnabled("NTLM".into())),
        }
    }

    /// Accepts a Kerberos request already taken out of its `Negotiate` token.
    fn accept_request(
        &self,
        req: KerberosRequest,
        channel_bindings: Option<&[u8]>,
    ) -> Result<KerberosSuccess, AuthError> {
        let (identity, (ap_rep, mut ctx), flags) =
            self.accept_kerberos(&req.mech_token, channel_bindings)?;
        let channel_bound = flags & gss::CHANNEL_BOUND_FLAG != 0;
        let Some(spnego) = req.spnego else {
            return Ok(KerberosSuccess {
                identity,
                response_token: ap_rep,
                channel_bound,
            });
        };
        // RFC 4178 §5: a MIC from the initiator is verified, and answered in kind.
        let our_mic = match &spnego.mech_list_mic {
            Some(mic) => {
                ctx.verify_mic(&spnego.mech_types_der, mic)
                    .map_err(AuthError::BadMechListMic)?;
                Some(
                    ctx.get_mic(&spnego.mech_types_der)
                        .map_err(AuthError::BadMechListMic)?,
                )
            }
            None => None,
        };
        let resp = spnego::encode_neg_token_resp(
            Some(NegState::AcceptCompleted),
            Some(spnego.mech),
            ap_rep.as_deref(),
            our_mic.as_deref(),
        );
        Ok(KerberosSuccess {
            identity,
            response_token: Some(resp),
            channel_bound,
        })
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
        let step = gss::accept(&self.cred, token, channel_bindings, self.read_pac)
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
                if let Some(buf) = &acc.pac_logon_info {
                    apply_pac(&mut identity, buf);
                }
                identity.expires = SystemTime::now()
                    .checked_add(Duration::from_secs(u64::from(acc.lifetime_secs)));
                Ok((identity, (acc.output_token, acc.context), acc.flags))
            }
        }
    }
}

/// Enriches a Kerberos identity from the PAC's KERB_VALIDATION_INFO (already verified
/// by MIT): the user's SID, every group SID (domain groups incl. nested ones, extra SIDs,
/// resource groups) and the real NetBIOS domain. A PAC that does not decode is logged
/// and ignored: the user is still who the ticket says.
fn apply_pac(identity: &mut Identity, logon_info: &[u8]) {
    match iwa_proto::pac::LogonInfo::decode(logon_info) {
        Ok(info) => {
            identity.sid = info.user_sid().map(|s| s.to_string());
            if !info.logon_domain_name.is_empty() {
                identity.domain = Some(info.logon_domain_name.clone());
            }
            identity.groups = info
                .group_sids()
                .into_iter()
                .map(|sid| crate::identity::Group {
                    sid: Some(sid.to_string()),
                    name: None,
                })
                .collect();
        }
        Err(e) => {
            tracing::warn!(principal = %identity.principal, "ignoring an undecodable PAC: {e}");
        }
    }
}

/// The SPNEGO wrapping of a Kerberos token, kept for the reply.
#[derive(Debug)]
struct SpnegoKerberos {
    /// The OID the client preferred (MIT's or Microsoft's Kerberos), echoed back.
    mech: Mech,
    mech_types_der: Vec<u8>,
    mech_list_mic: Option<Vec<u8>>,
}

/// A Kerberos mechanism token and, when it came in SPNEGO, its wrapping.
#[derive(Debug)]
struct KerberosRequest {
    mech_token: Vec<u8>,
    spnego: Option<SpnegoKerberos>,
}

/// What an initial `Negotiate` token asks for, decoded once.
#[derive(Debug)]
enum NegotiateRequest {
    Kerberos(KerberosRequest),
    Ntlm(Vec<u8>, NtlmWrap),
}

/// Decodes an initial `Negotiate` token and decides which mechanism gets it.
fn classify_negotiate(token: &[u8]) -> Result<NegotiateRequest, AuthError> {
    match spnego::decode_initial_token(token)? {
        InitialToken::Kerberos { token } => Ok(NegotiateRequest::Kerberos(KerberosRequest {
            mech_token: token.to_vec(),
            spnego: None,
        })),
        InitialToken::Ntlmssp { message } => Ok(NegotiateRequest::Ntlm(
            message.to_vec(),
            NtlmWrap::NegotiateRaw,
        )),
        InitialToken::Spnego(init) => {
            let first = init.mech_types.first().copied();
            match first.map(|o| o.mech()) {
                Some(mech @ (Mech::Kerberos | Mech::MsKerberos)) => {
                    let mech_token = init
                        .mech_token
                        .ok_or_else(|| AuthError::NoMechToken("Kerberos".into()))?;
                    Ok(NegotiateRequest::Kerberos(KerberosRequest {
                        mech_token: mech_token.to_vec(),
                        spnego: Some(SpnegoKerberos {
                            mech,
                            mech_types_der: init.mech_types_der.to_vec(),
                            mech_list_mic: init.mech_list_mic.map(<[u8]>::to_vec),
                        }),
                    }))
                }
                Some(Mech::Ntlm) => {
                    let message = init
                        .mech_token
                        .ok_or_else(|| AuthError::NoMechToken("NTLM".into()))?;
                    Ok(NegotiateRequest::Ntlm(
                        message.to_vec(),
                        NtlmWrap::Spnego {
                            mech_types_der: init.mech_types_der.to_vec(),
                        },
                    ))
                }
                _ => Err(AuthError::MechanismNotEnabled(
                    first.map_or_else(|| "(none)".to_owned(), |o| o.to_dotted()),
                )),
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
    /// A multi-leg handshake (NTLM) goes on: answer 401 with this `WWW-Authenticate`.
    Continue(HeaderValue),
    Failed(AuthError),
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Identity,
    /// `WWW-Authenticate` value to return with the response (mutual authentication).
    pub response_header: Option<HeaderValue>,
}

/// NTLM as configured: the handshake settings and the validator.
#[derive(Debug)]
struct NtlmAcceptor {
    settings: NtlmSettings,
    config: Arc<ServerConfig>,
    validator: Arc<dyn NtlmValidator>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A few dedicated threads for Kerberos acceptance (blocking C calls). Compared with
/// `spawn_blocking` per request, a queue drained by long-lived threads costs no thread
/// wake-up while the threads are busy, which is exactly when it matters: under load,
/// jobs run back to back instead of each paying a context switch.
#[derive(Debug)]
struct AcceptPool {
    tx: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl AcceptPool {
    fn new(threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("iwa-accept-{i}"))
                .spawn(move || loop {
                    // Hold the lock only to take one job.
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                        guard.recv()
                    };
                    match job {
                        // A panic in C-adjacent code must not kill the thread; the
                        // job's result channel is dropped and the caller gets an error.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return, // every sender is gone: shut down
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a Kerberos acceptance thread: {e}");
            }
        }
        AcceptPool { tx: Mutex::new(tx) }
    }

    /// Runs `f` on a pool thread and awaits its result.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .is_ok();
        if !sent {
            return None;
        }
        rx.await.ok()
    }
}

/// Authenticates requests. Cheap to share (`Arc`); build one per process.
#[derive(Debug, Clone)]
pub struct Authenticator {
    kerberos: Option<Arc<KerberosAcceptor>>,
    pool: Arc<AcceptPool>,
    ntlm: Option<Arc<NtlmAcceptor>>,
    challenge: Challenge,
    /// Names groups (and finds groups for identities without a PAC) after a login.
    directory: Option<Arc<crate::directory::Directory>>,
}

fn header_value(scheme: ChallengeScheme, token: &[u8]) -> HeaderValue {
    let v = authz::challenge_value(scheme, Some(token));
    // A fixed scheme name and base64 are always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Negotiate"))
}

impl Authenticator {
    /// An authenticator that accepts Kerberos through `Negotiate`.
    pub fn kerberos(settings: &KerberosSettings) -> Result<Self, gss::GssError> {
        Ok(Self::new(
            Some(Arc::new(KerberosAcceptor::new(settings)?)),
            None,
        ))
    }

    /// Any combination of Kerberos and NTLM (at least one, or every request fails).
    pub fn new(
        kerberos: Option<Arc<KerberosAcceptor>>,
        ntlm: Option<(NtlmSettings, Arc<dyn NtlmValidator>)>,
    ) -> Self {
        let mut values = vec![HeaderValue::from_static("Negotiate")];
        if ntlm.as_ref().is_some_and(|(s, _)| s.offer_ntlm_scheme) {
            values.push(HeaderValue::from_static("NTLM"));
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            kerberos,
            pool: Arc::new(AcceptPool::new(threads)),
            ntlm: ntlm.map(|(settings, validator)| {
                Arc::new(NtlmAcceptor {
                    config: Arc::new(settings.server_config()),
                    settings,
                    validator,
                })
            }),
            challenge: Challenge { values },
            directory: None,
        }
    }

    /// Resolves group names (and, for identities that came without groups, their
    /// `tokenGroups`) through `directory` after each successful login. Cache hits are
    /// synchronous; a miss waits for the directory at most its timeout (see
    /// [`crate::directory`]).
    pub fn with_directory(mut self, directory: Arc<crate::directory::Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The challenges to send with a 401.
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Re-reads validator files (SIGHUP).
    pub fn reload(&self) -> Result<(), String> {
        match &self.ntlm {
            Some(n) => n.validator.reload(),
            None => Ok(()),
        }
    }

    /// Authenticates one request from its headers. `conn` is the connection's state
    /// (see [`ConnectionAuth`]); NTLM needs it.
    #[instrument(level = "debug", skip_all)]
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionAuth>,
    ) -> Outcome {
        let mut outcome = self.authenticate_credentials(headers, conn).await;
        if let (Outcome::Authenticated(a), Some(dir)) = (&mut outcome, &self.directory) {
            dir.enrich(&mut a.identity).await;
        }
        outcome
    }

    async fn authenticate_credentials(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionAuth>,
    ) -> Outcome {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Outcome::NoCredentials;
        };
        if values.next().is_some() {
            return Outcome::Failed(AuthError::MultipleAuthorizationHeaders);
        }
        let token = match authz::parse_authorization(value.as_bytes()) {
            Ok(Credentials::Negotiate(token)) => token,
            Ok(Credentials::Ntlm(token)) => {
                return self.ntlm_leg(token, None, NtlmWrap::Ntlm, conn).await;
            }
            Ok(Credentials::Other(scheme)) => {
                return Outcome::Failed(AuthError::UnsupportedScheme(scheme))
            }
            Err(e) => return Outcome::Failed(AuthError::MalformedHeader(e)),
        };
        // The second leg of NTLM inside SPNEGO is a NegTokenResp ([1]), only valid on a
        // connection that has a CHALLENGE outstanding.
        if token.first() == Some(&0xa1) && conn.is_some_and(ConnectionAuth::spnego_pending) {
            return match spnego::decode_neg_token_resp(&token) {
                Ok(resp) => match resp.response_token {
                    Some(msg) => {
                        let msg = msg.to_vec();
                        let mic = resp.mech_list_mic.map(<[u8]>::to_vec);
                        // The wrap's mechTypes come from the pending state.
                        self.ntlm_leg(
                            msg,
                            mic,
                            NtlmWrap::Spnego {
                                mech_types_der: Vec::new(),
                            },
                            conn,
                        )
                        .await
                    }
                    None => Outcome::Failed(AuthError::NoMechToken("NTLM".into())),
                },
                Err(e) => Outcome::Failed(AuthError::BadToken(e)),
            };
        }
        let req = match classify_negotiate(&token) {
            Ok(NegotiateRequest::Kerberos(req)) => req,
            Ok(NegotiateRequest::Ntlm(message, wrap)) => {
                return self.ntlm_leg(message, None, wrap, conn).await;
            }
            Err(e) => return Outcome::Failed(e),
        };
        let Some(kerberos) = self.kerberos.clone() else {
            return Outcome::Failed(AuthError::MechanismNotEnabled("Kerberos".into()));
        };
        let binding = conn
            .and_then(ConnectionAuth::channel_binding)
            .filter(|b| b.mode() != ExtendedProtection::Off)
            .cloned();
        let require = binding
            .as_ref()
            .is_some_and(|b| b.mode() == ExtendedProtection::Require);
        let result = self
            .pool
            .run(move || {
                kerberos.accept_request(req, binding.as_ref().map(ChannelBinding::application_data))
            })
            .await;
        match result {
            Some(Ok(success)) => {
                // A mismatch already failed in GSSAPI (BAD_BINDINGS); a client that sent
                // no bindings leaves the context without CHANNEL_BOUND.
                if require && !success.channel_bound {
                    return Outcome::Failed(AuthError::ChannelBindingRequired("Kerberos"));
                }
                debug!(principal = %success.identity.principal, channel_bound = success.channel_bound, "kerberos accepted");
                let response_header = success
                    .response_token
                    .map(|t| header_value(ChallengeScheme::Negotiate, &t));
                Outcome::Authenticated(Authenticated {
                    identity: success.identity,
                    response_header,
                })
            }
            Some(Err(e)) => Outcome::Failed(e),
            None => Outcome::Failed(AuthError::Internal(
                "the Kerberos acceptance thread failed".into(),
            )),
        }
    }

    /// One NTLM message: a NEGOTIATE starts a handshake on this connection, an
    /// AUTHENTICATE finishes the one it started.
    async fn ntlm_leg(
        &self,
        message: Vec<u8>,
        client_mic: Option<Vec<u8>>,
        wrap: NtlmWrap,
        conn: Option<&ConnectionAuth>,
    ) -> Outcome {
        let Some(ntlm) = self.ntlm.clone() else {
            return Outcome::Failed(AuthError::MechanismNotEnabled("NTLM".into()));
        };
        let Some(conn) = conn else {
            return Outcome::Failed(AuthError::NtlmNeedsConnection);
        };
        let scheme = match wrap {
            NtlmWrap::Ntlm => ChallengeScheme::Ntlm,
            _ => ChallengeScheme::Negotiate,
        };
        match ntlm_msg::message_type(&message) {
            Ok(1) => match crate::ntlm::start(&ntlm.config, &message) {
                Ok((state, challenge)) => {
                    let token = match &wrap {
                        NtlmWrap::Spnego { .. } => spnego::encode_neg_token_resp(
                            Some(NegState::AcceptIncomplete),
                            Some(Mech::Ntlm),
                            Some(&challenge),
                            None,
                        ),
                        _ => challenge,
                    };
                    conn.set_pending(PendingNtlm {
                        state,
                        started: Instant::now(),
                        wrap,
                    });
                    Outcome::Continue(header_value(scheme, &token))
                }
                Err(e) => Outcome::Failed(AuthError::Ntlm(e)),
            },
            Ok(3) => {
                let Some(pending) = conn.take_pending() else {
                    return Outcome::Failed(AuthError::NtlmNoChallenge);
                };
                if pending.started.elapsed() > ntlm.settings.handshake_timeout {
                    return Outcome::Failed(AuthError::NtlmHandshakeTimeout);
                }
                let same_wrap = matches!(
                    (&pending.wrap, &wrap),
                    (NtlmWrap::Ntlm, NtlmWrap::Ntlm)
                        | (NtlmWrap::NegotiateRaw, NtlmWrap::NegotiateRaw)
                        | (NtlmWrap::Spnego { .. }, NtlmWrap::Spnego { .. })
                );
                if !same_wrap {
                    return Outcome::Failed(AuthError::NtlmSchemeMismatch);
                }
                let now = crate::ntlm::filetime_now();
                let validator = ntlm.validator.clone();
                let state = pending.state;
                let result = if validator.is_fast() {
                    validator.verify(state, &message, now)
                } else {
                    match tokio::task::spawn_blocking(move || {
                        validator.verify(state, &message, now)
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(join) => {
                            return Outcome::Failed(AuthError::Internal(format!(
                                "NTLM validation task failed: {join}"
                            )))
                        }
                    }
                };
                let user = match result {
                    Ok(u) => u,
                    Err(e) => return Outcome::Failed(AuthError::Ntlm(e)),
                };
                if let Err(e) = check_ntlm_binding(conn.channel_binding(), &user) {
                    return Outcome::Failed(e);
                }
                if !ntlm.settings.target_ok(user.target_name.as_deref()) {
                    return Outcome::Failed(AuthError::NtlmWrongTarget(
                        user.target_name.unwrap_or_default(),
                    ));
                }
                let response_header = match &pending.wrap {
                    NtlmWrap::Spnego { mech_types_der } => {
                        match spnego_ntlm_finish(&user, mech_types_der, client_mic.as_deref()) {
                            Ok(token) => Some(header_value(ChallengeScheme::Negotiate, &token)),
                            Err(e) => return Outcome::Failed(e),
                        }
                    }
                    _ => None,
                };
                Outcome::Authenticated(Authenticated {
                    identity: ntlm_identity(&ntlm.settings, user),
                    response_header,
                })
            }
            Ok(other) => Outcome::Failed(AuthError::NtlmUnexpectedMessage(other)),
            Err(e) => Outcome::Failed(AuthError::Ntlm(NtlmFailure::Refused(e))),
        }
    }
}

/// Extended Protection for NTLM: `MsvAvChannelBindings` against this connection's.
/// `Allow` refuses only bindings for another channel; `Require` also refuses absent or
/// all-zero ones (a client without bindings).
fn check_ntlm_binding(binding: Option<&ChannelBinding>, user: &NtlmUser) -> Result<(), AuthError> {
    let Some(binding) = binding else {
        return Ok(());
    };
    let received = user.channel_bindings.filter(|cb| cb != &[0u8; 16]);
    match (binding.mode(), received) {
        (ExtendedProtection::Off, _) => Ok(()),
        (ExtendedProtection::Allow, None) => Ok(()),
        (ExtendedProtection::Require, None) => Err(AuthError::ChannelBindingRequired("NTLM")),
        (_, Some(cb)) => {
            if iwa_proto::ntlm::crypto::ct_eq(&cb, binding.ntlm_hash()) {
                Ok(())
            } else {
                Err(AuthError::NtlmChannelBindingMismatch)
            }
        }
    }
}

/// The final SPNEGO answer for NTLM: verify the client's mechListMIC (if sent) with
/// the client-to-server signing key, and answer with ours.
fn spnego_ntlm_finish(
    user: &NtlmUser,
    mech_types_der: &[u8],
    client_mic: Option<&[u8]>,
) -> Result<Vec<u8>, AuthError> {
    let our_mic = match client_mic {
        Some(mic) => {
            let mut c2s = Signer::new(&user.session_key, user.flags, Direction::ClientToServer);
            if !c2s.verify(mech_types_der, mic) {
                return Err(AuthError::NtlmBadMechListMic);
            }
            let mut s2c = Signer::new(&user.session_key, user.flags, Direction::ServerToClient);
            Some(s2c.sign(mech_types_der).to_vec())
        }
        None => None,
    };
    Ok(spnego::encode_neg_token_resp(
        Some(NegState::AcceptCompleted),
        None,
        None,
        our_mic.as_deref(),
    ))
}

fn ntlm_identity(settings: &NtlmSettings, user: NtlmUser) -> Identity {
    let realm = settings
        .dns_domain
        .as_deref()
        .map_or_else(|| user.domain.to_uppercase(), str::to_uppercase);
    Identity {
        principal: format!("{}@{realm}", user.user),
        user: user.user,
        realm,
        domain: Some(user.domain),
        sid: user.sid,
        groups: user
            .group_sids
            .into_iter()
            .map(|sid| crate::identity::Group {
                sid: Some(sid),
                name: None,
            })
            .collect(),
        method: AuthMethod::Ntlm,
        expires: None,
    }
}

#[cfg(test)]
mod channel_binding_tests {
    use super::*;
    use iwa_proto::ntlm::NegotiateFlags;

    fn user(cb: Option<[u8; 16]>) -> NtlmUser {
        NtlmUser {
            user: "alice".into(),
            domain: "IWA".into(),
            sid: None,
            group_sids: Vec::new(),
            session_key: [0; 16],
            flags: NegotiateFlags(0),
            target_name: None,
            channel_bindings: cb,
        }
    }

    #[test]
    fn ntlm_binding_modes() {
        let hash = [7u8; 32];
        let b = |mode| ChannelBinding::tls_server_end_point(&hash, mode);
        let good = Some(*b(ExtendedProtection::Allow).ntlm_hash());
        let other = Some(
            *ChannelBinding::tls_server_end_point(&[8u8; 32], ExtendedProtection::Allow)
                .ntlm_hash(),
        );
        for cb in [None, Some([0u8; 16]), good, other] {
            assert!(check_ntlm_binding(None, &user(cb)).is_ok());
            assert!(check_ntlm_binding(Some(&b(ExtendedProtection::Off)), &user(cb)).is_ok());
        }
        let allow = b(ExtendedProtection::Allow);
        assert!(check_ntlm_binding(Some(&allow), &user(None)).is_ok());
        assert!(check_ntlm_binding(Some(&allow), &user(Some([0; 16]))).is_ok());
        assert!(check_ntlm_binding(Some(&allow), &user(good)).is_ok());
        assert!(matches!(
            check_ntlm_binding(Some(&allow), &user(other)),
            Err(AuthError::NtlmChannelBindingMismatch)
        ));
        let require = b(ExtendedProtection::Require);
        assert!(matches!(
            check_ntlm_binding(Some(&require), &user(None)),
            Err(AuthError::ChannelBindingRequired("NTLM"))
        ));
        assert!(matches!(
            check_ntlm_binding(Some(&require), &user(Some([0; 16]))),
            Err(AuthError::ChannelBindingRequired("NTLM"))
        ));
        assert!(check_ntlm_binding(Some(&require), &user(good)).is_ok());
        assert!(check_ntlm_binding(Some(&require), &user(other)).is_err());
    }
}
