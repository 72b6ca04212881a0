//! A throwaway MIT Kerberos realm: config files, database, a `krb5kdc` child on a free
//! loopback port, principals, keytabs and client credential caches. Nothing global is
//! read or written: every tool runs with `KRB5_CONFIG` / `KRB5_KDC_PROFILE` pointing
//! into the realm's directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{RealmError, Result};
use crate::process::{self, ChildGuard};
use crate::util::{self, TempDir};

/// Realm name used when none is given.
pub const DEFAULT_REALM: &str = "IWA.TEST";
/// Environment variable naming the directory of a running shared realm (written by
/// `iwa-realm up`). [`MitRealm::standard`] and [`MitRealm::from_env`] attach to it.
pub const REALM_ENV: &str = "IWA_TEST_REALM";
/// Name of the state file in a realm directory; its presence means "ready".
pub const STATE_FILE: &str = "realm.json";
/// Name of the shell file with `export` lines, written by [`MitRealm::write_env_file`].
pub const ENV_FILE: &str = "env";
/// Name of the pid file of the KDC, written by [`MitRealm::write_state`].
pub const PID_FILE: &str = "kdc.pid";

/// Standard fixture: user `alice`.
pub const ALICE: &str = "alice";
/// Password of [`ALICE`].
pub const ALICE_PASSWORD: &str = "alice-Pa55word";
/// Standard fixture: user `bob`.
pub const BOB: &str = "bob";
/// Password of [`BOB`].
pub const BOB_PASSWORD: &str = "bob-Pa55word";
/// Standard fixture: the service clients reach at `http://localhost:PORT/`.
pub const HTTP_SERVICE: &str = "HTTP/localhost";
/// Standard fixture: a second service, for "ticket for another service" tests.
pub const OTHER_SERVICE: &str = "HTTP/other.test";
/// Keytab (in the realm dir) holding only [`HTTP_SERVICE`].
pub const HTTP_KEYTAB: &str = "http.keytab";
/// Keytab (in the realm dir) holding only [`OTHER_SERVICE`].
pub const OTHER_KEYTAB: &str = "other.keytab";
/// Keytab (in the realm dir) holding both services.
pub const BOTH_KEYTAB: &str = "both.keytab";

const MASTER_PASSWORD: &str = "iwa-test-master-key";
const STATE_VERSION: u32 = 1;
const START_ATTEMPTS: u32 = 5;

/// How to create a realm.
#[derive(Clone, Debug)]
pub struct RealmOptions {
    /// Realm name (upper case by convention). Default [`DEFAULT_REALM`].
    pub realm: String,
    /// Directory for config, database, logs, keytabs and ccaches. `None`: a fresh temp
    /// dir, removed when the realm is dropped (unless `IWA_KEEP_TEST_DIRS=1`).
    pub dir: Option<PathBuf>,
    /// How long to wait for one `krb5kdc` start attempt to answer.
    pub start_timeout: Duration,
}

impl Default for RealmOptions {
    fn default() -> Self {
        RealmOptions {
            realm: DEFAULT_REALM.to_owned(),
            dir: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl RealmOptions {
    /// Set the realm name.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Use (and keep) this directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
}

/// What `realm.json` records: enough for another process to attach.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RealmState {
    /// Format version.
    pub version: u32,
    /// Realm name.
    pub realm: String,
    /// Realm directory (absolute).
    pub dir: PathBuf,
    /// KDC port on 127.0.0.1 (TCP and UDP).
    pub kdc_port: u16,
    /// PID of the running `krb5kdc`.
    pub kdc_pid: u32,
    /// Client configuration (`KRB5_CONFIG`).
    pub krb5_conf: PathBuf,
    /// KDC configuration (`KRB5_KDC_PROFILE`).
    pub kdc_conf: PathBuf,
    /// Users created through this API, name (without realm) → password.
    pub users: BTreeMap<String, String>,
    /// Services created through this API (without realm), e.g. `HTTP/localhost`.
    pub services: Vec<String>,
    /// Keytabs exported through this API: path → principals in it.
    pub keytabs: BTreeMap<PathBuf, Vec<String>>,
    /// True when the standard fixtures ([`MitRealm::install_standard_fixtures`]) exist.
    pub standard: bool,
}

/// One entry of a keytab as `klist -k -e -t` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeytabEntry {
    /// Key version number.
    pub kvno: u32,
    /// Full principal name, e.g. `HTTP/localhost@IWA.TEST`.
    pub principal: String,
    /// Encryption type name, e.g. `aes256-cts-hmac-sha1-96`.
    pub enctype: String,
}

/// A running (or attached) MIT Kerberos realm on loopback.
///
/// ```no_run
/// use iwa_testrealm::{MitRealm, ALICE, ALICE_PASSWORD};
/// let realm = MitRealm::standard()?;          // attaches to $IWA_TEST_REALM if set
/// let cc = realm.kinit(ALICE, ALICE_PASSWORD)?;
/// let out = std::process::Command::new("klist").envs(cc.env()).output()?;
/// assert!(out.status.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MitRealm {
    state: RealmState,
    /// `Some` when this value owns the KDC (created here, not attached, not detached).
    kdc: Option<ChildGuard>,
    /// `Some` when the directory is a temp dir owned by this value. Declared after
    /// `kdc` so the KDC stops before its directory is removed.
    _tmp: Option<TempDir>,
}

impl MitRealm {
    /// Create a realm and start its KDC. Takes well under a second on a quiet machine.
    pub fn create(opts: RealmOptions) -> Result<MitRealm> {
        validate_word("realm", &opts.realm)?;
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d)
                    .map_err(|e| RealmError::io(format!("mkdir {}", d.display()), e))?;
                (None, d.clone())
            }
            None => {
                let t = TempDir::new("iwa-realm")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let dir = fs::canonicalize(&dir)
            .map_err(|e| RealmError::io(format!("canonicalize {}", dir.display()), e))?;
        if dir.join("principal").exists() || dir.join(STATE_FILE).exists() {
            return Err(RealmError::Invalid(format!(
                "{} already holds a realm database; stop it (`iwa-realm down`) and use an empty dir",
                dir.display()
            )));
        }
        fs::create_dir_all(dir.join("ccache")).map_err(|e| RealmError::io("mkdir ccache", e))?;

        let state = RealmState {
            version: STATE_VERSION,
            realm: opts.realm.clone(),
            krb5_conf: dir.join("krb5.conf"),
            kdc_conf: dir.join("kdc.conf"),
            dir,
            kdc_port: util::free_tcp_udp_port()?,
            kdc_pid: 0,
            users: BTreeMap::new(),
            services: Vec::new(),
            keytabs: BTreeMap::new(),
            standard: false,
        };
        write_configs(&state)?;
        let mut realm = MitRealm {
            state,
            kdc: None,
            _tmp: tmp,
        };
        realm.run_tool(
            "kdb5_util",
            &["create", "-s", "-r", &opts.realm, "-P", MASTER_PASSWORD],
            None,
        )?;
        realm.start_kdc(opts.start_timeout)?;
        Ok(realm)
    }

    /// A realm with the standard fixtures: users [`ALICE`] and [`BOB`], services
    /// [`HTTP_SERVICE`] and [`OTHER_SERVICE`], keytabs [`HTTP_KEYTAB`], [`OTHER_KEYTAB`]
    /// and [`BOTH_KEYTAB`] in the realm dir.
    ///
    /// If `IWA_TEST_REALM` is set and names a ready realm with the standard fixtures (as
    /// plain `iwa-realm up --dir DIR` creates), attaches to it instead. If it is set but
    /// unusable, says so on stderr and creates a private realm.
    pub fn standard() -> Result<MitRealm> {
        match MitRealm::from_env() {
            Ok(Some(realm)) if realm.state.standard => return Ok(realm),
            Ok(Some(realm)) => eprintln!(
                "iwa-testrealm: ${REALM_ENV}={} has no standard fixtures (start it with plain \
                 `iwa-realm up --dir DIR`); creating a private realm",
                realm.state.dir.display()
            ),
            Ok(None) => {}
            Err(e) => {
                eprintln!("iwa-testrealm: ignoring ${REALM_ENV}: {e}; creating a private realm")
            }
        }
        let mut realm = MitRealm::create(RealmOptions::default())?;
        realm.install_standard_fixtures()?;
        Ok(realm)
    }

    /// Attach to the realm named by `$IWA_TEST_REALM`, if the variable is set (and not
    /// empty). An error if it is set but the realm there is not ready.
    pub fn from_env() -> Result<Option<MitRealm>> {
        match std::env::var_os(REALM_ENV) {
            Some(dir) if !dir.is_empty() => MitRealm::attach(Path::new(&dir)).map(Some),
            _ => Ok(None),
        }
    }

    /// Attach to a running realm created by another process. Dropping the returned
    /// value neither stops the KDC nor removes the directory.
    pub fn attach(dir: &Path) -> Result<MitRealm> {
        let state = read_state(dir)?;
        if state.version != STATE_VERSION {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("state version {} (want {STATE_VERSION})", state.version),
            });
        }
        if state.kdc_pid != 0 && !process::pid_alive(state.kdc_pid) {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("KDC pid {} is not running", state.kdc_pid),
            });
        }
        if !util::tcp_open(kdc_addr(state.kdc_port)) {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("nothing answers on 127.0.0.1:{}", state.kdc_port),
            });
        }
        Ok(MitRealm {
            state,
            kdc: None,
            _tmp: None,
        })
    }

    /// Add the standard fixtures (see [`MitRealm::standard`]) to this realm.
    pub fn install_standard_fixtures(&mut self) -> Result<()> {
        let dir = self.state.dir.clone();
        let http = dir.join(HTTP_KEYTAB);
        let other = dir.join(OTHER_KEYTAB);
        let both = dir.join(BOTH_KEYTAB);
        let cmds = [
            format!("addprinc -pw {ALICE_PASSWORD} {ALICE}"),
            format!("addprinc -pw {BOB_PASSWORD} {BOB}"),
            format!("addprinc -randkey {HTTP_SERVICE}"),
            format!("addprinc -randkey {OTHER_SERVICE}"),
            format!("ktadd -k {} -norandkey {HTTP_SERVICE}", http.display()),
            format!("ktadd -k {} -norandkey {OTHER_SERVICE}", other.display()),
            format!(
                "ktadd -k {} -norandkey {HTTP_SERVICE} {OTHER_SERVICE}",
                both.display()
            ),
        ];
        self.kadmin(&cmds)?;
        let s = &mut self.state;
        s.users.insert(ALICE.into(), ALICE_PASSWORD.into());
        s.users.insert(BOB.into(), BOB_PASSWORD.into());
        s.services.push(HTTP_SERVICE.into());
        s.services.push(OTHER_SERVICE.into());
        s.keytabs.insert(http, vec![HTTP_SERVICE.into()]);
        s.keytabs.insert(other, vec![OTHER_SERVICE.into()]);
        s.keytabs
            .insert(both, vec![HTTP_SERVICE.into(), OTHER_SERVICE.into()]);
        s.standard = true;
        Ok(())
    }

    /// Add a user principal with a known password. `name` is without realm.
    pub fn add_principal(&mut self, name: &str, password: &str) -> Result<()> {
        validate_word("principal", name)?;
        validate_word("password", password)?;
        self.kadmin(&[format!("addprinc -pw {password} {name}")])?;
        self.state.users.insert(name.into(), password.into());
        Ok(())
    }

    /// Add a service principal (e.g. `HTTP/localhost`) with a random key.
    pub fn add_service(&mut self, principal: &str) -> Result<()> {
        validate_word("principal", principal)?;
        self.kadmin(&[format!("addprinc -randkey {principal}")])?;
        self.state.services.push(principal.into());
        Ok(())
    }

    /// Write the current keys of `principals` to the keytab at `path` (appending if it
    /// exists). Keys are not changed (`ktadd -norandkey`), so earlier keytabs and tickets
    /// stay valid.
    pub fn export_keytab(&mut self, principals: &[&str], path: &Path) -> Result<()> {
        if principals.is_empty() {
            return Err(RealmError::Invalid("export_keytab: no principals".into()));
        }
        for p in principals {
            validate_word("principal", p)?;
        }
        let path = absolute(path)?;
        validate_word("keytab path", &path.display().to_string())?;
        self.kadmin(&[format!(
            "ktadd -k {} -norandkey {}",
            path.display(),
            principals.join(" ")
        )])?;
        let entry = self.state.keytabs.entry(path).or_default();
        for p in principals {
            if !entry.iter().any(|e| e == p) {
                entry.push((*p).to_owned());
            }
        }
        Ok(())
    }

    /// Get a TGT for `principal` (with or without `@REALM`) into a new `FILE:` ccache in
    /// the realm dir. The password goes to `kinit` on stdin. A wrong password is an
    /// error ([`RealmError::ToolFailed`]).
    pub fn kinit(&self, principal: &str, password: &str) -> Result<Ccache> {
        let principal = self.principal(principal);
        let safe: String = principal
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self
            .state
            .dir
            .join("ccache")
            .join(format!("{safe}-{}", util::unique_suffix()));
        let cc = Ccache {
            path,
            principal: principal.clone(),
            krb5_conf: self.state.krb5_conf.clone(),
        };
        let mut stdin = password.as_bytes().to_vec();
        stdin.push(b'\n');
        let mut cmd = Command::new("kinit");
        cmd.arg("-c").arg(cc.name()).arg(&principal);
        cc.apply(&mut cmd);
        run(cmd, "kinit", &principal, Some(&stdin))?;
        Ok(cc)
    }

    /// Run `kadmin.local` commands (one per line, in one process). Fails if any command
    /// printed an error. Returns stdout.
    pub fn kadmin<S: AsRef<str>>(&self, commands: &[S]) -> Result<String> {
        let mut script = String::new();
        for c in commands {
            let c = c.as_ref();
            if c.contains('\n') {
                return Err(RealmError::Invalid("kadmin command with a newline".into()));
            }
            script.push_str(c);
            script.push('\n');
        }
        let out = self.run_tool(
            "kadmin.local",
            &["-r", &self.state.realm],
            Some(script.as_bytes()),
        )?;
        Ok(out)
    }

    /// Entries of a keytab (`klist -k -e -t`).
    pub fn list_keytab(&self, path: &Path) -> Result<Vec<KeytabEntry>> {
        let mut cmd = Command::new("klist");
        cmd.arg("-k")
            .arg("-e")
            .arg(path)
            .env("KRB5_CONFIG", &self.state.krb5_conf);
        let out = run(cmd, "klist", &format!("-k -e {}", path.display()), None)?;
        Ok(parse_klist_keytab(&out))
    }

    /// `user@REALM` for `user`; unchanged if it already names a realm.
    pub fn principal(&self, name: &str) -> String {
        if name.contains('@') {
            name.to_owned()
        } else {
            format!("{name}@{}", self.state.realm)
        }
    }

    /// The realm name.
    pub fn realm(&self) -> &str {
        &self.state.realm
    }

    /// The realm directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// Client configuration file; what `KRB5_CONFIG` must point at.
    pub fn krb5_conf(&self) -> &Path {
        &self.state.krb5_conf
    }

    /// KDC configuration file; what `KRB5_KDC_PROFILE` must point at.
    pub fn kdc_conf(&self) -> &Path {
        &self.state.kdc_conf
    }

    /// KDC address (TCP and UDP).
    pub fn kdc_addr(&self) -> SocketAddr {
        kdc_addr(self.state.kdc_port)
    }

    /// PID of the KDC.
    pub fn kdc_pid(&self) -> u32 {
        self.state.kdc_pid
    }

    /// True if this value was attached to a realm owned by someone else.
    pub fn is_attached(&self) -> bool {
        self.kdc.is_none()
    }

    /// The recorded state (what `realm.json` holds).
    pub fn state(&self) -> &RealmState {
        &self.state
    }

    /// Path of a file in the realm dir, e.g. `realm.path(HTTP_KEYTAB)`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.state.dir.join(name)
    }

    /// Standard fixture keytab with only [`HTTP_SERVICE`].
    pub fn http_keytab(&self) -> PathBuf {
        self.path(HTTP_KEYTAB)
    }

    /// Standard fixture keytab with only [`OTHER_SERVICE`].
    pub fn other_keytab(&self) -> PathBuf {
        self.path(OTHER_KEYTAB)
    }

    /// Standard fixture keytab with both services.
    pub fn both_keytab(&self) -> PathBuf {
        self.path(BOTH_KEYTAB)
    }

    /// Variables a Kerberos client of this realm needs (without a ccache): `KRB5_CONFIG`.
    /// See [`Ccache::env`] for the set including `KRB5CCNAME`.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![("KRB5_CONFIG", self.state.krb5_conf.clone().into_os_string())]
    }

    /// Variables the MIT admin tools need: `KRB5_CONFIG` and `KRB5_KDC_PROFILE`.
    pub fn admin_env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("KRB5_CONFIG", self.state.krb5_conf.clone().into_os_string()),
            (
                "KRB5_KDC_PROFILE",
                self.state.kdc_conf.clone().into_os_string(),
            ),
        ]
    }

    /// Write `realm.json` (atomically: the file appears complete or not at all) and
    /// `kdc.pid`. Another process can then [`attach`](MitRealm::attach).
    pub fn write_state(&self) -> Result<()> {
        let dir = &self.state.dir;
        write_atomic(
            &dir.join(PID_FILE),
            format!("{}\n", self.state.kdc_pid).as_bytes(),
        )?;
        let json = serde_json::to_vec_pretty(&self.state).map_err(|e| RealmError::State {
            path: dir.join(STATE_FILE),
            source: e,
        })?;
        write_atomic(&dir.join(STATE_FILE), &json)
    }

    /// Write `<dir>/env`: shell `export` lines for `KRB5_CONFIG`, `KRB5_KDC_PROFILE` and
    /// `IWA_TEST_REALM`.
    pub fn write_env_file(&self) -> Result<PathBuf> {
        let mut s = String::new();
        for (k, v) in self.admin_env() {
            let _ = writeln!(s, "export {k}={}", shell_quote(&v.to_string_lossy()));
        }
        let _ = writeln!(
            s,
            "export {REALM_ENV}={}",
            shell_quote(&self.state.dir.to_string_lossy())
        );
        let path = self.state.dir.join(ENV_FILE);
        write_atomic(&path, s.as_bytes())?;
        Ok(path)
    }

    /// Leave the KDC and the directory in place when this value is dropped (for
    /// `iwa-realm up`). Returns the state; stop it later with [`stop_dir`].
    pub fn detach(mut self) -> RealmState {
        if let Some(g) = self.kdc.take() {
            let _ = g.disown();
        }
        if let Some(t) = self._tmp.take() {
            let _ = t.into_path();
        }
        self.state.clone()
    }

    /// Stop the KDC now if this value owns it (no-op when attached).
    pub fn stop(&mut self) {
        if let Some(mut g) = self.kdc.take() {
            g.stop();
        }
    }

    fn start_kdc(&mut self, timeout: Duration) -> Result<()> {
        let log = self.state.dir.join("kdc.log");
        let mut reason = String::new();
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                self.state.kdc_port = util::free_tcp_udp_port()?;
                write_configs(&self.state)?;
            }
            let stderr = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.state.dir.join("kdc.stderr"))
                .map_err(|e| RealmError::io("open kdc.stderr", e))?;
            let mut cmd = Command::new("krb5kdc");
            cmd.arg("-n")
                .arg("-r")
                .arg(&self.state.realm)
                .envs(self.admin_env())
                .env_remove("KRB5CCNAME")
                .env_remove("KRB5_KTNAME")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            let child = cmd.spawn().map_err(|e| RealmError::ToolMissing {
                program: "krb5kdc".into(),
                source: e,
            })?;
            let mut guard = ChildGuard::new(child).with_grace(Duration::from_secs(3));
            let pid = guard.id();
            let marker = format!("krb5kdc[{pid}](info): commencing operation");
            let addr = kdc_addr(self.state.kdc_port);
            let deadline = Instant::now() + timeout;
            let mut ready = false;
            while Instant::now() < deadline {
                if let Some(status) = guard.try_wait() {
                    reason = format!(
                        "krb5kdc exited with {status} (port {})",
                        self.state.kdc_port
                    );
                    break;
                }
                let logged = fs::read_to_string(&log).is_ok_and(|l| l.contains(&marker));
                if logged && util::tcp_open(addr) {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if ready {
                self.state.kdc_pid = pid;
                self.kdc = Some(guard);
                return Ok(());
            }
            if reason.is_empty() {
                reason = format!("no answer on {addr} within {timeout:?}");
            }
            drop(guard);
        }
        Err(RealmError::KdcStart {
            attempts: START_ATTEMPTS,
            reason,
            log_tail: tail(&log, 20),
        })
    }

    fn run_tool(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.admin_env())
            .env_remove("KRB5CCNAME")
            .env_remove("KRB5_KTNAME");
        // Never echo the master password into error messages.
        let shown = args
            .iter()
            .map(|a| if *a == MASTER_PASSWORD { "***" } else { a })
            .collect::<Vec<_>>()
            .join(" ");
        let out = run_full(cmd, program, &shown, stdin)?;
        if program == "kadmin.local" {
            let errors: Vec<&str> = out
                .stderr
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty() && !l.to_ascii_lowercase().contains("no policy specified")
                })
                .collect();
            if !errors.is_empty() {
                return Err(RealmError::Kadmin {
                    message: errors.join("; "),
                });
            }
        }
        Ok(out.stdout)
    }
}

impl Drop for MitRealm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stop the KDC of a realm directory written by [`MitRealm::write_state`] (what
/// `iwa-realm down` does): SIGTERM to the PID in `kdc.pid` if that PID is a `krb5kdc`,
/// SIGKILL after a bound. Returns the PID stopped, or `None` if nothing was running.
pub fn stop_dir(dir: &Path) -> Result<Option<u32>> {
    let pid_path = dir.join(PID_FILE);
    let text = match fs::read_to_string(&pid_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RealmError::io(format!("read {}", pid_path.display()), e)),
    };
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| RealmError::Invalid(format!("{}: not a pid: {text:?}", pid_path.display())))?;
    let _ = fs::remove_file(dir.join(STATE_FILE));
    if pid == 0 || !process::pid_alive(pid) {
        let _ = fs::remove_file(&pid_path);
        return Ok(None);
    }
    // Guard against a recycled PID: only signal a krb5kdc.
    if process::pid_comm(pid).as_deref() != Some("krb5kdc") {
        return Err(RealmError::Invalid(format!(
            "pid {pid} from {} is not krb5kdc; not signalling it",
            pid_path.display()
        )));
    }
    if !process::terminate_pid(pid, process::DEFAULT_STOP_GRACE) {
        return Err(RealmError::Invalid(format!("pid {pid} survived SIGKILL")));
    }
    let _ = fs::remove_file(&pid_path);
    Ok(Some(pid))
}

/// A credential cache (`FILE:` type) holding a TGT; the file is removed on drop.
#[derive(Debug)]
pub struct Ccache {
    pub(crate) path: PathBuf,
    pub(crate) principal: String,
    pub(crate) krb5_conf: PathBuf,
}

impl Ccache {
    /// `FILE:<path>`, the value for `KRB5CCNAME`.
    pub fn name(&self) -> String {
        format!("FILE:{}", self.path.display())
    }

    /// The ccache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its client principal, `user@REALM`.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// `KRB5_CONFIG` and `KRB5CCNAME`: everything a client (curl, python-gssapi, ...)
    /// needs to authenticate as this principal.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("KRB5_CONFIG", self.krb5_conf.clone().into_os_string()),
            ("KRB5CCNAME", OsString::from(self.name())),
        ]
    }

    /// Set [`Ccache::env`] on `cmd` (and remove variables that could redirect it).
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env_remove("KRB5_CLIENT_KTNAME").envs(self.env())
    }
}

impl Drop for Ccache {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn kdc_addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn write_configs(s: &RealmState) -> Result<()> {
    let d = s.dir.display();
    let r = &s.realm;
    let p = s.kdc_port;
    let kdc = format!(
        "[kdcdefaults]
    kdc_listen = 127.0.0.1:{p}
    kdc_tcp_listen = 127.0.0.1:{p}

[realms]
    {r} = {{
        database_name = {d}/principal
        key_stash_file = {d}/stash
        acl_file = {d}/kadm5.acl
        kdc_listen = 127.0.0.1:{p}
        kdc_tcp_listen = 127.0.0.1:{p}
        max_life = 1d
        max_renewable_life = 7d
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{d}/kdc.log
    admin_server = FILE:{d}/kadmin.log
    default = FILE:{d}/krb5lib.log
"
    );
    let lower = r.to_ascii_lowercase();
    let client = format!(
        "[libdefaults]
    default_realm = {r}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    ignore_acceptor_hostname = false
    forwardable = true
    ticket_lifetime = 1d

[realms]
    {r} = {{
        kdc = 127.0.0.1:{p}
    }}

[domain_realm]
    localhost = {r}
    .test = {r}
    other.test = {r}
    .{lower} = {r}
"
    );
    write_atomic(&s.kdc_conf, kdc.as_bytes())?;
    write_atomic(&s.krb5_conf, client.as_bytes())?;
    // An empty ACL so a stray kadmind (never started by us) would grant nothing.
    let acl = s.dir.join("kadm5.acl");
    if !acl.exists() {
        write_atomic(&acl, b"")?;
    }
    Ok(())
}

fn read_state(dir: &Path) -> Result<RealmState> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(|e| RealmError::NotReady {
        dir: dir.to_path_buf(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RealmError::State { path, source: e })
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", util::unique_suffix()));
    let res = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| RealmError::io(format!("write {}", path.display()), e))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .map_err(|e| RealmError::io("current_dir", e))
    }
}

/// Principal names, passwords and paths go into kadmin's command line: no whitespace,
/// quotes or control characters.
fn validate_word(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return Err(RealmError::Invalid(format!(
            "{what} {s:?} must be non-empty without whitespace or quotes"
        )));
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Parse `klist -k -e` output: lines like `   2 HTTP/localhost@IWA.TEST (aes256-cts-hmac-sha1-96) `.
pub fn parse_klist_keytab(out: &str) -> Vec<KeytabEntry> {
    out.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let kvno = it.next()?.parse().ok()?;
            let principal = it.next()?.to_owned();
            let enctype = it
                .next()
                .map(|e| e.trim_start_matches('(').trim_end_matches(')').to_owned())
                .unwrap_or_default();
            Some(KeytabEntry {
                kvno,
                principal,
                enctype,
            })
        })
        .collect()
}

/// How long a realm tool (kdb5_util, kadmin.local, kinit, klist) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn run(cmd: Command, program: &str, shown_args: &str, stdin: Option<&[u8]>) -> Result<String> {
    run_full(cmd, program, shown_args, stdin).map(|o| o.stdout)
}

fn run_full(
    cmd: Command,
    program: &str,
    shown_args: &str,
    stdin: Option<&[u8]>,
) -> Result<process::ToolOutput> {
    process::run_tool(cmd, program, shown_args, stdin, TOOL_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_klist_keytab_output() {
        let out = "Keytab name: FILE:/tmp/x/http.keytab\nKVNO Principal\n---- ----\n   1 HTTP/localhost@IWA.TEST (aes256-cts-hmac-sha1-96) \n   2 HTTP/localhost@IWA.TEST (aes128-cts-hmac-sha1-96) \n";
        let e = parse_klist_keytab(out);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kvno, 1);
        assert_eq!(e[0].principal, "HTTP/localhost@IWA.TEST");
        assert_eq!(e[1].enctype, "aes128-cts-hmac-sha1-96");
    }

    #[test]
    fn rejects_words_kadmin_would_split() {
        assert!(validate_word("p", "alice").is_ok());
        assert!(validate_word("p", "a b").is_err());
        assert!(validate_word("p", "a\"b").is_err());
        assert!(validate_word("p", "").is_err());
        assert!(validate_word("p", "a\nb").is_err());
    }

    #[test]
    fn shell_quotes_single_quotes() {
        assert_eq!(shell_quote("/tmp/a'b"), "'/tmp/a'\\''b'");
    }
}
