//! Names and group memberships from a directory: SID → `DOMAIN\Name`, and a user's
//! transitive groups (`tokenGroups`) for realms whose tickets carry no PAC.
//!
//! A [`Directory`] is a cache in front of a [`DirectoryBackend`]: Active Directory over
//! LDAP ([`LdapBackend`], `ldap3`) or a static file ([`StaticBackend`]) where there is
//! no LDAP at all.
//!
//! **The hot path.** A known SID is answered from the cache, synchronously, under a read
//! lock: no LDAP round trip. On a miss, the request awaits one batch of lookups (all its
//! unknown SIDs at once, concurrently on one connection) bounded by the configured
//! timeout (3 s by default), so that the very first request of a user already carries
//! names and name-based rules work from the start; the answer is cached for
//! `cache_ttl`, a "no such object" for `negative_cache_ttl`. While the backend is
//! failing, no request queries it: after a failure it is left alone for a backoff
//! interval (doubling up to a minute), identities go on with SIDs only, and one warning
//! is logged per interval, not per request.
//!
//! Well-known and non-domain SIDs (`S-1-18-1`, which Samba puts in every PAC, `S-1-1-0`,
//! `S-1-5-32-*`, …) are never sent to the directory: a few get a fixed name, the others
//! stay unnamed. Only domain SIDs (`S-1-5-21-*`) are looked up.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::identity::{Group, Identity};

/// A boxed future, for the object-safe backend trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Each looked-up SID with its name, `None` when no object has it.
pub type SidNames = Vec<(String, Option<AccountName>)>;

/// Why the directory could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    #[error("cannot reach the directory: {0}")]
    Unavailable(String),
    #[error("the directory did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the directory refused the bind: {0}")]
    Bind(String),
    #[error("the directory answered with an error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Config(String),
}

/// An account name as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName {
    /// `sAMAccountName`, e.g. `Helpdesk Staff`.
    pub account: String,
    /// The NetBIOS domain, when the backend knows it (else the directory's or the
    /// identity's domain is used).
    pub domain: Option<String>,
}

/// Where names and memberships come from. Object-safe so tests can fake it.
pub trait DirectoryBackend: Send + Sync + fmt::Debug {
    /// Resolves each SID; `None` for a SID with no object.
    fn lookup_sids<'a>(
        &'a self,
        sids: &'a [String],
    ) -> BoxFuture<'a, Result<SidNames, DirectoryError>>;

    /// The user's transitive group SIDs; `None` when there is no such user.
    fn token_groups<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, DirectoryError>>;

    /// For log lines: `ldap://127.0.0.2`, `file /etc/iwa/directory.toml`.
    fn describe(&self) -> String;
}

/// Cache and timing settings.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// The NetBIOS domain for names (`EXAMPLE\…`); else the identity's (PAC) domain.
    pub domain: Option<String>,
    /// Bound on each batch of backend operations.
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
    /// First pause after a failure; doubles per consecutive failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// At most one "directory down" warning per this interval.
    pub warn_interval: Duration,
    /// Fill groups from `tokenGroups` for identities that came without any.
    pub token_groups: bool,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            domain: None,
            timeout: Duration::from_secs(3),
            cache_ttl: Duration::from_secs(600),
            negative_cache_ttl: Duration::from_secs(60),
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            warn_interval: Duration::from_secs(60),
            token_groups: true,
        }
    }
}

/// What a SID is, before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidClass {
    /// A domain SID (`S-1-5-21-…`): the directory can name it.
    Domain,
    /// A well-known SID with a fixed name.
    WellKnown(&'static str),
    /// Anything else: never queried, left unnamed.
    Other,
}

/// A few well-known SIDs, named as Windows names them.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("S-1-1-0", "Everyone"),
    ("S-1-5-2", "NT AUTHORITY\\NETWORK"),
    ("S-1-5-4", "NT AUTHORITY\\INTERACTIVE"),
    ("S-1-5-11", "NT AUTHORITY\\Authenticated Users"),
    ("S-1-5-15", "NT AUTHORITY\\This Organization"),
    ("S-1-5-32-544", "BUILTIN\\Administrators"),
    ("S-1-5-32-545", "BUILTIN\\Users"),
    (
        "S-1-5-32-554",
        "BUILTIN\\Pre-Windows 2000 Compatible Access",
    ),
    ("S-1-18-1", "Authentication authority asserted identity"),
    ("S-1-18-2", "Service asserted identity"),
];

/// Classifies a SID string without any I/O.
pub fn classify_sid(sid: &str) -> SidClass {
    if let Some((_, name)) = WELL_KNOWN.iter().find(|(s, _)| *s == sid) {
        return SidClass::WellKnown(name);
    }
    // S-1-5-21-a-b-c-RID: a domain account; a well-formed one only.
    match sid.parse::<iwa_proto::sid::Sid>() {
        Ok(s)
            if s.authority() == 5
                && s.sub_authorities().first() == Some(&21)
                && s.sub_authorities().len() >= 5 =>
        {
            SidClass::Domain
        }
        _ => SidClass::Other,
    }
}

#[derive(Debug, Clone)]
struct Cached<T> {
    value: T,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Health {
    /// No backend calls before this instant.
    down_until: Option<Instant>,
    failures: u32,
    last_warning: Option<Instant>,
    suppressed: u64,
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    pub hits: u64,
    pub misses: u64,
    pub backend_calls: u64,
    pub backend_failures: u64,
}

/// SID → name and user → groups, cached. Share it (`Arc`); one per process.
pub struct Directory {
    backend: Arc<dyn DirectoryBackend>,
    settings: DirectorySettings,
    names: RwLock<HashMap<String, Cached<Option<AccountName>>>>,
    groups: RwLock<HashMap<String, Cached<Option<Vec<String>>>>>,
    health: Mutex<Health>,
    stats: Mutex<DirectoryStats>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("backend", &self.backend.describe())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Caches stop growing here; expired entries are dropped first, then everything.
const MAX_CACHE_ENTRIES: usize = 100_000;

fn insert_bounded<T>(
    map: &mut HashMap<String, Cached<T>>,
    key: String,
    value: Cached<T>,
    now: Instant,
) {
    if map.len() >= MAX_CACHE_ENTRIES {
        map.retain(|_, c| c.expires > now);
        if map.len() >= MAX_CACHE_ENTRIES {
            map.clear();
        }
    }
    map.insert(key, value);
}

impl Directory {
    pub fn new(backend: Arc<dyn DirectoryBackend>, settings: DirectorySettings) -> Self {
        Directory {
            backend,
            settings,
            names: RwLock::new(HashMap::new()),
            groups: RwLock::new(HashMap::new()),
            health: Mutex::new(Health::default()),
            stats: Mutex::new(DirectoryStats::default()),
        }
    }

    pub fn settings(&self) -> &DirectorySettings {
        &self.settings
    }

    pub fn stats(&self) -> DirectoryStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut DirectoryStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether the backend is in its backoff interval.
    fn is_down(&self, now: Instant) -> bool {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.down_until.is_some_and(|t| now < t)
    }

    fn record_success(&self) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if h.failures > 0 {
            info!(
                directory = %self.backend.describe(),
                "the directory answers again; names are resolved"
            );
        }
        *h = Health::default();
    }

    fn record_failure(&self, now: Instant, error: &DirectoryError) {
        self.count(|s| s.backend_failures += 1);
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.failures = h.failures.saturating_add(1);
        let exp = h.failures.saturating_sub(1).min(16);
        let pause = self
            .settings
            .backoff
            .saturating_mul(1u32 << exp)
            .min(self.settings.max_backoff);
        h.down_until = Some(now + pause);
        let due = h
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= self.settings.warn_interval);
        if due {
            warn!(
                directory = %self.backend.describe(),
                retry_in = ?pause,
                suppressed = h.suppressed,
                "directory unavailable, forwarding identities with SIDs only: {error}"
            );
            h.last_warning = Some(now);
            h.suppressed = 0;
        } else {
            h.suppressed += 1;
        }
    }

    /// Runs one backend batch under the timeout and the backoff rule. `None` when the
    /// backend is down or failed (the caller goes on without).
    async fn call<T>(
        &self,
        now: Instant,
        fut: impl Future<Output = Result<T, DirectoryError>>,
    ) -> Option<T> {
        if self.is_down(now) {
            return None;
        }
        self.count(|s| s.backend_calls += 1);
        let result = match tokio::time::timeout(self.settings.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(DirectoryError::Timeout(self.settings.timeout)),
        };
        match result {
            Ok(v) => {
                self.record_success();
                Some(v)
            }
            Err(e) => {
                self.record_failure(Instant::now().max(now), &e);
                None
            }
        }
    }

    /// The cached name of a SID: `Some(Some(name))` known, `Some(None)` known not to
    /// exist (or never to be asked), `None` a miss.
    fn cached_name(&self, sid: &str, now: Instant) -> Option<Option<AccountName>> {
        match classify_sid(sid) {
            SidClass::WellKnown(name) => Some(Some(AccountName {
                account: name.to_owned(),
                domain: None,
            })),
            SidClass::Other => Some(None),
            SidClass::Domain => {
                let names = self.names.read().unwrap_or_else(|p| p.into_inner());
                names
                    .get(sid)
                    .filter(|c| now < c.expires)
                    .map(|c| c.value.clone())
            }
        }
    }

    fn display(&self, name: &AccountName, identity_domain: Option<&str>, sid: &str) -> String {
        if classify_sid(sid) != SidClass::Domain {
            return name.account.clone();
        }
        match name
            .domain
            .as_deref()
            .or(self.settings.domain.as_deref())
            .or(identity_domain)
        {
            Some(d) => format!("{d}\\{}", name.account),
            None => name.account.clone(),
        }
    }

    /// Fills in what the directory knows: groups from `tokenGroups` when the identity
    /// has none, then the names of its groups. Never fails: whatever cannot be resolved
    /// in time stays as it was (SIDs only).
    pub async fn enrich(&self, identity: &mut Identity) {
        self.enrich_at(identity, Instant::now()).await;
    }

    /// [`Directory::enrich`] with the clock as a parameter.
    pub async fn enrich_at(&self, identity: &mut Identity, now: Instant) {
        if identity.groups.is_empty() && self.settings.token_groups {
            if let Some(sids) = self.token_groups_at(&identity.user, now).await {
                identity.groups = sids
                    .into_iter()
                    .map(|sid| Group {
                        sid: Some(sid),
                        name: None,
                    })
                    .collect();
            }
        }
        self.name_groups_at(identity, now).await;
    }

    /// The user's transitive group SIDs (cached), or `None` if unknown or unavailable.
    pub async fn token_groups_at(&self, user: &str, now: Instant) -> Option<Vec<String>> {
        let key = user.to_ascii_lowercase();
        {
            let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = groups.get(&key).filter(|c| now < c.expires) {
                self.count(|s| s.hits += 1);
                return c.value.clone();
            }
        }
        self.count(|s| s.misses += 1);
        let found = self.call(now, self.backend.token_groups(user)).await?;
        let ttl = if found.is_some() {
            self.settings.cache_ttl
        } else {
            self.settings.negative_cache_ttl
        };
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        insert_bounded(
            &mut groups,
            key,
            Cached {
                value: found.clone(),
                expires: now + ttl,
            },
            now,
        );
        found
    }

    /// Names the identity's groups from the cache; on a miss, one bounded batch lookup.
    pub async fn name_groups_at(&self, identity: &mut Identity, now: Instant) {
        let domain = identity.domain.clone();
        let mut missing: Vec<String> = Vec::new();
        let mut hits = 0;
        for g in identity.groups.iter_mut().filter(|g| g.name.is_none()) {
            let Some(sid) = g.sid.as_deref() else {
                continue;
            };
            match self.cached_name(sid, now) {
                Some(Some(name)) => {
                    hits += 1;
                    g.name = Some(self.display(&name, domain.as_deref(), sid));
                }
                Some(None) => hits += 1,
                None => {
                    if !missing.iter().any(|m| m == sid) {
                        missing.push(sid.to_owned());
                    }
                }
            }
        }
        self.count(|s| {
            s.hits += hits;
            s.misses += missing.len() as u64;
        });
        if missing.is_empty() {
            return;
        }
        let Some(found) = self.call(now, self.backend.lookup_sids(&missing)).await else {
            return;
        };
        {
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            for (sid, name) in &found {
                let ttl = if name.is_some() {
                    self.settings.cache_ttl
                } else {
                    self.settings.negative_cache_ttl
                };
                insert_bounded(
                    &mut names,
                    sid.clone(),
                    Cached {
                        value: name.clone(),
                        expires: now + ttl,
                    },
                    now,
                );
            }
        }
        let found: HashMap<&str, &AccountName> = found
            .iter()
            .filter_map(|(s, n)| n.as_ref().map(|n| (s.as_str(), n)))
            .collect();
        for g in identity.groups.iter_mut().filter(|g| g.name.is_none()) {
            if let Some(sid) = g.sid.as_deref() {
                if let Some(name) = found.get(sid) {
                    g.name = Some(self.display(name, domain.as_deref(), sid));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// LDAP

/// How to reach Active Directory over LDAP.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Where users are searched for `tokenGroups` (`DC=example,DC=test`).
    pub base_dn: String,
    /// Simple bind as this DN (or `DOMAIN\user`, or a UPN); anonymous when `None`.
    pub bind_dn: Option<String>,
    /// The bind password's file (mode 0600 or stricter).
    pub bind_password_file: Option<PathBuf>,
    /// StartTLS on an `ldap://` URL.
    pub starttls: bool,
    /// Bound on connect (and TLS) per attempt.
    pub timeout: Duration,
}

/// Active Directory over LDAP: one multiplexed connection, re-established after an
/// error; referrals are never chased.
pub struct LdapBackend {
    settings: LdapSettings,
    password: Option<Zeroizing<String>>,
    conn: tokio::sync::Mutex<Option<ldap3::Ldap>>,
}

impl fmt::Debug for LdapBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapBackend")
            .field("url", &self.settings.url)
            .field("bind_dn", &self.settings.bind_dn)
            .finish_non_exhaustive()
    }
}

/// Longest bind password file we read.
const MAX_PASSWORD_FILE: u64 = 4096;

/// Reads a secret file: a regular file not accessible by group or others; one
/// trailing newline is dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, DirectoryError> {
    let err = |m: String| DirectoryError::Config(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {mode:04o} lets others read it; chmod 600 it"
        )));
    }
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if buf.len() as u64 > MAX_PASSWORD_FILE {
        return Err(err("too long for a password".into()));
    }
    let text = std::str::from_utf8(&buf).map_err(|_| err("not UTF-8".into()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

fn ldap_err(e: ldap3::LdapError) -> DirectoryError {
    use ldap3::LdapError as E;
    match e {
        E::Io { source } => DirectoryError::Unavailable(source.to_string()),
        E::Timeout { .. } => DirectoryError::Unavailable("timed out".into()),
        E::LdapResult { result } => DirectoryError::Protocol(format!(
            "result code {}{}",
            result.rc,
            if result.text.is_empty() {
                String::new()
            } else {
                format!(" ({})", result.text)
            }
        )),
        other => DirectoryError::Unavailable(other.to_string()),
    }
}

/// LDAP result code for "no such object".
const NO_SUCH_OBJECT: u32 = 32;

impl LdapBackend {
    /// Checks the settings and reads the password file; does not connect (the first
    /// lookup does, so a directory that is down at start-up does not stop the gateway).
    pub fn new(settings: LdapSettings) -> Result<Self, DirectoryError> {
        let lower = settings.url.to_ascii_lowercase();
        if !lower.starts_with("ldap://") && !lower.starts_with("ldaps://") {
            return Err(DirectoryError::Config(format!(
                "`{}` is not an ldap:// or ldaps:// URL",
                settings.url
            )));
        }
        if settings.starttls && lower.starts_with("ldaps://") {
            return Err(DirectoryError::Config(
                "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into(),
            ));
        }
        let password = match (&settings.bind_dn, &settings.bind_password_file) {
            (Some(_), Some(f)) => Some(read_secret_file(f)?),
            (Some(_), None) => {
                return Err(DirectoryError::Config(
                    "a bind DN needs a bind password file".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(DirectoryError::Config(
                    "a bind password file needs a bind DN".into(),
                ))
            }
            (None, None) => None,
        };
        Ok(LdapBackend {
            settings,
            password,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// A bound connection: the open one, or a new one.
    async fn connection(&self) -> Result<ldap3::Ldap, DirectoryError> {
        let mut slot = self.conn.lock().await;
        if let Some(ldap) = slot.as_mut() {
            if !ldap.is_closed() {
                return Ok(ldap.clone());
            }
        }
        *slot = None;
        let conn_settings = ldap3::LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(self.settings.starttls);
        let (conn, mut ldap) =
            ldap3::LdapConnAsync::with_settings(conn_settings, &self.settings.url)
                .await
                .map_err(ldap_err)?;
        let url = self.settings.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(%url, "LDAP connection closed: {e}");
            }
        });
        if let (Some(dn), Some(pw)) = (&self.settings.bind_dn, &self.password) {
            let res = ldap.simple_bind(dn, pw.as_str()).await.map_err(ldap_err)?;
            if res.rc != 0 {
                return Err(DirectoryError::Bind(format!(
                    "result code {} for {dn}",
                    res.rc
                )));
            }
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Base-scope read of one object; `None` when it does not exist.
    async fn read_object(
        ldap: &mut ldap3::Ldap,
        base: &str,
        attrs: &[&str],
    ) -> Result<Option<ldap3::SearchEntry>, DirectoryError> {
        let ldap3::SearchResult(entries, res) = ldap
            .search(base, ldap3::Scope::Base, "(objectClass=*)", attrs.to_vec())
            .await
            .map_err(ldap_err)?;
        if res.rc == NO_SUCH_OBJECT {
            return Ok(None);
        }
        if res.rc != 0 {
            return Err(ldap_err(ldap3::LdapError::LdapResult { result: res }));
        }
        Ok(entries
            .into_iter()
            .find(|e| !e.is_ref())
            .map(ldap3::SearchEntry::construct))
    }

    async fn lookup_one(
        mut ldap: ldap3::Ldap,
        sid: String,
    ) -> Result<(String, Option<AccountName>), DirectoryError> {
        let base = format!("<SID={sid}>");
        let entry = Self::read_object(&mut ldap, &base, &["sAMAccountName", "objectClass"]).await?;
        let name = entry.and_then(|e| {
            e.attrs
                .get("sAMAccountName")
                .and_then(|v| v.first())
                .map(|account| AccountName {
                    account: account.clone(),
                    domain: None,
                })
        });
        Ok((sid, name))
    }

    async fn lookup(&self, sids: &[String]) -> Result<SidNames, DirectoryError> {
        let ldap = self.connection().await?;
        let mut set = tokio::task::JoinSet::new();
        for sid in sids {
            set.spawn(Self::lookup_one(ldap.clone(), sid.clone()));
        }
        let mut out = Vec::with_capacity(sids.len());
        let mut first_err = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(pair)) => out.push(pair),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(DirectoryError::Unavailable(e.to_string()));
                }
            }
        }
        match first_err {
            Some(e) => {
                self.forget_connection().await;
                Err(e)
            }
            None => Ok(out),
        }
    }

    async fn groups_of(&self, user: &str) -> Result<Option<Vec<String>>, DirectoryError> {
        let mut ldap = self.connection().await?;
        let result = async {
            let filter = format!(
                "(&(objectClass=user)(sAMAccountName={}))",
                ldap3::ldap_escape(user)
            );
            let ldap3::SearchResult(entries, res) = ldap
                .search(
                    &self.settings.base_dn,
                    ldap3::Scope::Subtree,
                    &filter,
                    vec!["1.1"],
                )
                .await
                .map_err(ldap_err)?;
            if res.rc != 0 && res.rc != NO_SUCH_OBJECT {
                return Err(ldap_err(ldap3::LdapError::LdapResult { result: res }));
            }
            // Continuation references (to the DNS zones etc.) are skipped, not chased.
            let Some(dn) = entries
                .into_iter()
                .find(|e| !e.is_ref())
                .map(|e| ldap3::SearchEntry::construct(e).dn)
            else {
                return Ok(None);
            };
            let Some(entry) = Self::read_object(&mut ldap, &dn, &["tokenGroups"]).await? else {
                return Ok(None);
            };
            let mut sids = Vec::new();
            for raw in entry
                .bin_attrs
                .get("tokenGroups")
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                match iwa_proto::sid::Sid::from_bytes(raw) {
                    Ok(s) => sids.push(s.to_string()),
                    Err(e) => debug!(%dn, "skipping an undecodable tokenGroups value: {e}"),
                }
            }
            Ok(Some(sids))
        }
        .await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result
    }
}

impl DirectoryBackend for LdapBackend {
    fn lookup_sids<'a>(
        &'a self,
        sids: &'a [String],
    ) -> BoxFuture<'a, Result<SidNames, DirectoryError>> {
        Box::pin(self.lookup(sids))
    }

    fn token_groups<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, DirectoryError>> {
        Box::pin(self.groups_of(user))
    }

    fn describe(&self) -> String {
        self.settings.url.clone()
    }
}

// ---------------------------------------------------------------------------------
// Static file

/// The static directory file (TOML):
///
/// ```toml
/// [users]
/// "EXAMPLE\\alice" = "S-1-5-21-1-2-3-1104"     # a SID, or "" when there is none
///
/// [groups."EXAMPLE\\Helpdesk Staff"]
/// sid = "S-1-5-21-1-2-3-1105"
/// members = ["EXAMPLE\\alice"]
///
/// [groups."EXAMPLE\\All Staff"]
/// sid = "S-1-5-21-1-2-3-1106"
/// members = ["EXAMPLE\\Helpdesk Staff", "EXAMPLE\\bob"]   # groups nest
/// ```
///
/// Members are matched without regard to case, by `DOMAIN\user` or the bare user name.
/// A group without a SID gets a synthetic key so it can still be named in rules.
#[derive(Debug, Clone, Default)]
pub struct StaticBackend {
    path: PathBuf,
    /// SID → full name.
    names: HashMap<String, String>,
    /// Lowercased user (bare name) → transitive group SIDs.
    memberships: HashMap<String, Vec<String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticFile {
    #[serde(default)]
    users: BTreeMap<String, String>,
    #[serde(default)]
    groups: BTreeMap<String, StaticGroup>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticGroup {
    sid: String,
    #[serde(default)]
    members: Vec<String>,
}

fn bare(name: &str) -> String {
    name.rsplit('\\')
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase()
}

impl StaticBackend {
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DirectoryError::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, DirectoryError> {
        let err = |m: String| DirectoryError::Config(format!("{}: {m}", path.display()));
        let file: StaticFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut names = HashMap::new();
        for (name, sid) in &file.users {
            if !sid.is_empty() {
                check_sid(sid).map_err(|m| err(format!("users.\"{name}\": {m}")))?;
                names.insert(sid.clone(), name.clone());
            }
        }
        // group (lowercased full and bare name) → its SID
        let mut group_sid: HashMap<String, String> = HashMap::new();
        for (name, g) in &file.groups {
            check_sid(&g.sid).map_err(|m| err(format!("groups.\"{name}\".sid: {m}")))?;
            names.insert(g.sid.clone(), name.clone());
            group_sid.insert(name.to_ascii_lowercase(), g.sid.clone());
            group_sid.insert(bare(name), g.sid.clone());
        }
        // Direct parents of each member (users and groups by bare name).
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for g in file.groups.values() {
            for m in &g.members {
                parents.entry(bare(m)).or_default().push(g.sid.clone());
            }
        }
        let sid_to_bare: HashMap<&str, String> = file
            .groups
            .iter()
            .map(|(n, g)| (g.sid.as_str(), bare(n)))
            .collect();
        let mut memberships = HashMap::new();
        let users = file.users.keys().map(|u| bare(u)).chain(
            parents
                .keys()
                .filter(|k| !group_sid.contains_key(*k))
                .cloned(),
        );
        for user in users {
            // Transitive closure, cycle-safe.
            let mut out: Vec<String> = Vec::new();
            let mut todo = parents.get(&user).cloned().unwrap_or_default();
            while let Some(sid) = todo.pop() {
                if out.contains(&sid) {
                    continue;
                }
                if let Some(b) = sid_to_bare.get(sid.as_str()) {
                    todo.extend(parents.get(b).cloned().unwrap_or_default());
                }
                out.push(sid);
            }
            memberships.insert(user, out);
        }
        Ok(StaticBackend {
            path: path.to_owned(),
            names,
            memberships,
        })
    }
}

fn check_sid(sid: &str) -> Result<(), String> {
    sid.parse::<iwa_proto::sid::Sid>()
        .map(|_| ())
        .map_err(|e| format!("`{sid}` is not a SID: {e}"))
}

impl DirectoryBackend for StaticBackend {
    fn lookup_sids<'a>(
        &'a self,
        sids: &'a [String],
    ) -> BoxFuture<'a, Result<SidNames, DirectoryError>> {
        let out = sids
            .iter()
            .map(|sid| {
                let name = self.names.get(sid).map(|full| match full.split_once('\\') {
                    Some((d, a)) => AccountName {
                        account: a.to_owned(),
                        domain: Some(d.to_owned()),
                    },
                    None => AccountName {
                        account: full.clone(),
                        domain: None,
                    },
                });
                (sid.clone(), name)
            })
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn token_groups<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, DirectoryError>> {
        let found = self.memberships.get(&bare(user)).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const D: &str = "S-1-5-21-1-2-3";

    fn sid(rid: u32) -> String {
        format!("{D}-{rid}")
    }

    #[derive(Debug, Default)]
    struct Fake {
        names: HashMap<String, String>,
        groups: HashMap<String, Vec<String>>,
        down: AtomicBool,
        hang: AtomicBool,
        calls: AtomicUsize,
        asked: Mutex<Vec<String>>,
    }

    impl DirectoryBackend for Fake {
        fn lookup_sids<'a>(
            &'a self,
            sids: &'a [String],
        ) -> BoxFuture<'a, Result<SidNames, DirectoryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.asked.lock().unwrap().extend(sids.iter().cloned());
                if self.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err(DirectoryError::Unavailable("connection refused".into()));
                }
                Ok(sids
                    .iter()
                    .map(|s| {
                        let n = self.names.get(s).map(|a| AccountName {
                            account: a.clone(),
                            domain: None,
                        });
                        (s.clone(), n)
                    })
                    .collect())
            })
        }

        fn token_groups<'a>(
            &'a self,
            user: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<String>>, DirectoryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.down.load(Ordering::SeqCst) {
                    return Err(DirectoryError::Unavailable("connection refused".into()));
                }
                Ok(self.groups.get(user).cloned())
            })
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn fake() -> Arc<Fake> {
        let mut f = Fake::default();
        f.names.insert(sid(1105), "Helpdesk Staff".into());
        f.names.insert(sid(1106), "All Staff".into());
        f.names.insert(sid(513), "Domain Users".into());
        f.groups
            .insert("alice".into(), vec![sid(513), sid(1105), sid(1106)]);
        Arc::new(f)
    }

    fn directory(f: &Arc<Fake>) -> Directory {
        Directory::new(
            f.clone(),
            DirectorySettings {
                domain: Some("EXAMPLE".into()),
                timeout: Duration::from_millis(200),
                ..Default::default()
            },
        )
    }

    fn alice(groups: &[String]) -> Identity {
        let mut id =
            Identity::from_principal("alice@EXAMPLE.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        id.groups = groups
            .iter()
            .map(|s| Group {
                sid: Some(s.clone()),
                name: None,
            })
            .collect();
        id
    }

    fn names(id: &Identity) -> Vec<Option<&str>> {
        id.groups.iter().map(|g| g.name.as_deref()).collect()
    }

    #[test]
    fn classifies_sids() {
        assert_eq!(classify_sid(&sid(1105)), SidClass::Domain);
        assert_eq!(
            classify_sid("S-1-18-1"),
            SidClass::WellKnown("Authentication authority asserted identity")
        );
        assert_eq!(classify_sid("S-1-18-3"), SidClass::Other);
        assert_eq!(classify_sid("S-1-5-32-999"), SidClass::Other);
        assert_eq!(classify_sid("S-1-1-0"), SidClass::WellKnown("Everyone"));
        assert_eq!(classify_sid("S-1-5-21-1"), SidClass::Other);
        assert_eq!(classify_sid("garbage"), SidClass::Other);
    }

    #[tokio::test]
    async fn names_groups_then_answers_from_cache_without_backend() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        let mut id = alice(&[
            sid(1105),
            sid(1106),
            "S-1-18-1".into(),
            "S-1-5-32-999".into(),
        ]);
        dir.enrich_at(&mut id, now).await;
        assert_eq!(
            names(&id),
            [
                Some("EXAMPLE\\Helpdesk Staff"),
                Some("EXAMPLE\\All Staff"),
                Some("Authentication authority asserted identity"),
                None
            ]
        );
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        // Well-known and non-domain SIDs never reach the backend.
        assert_eq!(*f.asked.lock().unwrap(), [sid(1105), sid(1106)]);

        let mut again = alice(&[sid(1105), sid(1106), "S-1-18-1".into()]);
        dir.enrich_at(&mut again, now + Duration::from_secs(599))
            .await;
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            1,
            "a cache hit calls nobody"
        );
        assert_eq!(again.groups[1].name.as_deref(), Some("EXAMPLE\\All Staff"));
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        let mut id = alice(&[sid(1105)]);
        dir.enrich_at(&mut id, now).await;
        let mut id = alice(&[sid(1105)]);
        dir.enrich_at(&mut id, now + Duration::from_secs(601)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            id.groups[0].name.as_deref(),
            Some("EXAMPLE\\Helpdesk Staff")
        );
    }

    #[tokio::test]
    async fn unknown_sids_are_negatively_cached() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        for secs in [0, 30, 59] {
            let mut id = alice(&[sid(4242)]);
            dir.enrich_at(&mut id, now + Duration::from_secs(secs))
                .await;
            assert_eq!(names(&id), [None]);
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        let mut id = alice(&[sid(4242)]);
        dir.enrich_at(&mut id, now + Duration::from_secs(61)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn backend_down_gives_sids_only_and_is_not_hammered() {
        let f = fake();
        f.down.store(true, Ordering::SeqCst);
        let dir = directory(&f);
        let now = Instant::now();
        for i in 0..50 {
            let mut id = alice(&[sid(1105)]);
            dir.enrich_at(&mut id, now + Duration::from_millis(i * 10))
                .await;
            assert_eq!(id.groups[0].sid.as_deref(), Some(sid(1105).as_str()));
            assert_eq!(names(&id), [None]);
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1, "backoff: one attempt");
        // After the backoff (5 s), one more attempt; it fails, the pause doubles.
        let mut id = alice(&[sid(1105)]);
        dir.enrich_at(&mut id, now + Duration::from_secs(6)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        dir.enrich_at(&mut alice(&[sid(1105)]), now + Duration::from_secs(12))
            .await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 2, "10 s pause now");
        // Back up: names again, counters reset.
        f.down.store(false, Ordering::SeqCst);
        let mut id = alice(&[sid(1105)]);
        dir.enrich_at(&mut id, now + Duration::from_secs(17)).await;
        assert_eq!(
            id.groups[0].name.as_deref(),
            Some("EXAMPLE\\Helpdesk Staff")
        );
    }

    #[tokio::test]
    async fn a_hanging_backend_is_cut_off_by_the_timeout() {
        let f = fake();
        f.hang.store(true, Ordering::SeqCst);
        let dir = directory(&f);
        let started = Instant::now();
        let mut id = alice(&[sid(1105)]);
        dir.enrich(&mut id).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(names(&id), [None]);
        assert_eq!(dir.stats().backend_failures, 1);
        // And it is then in backoff: the next request returns at once.
        let started = Instant::now();
        dir.enrich(&mut alice(&[sid(1105)])).await;
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn token_groups_fill_an_identity_without_groups() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        let mut id = alice(&[]);
        dir.enrich_at(&mut id, now).await;
        assert_eq!(
            names(&id),
            [
                Some("EXAMPLE\\Domain Users"),
                Some("EXAMPLE\\Helpdesk Staff"),
                Some("EXAMPLE\\All Staff")
            ]
        );
        let calls = f.calls.load(Ordering::SeqCst);
        let mut id = alice(&[]);
        dir.enrich_at(&mut id, now + Duration::from_secs(1)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), calls);
        assert_eq!(id.groups.len(), 3);
    }

    #[tokio::test]
    async fn static_file_names_and_nested_memberships() {
        let text = format!(
            r#"
[users]
"EXAMPLE\\alice" = "{a}"
"EXAMPLE\\bob" = ""

[groups."EXAMPLE\\Helpdesk Staff"]
sid = "{h}"
members = ["EXAMPLE\\alice"]

[groups."EXAMPLE\\All Staff"]
sid = "{s}"
members = ["EXAMPLE\\Helpdesk Staff", "bob"]
"#,
            a = sid(1104),
            h = sid(1105),
            s = sid(1106)
        );
        let backend = StaticBackend::parse(&text, Path::new("dir.toml")).unwrap();
        let dir = Directory::new(Arc::new(backend), DirectorySettings::default());
        let mut id = alice(&[]);
        dir.enrich(&mut id).await;
        let mut got = names(&id);
        got.sort();
        assert_eq!(
            got,
            [Some("EXAMPLE\\All Staff"), Some("EXAMPLE\\Helpdesk Staff")]
        );
        let mut bob = Identity::from_principal("bob@X", AuthMethod::Kerberos, &BTreeMap::new());
        dir.enrich(&mut bob).await;
        assert_eq!(names(&bob), [Some("EXAMPLE\\All Staff")]);

        assert!(StaticBackend::parse("[groups.x]\nsid = \"nope\"\n", Path::new("f")).is_err());
        assert!(StaticBackend::parse("bogus = 1\n", Path::new("f")).is_err());
    }

    #[test]
    fn secret_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret_file(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap().as_str(), "s3cret");
    }

    #[test]
    fn cache_hit_cost() {
        // Not a benchmark, a guard: a warm cache answers a 20-group identity in
        // microseconds, with no backend and no await point that sleeps.
        let f = fake();
        let dir = directory(&f);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let groups: Vec<String> = (0..20).map(|i| sid(1105 + (i % 2))).collect();
        rt.block_on(dir.enrich(&mut alice(&groups)));
        let n = 10_000u32;
        let started = Instant::now();
        for _ in 0..n {
            let mut id = alice(&groups);
            rt.block_on(dir.enrich(&mut id));
        }
        let per = started.elapsed() / n;
        eprintln!("warm enrich of 20 groups: {per:?}");
        assert!(per < Duration::from_millis(1), "{per:?}");
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }
}
