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
//! Concurrent misses on the same key share one lookup (single flight): the first request
//! asks, the others wait for its answer (within their own timeout).
//!
//! Well-known and non-domain SIDs (`S-1-18-1`, which Samba puts in every PAC, `S-1-1-0`,
//! `S-1-5-32-*`, …) are never sent to the directory: a few get a fixed name, the others
//! stay unnamed. Only domain SIDs (`S-1-5-21-*`) are looked up.
//!
//! **Users by name.** [`Directory::resolve_user`] finds an account (`DOMAIN\user`,
//! `user@REALM`, `user`) and builds the identity a login would give, with a `disabled`
//! flag: the target of impersonation. Unlike enrichment it fails loudly: "the directory
//! cannot tell" is an error, never "no such user".
//!
//! **LDAP security.** `ldaps://` or StartTLS with certificate and host name checks
//! (system roots, or exactly the CAs of a `ca_file`); a simple bind over plain
//! `ldap://` to a host that is not loopback is refused unless explicitly allowed.
//!
//! **SASL GSSAPI binds** ([`GssapiBind`]) use a service account's key from a client
//! keytab instead of a password. The credential is acquired with explicit
//! credential-store elements into a `MEMORY:` ccache private to the backend (never the
//! process environment or a default ccache), and the KDC round trips (TGT from the
//! keytab, service ticket for `ldap/<host>@REALM`) run on a blocking thread, at most
//! one at a time, before the bind: `ldap3`'s bind, which calls GSSAPI inside its async
//! code, then finds both tickets cached and makes no network call of its own. So a
//! KDC that does not answer costs a request no more than the timeout (the blocking
//! thread itself waits out MIT's own KDC timeouts in the background). Over plain
//! `ldap://` the bind negotiates the SASL confidentiality layer (every later LDAP
//! message is sealed with the session key); over TLS no SASL layer, and the TLS
//! channel binding (`tls-server-end-point`) goes into the authenticator.

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

use crate::identity::{AuthMethod, Group, Identity};

mod sasl;

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
    /// The SASL GSSAPI bind could not get or use Kerberos credentials: no key for the
    /// principal in the keytab, the KDC refused or did not answer, no such service
    /// principal, ...
    #[error("Kerberos for the LDAP bind failed: {0}")]
    Kerberos(String),
    /// The TLS handshake failed: most often the certificate is not signed by a CA of
    /// the CA file, or does not name the host of the URL.
    #[error("TLS with the directory failed: {0} (check the CA file and that the certificate names the host in the URL)")]
    Tls(String),
    #[error("the directory answered with an error: {0}")]
    Protocol(String),
    /// A recent failure put the backend in its backoff interval; it is not asked again
    /// before this much time has passed.
    #[error("the directory failed recently; next attempt in {0:?}")]
    Backoff(Duration),
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

/// A user account as the directory knows it ([`DirectoryBackend::lookup_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// `sAMAccountName`, e.g. `bob`, as the directory spells it.
    pub account: String,
    /// The NetBIOS domain, when known.
    pub domain: Option<String>,
    /// The Kerberos realm (for AD the domain's DNS name in upper case), when known.
    pub realm: Option<String>,
    /// `userPrincipalName`, e.g. `bob@example.test`, when set.
    pub principal: Option<String>,
    pub sid: Option<String>,
    /// The account cannot log on: disabled (`userAccountControl` bit `ACCOUNTDISABLE`)
    /// or locked out (`msDS-User-Account-Control-Computed` bit `LOCKOUT`); for the
    /// static file, listed in `disabled`.
    pub disabled: bool,
    /// Transitive group SIDs, the primary group included (`tokenGroups` for LDAP, the
    /// closure of `members` for the static file).
    pub group_sids: Vec<String>,
}

/// A user name as an operator types it: `DOMAIN\user`, `user@REALM` or `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserName {
    /// `DOMAIN\user` or a bare `user`.
    Account {
        domain: Option<String>,
        account: String,
    },
    /// `user@REALM` (a Kerberos principal or `userPrincipalName`).
    Principal { account: String, realm: String },
}

impl UserName {
    /// Parses a user name; `None` for an empty part, a second backslash, or a control
    /// character. Surrounding whitespace is ignored.
    pub fn parse(name: &str) -> Option<UserName> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return None;
        }
        if let Some((domain, account)) = name.split_once('\\') {
            if domain.is_empty() || account.is_empty() || account.contains('\\') {
                return None;
            }
            return Some(UserName::Account {
                domain: Some(domain.to_owned()),
                account: account.to_owned(),
            });
        }
        if let Some((account, realm)) = name.rsplit_once('@') {
            if account.is_empty() || realm.is_empty() {
                return None;
            }
            return Some(UserName::Principal {
                account: account.to_owned(),
                realm: realm.to_owned(),
            });
        }
        Some(UserName::Account {
            domain: None,
            account: name.to_owned(),
        })
    }

    /// The account part (`user`).
    pub fn account(&self) -> &str {
        match self {
            UserName::Account { account, .. } | UserName::Principal { account, .. } => account,
        }
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserName::Account {
                domain: Some(d),
                account,
            } => write!(f, "{d}\\{account}"),
            UserName::Account {
                domain: None,
                account,
            } => f.write_str(account),
            UserName::Principal { account, realm } => write!(f, "{account}@{realm}"),
        }
    }
}

/// What [`Directory::resolve_user`] finds: the identity the user would have after a
/// login (names filled in), and whether the account may log on at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// `method` is [`AuthMethod::Kerberos`], how a domain user normally logs on; a
    /// caller acting on behalf of someone sets its own. `expires` is `None`.
    pub identity: Identity,
    /// Disabled or locked out: a caller should not act as this user.
    pub disabled: bool,
}

/// Where names and memberships come from. Object-safe so tests can fake it.
pub trait DirectoryBackend: Send + Sync + fmt::Debug {
    /// Resolves each SID; `None` for a SID with no object.
    fn lookup_sids<'a>(
        &'a self,
        sids: &'a [String],
    ) -> BoxFuture<'a, Result<SidNames, DirectoryError>>;

    /// The SID and transitive group SIDs of `user` (a bare account name) of the
    /// Kerberos realm `realm` (empty when not known); `None` when there is no such
    /// user. A backend that knows which realm it describes answers `None` for any other
    /// one: a cross-realm `bob@OTHER.TEST` must never get `EXAMPLE\bob`'s groups.
    fn token_groups<'a>(
        &'a self,
        user: &'a str,
        realm: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserGroups>, DirectoryError>>;

    /// Finds one user account. `name` is `DOMAIN\\user`, `user@REALM` or `user` (see
    /// [`UserName`]); `None` when there is no such user, or the domain or realm named
    /// is not this directory's.
    fn lookup_user<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>>;

    /// For log lines: `ldap://127.0.0.2`, `file /etc/iwa/directory.toml`.
    fn describe(&self) -> String;
}

/// What the directory says of a user who logged in without a PAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGroups {
    /// The account's SID, when the directory has one.
    pub sid: Option<String>,
    /// Transitive group SIDs (`tokenGroups`; the primary group included).
    pub groups: Vec<String>,
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
    /// Misses answered by waiting for another request's identical lookup.
    pub shared: u64,
}

/// What an in-flight lookup is for (the key namespaces of [`Directory`]'s flights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FlightKind {
    Sid,
    Groups,
    User,
}

/// The keys one request is fetching from the backend; whoever needs one of them
/// meanwhile waits for this request instead of asking too. Dropping it (done, failed
/// or cancelled) releases the keys and wakes the waiters.
struct Flight<'a> {
    dir: &'a Directory,
    kind: FlightKind,
    keys: Vec<String>,
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut inflight = self.dir.inflight.lock().unwrap_or_else(|p| p.into_inner());
        for k in self.keys.drain(..) {
            inflight.remove(&(self.kind, k));
        }
        // `_done` is dropped after this: the waiters' `changed()` returns.
    }
}

/// SID → name and user → groups, cached. Share it (`Arc`); one per process.
pub struct Directory {
    backend: Arc<dyn DirectoryBackend>,
    settings: DirectorySettings,
    names: RwLock<HashMap<String, Cached<Option<AccountName>>>>,
    groups: RwLock<HashMap<String, Cached<Option<UserGroups>>>>,
    /// Normalized user name (lower case) → the account.
    users: RwLock<HashMap<String, Cached<Option<DirectoryUser>>>>,
    /// Lookups under way (single flight): key → a receiver that wakes when it is done.
    inflight: Mutex<HashMap<(FlightKind, String), tokio::sync::watch::Receiver<()>>>,
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
            users: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
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

    /// Single flight: claims the `keys` nobody is fetching yet (the returned flight,
    /// `None` if all are taken) and returns the receivers of the flights that already
    /// fetch the others.
    fn claim(
        &self,
        kind: FlightKind,
        keys: &[String],
    ) -> (Option<Flight<'_>>, Vec<tokio::sync::watch::Receiver<()>>) {
        let (tx, rx) = tokio::sync::watch::channel(());
        let mut mine = Vec::new();
        let mut waits: Vec<tokio::sync::watch::Receiver<()>> = Vec::new();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            match inflight.get(&(kind, k.clone())) {
                Some(other) => {
                    if !waits.iter().any(|w| w.same_channel(other)) {
                        waits.push(other.clone());
                    }
                }
                None => {
                    inflight.insert((kind, k.clone()), rx.clone());
                    mine.push(k.clone());
                }
            }
        }
        drop(inflight);
        let flight = (!mine.is_empty()).then(|| Flight {
            dir: self,
            kind,
            keys: mine,
            _done: tx,
        });
        (flight, waits)
    }

    /// Waits (at most `budget`) until the given flights are done.
    async fn wait_for(&self, waits: Vec<tokio::sync::watch::Receiver<()>>, budget: Duration) {
        if waits.is_empty() {
            return;
        }
        self.count(|s| s.shared += 1);
        let all = async {
            for mut w in waits {
                // Never sent to: returns when the flight's sender is dropped.
                let _ = w.changed().await;
            }
        };
        let _ = tokio::time::timeout(budget, all).await;
    }

    /// How long the backend is still left alone, if it is in its backoff interval.
    fn backoff_left(&self, now: Instant) -> Option<Duration> {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.down_until
            .filter(|t| now < *t)
            .map(|t| t.saturating_duration_since(now))
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

    /// Runs one backend batch under the backoff rule, bounded by `budget`. A failure
    /// (error or timeout) starts or extends the backoff.
    async fn call_within<T>(
        &self,
        now: Instant,
        budget: Duration,
        fut: impl Future<Output = Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        if let Some(left) = self.backoff_left(now) {
            return Err(DirectoryError::Backoff(left));
        }
        self.count(|s| s.backend_calls += 1);
        let result = match tokio::time::timeout(budget, fut).await {
            Ok(r) => r,
            // Reported as the configured bound, whatever part of it was left.
            Err(_) => Err(DirectoryError::Timeout(self.settings.timeout)),
        };
        match result {
            Ok(v) => {
                self.record_success();
                Ok(v)
            }
            Err(e) => {
                self.record_failure(Instant::now().max(now), &e);
                Err(e)
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

    /// Fills in what the directory knows: groups from `tokenGroups` (and the user's SID,
    /// when the login gave none) when the identity has no groups, then the names of
    /// its groups. Never fails: whatever cannot be resolved
    /// in time stays as it was (SIDs only).
    pub async fn enrich(&self, identity: &mut Identity) {
        self.enrich_at(identity, Instant::now()).await;
    }

    /// [`Directory::enrich`] with the clock as a parameter.
    pub async fn enrich_at(&self, identity: &mut Identity, now: Instant) {
        if identity.groups.is_empty() && self.settings.token_groups {
            if let Some(found) = self
                .token_groups_at(&identity.user, &identity.realm, now)
                .await
            {
                if identity.sid.is_none() {
                    identity.sid = found.sid;
                }
                identity.groups = found
                    .groups
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

    /// The SID and transitive group SIDs (cached) of `user` of the realm `realm`
    /// (empty when not known), or `None` if unknown, of another realm, or unavailable.
    pub async fn token_groups_at(
        &self,
        user: &str,
        realm: &str,
        now: Instant,
    ) -> Option<UserGroups> {
        let key = format!("{user}@{realm}").to_ascii_lowercase();
        let cached = |now: Instant| {
            let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
            groups
                .get(&key)
                .filter(|c| now < c.expires)
                .map(|c| c.value.clone())
        };
        if let Some(v) = cached(now) {
            self.count(|s| s.hits += 1);
            return v;
        }
        self.count(|s| s.misses += 1);
        let started = Instant::now();
        let (flight, waits) = self.claim(FlightKind::Groups, std::slice::from_ref(&key));
        if flight.is_none() {
            self.wait_for(waits, self.settings.timeout).await;
            if let Some(v) = cached(now) {
                return v;
            }
        }
        let budget = self.settings.timeout.saturating_sub(started.elapsed());
        if budget.is_zero() {
            return None;
        }
        let found = self
            .call_within(now, budget, self.backend.token_groups(user, realm))
            .await
            .ok()?;
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
        self.name_groups_within(identity, now, self.settings.timeout)
            .await;
    }

    /// [`Directory::name_groups_at`] with the backend call bounded by `budget` (none at
    /// all when the budget is spent).
    async fn name_groups_within(&self, identity: &mut Identity, now: Instant, budget: Duration) {
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
        if missing.is_empty() || budget.is_zero() {
            return;
        }
        let started = Instant::now();
        let (flight, waits) = self.claim(FlightKind::Sid, &missing);
        let mine: Vec<String> = flight.as_ref().map(|f| f.keys.clone()).unwrap_or_default();
        // Ask for ours while others' lookups of the rest are under way.
        let own = async {
            if mine.is_empty() {
                return Vec::new();
            }
            self.call_within(now, budget, self.backend.lookup_sids(&mine))
                .await
                .unwrap_or_default()
        };
        let (mut found, ()) = tokio::join!(own, self.wait_for(waits, budget));
        self.cache_names(&found, now);
        drop(flight);
        // A flight that was cancelled (its client went away) left its SIDs unanswered:
        // ask for those too, if time is left.
        let orphans: Vec<String> = missing
            .iter()
            .filter(|sid| !mine.contains(sid) && self.cached_name(sid, now).is_none())
            .cloned()
            .collect();
        let left = budget.saturating_sub(started.elapsed());
        if !orphans.is_empty() && !left.is_zero() {
            if let Ok(more) = self
                .call_within(now, left, self.backend.lookup_sids(&orphans))
                .await
            {
                self.cache_names(&more, now);
                found.extend(more);
            }
        }
        let found: HashMap<&str, &AccountName> = found
            .iter()
            .filter_map(|(s, n)| n.as_ref().map(|n| (s.as_str(), n)))
            .collect();
        for g in identity.groups.iter_mut().filter(|g| g.name.is_none()) {
            let Some(sid) = g.sid.as_deref() else {
                continue;
            };
            // Ours from the answer (even with a zero TTL), the others' from the cache.
            let name = match found.get(sid) {
                Some(n) => Some((*n).clone()),
                None => self.cached_name(sid, now).flatten(),
            };
            if let Some(name) = name {
                g.name = Some(self.display(&name, domain.as_deref(), sid));
            }
        }
    }

    /// Caches looked-up names (unknown SIDs for the negative TTL).
    fn cache_names(&self, found: &SidNames, now: Instant) {
        if found.is_empty() {
            return;
        }
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        for (sid, name) in found {
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

    /// Finds a user by name (`DOMAIN\\user`, `user@REALM` or `user`) and builds the
    /// identity a login of that user would give: SID, transitive groups (primary group
    /// included) with their names, domain, `user@REALM`. `Ok(None)`: no such user, or a
    /// `DOMAIN\\` or realm that is not this directory's. An error when the directory
    /// cannot tell (down, in backoff, timed out): never guess.
    ///
    /// Answers, positive and negative, are cached like names (`cache_ttl`,
    /// `negative_cache_ttl`), so a disabled account is seen within `cache_ttl`. The
    /// whole call is bounded by the directory timeout.
    pub async fn resolve_user(&self, name: &str) -> Result<Option<ResolvedUser>, DirectoryError> {
        self.resolve_user_at(name, Instant::now()).await
    }

    /// [`Directory::resolve_user`] with the clock as a parameter.
    pub async fn resolve_user_at(
        &self,
        name: &str,
        now: Instant,
    ) -> Result<Option<ResolvedUser>, DirectoryError> {
        let started = Instant::now();
        let Some(user) = self.lookup_user_at(name, now).await? else {
            return Ok(None);
        };
        let realm = user
            .realm
            .clone()
            .or_else(|| {
                user.principal
                    .as_deref()
                    .and_then(|p| p.rsplit_once('@'))
                    .map(|(_, r)| r.to_ascii_uppercase())
            })
            .unwrap_or_default();
        let principal = if realm.is_empty() {
            user.principal
                .clone()
                .unwrap_or_else(|| user.account.clone())
        } else {
            format!("{}@{realm}", user.account)
        };
        let mut groups: Vec<Group> = Vec::with_capacity(user.group_sids.len());
        for sid in &user.group_sids {
            if !groups.iter().any(|g| g.sid.as_deref() == Some(sid)) {
                groups.push(Group {
                    sid: Some(sid.clone()),
                    name: None,
                });
            }
        }
        let mut identity = Identity {
            user: user.account.clone(),
            realm,
            domain: user.domain.clone().or_else(|| self.settings.domain.clone()),
            principal,
            sid: user.sid.clone(),
            groups,
            method: AuthMethod::Kerberos,
            expires: None,
        };
        let budget = self.settings.timeout.saturating_sub(started.elapsed());
        self.name_groups_within(&mut identity, now, budget).await;
        Ok(Some(ResolvedUser {
            identity,
            disabled: user.disabled,
        }))
    }

    /// The account behind `name` as the backend describes it (cached).
    pub async fn lookup_user_at(
        &self,
        name: &str,
        now: Instant,
    ) -> Result<Option<DirectoryUser>, DirectoryError> {
        let Some(parsed) = UserName::parse(name) else {
            return Ok(None);
        };
        if let (
            UserName::Account {
                domain: Some(d), ..
            },
            Some(mine),
        ) = (&parsed, self.settings.domain.as_deref())
        {
            if !d.eq_ignore_ascii_case(mine) {
                return Ok(None);
            }
        }
        let normalized = parsed.to_string();
        let key = normalized.to_lowercase();
        let cached = |now: Instant| {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users
                .get(&key)
                .filter(|c| now < c.expires)
                .map(|c| c.value.clone())
        };
        if let Some(v) = cached(now) {
            self.count(|s| s.hits += 1);
            return Ok(v);
        }
        self.count(|s| s.misses += 1);
        let started = Instant::now();
        let (flight, waits) = self.claim(FlightKind::User, std::slice::from_ref(&key));
        if flight.is_none() {
            self.wait_for(waits, self.settings.timeout).await;
            if let Some(v) = cached(now) {
                return Ok(v);
            }
        }
        let budget = self.settings.timeout.saturating_sub(started.elapsed());
        if budget.is_zero() {
            return Err(DirectoryError::Timeout(self.settings.timeout));
        }
        let found = self
            .call_within(now, budget, self.backend.lookup_user(&normalized))
            .await?;
        // A backend that knows the user's domain has checked it; one that does not
        // cannot contradict the directory's.
        let found = found.filter(|u| match (&parsed, u.domain.as_deref()) {
            (
                UserName::Account {
                    domain: Some(d), ..
                },
                Some(theirs),
            ) => d.eq_ignore_ascii_case(theirs),
            _ => true,
        });
        let ttl = if found.is_some() {
            self.settings.cache_ttl
        } else {
            self.settings.negative_cache_ttl
        };
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        insert_bounded(
            &mut users,
            key,
            Cached {
                value: found.clone(),
                expires: now + ttl,
            },
            now,
        );
        Ok(found)
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
    /// PEM file of the CAs that sign the directory's certificate (`ldaps://`,
    /// StartTLS); only these are trusted then. `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate for any name (logs a warning). Tests and emergencies only.
    pub dangerous_skip_tls_verify: bool,
    /// Allow a simple bind over plain `ldap://` to a host that is not loopback (the
    /// password crosses the network in clear).
    pub dangerous_allow_plaintext_bind: bool,
    /// Bind with SASL GSSAPI (Kerberos) instead of a simple bind; `bind_dn` and
    /// `bind_password_file` must be `None` then.
    pub gssapi: Option<GssapiBind>,
}

/// A SASL GSSAPI bind as a service account whose keys are in a client keytab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssapiBind {
    /// The keytab holding the client principal's keys.
    pub keytab: PathBuf,
    /// The client principal, with its realm: `websvc@EXAMPLE.TEST`.
    pub principal: String,
    /// The directory server's host name for its service principal `ldap/<host>@REALM`
    /// (the realm is the principal's): `dc1.example.test`.
    pub host: String,
}

impl GssapiBind {
    /// The realm of the client principal (`EXAMPLE.TEST`), if it has one.
    pub fn realm(&self) -> Option<&str> {
        self.principal
            .rsplit_once('@')
            .map(|(_, r)| r)
            .filter(|r| !r.is_empty())
    }

    /// The directory's service principal: `ldap/dc1.example.test@EXAMPLE.TEST`.
    pub fn service_principal(&self) -> String {
        format!("ldap/{}@{}", self.host, self.realm().unwrap_or_default())
    }
}

impl Default for LdapSettings {
    /// Empty URL and base DN (fill them in); everything else the safe default.
    fn default() -> Self {
        LdapSettings {
            url: String::new(),
            base_dn: String::new(),
            bind_dn: None,
            bind_password_file: None,
            starttls: false,
            timeout: Duration::from_secs(3),
            ca_file: None,
            dangerous_skip_tls_verify: false,
            dangerous_allow_plaintext_bind: false,
            gssapi: None,
        }
    }
}

/// Active Directory over LDAP: one multiplexed connection, re-established after an
/// error; referrals are never chased.
pub struct LdapBackend {
    settings: LdapSettings,
    password: Option<Zeroizing<String>>,
    /// The TLS client configuration when `ca_file` is set (else ldap3's: system roots,
    /// or no verification with `dangerous_skip_tls_verify`).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `ldaps://` or StartTLS: no SASL security layer (TLS protects the connection).
    uses_tls: bool,
    conn: tokio::sync::Mutex<Option<ldap3::Ldap>>,
    /// The domain's NetBIOS and DNS names, read once from the rootDSE and the
    /// partitions container.
    domain: tokio::sync::OnceCell<DomainNames>,
    /// For SASL GSSAPI binds: the backend's private credential cache (`MEMORY:…`).
    ccache: String,
    /// Held by the blocking thread that talks to the KDC, for as long as it runs (even
    /// after the request that started it timed out): at most one such thread at a time.
    kdc: Arc<tokio::sync::Mutex<()>>,
}

/// What the directory says about its own domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DomainNames {
    /// `EXAMPLE`.
    netbios: Option<String>,
    /// `example.test`.
    dns: Option<String>,
}

impl fmt::Debug for LdapBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapBackend")
            .field("url", &self.settings.url)
            .field("bind_dn", &self.settings.bind_dn)
            .field("gssapi", &self.settings.gssapi)
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
        E::Io { source } => match source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => DirectoryError::Tls(tls.to_string()),
            None => DirectoryError::Unavailable(source.to_string()),
        },
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

/// `userAccountControl`: ACCOUNTDISABLE.
const UF_ACCOUNTDISABLE: u32 = 0x2;
/// `msDS-User-Account-Control-Computed`: LOCKOUT.
const UF_LOCKOUT: u32 = 0x10;

/// The filter that finds one user account by `attr` (`sAMAccountName`,
/// `userPrincipalName`); `value` is escaped as RFC 4515 asks (`*`, `(`, `)`, `\`, NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00`), so a name can never widen the search.
/// `objectCategory=person` leaves out computer accounts (`DC1$` is `objectClass=user`
/// too): nobody acts as a machine.
fn user_filter(attr: &str, value: &str) -> String {
    format!(
        "(&(objectCategory=person)(objectClass=user)({attr}={}))",
        ldap3::ldap_escape(value)
    )
}

/// The values of `attr` as bytes, wherever ldap3 put them: it keeps an attribute whose
/// values all happen to be valid UTF-8 (a binary SID can be) among the text ones.
fn binary_values(entry: &ldap3::SearchEntry, attr: &str) -> Vec<Vec<u8>> {
    let bin = entry
        .bin_attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
        .flat_map(|(_, v)| v.iter().cloned());
    let text = entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
        .flat_map(|(_, v)| v.iter().map(|s| s.as_bytes().to_vec()));
    bin.chain(text).collect()
}

/// The first text value of `attr` (attribute names compare without case).
fn text_value<'e>(entry: &'e ldap3::SearchEntry, attr: &str) -> Option<&'e str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Decodes binary SIDs, skipping (and logging) any that do not decode.
fn decode_sids(values: &[Vec<u8>], dn: &str, attr: &str) -> Vec<String> {
    let mut sids = Vec::with_capacity(values.len());
    for raw in values {
        match iwa_proto::sid::Sid::from_bytes(raw) {
            Ok(s) => sids.push(s.to_string()),
            Err(e) => debug!(%dn, attr, "skipping an undecodable SID: {e}"),
        }
    }
    sids
}

/// `DC=example,DC=test` → `example.test`; `None` when the DN has no `DC=` part.
fn dns_name_of_dn(dn: &str) -> Option<String> {
    let labels: Vec<&str> = dn
        .split(',')
        .filter_map(|rdn| {
            let (k, v) = rdn.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("dc").then_some(v.trim())
        })
        .collect();
    (!labels.is_empty()).then(|| labels.join("."))
}

/// The host (brackets of an IPv6 literal removed) and the port text (empty when none)
/// of an `ldap://` / `ldaps://` URL.
fn ldap_url_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("ldap") && !scheme.eq_ignore_ascii_case("ldaps") {
        return None;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':').unwrap_or(after))
        }
        None => authority.rsplit_once(':').unwrap_or((authority, "")),
    };
    (!host.is_empty()).then_some((host, port))
}

/// The port of an `ldap://` / `ldaps://` URL, when it names one.
fn ldap_url_port(url: &str) -> Option<u16> {
    ldap_url_authority(url)?.1.parse().ok()
}

/// The host of an `ldap://` / `ldaps://` URL (brackets of an IPv6 literal removed).
pub fn ldap_url_host(url: &str) -> Option<&str> {
    ldap_url_authority(url).map(|(host, _)| host)
}

/// A host that is this machine: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a simple bind to `url` would send the password in clear over a network:
/// plain `ldap://` without StartTLS to a host that is not loopback.
pub fn is_plaintext_network_bind(url: &str, starttls: bool) -> bool {
    let tls = url.to_ascii_lowercase().starts_with("ldaps://") || starttls;
    !tls && !ldap_url_host(url).is_some_and(is_loopback_host)
}

/// A rustls client configuration that trusts exactly the CAs of a PEM file, with the
/// usual certificate and host name checks.
pub fn tls_config_from_ca_file(path: &Path) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let err = |m: String| DirectoryError::Config(format!("{}: {m}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(err("no PEM certificate in it".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The principals a keytab file holds keys for, each once, in file order.
pub fn keytab_principals(path: &Path) -> Result<Vec<String>, String> {
    let data = Zeroizing::new(std::fs::read(path).map_err(|e| e.to_string())?);
    let entries = crate::keytab::parse(&data).map_err(|e| e.to_string())?;
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        if !out.contains(&e.principal) {
            out.push(e.principal);
        }
    }
    Ok(out)
}

/// What a SASL GSSAPI bind needs: a `name@REALM` principal, a host name (not an IP
/// address: service principals name hosts), a keytab file, and no simple-bind settings.
fn check_gssapi_bind(g: &GssapiBind, settings: &LdapSettings) -> Result<(), DirectoryError> {
    let config = |m: String| Err(DirectoryError::Config(m));
    if settings.bind_dn.is_some() || settings.bind_password_file.is_some() {
        return config("a SASL GSSAPI bind takes no bind DN or password file".into());
    }
    match g.principal.rsplit_once('@') {
        Some((name, realm)) if !name.is_empty() && !realm.is_empty() => {}
        _ => {
            return config(format!(
                "`{}` is not a Kerberos principal with its realm (name@REALM)",
                g.principal
            ))
        }
    }
    if g.principal.contains(char::is_control) || g.host.contains(char::is_control) {
        return config("control characters in the principal or host".into());
    }
    if g.host.is_empty()
        || g.host.contains(['/', '@', ' '])
        || g.host.parse::<std::net::IpAddr>().is_ok()
    {
        return config(format!(
            "`{}` is not a host name for the directory's service principal ldap/<host>",
            g.host
        ));
    }
    match keytab_principals(&g.keytab) {
        Err(e) => {
            return config(format!("keytab {}: {e}", g.keytab.display()));
        }
        // Not fatal: the gateway serves with SIDs only until the keytab is fixed (and
        // `iwa check` reports it as an error).
        Ok(held) if !held.contains(&g.principal) => warn!(
            keytab = %g.keytab.display(),
            "the keytab holds no key for {}: SASL GSSAPI binds to the directory will fail",
            g.principal
        ),
        Ok(_) => {}
    }
    Ok(())
}

impl LdapBackend {
    /// Checks the settings and reads the password and CA files; does not connect (the
    /// first lookup does, so a directory that is down at start-up does not stop the
    /// gateway).
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
        let uses_tls = lower.starts_with("ldaps://") || settings.starttls;
        if settings.bind_dn.is_some() && is_plaintext_network_bind(&settings.url, settings.starttls)
        {
            if !settings.dangerous_allow_plaintext_bind {
                return Err(DirectoryError::Config(format!(
                    "a simple bind over plain ldap:// to {} would send the password in clear; \
                     use ldaps:// or StartTLS (or dangerous_allow_plaintext_bind)",
                    ldap_url_host(&settings.url).unwrap_or("the server")
                )));
            }
            warn!(
                url = %settings.url,
                "dangerous_allow_plaintext_bind: the LDAP bind password crosses the network in clear"
            );
        }
        if settings.ca_file.is_some() && settings.dangerous_skip_tls_verify {
            return Err(DirectoryError::Config(
                "a CA file and dangerous_skip_tls_verify contradict each other; keep one".into(),
            ));
        }
        if (settings.ca_file.is_some() || settings.dangerous_skip_tls_verify) && !uses_tls {
            return Err(DirectoryError::Config(
                "TLS settings need an ldaps:// URL or StartTLS".into(),
            ));
        }
        if settings.dangerous_skip_tls_verify {
            warn!(
                url = %settings.url,
                "dangerous_skip_tls_verify: the directory's certificate is not checked; \
                 anyone on the path can read the bind password and forge group names"
            );
        }
        let tls = match &settings.ca_file {
            Some(f) => Some(tls_config_from_ca_file(f)?),
            None => None,
        };
        if let Some(g) = &settings.gssapi {
            check_gssapi_bind(g, &settings)?;
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
        static BACKENDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let ccache = format!(
            "MEMORY:iwa-ldap-{}-{}",
            std::process::id(),
            BACKENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Ok(LdapBackend {
            settings,
            password,
            tls,
            uses_tls,
            conn: tokio::sync::Mutex::new(None),
            domain: tokio::sync::OnceCell::new(),
            ccache,
            kdc: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// A fresh Kerberos credential for the SASL GSSAPI bind, with the TGT and the
    /// directory's service ticket in the backend's ccache (fetched on a blocking
    /// thread when not cached yet or expired).
    async fn gssapi_credential(
        &self,
        g: &GssapiBind,
    ) -> Result<crate::gss::InitiatorCred, DirectoryError> {
        let (keytab, principal, ccache, spn) = (
            g.keytab.clone(),
            g.principal.clone(),
            self.ccache.clone(),
            g.service_principal(),
        );
        let kdc = self.kdc.clone();
        let fetch = async move {
            // Waiting here instead of starting a second KDC exchange while one still
            // hangs (its thread holds the lock until MIT gives up).
            let one_at_a_time = kdc.lock_owned().await;
            tokio::task::spawn_blocking(move || {
                let _held = one_at_a_time;
                let cred = crate::gss::InitiatorCred::acquire(&keytab, &principal, &ccache)
                    .map_err(|e| {
                        // MIT's words for a missing key are "No credentials cache found".
                        DirectoryError::Kerberos(match keytab_principals(&keytab) {
                            Ok(held) if !held.contains(&principal) => format!(
                                "the keytab {} holds no key for {principal} (it holds: {})",
                                keytab.display(),
                                if held.is_empty() {
                                    "nothing".into()
                                } else {
                                    held.join(", ")
                                }
                            ),
                            _ => format!(
                                "no credentials for {principal} from the keytab {}: {e}",
                                keytab.display()
                            ),
                        })
                    })?;
                cred.fetch_service_ticket(&spn).map_err(|e| {
                    DirectoryError::Kerberos(format!(
                        "{principal} cannot get a ticket for {spn}: {e}"
                    ))
                })?;
                Ok(cred)
            })
            .await
        };
        // A little under the batch's bound, so that a silent KDC is named as such
        // rather than reported as a directory timeout.
        let bound = self.settings.timeout.mul_f64(0.75);
        match tokio::time::timeout(bound, fetch).await {
            Ok(joined) => joined.map_err(|e| {
                DirectoryError::Kerberos(format!("the Kerberos thread failed: {e}"))
            })?,
            Err(_) => Err(DirectoryError::Kerberos(format!(
                "no ticket for {} within {bound:?}: the KDC does not answer (MIT keeps trying \
                 in the background, up to its own timeouts)",
                g.principal
            ))),
        }
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
        if let (Some(g), false) = (&self.settings.gssapi, self.uses_tls) {
            // Kerberos over plain LDAP: our own bind and confidentiality layer (see
            // `sasl`), ldap3 on the plain end of it.
            let ldap = self.sealed_connection(g).await?;
            *slot = Some(ldap.clone());
            return Ok(ldap);
        }
        let mut conn_settings = ldap3::LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(self.settings.starttls)
            .set_no_tls_verify(self.settings.dangerous_skip_tls_verify);
        if let Some(tls) = &self.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let mut ldap = self.open(conn_settings, &self.settings.url).await?;
        if let Some(g) = &self.settings.gssapi {
            let cred = self.gssapi_credential(g).await?;
            // `ldap/<host>@REALM`: ldap3 prefixes `ldap/`; naming the realm keeps the
            // default realm of krb5.conf out of it (and matches the cached ticket).
            let fqdn = format!("{}@{}", g.host, g.realm().unwrap_or_default());
            let res =
                ldap.sasl_gssapi_cred_bind(cred.into_ldap_cred(), &fqdn)
                    .await
                    .map_err(|e| match e {
                        ldap3::LdapError::GssapiOperationError(m) => DirectoryError::Kerberos(
                            format!("SASL GSSAPI bind as {}: {m}", g.principal),
                        ),
                        ldap3::LdapError::NoGssapiToken => DirectoryError::Bind(
                            "the server sent no GSSAPI token in the SASL bind".into(),
                        ),
                        other => ldap_err(other),
                    })?;
            if res.rc != 0 {
                return Err(DirectoryError::Bind(format!(
                    "result code {} for a SASL GSSAPI bind as {}{}",
                    res.rc,
                    g.principal,
                    if res.text.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", res.text)
                    }
                )));
            }
        } else if let (Some(dn), Some(pw)) = (&self.settings.bind_dn, &self.password) {
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

    /// Connects and binds as configured and reads the domain's names: what `iwa check`
    /// reports. Returns (NetBIOS name, DNS name), each when the directory has it.
    /// Bounded by the configured timeout.
    pub async fn probe(&self) -> Result<(Option<String>, Option<String>), DirectoryError> {
        let timeout = self.settings.timeout;
        let probe = async {
            let mut ldap = self.connection().await?;
            let names = self.domain_names(&mut ldap).await?;
            Ok((names.netbios, names.dns))
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(r) => {
                if r.is_err() {
                    self.forget_connection().await;
                }
                r
            }
            Err(_) => Err(DirectoryError::Timeout(timeout)),
        }
    }

    /// A new connection over plain `ldap://`, bound with SASL GSSAPI and sealed by
    /// our own security layer.
    async fn sealed_connection(&self, g: &GssapiBind) -> Result<ldap3::Ldap, DirectoryError> {
        let host = ldap_url_host(&self.settings.url).ok_or_else(|| {
            DirectoryError::Config(format!("no host in the LDAP URL {}", self.settings.url))
        })?;
        let port = ldap_url_port(&self.settings.url).unwrap_or(389);
        let cred = self.gssapi_credential(g).await?;
        let stream = sasl::bind_sealed(
            host,
            port,
            self.settings.timeout,
            cred,
            &g.service_principal(),
            &g.principal,
        )
        .await?;
        let settings =
            ldap3::LdapConnSettings::new().set_std_stream(ldap3::StdStream::Unix(stream));
        self.open(settings, "ldapi://iwa-sasl-layer").await
    }

    /// Opens an ldap3 connection to `url` and drives it on its own task.
    async fn open(
        &self,
        settings: ldap3::LdapConnSettings,
        url: &str,
    ) -> Result<ldap3::Ldap, DirectoryError> {
        let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(ldap_err)?;
        let url = self.settings.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(%url, "LDAP connection closed: {e}");
            }
        });
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

    async fn groups_of(
        &self,
        user: &str,
        realm: &str,
    ) -> Result<Option<UserGroups>, DirectoryError> {
        let mut ldap = self.connection().await?;
        let result = async {
            if !realm.is_empty() {
                // The directory's own realm is its domain's DNS name (an NTLM login's,
                // without `dns_domain`, its NetBIOS name): only its users.
                let domain = self.domain_names(&mut ldap).await?;
                let mine = |d: &Option<String>| {
                    d.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(realm))
                };
                if !mine(&domain.dns) && !mine(&domain.netbios) {
                    debug!(
                        user,
                        realm,
                        directory = ?domain.dns,
                        "no tokenGroups for a user of another realm"
                    );
                    return Ok(None);
                }
            }
            let filter = format!(
                "(&(objectClass=user)(sAMAccountName={}))",
                ldap3::ldap_escape(user)
            );
            let ldap3::SearchResult(entries, res) = ldap
                .search(
                    &self.settings.base_dn,
                    ldap3::Scope::Subtree,
                    &filter,
                    vec!["objectSid"],
                )
                .await
                .map_err(ldap_err)?;
            if res.rc != 0 && res.rc != NO_SUCH_OBJECT {
                return Err(ldap_err(ldap3::LdapError::LdapResult { result: res }));
            }
            // Continuation references (to the DNS zones etc.) are skipped, not chased.
            let Some(found) = entries
                .into_iter()
                .find(|e| !e.is_ref())
                .map(ldap3::SearchEntry::construct)
            else {
                return Ok(None);
            };
            let dn = found.dn.clone();
            let sid = decode_sids(&binary_values(&found, "objectSid"), &dn, "objectSid")
                .into_iter()
                .next();
            let Some(entry) = Self::read_object(&mut ldap, &dn, &["tokenGroups"]).await? else {
                return Ok(None);
            };
            Ok(Some(UserGroups {
                sid,
                groups: decode_sids(&binary_values(&entry, "tokenGroups"), &dn, "tokenGroups"),
            }))
        }
        .await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result
    }

    /// The domain's names, read once (a failure to read them is not cached).
    async fn domain_names(&self, ldap: &mut ldap3::Ldap) -> Result<DomainNames, DirectoryError> {
        self.domain
            .get_or_try_init(|| async {
                let Some(root) = Self::read_object(
                    ldap,
                    "",
                    &["defaultNamingContext", "configurationNamingContext"],
                )
                .await?
                else {
                    return Ok(DomainNames::default());
                };
                let Some(naming) = text_value(&root, "defaultNamingContext").map(str::to_owned)
                else {
                    return Ok(DomainNames::default());
                };
                let mut names = DomainNames {
                    netbios: None,
                    dns: dns_name_of_dn(&naming),
                };
                if let Some(config) = text_value(&root, "configurationNamingContext") {
                    let ldap3::SearchResult(entries, res) = ldap
                        .search(
                            &format!("CN=Partitions,{config}"),
                            ldap3::Scope::OneLevel,
                            &format!(
                                "(&(objectClass=crossRef)(nCName={}))",
                                ldap3::ldap_escape(naming.as_str())
                            ),
                            vec!["nETBIOSName", "dnsRoot"],
                        )
                        .await
                        .map_err(ldap_err)?;
                    if res.rc == 0 {
                        if let Some(e) = entries
                            .into_iter()
                            .find(|e| !e.is_ref())
                            .map(ldap3::SearchEntry::construct)
                        {
                            names.netbios = text_value(&e, "nETBIOSName").map(str::to_owned);
                            if let Some(d) = text_value(&e, "dnsRoot") {
                                names.dns = Some(d.to_owned());
                            }
                        }
                    } else {
                        debug!(rc = res.rc, "cannot read the domain's NetBIOS name");
                    }
                }
                debug!(?names, "the directory's domain");
                Ok(names)
            })
            .await
            .cloned()
    }

    /// The one entry a user search finds; `None` for none, an error for several.
    async fn find_user_entry(
        &self,
        ldap: &mut ldap3::Ldap,
        attr: &str,
        value: &str,
    ) -> Result<Option<ldap3::SearchEntry>, DirectoryError> {
        let ldap3::SearchResult(entries, res) = ldap
            .search(
                &self.settings.base_dn,
                ldap3::Scope::Subtree,
                &user_filter(attr, value),
                vec![
                    "objectSid",
                    "sAMAccountName",
                    "userPrincipalName",
                    "userAccountControl",
                    "primaryGroupID",
                ],
            )
            .await
            .map_err(ldap_err)?;
        if res.rc != 0 && res.rc != NO_SUCH_OBJECT {
            return Err(ldap_err(ldap3::LdapError::LdapResult { result: res }));
        }
        // Continuation references (to the DNS zones etc.) are skipped, not chased.
        let mut found = entries.into_iter().filter(|e| !e.is_ref());
        let first = found.next().map(ldap3::SearchEntry::construct);
        if found.next().is_some() {
            return Err(DirectoryError::Protocol(format!(
                "more than one user has {attr} {value}"
            )));
        }
        Ok(first)
    }

    async fn user(&self, name: &str) -> Result<Option<DirectoryUser>, DirectoryError> {
        let Some(parsed) = UserName::parse(name) else {
            return Ok(None);
        };
        let mut ldap = self.connection().await?;
        let result = async {
            let domain = self.domain_names(&mut ldap).await?;
            let entry = match &parsed {
                UserName::Account {
                    domain: asked,
                    account,
                } => {
                    if let (Some(a), Some(mine)) = (asked, &domain.netbios) {
                        if !a.eq_ignore_ascii_case(mine) {
                            return Ok(None);
                        }
                    }
                    self.find_user_entry(&mut ldap, "sAMAccountName", account)
                        .await?
                }
                UserName::Principal { account, realm } => {
                    match self
                        .find_user_entry(&mut ldap, "userPrincipalName", &parsed.to_string())
                        .await?
                    {
                        Some(e) => Some(e),
                        // The implicit UPN: sAMAccountName@<the domain's DNS name>.
                        None if domain
                            .dns
                            .as_deref()
                            .is_some_and(|d| d.eq_ignore_ascii_case(realm)) =>
                        {
                            self.find_user_entry(&mut ldap, "sAMAccountName", account)
                                .await?
                        }
                        None => None,
                    }
                }
            };
            let Some(entry) = entry else {
                return Ok(None);
            };
            let dn = entry.dn.clone();
            let sid = binary_values(&entry, "objectSid")
                .first()
                .and_then(|raw| iwa_proto::sid::Sid::from_bytes(raw).ok());
            let uac: u32 = text_value(&entry, "userAccountControl")
                .and_then(|v| v.parse::<i64>().ok())
                .map_or(0, |v| v as u32);
            // tokenGroups (and the computed lockout bit) only come from a base read.
            let extra = Self::read_object(
                &mut ldap,
                &dn,
                &["tokenGroups", "msDS-User-Account-Control-Computed"],
            )
            .await?;
            let computed: u32 = extra
                .as_ref()
                .and_then(|e| text_value(e, "msDS-User-Account-Control-Computed"))
                .and_then(|v| v.parse::<i64>().ok())
                .map_or(0, |v| v as u32);
            let mut group_sids = extra
                .as_ref()
                .map(|e| decode_sids(&binary_values(e, "tokenGroups"), &dn, "tokenGroups"))
                .unwrap_or_default();
            let primary = text_value(&entry, "primaryGroupID")
                .and_then(|v| v.parse::<u32>().ok())
                .and_then(|rid| sid.as_ref()?.parent()?.with_rid(rid).ok())
                .map(|s| s.to_string());
            if let Some(p) = primary {
                if !group_sids.contains(&p) {
                    group_sids.insert(0, p);
                }
            }
            let account = text_value(&entry, "sAMAccountName")
                .map(str::to_owned)
                .unwrap_or_else(|| parsed.account().to_owned());
            Ok(Some(DirectoryUser {
                account,
                domain: domain.netbios.clone(),
                realm: domain.dns.as_deref().map(str::to_ascii_uppercase),
                principal: text_value(&entry, "userPrincipalName").map(str::to_owned),
                sid: sid.map(|s| s.to_string()),
                disabled: uac & UF_ACCOUNTDISABLE != 0 || computed & UF_LOCKOUT != 0,
                group_sids,
            }))
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
        realm: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserGroups>, DirectoryError>> {
        Box::pin(self.groups_of(user, realm))
    }

    fn lookup_user<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        Box::pin(self.user(name))
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
/// realm = "EXAMPLE.TEST"      # optional: users are also found as user@EXAMPLE.TEST
/// disabled = ["EXAMPLE\\carol"] # optional: accounts that cannot log on
///
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
/// A user is anyone listed under `[users]` or as a member that is not a group. With
/// `realm`, Kerberos logins of any other realm get no groups from the file; without it,
/// the file is taken to describe every realm the gateway accepts, and `user@REALM`
/// names (impersonation targets) find nobody.
#[derive(Debug, Clone, Default)]
pub struct StaticBackend {
    path: PathBuf,
    /// SID → full name.
    names: HashMap<String, String>,
    /// Lowercased user (bare name) → transitive group SIDs.
    memberships: HashMap<String, Vec<String>>,
    /// Lowercased user (bare name) → the account.
    users: HashMap<String, StaticUser>,
    /// Lowercased bare names of disabled users.
    disabled: std::collections::HashSet<String>,
    /// The Kerberos realm the file describes.
    realm: Option<String>,
}

#[derive(Debug, Clone)]
struct StaticUser {
    account: String,
    domain: Option<String>,
    sid: Option<String>,
}

impl StaticUser {
    fn from_name(name: &str, sid: Option<String>) -> StaticUser {
        let (domain, account) = match name.rsplit_once('\\') {
            Some((d, a)) if !d.is_empty() => (Some(d.to_owned()), a),
            Some((_, a)) => (None, a),
            None => (None, name),
        };
        StaticUser {
            account: account.to_owned(),
            domain,
            sid,
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticFile {
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    disabled: Vec<String>,
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
        let mut users: HashMap<String, StaticUser> = HashMap::new();
        for (name, sid) in &file.users {
            let sid = (!sid.is_empty()).then(|| sid.clone());
            users
                .entry(bare(name))
                .or_insert_with(|| StaticUser::from_name(name, sid));
        }
        for g in file.groups.values() {
            for m in &g.members {
                if !group_sid.contains_key(&bare(m)) {
                    users
                        .entry(bare(m))
                        .or_insert_with(|| StaticUser::from_name(m, None));
                }
            }
        }
        let mut disabled = std::collections::HashSet::new();
        for d in &file.disabled {
            if !users.contains_key(&bare(d)) {
                return Err(err(format!(
                    "disabled: `{d}` is not a user of this file (under [users] or a member)"
                )));
            }
            disabled.insert(bare(d));
        }
        let realm = match file.realm {
            Some(r) if r.is_empty() || r.contains(['@', '\\']) => {
                return Err(err(format!("realm: `{r}` is not a Kerberos realm")))
            }
            r => r,
        };
        Ok(StaticBackend {
            path: path.to_owned(),
            names,
            memberships,
            users,
            disabled,
            realm,
        })
    }
}

impl StaticBackend {
    fn user(&self, name: &str) -> Option<DirectoryUser> {
        let parsed = UserName::parse(name)?;
        let key = bare(parsed.account());
        let user = self.users.get(&key)?;
        match &parsed {
            UserName::Account {
                domain: Some(asked),
                ..
            } => {
                if user
                    .domain
                    .as_deref()
                    .is_some_and(|d| !d.eq_ignore_ascii_case(asked))
                {
                    return None;
                }
            }
            UserName::Account { domain: None, .. } => {}
            UserName::Principal { realm, .. } => {
                if !self
                    .realm
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(realm))
                {
                    return None;
                }
            }
        }
        Some(DirectoryUser {
            account: user.account.clone(),
            domain: user.domain.clone(),
            realm: self.realm.clone(),
            principal: self
                .realm
                .as_deref()
                .map(|r| format!("{}@{r}", user.account)),
            sid: user.sid.clone(),
            disabled: self.disabled.contains(&key),
            group_sids: self.memberships.get(&key).cloned().unwrap_or_default(),
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
        realm: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserGroups>, DirectoryError>> {
        // The file's realm, or (an NTLM login's) the NetBIOS domain it lists the user in.
        let key = bare(user);
        let other_realm = !realm.is_empty()
            && self
                .realm
                .as_deref()
                .is_some_and(|mine| !mine.eq_ignore_ascii_case(realm))
            && !self
                .users
                .get(&key)
                .and_then(|u| u.domain.as_deref())
                .is_some_and(|d| d.eq_ignore_ascii_case(realm));
        let found = if other_realm {
            None
        } else {
            self.memberships.get(&key).map(|groups| UserGroups {
                sid: self.users.get(&key).and_then(|u| u.sid.clone()),
                groups: groups.clone(),
            })
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn lookup_user<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        Box::pin(std::future::ready(Ok(self.user(name))))
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
        /// Lowercased account → the user.
        users: HashMap<String, DirectoryUser>,
        down: AtomicBool,
        hang: AtomicBool,
        /// Each call takes this long (milliseconds).
        delay_ms: std::sync::atomic::AtomicU64,
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
                self.pause().await;
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
            _realm: &'a str,
        ) -> BoxFuture<'a, Result<Option<UserGroups>, DirectoryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.pause().await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(DirectoryError::Unavailable("connection refused".into()));
                }
                Ok(self.groups.get(user).map(|groups| UserGroups {
                    sid: None,
                    groups: groups.clone(),
                }))
            })
        }

        fn lookup_user<'a>(
            &'a self,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.pause().await;
                self.asked.lock().unwrap().push(name.to_owned());
                if self.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err(DirectoryError::Unavailable("connection refused".into()));
                }
                let parsed = UserName::parse(name).unwrap();
                Ok(self
                    .users
                    .get(&parsed.account().to_ascii_lowercase())
                    .cloned())
            })
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    impl Fake {
        async fn pause(&self) {
            let ms = self.delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    fn fake() -> Arc<Fake> {
        let mut f = Fake::default();
        f.names.insert(sid(1105), "Helpdesk Staff".into());
        f.names.insert(sid(1106), "All Staff".into());
        f.names.insert(sid(513), "Domain Users".into());
        f.groups
            .insert("alice".into(), vec![sid(513), sid(1105), sid(1106)]);
        f.users.insert(
            "alice".into(),
            DirectoryUser {
                account: "alice".into(),
                domain: Some("EXAMPLE".into()),
                realm: Some("EXAMPLE.TEST".into()),
                principal: Some("alice@example.test".into()),
                sid: Some(sid(1104)),
                disabled: false,
                group_sids: vec![sid(513), sid(1105), sid(1106), sid(513)],
            },
        );
        f.users.insert(
            "carol".into(),
            DirectoryUser {
                account: "carol".into(),
                domain: None,
                realm: None,
                principal: None,
                sid: Some(sid(1107)),
                disabled: true,
                group_sids: vec![sid(513)],
            },
        );
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
    fn parses_user_names() {
        let acct = |d: Option<&str>, a: &str| UserName::Account {
            domain: d.map(str::to_owned),
            account: a.to_owned(),
        };
        assert_eq!(
            UserName::parse("EXAMPLE\\bob"),
            Some(acct(Some("EXAMPLE"), "bob"))
        );
        assert_eq!(UserName::parse(" bob "), Some(acct(None, "bob")));
        assert_eq!(
            UserName::parse("bob@EXAMPLE.TEST"),
            Some(UserName::Principal {
                account: "bob".into(),
                realm: "EXAMPLE.TEST".into()
            })
        );
        assert_eq!(
            UserName::parse("a@b@EXAMPLE.TEST"),
            Some(UserName::Principal {
                account: "a@b".into(),
                realm: "EXAMPLE.TEST".into()
            })
        );
        // A domain wins over an `@` in the account part.
        assert_eq!(
            UserName::parse("EXAMPLE\\a@b"),
            Some(acct(Some("EXAMPLE"), "a@b"))
        );
        for bad in [
            "",
            "  ",
            "\\bob",
            "EXAMPLE\\",
            "A\\B\\c",
            "@R",
            "bob@",
            "bo\nb",
            "bob\0",
        ] {
            assert_eq!(UserName::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            UserName::parse("example\\Bob").unwrap().to_string(),
            "example\\Bob"
        );
    }

    #[test]
    fn user_filters_escape_as_rfc4515_asks() {
        assert_eq!(
            user_filter("sAMAccountName", "bob"),
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName=bob))"
        );
        // Every character with a meaning in a filter is hex-escaped, so a name cannot
        // widen the search (`*`) or close the filter and add a clause.
        assert_eq!(
            user_filter("sAMAccountName", "*)(objectClass=*"),
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName=\\2a\\29\\28objectClass=\\2a))"
        );
        assert_eq!(
            user_filter("userPrincipalName", "a\\b\0c@R"),
            "(&(objectCategory=person)(objectClass=user)(userPrincipalName=a\\5cb\\00c@R))"
        );
        // Non-ASCII passes as UTF-8, which RFC 4515 allows.
        assert_eq!(
            user_filter("sAMAccountName", "jürgen"),
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName=jürgen))"
        );
    }

    #[test]
    fn dns_names_of_dns() {
        assert_eq!(
            dns_name_of_dn("DC=example,DC=test").as_deref(),
            Some("example.test")
        );
        assert_eq!(
            dns_name_of_dn("OU=x, dc=corp ,DC=example,DC=com").as_deref(),
            Some("corp.example.com")
        );
        assert_eq!(dns_name_of_dn("CN=Users"), None);
    }

    #[test]
    fn binary_values_come_from_either_map() {
        // ldap3 files an attribute whose values are all valid UTF-8 as text: a binary
        // SID can be. Both places count.
        let ascii_sid = iwa_proto::sid::Sid::new(5, &[32, 545]).unwrap().to_bytes();
        assert!(std::str::from_utf8(&ascii_sid).is_ok());
        let mut e = ldap3::SearchEntry {
            dn: "CN=x".into(),
            attrs: HashMap::new(),
            bin_attrs: HashMap::new(),
        };
        e.attrs.insert(
            "objectsid".into(),
            vec![String::from_utf8(ascii_sid.clone()).unwrap()],
        );
        e.bin_attrs
            .insert("tokenGroups".into(), vec![vec![0xff, 0x00], vec![1, 2]]);
        assert_eq!(binary_values(&e, "objectSid"), vec![ascii_sid]);
        assert_eq!(binary_values(&e, "tokengroups").len(), 2);
        assert_eq!(
            decode_sids(&binary_values(&e, "objectSid"), "CN=x", "objectSid"),
            ["S-1-5-32-545"]
        );
        assert!(decode_sids(&binary_values(&e, "tokenGroups"), "CN=x", "t").is_empty());
    }

    #[tokio::test]
    async fn resolves_a_user_into_a_named_identity() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        for name in ["EXAMPLE\\alice", "alice", "example\\ALICE"] {
            let r = dir.resolve_user_at(name, now).await.unwrap().unwrap();
            assert!(!r.disabled);
            let id = r.identity;
            assert_eq!(id.user, "alice");
            assert_eq!(id.domain.as_deref(), Some("EXAMPLE"));
            assert_eq!(id.realm, "EXAMPLE.TEST");
            assert_eq!(id.principal, "alice@EXAMPLE.TEST");
            assert_eq!(id.remote_user(), "EXAMPLE\\alice");
            assert_eq!(id.sid, Some(sid(1104)));
            assert_eq!(id.method, AuthMethod::Kerberos);
            // Duplicates dropped, every group named through the SID cache.
            assert_eq!(
                names(&id),
                [
                    Some("EXAMPLE\\Domain Users"),
                    Some("EXAMPLE\\Helpdesk Staff"),
                    Some("EXAMPLE\\All Staff")
                ]
            );
        }
        // One lookup per distinct name (the cache key ignores case), one naming batch.
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        dir.resolve_user_at("ALICE", now + Duration::from_secs(599))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.calls.load(Ordering::SeqCst), 3, "cached");
        dir.resolve_user_at("alice", now + Duration::from_secs(601))
            .await
            .unwrap()
            .unwrap();
        // The user and the group names expired together: two calls.
        assert_eq!(f.calls.load(Ordering::SeqCst), 5, "expired");
    }

    #[tokio::test]
    async fn a_disabled_user_is_marked() {
        let f = fake();
        let dir = directory(&f);
        let r = dir.resolve_user("carol").await.unwrap().unwrap();
        assert!(r.disabled);
        assert_eq!(r.identity.sid, Some(sid(1107)));
        // No domain from the backend: the directory's.
        assert_eq!(r.identity.remote_user(), "EXAMPLE\\carol");
        assert_eq!(r.identity.principal, "carol");
    }

    #[tokio::test]
    async fn unknown_and_foreign_users_are_none() {
        let f = fake();
        let dir = directory(&f);
        let now = Instant::now();
        // Another domain: not even asked.
        assert_eq!(dir.resolve_user_at("OTHER\\alice", now).await, Ok(None));
        assert_eq!(dir.resolve_user_at("", now).await, Ok(None));
        assert_eq!(f.calls.load(Ordering::SeqCst), 0);
        // No such user: asked once, then negatively cached for a minute.
        for secs in [0, 30, 59] {
            let got = dir
                .resolve_user_at("nobody", now + Duration::from_secs(secs))
                .await;
            assert_eq!(got, Ok(None));
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            dir.resolve_user_at("nobody", now + Duration::from_secs(61))
                .await,
            Ok(None)
        );
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        // The backend answers with a user of another domain: not this one's.
        let mut other = Fake::default();
        other.users.insert(
            "bob".into(),
            DirectoryUser {
                account: "bob".into(),
                domain: Some("OTHER".into()),
                realm: None,
                principal: None,
                sid: None,
                disabled: false,
                group_sids: vec![],
            },
        );
        let dir = Directory::new(Arc::new(other), DirectorySettings::default());
        assert_eq!(dir.resolve_user("EXAMPLE\\bob").await, Ok(None));
        assert!(dir.resolve_user("OTHER\\bob").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_failing_directory_is_an_error_not_a_no() {
        let f = fake();
        f.down.store(true, Ordering::SeqCst);
        let dir = directory(&f);
        let now = Instant::now();
        assert!(matches!(
            dir.resolve_user_at("alice", now).await,
            Err(DirectoryError::Unavailable(_))
        ));
        // In backoff: an error at once, the backend left alone.
        assert!(matches!(
            dir.resolve_user_at("bob", now + Duration::from_secs(1)).await,
            Err(DirectoryError::Backoff(d)) if d <= Duration::from_secs(5)
        ));
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        // Failures are not cached as "no such user".
        f.down.store(false, Ordering::SeqCst);
        let r = dir
            .resolve_user_at("alice", now + Duration::from_secs(6))
            .await;
        assert!(r.unwrap().is_some());
    }

    #[tokio::test]
    async fn resolving_a_user_never_hangs() {
        let f = fake();
        f.hang.store(true, Ordering::SeqCst);
        let dir = directory(&f);
        let started = Instant::now();
        assert_eq!(
            dir.resolve_user("alice").await,
            Err(DirectoryError::Timeout(Duration::from_millis(200)))
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    fn static_dir(text: &str) -> Directory {
        let backend = StaticBackend::parse(text, Path::new("dir.toml")).unwrap();
        Directory::new(Arc::new(backend), DirectorySettings::default())
    }

    #[tokio::test]
    async fn static_file_resolves_users() {
        let text = format!(
            r#"
realm = "EXAMPLE.TEST"
disabled = ["EXAMPLE\\carol"]

[users]
"EXAMPLE\\alice" = "{a}"
"EXAMPLE\\carol" = "{c}"

[groups."EXAMPLE\\Helpdesk Staff"]
sid = "{h}"
members = ["EXAMPLE\\alice"]

[groups."EXAMPLE\\All Staff"]
sid = "{s}"
members = ["EXAMPLE\\Helpdesk Staff", "Dave"]
"#,
            a = sid(1104),
            c = sid(1107),
            h = sid(1105),
            s = sid(1106)
        );
        let dir = static_dir(&text);
        for name in ["EXAMPLE\\alice", "alice", "ALICE@example.test"] {
            let r = dir.resolve_user(name).await.unwrap().unwrap();
            assert!(!r.disabled, "{name}");
            assert_eq!(r.identity.sid, Some(sid(1104)));
            assert_eq!(r.identity.principal, "alice@EXAMPLE.TEST");
            assert_eq!(r.identity.remote_user(), "EXAMPLE\\alice");
            let mut got = names(&r.identity);
            got.sort();
            assert_eq!(
                got,
                [Some("EXAMPLE\\All Staff"), Some("EXAMPLE\\Helpdesk Staff")]
            );
        }
        let carol = dir.resolve_user("carol").await.unwrap().unwrap();
        assert!(carol.disabled);
        assert!(carol.identity.groups.is_empty());
        // A member that is not under [users]: known, no SID, bare name as written.
        let dave = dir.resolve_user("dave").await.unwrap().unwrap();
        assert_eq!(dave.identity.user, "Dave");
        assert_eq!(dave.identity.sid, None);
        assert_eq!(names(&dave.identity), [Some("EXAMPLE\\All Staff")]);
        for nobody in [
            "nobody",
            "OTHER\\alice",
            "alice@OTHER.TEST",
            "Helpdesk Staff",
        ] {
            assert_eq!(dir.resolve_user(nobody).await, Ok(None), "{nobody}");
        }
    }

    #[tokio::test]
    async fn static_file_groups_only_for_its_own_realm() {
        let text = format!(
            "realm = \"EXAMPLE.TEST\"\n[users]\n\"EXAMPLE\\\\alice\" = \"{a}\"\n\
             [groups.\"EXAMPLE\\\\Staff\"]\nsid = \"{s}\"\nmembers = [\"EXAMPLE\\\\alice\"]\n",
            a = sid(1104),
            s = sid(1106)
        );
        let dir = static_dir(&text);
        let groups_of = |principal: &str| {
            let mut id =
                Identity::from_principal(principal, AuthMethod::Kerberos, &BTreeMap::new());
            let dir = &dir;
            async move {
                dir.enrich(&mut id).await;
                id.groups
                    .iter()
                    .filter_map(|g| g.sid.clone())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(groups_of("alice@EXAMPLE.TEST").await, [sid(1106)]);
        assert_eq!(groups_of("alice@example.test").await, [sid(1106)]);
        // A login without a PAC gets the user's SID from the file too; one with a SID
        // keeps its own.
        let mut id =
            Identity::from_principal("alice@EXAMPLE.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        dir.enrich(&mut id).await;
        assert_eq!(id.sid, Some(sid(1104)));
        let mut id =
            Identity::from_principal("alice@EXAMPLE.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        id.sid = Some(sid(9));
        dir.enrich(&mut id).await;
        assert_eq!(id.sid, Some(sid(9)));
        // An NTLM login without dns_domain: the realm is the NetBIOS domain.
        assert_eq!(groups_of("alice@EXAMPLE").await, [sid(1106)]);
        // A cross-realm alice is somebody else.
        assert!(groups_of("alice@OTHER.TEST").await.is_empty());
        // Without `realm`, the file describes every realm.
        let open = static_dir(&text.replace("realm = \"EXAMPLE.TEST\"\n", ""));
        let mut id =
            Identity::from_principal("alice@OTHER.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        open.enrich(&mut id).await;
        assert_eq!(id.groups.len(), 1);
    }

    #[tokio::test]
    async fn static_file_without_realm_finds_no_principals() {
        let dir = static_dir("[users]\nalice = \"\"\n");
        assert!(dir.resolve_user("alice").await.unwrap().is_some());
        assert!(dir.resolve_user("ANY\\alice").await.unwrap().is_some());
        assert_eq!(dir.resolve_user("alice@EXAMPLE.TEST").await, Ok(None));
        let r = dir.resolve_user("alice").await.unwrap().unwrap();
        assert_eq!(r.identity.principal, "alice");
        assert_eq!(r.identity.realm, "");
        assert_eq!(r.identity.domain, None);
    }

    #[test]
    fn static_file_checks_disabled_and_realm() {
        let e = StaticBackend::parse(
            "disabled = [\"bob\"]\n[users]\nalice = \"\"\n",
            Path::new("f"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`bob` is not a user"), "{e}");
        assert!(StaticBackend::parse("realm = \"a@b\"\n", Path::new("f")).is_err());
        assert!(StaticBackend::parse("realm = \"\"\n", Path::new("f")).is_err());
    }

    fn slow_directory(f: &Arc<Fake>) -> Arc<Directory> {
        f.delay_ms.store(100, Ordering::SeqCst);
        Arc::new(Directory::new(
            f.clone(),
            DirectorySettings {
                domain: Some("EXAMPLE".into()),
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_lookups_share_one_backend_call() {
        // Ten requests of the same user arrive together on a cold cache: one backend
        // call per kind of lookup, not ten.
        let f = fake();
        let dir = slow_directory(&f);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let dir = dir.clone();
            set.spawn(async move {
                let mut id = alice(&[sid(1105), sid(1106)]);
                dir.enrich(&mut id).await;
                id
            });
        }
        while let Some(id) = set.join_next().await {
            let id = id.unwrap();
            assert_eq!(
                names(&id),
                [Some("EXAMPLE\\Helpdesk Staff"), Some("EXAMPLE\\All Staff")]
            );
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
        assert_eq!(dir.stats().shared, 9);

        // tokenGroups, then names.
        let f = fake();
        let dir = slow_directory(&f);
        for _ in 0..10 {
            let dir = dir.clone();
            set.spawn(async move {
                let mut id = alice(&[]);
                dir.enrich(&mut id).await;
                id
            });
        }
        while let Some(id) = set.join_next().await {
            assert_eq!(id.unwrap().groups.len(), 3);
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);

        // Users.
        let f = fake();
        let dir = slow_directory(&f);
        let mut users = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let dir = dir.clone();
            users.spawn(async move { dir.resolve_user("EXAMPLE\\alice").await });
        }
        while let Some(r) = users.join_next().await {
            let r = r.unwrap().unwrap().unwrap();
            assert_eq!(names(&r.identity).len(), 3);
        }
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_lookups_ask_only_for_what_nobody_asks() {
        let f = fake();
        let dir = slow_directory(&f);
        let d = dir.clone();
        let first = tokio::spawn(async move {
            let mut id = alice(&[sid(1105)]);
            d.enrich(&mut id).await;
            id
        });
        while f.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 1105 is under way: the second request asks only for 1106, meanwhile.
        let mut id = alice(&[sid(1105), sid(1106)]);
        dir.enrich(&mut id).await;
        assert_eq!(
            names(&id),
            [Some("EXAMPLE\\Helpdesk Staff"), Some("EXAMPLE\\All Staff")]
        );
        assert_eq!(
            names(&first.await.unwrap()),
            [Some("EXAMPLE\\Helpdesk Staff")]
        );
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
        // Each SID asked once. The fake records after its pause, so the two calls
        // may record in either order on a loaded machine.
        let mut asked = f.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(asked, [sid(1105), sid(1106)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_lookup_does_not_strand_its_waiters() {
        let f = fake();
        let dir = slow_directory(&f);
        let d = dir.clone();
        let leader = tokio::spawn(async move { d.enrich(&mut alice(&[sid(1105)])).await });
        while f.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let d = dir.clone();
        let waiter = tokio::spawn(async move {
            let mut id = alice(&[sid(1105)]);
            d.enrich(&mut id).await;
            id
        });
        while dir.stats().shared == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The client of the first request went away mid-lookup.
        leader.abort();
        let started = Instant::now();
        let id = waiter.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(names(&id), [Some("EXAMPLE\\Helpdesk Staff")]);
        assert_eq!(f.calls.load(Ordering::SeqCst), 2, "the waiter asked itself");
        assert!(dir.inflight.lock().unwrap().is_empty());
    }

    #[test]
    fn url_hosts_and_plaintext_binds() {
        assert_eq!(
            ldap_url_host("ldap://dc.example.test"),
            Some("dc.example.test")
        );
        assert_eq!(ldap_url_host("LDAPS://dc:636/"), Some("dc"));
        assert_eq!(ldap_url_host("ldap://[::1]:389"), Some("::1"));
        assert_eq!(ldap_url_host("ldap://127.0.0.2?x"), Some("127.0.0.2"));
        assert_eq!(ldap_url_host("http://dc"), None);
        assert_eq!(ldap_url_host("ldap://"), None);
        assert_eq!(ldap_url_port("LDAPS://dc:636/"), Some(636));
        assert_eq!(ldap_url_port("ldap://[::1]:3389"), Some(3389));
        assert_eq!(ldap_url_port("ldap://[::1]"), None);
        assert_eq!(ldap_url_port("ldap://127.0.0.2?x"), None);
        assert_eq!(ldap_url_port("ldap://127.0.0.2:x"), None);
        assert!(is_plaintext_network_bind("ldap://dc.example.test", false));
        assert!(is_plaintext_network_bind("ldap://10.1.2.3:389", false));
        assert!(!is_plaintext_network_bind("ldap://dc.example.test", true));
        assert!(!is_plaintext_network_bind("ldaps://dc.example.test", false));
        for local in ["ldap://127.0.0.2", "ldap://localhost:3389", "ldap://[::1]"] {
            assert!(!is_plaintext_network_bind(local, false), "{local}");
        }
    }

    #[test]
    fn ldap_backend_refuses_unsafe_settings() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let base = LdapSettings {
            url: "ldap://dc.example.test".into(),
            base_dn: "DC=example,DC=test".into(),
            bind_dn: Some("EXAMPLE\\iwa".into()),
            bind_password_file: Some(pw.clone()),
            ..Default::default()
        };
        let e = LdapBackend::new(base.clone()).unwrap_err();
        assert!(e.to_string().contains("in clear"), "{e}");
        LdapBackend::new(LdapSettings {
            starttls: true,
            ..base.clone()
        })
        .unwrap();
        LdapBackend::new(LdapSettings {
            dangerous_allow_plaintext_bind: true,
            ..base.clone()
        })
        .unwrap();
        // Anonymous binds send no password.
        LdapBackend::new(LdapSettings {
            bind_dn: None,
            bind_password_file: None,
            ..base.clone()
        })
        .unwrap();
        let missing = LdapSettings {
            url: "ldaps://dc".into(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..base.clone()
        };
        assert!(matches!(
            LdapBackend::new(missing),
            Err(DirectoryError::Config(_))
        ));
        let not_pem = LdapSettings {
            url: "ldaps://dc".into(),
            ca_file: Some(pw.clone()),
            ..base.clone()
        };
        assert!(LdapBackend::new(not_pem).is_err());
        let both = LdapSettings {
            url: "ldaps://dc".into(),
            dangerous_skip_tls_verify: true,
            ca_file: Some(pw.clone()),
            ..base.clone()
        };
        assert!(LdapBackend::new(both).is_err());
        let no_tls = LdapSettings {
            url: "ldap://127.0.0.2".into(),
            dangerous_skip_tls_verify: true,
            ..base.clone()
        };
        assert!(LdapBackend::new(no_tls).is_err());
        LdapBackend::new(LdapSettings {
            url: "ldaps://dc".into(),
            dangerous_skip_tls_verify: true,
            ..base
        })
        .unwrap();
    }

    #[test]
    fn gssapi_bind_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("ldap.keytab");
        std::fs::write(&keytab, [5u8, 2]).unwrap(); // a keytab with no keys
        let g = GssapiBind {
            keytab: keytab.clone(),
            principal: "iwa-svc@EXAMPLE.TEST".into(),
            host: "dc1.example.test".into(),
        };
        assert_eq!(g.realm(), Some("EXAMPLE.TEST"));
        assert_eq!(g.service_principal(), "ldap/dc1.example.test@EXAMPLE.TEST");
        let base = LdapSettings {
            url: "ldap://dc1.example.test".into(),
            base_dn: "DC=example,DC=test".into(),
            gssapi: Some(g.clone()),
            ..Default::default()
        };
        // Plain ldap:// to a remote host: no password crosses it, the SASL layer seals.
        LdapBackend::new(base.clone()).unwrap();
        let with = |g: GssapiBind| LdapSettings {
            gssapi: Some(g),
            ..base.clone()
        };
        for bad in [
            GssapiBind {
                principal: "iwa-svc".into(),
                ..g.clone()
            },
            GssapiBind {
                principal: "@EXAMPLE.TEST".into(),
                ..g.clone()
            },
            GssapiBind {
                host: "127.0.0.2".into(),
                ..g.clone()
            },
            GssapiBind {
                host: "ldap/dc1".into(),
                ..g.clone()
            },
            GssapiBind {
                host: String::new(),
                ..g.clone()
            },
            GssapiBind {
                keytab: dir.path().join("missing.keytab"),
                ..g.clone()
            },
        ] {
            assert!(
                matches!(
                    LdapBackend::new(with(bad.clone())),
                    Err(DirectoryError::Config(_))
                ),
                "{bad:?}"
            );
        }
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let both = LdapSettings {
            bind_dn: Some("EXAMPLE\\iwa".into()),
            bind_password_file: Some(pw),
            ..base.clone()
        };
        assert!(LdapBackend::new(both).is_err());
        assert_eq!(keytab_principals(&keytab), Ok(vec![]));
        assert!(keytab_principals(&dir.path().join("missing.keytab")).is_err());
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
