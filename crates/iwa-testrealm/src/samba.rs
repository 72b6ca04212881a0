//! A real Active Directory domain controller (Samba AD DC) on 127.0.0.2, for tests that
//! need what MIT cannot give: a PAC with group SIDs, LDAP (`tokenGroups`), and NTLM
//! pass-through through winbindd.
//!
//! * [`SambaDc::provision`]: `samba-tool domain provision` into a directory, then
//!   `samba -F` as a child in its own process group, ready when 127.0.0.2:88/389/445
//!   answer and `wbinfo -P` succeeds. Dropping the value stops the whole process tree
//!   (SIGTERM to the master, SIGKILL after a bound, then every remaining descendant).
//! * [`SambaDc::standard`]: the shared DC with the standard fixtures (users [`AD_ALICE`],
//!   [`AD_BOB`], [`AD_CAROL`] (disabled), [`AD_DAVE`]; groups [`HELPDESK_STAFF`] inside
//!   [`ALL_STAFF`], [`SALES`]; service account [`AD_SERVICE_ACCOUNT`] with SPN
//!   [`AD_HTTP_SERVICE`], AES only, keytab [`AD_HTTP_KEYTAB`], and as a Kerberos client
//!   [`AD_SERVICE_CLIENT`] with the client keytab [`AD_CLIENT_KEYTAB`]; the SPN
//!   [`AD_LDAP_SERVICE`] on the DC for SASL GSSAPI binds; a test CA
//!   ([`SambaDc::tls_ca_file`]) whose certificate for [`DC_FQDN`] / [`DC_IP`] the DC
//!   serves on LDAPS and StartTLS). Provisioning takes seconds, so one DC serves many
//!   test processes:
//!   - `IWA_TEST_SAMBA=D` set: attach to the DC in `D` (from `iwa-realm samba up --dir D`);
//!   - else `IWA_TEST_REALM=R` set (scripts/test): the first caller provisions into
//!     `R/../samba` under an exclusive lock, later callers attach; the DC is left running
//!     and whoever created the run dir stops it (`iwa-realm samba down --dir R/../samba`);
//!   - else: a machine-wide DC in `$TMPDIR/iwa-samba-shared/dc`, reference counted with
//!     file locks: the last process using it stops it and removes the directory.
//!
//! Only one DC can run per machine: it binds 127.0.0.2 and, because libwbclient (and so
//! `wbinfo`, `ntlm_auth` and iwa's winbind validator) only looks for winbindd at the
//! compiled-in `/run/samba/winbindd`, its winbindd socket lives there. Starting a second
//! one fails with a clear error instead of stealing the socket.
//!
//! Needs the Debian packages `samba samba-ad-dc samba-ad-provision winbind ldap-utils
//! krb5-user` (`scripts/deps.sh`) and root (port 88, `/run/samba`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{RealmError, Result};
use crate::process;
use crate::realm::{parse_klist_keytab, KeytabEntry, REALM_ENV};
use crate::util::{self, TempDir};

/// Environment variable naming the directory of a running DC (`iwa-realm samba up --dir D`).
pub const SAMBA_ENV: &str = "IWA_TEST_SAMBA";
/// State file in a DC directory; its presence means "ready".
pub const SAMBA_STATE_FILE: &str = "samba.json";
/// Pid file of the `samba` master process.
pub const SAMBA_PID_FILE: &str = "samba.pid";
/// Shell file with `export IWA_TEST_SAMBA=...`, written by [`SambaDc::write_env_file`].
pub const SAMBA_ENV_FILE: &str = "env";
/// Written instead of the state file when provisioning a run-scoped DC failed, so the
/// other test processes of the run fail fast with the same reason.
pub const SAMBA_FAILED_FILE: &str = "samba.failed";

/// Kerberos realm of the DC.
pub const AD_REALM: &str = "EXAMPLE.TEST";
/// NetBIOS domain name.
pub const AD_DOMAIN: &str = "EXAMPLE";
/// DNS domain name.
pub const AD_DNS_DOMAIN: &str = "example.test";
/// Base DN of the domain partition.
pub const AD_BASE_DN: &str = "DC=example,DC=test";
/// Host name of the DC (`dc1.example.test`).
pub const DC_HOST_NAME: &str = "dc1";
/// The loopback address the DC binds (KDC 88, LDAP 389, SMB 445, ...).
pub const DC_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The domain administrator.
pub const AD_ADMIN: &str = "Administrator";
/// Password of [`AD_ADMIN`].
pub const AD_ADMIN_PASSWORD: &str = "Admin-AD-Pa55word";
/// Fixture: user in [`HELPDESK_STAFF`] (so, transitively, in [`ALL_STAFF`]).
pub const AD_ALICE: &str = "alice";
/// Password of [`AD_ALICE`].
pub const AD_ALICE_PASSWORD: &str = "alice-AD-Pa55word";
/// Fixture: user in no special group.
pub const AD_BOB: &str = "bob";
/// Password of [`AD_BOB`].
pub const AD_BOB_PASSWORD: &str = "bob-AD-Pa55word";
/// Fixture: disabled account (its password is right, the logon must still fail).
pub const AD_CAROL: &str = "carol";
/// Password of [`AD_CAROL`].
pub const AD_CAROL_PASSWORD: &str = "carol-AD-Pa55word";
/// Fixture: user in [`SALES`].
pub const AD_DAVE: &str = "dave";
/// Password of [`AD_DAVE`].
pub const AD_DAVE_PASSWORD: &str = "dave-AD-Pa55word";
/// Fixture group holding [`AD_ALICE`]; itself a member of [`ALL_STAFF`].
pub const HELPDESK_STAFF: &str = "Helpdesk Staff";
/// Fixture group holding [`HELPDESK_STAFF`].
pub const ALL_STAFF: &str = "All Staff";
/// Fixture group holding [`AD_DAVE`].
pub const SALES: &str = "Sales";
/// Fixture: the service account carrying [`AD_HTTP_SERVICE`].
pub const AD_SERVICE_ACCOUNT: &str = "websvc";
/// Fixture SPN (`HTTP/localhost@EXAMPLE.TEST`), AES keys only.
pub const AD_HTTP_SERVICE: &str = "HTTP/localhost";
/// Keytab (in the DC dir) holding [`AD_HTTP_SERVICE`].
pub const AD_HTTP_KEYTAB: &str = "http.keytab";
/// Fixture: the service account as a Kerberos client (`websvc@EXAMPLE.TEST`): what
/// iwa binds to LDAP as with SASL GSSAPI.
pub const AD_SERVICE_CLIENT: &str = "websvc@EXAMPLE.TEST";
/// Keytab (in the DC dir) holding [`AD_SERVICE_CLIENT`]'s keys (a client keytab).
pub const AD_CLIENT_KEYTAB: &str = "websvc.keytab";
/// The DC's fully qualified host name: what its LDAPS certificate names and what the
/// LDAP service principal [`AD_LDAP_SERVICE`] is for.
pub const DC_FQDN: &str = "dc1.example.test";
/// The DC's LDAP service principal (an SPN of the `DC1$` account; the fixture adds it,
/// since the disabled `dnsupdate` service would).
pub const AD_LDAP_SERVICE: &str = "ldap/dc1.example.test";
/// Directory (in the DC dir) of the test CA and the DC's certificate for LDAPS/StartTLS.
pub const DC_TLS_DIR: &str = "tls";
/// `msDS-SupportedEncryptionTypes` of the service account: AES128 | AES256.
pub const AES_ONLY_ENCTYPES: u32 = 24;
/// Where libwbclient looks for winbindd (compiled in; the smb.conf setting is ignored by
/// clients). The DC's `winbindd socket directory` points here.
pub const WINBINDD_SOCKET_DIR: &str = "/run/samba/winbindd";

const STATE_VERSION: u32 = 1;
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const LOCK_TIMEOUT: Duration = Duration::from_secs(900);
const STOP_GRACE: Duration = Duration::from_secs(10);
const READY_PORTS: [u16; 3] = [88, 389, 445];

/// How `samba` runs its services (`samba -M`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessModel {
    /// All AD services in one process (plus smbd and winbindd): 8 processes, ~135 MiB
    /// PSS, ready in ~0.5 s, stops in < 0.1 s. The default: plenty for tests on 2 cores.
    #[default]
    Single,
    /// Samba's production default: a pool of workers per service (~50 processes, ~165 MiB
    /// PSS, ~1 s to start, ~2 s to stop).
    Prefork,
}

impl ProcessModel {
    /// The value for `samba -M`.
    pub fn as_arg(self) -> &'static str {
        match self {
            ProcessModel::Single => "single",
            ProcessModel::Prefork => "prefork",
        }
    }
}

impl std::str::FromStr for ProcessModel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "single" => Ok(ProcessModel::Single),
            "prefork" => Ok(ProcessModel::Prefork),
            other => Err(format!("unknown process model {other:?} (single|prefork)")),
        }
    }
}

/// How to provision a DC.
#[derive(Clone, Debug)]
pub struct SambaOptions {
    /// Directory for the whole DC (database, config, logs, keytabs, ccaches). `None`: a
    /// fresh temp dir, removed when the DC is dropped (unless `IWA_KEEP_TEST_DIRS=1`).
    pub dir: Option<PathBuf>,
    /// `samba -M` process model.
    pub model: ProcessModel,
    /// How long to wait for the started DC to answer.
    pub start_timeout: Duration,
}

impl Default for SambaOptions {
    fn default() -> Self {
        SambaOptions {
            dir: None,
            model: ProcessModel::default(),
            start_timeout: Duration::from_secs(90),
        }
    }
}

impl SambaOptions {
    /// Use (and keep) this directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Choose the process model.
    pub fn model(mut self, model: ProcessModel) -> Self {
        self.model = model;
        self
    }
}

/// Seconds each phase took (for reports; `0.0` if the phase did not run here).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SambaTimings {
    /// `samba-tool domain provision`.
    pub provision_secs: f64,
    /// From spawning `samba` to ready.
    pub start_secs: f64,
    /// Installing the standard fixtures.
    pub fixtures_secs: f64,
}

/// What `samba.json` records: enough for another process to attach.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SambaState {
    /// Format version.
    pub version: u32,
    /// DC directory (absolute; `samba-tool --targetdir`).
    pub dir: PathBuf,
    /// Kerberos realm ([`AD_REALM`]).
    pub realm: String,
    /// NetBIOS domain ([`AD_DOMAIN`]).
    pub domain: String,
    /// Base DN ([`AD_BASE_DN`]).
    pub base_dn: String,
    /// Address the DC binds ([`DC_IP`]).
    pub host_ip: Ipv4Addr,
    /// The DC's smb.conf (`<dir>/etc/smb.conf`); pass it to `wbinfo`/`ntlm_auth`/`samba-tool`.
    pub smb_conf: PathBuf,
    /// Client Kerberos configuration for the realm (`KRB5_CONFIG`), KDC 127.0.0.2, no DNS.
    pub krb5_conf: PathBuf,
    /// Process model the DC runs with.
    pub model: ProcessModel,
    /// PID of the `samba` master (0 when stopped).
    pub samba_pid: u32,
    /// Start time of the master (`/proc/<pid>/stat` field 22), against PID reuse.
    pub samba_start_ticks: u64,
    /// Domain SID (random per provision).
    pub domain_sid: String,
    /// Users created through this API: name → password.
    pub users: BTreeMap<String, String>,
    /// The exported service keytab, if any.
    pub http_keytab: Option<PathBuf>,
    /// The test CA that signs the DC's LDAPS/StartTLS certificate (subjectAltName
    /// `DNS:dc1.example.test, DNS:dc1, IP:127.0.0.2`); `None` for a DC provisioned
    /// before the fixture made one (Samba's autogenerated certificate then).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The client keytab of [`AD_SERVICE_CLIENT`] (SASL GSSAPI binds), if exported.
    #[serde(default)]
    pub client_keytab: Option<PathBuf>,
    /// True when the standard fixtures exist.
    pub standard: bool,
    /// How long the phases took.
    pub timings: SambaTimings,
}

/// A running (or attached) Samba AD DC on [`DC_IP`].
///
/// ```no_run
/// use iwa_testrealm::{SambaDc, AD_ALICE, AD_ALICE_PASSWORD, HELPDESK_STAFF};
/// let dc = SambaDc::standard()?;
/// let cc = dc.kinit(AD_ALICE, AD_ALICE_PASSWORD)?;
/// let groups = dc.token_groups(AD_ALICE)?;
/// assert!(groups.contains(&dc.group_sid(HELPDESK_STAFF)?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SambaDc {
    state: SambaState,
    /// `Some` when this value owns the running DC (stops it on drop).
    server: Option<Server>,
    /// `Some` for a user of the machine-wide reference-counted DC.
    share: Option<Share>,
    /// `Some` when the directory is a temp dir owned by this value (after `server`, so
    /// the DC stops before its directory is removed).
    _tmp: Option<TempDir>,
}

impl SambaDc {
    /// Provision a new domain and start the DC. Fails early if another DC already uses
    /// 127.0.0.2 or the winbindd socket. Takes ~4 s on a quiet machine.
    pub fn provision(opts: SambaOptions) -> Result<SambaDc> {
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d)
                    .map_err(|e| RealmError::io(format!("mkdir {}", d.display()), e))?;
                (None, d.clone())
            }
            None => {
                let t = TempDir::new("iwa-samba")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let dir = fs::canonicalize(&dir)
            .map_err(|e| RealmError::io(format!("canonicalize {}", dir.display()), e))?;
        if dir.join(SAMBA_STATE_FILE).exists() || dir.join("private").join("sam.ldb").exists() {
            return Err(RealmError::Invalid(format!(
                "{} already holds a Samba domain; stop it (`iwa-realm samba down`) and use an empty dir",
                dir.display()
            )));
        }
        check_dc_resources_free()?;
        fs::create_dir_all(dir.join("ccache")).map_err(|e| RealmError::io("mkdir ccache", e))?;
        let provision_conf = dir.join("provision.conf");
        write_atomic(&provision_conf, b"")?;

        let state = SambaState {
            version: STATE_VERSION,
            realm: AD_REALM.into(),
            domain: AD_DOMAIN.into(),
            base_dn: AD_BASE_DN.into(),
            host_ip: DC_IP,
            smb_conf: dir.join("etc").join("smb.conf"),
            krb5_conf: dir.join("krb5.conf"),
            model: opts.model,
            samba_pid: 0,
            samba_start_ticks: 0,
            domain_sid: String::new(),
            users: BTreeMap::new(),
            http_keytab: None,
            tls_ca_file: None,
            client_keytab: None,
            standard: false,
            timings: SambaTimings::default(),
            dir,
        };
        let mut dc = SambaDc {
            state,
            server: None,
            share: None,
            _tmp: tmp,
        };

        let started = Instant::now();
        let d = dc.state.dir.clone();
        let args: Vec<String> = vec![
            "domain".into(),
            "provision".into(),
            "-s".into(),
            provision_conf.display().to_string(),
            format!("--targetdir={}", d.display()),
            format!("--realm={AD_REALM}"),
            format!("--domain={AD_DOMAIN}"),
            "--server-role=dc".into(),
            format!("--host-name={DC_HOST_NAME}"),
            format!("--host-ip={DC_IP}"),
            "--use-rfc2307".into(),
            "--dns-backend=SAMBA_INTERNAL".into(),
            format!("--adminpass={AD_ADMIN_PASSWORD}"),
            // Without the /8 the interface is silently dropped (LAB.md).
            format!("--option=interfaces={DC_IP}/8"),
            "--option=bind interfaces only=yes".into(),
            "--option=server services=-nbt -dnsupdate -wrepl -ntp".into(),
            format!("--option=winbindd socket directory={WINBINDD_SOCKET_DIR}"),
        ];
        let out = dc.samba_tool_raw(&args, Duration::from_secs(600))?;
        if let Some(sid) = parse_provision_sid(&out) {
            dc.state.domain_sid = sid;
        }
        dc.state.tls_ca_file = Some(write_dc_pki(&d.join(DC_TLS_DIR))?);
        patch_smb_conf(&dc.state)?;
        write_krb5_conf(&dc.state)?;
        dc.state.timings.provision_secs = started.elapsed().as_secs_f64();
        dc.start(opts.start_timeout)?;
        Ok(dc)
    }

    /// The DC everyone shares, with the standard fixtures (see the module docs for where
    /// it comes from: `IWA_TEST_SAMBA`, else a run-scoped DC next to `IWA_TEST_REALM`,
    /// else a machine-wide reference-counted one).
    pub fn standard() -> Result<SambaDc> {
        if let Some(dc) = SambaDc::from_env()? {
            if !dc.state.standard {
                return Err(RealmError::NotReady {
                    dir: dc.state.dir.clone(),
                    reason: format!(
                        "${SAMBA_ENV} names a DC without the standard fixtures (start it with \
                         plain `iwa-realm samba up --dir DIR`)"
                    ),
                });
            }
            return Ok(dc);
        }
        match std::env::var_os(REALM_ENV) {
            Some(realm) if !realm.is_empty() => {
                let realm = PathBuf::from(realm);
                let base = realm
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(&realm)
                    .to_path_buf();
                SambaDc::run_scoped(&base.join("samba"), &base.join("samba.lock"))
            }
            _ => SambaDc::machine_shared(&std::env::temp_dir().join("iwa-samba-shared")),
        }
    }

    /// Attach to the DC named by `$IWA_TEST_SAMBA`, if set and not empty (an error if it
    /// is set but not ready).
    pub fn from_env() -> Result<Option<SambaDc>> {
        match std::env::var_os(SAMBA_ENV) {
            Some(dir) if !dir.is_empty() => SambaDc::attach(Path::new(&dir)).map(Some),
            _ => Ok(None),
        }
    }

    /// Attach to a running DC started by another process. Dropping the returned value
    /// neither stops the DC nor removes its directory.
    pub fn attach(dir: &Path) -> Result<SambaDc> {
        let state = read_state(dir)?;
        if state.version != STATE_VERSION {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("state version {} (want {STATE_VERSION})", state.version),
            });
        }
        if !same_process(state.samba_pid, state.samba_start_ticks) {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("samba pid {} is not running", state.samba_pid),
            });
        }
        let ldap = SocketAddr::from((state.host_ip, 389));
        if !util::tcp_open(ldap) {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!("nothing answers on {ldap}"),
            });
        }
        Ok(SambaDc {
            state,
            server: None,
            share: None,
            _tmp: None,
        })
    }

    /// Run-scoped sharing: first caller provisions into `dir` under `lock`, later callers
    /// attach; the DC is left running for the rest of the run.
    fn run_scoped(dir: &Path, lock: &Path) -> Result<SambaDc> {
        let _guard = FileLock::acquire(lock, true, LOCK_TIMEOUT)?;
        let failed = dir.join(SAMBA_FAILED_FILE);
        if let Ok(reason) = fs::read_to_string(&failed) {
            return Err(RealmError::NotReady {
                dir: dir.to_path_buf(),
                reason: format!(
                    "an earlier test process of this run failed to provision it: {reason}"
                ),
            });
        }
        if dir.join(SAMBA_STATE_FILE).exists() {
            match SambaDc::attach(dir) {
                Ok(dc) if dc.state.standard => return Ok(dc),
                Ok(_) => {
                    return Err(RealmError::NotReady {
                        dir: dir.to_path_buf(),
                        reason: "DC without the standard fixtures".into(),
                    })
                }
                Err(e) => {
                    eprintln!("iwa-testrealm: shared Samba DC unusable ({e}); re-provisioning")
                }
            }
        }
        let _ = stop_dir(dir);
        if dir.exists() {
            fs::remove_dir_all(dir)
                .map_err(|e| RealmError::io(format!("remove stale {}", dir.display()), e))?;
        }
        let started = Instant::now();
        let result = SambaDc::provision(SambaOptions::default().dir(dir)).and_then(|mut dc| {
            dc.install_standard_fixtures()?;
            dc.write_state()?;
            dc.write_env_file()?;
            Ok(dc)
        });
        match result {
            Ok(dc) => {
                let _ = dc.detach();
                eprintln!(
                    "iwa-testrealm: Samba DC provisioned in {:?} and left running for this run in {} \
                     (stop: iwa-realm samba down --dir {})",
                    started.elapsed(),
                    dir.display(),
                    dir.display()
                );
                SambaDc::attach(dir)
            }
            Err(e) => {
                let _ = fs::create_dir_all(dir);
                let _ = write_atomic(&failed, e.to_string().as_bytes());
                Err(e)
            }
        }
    }

    /// Machine-wide sharing with a reference count: every user holds a shared lock on
    /// `users.lock`; arrivals and departures serialize on `ctl.lock`; the departing
    /// process that finds no other user stops the DC and removes it.
    fn machine_shared(base: &Path) -> Result<SambaDc> {
        fs::create_dir_all(base)
            .map_err(|e| RealmError::io(format!("mkdir {}", base.display()), e))?;
        let _ctl = FileLock::acquire(&base.join("ctl.lock"), true, LOCK_TIMEOUT)?;
        let users = FileLock::acquire(&base.join("users.lock"), false, Duration::from_secs(30))?;
        let dir = base.join("dc");
        let mut dc = match SambaDc::attach(&dir) {
            Ok(dc) if dc.state.standard => dc,
            _ => {
                let _ = stop_dir(&dir);
                if dir.exists() {
                    fs::remove_dir_all(&dir).map_err(|e| {
                        RealmError::io(format!("remove stale {}", dir.display()), e)
                    })?;
                }
                let mut dc = SambaDc::provision(SambaOptions::default().dir(&dir))?;
                dc.install_standard_fixtures()?;
                dc.write_state()?;
                dc.write_env_file()?;
                let _ = dc.detach();
                SambaDc::attach(&dir)?
            }
        };
        dc.share = Some(Share {
            base: base.to_path_buf(),
            users: Some(users),
        });
        Ok(dc)
    }

    /// Add the standard fixtures (see the module docs). Needs the DC running.
    pub fn install_standard_fixtures(&mut self) -> Result<()> {
        let started = Instant::now();
        self.samba_tool(&[
            "domain",
            "passwordsettings",
            "set",
            "--max-pwd-age=0",
            "--complexity=off",
        ])?;
        for (user, pw) in [
            (AD_ALICE, AD_ALICE_PASSWORD),
            (AD_BOB, AD_BOB_PASSWORD),
            (AD_CAROL, AD_CAROL_PASSWORD),
            (AD_DAVE, AD_DAVE_PASSWORD),
        ] {
            self.add_user(user, pw)?;
        }
        self.samba_tool(&["user", "disable", AD_CAROL])?;
        for g in [HELPDESK_STAFF, ALL_STAFF, SALES] {
            self.samba_tool(&["group", "add", g])?;
        }
        self.samba_tool(&["group", "addmembers", HELPDESK_STAFF, AD_ALICE])?;
        self.samba_tool(&["group", "addmembers", ALL_STAFF, HELPDESK_STAFF])?;
        self.samba_tool(&["group", "addmembers", SALES, AD_DAVE])?;
        self.samba_tool(&["user", "create", AD_SERVICE_ACCOUNT, "--random-password"])?;
        self.samba_tool(&["spn", "add", AD_HTTP_SERVICE, AD_SERVICE_ACCOUNT])?;
        self.ldap_modify(&format!(
            "dn: CN={AD_SERVICE_ACCOUNT},CN=Users,{AD_BASE_DN}\nchangetype: modify\n\
             replace: msDS-SupportedEncryptionTypes\nmsDS-SupportedEncryptionTypes: {AES_ONLY_ENCTYPES}\n"
        ))?;
        let keytab = self.path(AD_HTTP_KEYTAB);
        self.export_keytab(AD_HTTP_SERVICE, &keytab)?;
        let entries = self.list_keytab(&keytab)?;
        if entries.is_empty() || !entries.iter().all(|e| e.enctype.starts_with("aes")) {
            return Err(RealmError::Invalid(format!(
                "exported keytab {} should hold AES keys only: {entries:?}",
                keytab.display()
            )));
        }
        self.state.http_keytab = Some(keytab);
        self.state.client_keytab = Some(self.install_ldap_gssapi_fixtures()?);
        self.state.standard = true;
        self.state.timings.fixtures_secs = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// What a SASL GSSAPI bind to the DC's LDAP needs: the SPN [`AD_LDAP_SERVICE`] on the
    /// DC's account (Samba's KDC does not map `ldap/` to `HOST/`: without it the service
    /// ticket request fails with "Server not found in Kerberos database") and the client
    /// keytab [`AD_CLIENT_KEYTAB`] of [`AD_SERVICE_CLIENT`]. Idempotent; returns the
    /// keytab.
    fn install_ldap_gssapi_fixtures(&self) -> Result<PathBuf> {
        let account = format!("{}$", DC_HOST_NAME.to_ascii_uppercase());
        let spns = self.samba_tool(&["spn", "list", &account])?;
        if !spns
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case(AD_LDAP_SERVICE))
        {
            self.samba_tool(&["spn", "add", AD_LDAP_SERVICE, &account])?;
        }
        let keytab = self.path(AD_CLIENT_KEYTAB);
        // Exported next to it, then renamed: the keytab's presence means "all done".
        let tmp = keytab.with_extension(format!("tmp-{}", util::unique_suffix()));
        let exported = self
            .export_keytab(AD_SERVICE_CLIENT, &tmp)
            .and_then(|()| self.list_keytab(&tmp));
        let entries = match exported {
            Ok(e) => e,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if !entries.iter().any(|e| e.principal == AD_SERVICE_CLIENT) {
            let _ = fs::remove_file(&tmp);
            return Err(RealmError::Invalid(format!(
                "exported keytab for {AD_SERVICE_CLIENT} holds {entries:?}"
            )));
        }
        fs::rename(&tmp, &keytab)
            .map_err(|e| RealmError::io(format!("rename to {}", keytab.display()), e))?;
        Ok(keytab)
    }

    /// The client keytab of [`AD_SERVICE_CLIENT`] and the DC's LDAP SPN for SASL GSSAPI
    /// binds. A DC provisioned before the fixture had them gets them now (once, under a
    /// lock in its directory: a few seconds).
    pub fn client_keytab(&self) -> Result<PathBuf> {
        let keytab = self.path(AD_CLIENT_KEYTAB);
        if keytab.is_file() {
            return Ok(keytab);
        }
        let _lock = FileLock::acquire(&self.path("fixtures.lock"), true, LOCK_TIMEOUT)?;
        if keytab.is_file() {
            return Ok(keytab);
        }
        self.install_ldap_gssapi_fixtures()
    }

    /// The PEM file of the test CA that signs the DC's LDAPS/StartTLS certificate (which
    /// names `dc1.example.test`, `dc1` and `127.0.0.2` in its subjectAltName). An error
    /// for a DC provisioned before the fixture made one: Samba loads its certificate at
    /// start, so that DC needs a fresh provision (`iwa-realm samba down --dir DIR`; the
    /// next test provisions a new one).
    pub fn tls_ca_file(&self) -> Result<PathBuf> {
        match &self.state.tls_ca_file {
            Some(ca) if ca.is_file() => Ok(ca.clone()),
            _ => Err(RealmError::NotReady {
                dir: self.state.dir.clone(),
                reason: "this DC was provisioned without the test CA (LDAPS with Samba's \
                         autogenerated certificate only); stop it with `iwa-realm samba down \
                         --dir DIR` so that the next test provisions a fresh one"
                    .into(),
            }),
        }
    }

    /// Create a user with a known password (never expires: max password age is 0 in the
    /// standard fixtures).
    pub fn add_user(&mut self, name: &str, password: &str) -> Result<()> {
        self.samba_tool(&["user", "create", name, password])?;
        self.state.users.insert(name.into(), password.into());
        Ok(())
    }

    /// Export the keys of `principal` (e.g. `HTTP/localhost`) into the keytab at `path`.
    pub fn export_keytab(&self, principal: &str, path: &Path) -> Result<()> {
        let path = absolute(path)?;
        self.samba_tool(&[
            "domain",
            "exportkeytab",
            &path.display().to_string(),
            &format!("--principal={principal}"),
        ])?;
        Ok(())
    }

    /// Entries of a keytab (`klist -k -e`).
    pub fn list_keytab(&self, path: &Path) -> Result<Vec<KeytabEntry>> {
        let mut cmd = self.command("klist");
        cmd.arg("-k").arg("-e").arg(path);
        let out = run(
            cmd,
            "klist",
            &format!("-k -e {}", path.display()),
            None,
            TOOL_TIMEOUT,
        )?;
        Ok(parse_klist_keytab(&out.stdout))
    }

    /// Run `samba-tool ARGS -s <smb.conf>` (local database access; works whether or not
    /// the DC runs). Returns stdout.
    pub fn samba_tool(&self, args: &[&str]) -> Result<String> {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.push("-s".into());
        v.push(self.state.smb_conf.display().to_string());
        self.samba_tool_raw(&v, TOOL_TIMEOUT).map(|o| o.stdout)
    }

    fn samba_tool_raw(&self, args: &[String], timeout: Duration) -> Result<ToolOutput> {
        let mut cmd = self.command("samba-tool");
        cmd.args(args);
        let passwords: Vec<&str> = self.state.users.values().map(String::as_str).collect();
        let shown = args
            .iter()
            .map(|a| {
                if a.contains(AD_ADMIN_PASSWORD)
                    || passwords.contains(&a.as_str())
                    || [
                        AD_ALICE_PASSWORD,
                        AD_BOB_PASSWORD,
                        AD_CAROL_PASSWORD,
                        AD_DAVE_PASSWORD,
                    ]
                    .contains(&a.as_str())
                {
                    "***".to_owned()
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        run(cmd, "samba-tool", &shown, None, timeout)
    }

    /// Apply an LDIF change with `ldapmodify`, simple bind as Administrator over
    /// `ldap://127.0.0.2` (the DC allows it: `ldap server require strong auth = no`).
    pub fn ldap_modify(&self, ldif: &str) -> Result<String> {
        let mut cmd = self.command("ldapmodify");
        cmd.args([
            "-H",
            &self.ldap_url(),
            "-x",
            "-D",
            &self.admin_bind_dn(),
            "-w",
        ])
        .arg(AD_ADMIN_PASSWORD);
        let shown = format!(
            "-H {} -x -D {} -w ***",
            self.ldap_url(),
            self.admin_bind_dn()
        );
        run(
            cmd,
            "ldapmodify",
            &shown,
            Some(ldif.as_bytes()),
            TOOL_TIMEOUT,
        )
        .map(|o| o.stdout)
    }

    /// `ldapsearch -LLL` (no line wrapping) as Administrator with a simple bind. Returns
    /// the LDIF.
    pub fn ldap_search(
        &self,
        base: &str,
        scope: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<String> {
        let mut cmd = self.command("ldapsearch");
        cmd.args([
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &self.ldap_url(),
            "-x",
            "-D",
        ])
        .arg(self.admin_bind_dn())
        .arg("-w")
        .arg(AD_ADMIN_PASSWORD)
        .args(["-b", base, "-s", scope, filter])
        .args(attrs);
        let shown = format!("-b {base} -s {scope} {filter} {}", attrs.join(" "));
        run(cmd, "ldapsearch", &shown, None, TOOL_TIMEOUT).map(|o| o.stdout)
    }

    /// The transitive group SIDs of `user` from LDAP (`tokenGroups`, base-scope read on
    /// the user object), as `S-1-...` strings.
    pub fn token_groups(&self, user: &str) -> Result<Vec<String>> {
        let ldif = self.ldap_search(
            &self.user_dn(user),
            "base",
            "(objectClass=*)",
            &["tokenGroups"],
        )?;
        ldif_binary_values(&ldif, "tokenGroups")
            .into_iter()
            .map(|b| {
                sid_to_string(&b)
                    .ok_or_else(|| RealmError::Invalid(format!("bad SID in tokenGroups of {user}")))
            })
            .collect()
    }

    /// SID of a user (`wbinfo -n 'EXAMPLE\name'`).
    pub fn user_sid(&self, name: &str) -> Result<String> {
        self.lookup_sid(name, "SID_USER")
    }

    /// SID of a domain group (`wbinfo -n 'EXAMPLE\name'`).
    pub fn group_sid(&self, name: &str) -> Result<String> {
        self.lookup_sid(name, "SID_DOM_GROUP")
    }

    /// The domain SID (random per provision).
    pub fn domain_sid(&self) -> &str {
        &self.state.domain_sid
    }

    fn lookup_sid(&self, name: &str, kind: &str) -> Result<String> {
        let out = self.wbinfo(&["-n", &format!("{AD_DOMAIN}\\{name}")])?;
        let mut it = out.split_whitespace();
        match (it.next(), it.next()) {
            (Some(sid), Some(k)) if sid.starts_with("S-1-") && k == kind => Ok(sid.to_owned()),
            _ => Err(RealmError::Invalid(format!(
                "wbinfo -n {AD_DOMAIN}\\{name}: expected a {kind}, got {:?}",
                out.trim()
            ))),
        }
    }

    /// Run `wbinfo ARGS` (talks to the DC's winbindd through [`WINBINDD_SOCKET_DIR`];
    /// wbinfo takes no config file option). Returns stdout; a non-zero exit is an error.
    pub fn wbinfo(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.command("wbinfo");
        cmd.args(args);
        let shown = args
            .iter()
            .map(|a| if a.contains('%') { "***" } else { a })
            .collect::<Vec<_>>()
            .join(" ");
        run(cmd, "wbinfo", &shown, None, Duration::from_secs(30)).map(|o| o.stdout)
    }

    /// Get a TGT for `user` (with or without `@EXAMPLE.TEST`) from the DC's KDC into a new
    /// `FILE:` ccache in the DC dir. The password goes to `kinit` on stdin.
    pub fn kinit(&self, user: &str, password: &str) -> Result<DcCcache> {
        let principal = self.principal(user);
        let safe: String = principal
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self
            .state
            .dir
            .join("ccache")
            .join(format!("{safe}-{}", util::unique_suffix()));
        let cc = crate::Ccache {
            path,
            principal: principal.clone(),
            krb5_conf: self.state.krb5_conf.clone(),
        };
        let mut stdin = password.as_bytes().to_vec();
        stdin.push(b'\n');
        let mut cmd = Command::new("kinit");
        cmd.arg("-c").arg(cc.name()).arg(&principal);
        cc.apply(&mut cmd);
        run(
            cmd,
            "kinit",
            &principal,
            Some(&stdin),
            Duration::from_secs(60),
        )?;
        Ok(cc)
    }

    /// `user@EXAMPLE.TEST` for `user`; unchanged if it already names a realm.
    pub fn principal(&self, name: &str) -> String {
        if name.contains('@') {
            name.to_owned()
        } else {
            format!("{name}@{}", self.state.realm)
        }
    }

    /// DN of a user in the default `CN=Users` container.
    pub fn user_dn(&self, name: &str) -> String {
        format!("CN={name},CN=Users,{}", self.state.base_dn)
    }

    /// `ldap://127.0.0.2`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.state.host_ip)
    }

    /// `EXAMPLE\Administrator`, the simple-bind DN the fixtures use.
    pub fn admin_bind_dn(&self) -> String {
        format!("{}\\{AD_ADMIN}", self.state.domain)
    }

    /// Kerberos realm.
    pub fn realm(&self) -> &str {
        &self.state.realm
    }

    /// NetBIOS domain name.
    pub fn domain(&self) -> &str {
        &self.state.domain
    }

    /// The DC directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// Path of a file in the DC dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.state.dir.join(name)
    }

    /// The DC's smb.conf (for `wbinfo --configfile`, `ntlm_auth --configfile`, `samba-tool -s`).
    pub fn smb_conf(&self) -> &Path {
        &self.state.smb_conf
    }

    /// Client Kerberos configuration (`KRB5_CONFIG`): KDC 127.0.0.2, DNS lookups off,
    /// `localhost` in the realm.
    pub fn krb5_conf(&self) -> &Path {
        &self.state.krb5_conf
    }

    /// The standard service keytab ([`AD_HTTP_KEYTAB`]).
    pub fn http_keytab(&self) -> PathBuf {
        self.path(AD_HTTP_KEYTAB)
    }

    /// Where the DC's winbindd puts its privileged pipe (`<dir>/state/winbindd_privileged`,
    /// mode 0750 root): what `wbcAuthenticateUserEx` with a challenge/response needs.
    pub fn winbindd_privileged_dir(&self) -> PathBuf {
        self.state.dir.join("state").join("winbindd_privileged")
    }

    /// `samba` master PID.
    pub fn samba_pid(&self) -> u32 {
        self.state.samba_pid
    }

    /// The recorded state (what `samba.json` holds).
    pub fn state(&self) -> &SambaState {
        &self.state
    }

    /// True if this value does not own the DC process.
    pub fn is_attached(&self) -> bool {
        self.server.is_none()
    }

    /// Variables a Kerberos client of this realm needs (without a ccache): `KRB5_CONFIG`.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![("KRB5_CONFIG", self.state.krb5_conf.clone().into_os_string())]
    }

    /// A command with a clean environment for this DC: `KRB5_CONFIG` set, ccache/keytab
    /// variables removed, `LDAPNOINIT=1` (no ldap.conf/.ldaprc).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env())
            .env("LDAPNOINIT", "1")
            .env_remove("KRB5CCNAME")
            .env_remove("KRB5_KTNAME")
            .env_remove("KRB5_CLIENT_KTNAME");
        cmd
    }

    /// Processes of the DC (master and all descendants) right now.
    pub fn processes(&self) -> Vec<u32> {
        if !same_process(self.state.samba_pid, self.state.samba_start_ticks) {
            return Vec::new();
        }
        let mut v = vec![self.state.samba_pid];
        v.extend(
            descendants(self.state.samba_pid)
                .into_iter()
                .map(|(p, _)| p),
        );
        v
    }

    /// Proportional set size of the DC's processes in KiB (shared pages split fairly).
    pub fn pss_kib(&self) -> u64 {
        self.processes()
            .into_iter()
            .filter_map(|p| {
                let s = fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
                s.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .sum()
    }

    /// Write `samba.json` (atomically) and `samba.pid`.
    pub fn write_state(&self) -> Result<()> {
        let dir = &self.state.dir;
        write_atomic(
            &dir.join(SAMBA_PID_FILE),
            format!("{}\n", self.state.samba_pid).as_bytes(),
        )?;
        let json = serde_json::to_vec_pretty(&self.state).map_err(|e| RealmError::State {
            path: dir.join(SAMBA_STATE_FILE),
            source: e,
        })?;
        write_atomic(&dir.join(SAMBA_STATE_FILE), &json)
    }

    /// Write `<dir>/env` with `export IWA_TEST_SAMBA=<dir>`.
    pub fn write_env_file(&self) -> Result<PathBuf> {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "export {SAMBA_ENV}='{}'",
            self.state.dir.to_string_lossy().replace('\'', "'\\''")
        );
        let path = self.state.dir.join(SAMBA_ENV_FILE);
        write_atomic(&path, s.as_bytes())?;
        Ok(path)
    }

    /// Leave the DC and its directory in place when this value is dropped. Stop it later
    /// with [`stop_samba_dir`].
    pub fn detach(mut self) -> SambaState {
        if let Some(mut s) = self.server.take() {
            s.child.take();
        }
        if let Some(t) = self._tmp.take() {
            let _ = t.into_path();
        }
        self.state.clone()
    }

    /// Stop the DC now if this value owns it (no-op when attached).
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    fn start(&mut self, timeout: Duration) -> Result<()> {
        check_dc_resources_free()?;
        // winbindd creates the last component, not /run/samba itself.
        if let Some(parent) = Path::new(WINBINDD_SOCKET_DIR).parent() {
            fs::create_dir_all(parent)
                .map_err(|e| RealmError::io(format!("mkdir {}", parent.display()), e))?;
        }
        let dir = self.state.dir.clone();
        let stdout_log = dir.join("samba.stdout");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_log)
            .map_err(|e| RealmError::io("open samba.stdout", e))?;
        let err = out
            .try_clone()
            .map_err(|e| RealmError::io("dup samba.stdout", e))?;
        let started = Instant::now();
        let mut cmd = self.command(samba_binary());
        cmd.args(["-F", "-M", self.state.model.as_arg(), "-s"])
            .arg(&self.state.smb_conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: no terminal signals, and the whole group can be found.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| RealmError::ToolMissing {
            program: "samba".into(),
            source: e,
        })?;
        let pid = child.id();
        let mut server = Server {
            child: Some(child),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
            dir: dir.clone(),
        };
        let deadline = started + timeout;
        let mut reason = String::new();
        let mut ready = false;
        while Instant::now() < deadline {
            if let Some(status) = server.try_wait() {
                reason = format!("samba exited with {status}");
                break;
            }
            let ports = READY_PORTS
                .iter()
                .all(|p| util::tcp_open(SocketAddr::from((self.state.host_ip, *p))));
            if ports && self.wbinfo(&["-P"]).is_ok() {
                ready = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !ready {
            if reason.is_empty() {
                let open: Vec<u16> = READY_PORTS
                    .iter()
                    .copied()
                    .filter(|p| util::tcp_open(SocketAddr::from((self.state.host_ip, *p))))
                    .collect();
                reason = format!(
                    "not ready after {timeout:?} (open ports of 88/389/445: {open:?}; `wbinfo -P`: {})",
                    self.wbinfo(&["-P"]).err().map_or("ok".into(), |e| e.to_string())
                );
            }
            server.stop();
            return Err(RealmError::NotReady {
                dir: dir.clone(),
                reason: format!(
                    "samba did not start: {reason}\n--- samba.log tail ---\n{}\n--- samba.stdout tail ---\n{}",
                    tail(&dir.join("samba.log"), 25),
                    tail(&stdout_log, 10)
                ),
            });
        }
        self.state.samba_pid = pid;
        self.state.samba_start_ticks = server.start_ticks;
        self.server = Some(server);
        self.state.timings.start_secs = started.elapsed().as_secs_f64();
        if self.state.domain_sid.is_empty() {
            let info = self.wbinfo(&["-D", AD_DOMAIN])?;
            self.state.domain_sid = info
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == "SID").then(|| v.trim().to_owned())
                })
                .ok_or_else(|| RealmError::Invalid(format!("no SID in wbinfo -D: {info}")))?;
        }
        Ok(())
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        if let Some(share) = self.share.take() {
            share.leave();
        }
        self.stop();
    }
}

/// A user's slot in the machine-wide reference-counted DC.
#[derive(Debug)]
struct Share {
    base: PathBuf,
    users: Option<FileLock>,
}

impl Share {
    fn leave(mut self) {
        let Ok(_ctl) =
            FileLock::acquire(&self.base.join("ctl.lock"), true, Duration::from_secs(120))
        else {
            return;
        };
        drop(self.users.take());
        if let Ok(Some(_last)) = FileLock::try_acquire(&self.base.join("users.lock"), true) {
            let dir = self.base.join("dc");
            if let Err(e) = stop_dir(&dir) {
                eprintln!("iwa-testrealm: stopping the shared Samba DC: {e}");
            }
            let keep = std::env::var(util::KEEP_DIRS_ENV).is_ok_and(|v| v == "1");
            if !keep {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
}

/// The `samba` master we spawned.
#[derive(Debug)]
struct Server {
    /// `None` once detached: the process keeps running.
    child: Option<Child>,
    pid: u32,
    start_ticks: u64,
    dir: PathBuf,
}

impl Server {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_tree(self.pid, self.start_ticks, STOP_GRACE);
            let _ = child.kill();
            let _ = child.wait();
            cleanup_winbindd_socket();
            let _ = fs::remove_file(self.dir.join(SAMBA_PID_FILE));
            let _ = fs::remove_file(self.dir.join(SAMBA_STATE_FILE));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stop the DC of a directory written by [`SambaDc::write_state`] (what
/// `iwa-realm samba down` does): SIGTERM to the PID in `samba.pid` if it is a `samba`
/// process, SIGKILL after a bound, then every remaining process of its tree and process
/// group; removes the stale winbindd socket. Returns the master PID stopped, or `None` if
/// nothing was running.
pub fn stop_samba_dir(dir: &Path) -> Result<Option<u32>> {
    stop_dir(dir)
}

fn stop_dir(dir: &Path) -> Result<Option<u32>> {
    let pid_path = dir.join(SAMBA_PID_FILE);
    let text = match fs::read_to_string(&pid_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RealmError::io(format!("read {}", pid_path.display()), e)),
    };
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| RealmError::Invalid(format!("{}: not a pid: {text:?}", pid_path.display())))?;
    let ticks = read_state(dir).map(|s| s.samba_start_ticks).unwrap_or(0);
    let _ = fs::remove_file(dir.join(SAMBA_STATE_FILE));
    if pid == 0 || !process::pid_alive(pid) {
        let _ = fs::remove_file(&pid_path);
        return Ok(None);
    }
    // Guard against a recycled PID: only signal the samba we recorded.
    if process::pid_comm(pid).as_deref() != Some("samba")
        || (ticks != 0 && !same_process(pid, ticks))
    {
        let _ = fs::remove_file(&pid_path);
        return Err(RealmError::Invalid(format!(
            "pid {pid} from {} is not the recorded samba; not signalling it",
            pid_path.display()
        )));
    }
    if !stop_tree(pid, ticks, STOP_GRACE) {
        return Err(RealmError::Invalid(format!(
            "samba pid {pid} (or a child) survived SIGKILL"
        )));
    }
    cleanup_winbindd_socket();
    let _ = fs::remove_file(&pid_path);
    Ok(Some(pid))
}

/// Fail if 127.0.0.2's DC ports are taken or a live winbindd owns the compiled-in socket.
fn check_dc_resources_free() -> Result<()> {
    for p in READY_PORTS {
        let addr = SocketAddr::from((DC_IP, p));
        if util::tcp_open(addr) {
            return Err(RealmError::Invalid(format!(
                "something already listens on {addr}: another Samba DC is running on this machine \
                 (stop it with `iwa-realm samba down --dir <its dir>`, or point {SAMBA_ENV} at it)"
            )));
        }
    }
    let pipe = Path::new(WINBINDD_SOCKET_DIR).join("pipe");
    if pipe.exists() {
        if UnixStream::connect(&pipe).is_ok() {
            return Err(RealmError::Invalid(format!(
                "a winbindd already serves {}: another Samba (DC or member) runs on this machine; \
                 libwbclient only finds winbindd there, so only one DC with winbind can run",
                pipe.display()
            )));
        }
        let _ = fs::remove_file(&pipe);
    }
    Ok(())
}

/// Remove the winbindd pipe and its directory after our winbindd is gone (only if no
/// winbindd answers on it).
fn cleanup_winbindd_socket() {
    let dir = Path::new(WINBINDD_SOCKET_DIR);
    let pipe = dir.join("pipe");
    if pipe.exists() && UnixStream::connect(&pipe).is_err() {
        let _ = fs::remove_file(&pipe);
    }
    let _ = fs::remove_dir(dir); // only succeeds when empty
}

fn samba_binary() -> &'static str {
    if Path::new("/usr/sbin/samba").is_file() {
        "/usr/sbin/samba"
    } else {
        "samba"
    }
}

/// Add what provisioning does not write (or silently drops, like
/// `ldap server require strong auth`) to `[global]`, and keep every runtime path in the dir.
fn patch_smb_conf(s: &SambaState) -> Result<()> {
    let d = s.dir.display();
    let extra: Vec<(&str, String)> = vec![
        ("ldap server require strong auth", "no".into()),
        ("pid directory", format!("{d}/run")),
        ("ncalrpc dir", format!("{d}/run/ncalrpc")),
        ("ntp signd socket directory", format!("{d}/run/ntp_signd")),
        ("log file", format!("{d}/samba.log")),
        ("log level", "1".into()),
        ("max log size", "0".into()),
        ("winbindd socket directory", WINBINDD_SOCKET_DIR.into()),
        // The DNS server only answers for the domain; never forward to the host's resolvers.
        ("dns forwarder", String::new()),
    ];
    let mut extra = extra;
    if s.tls_ca_file.is_some() {
        let tls = s.dir.join(DC_TLS_DIR);
        extra.extend([
            ("tls enabled", "yes".to_owned()),
            ("tls keyfile", tls.join("dc.key").display().to_string()),
            ("tls certfile", tls.join("dc.pem").display().to_string()),
            ("tls cafile", tls.join("ca.pem").display().to_string()),
        ]);
    }
    fs::create_dir_all(s.dir.join("run")).map_err(|e| RealmError::io("mkdir run", e))?;
    let text = fs::read_to_string(&s.smb_conf)
        .map_err(|e| RealmError::io(format!("read {}", s.smb_conf.display()), e))?;
    let mut out = String::new();
    for line in text.lines() {
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().to_ascii_lowercase());
        if key.is_some_and(|k| extra.iter().any(|(e, _)| *e == k)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim().eq_ignore_ascii_case("[global]") {
            for (k, v) in &extra {
                let _ = writeln!(out, "\t{k} = {v}");
            }
        }
    }
    write_atomic(&s.smb_conf, out.as_bytes())
}

/// A throwaway test CA and a certificate it signs for the DC (`DNS:dc1.example.test,
/// DNS:dc1, IP:127.0.0.2`, server auth), made with the `openssl` CLI in `dir`:
/// `ca.pem`, `dc.pem`, and `dc.key` (mode 0600, as Samba requires). The CA's key is
/// deleted once it has signed: nothing else is ever issued under it. Returns `ca.pem`.
fn write_dc_pki(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| RealmError::io(format!("mkdir {}", dir.display()), e))?;
    let openssl = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        run(cmd, "openssl", &args.join(" "), None, TOOL_TIMEOUT).map(|_| ())
    };
    let days = "3650";
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        days,
        "-subj",
        "/CN=iwa test DC CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={DC_FQDN}"),
        "-keyout",
        "dc.key",
        "-out",
        "dc.csr",
    ])?;
    let ext = format!(
        "subjectAltName=DNS:{DC_FQDN},DNS:{DC_HOST_NAME},IP:{DC_IP}\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n"
    );
    write_atomic(&dir.join("dc.ext"), ext.as_bytes())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "dc.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        days,
        "-extfile",
        "dc.ext",
        "-out",
        "dc.pem",
    ])?;
    for f in ["ca.key", "dc.csr", "dc.ext"] {
        let _ = fs::remove_file(dir.join(f));
    }
    fs::set_permissions(dir.join("dc.key"), fs::Permissions::from_mode(0o600))
        .map_err(|e| RealmError::io("chmod 600 dc.key", e))?;
    Ok(dir.join("ca.pem"))
}

fn write_krb5_conf(s: &SambaState) -> Result<()> {
    let r = &s.realm;
    let lower = r.to_ascii_lowercase();
    let conf = format!(
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
        kdc = {ip}
        admin_server = {ip}
    }}

[domain_realm]
    localhost = {r}
    .{lower} = {r}
    {lower} = {r}
",
        ip = s.host_ip
    );
    write_atomic(&s.krb5_conf, conf.as_bytes())
}

fn parse_provision_sid(out: &ToolOutput) -> Option<String> {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .find_map(|l| {
            l.split_once("DOMAIN SID:")
                .map(|(_, v)| v.trim().to_owned())
        })
        .filter(|s| s.starts_with("S-1-5-21-"))
}

fn read_state(dir: &Path) -> Result<SambaState> {
    let path = dir.join(SAMBA_STATE_FILE);
    let bytes = fs::read(&path).map_err(|e| RealmError::NotReady {
        dir: dir.to_path_buf(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RealmError::State { path, source: e })
}

/// A credential cache holding a TGT from the DC: the same type as the MIT realm's.
pub type DcCcache = crate::Ccache;

// --- LDIF / SID helpers ----------------------------------------------------------------

/// Values of `attr` written as `attr:: <base64>` in LDIF, decoded.
pub fn ldif_binary_values(ldif: &str, attr: &str) -> Vec<Vec<u8>> {
    let prefix = format!("{attr}::");
    ldif.lines()
        .filter_map(|l| {
            let (k, v) = l.split_at(l.len().min(prefix.len()));
            k.eq_ignore_ascii_case(&prefix)
                .then(|| base64_decode(v.trim()))
                .flatten()
        })
        .collect()
}

/// A binary SID (MS-DTYP 2.4.2.2) as `S-1-5-21-...`.
pub fn sid_to_string(b: &[u8]) -> Option<String> {
    if b.len() < 8 || b[0] != 1 {
        return None;
    }
    let count = usize::from(b[1]);
    if b.len() != 8 + 4 * count {
        return None;
    }
    let auth = b[2..8].iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    let mut s = format!("S-1-{auth}");
    for c in b[8..].chunks_exact(4) {
        let _ = write!(s, "-{}", u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    Some(s)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// --- processes -------------------------------------------------------------------------

/// `(ppid, pgrp, starttime)` of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, pgrp 5, starttime 22.
    Some((
        f.get(1)?.parse().ok()?,
        f.get(2)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, _, t)| t)
}

/// True if `pid` is alive and (when `ticks` is known) still the process that started then.
fn same_process(pid: u32, ticks: u64) -> bool {
    pid != 0 && process::pid_alive(pid) && (ticks == 0 || start_ticks(pid) == Some(ticks))
}

/// All live processes as pid → (ppid, pgrp, starttime).
fn all_processes() -> HashMap<u32, (u32, u32, u64)> {
    let mut m = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some(st) = proc_stat(pid) {
                    m.insert(pid, st);
                }
            }
        }
    }
    m
}

/// Descendants of `root` (not including it) with their start times.
fn descendants(root: u32) -> Vec<(u32, u64)> {
    let all = all_processes();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&pid, &(ppid, _, ticks)) in &all {
            if ppid == p && pid != root && !out.iter().any(|(q, _)| *q == pid) {
                out.push((pid, ticks));
                frontier.push(pid);
            }
        }
    }
    out
}

/// SIGTERM the master, wait up to `grace`, SIGKILL; then SIGTERM/SIGKILL whatever is left
/// of its tree (snapshotted before) and of its process group. True if all are gone.
fn stop_tree(root: u32, root_ticks: u64, grace: Duration) -> bool {
    if !same_process(root, root_ticks) {
        return true;
    }
    let mut tree = descendants(root);
    process::terminate_pid(root, grace);
    // Stragglers: the snapshot (smbd and winbindd run in their own sessions) plus anything
    // still in the master's process group (children reparented before the snapshot).
    for (pid, (_, pgrp, ticks)) in all_processes() {
        if pgrp == root && pid != root && !tree.iter().any(|(p, _)| *p == pid) {
            tree.push((pid, ticks));
        }
    }
    let alive = |t: &[(u32, u64)]| -> Vec<(u32, u64)> {
        t.iter()
            .copied()
            .filter(|(p, ticks)| same_process(*p, *ticks))
            .collect()
    };
    let left = alive(&tree);
    for (p, _) in &left {
        process::sigterm(*p);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !alive(&left).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (p, _) in alive(&left) {
        process::send_signal(p, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !alive(&left).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    alive(&left).is_empty() && !same_process(root, root_ticks)
}

// --- file locks ------------------------------------------------------------------------

/// An `flock(2)` on a file, released on drop (and by the kernel if the process dies).
#[derive(Debug)]
struct FileLock {
    file: File,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| RealmError::io(format!("open lock {}", path.display()), e))
    }

    fn try_acquire(path: &Path, exclusive: bool) -> Result<Option<FileLock>> {
        let file = FileLock::open(path)?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        } | libc::LOCK_NB;
        // SAFETY: flock(2) on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            Ok(Some(FileLock { file }))
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(None)
            } else {
                Err(RealmError::io(format!("flock {}", path.display()), e))
            }
        }
    }

    fn acquire(path: &Path, exclusive: bool, timeout: Duration) -> Result<FileLock> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = FileLock::try_acquire(path, exclusive)? {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(RealmError::Invalid(format!(
                    "timed out after {timeout:?} waiting for lock {}",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

// --- running tools ---------------------------------------------------------------------

use crate::process::{run_tool as run, ToolOutput};

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", util::unique_suffix()));
    let res = File::create(&tmp)
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

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_binary_sids_from_ldif() {
        let ldif = "dn: CN=alice,CN=Users,DC=example,DC=test\n\
                    tokenGroups:: AQUAAAAAAAUVAAAAOCDuHgSvWVemmRMGUgQAAA==\n\
                    tokenGroups:: AQIAAAAAAAUgAAAAIQIAAA==\n";
        let sids: Vec<String> = ldif_binary_values(ldif, "tokenGroups")
            .iter()
            .filter_map(|b| sid_to_string(b))
            .collect();
        assert_eq!(
            sids,
            [
                "S-1-5-21-518922296-1465495300-101947814-1106",
                "S-1-5-32-545"
            ]
        );
        assert_eq!(sid_to_string(&[1, 1, 0, 0, 0, 0, 0, 5]), None);
        assert_eq!(base64_decode("a*b"), None);
    }

    #[test]
    fn parses_domain_sid_from_provision_output() {
        let out = ToolOutput {
            stdout: String::new(),
            stderr: "INFO 2026 ... #497: DOMAIN SID:            S-1-5-21-1-2-3\n".into(),
        };
        assert_eq!(parse_provision_sid(&out).as_deref(), Some("S-1-5-21-1-2-3"));
    }

    #[test]
    fn process_model_round_trips() {
        for m in [ProcessModel::Single, ProcessModel::Prefork] {
            assert_eq!(m.as_arg().parse::<ProcessModel>(), Ok(m));
        }
        assert!("threaded".parse::<ProcessModel>().is_err());
    }
}
