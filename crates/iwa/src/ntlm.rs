//! NTLM acceptance: the connection-bound three-leg handshake over `iwa_proto::ntlm`,
//! and the validators that check the client's NTLMv2 proof.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iwa_proto::ntlm::{
    ChallengeSent, FileTime, NegotiateFlags, NtlmError, ServerConfig, ServerHandshake,
};

/// How NTLM is offered and checked.
#[derive(Debug, Clone)]
pub struct NtlmSettings {
    /// The NetBIOS domain name, e.g. `EXAMPLE` (sent in the CHALLENGE; the default
    /// domain for clients that send none).
    pub domain: String,
    /// The NetBIOS computer name sent in the CHALLENGE.
    pub computer_name: String,
    /// The DNS domain, e.g. `example.test`; also the realm part of the principal.
    pub dns_domain: Option<String>,
    /// Largest difference between the client's NTLMv2 timestamp and ours.
    pub max_clock_skew: Duration,
    /// Refuse AUTHENTICATE messages without a MIC.
    pub require_mic: bool,
    /// A CHALLENGE not answered within this time is forgotten.
    pub handshake_timeout: Duration,
    /// Also advertise `WWW-Authenticate: NTLM` (besides `Negotiate`).
    pub offer_ntlm_scheme: bool,
    /// SPNs a client's `MsvAvTargetName` must name when it sends one (e.g.
    /// `HTTP/web.example.test`); empty: not checked.
    pub target_names: Vec<String>,
}

impl NtlmSettings {
    pub fn new(domain: impl Into<String>) -> Self {
        NtlmSettings {
            domain: domain.into(),
            computer_name: "IWA".into(),
            dns_domain: None,
            max_clock_skew: Duration::from_secs(300),
            require_mic: false,
            handshake_timeout: Duration::from_secs(30),
            offer_ntlm_scheme: true,
            target_names: Vec::new(),
        }
    }

    /// Whether a client's `MsvAvTargetName` is acceptable: absent or empty (older
    /// clients, curl), or one of `target_names` (case-insensitive, realm ignored).
    pub fn target_ok(&self, target: Option<&str>) -> bool {
        let Some(t) = target.filter(|t| !t.is_empty()) else {
            return true;
        };
        if self.target_names.is_empty() {
            return true;
        }
        let strip = |s: &str| {
            s.rsplit_once('@')
                .map_or(s, |(n, _)| n)
                .to_ascii_lowercase()
        };
        let t = strip(t);
        self.target_names.iter().any(|n| strip(n) == t)
    }

    pub(crate) fn server_config(&self) -> ServerConfig {
        let mut c = ServerConfig::new(self.domain.clone(), self.computer_name.clone());
        c.dns_domain_name = self.dns_domain.clone();
        c.max_clock_skew = self.max_clock_skew;
        c.require_mic = self.require_mic;
        c
    }
}

/// The user a validator vouched for.
#[derive(Debug, Clone)]
pub struct NtlmUser {
    /// The account name as the directory spells it.
    pub user: String,
    /// The NetBIOS domain as the directory spells it.
    pub domain: String,
    pub sid: Option<String>,
    pub group_sids: Vec<String>,
    /// The exported session key (for the SPNEGO mechListMIC).
    pub session_key: [u8; 16],
    /// The flags negotiated in the handshake.
    pub flags: NegotiateFlags,
    /// The client's `MsvAvTargetName` (the SPN it meant to reach), if it sent one.
    pub target_name: Option<String>,
    /// The client's `MsvAvChannelBindings` (MD5 of its GSS channel bindings), if it
    /// sent them; checked by the authenticator on TLS connections.
    pub channel_bindings: Option<[u8; 16]>,
}

/// Why a validator refused, or could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NtlmFailure {
    #[error("{0}")]
    Refused(#[from] NtlmError),
    #[error("unknown user {domain}\\{user}")]
    UnknownUser { user: String, domain: String },
    /// The validator's backend (e.g. winbind) could not be reached: 503, not 401.
    #[error("NTLM validator unavailable: {0}")]
    Unavailable(String),
    /// The domain controller refused the logon with an NT status (wrong password,
    /// disabled or locked-out account, expired password, …).
    #[error("the domain refused the logon of {domain}\\{user}: {name} (0x{status:08x})")]
    Directory {
        user: String,
        domain: String,
        status: u32,
        name: String,
    },
    /// The directory mapped the logon to the guest account; refused.
    #[error("guest logon refused for {domain}\\{user}")]
    Guest { user: String, domain: String },
}

/// Checks an AUTHENTICATE against the handshake state. May block (a directory
/// round trip); the authenticator calls it on a blocking thread unless
/// [`NtlmValidator::is_fast`] says otherwise.
pub trait NtlmValidator: Send + Sync + fmt::Debug {
    fn verify(
        &self,
        state: ChallengeSent,
        authenticate: &[u8],
        now: FileTime,
    ) -> Result<NtlmUser, NtlmFailure>;

    /// True when `verify` is pure computation (no I/O), cheap enough to run inline.
    fn is_fast(&self) -> bool {
        false
    }

    /// Re-read any backing files now (SIGHUP).
    fn reload(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The current time as a FILETIME.
pub fn filetime_now() -> FileTime {
    FileTime::from_unix(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    )
}

/// A fresh 8-byte server challenge from the OS CSPRNG.
pub fn server_challenge() -> Result<[u8; 8], String> {
    let mut c = [0u8; 8];
    getrandom::fill(&mut c).map_err(|e| format!("no randomness for the NTLM challenge: {e}"))?;
    Ok(c)
}

/// Starts a handshake: the CHALLENGE for a client's NEGOTIATE.
pub fn start(
    config: &Arc<ServerConfig>,
    negotiate: &[u8],
) -> Result<(ChallengeSent, Vec<u8>), NtlmFailure> {
    let challenge = server_challenge().map_err(NtlmFailure::Unavailable)?;
    Ok(
        ServerHandshake::new(config.clone(), challenge, filetime_now())
            .process_negotiate(negotiate)?,
    )
}

// ---------------------------------------------------------------------------------
// The local validator: a users file of NT hashes.

/// One account of the users file.
#[derive(Clone)]
struct LocalAccount {
    user: String,
    domain: String,
    nt_hash: [u8; 16],
}

impl fmt::Debug for LocalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the hash: it is password-equivalent for NTLM.
        write!(f, "{}\\{}", self.domain, self.user)
    }
}

#[derive(Default)]
struct LocalUsers {
    /// (DOMAIN upper-case, user lower-case) → account.
    accounts: HashMap<(String, String), LocalAccount>,
    modified: Option<SystemTime>,
    checked: Option<Instant>,
}

/// A problem in the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for UsersFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a users file: `DOMAIN\user:<32 hex digits of the NT hash>` per line, `#`
/// comments and blank lines allowed. Every bad line is reported.
fn parse_users(text: &str) -> Result<HashMap<(String, String), LocalAccount>, Vec<UsersFileError>> {
    let mut accounts = HashMap::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| UsersFileError {
            line: i + 1,
            message: m.to_owned(),
        };
        let Some((name, hash)) = line.rsplit_once(':') else {
            errors.push(err("expected DOMAIN\\user:<NT hash in hex>"));
            continue;
        };
        let Some((domain, user)) = name.split_once('\\') else {
            errors.push(err("the account must be written DOMAIN\\user"));
            continue;
        };
        if domain.is_empty() || user.is_empty() {
            errors.push(err("empty domain or user name"));
            continue;
        }
        let hash = hash.trim();
        let Some(nt_hash) = decode_hex16(hash) else {
            errors.push(err(
                "the NT hash must be 32 hex digits (make one with `iwa hash`); plaintext passwords are not accepted",
            ));
            continue;
        };
        let key = (domain.to_uppercase(), user.to_lowercase());
        if accounts.contains_key(&key) {
            errors.push(err(&format!("{domain}\\{user} is listed twice")));
            continue;
        }
        accounts.insert(
            key,
            LocalAccount {
                user: user.to_owned(),
                domain: domain.to_owned(),
                nt_hash,
            },
        );
    }
    if errors.is_empty() {
        Ok(accounts)
    } else {
        Err(errors)
    }
}

fn decode_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The users-file line for an account: `DOMAIN\user:<NT hash hex>`.
pub fn users_file_line(account: &str, password: &str) -> String {
    let h = iwa_proto::ntlm::crypto::nt_hash(password);
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("{account}:{hex}")
}

/// Validates NTLMv2 against NT hashes from a file (never plaintext). The file is
/// re-read when it changes (checked at most once a second) and on [`reload`].
///
/// [`reload`]: NtlmValidator::reload
pub struct LocalValidator {
    path: PathBuf,
    default_domain: String,
    users: Mutex<LocalUsers>,
}

impl fmt::Debug for LocalValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalValidator")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalValidator {
    /// Loads `path`; every bad line is reported.
    pub fn load(path: &Path, default_domain: &str) -> Result<Self, String> {
        let v = LocalValidator {
            path: path.to_owned(),
            default_domain: default_domain.to_owned(),
            users: Mutex::new(LocalUsers::default()),
        };
        v.read_now()?;
        Ok(v)
    }

    fn read_now(&self) -> Result<(), String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("cannot read users file {}: {e}", self.path.display()))?;
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read users file {}: {e}", self.path.display()))?;
        let accounts = parse_users(&text).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            format!("users file {}: {}", self.path.display(), lines.join("; "))
        })?;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.accounts = accounts;
        users.modified = meta.modified().ok();
        users.checked = Some(Instant::now());
        Ok(())
    }

    /// Re-reads the file if its modification time changed. A file that became
    /// invalid keeps the previous accounts (and logs why).
    fn refresh(&self) {
        let due = {
            let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            users
                .checked
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        };
        if !due {
            return;
        }
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let changed = {
            let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            users.checked = Some(Instant::now());
            modified != users.modified
        };
        if changed {
            match self.read_now() {
                Ok(()) => tracing::info!(path = %self.path.display(), "NTLM users file reloaded"),
                Err(e) => tracing::warn!("{e}; keeping the previous accounts"),
            }
        }
    }

    fn lookup(&self, user: &str, domain: &str) -> Option<LocalAccount> {
        let domain = if domain.is_empty() {
            self.default_domain.as_str()
        } else {
            domain
        };
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .accounts
            .get(&(domain.to_uppercase(), user.to_lowercase()))
            .cloned()
    }
}

impl NtlmValidator for LocalValidator {
    fn verify(
        &self,
        state: ChallengeSent,
        authenticate: &[u8],
        now: FileTime,
    ) -> Result<NtlmUser, NtlmFailure> {
        self.refresh();
        let flags = state.flags();
        let mut found: Option<LocalAccount> = None;
        let mut asked = (String::new(), String::new());
        let result = state.process_authenticate(authenticate, now, |user, domain| {
            asked = (user.to_owned(), domain.to_owned());
            found = self.lookup(user, domain);
            found.as_ref().map(|a| a.nt_hash)
        });
        match result {
            Ok(done) => {
                let account = found.ok_or(NtlmFailure::Refused(NtlmError::UnknownUser))?;
                Ok(NtlmUser {
                    user: account.user,
                    domain: account.domain,
                    sid: None,
                    group_sids: Vec::new(),
                    session_key: *done.session_key.as_bytes(),
                    flags: flags.intersect_with(done.flags),
                    target_name: done.target_name.clone(),
                    channel_bindings: done.channel_bindings,
                })
            }
            Err(NtlmError::UnknownUser) => Err(NtlmFailure::UnknownUser {
                user: asked.0,
                domain: asked.1,
            }),
            Err(e) => Err(NtlmFailure::Refused(e)),
        }
    }

    fn is_fast(&self) -> bool {
        true
    }

    fn reload(&self) -> Result<(), String> {
        self.read_now()
    }
}

trait IntersectFlags {
    fn intersect_with(self, other: NegotiateFlags) -> NegotiateFlags;
}

impl IntersectFlags for NegotiateFlags {
    /// The AUTHENTICATE's flags are what the client finally agreed to; the server's
    /// CHALLENGE flags bound them.
    fn intersect_with(self, other: NegotiateFlags) -> NegotiateFlags {
        NegotiateFlags(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iwa_proto::ntlm::client::ClientAuth;

    const LINE_ALICE: &str = "EXAMPLE\\alice:";

    fn users_file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("users");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("iwa-ntlm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn handshake(
        v: &LocalValidator,
        user: &str,
        domain: &str,
        password: &str,
    ) -> Result<NtlmUser, NtlmFailure> {
        let config = Arc::new(NtlmSettings::new("EXAMPLE").server_config());
        let negotiate = iwa_proto::ntlm::client::negotiate(NegotiateFlags(0xe208_8297)).unwrap();
        let (state, challenge) = start(&config, &negotiate)?;
        let client = ClientAuth::new(user, domain, password);
        let auth = client.authenticate(&negotiate, &challenge).unwrap();
        v.verify(state, &auth, filetime_now())
    }

    #[test]
    fn target_names_are_checked_only_when_configured_and_sent() {
        let mut s = NtlmSettings::new("EXAMPLE");
        assert!(
            s.target_ok(Some("HTTP/evil.example")),
            "unchecked by default"
        );
        s.target_names = vec!["HTTP/web.example.test@EXAMPLE.TEST".into()];
        assert!(s.target_ok(None));
        assert!(s.target_ok(Some("")));
        assert!(s.target_ok(Some("http/WEB.example.test")));
        assert!(!s.target_ok(Some("HTTP/evil.example")));
    }

    #[test]
    fn users_file_line_is_nt_hash() {
        // MS-NLMP §4.2.2.1.2: NTOWFv1("Password").
        assert_eq!(
            users_file_line("EXAMPLE\\alice", "Password"),
            "EXAMPLE\\alice:a4f49c406510bdcab6824ee7c30fd852"
        );
    }

    #[test]
    fn bad_lines_are_reported_with_numbers() {
        let errs = parse_users(
            "# comment\n\nEXAMPLE\\alice:a4f49c406510bdcab6824ee7c30fd852\nbob:a4f49c406510bdcab6824ee7c30fd852\nEXAMPLE\\carol:Password1\nEXAMPLE\\ALICE:a4f49c406510bdcab6824ee7c30fd852\nnonsense\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7], "{errs:?}");
        assert!(errs[1]
            .message
            .contains("plaintext passwords are not accepted"));
    }

    #[test]
    fn right_password_passes_wrong_and_unknown_fail() {
        let dir = tmpdir("verify");
        let p = users_file(
            &dir,
            &format!("{}\n", users_file_line("EXAMPLE\\Alice", "s3cret")),
        );
        let v = LocalValidator::load(&p, "EXAMPLE").unwrap();
        let ok = handshake(&v, "alice", "example", "s3cret").unwrap();
        assert_eq!((ok.user.as_str(), ok.domain.as_str()), ("Alice", "EXAMPLE"));
        // No domain sent (curl -u alice:...): the configured domain is assumed.
        assert!(handshake(&v, "ALICE", "", "s3cret").is_ok());
        assert!(matches!(
            handshake(&v, "alice", "EXAMPLE", "wrong"),
            Err(NtlmFailure::Refused(NtlmError::NtProofMismatch))
        ));
        assert!(matches!(
            handshake(&v, "mallory", "EXAMPLE", "s3cret"),
            Err(NtlmFailure::UnknownUser { .. })
        ));
        let _ = LINE_ALICE;
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn file_changes_are_picked_up() {
        let dir = tmpdir("reload");
        let p = users_file(
            &dir,
            &format!("{}\n", users_file_line("EXAMPLE\\alice", "one")),
        );
        let v = LocalValidator::load(&p, "EXAMPLE").unwrap();
        assert!(handshake(&v, "alice", "EXAMPLE", "one").is_ok());
        std::fs::write(
            &p,
            format!("{}\n", users_file_line("EXAMPLE\\alice", "two")),
        )
        .unwrap();
        v.reload().unwrap();
        assert!(handshake(&v, "alice", "EXAMPLE", "one").is_err());
        assert!(handshake(&v, "alice", "EXAMPLE", "two").is_ok());
        // A broken file is refused on reload and the old accounts stay.
        std::fs::write(&p, "garbage\n").unwrap();
        assert!(v.reload().is_err());
        assert!(handshake(&v, "alice", "EXAMPLE", "two").is_ok());
        std::fs::remove_dir_all(dir).ok();
    }
}
