//! A real browser signs in through `iwa serve` by Kerberos SSO, without a prompt.
//!
//! Headless Chromium (Debian's `chromium`, installed by `scripts/deps.sh`) is driven
//! without a driver: `chromium --headless --dump-dom URL` navigates once and prints the
//! final DOM. Chromium gets the gateway's `401 WWW-Authenticate: Negotiate`, asks GSSAPI
//! (libgssapi_krb5, with the ticket cache from `KRB5CCNAME`) for a token and retries with
//! `Authorization: Negotiate …`; the page it ends on is the echo backend's JSON report of
//! the request the gateway forwarded. Headless Chromium never shows a login prompt: if
//! SSO fails, the page is the gateway's 401 page and the test fails.
//!
//! Each Chromium run gets a fresh profile in a temp dir (removed afterwards), an
//! environment holding only PATH, HOME/XDG/TMPDIR inside that dir and the two Kerberos
//! variables, its own process group, and a hard 60 s bound; every process it leaves
//! behind is killed by PID.

mod support;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Hard bound on one Chromium run (the process is killed after it).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// Chromium's own bound on the navigation (`--timeout`, ms); below [`CHROMIUM_TIMEOUT`].
const NAVIGATION_TIMEOUT_MS: u64 = 30_000;
/// Linux SIGKILL (libc is not a dependency of this crate's tests).
const SIGKILL: i32 = 9;

/// Without this in `Local State`, a brand-new profile on Linux ignores the first
/// Negotiate challenge (ERR_UNSUPPORTED_AUTH_SCHEME) and only loads GSSAPI after it
/// has seen one; the page would stay 401.
const LOCAL_STATE: &str = r#"{"net":{"received_http_auth_negotiate_headers":true}}"#;

/// The Chromium executable: `IWA_TEST_CHROMIUM`, else `chromium` on PATH. Missing
/// Chromium is a failure, not a skip.
fn chromium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IWA_TEST_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "IWA_TEST_CHROMIUM={} does not exist; unset it and run scripts/deps.sh \
             (installs Debian's chromium + chromium-driver)",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found on PATH: run scripts/deps.sh (installs Debian's \
                 chromium + chromium-driver) to run the browser SSO test"
            )
        })
}

/// One Chromium run's result.
struct BrowserRun {
    /// What `--dump-dom` printed.
    dom: String,
    /// Chromium's stderr (dbus noise included).
    log: String,
    status: ExitStatus,
    elapsed: Duration,
}

impl BrowserRun {
    /// The tail of Chromium's log, for failure messages.
    fn log_tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn context(&self, gw: &Gateway) -> String {
        format!(
            "chromium exit {} after {:?}\n--- DOM ---\n{}\n--- chromium stderr (tail) ---\n{}\n\
             --- gateway log ---\n{}",
            self.status,
            self.elapsed,
            self.dom,
            self.log_tail(),
            gw.log()
        )
    }
}

/// `(pid, ppid, pgid, zombie)` for every process in /proc.
fn proc_table() -> Vec<(u32, u32, u32, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgid = f.next()?.parse().ok()?;
            Some((pid, ppid, pgid, matches!(state, "Z" | "X")))
        })
        .collect()
}

/// True if `/proc/<pid>/cmdline` contains `marker`.
fn cmdline_contains(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
}

/// Live processes started by the Chromium whose PID is `root`: its descendants,
/// members of its process group (children reparented after it exited), and processes
/// whose command line names `marker`, the run's unique temp dir (the crashpad
/// handlers, which double-fork into their own session but get
/// `--database=$XDG_CONFIG_HOME/chromium/Crash Reports`). `root` itself only if
/// `include_root` (it is our child; once reaped its PID may be reused).
fn browser_processes(root: u32, include_root: bool, marker: &str) -> Vec<u32> {
    let table = proc_table();
    let me = std::process::id();
    let mut found: Vec<u32> = Vec::new();
    if include_root {
        found.push(root);
    }
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, _, _) in &table {
            if ppid == parent && !found.contains(&pid) && pid != me {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    for &(pid, _, pgid, _) in &table {
        let ours = (pgid == root && pid != root) || cmdline_contains(pid, marker);
        if ours && pid != me && !found.contains(&pid) {
            found.push(pid);
        }
    }
    let zombie = |pid: u32| table.iter().any(|&(p, _, _, z)| p == pid && z);
    found.retain(|&p| !zombie(p));
    found
}

/// SIGKILL, one PID at a time, everything `browser_processes` finds (a few rounds, in
/// case a process forks meanwhile). Returns the PIDs killed.
fn kill_browser_processes(root: u32, include_root: bool, marker: &str) -> Vec<u32> {
    let mut killed = Vec::new();
    for _ in 0..20 {
        let pids = browser_processes(root, include_root && killed.is_empty(), marker);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if iwa_testrealm::process::send_signal(pid, SIGKILL) && !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    killed
}

/// Owns the Chromium child: on drop (also when a test panics) kills whatever is left
/// of it, by PID.
struct ChromiumGuard {
    child: Option<Child>,
    pid: u32,
    /// The run's temp dir path (see [`browser_processes`]).
    marker: String,
}

impl ChromiumGuard {
    /// Wait for exit up to `timeout`; `None` on timeout (the process is then killed).
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("child");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    // Chromium's helpers (crashpad handlers included) normally exit with
                    // it, within a moment; kill any that did not.
                    iwa_testrealm::util::wait_until(Duration::from_secs(3), || {
                        browser_processes(self.pid, false, &self.marker).is_empty()
                    });
                    let strays = kill_browser_processes(self.pid, false, &self.marker);
                    if !strays.is_empty() {
                        eprintln!("killed stray chromium processes (by PID): {strays:?}");
                    }
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25))
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The tree first (while the browser still parents it), then reap the browser.
            kill_browser_processes(self.pid, true, &self.marker);
            let _ = child.kill();
            let _ = child.wait();
            kill_browser_processes(self.pid, false, &self.marker);
        }
    }
}

impl Drop for ChromiumGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A browser run's private directories: the profile, and HOME/XDG/TMPDIR, all under
/// one temp dir whose path marks the run's processes.
struct BrowserDirs {
    dir: TempDir,
    profile: PathBuf,
}

impl BrowserDirs {
    fn new() -> Self {
        let dir = TempDir::new("iwa-chromium").expect("temp dir");
        let profile = dir.path().join("profile");
        for d in [&profile, &dir.path().join("home"), &dir.path().join("tmp")] {
            std::fs::create_dir_all(d).expect("create chromium dirs");
        }
        std::fs::write(profile.join("Local State"), LOCAL_STATE).expect("write Local State");
        BrowserDirs { dir, profile }
    }

    /// A command with an environment of only PATH, HOME/XDG/TMPDIR inside the run's dir
    /// and the Kerberos variables `krb5`, in its own process group.
    fn command(&self, program: &Path, krb5: &[(&'static str, OsString)]) -> Command {
        let home = self.dir.path().join("home");
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .envs(krb5.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            // Its own process group: helpers reparented after it exits are still found.
            .process_group(0);
        cmd
    }

    /// Spawns `cmd` under a guard that kills what is left of it (by PID) on drop.
    fn spawn(&self, mut cmd: Command) -> ChromiumGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (run scripts/deps.sh)"));
        ChromiumGuard {
            pid: child.id(),
            child: Some(child),
            marker: format!("{}/", self.dir.path().display()),
        }
    }
}

/// Run headless Chromium once against `url` with exactly the Kerberos variables `krb5`
/// (nothing else from this process's environment) and return the final DOM.
fn chromium_dump_dom(url: &str, krb5: &[(&'static str, OsString)]) -> BrowserRun {
    let bin = chromium_bin();
    // Declared before the guard: dropped after it, so the profile outlives Chromium.
    let dirs = BrowserDirs::new();
    let dom_path = dirs.dir.path().join("dom.html");
    let log_path = dirs.dir.path().join("chromium.log");

    let mut cmd = dirs.command(&bin, krb5);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--auth-server-allowlist=localhost",
    ])
    .arg(format!("--user-data-dir={}", dirs.profile.display()))
    .arg(format!("--timeout={NAVIGATION_TIMEOUT_MS}"))
    .arg("--dump-dom")
    .arg(url)
    .stdout(std::fs::File::create(&dom_path).expect("dom file"))
    .stderr(std::fs::File::create(&log_path).expect("log file"));
    let started = Instant::now();
    let mut guard = dirs.spawn(cmd);
    let status = guard.wait(CHROMIUM_TIMEOUT);
    let elapsed = started.elapsed();
    let dom = std::fs::read_to_string(&dom_path).unwrap_or_default();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "chromium did not finish within {CHROMIUM_TIMEOUT:?} (killed)\n--- DOM so far ---\n\
             {dom}\n--- chromium stderr ---\n{log}"
        );
    };
    drop(guard);
    drop(dirs);
    BrowserRun {
        dom,
        log,
        status,
        elapsed,
    }
}

/// Decode the entities an HTML serializer emits in text.
fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The text of the page: the first `<pre>` (how Chromium shows a JSON/text document)
/// or else the whole document, tags removed, entities decoded.
fn page_text(dom: &str) -> String {
    let lower = dom.to_ascii_lowercase();
    let inner = lower
        .find("<pre")
        .and_then(|start| {
            let open_end = start + lower[start..].find('>')? + 1;
            let close = open_end + lower[open_end..].find("</pre>")?;
            Some(&dom[open_end..close])
        })
        .unwrap_or(dom);
    let mut text = String::with_capacity(inner.len());
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    html_unescape(&text)
}

/// The echo backend's report shown by the page, if the page is one.
fn echo_from_dom(dom: &str) -> Option<EchoRequest> {
    let text = page_text(dom);
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    EchoRequest::from_json(text.get(start..=end)?.as_bytes()).ok()
}

#[test]
fn chromium_signs_in_by_kerberos_without_prompt() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);

    let run = chromium_dump_dom(&gw.url("/sso"), &cc.env());
    let ctx = run.context(&gw);
    let seen = echo_from_dom(&run.dom).unwrap_or_else(|| {
        panic!("the browser did not end on the backend's page (SSO failed?)\n{ctx}")
    });

    // The gateway authenticated alice by Kerberos and forwarded the browser's request.
    assert_identity(
        &seen,
        "alice@IWA.TEST",
        "alice@IWA.TEST",
        &format!("localhost:{}", gw.port),
    );
    assert_eq!(seen.method, "GET", "{ctx}");
    assert_eq!(seen.path, "/sso", "{ctx}");
    assert!(
        seen.header("user-agent")
            .is_some_and(|ua| ua.contains("HeadlessChrome")),
        "not Chromium's request: {:?}\n{ctx}",
        seen.header("user-agent")
    );

    // Only authenticated requests reached the backend: exactly one navigation to /sso
    // (the one the page shows), and anything else (a favicon) as alice too.
    let reqs = echo.requests();
    let sso: Vec<&EchoRequest> = reqs.iter().filter(|r| r.path == "/sso").collect();
    assert_eq!(sso.len(), 1, "backend saw {reqs:#?}\n{ctx}");
    assert_eq!(sso[0], &seen, "the page is not what the backend saw\n{ctx}");
    for r in &reqs {
        assert_eq!(
            r.header_all("x-remote-user"),
            vec!["alice@IWA.TEST"],
            "unauthenticated request reached the backend: {r:#?}\n{ctx}"
        );
        assert_eq!(
            r.header_all("x-remote-auth-method"),
            vec!["Kerberos"],
            "{r:#?}\n{ctx}"
        );
    }
    eprintln!("chromium SSO run took {:?}", run.elapsed);
}

#[test]
fn chromium_without_ticket_cache_gets_the_401_page() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let empty = TempDir::new("iwa-no-ccache").expect("temp dir");
    let missing: &Path = &empty.path().join("no-such-ccache");
    let krb5 = vec![
        ("KRB5_CONFIG", realm.krb5_conf().as_os_str().to_owned()),
        (
            "KRB5CCNAME",
            OsString::from(format!("FILE:{}", missing.display())),
        ),
    ];

    let run = chromium_dump_dom(&gw.url("/sso"), &krb5);
    let ctx = run.context(&gw);
    let text = page_text(&run.dom);
    assert!(
        echo_from_dom(&run.dom).is_none(),
        "reached the backend without a ticket\n{ctx}"
    );
    assert!(text.contains("401"), "not the 401 page\n{ctx}");
    assert!(
        text.contains("Authentication required"),
        "not the gateway's 401 page\n{ctx}"
    );
    assert!(
        echo.requests().is_empty(),
        "backend reached without authentication: {:#?}",
        echo.requests()
    );
}

#[test]
fn page_text_reads_json_from_chromium_dom() {
    let dom = r#"<html><head><meta charset="utf-8"></head><body><pre>{"method":"GET","path":"/a","query":null,"headers":[["x","a&amp;b &lt;c&gt; \"q\""]],"conn":1,"body_len":0}
</pre><div class="json-formatter-container"></div></body></html>"#;
    let r = echo_from_dom(dom).expect("parse");
    assert_eq!(r.path, "/a");
    assert_eq!(r.header("x"), Some("a&b <c> \"q\""));
    assert!(echo_from_dom("<html><body><h1>401 Unauthorized</h1></body></html>").is_none());
}

/// The Python interpreter's real path (the pyenv shim needs a HOME the browser
/// environment does not have).
fn python_executable() -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{out:?}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Against the Samba AD DC: alice signs in to the admin page by Kerberos SSO in
/// headless Chromium (Selenium driving Debian's chromium-driver), impersonates bob
/// through the page's form, the backend sees bob with alice as the impersonator, and
/// the page's stop button ends it — all audited.
#[test]
fn chromium_impersonates_through_the_admin_page() {
    use iwa_testrealm::samba::{SambaDc, AD_ALICE, AD_ALICE_PASSWORD, AD_BOB};
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let dir = TempDir::new("iwa-browser-imp").expect("temp dir");
    let gw = ad_impersonation_gateway(&realm, &dc, &echo.url(), dir.path(), "");
    let cc = dc.kinit(AD_ALICE, AD_ALICE_PASSWORD).expect("kinit alice");
    let krb5 = vec![
        ("KRB5_CONFIG", dc.krb5_conf().as_os_str().to_owned()),
        ("KRB5CCNAME", OsString::from(cc.name())),
    ];

    let dirs = BrowserDirs::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/browser_impersonate.py");
    let out_path = dirs.dir.path().join("out.json");
    let log_path = dirs.dir.path().join("selenium.log");
    let mut cmd = dirs.command(&python_executable(), &krb5);
    cmd.arg(&script)
        .arg(gw.url("").trim_end_matches('/'))
        .arg("EXAMPLE\\bob")
        .arg("INC-0042 checking bob's view")
        .arg(&dirs.profile)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("IWA_TEST_CHROMIUM", chromium_bin())
        .stdout(std::fs::File::create(&out_path).expect("out file"))
        .stderr(std::fs::File::create(&log_path).expect("log file"));
    let mut guard = dirs.spawn(cmd);
    let status = guard.wait(Duration::from_secs(120));
    drop(guard);
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let ctx = format!(
        "--- selenium stderr ---\n{log}\n--- gateway log ---\n{}",
        gw.log()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser run failed ({status:?})\n{ctx}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("selenium output is not JSON ({e}): {out}\n{ctx}"));
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();

    // SSO: the admin page knew alice without a prompt, and offered the form.
    assert!(s("page_before").contains("EXAMPLE\\alice"), "{v:#}\n{ctx}");
    // After the form: redirected back to the page, which shows the banner.
    assert!(s("url_after_start").ends_with("/.iwa/"), "{v:#}");
    assert!(
        s("banner").contains("You are acting as EXAMPLE\\bob"),
        "{v:#}"
    );
    assert!(s("banner").contains("INC-0042"), "{v:#}");
    // The backend saw bob, with alice as the impersonator, and bob's SID.
    assert_eq!(s("acting_user"), "EXAMPLE\\bob", "{v:#}");
    assert_eq!(s("acting_impersonator"), "EXAMPLE\\alice", "{v:#}");
    assert_eq!(s("acting_sid"), dc.user_sid(AD_BOB).unwrap(), "{v:#}");
    // Stopped from the page: alice again, no impersonator.
    assert!(!s("page_after_stop").contains("You are acting as"), "{v:#}");
    assert_eq!(s("after_user"), "EXAMPLE\\alice", "{v:#}");
    assert!(v["after_impersonator"].is_null(), "{v:#}");

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["fields"].clone())
        .collect();
    let has = |event: &str, path: Option<&str>| {
        events.iter().any(|e| {
            e["event"] == event
                && e["actor"] == "EXAMPLE\\alice"
                && path.is_none_or(|p| e["path"] == p)
        })
    };
    assert!(has("impersonation_start", None), "{audit}");
    assert!(has("impersonation_request", Some("/app/report")), "{audit}");
    assert!(has("impersonation_stop", None), "{audit}");
    // The browser's requests reached the backend as bob, then as alice.
    let users: Vec<String> = echo
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/"))
        .map(|r| format!("{} {}", r.path, r.header("x-remote-user").unwrap_or("-")))
        .collect();
    assert!(
        users.contains(&"/app/report EXAMPLE\\bob".to_owned()),
        "{users:?}"
    );
    assert!(
        users.contains(&"/app/after EXAMPLE\\alice".to_owned()),
        "{users:?}"
    );
}
