//! The configuration file: read as a TOML table, checked key by key so that every
//! problem (unknown keys, wrong types, bad values) is reported in one pass with its key
//! path and a hint, then resolved into the runtime [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// The resolved runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    pub backend: Backend,
    pub kerberos: Option<Kerberos>,
    pub ntlm: Option<Ntlm>,
    /// Path-prefix rules, longest prefix first.
    pub routes: Vec<Route>,
    pub session: Option<Session>,
    /// `[fake]`: a fixed development identity instead of Kerberos/NTLM.
    pub fake: Option<Fake>,
    /// `[assertion]`: sign the identity for the backend (`X-Iwa-Assertion`).
    pub assertion: Option<Assertion>,
    /// `[impersonation]`: who may act as whom.
    pub impersonation: iwa::impersonation::ImpersonationPolicy,
    /// `[impersonation]`: the cookie, when anyone may impersonate.
    pub impersonation_cookie: Option<ImpersonationCookie>,
    /// `[ldap]`: group names and tokenGroups from Active Directory.
    pub ldap: Option<Ldap>,
    /// `[directory] file`: the static directory where there is no LDAP.
    pub directory_file: Option<PathBuf>,
    /// `[tls]`: terminate TLS on the listener.
    pub tls: Option<TlsConfig>,
    pub log: Log,
    /// `[metrics] listen`: where Prometheus scrapes `GET /metrics` (plain HTTP, no login).
    pub metrics_listen: Option<SocketAddr>,
}

/// `[tls]`: the listener speaks HTTPS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (mode 0600).
    pub key: PathBuf,
    /// Channel binding of logins to the TLS connection.
    pub extended_protection: iwa::conn::ExtendedProtection,
}

/// `[ldap]`.
#[derive(Debug, Clone)]
pub struct Ldap {
    pub url: String,
    pub base_dn: String,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    /// NetBIOS domain for names; else the identity's (PAC) domain.
    pub domain: Option<String>,
    pub starttls: bool,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    /// PEM CAs trusted for the directory's certificate (else the system's roots).
    pub ca_file: Option<PathBuf>,
    pub dangerous_skip_tls_verify: bool,
    pub dangerous_allow_plaintext_bind: bool,
    /// First pause after the directory failed (doubles per failure up to `max_backoff`).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// `bind = "gssapi"`: SASL GSSAPI as `principal` with the key from `keytab`, to
    /// `ldap/<sasl_host>@REALM` (else a simple bind, or anonymous).
    pub gssapi: Option<iwa::directory::GssapiBind>,
}

impl Ldap {
    /// How the library's LDAP backend connects.
    pub fn backend_settings(&self) -> iwa::directory::LdapSettings {
        iwa::directory::LdapSettings {
            url: self.url.clone(),
            base_dn: self.base_dn.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password_file: self.bind_password_file.clone(),
            starttls: self.starttls,
            timeout: self.timeout,
            ca_file: self.ca_file.clone(),
            dangerous_skip_tls_verify: self.dangerous_skip_tls_verify,
            dangerous_allow_plaintext_bind: self.dangerous_allow_plaintext_bind,
            gssapi: self.gssapi.clone(),
        }
    }

    /// The cache and timing settings of the directory in front of it.
    pub fn directory_settings(&self) -> iwa::directory::DirectorySettings {
        iwa::directory::DirectorySettings {
            domain: self.domain.clone(),
            timeout: self.timeout,
            cache_ttl: self.cache_ttl,
            negative_cache_ttl: self.negative_cache_ttl,
            backoff: self.backoff,
            max_backoff: self.max_backoff,
            ..Default::default()
        }
    }
}

/// `[backend]`: where requests go.
#[derive(Debug, Clone)]
pub struct Backend {
    pub target: BackendTarget,
    pub connect_timeout: Duration,
}

/// `backend.url` or `backend.command` (exactly one of them).
#[derive(Debug, Clone)]
pub enum BackendTarget {
    /// `http://host:port` (a path prefix is allowed and prepended).
    Url(http::Uri),
    /// An app iwa starts, watches and stops itself (like IIS HttpPlatformHandler).
    Hosted(HostedApp),
}

impl Backend {
    /// For log lines and `iwa check`: the URL, or the hosted command line.
    pub fn describe(&self) -> String {
        match &self.target {
            BackendTarget::Url(u) => u.to_string(),
            BackendTarget::Hosted(h) => format!("hosted: {}", h.command.join(" ")),
        }
    }
}

/// `[backend] command = [...]`: the app as a child process of iwa, on a loopback port
/// iwa picks. `crate::hosting` runs it.
#[derive(Clone)]
pub struct HostedApp {
    /// Program and arguments; never empty.
    pub command: Vec<String>,
    /// Replaced by the port in every argument (not the program).
    pub port_placeholder: Option<String>,
    /// Working directory; default the configuration file's directory.
    pub cwd: PathBuf,
    /// Extra environment (on top of iwa's own). Values may be secrets: never logged.
    pub env: BTreeMap<String, String>,
    /// How long the app may take to accept connections on its port.
    pub startup_timeout: Duration,
    /// SIGTERM → SIGKILL grace period when stopping the app.
    pub stop_timeout: Duration,
    /// Where the app's stdout/stderr lines go; else iwa's log (`app[pid]: …`).
    pub stdout_log: Option<PathBuf>,
    /// First delay before a restart; doubles per recent failure up to `restart_backoff_max`.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// This many exits (or startup timeouts) within a minute and iwa stops restarting.
    pub max_failures_per_minute: u32,
}

impl fmt::Debug for HostedApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedApp")
            .field("command", &self.command)
            .field("port_placeholder", &self.port_placeholder)
            .field("cwd", &self.cwd)
            // Values may be secrets; the names are enough.
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("startup_timeout", &self.startup_timeout)
            .field("stop_timeout", &self.stop_timeout)
            .field("stdout_log", &self.stdout_log)
            .field("restart_backoff", &self.restart_backoff)
            .field("restart_backoff_max", &self.restart_backoff_max)
            .field("max_failures_per_minute", &self.max_failures_per_minute)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Kerberos {
    pub keytab: PathBuf,
    pub service_principal: Option<String>,
    pub realm_domains: BTreeMap<String, String>,
    pub replay_cache: Option<String>,
    /// Remember a Kerberos login for the rest of its TCP connection.
    pub connection_bound: bool,
    /// Read user and group SIDs and the NetBIOS domain from the ticket's PAC.
    pub use_pac: bool,
}

/// `[impersonation]` ticket settings (keys default to `[session]`'s).
#[derive(Debug, Clone)]
pub struct ImpersonationCookie {
    pub key_file: PathBuf,
    pub previous_key_files: Vec<PathBuf>,
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub require_reason: bool,
}

/// `[session]`: session cookies after a login.
#[derive(Debug, Clone)]
pub struct Session {
    pub key_file: PathBuf,
    pub previous_key_files: Vec<PathBuf>,
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

/// `[assertion]`: a JWS over the identity (HS256 or EdDSA), for the backend to verify.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// The signing key; its `Debug` shows only the algorithm and key id.
    pub key: iwa::assertion::SigningKey,
    pub audience: String,
    pub lifetime: Duration,
}

/// `[tls]`: certificate, key (refused when group/other can read it), and Extended
/// Protection. The pair is loaded here so that `iwa check` reports a bad one.
fn parse_tls(w: &mut Walker, table: &Table, base: &Path) -> Option<TlsConfig> {
    use iwa::conn::ExtendedProtection;
    use std::os::unix::fs::PermissionsExt;
    let empty = Table::new();
    let t = w.table(table, "tls").unwrap_or(&empty);
    if !table.contains_key("tls") {
        return None;
    }
    w.unknown_keys(t, "tls", TLS_KEYS);
    let extended_protection = match w.string(t, "tls", "extended_protection").as_deref() {
        None | Some("allow") => ExtendedProtection::Allow,
        Some("require") => ExtendedProtection::Require,
        Some("off") => ExtendedProtection::Off,
        Some(other) => {
            w.err(
                "tls.extended_protection",
                format!("`{other}` is not a mode"),
                Some("one of \"off\", \"allow\" (default), \"require\"".into()),
            );
            ExtendedProtection::Allow
        }
    };
    let cert = w.string(t, "tls", "cert").map(|f| base.join(f));
    let key = w.string(t, "tls", "key").map(|f| base.join(f));
    if cert.is_none() {
        w.err(
            "tls.cert",
            "missing",
            Some("cert = \"/etc/iwa/tls.pem\" (PEM chain, leaf first)".into()),
        );
    }
    if key.is_none() {
        w.err(
            "tls.key",
            "missing",
            Some("key = \"/etc/iwa/tls.key\" (PEM private key, mode 0600)".into()),
        );
    }
    let (cert, key) = (cert?, key?);
    match std::fs::metadata(&key) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            w.err(
                "tls.key",
                format!("{} is readable by group or others", key.display()),
                Some(format!("run `chmod 600 {}`", key.display())),
            );
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            w.err(
                "tls.key",
                format!("cannot read {}: {e}", key.display()),
                None,
            );
            return None;
        }
    }
    if let Err(e) = crate::tls::load(&cert, &key, extended_protection) {
        w.err("tls.cert", e, None);
        return None;
    }
    Some(TlsConfig {
        cert,
        key,
        extended_protection,
    })
}

/// Reads a secret file: refused when group/other can read it; the secret is the file's
/// bytes with one trailing newline removed, at least 32 bytes.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() < 32 {
        return Err(format!(
            "{} holds {} bytes; the secret must be at least 32 (e.g. `iwa keygen --out FILE`)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// `[assertion]`: the key file names the algorithm (`private_key_file` → EdDSA,
/// `secret_file` → HS256); `algorithm`, when given, must agree with it.
fn parse_assertion(w: &mut Walker, t: &Table, base: &Path) -> Option<Assertion> {
    use iwa::assertion::{Algorithm, SigningKey};
    const ONE_KEY: &str = "private_key_file (EdDSA: `iwa keygen --ed25519 --out /etc/iwa/assertion.key`, backends get assertion.pub) or secret_file (HS256: `iwa keygen --out /etc/iwa/assertion.secret`, backends share it)";
    let lifetime = w.duration(t, "assertion", "lifetime", Duration::from_secs(60));
    let audience = w.string(t, "assertion", "audience");
    if audience.as_deref().is_none_or(str::is_empty) {
        w.err(
            "assertion.audience",
            "missing",
            Some(
                "a name for the backend, e.g. audience = \"intranet-app\"; the backend checks it"
                    .into(),
            ),
        );
    }
    let algorithm = w
        .string(t, "assertion", "algorithm")
        .and_then(|a| match Algorithm::from_jose(&a) {
            Some(alg) => Some(alg),
            None => {
                w.err(
                    "assertion.algorithm",
                    format!("`{a}` is not an assertion algorithm"),
                    Some("\"EdDSA\" (Ed25519: backends hold only the public key) or \"HS256\" (a shared secret)".into()),
                );
                None
            }
        });
    let secret_file = w.string(t, "assertion", "secret_file");
    let private_key_file = w.string(t, "assertion", "private_key_file");
    let key = match (secret_file, private_key_file, algorithm) {
        (Some(_), Some(_), _) => {
            w.err(
                "assertion.private_key_file",
                "set together with secret_file",
                Some(format!("give one key: {ONE_KEY}")),
            );
            None
        }
        (None, None, alg) => {
            let key = if alg == Some(Algorithm::Hs256) {
                "assertion.secret_file"
            } else {
                "assertion.private_key_file"
            };
            w.err(key, "missing", Some(format!("give one key: {ONE_KEY}")));
            None
        }
        (Some(_), None, Some(Algorithm::EdDsa)) => {
            w.err(
                "assertion.algorithm",
                "EdDSA signs with private_key_file, but secret_file is set",
                Some(format!("give one key: {ONE_KEY}")),
            );
            None
        }
        (None, Some(_), Some(Algorithm::Hs256)) => {
            w.err(
                "assertion.algorithm",
                "HS256 signs with secret_file, but private_key_file is set",
                Some(format!("give one key: {ONE_KEY}")),
            );
            None
        }
        (Some(f), None, _) => match read_secret_file(&base.join(f))
            .and_then(|secret| SigningKey::hs256(secret).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(k),
            Err(e) => {
                w.err("assertion.secret_file", e, None);
                None
            }
        },
        (None, Some(f), _) => match iwa::assertion::read_ed25519_private_key_file(&base.join(f)) {
            Ok(k) => Some(k),
            Err(e) => {
                w.err("assertion.private_key_file", e.to_string(), None);
                None
            }
        },
    };
    Some(Assertion {
        key: key?,
        audience: audience.filter(|a| !a.is_empty())?,
        lifetime,
    })
}

#[cfg(test)]
mod assertion_tests {
    use super::*;
    use iwa::assertion::Algorithm;
    use std::os::unix::fs::PermissionsExt;

    const HEAD: &str = "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[fake]\nuser = \"EX\\\\alice\"\n[assertion]\naudience = \"app\"\n";

    fn dir() -> iwa_testrealm::TempDir {
        let d = iwa_testrealm::TempDir::new("iwa-config-assertion").unwrap();
        iwa::assertion::generate_ed25519_key_files(&d.path().join("a.key")).unwrap();
        std::fs::write(d.path().join("a.secret"), [b'x'; 40]).unwrap();
        std::fs::set_permissions(
            d.path().join("a.secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        d
    }

    fn errors(text: &str, d: &iwa_testrealm::TempDir) -> Vec<String> {
        match Config::parse(&format!("{HEAD}{text}"), d.path()) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.key).collect(),
        }
    }

    #[test]
    fn metrics_listen_is_an_address_of_its_own() {
        let d = dir();
        let key = "private_key_file = \"a.key\"\n";
        let parse = |t: &str| Config::parse(&format!("{HEAD}{key}{t}"), d.path());
        let ok = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(ok.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse("").unwrap().metrics_listen, None);
        for bad in [
            "listen = \"127.0.0.1:8080\"\n",
            "listen = \"localhost:9464\"\n",
            "",
            "listen = \"127.0.0.1:9464\"\npath = \"/m\"\n",
        ] {
            let keys = errors(&format!("{key}[metrics]\n{bad}"), &d);
            assert!(
                keys.iter().any(|k| k.starts_with("metrics.")),
                "{bad:?}: {keys:?}"
            );
        }
    }

    #[test]
    fn algorithm_follows_the_key_file() {
        let d = dir();
        let parse = |t: &str| Config::parse(&format!("{HEAD}{t}"), d.path()).unwrap();
        let a = parse("private_key_file = \"a.key\"\n").assertion.unwrap();
        assert_eq!(a.key.algorithm(), Algorithm::EdDsa);
        assert_eq!(a.lifetime, Duration::from_secs(60));
        let a = parse("secret_file = \"a.secret\"\nlifetime = \"30s\"\n")
            .assertion
            .unwrap();
        assert_eq!(a.key.algorithm(), Algorithm::Hs256);
        assert_eq!(a.lifetime, Duration::from_secs(30));
        let a = parse("algorithm = \"EdDSA\"\nprivate_key_file = \"a.key\"\n")
            .assertion
            .unwrap();
        assert_eq!(a.key.algorithm(), Algorithm::EdDsa);
        let a = parse("algorithm = \"HS256\"\nsecret_file = \"a.secret\"\n")
            .assertion
            .unwrap();
        assert_eq!(a.key.algorithm(), Algorithm::Hs256);
    }

    #[test]
    fn conflicting_or_missing_keys_are_reported() {
        let d = dir();
        assert_eq!(
            errors(
                "private_key_file = \"a.key\"\nsecret_file = \"a.secret\"\n",
                &d
            ),
            vec!["assertion.private_key_file"]
        );
        assert_eq!(
            errors("algorithm = \"HS256\"\nprivate_key_file = \"a.key\"\n", &d),
            vec!["assertion.algorithm"]
        );
        assert_eq!(
            errors("algorithm = \"EdDSA\"\nsecret_file = \"a.secret\"\n", &d),
            vec!["assertion.algorithm"]
        );
        assert_eq!(
            errors("algorithm = \"none\"\nprivate_key_file = \"a.key\"\n", &d),
            vec!["assertion.algorithm"]
        );
        assert_eq!(errors("", &d), vec!["assertion.private_key_file"]);
        assert_eq!(
            errors("algorithm = \"HS256\"\n", &d),
            vec!["assertion.secret_file"]
        );
        // The public key where the private key belongs; a readable private key.
        assert_eq!(
            errors("private_key_file = \"a.pub\"\n", &d),
            vec!["assertion.private_key_file"]
        );
        std::fs::set_permissions(
            d.path().join("a.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(
            errors("private_key_file = \"a.key\"\n", &d),
            vec!["assertion.private_key_file"]
        );
    }
}

/// `[fake]`: every authenticating request is this identity (offline development).
#[derive(Debug, Clone)]
pub struct Fake {
    /// `DOMAIN\user` or `user@REALM`.
    pub user: String,
    /// Group names or SIDs (`S-1-…`).
    pub groups: Vec<String>,
    pub sid: Option<String>,
}

impl Fake {
    /// The identity it stands for, with `X-Remote-Auth-Method: Fake`.
    pub fn identity(&self) -> iwa::Identity {
        let (user, domain, realm) = match self.user.split_once('\\') {
            Some((d, u)) => (u.to_owned(), Some(d.to_owned()), d.to_uppercase()),
            None => {
                let (u, r) = iwa::identity::split_principal(&self.user);
                (u.to_owned(), None, r.to_owned())
            }
        };
        iwa::Identity {
            principal: format!("{user}@{realm}"),
            user,
            realm,
            domain,
            sid: self.sid.clone(),
            groups: self
                .groups
                .iter()
                .map(|g| iwa::Group {
                    sid: g.starts_with("S-1-").then(|| g.clone()),
                    name: (!g.starts_with("S-1-")).then(|| g.clone()),
                })
                .collect(),
            method: iwa::AuthMethod::Fake,
            expires: None,
        }
    }
}

/// Whether a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// No credentials → 401 challenge (the default).
    Required,
    /// Authenticate if the client offers credentials, else pass anonymously; a backend
    /// 401 on an anonymous request becomes the challenge.
    Optional,
    /// No authentication at all; identity headers are still stripped.
    Anonymous,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    pub path: String,
    pub auth: RouteAuth,
    pub rule: iwa::access::AccessRule,
}

impl Route {
    /// Whether this route's prefix covers `path` (whole segments: `/admin` covers
    /// `/admin` and `/admin/x`, not `/administrator`).
    pub fn covers(&self, path: &str) -> bool {
        let p = self.path.as_str();
        p == "/"
            || path == p
            || (path.starts_with(p)
                && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
    }
}

/// The route for `path`: the longest matching prefix (routes are sorted so), else the
/// default (authentication required, no rule).
pub fn route_for<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes.iter().find(|r| r.covers(path))
}

/// Which NTLM validator checks the client's proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmValidatorConfig {
    /// NT hashes from a users file.
    Local { users_file: PathBuf },
    /// Active Directory through winbindd (libwbclient, loaded at run time).
    Winbind { timeout: Duration },
}

#[derive(Debug, Clone)]
pub struct Ntlm {
    pub validator: NtlmValidatorConfig,
    pub domain: String,
    pub computer_name: String,
    pub dns_domain: Option<String>,
    pub offer_ntlm_scheme: bool,
    pub max_clock_skew: Duration,
    pub handshake_timeout: Duration,
    pub require_mic: bool,
    pub target_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
    /// One line per request on the `iwa::access` target.
    pub access: bool,
    /// Audit events (`iwa::audit`) also as JSON lines in this file.
    pub audit_file: Option<PathBuf>,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `backend.url`; empty for file-level problems.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "`{}`: {}", self.key, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All problems found in a configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem{}:",
            self.file.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const TOP_KEYS: &[&str] = &[
    "listen",
    "shutdown_timeout",
    "backend",
    "kerberos",
    "ntlm",
    "route",
    "session",
    "fake",
    "ldap",
    "directory",
    "assertion",
    "tls",
    "impersonation",
    "log",
    "metrics",
];
const METRICS_KEYS: &[&str] = &["listen"];
const IMPERSONATION_KEYS: &[&str] = &[
    "allow_impersonation",
    "increase_permissions",
    "never_impersonate",
    "key_file",
    "previous_key_files",
    "cookie_name",
    "idle_timeout",
    "max_lifetime",
    "require_reason",
];
const TLS_KEYS: &[&str] = &["cert", "key", "extended_protection"];
const ASSERTION_KEYS: &[&str] = &[
    "algorithm",
    "private_key_file",
    "secret_file",
    "audience",
    "lifetime",
];
const LDAP_KEYS: &[&str] = &[
    "url",
    "base_dn",
    "bind_dn",
    "bind_password_file",
    "domain",
    "starttls",
    "timeout",
    "cache_ttl",
    "negative_cache_ttl",
    "ca_file",
    "dangerous_skip_tls_verify",
    "dangerous_allow_plaintext_bind",
    "backoff",
    "max_backoff",
    "bind",
    "keytab",
    "principal",
    "sasl_host",
];
const DIRECTORY_KEYS: &[&str] = &["file"];
const FAKE_KEYS: &[&str] = &["user", "groups", "sid", "dangerous_allow_fake_on_network"];
const SESSION_KEYS: &[&str] = &[
    "enabled",
    "key_file",
    "previous_key_files",
    "cookie_name",
    "idle_timeout",
    "max_lifetime",
];
const ROUTE_KEYS: &[&str] = &["path", "auth", "allow_users", "allow_groups", "deny_groups"];
const NTLM_KEYS: &[&str] = &[
    "enabled",
    "validator",
    "users_file",
    "domain",
    "computer_name",
    "dns_domain",
    "offer_ntlm_scheme",
    "max_clock_skew",
    "handshake_timeout",
    "require_mic",
    "winbind_timeout",
    "target_names",
];
const BACKEND_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "command",
    "args_port_placeholder",
    "cwd",
    "env",
    "startup_timeout",
    "stop_timeout",
    "stdout_log",
    "restart_backoff",
    "restart_backoff_max",
    "max_failures_per_minute",
];
/// The keys that only make sense with `backend.command`.
const HOSTED_ONLY_KEYS: &[&str] = &[
    "args_port_placeholder",
    "cwd",
    "env",
    "startup_timeout",
    "stop_timeout",
    "stdout_log",
    "restart_backoff",
    "restart_backoff_max",
    "max_failures_per_minute",
];
/// Environment variables iwa sets for a hosted app itself.
pub const HOSTED_RESERVED_ENV: &[&str] = &["PORT", "HTTP_PLATFORM_PORT", "IWA_PAIRING_TOKEN"];
const KERBEROS_KEYS: &[&str] = &[
    "keytab",
    "service_principal",
    "realm_domains",
    "replay_cache",
    "connection_bound",
    "use_pac",
];
const LOG_KEYS: &[&str] = &["level", "format", "access", "audit_file"];

/// Collects errors while walking the table.
struct Walker {
    errors: Vec<ConfigError>,
}

impl Walker {
    /// A required `IP:port` (`example` shows one); missing or not an address is an error.
    fn address(
        &mut self,
        t: &Table,
        section: &str,
        key: &str,
        example: &str,
    ) -> Option<SocketAddr> {
        let name = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        match self.string(t, section, key) {
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        &name,
                        format!("`{s}` is not an address"),
                        Some(format!("write IP:port, e.g. \"{example}\" or \"[::]:443\"")),
                    );
                    None
                }
            },
            None => {
                if !t.contains_key(key) {
                    self.err(
                        &name,
                        "missing",
                        Some(format!("e.g. {key} = \"{example}\"")),
                    );
                }
                None
            }
        }
    }

    fn err(&mut self, key: &str, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(ConfigError {
            key: key.to_owned(),
            message: message.into(),
            hint,
        });
    }

    fn unknown_keys(&mut self, table: &Table, prefix: &str, known: &[&str]) {
        for k in table.keys() {
            if !known.contains(&k.as_str()) {
                let hint = closest(k, known)
                    .map(|c| format!("did you mean `{}`?", join(prefix, c)))
                    .or_else(|| Some(format!("known keys here: {}", known.join(", "))));
                self.err(&join(prefix, k), "unknown key", hint);
            }
        }
    }

    fn string(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        match table.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    &join(prefix, key),
                    format!("expected a string, found {}", other.type_str()),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table, prefix: &str, key: &str, default: bool) -> bool {
        match table.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.err(
                    &join(prefix, key),
                    format!("expected true or false, found {}", other.type_str()),
                    None,
                );
                default
            }
        }
    }

    fn table<'t>(&mut self, table: &'t Table, key: &str) -> Option<&'t Table> {
        match table.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.err(
                    key,
                    format!("expected a table, found {}", other.type_str()),
                    Some(format!("write it as a section: [{key}]")),
                );
                None
            }
        }
    }

    fn duration(&mut self, table: &Table, prefix: &str, key: &str, default: Duration) -> Duration {
        let Some(s) = self.string(table, prefix, key) else {
            return default;
        };
        match parse_duration(&s) {
            Some(d) => d,
            None => {
                self.err(
                    &join(prefix, key),
                    format!("`{s}` is not a duration"),
                    Some("use a number with a unit: 500ms, 30s, 5m, 1h".into()),
                );
                default
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses `500ms`, `30s`, `5m`, `1h` (also a bare number of seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl Config {
    /// Reads and checks a configuration file; every problem is reported at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |message: String| ConfigErrors {
            file: path.to_owned(),
            errors: vec![ConfigError {
                key: String::new(),
                message,
                hint: None,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the configuration file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|errors| ConfigErrors {
            file: path.to_owned(),
            errors,
        })
    }

    /// Checks configuration text. Relative paths are taken relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let table: Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                return Err(vec![ConfigError {
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.to_string().trim()),
                    hint: None,
                }])
            }
        };
        let mut w = Walker { errors: Vec::new() };
        w.unknown_keys(&table, "", TOP_KEYS);

        let listen = w.address(&table, "", "listen", "127.0.0.1:8080");
        let shutdown_timeout = w.duration(&table, "", "shutdown_timeout", Duration::from_secs(30));

        let metrics_listen = w.table(&table, "metrics").and_then(|m| {
            w.unknown_keys(m, "metrics", METRICS_KEYS);
            let addr = w.address(m, "metrics", "listen", "127.0.0.1:9464")?;
            if Some(addr) == listen {
                w.err(
                    "metrics.listen",
                    "the same address as `listen`",
                    Some("a port of its own, e.g. \"127.0.0.1:9464\"".into()),
                );
                return None;
            }
            Some(addr)
        });

        let empty = Table::new();
        let backend_t = match w.table(&table, "backend") {
            Some(t) => t,
            None => {
                if !table.contains_key("backend") {
                    w.err(
                        "backend",
                        "missing section",
                        Some("[backend]\nurl = \"http://127.0.0.1:5000\"".into()),
                    );
                }
                &empty
            }
        };
        let backend_target = parse_backend(&mut w, backend_t, table.contains_key("backend"), base);
        let connect_timeout = w.duration(
            backend_t,
            "backend",
            "connect_timeout",
            Duration::from_secs(5),
        );

        let has_kerberos = table.contains_key("kerberos");
        let has_ntlm = table.contains_key("ntlm");
        if !has_kerberos && !has_ntlm && !table.contains_key("fake") {
            w.err(
                "kerberos",
                "missing section: configure [kerberos], [ntlm] or both",
                Some("[kerberos]\nkeytab = \"/etc/iwa/http.keytab\"".into()),
            );
        }
        let kerberos_t = w.table(&table, "kerberos").unwrap_or(&empty);
        w.unknown_keys(kerberos_t, "kerberos", KERBEROS_KEYS);
        let keytab = match w.string(kerberos_t, "kerberos", "keytab") {
            Some(s) if s.is_empty() => {
                w.err("kerberos.keytab", "empty path", None);
                None
            }
            Some(s) => {
                let p = base.join(s);
                match std::fs::metadata(&p) {
                    Ok(m) if m.is_file() => Some(p),
                    Ok(_) => {
                        w.err(
                            "kerberos.keytab",
                            format!("{} is not a file", p.display()),
                            None,
                        );
                        None
                    }
                    Err(e) => {
                        w.err("kerberos.keytab", format!("cannot read {}: {e}", p.display()), Some("export the service key with `kadmin ktadd -k FILE HTTP/host` or `samba-tool domain exportkeytab`".into()));
                        None
                    }
                }
            }
            None => {
                if table.contains_key("kerberos") && !kerberos_t.contains_key("keytab") {
                    w.err(
                        "kerberos.keytab",
                        "missing",
                        Some("the path of the HTTP service keytab".into()),
                    );
                }
                None
            }
        };
        let service_principal = w.string(kerberos_t, "kerberos", "service_principal");
        if let Some(sp) = &service_principal {
            if !sp.contains('/') && !sp.contains('@') {
                w.err(
                    "kerberos.service_principal",
                    format!("`{sp}` does not look like a principal"),
                    Some("e.g. \"HTTP/web.example.test@EXAMPLE.TEST\"".into()),
                );
            }
        }
        let replay_cache = w.string(kerberos_t, "kerberos", "replay_cache");
        if let Some(rc) = &replay_cache {
            if rc.eq_ignore_ascii_case("none") || rc.to_ascii_lowercase().starts_with("none:") {
                w.err("kerberos.replay_cache", "disabling the replay cache is not allowed", Some("a replayed Kerberos token would be accepted; leave it unset for MIT's default".into()));
            }
        }
        let mut realm_domains = BTreeMap::new();
        match kerberos_t.get("realm_domains") {
            None => {}
            Some(Value::Table(t)) => {
                for (realm, v) in t {
                    match v {
                        Value::String(d) if !d.is_empty() && !d.contains('\\') => {
                            realm_domains.insert(realm.clone(), d.clone());
                        }
                        Value::String(d) => w.err(
                            &format!("kerberos.realm_domains.{realm}"),
                            format!("`{d}` is not a NetBIOS domain name"),
                            Some("e.g. \"EXAMPLE\"".into()),
                        ),
                        other => w.err(
                            &format!("kerberos.realm_domains.{realm}"),
                            format!("expected a string, found {}", other.type_str()),
                            None,
                        ),
                    }
                }
            }
            Some(other) => w.err(
                "kerberos.realm_domains",
                format!("expected a table, found {}", other.type_str()),
                Some("realm_domains = { \"EXAMPLE.TEST\" = \"EXAMPLE\" }".into()),
            ),
        }

        let connection_bound = w.boolean(kerberos_t, "kerberos", "connection_bound", false);
        let use_pac = w.boolean(kerberos_t, "kerberos", "use_pac", true);

        let log_t = w.table(&table, "log").unwrap_or(&empty);
        w.unknown_keys(log_t, "log", LOG_KEYS);
        let level = w
            .string(log_t, "log", "level")
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            w.err("log.level", format!("`{level}` is not a log filter"), Some("one of error, warn, info, debug, trace (or a tracing filter such as \"info,iwa=debug\")".into()));
        }
        let format = match w.string(log_t, "log", "format").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                w.err(
                    "log.format",
                    format!("`{other}` is not a log format"),
                    Some("\"text\" or \"json\"".into()),
                );
                LogFormat::Text
            }
        };

        let access = w.boolean(log_t, "log", "access", false);
        let audit_file = w.string(log_t, "log", "audit_file").map(|f| base.join(f));

        let ntlm_t = w.table(&table, "ntlm").unwrap_or(&empty);
        w.unknown_keys(ntlm_t, "ntlm", NTLM_KEYS);
        let ntlm_enabled = has_ntlm && w.boolean(ntlm_t, "ntlm", "enabled", true);
        let validator_name = w
            .string(ntlm_t, "ntlm", "validator")
            .unwrap_or_else(|| "local".into());
        let users_file = w.string(ntlm_t, "ntlm", "users_file").map(|f| base.join(f));
        let ntlm_validator = match validator_name.as_str() {
            "local" => match &users_file {
                Some(f) => {
                    if ntlm_enabled {
                        if let Err(e) = iwa::ntlm::LocalValidator::load(f, "") {
                            w.err("ntlm.users_file", e, Some("lines are DOMAIN\\user:<NT hash>; make them with `iwa hash --user 'DOMAIN\\user'`".into()));
                        }
                    }
                    Some(NtlmValidatorConfig::Local {
                        users_file: f.clone(),
                    })
                }
                None => {
                    if ntlm_enabled {
                        w.err(
                            "ntlm.users_file",
                            "missing (the local validator needs it)",
                            Some("users_file = \"/etc/iwa/ntlm-users\"".into()),
                        );
                    }
                    None
                }
            },
            "winbind" => {
                if users_file.is_some() {
                    w.err(
                        "ntlm.users_file",
                        "only the local validator reads a users file",
                        Some("remove it, or use validator = \"local\"".into()),
                    );
                }
                let timeout =
                    w.duration(ntlm_t, "ntlm", "winbind_timeout", Duration::from_secs(10));
                if timeout.is_zero() {
                    w.err(
                        "ntlm.winbind_timeout",
                        "must be more than zero",
                        Some("winbind_timeout = \"10s\"".into()),
                    );
                }
                Some(NtlmValidatorConfig::Winbind { timeout })
            }
            other => {
                w.err(
                    "ntlm.validator",
                    format!("unknown validator `{other}`"),
                    Some("\"local\" (a users file of NT hashes) or \"winbind\" (Active Directory through winbindd)".into()),
                );
                None
            }
        };
        if validator_name != "winbind" && ntlm_t.contains_key("winbind_timeout") {
            w.err(
                "ntlm.winbind_timeout",
                "only the winbind validator has a timeout",
                Some("remove it, or use validator = \"winbind\"".into()),
            );
        }
        let ntlm_domain = w.string(ntlm_t, "ntlm", "domain");
        if ntlm_enabled && ntlm_domain.as_deref().is_none_or(str::is_empty) {
            w.err(
                "ntlm.domain",
                "missing",
                Some("the NetBIOS domain name, e.g. domain = \"EXAMPLE\"".into()),
            );
        }
        let computer_name = w
            .string(ntlm_t, "ntlm", "computer_name")
            .unwrap_or_else(|| "IWA".into());
        let dns_domain = w.string(ntlm_t, "ntlm", "dns_domain");
        let offer_ntlm_scheme = w.boolean(ntlm_t, "ntlm", "offer_ntlm_scheme", true);
        let max_clock_skew = w.duration(ntlm_t, "ntlm", "max_clock_skew", Duration::from_secs(300));
        let handshake_timeout =
            w.duration(ntlm_t, "ntlm", "handshake_timeout", Duration::from_secs(30));
        let require_mic = w.boolean(ntlm_t, "ntlm", "require_mic", false);
        let target_names = string_list(&mut w, ntlm_t, "ntlm", "target_names");
        let ntlm = match (ntlm_enabled, ntlm_validator, ntlm_domain) {
            (true, Some(validator), Some(domain)) => Some(Ntlm {
                validator,
                domain,
                computer_name,
                dns_domain,
                offer_ntlm_scheme,
                max_clock_skew,
                handshake_timeout,
                require_mic,
                target_names,
            }),
            _ => None,
        };

        let routes = parse_routes(&mut w, &table);

        let session_t = w.table(&table, "session").unwrap_or(&empty);
        w.unknown_keys(session_t, "session", SESSION_KEYS);
        let session_on =
            table.contains_key("session") && w.boolean(session_t, "session", "enabled", true);
        let key_file = w
            .string(session_t, "session", "key_file")
            .map(|f| base.join(f));
        let previous_key_files: Vec<PathBuf> =
            string_list(&mut w, session_t, "session", "previous_key_files")
                .into_iter()
                .map(|f| base.join(f))
                .collect();
        let cookie_name = w
            .string(session_t, "session", "cookie_name")
            .unwrap_or_else(|| "iwa_session".into());
        if !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || cookie_name.is_empty()
        {
            w.err(
                "session.cookie_name",
                format!("`{cookie_name}` is not a cookie name"),
                Some("letters, digits, _ and -".into()),
            );
        }
        let idle_timeout = w.duration(
            session_t,
            "session",
            "idle_timeout",
            Duration::from_secs(30 * 60),
        );
        let max_lifetime = w.duration(
            session_t,
            "session",
            "max_lifetime",
            Duration::from_secs(8 * 3600),
        );
        let session = match (session_on, key_file) {
            (true, Some(key_file)) => {
                if let Err(e) = iwa::ticket::KeyRing::load(&key_file, &previous_key_files) {
                    w.err("session.key_file", e.to_string(), Some("make a key with `iwa keygen --out FILE` (64 hex characters, mode 0600)".into()));
                }
                Some(Session {
                    key_file,
                    previous_key_files,
                    cookie_name,
                    idle_timeout,
                    max_lifetime,
                })
            }
            (true, None) => {
                w.err("session.key_file", "missing", Some("key_file = \"/etc/iwa/session.key\" (make it with `iwa keygen --out FILE`)".into()));
                None
            }
            (false, _) => None,
        };

        if !w.errors.is_empty() {
            return Err(w.errors);
        }
        let fake = parse_fake(&mut w, &table, listen);
        let imp_t = w.table(&table, "impersonation").unwrap_or(&empty);
        w.unknown_keys(imp_t, "impersonation", IMPERSONATION_KEYS);
        let impersonation = iwa::impersonation::ImpersonationPolicy {
            allow_impersonation: string_list(&mut w, imp_t, "impersonation", "allow_impersonation"),
            increase_permissions: string_list(
                &mut w,
                imp_t,
                "impersonation",
                "increase_permissions",
            ),
            never_impersonate: string_list(&mut w, imp_t, "impersonation", "never_impersonate"),
        };
        let impersonation_cookie =
            parse_impersonation_cookie(&mut w, imp_t, base, &impersonation, session.as_ref());
        let assertion_t = w.table(&table, "assertion").unwrap_or(&empty);
        w.unknown_keys(assertion_t, "assertion", ASSERTION_KEYS);
        let assertion = if table.contains_key("assertion") {
            parse_assertion(&mut w, assertion_t, base)
        } else {
            None
        };
        let (ldap, directory_file) = parse_directory(&mut w, &table, base, keytab.as_deref());
        if impersonation_cookie.is_some() && ldap.is_none() && directory_file.is_none() {
            w.err(
                "impersonation.allow_impersonation",
                "impersonation targets are looked up in a directory, and none is configured",
                Some("configure [ldap] (Active Directory) or [directory] file = \"...\"".into()),
            );
        }
        let tls = parse_tls(&mut w, &table, base);
        if !w.errors.is_empty() {
            return Err(w.errors);
        }

        let kerberos = keytab.map(|keytab| Kerberos {
            keytab,
            service_principal,
            realm_domains,
            replay_cache,
            connection_bound,
            use_pac,
        });
        if kerberos.is_none() && ntlm.is_none() && fake.is_none() {
            return Err(vec![ConfigError {
                key: "ntlm.enabled".into(),
                message: "no authentication method is enabled".into(),
                hint: Some("configure [kerberos] or enable [ntlm]".into()),
            }]);
        }
        match (listen, backend_target) {
            (Some(listen), Some(target)) => Ok(Config {
                listen,
                shutdown_timeout,
                backend: Backend {
                    target,
                    connect_timeout,
                },
                kerberos,
                ntlm,
                routes,
                session,
                fake,
                assertion,
                impersonation,
                impersonation_cookie,
                ldap,
                directory_file,
                tls,
                log: Log {
                    level,
                    format,
                    access,
                    audit_file,
                },
                metrics_listen,
            }),
            // Each missing piece pushed an error above.
            _ => Err(vec![ConfigError {
                key: String::new(),
                message: "incomplete configuration".into(),
                hint: None,
            }]),
        }
    }
}

/// The ticket part of `[impersonation]`: `None` when nobody may impersonate.
fn parse_impersonation_cookie(
    w: &mut Walker,
    t: &Table,
    base: &Path,
    policy: &iwa::impersonation::ImpersonationPolicy,
    session: Option<&Session>,
) -> Option<ImpersonationCookie> {
    const P: &str = "impersonation";
    let key_file = w.string(t, P, "key_file").map(|f| base.join(f));
    let previous: Vec<PathBuf> = string_list(w, t, P, "previous_key_files")
        .into_iter()
        .map(|f| base.join(f))
        .collect();
    let cookie_name = w
        .string(t, P, "cookie_name")
        .unwrap_or_else(|| "iwa_impersonation".into());
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        w.err(
            "impersonation.cookie_name",
            format!("`{cookie_name}` is not a cookie name"),
            Some("letters, digits, _ and -".into()),
        );
    }
    if session.is_some_and(|s| s.cookie_name == cookie_name) {
        w.err(
            "impersonation.cookie_name",
            format!("`{cookie_name}` is also the session cookie's name"),
            None,
        );
    }
    let idle_timeout = w.duration(t, P, "idle_timeout", Duration::from_secs(30 * 60));
    let max_lifetime = w.duration(t, P, "max_lifetime", Duration::from_secs(8 * 3600));
    let require_reason = w.boolean(t, P, "require_reason", true);
    if policy.allow_impersonation.is_empty() {
        return None;
    }
    let (key_file, previous_key_files) = match (key_file, session) {
        (Some(k), _) => (k, previous),
        (None, Some(s)) => (s.key_file.clone(), s.previous_key_files.clone()),
        (None, None) => {
            w.err(
                "impersonation.key_file",
                "missing: impersonation cookies are sealed with a key, and there is no [session] key to share",
                Some("key_file = \"/etc/iwa/ticket.key\" (make it with `iwa keygen --out FILE`)".into()),
            );
            return None;
        }
    };
    if let Err(e) = iwa::ticket::KeyRing::load(&key_file, &previous_key_files) {
        w.err(
            "impersonation.key_file",
            e.to_string(),
            Some("make a key with `iwa keygen --out FILE` (64 hex characters, mode 0600)".into()),
        );
    }
    Some(ImpersonationCookie {
        key_file,
        previous_key_files,
        cookie_name,
        idle_timeout,
        max_lifetime,
        require_reason,
    })
}

/// `[ldap]` and `[directory]` (one or the other). `kerberos_keytab` is the default
/// keytab of a SASL GSSAPI bind.
fn parse_directory(
    w: &mut Walker,
    table: &Table,
    base: &Path,
    kerberos_keytab: Option<&Path>,
) -> (Option<Ldap>, Option<PathBuf>) {
    let empty = Table::new();
    let has_ldap = table.contains_key("ldap");
    let has_file = table.contains_key("directory");
    let dir_t = w.table(table, "directory").unwrap_or(&empty);
    w.unknown_keys(dir_t, "directory", DIRECTORY_KEYS);
    let file = match w.string(dir_t, "directory", "file") {
        Some(f) if f.is_empty() => {
            w.err("directory.file", "empty path", None);
            None
        }
        Some(f) => {
            let p = base.join(f);
            if let Err(e) = iwa::directory::StaticBackend::load(&p) {
                w.err("directory.file", e.to_string(), Some("a TOML file: [users] \"DOMAIN\\\\user\" = \"S-1-…\" and [groups.\"DOMAIN\\\\Group\"] sid = \"S-1-…\", members = [...]".into()));
            }
            Some(p)
        }
        None => {
            if has_file {
                w.err(
                    "directory.file",
                    "missing",
                    Some("file = \"/etc/iwa/directory.toml\"".into()),
                );
            }
            None
        }
    };
    if has_ldap && has_file {
        w.err(
            "directory",
            "[directory] is the fallback where there is no LDAP; [ldap] is configured too",
            Some("keep one of [ldap] and [directory]".into()),
        );
    }
    if !has_ldap {
        return (None, file);
    }
    let t = w.table(table, "ldap").unwrap_or(&empty);
    w.unknown_keys(t, "ldap", LDAP_KEYS);
    let url = w.string(t, "ldap", "url");
    match &url {
        None => w.err(
            "ldap.url",
            "missing",
            Some("url = \"ldaps://dc.example.test\"".into()),
        ),
        Some(u) => {
            let l = u.to_ascii_lowercase();
            if !(l.starts_with("ldap://") || l.starts_with("ldaps://"))
                || u.len() <= "ldap://".len()
            {
                w.err(
                    "ldap.url",
                    format!("`{u}` is not an LDAP URL"),
                    Some("ldap://host[:port] or ldaps://host[:port]".into()),
                );
            }
        }
    }
    let base_dn = w.string(t, "ldap", "base_dn");
    if base_dn.as_deref().is_none_or(str::is_empty) {
        w.err(
            "ldap.base_dn",
            "missing",
            Some("the domain's naming context, e.g. base_dn = \"DC=example,DC=test\"".into()),
        );
    }
    let bind_dn = w.string(t, "ldap", "bind_dn");
    let bind_password_file = w
        .string(t, "ldap", "bind_password_file")
        .map(|f| base.join(f));
    match (&bind_dn, &bind_password_file) {
        (Some(_), Some(f)) => {
            if let Err(e) = iwa::directory::read_secret_file(f) {
                w.err("ldap.bind_password_file", e.to_string(), Some("the password alone in a file of mode 0600".into()));
            }
        }
        (Some(_), None) => w.err("ldap.bind_password_file", "missing (bind_dn needs it)", Some("bind_password_file = \"/etc/iwa/ldap.password\" (mode 0600; never the password itself in this file)".into())),
        (None, Some(_)) => w.err("ldap.bind_dn", "missing (bind_password_file needs it)", Some("bind_dn = \"CN=iwa,CN=Users,DC=example,DC=test\" or \"EXAMPLE\\\\iwa\"".into())),
        (None, None) => {}
    }
    if t.contains_key("bind_password") || t.contains_key("password") {
        // unknown_keys reported it; say why there is no such key.
        w.err(
            "ldap.bind_password_file",
            "passwords are read from a file, never written in the configuration",
            None,
        );
    }
    let domain = w.string(t, "ldap", "domain");
    if let Some(d) = &domain {
        if d.is_empty() || d.contains('\\') {
            w.err(
                "ldap.domain",
                format!("`{d}` is not a NetBIOS domain name"),
                Some("e.g. \"EXAMPLE\"".into()),
            );
        }
    }
    let starttls = w.boolean(t, "ldap", "starttls", false);
    if starttls
        && url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("ldaps://"))
    {
        w.err(
            "ldap.starttls",
            "StartTLS is for ldap:// URLs; ldaps:// is TLS already",
            None,
        );
    }
    let timeout = w.duration(t, "ldap", "timeout", Duration::from_secs(3));
    if timeout.is_zero() {
        w.err(
            "ldap.timeout",
            "must be more than zero",
            Some("timeout = \"3s\"".into()),
        );
    }
    let cache_ttl = w.duration(t, "ldap", "cache_ttl", Duration::from_secs(600));
    let negative_cache_ttl = w.duration(t, "ldap", "negative_cache_ttl", Duration::from_secs(60));
    let uses_tls = starttls
        || url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("ldaps://"));
    let ca_file = w.string(t, "ldap", "ca_file").map(|f| base.join(f));
    let dangerous_skip_tls_verify = w.boolean(t, "ldap", "dangerous_skip_tls_verify", false);
    let dangerous_allow_plaintext_bind =
        w.boolean(t, "ldap", "dangerous_allow_plaintext_bind", false);
    if let Some(f) = &ca_file {
        if let Err(e) = iwa::directory::tls_config_from_ca_file(f) {
            w.err(
                "ldap.ca_file",
                e.to_string(),
                Some("the PEM certificate(s) of the CA that signs the DC's certificate".into()),
            );
        }
        if dangerous_skip_tls_verify {
            w.err(
                "ldap.dangerous_skip_tls_verify",
                "contradicts ca_file (which CA would be checked?)",
                Some("keep ca_file and remove dangerous_skip_tls_verify".into()),
            );
        }
    }
    if (ca_file.is_some() || dangerous_skip_tls_verify) && !uses_tls {
        w.err(
            if ca_file.is_some() {
                "ldap.ca_file"
            } else {
                "ldap.dangerous_skip_tls_verify"
            },
            "TLS settings on a connection without TLS",
            Some("url = \"ldaps://…\" or starttls = true".into()),
        );
    }
    if bind_dn.is_some()
        && !dangerous_allow_plaintext_bind
        && url
            .as_deref()
            .is_some_and(|u| iwa::directory::is_plaintext_network_bind(u, starttls))
    {
        w.err(
            "ldap.url",
            "a simple bind over plain ldap:// to a host that is not this machine sends the password in clear",
            Some("url = \"ldaps://dc.example.test\" or starttls = true (or, knowingly, dangerous_allow_plaintext_bind = true)".into()),
        );
    }
    let backoff = w.duration(t, "ldap", "backoff", Duration::from_secs(5));
    let max_backoff = w.duration(t, "ldap", "max_backoff", Duration::from_secs(60));
    if backoff.is_zero() {
        w.err(
            "ldap.backoff",
            "must be more than zero (a failing directory would be asked on every request)",
            Some("backoff = \"5s\"".into()),
        );
    }
    if max_backoff < backoff {
        w.err(
            "ldap.max_backoff",
            "shorter than backoff",
            Some("max_backoff = \"60s\"".into()),
        );
    }
    let gssapi = parse_ldap_bind(w, t, base, url.as_deref(), kerberos_keytab);
    let ldap = match (url, base_dn) {
        (Some(url), Some(base_dn)) => Some(Ldap {
            url,
            base_dn,
            bind_dn,
            bind_password_file,
            domain,
            starttls,
            timeout,
            cache_ttl,
            negative_cache_ttl,
            ca_file,
            dangerous_skip_tls_verify,
            dangerous_allow_plaintext_bind,
            backoff,
            max_backoff,
            gssapi,
        }),
        _ => None,
    };
    (ldap, file)
}

/// `[ldap] bind` (`"simple"`, the default: `bind_dn` or anonymous; or `"gssapi"`) and
/// the keys of a SASL GSSAPI bind: `principal`, `keytab` (default: `[kerberos]
/// keytab`), `sasl_host` (default: the URL's host, which must then be a name).
fn parse_ldap_bind(
    w: &mut Walker,
    t: &Table,
    base: &Path,
    url: Option<&str>,
    kerberos_keytab: Option<&Path>,
) -> Option<iwa::directory::GssapiBind> {
    let mode = w.string(t, "ldap", "bind");
    let gssapi = match mode.as_deref() {
        None | Some("simple") => false,
        Some("gssapi") => true,
        Some(other) => {
            w.err(
                "ldap.bind",
                format!("unknown bind `{other}`"),
                Some("bind = \"simple\" (bind_dn and bind_password_file, or anonymous) or bind = \"gssapi\" (Kerberos with a keytab)".into()),
            );
            return None;
        }
    };
    let keytab = w.string(t, "ldap", "keytab");
    let principal = w.string(t, "ldap", "principal");
    let sasl_host = w.string(t, "ldap", "sasl_host");
    if !gssapi {
        for (key, present) in [
            ("keytab", keytab.is_some()),
            ("principal", principal.is_some()),
            ("sasl_host", sasl_host.is_some()),
        ] {
            if present {
                w.err(
                    &format!("ldap.{key}"),
                    "only for a SASL GSSAPI bind",
                    Some("bind = \"gssapi\"".into()),
                );
            }
        }
        return None;
    }
    for key in ["bind_dn", "bind_password_file"] {
        if t.contains_key(key) {
            w.err(
                &format!("ldap.{key}"),
                "not with bind = \"gssapi\": the service account's key comes from the keytab",
                Some(format!("remove {key}")),
            );
        }
    }
    let principal = match principal {
        Some(p) => match p.rsplit_once('@') {
            Some((name, realm))
                if !name.is_empty() && !realm.is_empty() && !p.contains(char::is_control) =>
            {
                Some(p)
            }
            _ => {
                w.err(
                    "ldap.principal",
                    format!("`{p}` is not a Kerberos principal with its realm"),
                    Some("principal = \"iwa-svc@EXAMPLE.TEST\"".into()),
                );
                None
            }
        },
        None => {
            w.err(
                "ldap.principal",
                "missing (bind = \"gssapi\" binds as this Kerberos principal)",
                Some("the service account whose key is in the keytab: principal = \"iwa-svc@EXAMPLE.TEST\"".into()),
            );
            None
        }
    };
    let keytab = match keytab.map(|k| base.join(k)) {
        Some(k) => Some(k),
        None => match kerberos_keytab {
            Some(k) => Some(k.to_path_buf()),
            None => {
                w.err(
                    "ldap.keytab",
                    "missing (and there is no [kerberos] keytab to use)",
                    Some("keytab = \"/etc/iwa/ldap.keytab\" (the principal's keys: `samba-tool domain exportkeytab FILE --principal=NAME@REALM`, or `ktutil`)".into()),
                );
                None
            }
        },
    };
    if let Some(k) = &keytab {
        match std::fs::read(k) {
            Ok(data) => {
                if let Err(e) = iwa::keytab::parse(&data) {
                    w.err("ldap.keytab", format!("{}: {e}", k.display()), None);
                }
            }
            Err(e) => w.err(
                "ldap.keytab",
                format!("cannot read {}: {e}", k.display()),
                None,
            ),
        }
    }
    let url_host = url.and_then(iwa::directory::ldap_url_host);
    let host = match sasl_host {
        Some(h) => {
            if h.is_empty() || h.contains(['/', '@', ' ']) || h.parse::<std::net::IpAddr>().is_ok()
            {
                w.err(
                    "ldap.sasl_host",
                    format!("`{h}` is not a host name"),
                    Some("the directory server's DNS name, as in its SPN ldap/<host>: sasl_host = \"dc1.example.test\"".into()),
                );
                None
            } else {
                Some(h)
            }
        }
        None => match url_host {
            Some(h) if h.parse::<std::net::IpAddr>().is_ok() => {
                w.err(
                    "ldap.sasl_host",
                    format!("missing: the URL names the address {h}, and the directory's Kerberos service principal names a host (ldap/<host>)"),
                    Some("sasl_host = \"dc1.example.test\"".into()),
                );
                None
            }
            Some(h) => Some(h.to_owned()),
            None => None, // the URL's own error is reported
        },
    };
    match (keytab, principal, host) {
        (Some(keytab), Some(principal), Some(host)) => Some(iwa::directory::GssapiBind {
            keytab,
            principal,
            host,
        }),
        _ => None,
    }
}

fn parse_fake(w: &mut Walker, table: &Table, listen: Option<SocketAddr>) -> Option<Fake> {
    let t = match table.get("fake")? {
        Value::Table(t) => t,
        other => {
            w.err(
                "fake",
                format!("expected a table, found {}", other.type_str()),
                None,
            );
            return None;
        }
    };
    w.unknown_keys(t, "fake", FAKE_KEYS);
    let user = match w.string(t, "fake", "user") {
        Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
        _ => {
            w.err(
                "fake.user",
                "missing",
                Some("user = \"EXAMPLE\\\\alice\"".into()),
            );
            return None;
        }
    };
    let groups = string_list(w, t, "fake", "groups");
    let sid = w.string(t, "fake", "sid");
    let on_network = w.boolean(t, "fake", "dangerous_allow_fake_on_network", false);
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && !on_network {
            w.err(
                "fake",
                format!("fake identities are only served on a loopback listener, not {addr}"),
                Some("listen on 127.0.0.1, or set dangerous_allow_fake_on_network = true if you really mean it".into()),
            );
        }
    }
    Some(Fake { user, groups, sid })
}

fn string_list(w: &mut Walker, t: &Table, prefix: &str, key: &str) -> Vec<String> {
    match t.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                    other => w.err(
                        &format!("{prefix}.{key}[{i}]"),
                        format!("expected a non-empty string, found {}", other.type_str()),
                        None,
                    ),
                }
            }
            out
        }
        Some(other) => {
            w.err(
                &join(prefix, key),
                format!("expected a list of strings, found {}", other.type_str()),
                Some(format!("{key} = [\"EXAMPLE\\\\name\"]")),
            );
            Vec::new()
        }
    }
}

fn parse_routes(w: &mut Walker, table: &Table) -> Vec<Route> {
    let items = match table.get("route") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            w.err(
                "route",
                format!("expected [[route]] tables, found {}", other.type_str()),
                Some("[[route]]\npath = \"/public\"\nauth = \"anonymous\"".into()),
            );
            return Vec::new();
        }
    };
    let mut routes: Vec<Route> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("route[{i}]");
        let Value::Table(t) = item else {
            w.err(&prefix, "expected a table", None);
            continue;
        };
        w.unknown_keys(t, &prefix, ROUTE_KEYS);
        let path = match w.string(t, &prefix, "path") {
            Some(p) if p.starts_with('/') => p,
            Some(p) => {
                w.err(
                    &format!("{prefix}.path"),
                    format!("`{p}` must start with /"),
                    None,
                );
                continue;
            }
            None => {
                if !t.contains_key("path") {
                    w.err(
                        &format!("{prefix}.path"),
                        "missing",
                        Some("path = \"/admin\"".into()),
                    );
                }
                continue;
            }
        };
        let auth = match w.string(t, &prefix, "auth").as_deref() {
            None | Some("required") => RouteAuth::Required,
            Some("optional") => RouteAuth::Optional,
            Some("anonymous") => RouteAuth::Anonymous,
            Some(other) => {
                w.err(
                    &format!("{prefix}.auth"),
                    format!("`{other}` is not an auth mode"),
                    Some("\"required\", \"optional\" or \"anonymous\"".into()),
                );
                RouteAuth::Required
            }
        };
        let rule = iwa::access::AccessRule {
            allow_users: string_list(w, t, &prefix, "allow_users"),
            allow_groups: string_list(w, t, &prefix, "allow_groups"),
            deny_groups: string_list(w, t, &prefix, "deny_groups"),
        };
        if auth == RouteAuth::Anonymous && !rule.is_open() {
            w.err(
                &prefix,
                "an anonymous route cannot have allow/deny rules",
                Some("use auth = \"required\" to restrict it".into()),
            );
        }
        if routes.iter().any(|r| r.path == path) {
            w.err(
                &format!("{prefix}.path"),
                format!("`{path}` is listed twice"),
                None,
            );
            continue;
        }
        routes.push(Route { path, auth, rule });
    }
    // Longest prefix first, so the first match is the most specific.
    routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
    routes
}

/// `[backend]`: `url`, or `command` and the hosting keys (`crate::hosting`). `present`
/// says whether the section exists (its absence was reported by the caller).
fn parse_backend(w: &mut Walker, t: &Table, present: bool, base: &Path) -> Option<BackendTarget> {
    w.unknown_keys(t, "backend", BACKEND_KEYS);
    match (t.contains_key("url"), t.contains_key("command")) {
        (true, true) => {
            w.err(
                "backend",
                "`backend.url` and `backend.command` are mutually exclusive",
                Some("keep `url` for an app that runs on its own, or `command` for an app iwa starts".into()),
            );
            return None;
        }
        (false, false) => {
            if present {
                w.err(
                    "backend.url",
                    "missing",
                    Some("the URL of the app to forward to, e.g. url = \"http://127.0.0.1:5000\", or command = [\"python3\", \"app.py\"] for iwa to start it".into()),
                );
            }
            return None;
        }
        (true, false) => {
            for k in HOSTED_ONLY_KEYS {
                if t.contains_key(*k) {
                    w.err(
                        &format!("backend.{k}"),
                        "only for an app iwa starts (`backend.command`)",
                        Some("remove it, or replace `url` with `command`".into()),
                    );
                }
            }
            let s = w.string(t, "backend", "url")?;
            return match check_backend_url(&s) {
                Ok(u) => Some(BackendTarget::Url(u)),
                Err(msg) => {
                    w.err(
                        "backend.url",
                        msg,
                        Some("e.g. \"http://127.0.0.1:5000\"".into()),
                    );
                    None
                }
            };
        }
        (false, true) => {}
    }
    let command = match t.get("command") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::String(s) if !s.is_empty() && !s.contains('\0') => out.push(s.clone()),
                    Value::String(_) => w.err(
                        &format!("backend.command[{i}]"),
                        "empty (or holds a NUL byte)",
                        None,
                    ),
                    other => w.err(
                        &format!("backend.command[{i}]"),
                        format!("expected a string, found {}", other.type_str()),
                        Some("quote every argument, e.g. \"8000\"".into()),
                    ),
                }
            }
            Some(out)
        }
        other => {
            w.err(
                "backend.command",
                match other {
                    Some(Value::Array(_)) => "empty list".to_owned(),
                    Some(v) => format!("expected a list of strings, found {}", v.type_str()),
                    None => "missing".to_owned(),
                },
                Some(
                    "the program and its arguments, e.g. command = [\"python3\", \"app.py\"]"
                        .into(),
                ),
            );
            None
        }
    };
    let port_placeholder = match w.string(t, "backend", "args_port_placeholder") {
        Some(p) if p.is_empty() => {
            w.err(
                "backend.args_port_placeholder",
                "empty",
                Some("e.g. \"{port}\"".into()),
            );
            None
        }
        Some(p) => {
            let used = command
                .as_deref()
                .is_some_and(|c| c.iter().skip(1).any(|a| a.contains(p.as_str())));
            if command.is_some() && !used {
                w.err(
                    "backend.args_port_placeholder",
                    format!("`{p}` appears in no argument of backend.command"),
                    Some(format!(
                        "e.g. command = [\"gunicorn\", \"-b\", \"127.0.0.1:{p}\", \"app:app\"]"
                    )),
                );
            }
            Some(p)
        }
        None => None,
    };
    let cwd = match w.string(t, "backend", "cwd") {
        Some(c) => base.join(c),
        None => base.to_owned(),
    };
    if t.contains_key("cwd") && !cwd.is_dir() {
        w.err(
            "backend.cwd",
            format!("{} is not a directory", cwd.display()),
            None,
        );
    }
    let mut env = BTreeMap::new();
    match t.get("env") {
        None => {}
        Some(Value::Table(vars)) => {
            for (k, v) in vars {
                let key = format!("backend.env.{k}");
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    w.err(&key, "not an environment variable name", None);
                } else if HOSTED_RESERVED_ENV.contains(&k.as_str()) {
                    w.err(
                        &key,
                        "iwa sets this variable itself",
                        Some(format!(
                            "iwa sets {} for the app",
                            HOSTED_RESERVED_ENV.join(", ")
                        )),
                    );
                } else {
                    match v {
                        Value::String(s) if !s.contains('\0') => {
                            env.insert(k.clone(), s.clone());
                        }
                        Value::String(_) => w.err(&key, "holds a NUL byte", None),
                        other => w.err(
                            &key,
                            format!("expected a string, found {}", other.type_str()),
                            Some("quote the value".into()),
                        ),
                    }
                }
            }
        }
        Some(other) => w.err(
            "backend.env",
            format!("expected a table, found {}", other.type_str()),
            Some("env = { FLASK_ENV = \"production\" }".into()),
        ),
    }
    let positive = |w: &mut Walker, key: &str, default: Duration| {
        let d = w.duration(t, "backend", key, default);
        if d.is_zero() {
            w.err(&format!("backend.{key}"), "must be more than zero", None);
        }
        d
    };
    let startup_timeout = positive(w, "startup_timeout", Duration::from_secs(30));
    let stop_timeout = positive(w, "stop_timeout", Duration::from_secs(10));
    let restart_backoff = positive(w, "restart_backoff", Duration::from_secs(1));
    let restart_backoff_max = positive(w, "restart_backoff_max", Duration::from_secs(30));
    if restart_backoff > restart_backoff_max {
        w.err(
            "backend.restart_backoff_max",
            "is less than backend.restart_backoff",
            None,
        );
    }
    let max_failures_per_minute = match t.get("max_failures_per_minute") {
        None => 5,
        Some(Value::Integer(n)) if (1..=1000).contains(n) => u32::try_from(*n).unwrap_or(5),
        Some(other) => {
            w.err(
                "backend.max_failures_per_minute",
                format!("expected a number from 1 to 1000, found {other}"),
                Some("max_failures_per_minute = 5".into()),
            );
            5
        }
    };
    let stdout_log = w.string(t, "backend", "stdout_log").map(|f| base.join(f));
    if let Some(f) = &stdout_log {
        match f.parent() {
            Some(dir) if dir.is_dir() => {}
            _ => w.err(
                "backend.stdout_log",
                format!("the directory of {} does not exist", f.display()),
                None,
            ),
        }
    }
    Some(BackendTarget::Hosted(HostedApp {
        command: command?,
        port_placeholder,
        cwd,
        env,
        startup_timeout,
        stop_timeout,
        stdout_log,
        restart_backoff,
        restart_backoff_max,
        max_failures_per_minute,
    }))
}

fn check_backend_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https backends are not supported yet; use http on loopback or a private network"
                    .into(),
            )
        }
        _ => return Err(format!("`{s}` needs the http:// scheme")),
    }
    if uri.authority().is_none() {
        return Err(format!("`{s}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{s}` must not have a query string"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_keytab() -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let kt = d.path().join("http.keytab");
        std::fs::write(&kt, [5u8, 2]).unwrap();
        (d, kt)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "iwa-config-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn minimal_config() {
        let (d, kt) = dir_with_keytab();
        let c = Config::parse(
            "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[kerberos]\nkeytab = \"http.keytab\"\nrealm_domains = { \"EX.TEST\" = \"EX\" }\n",
            d.path(),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        let k = c.kerberos.unwrap();
        assert_eq!(k.keytab, kt);
        assert_eq!(k.realm_domains["EX.TEST"], "EX");
        assert!(c.ntlm.is_none());
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn ldap_and_directory_sections() {
        use std::os::unix::fs::PermissionsExt;
        let (d, _) = dir_with_keytab();
        let pw = d.path().join("ldap.pw");
        std::fs::write(&pw, "secret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let head = "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[kerberos]\nkeytab = \"http.keytab\"\n";
        let c = Config::parse(
            &format!("{head}[ldap]\nurl = \"ldap://127.0.0.2\"\nbase_dn = \"DC=example,DC=test\"\nbind_dn = \"EXAMPLE\\\\iwa\"\nbind_password_file = \"ldap.pw\"\ndomain = \"EXAMPLE\"\ncache_ttl = \"5m\"\n"),
            d.path(),
        )
        .unwrap();
        let l = c.ldap.unwrap();
        assert_eq!(l.bind_dn.as_deref(), Some("EXAMPLE\\iwa"));
        assert_eq!(l.bind_password_file, Some(pw.clone()));
        assert_eq!(l.timeout, Duration::from_secs(3));
        assert_eq!(l.cache_ttl, Duration::from_secs(300));
        assert_eq!(l.negative_cache_ttl, Duration::from_secs(60));
        assert!(!l.starttls);

        let errs = Config::parse(
            &format!("{head}[ldap]\nurl = \"http://dc\"\nbind_dn = \"x\"\nbind_password = \"inline\"\nstarttls = \"yes\"\n[directory]\nfile = \"missing.toml\"\nextra = 1\n"),
            d.path(),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "ldap.url",
            "ldap.base_dn",
            "ldap.bind_password",
            "ldap.bind_password_file",
            "ldap.starttls",
            "directory.file",
            "directory.extra",
            "directory",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }

        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let errs = Config::parse(
            &format!("{head}[ldap]\nurl = \"ldaps://dc\"\nbase_dn = \"DC=x\"\nbind_dn = \"x\"\nbind_password_file = \"ldap.pw\"\n"),
            d.path(),
        )
        .unwrap_err();
        assert_eq!(errs[0].key, "ldap.bind_password_file", "{errs:?}");
    }

    #[test]
    fn ldap_tls_and_plaintext_bind() {
        use std::os::unix::fs::PermissionsExt;
        let (d, _) = dir_with_keytab();
        let pw = d.path().join("ldap.pw");
        std::fs::write(&pw, "secret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ca = d.path().join("ca.pem");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=test CA",
            ])
            .args(["-days", "1", "-keyout"])
            .arg(d.path().join("ca.key"))
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("openssl runs");
        assert!(out.status.success());
        let head = "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[kerberos]\nkeytab = \"http.keytab\"\n[ldap]\nbase_dn = \"DC=x\"\nbind_dn = \"x\"\nbind_password_file = \"ldap.pw\"\n";
        let parse = |extra: &str| Config::parse(&format!("{head}{extra}"), d.path());

        let l = parse("url = \"ldaps://dc.example.test\"\nca_file = \"ca.pem\"\nbackoff = \"1s\"\nmax_backoff = \"2s\"\n")
            .unwrap()
            .ldap
            .unwrap();
        assert_eq!(l.ca_file, Some(ca.clone()));
        assert!(!l.dangerous_skip_tls_verify);
        let ds = l.directory_settings();
        assert_eq!(ds.backoff, Duration::from_secs(1));
        assert_eq!(ds.max_backoff, Duration::from_secs(2));
        assert_eq!(l.backend_settings().ca_file, Some(ca.clone()));
        // Loopback and StartTLS are fine in plain ldap://.
        parse("url = \"ldap://127.0.0.2:389\"\n").unwrap();
        parse("url = \"ldap://localhost\"\n").unwrap();
        parse("url = \"ldap://dc.example.test\"\nstarttls = true\n").unwrap();
        let l = parse("url = \"ldap://dc.example.test\"\ndangerous_allow_plaintext_bind = true\n")
            .unwrap()
            .ldap
            .unwrap();
        assert!(l.dangerous_allow_plaintext_bind);

        let key_of = |extra: &str| -> Vec<String> {
            parse(extra)
                .unwrap_err()
                .iter()
                .map(|e| e.key.clone())
                .collect()
        };
        assert_eq!(key_of("url = \"ldap://dc.example.test\"\n"), ["ldap.url"]);
        assert_eq!(key_of("url = \"ldap://10.0.0.5\"\n"), ["ldap.url"]);
        assert_eq!(
            key_of(
                "url = \"ldaps://dc\"\nca_file = \"ca.pem\"\ndangerous_skip_tls_verify = true\n"
            ),
            ["ldap.dangerous_skip_tls_verify"]
        );
        assert_eq!(
            key_of("url = \"ldap://127.0.0.2\"\nca_file = \"ca.pem\"\n"),
            ["ldap.ca_file"]
        );
        assert_eq!(
            key_of("url = \"ldaps://dc\"\nca_file = \"ldap.pw\"\n"),
            ["ldap.ca_file"]
        );
        assert_eq!(
            key_of("url = \"ldaps://dc\"\nbackoff = \"0s\"\n"),
            ["ldap.backoff"]
        );
        assert_eq!(
            key_of("url = \"ldaps://dc\"\nbackoff = \"10s\"\nmax_backoff = \"5s\"\n"),
            ["ldap.max_backoff"]
        );
    }

    #[test]
    fn ldap_gssapi_bind() {
        let (d, kt) = dir_with_keytab();
        std::fs::write(d.path().join("ldap.keytab"), [5u8, 2]).unwrap();
        std::fs::write(d.path().join("not.keytab"), b"hello").unwrap();
        let head = "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[kerberos]\nkeytab = \"http.keytab\"\n[ldap]\nbase_dn = \"DC=x\"\n";
        let parse = |extra: &str| Config::parse(&format!("{head}{extra}"), d.path());
        let gssapi = |extra: &str| {
            parse(extra)
                .unwrap()
                .ldap
                .unwrap()
                .backend_settings()
                .gssapi
                .unwrap()
        };

        // Defaults: the [kerberos] keytab, the URL's host; plain ldap:// to a remote
        // host is fine (no password, and the SASL layer seals the traffic).
        let g = gssapi(
            "url = \"ldap://dc1.example.test\"\nbind = \"gssapi\"\nprincipal = \"iwa-svc@EXAMPLE.TEST\"\n",
        );
        assert_eq!(g.keytab, kt);
        assert_eq!(g.principal, "iwa-svc@EXAMPLE.TEST");
        assert_eq!(g.host, "dc1.example.test");
        assert_eq!(g.service_principal(), "ldap/dc1.example.test@EXAMPLE.TEST");
        // An IP URL needs sasl_host; the keytab can be another one.
        let g = gssapi(
            "url = \"ldaps://127.0.0.2:636\"\nbind = \"gssapi\"\nprincipal = \"iwa-svc@EXAMPLE.TEST\"\nsasl_host = \"dc1.example.test\"\nkeytab = \"ldap.keytab\"\n",
        );
        assert_eq!(g.keytab, d.path().join("ldap.keytab"));
        assert_eq!(g.host, "dc1.example.test");
        // The default is a simple bind (here anonymous).
        let l = parse("url = \"ldap://127.0.0.2\"\nbind = \"simple\"\n")
            .unwrap()
            .ldap
            .unwrap();
        assert!(l.gssapi.is_none());

        let key_of = |extra: &str| -> Vec<String> {
            parse(extra)
                .unwrap_err()
                .iter()
                .map(|e| e.key.clone())
                .collect()
        };
        let url = "url = \"ldap://dc1.example.test\"\n";
        assert_eq!(
            key_of(&format!("{url}bind = \"kerberos\"\n")),
            ["ldap.bind"]
        );
        assert_eq!(
            key_of(&format!("{url}bind = \"gssapi\"\n")),
            ["ldap.principal"]
        );
        assert_eq!(
            key_of(&format!(
                "{url}bind = \"gssapi\"\nprincipal = \"iwa-svc\"\n"
            )),
            ["ldap.principal"]
        );
        assert_eq!(
            key_of("url = \"ldap://127.0.0.2\"\nbind = \"gssapi\"\nprincipal = \"a@B\"\n"),
            ["ldap.sasl_host"]
        );
        assert_eq!(
            key_of(&format!(
                "{url}bind = \"gssapi\"\nprincipal = \"a@B\"\nsasl_host = \"10.0.0.1\"\n"
            )),
            ["ldap.sasl_host"]
        );
        assert_eq!(
            key_of(&format!(
                "{url}bind = \"gssapi\"\nprincipal = \"a@B\"\nkeytab = \"not.keytab\"\n"
            )),
            ["ldap.keytab"]
        );
        assert_eq!(
            key_of(&format!(
                "{url}bind = \"gssapi\"\nprincipal = \"a@B\"\nkeytab = \"missing.keytab\"\n"
            )),
            ["ldap.keytab"]
        );
        let mut both = key_of(&format!(
            "{url}bind = \"gssapi\"\nprincipal = \"a@B\"\nbind_dn = \"x\"\nbind_password_file = \"pw\"\n"
        ));
        both.sort();
        both.dedup();
        assert!(both.contains(&"ldap.bind_dn".to_owned()), "{both:?}");
        // GSSAPI keys with a simple bind.
        assert_eq!(
            key_of(&format!("{url}principal = \"a@B\"\n")),
            ["ldap.principal"]
        );
        assert_eq!(
            key_of("url = \"ldap://127.0.0.2\"\nsasl_host = \"dc1\"\nkeytab = \"ldap.keytab\"\n"),
            ["ldap.keytab", "ldap.sasl_host"]
        );
        // Without [kerberos] there is no keytab to default to.
        std::fs::write(
            d.path().join("users"),
            "EX\\alice:8846f7eaee8fb117ad06bdd830b7586c\n",
        )
        .unwrap();
        let errs = Config::parse(
            "listen = \"127.0.0.1:8080\"\n[backend]\nurl = \"http://127.0.0.1:5000\"\n[ntlm]\nenabled = true\ndomain = \"EX\"\nusers_file = \"users\"\n[ldap]\nbase_dn = \"DC=x\"\nurl = \"ldap://dc1.example.test\"\nbind = \"gssapi\"\nprincipal = \"a@B\"\n",
            d.path(),
        )
        .unwrap_err();
        assert!(errs.iter().any(|e| e.key == "ldap.keytab"), "{errs:?}");
    }

    #[test]
    fn reports_every_problem_with_key_paths() {
        let (d, _) = dir_with_keytab();
        let errs = Config::parse(
            "listen = \"nowhere\"\nlistn = 1\n[backend]\nurll = \"x\"\nconnect_timeout = \"soon\"\n[kerberos]\nkeytab = \"missing.keytab\"\nreplay_cache = \"none\"\n[log]\nformat = \"xml\"\n",
            d.path(),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "listen",
            "listn",
            "backend.urll",
            "backend.url",
            "backend.connect_timeout",
            "kerberos.keytab",
            "kerberos.replay_cache",
            "log.format",
        ] {
            assert!(keys.contains(&k), "{k} not reported in {keys:?}");
        }
        let typo = errs.iter().find(|e| e.key == "backend.urll").unwrap();
        assert_eq!(typo.hint.as_deref(), Some("did you mean `backend.url`?"));
    }

    #[test]
    fn syntax_error_is_one_clear_message() {
        let errs = Config::parse("listen = ", Path::new(".")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn shipped_example_is_valid_but_for_its_keytab_path() {
        let text = include_str!("../../../examples/iwa.toml");
        let errs = Config::parse(text, Path::new("/nonexistent")).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        // /etc/iwa/http.keytab does not exist on a build machine; nothing else may fail.
        assert_eq!(keys, vec!["kerberos.keytab"], "{errs:?}");
    }

    #[test]
    fn routes_longest_prefix_wins_on_whole_segments() {
        let (d, _) = dir_with_keytab();
        let c = Config::parse(
            "listen = \"127.0.0.1:1\"\n[backend]\nurl = \"http://127.0.0.1:2\"\n[kerberos]\nkeytab = \"http.keytab\"\n[[route]]\npath = \"/\"\nauth = \"optional\"\n[[route]]\npath = \"/admin\"\nallow_groups = [\"EX\\\\Helpdesk\"]\n[[route]]\npath = \"/public\"\nauth = \"anonymous\"\n",
            d.path(),
        )
        .unwrap();
        let auth = |p: &str| route_for(&c.routes, p).map(|r| (r.path.as_str(), r.auth));
        assert_eq!(auth("/admin"), Some(("/admin", RouteAuth::Required)));
        assert_eq!(auth("/admin/users"), Some(("/admin", RouteAuth::Required)));
        assert_eq!(auth("/administrator"), Some(("/", RouteAuth::Optional)));
        assert_eq!(
            auth("/public/x.css"),
            Some(("/public", RouteAuth::Anonymous))
        );
        assert_eq!(auth("/"), Some(("/", RouteAuth::Optional)));
        let admin = route_for(&c.routes, "/admin").unwrap();
        assert_eq!(admin.rule.allow_groups, vec!["EX\\Helpdesk".to_owned()]);
    }

    #[test]
    fn route_errors() {
        let (d, _) = dir_with_keytab();
        let errs = Config::parse(
            "listen = \"127.0.0.1:1\"\n[backend]\nurl = \"http://127.0.0.1:2\"\n[kerberos]\nkeytab = \"http.keytab\"\n[[route]]\npath = \"public\"\n[[route]]\npath = \"/x\"\nauth = \"sometimes\"\n[[route]]\npath = \"/p\"\nauth = \"anonymous\"\nallow_users = [\"a\"]\n[[route]]\npath = \"/x\"\n",
            d.path(),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "route[0].path",
                "route[1].auth",
                "route[2]",
                "route[3].path"
            ],
            "{errs:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn hosted_backend() {
        let (d, _) = dir_with_keytab();
        std::fs::create_dir_all(d.path().join("app")).unwrap();
        let head = "listen = \"127.0.0.1:8080\"\n[kerberos]\nkeytab = \"http.keytab\"\n";
        let c = Config::parse(
            &format!("{head}[backend]\ncommand = [\"python3\", \"app.py\", \"--port={{port}}\"]\nargs_port_placeholder = \"{{port}}\"\ncwd = \"app\"\nenv = {{ FLASK_ENV = \"production\", SECRET = \"hunter2\" }}\nstartup_timeout = \"20s\"\nstdout_log = \"app.log\"\nmax_failures_per_minute = 3\n"),
            d.path(),
        )
        .unwrap();
        let BackendTarget::Hosted(h) = &c.backend.target else {
            panic!("not hosted: {:?}", c.backend)
        };
        assert_eq!(h.command, vec!["python3", "app.py", "--port={port}"]);
        assert_eq!(h.port_placeholder.as_deref(), Some("{port}"));
        assert_eq!(h.cwd, d.path().join("app"));
        assert_eq!(h.env["FLASK_ENV"], "production");
        assert_eq!(h.startup_timeout, Duration::from_secs(20));
        assert_eq!(h.stop_timeout, Duration::from_secs(10));
        assert_eq!(h.restart_backoff, Duration::from_secs(1));
        assert_eq!(h.restart_backoff_max, Duration::from_secs(30));
        assert_eq!(h.max_failures_per_minute, 3);
        assert_eq!(h.stdout_log, Some(d.path().join("app.log")));
        // Environment values may be secrets: Debug shows the names only.
        let shown = format!("{c:?}");
        assert!(
            shown.contains("SECRET") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(c.backend.describe().starts_with("hosted: python3 app.py"));

        // Defaults: cwd is the configuration's directory.
        let c = Config::parse(
            &format!("{head}[backend]\ncommand = [\"./app\"]\n"),
            d.path(),
        )
        .unwrap();
        let BackendTarget::Hosted(h) = &c.backend.target else {
            panic!()
        };
        assert_eq!(h.cwd, d.path());
        assert_eq!(h.max_failures_per_minute, 5);
        assert_eq!(h.port_placeholder, None);
    }

    #[test]
    fn hosted_backend_errors() {
        let (d, _) = dir_with_keytab();
        let head = "listen = \"127.0.0.1:8080\"\n[kerberos]\nkeytab = \"http.keytab\"\n";
        let keys = |toml: &str| -> Vec<String> {
            Config::parse(&format!("{head}[backend]\n{toml}"), d.path())
                .unwrap_err()
                .into_iter()
                .map(|e| e.key)
                .collect()
        };
        let both = Config::parse(
            &format!("{head}[backend]\nurl = \"http://127.0.0.1:1\"\ncommand = [\"x\"]\n"),
            d.path(),
        )
        .unwrap_err();
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].key, "backend");
        assert!(
            both[0].message.contains("backend.url") && both[0].message.contains("backend.command"),
            "{both:?}"
        );
        assert_eq!(
            keys("url = \"http://127.0.0.1:1\"\nstartup_timeout = \"5s\"\n"),
            vec!["backend.startup_timeout"]
        );
        assert_eq!(keys("command = []\n"), vec!["backend.command"]);
        assert_eq!(
            keys("command = \"python3 app.py\"\n"),
            vec!["backend.command"]
        );
        assert_eq!(keys("command = [\"x\", 1]\n"), vec!["backend.command[1]"]);
        assert_eq!(
            keys("command = [\"x\", \"--port\", \"8000\"]\nargs_port_placeholder = \"{port}\"\n"),
            vec!["backend.args_port_placeholder"]
        );
        let all = keys("command = [\"x\"]\ncwd = \"nowhere\"\nenv = { PORT = \"1\", IWA_PAIRING_TOKEN = \"x\", N = 1 }\nstop_timeout = \"0s\"\nrestart_backoff = \"1m\"\nrestart_backoff_max = \"10s\"\nmax_failures_per_minute = 0\nstdout_log = \"no/such/dir/app.log\"\n");
        for k in [
            "backend.cwd",
            "backend.env.PORT",
            "backend.env.IWA_PAIRING_TOKEN",
            "backend.env.N",
            "backend.stop_timeout",
            "backend.restart_backoff_max",
            "backend.max_failures_per_minute",
            "backend.stdout_log",
        ] {
            assert!(all.contains(&k.to_owned()), "{k} not in {all:?}");
        }
        assert_eq!(keys(""), vec!["backend.url"]);
    }

    #[test]
    fn backend_url_checks() {
        assert!(check_backend_url("http://127.0.0.1:5000").is_ok());
        assert!(check_backend_url("http://app.internal:5000/prefix").is_ok());
        assert!(check_backend_url("ftp://x").is_err());
        assert!(check_backend_url("https://x").is_err());
        assert!(check_backend_url("http://x/?a=b").is_err());
        assert!(check_backend_url("127.0.0.1:5000").is_err());
    }
}
