//! Hosting the backend app as a child process, like IIS HttpPlatformHandler (and ANCM
//! out-of-process): `[backend] command = [...]`.
//!
//! For every start, iwa picks a free loopback port and a fresh pairing token, starts the
//! app in its own process group with `PORT` / `HTTP_PLATFORM_PORT` / `IWA_PAIRING_TOKEN`
//! in its environment, and answers 503 until the port accepts connections (at most
//! `startup_timeout`). Requests then go to `http://127.0.0.1:<port>` with the token in
//! `X-Iwa-Pairing-Token`, so the app can refuse anything that did not come through iwa.
//! When the app exits it is started again after an exponential backoff, unless it failed
//! `max_failures_per_minute` times within a minute: then iwa stops trying and answers
//! 503 until SIGHUP or a restart. Its stdout/stderr lines go to `stdout_log` or to iwa's
//! log as `app[pid]: …`.
//!
//! Stopping: SIGTERM to the whole process group, `stop_timeout` for every member to go,
//! then SIGKILL to the group. If iwa itself dies (even by SIGKILL), the kernel kills the
//! app: `PR_SET_PDEATHSIG`. That signal follows the *thread* that forked the app, so one
//! dedicated thread (`iwa-hosting`) starts, watches and stops the app and lives exactly
//! as long as the app may run. Grandchildren get PDEATHSIG only if they ask for it
//! themselves; on a clean stop they go with the group, and against SIGKILL of iwa only
//! a cgroup (systemd's default `KillMode=control-group`) catches them.
//!
//! Shape: [`FailureHistory`] is the pure restart policy (instants are parameters);
//! [`AppHandle`] is the state the proxy reads per request; [`Hosting`] owns the
//! supervisor thread; the unsafe system calls live in the `sys` module below.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::uri::Authority;
use http::{Response, StatusCode, Uri};
use http_body_util::Full;
use tracing::{error, info, warn};

use crate::config::HostedApp;

/// The header that carries the pairing token to the app. It has the reserved `X-Iwa-`
/// prefix, so a client-sent one is stripped with the identity headers.
pub const PAIRING_HEADER: HeaderName = HeaderName::from_static("x-iwa-pairing-token");
/// The environment variable that carries the pairing token to the app.
pub const PAIRING_ENV: &str = "IWA_PAIRING_TOKEN";

/// Failures older than this no longer count (the "per minute" of the limit).
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How often the supervisor looks at the app (exit, readiness).
const POLL: Duration = Duration::from_millis(50);
/// Longest line taken from the app's output; longer ones are split.
const MAX_LINE: usize = 16 * 1024;

// ---------------------------------------------------------------------------------
// The restart policy: pure, with the clock as a parameter.

/// Backoff and rapid-failure limit (`restart_backoff`, `restart_backoff_max`,
/// `max_failures_per_minute`).
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub max_failures_per_minute: u32,
}

impl RestartPolicy {
    pub fn from_config(app: &HostedApp) -> Self {
        RestartPolicy {
            backoff: app.restart_backoff,
            backoff_max: app.restart_backoff_max,
            max_failures_per_minute: app.max_failures_per_minute,
        }
    }

    /// The delay before the restart that follows the `n`th recent failure (n ≥ 1):
    /// `backoff · 2^(n-1)`, at most `backoff_max`.
    pub fn delay(&self, n: usize) -> Duration {
        let exp = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(31);
        self.backoff
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max)
    }
}

/// What to do after the app failed.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// It failed `failures` times within a minute: stop trying.
    GiveUp { failures: usize },
}

/// The failures within the last minute.
#[derive(Debug, Default)]
pub struct FailureHistory {
    times: VecDeque<Instant>,
}

impl FailureHistory {
    /// Records a failure at `now` and decides what follows.
    pub fn record(&mut self, now: Instant, policy: &RestartPolicy) -> RestartDecision {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
        {
            self.times.pop_front();
        }
        let n = self.times.len();
        if n >= policy.max_failures_per_minute as usize {
            RestartDecision::GiveUp { failures: n }
        } else {
            RestartDecision::RestartAfter(policy.delay(n))
        }
    }

    /// Forgets every failure (an operator asked for a new attempt).
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

// ---------------------------------------------------------------------------------
// The state the proxy reads on every request.

#[derive(Debug, Clone)]
enum AppState {
    /// Started (or about to be), not accepting connections yet.
    Starting,
    Ready {
        authority: Authority,
        /// Marked sensitive: hyper never logs or indexes it.
        token: HeaderValue,
    },
    /// Exited; a restart is scheduled.
    Restarting,
    /// Rapid-failure limit reached; waiting for SIGHUP.
    GaveUp,
    /// iwa is shutting down.
    Stopped,
}

/// The names [`AppHandle::state_name`] gives.
pub const STATE_NAMES: [&str; 5] = ["starting", "ready", "restarting", "gave_up", "stopped"];

/// Why a request cannot go to the hosted app right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Starting,
    GaveUp,
    Stopped,
}

impl Unavailable {
    /// The 503 page for it.
    pub fn response(self, accept: Option<&HeaderValue>) -> Response<Full<Bytes>> {
        let (code, message) = match self {
            Unavailable::Starting => (
                "backend_starting",
                "The application behind this gateway is starting. Try again in a moment.",
            ),
            Unavailable::GaveUp => (
                "backend_failed",
                "The application behind this gateway failed repeatedly and has been stopped; the gateway's log says why.",
            ),
            Unavailable::Stopped => ("backend_stopped", "The gateway is shutting down."),
        };
        let mut r = iwa::error::error_page(StatusCode::SERVICE_UNAVAILABLE, code, message, accept);
        if self == Unavailable::Starting {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("2"));
        }
        r
    }
}

/// The hosted app as the proxy sees it: where it listens and its pairing token.
#[derive(Debug)]
pub struct AppHandle {
    state: RwLock<AppState>,
}

impl Default for AppHandle {
    fn default() -> Self {
        AppHandle {
            state: RwLock::new(AppState::Starting),
        }
    }
}

impl AppHandle {
    fn set(&self, state: AppState) {
        // A poisoned lock only means a panic elsewhere while writing a plain value.
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    fn get(&self) -> AppState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The state's name, one of [`STATE_NAMES`] (for metrics).
    pub fn state_name(&self) -> &'static str {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            AppState::Starting => "starting",
            AppState::Ready { .. } => "ready",
            AppState::Restarting => "restarting",
            AppState::GaveUp => "gave_up",
            AppState::Stopped => "stopped",
        }
    }

    /// Points a request (already prepared for the backend, with an absolute URI) at the
    /// running app and adds the pairing token; or says why it cannot go there.
    pub fn direct(&self, parts: &mut http::request::Parts) -> Result<(), Unavailable> {
        let (authority, token) = match self.get() {
            AppState::Ready { authority, token } => (authority, token),
            AppState::Starting | AppState::Restarting => return Err(Unavailable::Starting),
            AppState::GaveUp => return Err(Unavailable::GaveUp),
            AppState::Stopped => return Err(Unavailable::Stopped),
        };
        let mut uri = parts.uri.clone().into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        // Scheme, authority and path are all set: `from_parts` cannot fail. Should it,
        // the request is not sent anywhere else.
        parts.uri = Uri::from_parts(uri).map_err(|_| Unavailable::Starting)?;
        parts.headers.insert(PAIRING_HEADER, token);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// The supervisor.

enum Control {
    /// Stop the app and end the supervisor.
    Stop,
    /// After the rapid-failure stop: start again (SIGHUP).
    Retry,
}

/// The hosted app of a gateway: configuration, shared state, and the supervisor thread
/// once started.
pub struct Hosting {
    app: HostedApp,
    handle: Arc<AppHandle>,
    running: Mutex<Option<(mpsc::Sender<Control>, JoinHandle<()>)>>,
}

impl Hosting {
    pub fn new(app: HostedApp) -> Self {
        Hosting {
            app,
            handle: Arc::new(AppHandle::default()),
            running: Mutex::new(None),
        }
    }

    /// For the proxy.
    pub fn handle(&self) -> Arc<AppHandle> {
        self.handle.clone()
    }

    /// Starts the supervisor thread (which starts the app). Once only.
    pub fn start(&self) -> std::io::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let app = self.app.clone();
        let handle = self.handle.clone();
        // This thread forks the app and must outlive it (PR_SET_PDEATHSIG follows the
        // forking thread): it returns only after the app and its group are gone.
        let thread = std::thread::Builder::new()
            .name("iwa-hosting".into())
            .spawn(move || supervise(&app, &handle, &rx))?;
        *running = Some((tx, thread));
        Ok(())
    }

    /// SIGHUP: after the rapid-failure stop, try again with a clean slate.
    pub fn retry(&self) {
        if let Some((tx, _)) = &*self.running.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(Control::Retry);
        }
    }

    /// Stops the app (SIGTERM to its group, SIGKILL after `stop_timeout`) and waits
    /// until it is gone. Blocks: call it from a blocking context.
    pub fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((tx, thread)) = running {
            let _ = tx.send(Control::Stop);
            if thread.join().is_err() {
                error!("the hosting supervisor panicked; the app was killed with it (PDEATHSIG)");
            }
        }
        self.handle.set(AppState::Stopped);
    }
}

impl Drop for Hosting {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How one run of the app ended.
enum Ended {
    /// Asked to stop; the app is gone.
    Stopped,
    /// It exited, did not start, or could not be started; it is gone.
    Failed(String),
}

/// The supervisor thread: run, restart with backoff, give up, stop.
fn supervise(app: &HostedApp, handle: &AppHandle, rx: &mpsc::Receiver<Control>) {
    let policy = RestartPolicy::from_config(app);
    let mut history = FailureHistory::default();
    'run: loop {
        handle.set(AppState::Starting);
        let why = match run_once(app, handle, rx) {
            Ended::Stopped => break,
            Ended::Failed(why) => {
                crate::metrics::global().app_failed();
                why
            }
        };
        match history.record(Instant::now(), &policy) {
            RestartDecision::RestartAfter(delay) => {
                handle.set(AppState::Restarting);
                warn!(target: "iwa::hosting", "{why}; restarting it in {delay:?}");
                match rx.recv_timeout(delay) {
                    Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Control::Retry) | Err(RecvTimeoutError::Timeout) => {}
                }
            }
            RestartDecision::GiveUp { failures } => {
                handle.set(AppState::GaveUp);
                error!(
                    target: "iwa::hosting",
                    "{why}; the app failed {failures} times within a minute (max_failures_per_minute = {}): not restarting it; requests get 503 until iwa is reloaded (SIGHUP) or restarted",
                    policy.max_failures_per_minute
                );
                match rx.recv() {
                    Ok(Control::Retry) => {
                        info!(target: "iwa::hosting", "SIGHUP: starting the app again");
                        history.clear();
                        continue 'run;
                    }
                    Ok(Control::Stop) | Err(_) => break 'run,
                }
            }
        }
    }
    handle.set(AppState::Stopped);
}

/// Starts the app once, waits until it listens, then until it exits or iwa stops.
fn run_once(app: &HostedApp, handle: &AppHandle, rx: &mpsc::Receiver<Control>) -> Ended {
    let program = app.command.first().map_or("", String::as_str);
    let port = match free_loopback_port() {
        Ok(p) => p,
        Err(e) => return Ended::Failed(format!("no free loopback port for the app: {e}")),
    };
    let token = match new_token() {
        Ok(t) => t,
        Err(e) => return Ended::Failed(e),
    };
    let Ok(mut token_header) = HeaderValue::from_str(&token) else {
        return Ended::Failed("internal error: the pairing token is not a header value".into());
    };
    token_header.set_sensitive(true);
    let port_s = port.to_string();
    let args = substitute_port(
        app.command.get(1..).unwrap_or_default(),
        app.port_placeholder.as_deref(),
        &port_s,
    );
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .current_dir(&app.cwd)
        .envs(&app.env)
        .env("PORT", &port_s)
        .env("HTTP_PLATFORM_PORT", &port_s)
        .env(PAIRING_ENV, &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::own_group_and_die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ended::Failed(format!(
                "cannot start `{program}` in {}: {e}",
                app.cwd.display()
            ))
        }
    };
    let pid = child.id();
    crate::metrics::global().app_started();
    // Never the environment: the token and `backend.env` values may be secrets.
    info!(target: "iwa::hosting", pid, port, "app[{pid}]: started `{}` on 127.0.0.1:{port}", shown_command(program, &args));
    let sink = Sink::open(app.stdout_log.as_deref());
    if let Some(out) = child.stdout.take() {
        pump(out, pid, "stdout", sink.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, pid, "stderr", sink);
    }

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    loop {
        if sys::has_exited(pid) {
            let status = stop_group(&mut child, app.stop_timeout);
            return Ended::Failed(format!(
                "app[{pid}] exited before accepting connections ({})",
                describe_status(status)
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            break;
        }
        if started.elapsed() >= app.startup_timeout {
            warn!(target: "iwa::hosting", "app[{pid}]: did not accept connections on 127.0.0.1:{port} within startup_timeout ({:?}); stopping it", app.startup_timeout);
            let status = stop_group(&mut child, app.stop_timeout);
            return Ended::Failed(format!(
                "app[{pid}] did not start within {:?} ({})",
                app.startup_timeout,
                describe_status(status)
            ));
        }
        match rx.recv_timeout(POLL) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                handle.set(AppState::Stopped);
                stop_app(&mut child, app.stop_timeout);
                return Ended::Stopped;
            }
            Ok(Control::Retry) | Err(RecvTimeoutError::Timeout) => {}
        }
    }
    let authority = match Authority::try_from(format!("127.0.0.1:{port}")) {
        Ok(a) => a,
        Err(e) => {
            stop_group(&mut child, app.stop_timeout);
            return Ended::Failed(format!("internal error: 127.0.0.1:{port}: {e}"));
        }
    };
    info!(target: "iwa::hosting", pid, port, "app[{pid}]: ready on 127.0.0.1:{port} after {:?}", started.elapsed());
    handle.set(AppState::Ready {
        authority,
        token: token_header,
    });
    loop {
        match rx.recv_timeout(POLL) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                handle.set(AppState::Stopped);
                stop_app(&mut child, app.stop_timeout);
                return Ended::Stopped;
            }
            Ok(Control::Retry) | Err(RecvTimeoutError::Timeout) => {}
        }
        if sys::has_exited(pid) {
            handle.set(AppState::Restarting);
            // Whatever it left behind in its group goes too.
            let status = stop_group(&mut child, app.stop_timeout);
            return Ended::Failed(format!("app[{pid}] exited ({})", describe_status(status)));
        }
    }
}

/// Stops the app on shutdown, with log lines.
fn stop_app(child: &mut Child, grace: Duration) {
    let pid = child.id();
    info!(target: "iwa::hosting", "app[{pid}]: stopping (SIGTERM to its process group, at most {grace:?})");
    let status = stop_group(child, grace);
    info!(target: "iwa::hosting", "app[{pid}]: stopped ({})", describe_status(status));
}

/// SIGTERM to the app's process group; waits until the leader has exited and no other
/// member lives, at most `grace`; then SIGKILL to the group; then reaps the leader.
/// The leader stays unreaped (a zombie at worst) until the end, so its PID — the group's
/// ID — cannot be reused while we signal the group.
fn stop_group(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pgid = child.id();
    sys::signal_group(pgid, sys::Signal::Term);
    let deadline = Instant::now() + grace;
    loop {
        if sys::has_exited(pgid) && !sys::group_has_live_members(pgid) {
            break;
        }
        if Instant::now() >= deadline {
            warn!(target: "iwa::hosting", "app[{pgid}]: its process group still runs {grace:?} after SIGTERM (stop_timeout); sending SIGKILL");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Also catches a member forked after the last look; the group is empty otherwise.
    sys::signal_group(pgid, sys::Signal::Kill);
    child.wait().ok()
}

fn describe_status(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "exit status unknown".to_owned(), |s| s.to_string())
}

/// The command line for the log (program and arguments; never the environment).
fn shown_command(program: &str, args: &[String]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// The arguments with `placeholder` replaced by the port.
pub fn substitute_port(args: &[String], placeholder: Option<&str>, port: &str) -> Vec<String> {
    match placeholder {
        Some(p) if !p.is_empty() => args.iter().map(|a| a.replace(p, port)).collect(),
        _ => args.to_vec(),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Should another process take it
/// before the app binds it, the app fails to start and is restarted on another port.
fn free_loopback_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// 32 random bytes, hex.
fn new_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for the pairing token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

// ---------------------------------------------------------------------------------
// The app's output.

/// Where the app's output lines go.
#[derive(Clone)]
enum Sink {
    Log,
    File(Arc<Mutex<std::fs::File>>),
}

impl Sink {
    /// Opened (append) for each start of the app, so a rotated file is picked up.
    fn open(path: Option<&std::path::Path>) -> Sink {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = path else { return Sink::Log };
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
        {
            Ok(f) => Sink::File(Arc::new(Mutex::new(f))),
            Err(e) => {
                warn!(target: "iwa::hosting", "cannot open stdout_log {}: {e}; the app's output goes to this log", path.display());
                Sink::Log
            }
        }
    }

    fn line(&self, pid: u32, stream: &'static str, line: &[u8]) {
        match self {
            Sink::Log => {
                let text = printable(line);
                info!(target: "iwa::app", stream, "app[{pid}]: {text}");
            }
            Sink::File(f) => {
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                // One write per line, so stdout and stderr lines do not interleave.
                let mut buf = Vec::with_capacity(line.len() + 1);
                buf.extend_from_slice(line);
                buf.push(b'\n');
                if let Err(e) = f.write_all(&buf) {
                    warn!(target: "iwa::hosting", "app[{pid}]: cannot write to stdout_log: {e}");
                }
            }
        }
    }
}

/// Reads `r` line by line on its own thread until EOF (when the app and everything that
/// inherited the pipe are gone).
fn pump(r: impl Read + Send + 'static, pid: u32, stream: &'static str, sink: Sink) {
    let spawned = std::thread::Builder::new()
        .name(format!("iwa-app-{stream}"))
        .spawn(move || {
            let mut r = BufReader::new(r);
            for line in lines(&mut r) {
                sink.line(pid, stream, &line);
            }
        });
    if let Err(e) = spawned {
        warn!(target: "iwa::hosting", "app[{pid}]: cannot read its {stream}: {e}");
    }
}

/// Lines of at most [`MAX_LINE`] bytes, without `\n` / `\r\n`.
fn lines<R: BufRead>(r: &mut R) -> impl Iterator<Item = Vec<u8>> + '_ {
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                Some(buf)
            }
        }
    })
}

/// The line as text for the log: invalid UTF-8 replaced, control characters (but tab)
/// escaped, so an app cannot forge or garble log lines.
fn printable(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// System calls: the only unsafe code of the gateway.

mod sys {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[derive(Debug, Clone, Copy)]
    pub enum Signal {
        Term,
        Kill,
    }

    /// The child gets its own process group (so the whole group can be signalled, and a
    /// Ctrl-C meant for iwa does not reach it directly), and SIGKILL when the thread that
    /// forked it dies — with iwa, even by SIGKILL.
    pub fn own_group_and_die_with_parent(cmd: &mut Command) {
        cmd.process_group(0);
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid); it touches no locks, does not
        // allocate, and captures one integer by value.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // iwa died between fork and prctl: the death signal was missed.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }

    /// Sends `signal` to every process of group `pgid` (no-op for a non-positive ID).
    pub fn signal_group(pgid: u32, signal: Signal) {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return;
        };
        if pgid <= 1 {
            return;
        }
        let sig = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: kill(2) has no memory-safety preconditions; a negative PID addresses
        // exactly the process group `pgid` (> 1, so never "all processes").
        unsafe {
            libc::kill(-pgid, sig);
        }
    }

    /// Whether our child `pid` has exited, without reaping it (WNOWAIT): until the
    /// caller reaps it, its PID (and so its process group ID) stays reserved.
    pub fn has_exited(pid: u32) -> bool {
        let pid: libc::id_t = pid;
        // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            // ECHILD: not our child (any more): treat as gone.
            return true;
        }
        // SAFETY: after a successful waitid, si_pid is initialised (0 when no child
        // changed state, with WNOHANG).
        unsafe { info.si_pid() != 0 }
    }

    /// Whether a process other than a zombie is in group `pgid` (from /proc).
    pub fn group_has_live_members(pgid: u32) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        dir.flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .any(|stat| {
                // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let mut f = rest.split_whitespace();
                let state = f.next();
                let pgrp = f.nth(1).and_then(|p| p.parse::<u32>().ok());
                pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X") | None)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32) -> RestartPolicy {
        RestartPolicy {
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            max_failures_per_minute: max,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(100);
        let d: Vec<u64> = (1..=6).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(p.delay(0), Duration::from_secs(1));
        assert_eq!(p.delay(usize::MAX), Duration::from_secs(10));
    }

    #[test]
    fn gives_up_after_n_failures_within_a_minute() {
        let p = policy(3);
        let t0 = Instant::now();
        let mut h = FailureHistory::default();
        assert_eq!(
            h.record(t0, &p),
            RestartDecision::RestartAfter(Duration::from_secs(1))
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(5), &p),
            RestartDecision::RestartAfter(Duration::from_secs(2))
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(59), &p),
            RestartDecision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn old_failures_expire_and_the_backoff_resets() {
        let p = policy(3);
        let t0 = Instant::now();
        let mut h = FailureHistory::default();
        let _ = h.record(t0, &p);
        let _ = h.record(t0 + Duration::from_secs(30), &p);
        // The first is 60 s old now: two within the window, no give-up.
        assert_eq!(
            h.record(t0 + Duration::from_secs(60), &p),
            RestartDecision::RestartAfter(Duration::from_secs(2))
        );
        // A long quiet spell: back to the first delay.
        assert_eq!(
            h.record(t0 + Duration::from_secs(600), &p),
            RestartDecision::RestartAfter(Duration::from_secs(1))
        );
        h.clear();
        assert_eq!(
            h.record(t0 + Duration::from_secs(601), &p),
            RestartDecision::RestartAfter(Duration::from_secs(1))
        );
    }

    #[test]
    fn limit_of_one_gives_up_at_once() {
        let mut h = FailureHistory::default();
        assert_eq!(
            h.record(Instant::now(), &policy(1)),
            RestartDecision::GiveUp { failures: 1 }
        );
    }

    #[test]
    fn port_placeholder_in_arguments() {
        let args = vec![
            "-b".to_owned(),
            "127.0.0.1:{port}".to_owned(),
            "{port}{port}".into(),
        ];
        assert_eq!(
            substitute_port(&args, Some("{port}"), "8123"),
            vec!["-b", "127.0.0.1:8123", "81238123"]
        );
        assert_eq!(substitute_port(&args, None, "8123"), args);
    }

    #[test]
    fn token_is_64_hex_characters_and_fresh() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn output_lines_are_split_bounded_and_printable() {
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.extend_from_slice(b"\nsecond\r\nthird");
        let mut r = std::io::Cursor::new(long);
        let got: Vec<Vec<u8>> = lines(&mut r).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1], b"xxxxxxxxxx");
        assert_eq!(got[2], b"second");
        assert_eq!(got[3], b"third");
        assert_eq!(
            printable(b"a\tb\x1b[31mc\rd\xff"),
            "a\tb\\u{1b}[31mc\\rd\u{fffd}"
        );
    }

    #[test]
    fn direct_points_at_the_app_with_the_token() {
        let h = AppHandle::default();
        let (mut parts, ()) = http::Request::builder()
            .uri("http://127.0.0.1/x?y=1")
            .header(PAIRING_HEADER, "forged")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(h.direct(&mut parts), Err(Unavailable::Starting));
        let mut token = HeaderValue::from_static("t0k");
        token.set_sensitive(true);
        h.set(AppState::Ready {
            authority: Authority::from_static("127.0.0.1:4567"),
            token,
        });
        h.direct(&mut parts).unwrap();
        assert_eq!(parts.uri.to_string(), "http://127.0.0.1:4567/x?y=1");
        let got: Vec<_> = parts.headers.get_all(PAIRING_HEADER).iter().collect();
        assert_eq!(got, vec!["t0k"]);
        h.set(AppState::GaveUp);
        assert_eq!(h.direct(&mut parts), Err(Unavailable::GaveUp));
        let page = Unavailable::Starting.response(None);
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(page.headers().contains_key(RETRY_AFTER));
    }

    #[test]
    fn a_client_sent_pairing_header_is_reserved() {
        let ih = iwa::IdentityHeaders::default();
        assert!(ih.is_reserved(&PAIRING_HEADER));
        assert!(ih.is_reserved(&HeaderName::from_static("x_iwa_pairing_token")));
    }

    #[test]
    fn stop_group_takes_the_grandchildren_too() {
        // sh starts a grandchild that ignores SIGTERM, and waits.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "sh -c 'trap \"\" TERM; echo $$; exec sleep 60' & wait",
        ])
        .stdout(Stdio::piped());
        sys::own_group_and_die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(sys::group_has_live_members(child.id()));
        let t0 = Instant::now();
        let status = stop_group(&mut child, Duration::from_millis(300));
        assert!(status.is_some());
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "did not wait for the grace period"
        );
        // The grandchild ignored SIGTERM; SIGKILL took it (it is init's zombie at most).
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(grandchild), "grandchild {grandchild} survived");
        assert!(!sys::group_has_live_members(child.id()));
    }
}
