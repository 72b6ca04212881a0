//! The `winbind` NTLM validator: Active Directory checks the client's NTLMv2 response
//! through Samba's winbindd on a domain-joined host (libwbclient's
//! `wbcAuthenticateUserEx`, level RESPONSE, with our challenge and the client's full
//! NTLMv2 response), and answers with the account, its domain, the session key and the
//! user's SIDs (user, primary group, transitive groups).
//!
//! This is the one module of iwa that calls libwbclient: every `unsafe` block for it
//! lives here. The library is not linked at build time; it is loaded with `dlopen` the
//! first time a [`WinbindValidator`] is created, so the `iwa` binary runs on hosts without
//! it as long as the winbind validator is not configured.
//!
//! libwbclient blocks (up to minutes when winbindd hangs). Every call therefore runs on
//! one of a bounded set of worker threads, each with its own winbind connection
//! (`wbcContext`), and the caller waits at most [`WinbindSettings::timeout`]: a slow or
//! dead winbindd gives [`NtlmFailure::Unavailable`] (HTTP 503), never a hang. A call that
//! timed out keeps its worker until winbindd answers or gives up; when
//! [`WinbindSettings::max_outstanding`] calls are outstanding, further calls fail at once.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use iwa_proto::ntlm::{ChallengeSent, FileTime, NegotiateFlags};

use crate::ntlm::{NtlmFailure, NtlmUser, NtlmValidator};

/// The shared object loaded at run time.
pub const LIBWBCLIENT: &str = "libwbclient.so.0";
/// Where libwbclient looks for winbindd (compiled into the library).
pub const WINBINDD_SOCKET_DIR: &str = "/run/samba/winbindd";

/// How the winbind validator talks to winbindd.
#[derive(Debug, Clone)]
pub struct WinbindSettings {
    /// The NetBIOS domain assumed when a client sends none (`curl -u alice:…`).
    pub domain: String,
    /// Longest wait for winbindd's answer; then the request gets 503.
    pub timeout: Duration,
    /// Most winbind calls outstanding at once (including ones that timed out and are
    /// still stuck in winbindd); further calls get 503 at once.
    pub max_outstanding: usize,
}

impl WinbindSettings {
    pub fn new(domain: impl Into<String>) -> Self {
        WinbindSettings {
            domain: domain.into(),
            timeout: Duration::from_secs(10),
            max_outstanding: 16,
        }
    }
}

/// One NTLMv2 response for the domain controller to check.
#[derive(Debug, Clone)]
pub struct LogonRequest {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub challenge: [u8; 8],
    /// NtChallengeResponse as the client sent it (NTProofStr ‖ client challenge blob).
    pub nt_response: Vec<u8>,
}

/// The domain controller's answer to a good logon.
#[derive(Clone)]
pub struct LogonInfo {
    /// The account name as the directory spells it.
    pub account: String,
    /// The NetBIOS domain of the account.
    pub domain: String,
    /// `wbcAuthUserInfo.user_flags` (`WBC_AUTH_USER_INFO_*`).
    pub user_flags: u32,
    /// The "user session key": for NTLMv2 this is the SessionBaseKey
    /// (HMAC-MD5(NTOWFv2, NTProofStr)), from which KEY_EXCH and the MIC proceed.
    pub session_key: [u8; 16],
    /// User SID first, then the primary group, then the other groups (as returned;
    /// may hold duplicates).
    pub sids: Vec<String>,
}

impl fmt::Debug for LogonInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogonInfo")
            .field("account", &self.account)
            .field("domain", &self.domain)
            .field("user_flags", &self.user_flags)
            .field("sids", &self.sids)
            .finish_non_exhaustive()
    }
}

/// What winbind says when the answer is not a logon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WbcFailure {
    /// The domain answered and refused (`WBC_ERR_AUTH_ERROR`): an NT status.
    Auth {
        nt_status: u32,
        nt_string: String,
        authoritative: bool,
    },
    /// Any other `wbcErr` (winbindd not reachable, domain not found, …).
    Wbc { code: i32, text: String },
    /// The request cannot be expressed to libwbclient (a NUL inside a name).
    BadInput(&'static str),
}

/// What the validator needs from winbind; [`Libwbclient`] in production, fakes in tests.
/// Calls block and run on the validator's worker threads.
pub trait WinbindTransport: Send + Sync + 'static {
    fn authenticate(&self, request: &LogonRequest) -> Result<LogonInfo, WbcFailure>;
}

// ---------------------------------------------------------------------------------
// NT status codes

/// `wbcErr` values (wbclient.h `enum _wbcErrType`).
mod wbc_err {
    pub const SUCCESS: i32 = 0;
    pub const WINBIND_NOT_AVAILABLE: i32 = 6;
    pub const DOMAIN_NOT_FOUND: i32 = 7;
    pub const AUTH_ERROR: i32 = 10;
    pub const UNKNOWN_USER: i32 = 11;
}

const WBC_AUTH_USER_INFO_GUEST: u32 = 0x0000_0001;

const NT_STATUS_NO_SUCH_USER: u32 = 0xC000_0064;

/// NT statuses that mean the user may not log on (401), by name.
const LOGON_REFUSALS: &[(u32, &str)] = &[
    (0xC000_006A, "NT_STATUS_WRONG_PASSWORD"),
    (NT_STATUS_NO_SUCH_USER, "NT_STATUS_NO_SUCH_USER"),
    (0xC000_0072, "NT_STATUS_ACCOUNT_DISABLED"),
    (0xC000_0234, "NT_STATUS_ACCOUNT_LOCKED_OUT"),
    (0xC000_0071, "NT_STATUS_PASSWORD_EXPIRED"),
    (0xC000_0224, "NT_STATUS_PASSWORD_MUST_CHANGE"),
    (0xC000_0193, "NT_STATUS_ACCOUNT_EXPIRED"),
    (0xC000_006D, "NT_STATUS_LOGON_FAILURE"),
    (0xC000_006E, "NT_STATUS_ACCOUNT_RESTRICTION"),
    (0xC000_006F, "NT_STATUS_INVALID_LOGON_HOURS"),
    (0xC000_0070, "NT_STATUS_INVALID_WORKSTATION"),
    (0xC000_015B, "NT_STATUS_LOGON_TYPE_NOT_GRANTED"),
    (0xC000_0413, "NT_STATUS_AUTHENTICATION_FIREWALL_FAILED"),
    (0xC000_0199, "NT_STATUS_NOLOGON_WORKSTATION_TRUST_ACCOUNT"),
    (0xC000_019A, "NT_STATUS_NOLOGON_SERVER_TRUST_ACCOUNT"),
    (0xC000_0198, "NT_STATUS_NOLOGON_INTERDOMAIN_TRUST_ACCOUNT"),
];

/// NT statuses that mean the domain could not be asked (503).
const DOMAIN_UNREACHABLE: &[(u32, &str)] = &[
    (0xC000_005E, "NT_STATUS_NO_LOGON_SERVERS"),
    (0xC000_00B5, "NT_STATUS_IO_TIMEOUT"),
    (0xC000_0233, "NT_STATUS_DOMAIN_CONTROLLER_NOT_FOUND"),
    (0xC000_018C, "NT_STATUS_TRUSTED_DOMAIN_FAILURE"),
    (0xC000_018D, "NT_STATUS_TRUSTED_RELATIONSHIP_FAILURE"),
    (0xC000_0192, "NT_STATUS_NETLOGON_NOT_STARTED"),
    (0xC000_00DA, "NT_STATUS_CANT_ACCESS_DOMAIN_INFO"),
    (0xC000_00DF, "NT_STATUS_NO_SUCH_DOMAIN"),
    (0xC000_0022, "NT_STATUS_ACCESS_DENIED"),
    (0xC000_00E5, "NT_STATUS_INTERNAL_ERROR"),
    (0xC000_0017, "NT_STATUS_NO_MEMORY"),
    (0xC000_0001, "NT_STATUS_UNSUCCESSFUL"),
    (0xC000_020C, "NT_STATUS_CONNECTION_DISCONNECTED"),
    (0xC000_0241, "NT_STATUS_CONNECTION_ABORTED"),
    (0xC000_0236, "NT_STATUS_CONNECTION_REFUSED"),
    (0xC000_023C, "NT_STATUS_NETWORK_UNREACHABLE"),
    (0xC000_00BE, "NT_STATUS_BAD_NETWORK_PATH"),
    (0xC000_00CC, "NT_STATUS_BAD_NETWORK_NAME"),
    (0xC000_0203, "NT_STATUS_USER_SESSION_DELETED"),
    (0xC000_00AC, "NT_STATUS_PIPE_NOT_AVAILABLE"),
    (0xC000_00B0, "NT_STATUS_PIPE_DISCONNECTED"),
    (0xC000_014B, "NT_STATUS_PIPE_BROKEN"),
    (0xC000_00C9, "NT_STATUS_NETWORK_NAME_DELETED"),
    (0xC000_00E4, "NT_STATUS_INVALID_SERVER_STATE"),
];

fn status_name(table: &[(u32, &'static str)], status: u32) -> Option<&'static str> {
    table.iter().find(|(s, _)| *s == status).map(|(_, n)| *n)
}

/// Maps winbind's answer to the validator's failure.
fn map_failure(request: &LogonRequest, failure: WbcFailure) -> NtlmFailure {
    match failure {
        WbcFailure::Auth {
            nt_status: NT_STATUS_NO_SUCH_USER,
            ..
        }
        | WbcFailure::Wbc {
            code: wbc_err::UNKNOWN_USER,
            ..
        } => NtlmFailure::UnknownUser {
            user: request.user.clone(),
            domain: request.domain.clone(),
        },
        WbcFailure::Auth {
            nt_status,
            nt_string,
            ..
        } => {
            if let Some(name) = status_name(DOMAIN_UNREACHABLE, nt_status) {
                return NtlmFailure::Unavailable(format!(
                    "winbindd could not reach a domain controller for {}: {name} (0x{nt_status:08x})",
                    request.domain
                ));
            }
            let name = match status_name(LOGON_REFUSALS, nt_status) {
                Some(n) => n.to_owned(),
                None if nt_string.is_empty() => "unknown NT status".to_owned(),
                None => nt_string,
            };
            NtlmFailure::Directory {
                user: request.user.clone(),
                domain: request.domain.clone(),
                status: nt_status,
                name,
            }
        }
        WbcFailure::Wbc { code, text } => {
            let hint = match code {
                wbc_err::WINBIND_NOT_AVAILABLE => format!(
                    " (is winbindd running, with its socket in {WINBINDD_SOCKET_DIR}, and may this \
                     user open its privileged pipe? a non-root iwa needs the winbindd_priv group)"
                ),
                wbc_err::DOMAIN_NOT_FOUND => format!(
                    " (winbindd does not know the domain {:?}; is the host joined?)",
                    request.domain
                ),
                _ => String::new(),
            };
            NtlmFailure::Unavailable(format!("winbind: {text} [wbcErr {code}]{hint}"))
        }
        WbcFailure::BadInput(what) => NtlmFailure::UnknownUser {
            user: format!("({what} with a NUL byte)"),
            domain: request.domain.clone(),
        },
    }
}

// ---------------------------------------------------------------------------------
// SIDs

/// `S-1-5-21-…` for a binary SID (identifier authority big-endian, as in MS-DTYP).
fn sid_string(revision: u8, authority: [u8; 6], sub_auths: &[u32]) -> String {
    use fmt::Write as _;
    let mut ia = [0u8; 8];
    ia[2..].copy_from_slice(&authority);
    let ia = u64::from_be_bytes(ia);
    let mut s = if ia >> 32 == 0 {
        format!("S-{revision}-{ia}")
    } else {
        format!("S-{revision}-0x{ia:012X}")
    };
    for sub in sub_auths {
        let _ = write!(s, "-{sub}");
    }
    s
}

/// The user SID (the first) and the group SIDs (the rest, duplicates and the user SID
/// removed, order kept).
fn split_sids(sids: Vec<String>) -> (Option<String>, Vec<String>) {
    let mut it = sids.into_iter();
    let user = it.next();
    let mut groups: Vec<String> = Vec::new();
    for s in it {
        if Some(&s) != user.as_ref() && !groups.contains(&s) {
            groups.push(s);
        }
    }
    (user, groups)
}

// ---------------------------------------------------------------------------------
// The bounded worker threads

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Default)]
struct PoolCounts {
    /// Jobs submitted and not finished (finished = the C call returned).
    outstanding: usize,
    /// Worker threads alive.
    threads: usize,
}

/// One outstanding call; frees its slot when dropped.
struct Outstanding(Arc<Mutex<PoolCounts>>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.outstanding = c.outstanding.saturating_sub(1);
    }
}

/// Worker threads that run winbind calls, at most `max` at once. Every worker keeps its
/// own winbind connection, so a worker stuck in a hung call does not block the others.
struct Workers {
    max: usize,
    tx: Mutex<mpsc::Sender<Job>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    counts: Arc<Mutex<PoolCounts>>,
}

impl Workers {
    fn new(max: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        Workers {
            max: max.max(1),
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            counts: Arc::new(Mutex::new(PoolCounts::default())),
        }
    }

    /// Runs `f` on a worker and waits at most `timeout` for its result.
    fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NtlmFailure> {
        {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if c.outstanding >= self.max {
                return Err(NtlmFailure::Unavailable(format!(
                    "{} winbind calls are already outstanding (winbindd slow or hung?); refusing more",
                    c.outstanding
                )));
            }
            c.outstanding += 1;
            // Every outstanding job has a thread: threads >= outstanding.
            if c.threads < c.outstanding {
                if let Err(e) = self.spawn_worker(c.threads) {
                    c.outstanding -= 1;
                    return Err(NtlmFailure::Unavailable(format!(
                        "cannot start a winbind worker thread: {e}"
                    )));
                }
                c.threads += 1;
            }
        }
        let (done_tx, done_rx) = mpsc::sync_channel::<T>(1);
        let slot = Outstanding(self.counts.clone());
        let job: Job = Box::new(move || {
            let result = f();
            // Free the slot before the caller can see the result (and its client can
            // start the next call), also on panic (the guard drops while unwinding).
            drop(slot);
            let _ = done_tx.send(result);
        });
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .is_ok();
        if !sent {
            // The job (and its slot guard) was dropped with the failed send.
            return Err(NtlmFailure::Unavailable(
                "the winbind worker threads are gone".into(),
            ));
        }
        match done_rx.recv_timeout(timeout) {
            Ok(v) => Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(NtlmFailure::Unavailable(format!(
                "winbindd did not answer within {} ms (is winbindd or the domain controller hung?)",
                timeout.as_millis()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(NtlmFailure::Unavailable(
                "the winbind call failed (worker panicked)".into(),
            )),
        }
    }

    fn spawn_worker(&self, index: usize) -> std::io::Result<()> {
        let rx = self.rx.clone();
        let counts = self.counts.clone();
        std::thread::Builder::new()
            .name(format!("iwa-winbind-{index}"))
            .spawn(move || loop {
                let job = {
                    let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                    guard.recv()
                };
                let Ok(job) = job else {
                    // The validator is gone.
                    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                    c.threads = c.threads.saturating_sub(1);
                    return;
                };
                // A panic must not kill the worker; the caller sees a dropped channel.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            })
            .map(|_| ())
    }
}

// ---------------------------------------------------------------------------------
// The validator

/// Validates NTLMv2 against Active Directory through winbindd.
pub struct WinbindValidator {
    settings: WinbindSettings,
    transport: Arc<dyn WinbindTransport>,
    workers: Workers,
}

impl fmt::Debug for WinbindValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinbindValidator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl WinbindValidator {
    /// Loads libwbclient (once per process) and builds the validator. Fails with a
    /// clear message when the library is missing. Does not contact winbindd: see
    /// [`probe`] for that.
    pub fn new(settings: WinbindSettings) -> Result<Self, String> {
        let lib = Libwbclient::system()?;
        Ok(Self::with_transport(settings, Arc::new(lib)))
    }

    /// A validator over any transport (tests inject fakes here).
    pub fn with_transport(settings: WinbindSettings, transport: Arc<dyn WinbindTransport>) -> Self {
        let workers = Workers::new(settings.max_outstanding);
        WinbindValidator {
            settings,
            transport,
            workers,
        }
    }

    fn call(&self, request: LogonRequest) -> Result<LogonInfo, NtlmFailure> {
        let transport = self.transport.clone();
        let req = request.clone();
        let answer = self
            .workers
            .run(self.settings.timeout, move || transport.authenticate(&req));
        match answer {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(failure)) => Err(map_failure(&request, failure)),
            Err(e) => Err(e),
        }
    }
}

impl NtlmValidator for WinbindValidator {
    #[tracing::instrument(skip_all)]
    fn verify(
        &self,
        state: ChallengeSent,
        authenticate: &[u8],
        now: FileTime,
    ) -> Result<NtlmUser, NtlmFailure> {
        let offered = state.flags();
        // Every check that needs no secret first: NTLMv1/LM/anonymous, skew, MIC presence.
        let received = state.receive_authenticate(authenticate, now)?;
        let domain = if received.domain().is_empty() {
            self.settings.domain.clone()
        } else {
            received.domain().to_owned()
        };
        let request = LogonRequest {
            user: received.user().to_owned(),
            domain,
            workstation: received.workstation().to_owned(),
            challenge: received.server_challenge(),
            nt_response: received.nt_response().to_vec(),
        };
        let info = match self.call(request.clone()) {
            Ok(info) => info,
            Err(NtlmFailure::Unavailable(why)) => {
                tracing::error!(
                    user = %request.user,
                    domain = %request.domain,
                    "NTLM via winbind unavailable: {why}"
                );
                return Err(NtlmFailure::Unavailable(why));
            }
            Err(e) => return Err(e),
        };
        if info.user_flags & WBC_AUTH_USER_INFO_GUEST != 0 {
            return Err(NtlmFailure::Guest {
                user: request.user,
                domain: request.domain,
            });
        }
        // The DC returned the NTLMv2 SessionBaseKey; KEY_EXCH and the MIC follow from it.
        let done = received.complete_with_session_base_key(&info.session_key)?;
        let (sid, group_sids) = split_sids(info.sids);
        Ok(NtlmUser {
            user: info.account,
            domain: info.domain,
            sid,
            group_sids,
            session_key: *done.session_key.as_bytes(),
            flags: NegotiateFlags(offered.0 & done.flags.0),
            target_name: done.target_name.clone(),
            channel_bindings: done.channel_bindings,
        })
    }
}

/// What `iwa check` reports about winbindd.
#[derive(Debug, Clone)]
pub struct WinbindStatus {
    pub winbind_version: String,
    pub netbios_domain: String,
    pub dns_domain: String,
    /// `Ok(dc name)` when winbindd reached a domain controller over NETLOGON.
    pub dc: Result<String, String>,
}

/// Loads libwbclient and asks winbindd who it is and whether it reaches a DC (the
/// non-privileged pipe: this does not prove access to the privileged one).
pub fn probe() -> Result<WinbindStatus, String> {
    let lib = Libwbclient::system()?;
    lib.probe()
}

// ---------------------------------------------------------------------------------
// FFI: libwbclient, loaded at run time. Declarations from wbclient.h (Samba 4.x,
// interface ≥ 0.12: the wbcCtx* functions). Layouts are checked by tests.

const WBC_MAXSUBAUTHS: usize = 15;
const WBC_AUTH_USER_LEVEL_RESPONSE: c_int = 3;
/// Only user accounts may log on: no `WBC_MSV1_0_ALLOW_*_TRUST_ACCOUNT`.
const PARAMETER_CONTROL: u32 = 0;

#[repr(C)]
struct WbcContext {
    _opaque: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct WbcDomainSid {
    sid_rev_num: u8,
    num_auths: u8,
    id_auth: [u8; 6],
    sub_auths: [u32; WBC_MAXSUBAUTHS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct WbcSidWithAttr {
    sid: WbcDomainSid,
    attributes: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct WbcResponse {
    challenge: [u8; 8],
    nt_length: u32,
    nt_data: *mut u8,
    lm_length: u32,
    lm_data: *mut u8,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct WbcBlob {
    data: *mut u8,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct WbcHash {
    nt_hash: [u8; 16],
    lm_hash: [u8; 16],
}

#[repr(C)]
union WbcPassword {
    plaintext: *const c_char,
    hash: WbcHash,
    response: WbcResponse,
    pac: WbcBlob,
}

#[repr(C)]
struct WbcAuthUserParams {
    account_name: *const c_char,
    domain_name: *const c_char,
    workstation_name: *const c_char,
    flags: u32,
    parameter_control: u32,
    level: c_int,
    password: WbcPassword,
}

#[repr(C)]
struct WbcAuthUserInfo {
    user_flags: u32,
    account_name: *mut c_char,
    user_principal: *mut c_char,
    full_name: *mut c_char,
    domain_name: *mut c_char,
    dns_domain_name: *mut c_char,
    acct_flags: u32,
    user_session_key: [u8; 16],
    lm_session_key: [u8; 8],
    logon_count: u16,
    bad_password_count: u16,
    logon_time: u64,
    logoff_time: u64,
    kickoff_time: u64,
    pass_last_set_time: u64,
    pass_can_change_time: u64,
    pass_must_change_time: u64,
    logon_server: *mut c_char,
    logon_script: *mut c_char,
    profile_path: *mut c_char,
    home_directory: *mut c_char,
    home_drive: *mut c_char,
    num_sids: u32,
    sids: *mut WbcSidWithAttr,
}

#[repr(C)]
struct WbcAuthErrorInfo {
    nt_status: u32,
    nt_string: *mut c_char,
    pam_error: i32,
    display_string: *mut c_char,
    authoritative: u8,
}

#[repr(C)]
struct WbcInterfaceDetails {
    interface_version: u32,
    winbind_version: *mut c_char,
    winbind_separator: c_char,
    netbios_name: *mut c_char,
    netbios_domain: *mut c_char,
    dns_domain: *mut c_char,
}

type FnCtxCreate = unsafe extern "C" fn() -> *mut WbcContext;
type FnCtxFree = unsafe extern "C" fn(*mut WbcContext);
type FnFreeMemory = unsafe extern "C" fn(*mut c_void);
type FnErrorString = unsafe extern "C" fn(c_int) -> *const c_char;
type FnCtxAuthenticateUserEx = unsafe extern "C" fn(
    *mut WbcContext,
    *const WbcAuthUserParams,
    *mut *mut WbcAuthUserInfo,
    *mut *mut WbcAuthErrorInfo,
) -> c_int;
type FnCtxPingDc2 = unsafe extern "C" fn(
    *mut WbcContext,
    *const c_char,
    *mut *mut WbcAuthErrorInfo,
    *mut *mut c_char,
) -> c_int;
type FnCtxInterfaceDetails =
    unsafe extern "C" fn(*mut WbcContext, *mut *mut WbcInterfaceDetails) -> c_int;

/// The functions iwa uses from a loaded libwbclient.
struct Symbols {
    ctx_create: FnCtxCreate,
    ctx_free: FnCtxFree,
    free_memory: FnFreeMemory,
    error_string: FnErrorString,
    authenticate_user_ex: FnCtxAuthenticateUserEx,
    ping_dc2: FnCtxPingDc2,
    interface_details: FnCtxInterfaceDetails,
}

/// libwbclient as the production [`WinbindTransport`]. The library, once loaded, is
/// never unloaded (worker threads stuck in it may outlive any validator).
#[derive(Clone, Copy)]
pub struct Libwbclient {
    syms: &'static Symbols,
}

impl fmt::Debug for Libwbclient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Libwbclient")
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc, valid
    // until the next dl* call on this thread; we copy it at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown dlopen error".to_owned()
    } else {
        // SAFETY: non-NULL, NUL-terminated (see above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Libwbclient {
    /// The system's libwbclient ([`LIBWBCLIENT`]), loaded once per process.
    pub fn system() -> Result<Libwbclient, String> {
        static SYSTEM: OnceLock<Result<Libwbclient, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| Libwbclient::load(LIBWBCLIENT))
            .clone()
    }

    /// Loads `soname` with `dlopen` and resolves the functions iwa needs. Each success
    /// leaks one small table (the library stays loaded for the life of the process).
    pub fn load(soname: &str) -> Result<Libwbclient, String> {
        let missing = |why: String| {
            format!(
                "the winbind NTLM validator needs Samba's winbind client library {soname}, which \
                 cannot be loaded ({why}); install it (Debian/Ubuntu: apt install libwbclient0 \
                 winbind), join this host to the domain and start winbindd, or use \
                 validator = \"local\""
            )
        };
        let name = CString::new(soname).map_err(|_| missing("NUL in the name".into()))?;
        // SAFETY: `name` is a valid C string; dlopen has no other preconditions. Loading
        // runs the library's constructors, which libwbclient keeps trivial.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(missing(dl_error()));
        }
        let sym = |n: &str| -> Result<*mut c_void, String> {
            let c = CString::new(n).map_err(|_| missing(format!("bad symbol name {n}")))?;
            // SAFETY: `handle` is a live handle from dlopen (never closed); `c` is a
            // valid C string.
            let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
            if p.is_null() {
                Err(missing(format!(
                    "{n} not found: libwbclient older than Samba 4.6 (interface 0.12)?"
                )))
            } else {
                Ok(p)
            }
        };
        // SAFETY (all transmutes below): each pointer is the address of the libwbclient
        // function of that name, whose C prototype in wbclient.h is exactly the
        // function-pointer type it is transmuted to.
        let syms = unsafe {
            Symbols {
                ctx_create: std::mem::transmute::<*mut c_void, FnCtxCreate>(sym("wbcCtxCreate")?),
                ctx_free: std::mem::transmute::<*mut c_void, FnCtxFree>(sym("wbcCtxFree")?),
                free_memory: std::mem::transmute::<*mut c_void, FnFreeMemory>(sym(
                    "wbcFreeMemory",
                )?),
                error_string: std::mem::transmute::<*mut c_void, FnErrorString>(sym(
                    "wbcErrorString",
                )?),
                authenticate_user_ex: std::mem::transmute::<*mut c_void, FnCtxAuthenticateUserEx>(
                    sym("wbcCtxAuthenticateUserEx")?,
                ),
                ping_dc2: std::mem::transmute::<*mut c_void, FnCtxPingDc2>(sym("wbcCtxPingDc2")?),
                interface_details: std::mem::transmute::<*mut c_void, FnCtxInterfaceDetails>(sym(
                    "wbcCtxInterfaceDetails",
                )?),
            }
        };
        Ok(Libwbclient {
            syms: Box::leak(Box::new(syms)),
        })
    }

    fn error_text(&self, code: c_int) -> String {
        // SAFETY: wbcErrorString accepts any value and returns a pointer to a static
        // string (or NULL).
        let p = unsafe { (self.syms.error_string)(code) };
        if p.is_null() {
            format!("wbcErr {code}")
        } else {
            // SAFETY: a static NUL-terminated string.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    }

    /// Runs `f` with this thread's winbind context (one connection per thread).
    fn with_context<T>(
        &self,
        f: impl FnOnce(*mut WbcContext) -> Result<T, WbcFailure>,
    ) -> Result<T, WbcFailure> {
        thread_local! {
            static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
        }
        CONTEXT.with(|cell| {
            let mut slot = cell.borrow_mut();
            let reuse = slot.as_ref().is_some_and(|c| ptr::eq(c.syms, self.syms));
            if !reuse {
                *slot = Some(Context::new(self.syms).ok_or(WbcFailure::Wbc {
                    code: 3,
                    text: "wbcCtxCreate failed (out of memory)".into(),
                })?);
            }
            match slot.as_ref() {
                Some(c) => f(c.ctx.as_ptr()),
                None => Err(WbcFailure::Wbc {
                    code: 2,
                    text: "no winbind context".into(),
                }),
            }
        })
    }

    fn probe(&self) -> Result<WinbindStatus, String> {
        self.with_context(|ctx| {
            let mut details: *mut WbcInterfaceDetails = ptr::null_mut();
            // SAFETY: `ctx` is a live context of this library; `details` is a valid
            // out-pointer. On success it points to memory we free with wbcFreeMemory.
            let rc = unsafe { (self.syms.interface_details)(ctx, &mut details) };
            let details = WbcOwned::new(details, self.syms);
            if rc != wbc_err::SUCCESS {
                return Err(WbcFailure::Wbc {
                    code: rc,
                    text: self.error_text(rc),
                });
            }
            let Some(d) = details.get() else {
                return Err(WbcFailure::Wbc {
                    code: 8,
                    text: "no interface details".into(),
                });
            };
            // SAFETY: the strings are NULL or NUL-terminated, owned by `details`.
            let (version, nb, dns) = unsafe {
                (
                    c_string(d.winbind_version),
                    c_string(d.netbios_domain),
                    c_string(d.dns_domain),
                )
            };
            let mut error: *mut WbcAuthErrorInfo = ptr::null_mut();
            let mut dcname: *mut c_char = ptr::null_mut();
            // SAFETY: live context; NULL domain means "our domain"; out-pointers valid;
            // results freed by their owners below.
            let rc = unsafe { (self.syms.ping_dc2)(ctx, ptr::null(), &mut error, &mut dcname) };
            let error = WbcOwned::new(error, self.syms);
            let dcname = WbcOwned::new(dcname, self.syms);
            let dc = if rc == wbc_err::SUCCESS {
                // SAFETY: NULL or a NUL-terminated string owned by `dcname`.
                Ok(unsafe { c_string(dcname.as_ptr()) })
            } else {
                let detail = error
                    .get()
                    // SAFETY: NULL or NUL-terminated, owned by `error`.
                    .map(|e| unsafe { c_string(e.nt_string) })
                    .unwrap_or_default();
                Err(format!("{} {detail}", self.error_text(rc)))
            };
            Ok(WinbindStatus {
                winbind_version: version,
                netbios_domain: nb,
                dns_domain: dns,
                dc,
            })
        })
        .map_err(|e| match e {
            WbcFailure::Wbc { code, text } => format!(
                "winbindd is not reachable at {WINBINDD_SOCKET_DIR}: {text} [wbcErr {code}]"
            ),
            other => format!("{other:?}"),
        })
    }
}

impl WinbindTransport for Libwbclient {
    fn authenticate(&self, request: &LogonRequest) -> Result<LogonInfo, WbcFailure> {
        let account =
            CString::new(request.user.as_str()).map_err(|_| WbcFailure::BadInput("user name"))?;
        let domain =
            CString::new(request.domain.as_str()).map_err(|_| WbcFailure::BadInput("domain"))?;
        let workstation = CString::new(request.workstation.as_str())
            .map_err(|_| WbcFailure::BadInput("workstation"))?;
        let nt_length = u32::try_from(request.nt_response.len())
            .map_err(|_| WbcFailure::BadInput("NT response length"))?;
        let params = WbcAuthUserParams {
            account_name: account.as_ptr(),
            domain_name: domain.as_ptr(),
            workstation_name: workstation.as_ptr(),
            flags: 0,
            parameter_control: PARAMETER_CONTROL,
            level: WBC_AUTH_USER_LEVEL_RESPONSE,
            password: WbcPassword {
                response: WbcResponse {
                    challenge: request.challenge,
                    nt_length,
                    // libwbclient only reads it (the C field is not const).
                    nt_data: request.nt_response.as_ptr().cast_mut(),
                    lm_length: 0,
                    lm_data: ptr::null_mut(),
                },
            },
        };
        self.with_context(|ctx| {
            let mut info: *mut WbcAuthUserInfo = ptr::null_mut();
            let mut error: *mut WbcAuthErrorInfo = ptr::null_mut();
            // SAFETY: `ctx` is this thread's live context of this library; `params`
            // and everything it points to (the CStrings, the NT response) outlive the
            // call, which only reads them; `info`/`error` are valid out-pointers whose
            // results we own and free with wbcFreeMemory.
            let rc =
                unsafe { (self.syms.authenticate_user_ex)(ctx, &params, &mut info, &mut error) };
            let info = WbcOwned::new(info, self.syms);
            let error = WbcOwned::new(error, self.syms);
            if rc == wbc_err::AUTH_ERROR {
                let Some(e) = error.get() else {
                    return Err(WbcFailure::Wbc {
                        code: rc,
                        text: self.error_text(rc),
                    });
                };
                return Err(WbcFailure::Auth {
                    nt_status: e.nt_status,
                    // SAFETY: NULL or NUL-terminated, owned by `error`.
                    nt_string: unsafe { c_string(e.nt_string) },
                    authoritative: e.authoritative != 0,
                });
            }
            if rc != wbc_err::SUCCESS {
                return Err(WbcFailure::Wbc {
                    code: rc,
                    text: self.error_text(rc),
                });
            }
            let Some(i) = info.get() else {
                return Err(WbcFailure::Wbc {
                    code: 8,
                    text: "success without user info".into(),
                });
            };
            let sids = if i.num_sids == 0 || i.sids.is_null() {
                &[][..]
            } else {
                // SAFETY: libwbclient returns `num_sids` consecutive entries at `sids`,
                // owned by `info` (one talloc-like allocation), alive while `info` is.
                unsafe { std::slice::from_raw_parts(i.sids, i.num_sids as usize) }
            };
            let sids = sids
                .iter()
                .filter_map(|s| {
                    let n = usize::from(s.sid.num_auths);
                    let subs = s.sid.sub_auths.get(..n)?;
                    Some(sid_string(s.sid.sid_rev_num, s.sid.id_auth, subs))
                })
                .collect();
            // SAFETY: the strings are NULL or NUL-terminated, owned by `info`.
            let (account, domain) = unsafe { (c_string(i.account_name), c_string(i.domain_name)) };
            Ok(LogonInfo {
                account,
                domain,
                user_flags: i.user_flags,
                session_key: i.user_session_key,
                sids,
            })
        })
    }
}

/// Copies a C string; NULL gives "".
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: per the contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Memory returned by libwbclient, freed with `wbcFreeMemory` on drop.
struct WbcOwned<T> {
    ptr: Option<NonNull<T>>,
    syms: &'static Symbols,
}

impl<T> WbcOwned<T> {
    fn new(ptr: *mut T, syms: &'static Symbols) -> Self {
        WbcOwned {
            ptr: NonNull::new(ptr),
            syms,
        }
    }

    fn get(&self) -> Option<&T> {
        // SAFETY: a non-NULL pointer from libwbclient to an initialised `T` (declared
        // with the C layout), alive until we free it in drop.
        self.ptr.map(|p| unsafe { p.as_ref() })
    }

    fn as_ptr(&self) -> *const T {
        self.ptr.map_or(ptr::null(), |p| p.as_ptr().cast_const())
    }
}

impl<T> Drop for WbcOwned<T> {
    fn drop(&mut self) {
        if let Some(p) = self.ptr.take() {
            // SAFETY: `p` came from libwbclient as an out-parameter result, which the
            // API says to release with wbcFreeMemory, exactly once (we took it).
            unsafe { (self.syms.free_memory)(p.as_ptr().cast()) };
        }
    }
}

/// A thread's winbind connection (`wbcContext`), freed on thread exit.
struct Context {
    ctx: NonNull<WbcContext>,
    syms: &'static Symbols,
}

impl Context {
    fn new(syms: &'static Symbols) -> Option<Self> {
        // SAFETY: wbcCtxCreate has no preconditions; it returns NULL or a new context.
        let p = unsafe { (syms.ctx_create)() };
        NonNull::new(p).map(|ctx| Context { ctx, syms })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by wbcCtxCreate, freed once, and no call uses it any more
        // (contexts are thread-local and this is the thread's destructor).
        unsafe { (self.syms.ctx_free)(self.ctx.as_ptr()) };
    }
}

#[cfg(test)]
mod tests;
