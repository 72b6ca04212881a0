//! Backend process hosting (`[backend] command`), like IIS HttpPlatformHandler: the
//! gateway starts `tests/apps/app.py` on a port it picks, answers 503 until it listens,
//! restarts it, gives up after repeated failures, captures its output, pairs with it by
//! token, and stops it — process group included — on SIGTERM, and even on SIGKILL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use iwa_testrealm::process::{pid_alive, send_signal};
use iwa_testrealm::util::wait_until;
use support::*;

/// `tests/apps/app.py`.
fn app_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/app.py")
}

/// A hosted-app gateway config: `app.py <args>`, events recorded in `record`, plus
/// `extra` lines in `[backend]`.
fn hosted(realm: &MitRealm, record: &Path, args: &[&str], extra: &str) -> GatewayConfig {
    let mut command = vec![
        toml_str(&python()),
        toml_str(&app_py().display().to_string()),
    ];
    command.extend(args.iter().map(|a| toml_str(a)));
    let table = format!(
        "command = [{}]\nenv = {{ RECORD = {}, PYTHONDONTWRITEBYTECODE = \"1\" }}\n{extra}",
        command.join(", "),
        toml_str(&record.display().to_string()),
    );
    GatewayConfig::new(realm, "http://unused").backend_table(&table)
}

/// Kills (SIGKILL) every recorded app PID still alive when the test ends, pass or fail.
#[derive(Default)]
struct PidGuard(Vec<u32>);

impl PidGuard {
    fn watch(&mut self, pid: u32) -> u32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_alive(pid) {
                send_signal(pid, SIGKILL);
            }
        }
    }
}

// Linux signal numbers (the test crate has no libc).
const SIGHUP: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The recorded events `(event, pid)`.
fn events(record: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (e, p) = l.split_once(' ')?;
            Some((e.to_owned(), p.trim().parse().ok()?))
        })
        .collect()
}

fn started(record: &Path) -> Vec<u32> {
    events(record)
        .into_iter()
        .filter(|(e, _)| e == "start")
        .map(|(_, p)| p)
        .collect()
}

/// The PIDs of the app runs the gateway logged as started (`app[PID]: started`), in
/// order: also those killed before the app itself could record anything.
fn started_in_log(gw: &Gateway) -> Vec<u32> {
    gw.log()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("app[")? + 4..];
            let (pid, tail) = rest.split_once(']')?;
            tail.starts_with(": started ").then(|| pid.parse().ok())?
        })
        .collect()
}

/// `GET /info` through the gateway as alice; the status and the app's report.
fn info(gw: &Gateway, cc: &Ccache, realm: &MitRealm, extra: &[&str]) -> (u16, serde_json::Value) {
    let r = curl_get(cc, realm, &gw.url("/info"), extra);
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// Waits until `/info` answers 200 (at most `bound`); the app's report.
fn wait_info(gw: &Gateway, cc: &Ccache, realm: &MitRealm, bound: Duration) -> serde_json::Value {
    let deadline = Instant::now() + bound;
    loop {
        let (status, v) = info(gw, cc, realm, &[]);
        if status == 200 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "app not served within {bound:?}; last status {status}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid_of(v: &serde_json::Value, key: &str) -> u32 {
    v[key]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn wait_log(gw: &Gateway, needle: &str, bound: Duration) {
    assert!(
        wait_until(bound, || gw.log().contains(needle)),
        "{needle:?} not in the gateway log within {bound:?}:\n{}",
        gw.log()
    );
}

#[test]
fn port_is_passed_in_both_variables_and_the_placeholder_and_kerberos_users_reach_the_app() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let cfg = hosted(
        &realm,
        &record,
        &["--port-arg", "{port}"],
        "args_port_placeholder = \"{port}\"\n",
    );
    let cfg = GatewayConfig {
        backend_table: cfg.backend_table.map(|t| {
            t.replace(
                "PYTHONDONTWRITEBYTECODE",
                "GREETING = \"hi\", PYTHONDONTWRITEBYTECODE",
            )
        }),
        ..cfg
    };
    let gw = Gateway::start(&realm, &cfg);
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    let port = v["PORT"].as_str().expect("PORT").to_owned();
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{v}");
    assert_eq!(v["HTTP_PLATFORM_PORT"].as_str(), Some(port.as_str()), "{v}");
    assert_eq!(v["port_arg"].as_str(), Some(port.as_str()), "{v}");
    assert_ne!(port, gw.port.to_string());
    assert_eq!(v["remote_user"], "alice@IWA.TEST", "{v}");
    assert_eq!(v["env_greeting"], "hi", "backend.env not passed: {v}");
    assert_eq!(v["path"], "/info");
    // Its own process group.
    assert_eq!(pid_of(&v, "pgid"), pid, "{v}");
    // Without credentials: the usual challenge, not the app.
    let anon = gw.get_raw("/info", &[]).unwrap();
    assert_eq!(anon.status, 401);
    // The command line is logged with the real port, and the app's port is loopback.
    wait_log(
        &gw,
        &format!("app[{pid}]: ready on 127.0.0.1:{port}"),
        Duration::from_secs(5),
    );
}

#[test]
fn pairing_token_is_sent_from_the_environment_and_never_from_the_client() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let cfg = hosted(&realm, &record, &[], "")
        .kerberos_line("[[route]]\npath = \"/anon\"\nauth = \"anonymous\"");
    let gw = Gateway::start(&realm, &cfg);
    let _ = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let (status, v) = info(
        &gw,
        &cc,
        &realm,
        &[
            "-H",
            "X-Iwa-Pairing-Token: forged-by-the-client",
            "-H",
            "x_iwa_pairing_token: forged-too",
        ],
    );
    assert_eq!(status, 200, "{v}");
    guard.watch(pid_of(&v, "pid"));
    let token = v["token"].as_str().expect("token in the env").to_owned();
    assert_eq!(token.len(), 64, "{v}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
    assert_eq!(
        v["pairing_headers"],
        serde_json::json!([token]),
        "the app must see exactly iwa's token: {v}"
    );
    // The app refuses a request that does not come through iwa (no token / wrong one).
    let port: u16 = v["PORT"].as_str().unwrap().parse().unwrap();
    let app = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for req in [
        "GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
        "GET /info HTTP/1.1\r\nHost: x\r\nX-Iwa-Pairing-Token: forged\r\nConnection: close\r\n\r\n"
            .to_owned(),
    ] {
        let r = raw_http(app, req.as_bytes()).unwrap();
        assert_eq!(r.status, 403, "direct request accepted: {}", r.text());
    }
    // Anonymous routes get the token too, and a client's token is stripped there as well.
    let anon = gw
        .get_raw(
            "/anon/x",
            &[
                ("X-Iwa-Pairing-Token", "forged"),
                ("X-IWA-PAIRING-TOKEN", "again"),
            ],
        )
        .unwrap();
    assert_eq!(anon.status, 200, "{}", anon.text());
    let a: serde_json::Value = serde_json::from_slice(&anon.body).unwrap();
    assert_eq!(a["pairing_headers"], serde_json::json!([token]), "{a}");
    assert_eq!(a["remote_user"], serde_json::Value::Null, "{a}");
    // Secrets never reach the log.
    assert!(!gw.log().contains(&token), "token logged:\n{}", gw.log());
}

#[test]
fn requests_get_503_while_the_app_starts() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let gw = Gateway::start(&realm, &hosted(&realm, &record, &["--sleep", "4"], ""));
    let r = curl_get(&cc, &realm, &gw.url("/info"), &[]);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("is starting"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    let j = curl_get(
        &cc,
        &realm,
        &gw.url("/info"),
        &["-H", "Accept: application/json"],
    );
    assert_eq!(j.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    assert_eq!(body["code"], "backend_starting", "{body}");
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    guard.watch(pid_of(&v, "pid"));
    assert_eq!(started(&record).len(), 1, "restarted while starting");
}

#[test]
fn startup_timeout_stops_the_app_and_counts_as_a_failure() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let gw = Gateway::start(
        &realm,
        &hosted(
            &realm,
            &record,
            &["--sleep", "300"],
            "startup_timeout = \"1s\"\nmax_failures_per_minute = 2\nrestart_backoff = \"100ms\"\nstop_timeout = \"2s\"\n",
        ),
    );
    wait_log(&gw, "did not accept connections", Duration::from_secs(10));
    wait_log(&gw, "not restarting it", Duration::from_secs(15));
    // From the gateway's log, not the app's record: on a loaded machine Python may
    // not get as far as recording its start within the 1 s startup timeout.
    let pids = started_in_log(&gw);
    for &p in &pids {
        guard.watch(p);
    }
    assert_eq!(pids.len(), 2, "{:?}\n{}", events(&record), gw.log());
    for p in pids {
        assert!(
            wait_until(Duration::from_secs(5), || !pid_alive(p)),
            "app {p} still runs after its startup timeout"
        );
    }
    let r = curl_get(&cc, &realm, &gw.url("/info"), &[]);
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("failed repeatedly"));
}

#[test]
fn a_killed_app_is_restarted_with_a_new_pid() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let gw = Gateway::start(
        &realm,
        &hosted(&realm, &record, &[], "restart_backoff = \"200ms\"\n"),
    );
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let first = guard.watch(pid_of(&v, "pid"));
    let first_port = v["PORT"].clone();
    assert!(send_signal(first, SIGKILL));
    wait_log(
        &gw,
        &format!("app[{first}] exited (signal: 9"),
        Duration::from_secs(10),
    );
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let second = guard.watch(pid_of(&v, "pid"));
    assert_ne!(second, first, "{v}");
    assert!(!pid_alive(first));
    // A fresh port and token per start.
    assert_ne!(v["PORT"], first_port);
    // An app that exits by itself is restarted too.
    let bye = curl_get(&cc, &realm, &gw.url("/exit/3"), &[]);
    assert_eq!(bye.status, 200);
    wait_log(
        &gw,
        &format!("app[{second}] exited (exit status: 3)"),
        Duration::from_secs(10),
    );
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let third = guard.watch(pid_of(&v, "pid"));
    assert!(third != first && third != second);
    assert_eq!(started(&record), vec![first, second, third]);
}

#[test]
fn rapid_failures_stop_the_restarts_with_503_until_sighup() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    let gw = Gateway::start(
        &realm,
        &hosted(
            &realm,
            &record,
            &["--exit-at-start", "3"],
            "max_failures_per_minute = 3\nrestart_backoff = \"100ms\"\n",
        ),
    );
    wait_log(
        &gw,
        "the app failed 3 times within a minute (max_failures_per_minute = 3): not restarting it",
        Duration::from_secs(20),
    );
    assert!(gw
        .log()
        .contains("exited before accepting connections (exit status: 3)"));
    let r = curl_get(
        &cc,
        &realm,
        &gw.url("/info"),
        &["-H", "Accept: application/json"],
    );
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["code"], "backend_failed", "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        started(&record).len(),
        3,
        "restarted after giving up: {:?}",
        events(&record)
    );
    // SIGHUP: a new series of attempts.
    assert!(send_signal(gw.pid(), SIGHUP));
    assert!(
        wait_until(Duration::from_secs(20), || started(&record).len() == 6),
        "no new attempts after SIGHUP: {:?}\n{}",
        events(&record),
        gw.log()
    );
    wait_log(
        &gw,
        "SIGHUP: starting the app again",
        Duration::from_secs(1),
    );
}

#[test]
fn output_goes_to_the_gateway_log_with_a_prefix() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let gw = Gateway::start(&realm, &hosted(&realm, &record, &[], ""));
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    wait_log(
        &gw,
        &format!("app[{pid}]: hello stdout from {pid}"),
        Duration::from_secs(5),
    );
    wait_log(
        &gw,
        &format!("app[{pid}]: hello stderr from {pid}"),
        Duration::from_secs(5),
    );
    // http.server's request log line (stderr) too.
    wait_log(&gw, "\"GET /info HTTP/1.1\" 200", Duration::from_secs(5));
}

#[test]
fn output_goes_to_stdout_log() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let log = dir.path().join("app.log");
    let gw = Gateway::start(
        &realm,
        &hosted(
            &realm,
            &record,
            &[],
            &format!("stdout_log = {}\n", toml_str(&log.display().to_string())),
        ),
    );
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let t = text();
            t.lines().any(|l| l == format!("hello stdout from {pid}"))
                && t.lines().any(|l| l == format!("hello stderr from {pid}"))
                && t.contains("\"GET /info HTTP/1.1\" 200")
        }),
        "app.log:\n{}",
        text()
    );
    assert!(!gw.log().contains("hello stdout"), "{}", gw.log());
}

#[test]
fn sigterm_to_iwa_stops_the_app_and_its_grandchild() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let mut gw = Gateway::start(&realm, &hosted(&realm, &record, &["--grandchild"], ""));
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    let grandchild = guard.watch(pid_of(&v, "grandchild"));
    assert!(pid_alive(grandchild));
    let status = gw.terminate().expect("iwa exit status");
    assert!(
        status.success(),
        "iwa did not exit cleanly: {status}\n{}",
        gw.log()
    );
    assert!(
        events(&record).contains(&("sigterm".to_owned(), pid)),
        "the app got no SIGTERM: {:?}",
        events(&record)
    );
    assert!(!pid_alive(pid), "app {pid} outlived iwa");
    assert!(
        wait_until(Duration::from_secs(2), || !pid_alive(grandchild)),
        "grandchild {grandchild} outlived iwa"
    );
    assert!(
        gw.log().contains(&format!("app[{pid}]: stopped")),
        "{}",
        gw.log()
    );
}

#[test]
fn sigkill_to_iwa_kills_the_app_too() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let mut gw = Gateway::start(&realm, &hosted(&realm, &record, &[], ""));
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    assert!(send_signal(gw.pid(), SIGKILL));
    assert!(
        wait_until(Duration::from_secs(5), || !gw.is_running()),
        "iwa survived SIGKILL"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)),
        "app {pid} outlived iwa's SIGKILL (no PDEATHSIG)"
    );
}

#[test]
fn an_app_ignoring_sigterm_gets_sigkill_after_stop_timeout() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut guard = PidGuard::default();
    let mut gw = Gateway::start(
        &realm,
        &hosted(
            &realm,
            &record,
            &["--ignore-term"],
            "stop_timeout = \"1500ms\"\n",
        ),
    );
    let v = wait_info(&gw, &cc, &realm, Duration::from_secs(20));
    let pid = guard.watch(pid_of(&v, "pid"));
    let t0 = Instant::now();
    assert!(send_signal(gw.pid(), SIGTERM));
    assert!(
        wait_until(Duration::from_secs(15), || !gw.is_running()),
        "iwa did not exit\n{}",
        gw.log()
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "did not wait for stop_timeout: {took:?}"
    );
    assert!(
        events(&record).contains(&("sigterm".to_owned(), pid)),
        "{:?}",
        events(&record)
    );
    assert!(!pid_alive(pid), "app {pid} survived");
    assert!(gw.log().contains("sending SIGKILL"), "{}", gw.log());
    assert!(
        gw.log()
            .contains(&format!("app[{pid}]: stopped (signal: 9")),
        "{}",
        gw.log()
    );
}

fn check(realm: &MitRealm, cfg: &GatewayConfig) -> (bool, String) {
    let dir = TempDir::new("iwa-hosting-check").unwrap();
    let path = dir.path().join("iwa.toml");
    std::fs::write(&path, cfg.render(8080)).unwrap();
    let out = Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(&path)
        .envs(realm.env())
        .env("KRB5RCACHEDIR", dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_reports_the_hosted_command() {
    let realm = realm();
    let dir = TempDir::new("iwa-hosting").unwrap();
    let record = dir.path().join("record");
    let (ok, text) = check(&realm, &hosted(&realm, &record, &[], ""));
    assert!(ok, "{text}");
    assert!(text.contains("hosted app: program"), "{text}");
    assert!(text.contains("  cwd "), "{text}");

    let missing = GatewayConfig::new(&realm, "http://unused")
        .backend_table("command = [\"iwa-no-such-program\", \"x\"]\n");
    let (ok, text) = check(&realm, &missing);
    assert!(!ok, "{text}");
    assert!(
        text.contains("iwa-no-such-program: not found on PATH"),
        "{text}"
    );

    let both = GatewayConfig::new(&realm, "http://unused")
        .backend_table("url = \"http://127.0.0.1:9\"\ncommand = [\"python3\"]\n");
    let (ok, text) = check(&realm, &both);
    assert!(!ok);
    assert!(
        text.contains("`backend.url` and `backend.command` are mutually exclusive"),
        "{text}"
    );
}
