//! Stopping processes by PID, politely first.
//!
//! Everything here targets one PID that the caller started (or recorded in a pid file it
//! wrote). Nothing matches processes by name.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::error::{RealmError, Result};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long [`ChildGuard`] and [`terminate_pid`] wait after SIGTERM before SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Send `signal` to `pid`. Returns false if the process does not exist (or `pid` is not
/// a positive PID, which would address a process group).
pub fn send_signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a single positive PID.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Send SIGTERM to `pid` (false if there is no such process).
pub fn sigterm(pid: u32) -> bool {
    send_signal(pid, libc::SIGTERM)
}

/// True if `pid` names a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    if !send_signal(pid, 0) {
        return false;
    }
    // A zombie still accepts signal 0; /proc tells us its state (field 3 of stat).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// The command name (`/proc/<pid>/comm`) of a live process, if readable.
pub fn pid_comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Stop a process that is *not* our child (e.g. a KDC started by an earlier
/// `iwa-realm up`): SIGTERM, wait up to `grace` for it to disappear, then SIGKILL.
/// Returns true if the process is gone afterwards.
pub fn terminate_pid(pid: u32, grace: Duration) -> bool {
    if !pid_alive(pid) {
        return true;
    }
    send_signal(pid, libc::SIGTERM);
    if wait_gone(pid, grace) {
        return true;
    }
    send_signal(pid, libc::SIGKILL);
    wait_gone(pid, Duration::from_secs(2))
}

fn wait_gone(pid: u32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

/// Stop an owned child: SIGTERM, wait up to `grace`, then SIGKILL, and reap it.
/// Returns the exit status if it could be collected.
pub fn terminate_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    send_signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill(); // SIGKILL
    child.wait().ok()
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a bound) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    grace: Duration,
}

impl ChildGuard {
    /// Guard `child` with the default grace period.
    pub fn new(child: Child) -> Self {
        ChildGuard {
            child: Some(child),
            grace: DEFAULT_STOP_GRACE,
        }
    }

    /// Change how long to wait after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's PID.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Access the child (e.g. for `try_wait`).
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// `Some(status)` if the child has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stop now and return the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let grace = self.grace;
        self.child
            .take()
            .and_then(|mut c| terminate_child(&mut c, grace))
    }

    /// Give up ownership: the process keeps running after the guard is gone.
    pub fn disown(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a finished tool printed.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Run a tool with an optional stdin and a deadline (killed on timeout). Non-zero exit is
/// [`RealmError::ToolFailed`] with stderr (and stdout: samba tools print errors there).
pub(crate) fn run_tool(
    mut cmd: Command,
    program: &str,
    shown_args: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<ToolOutput> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| RealmError::ToolMissing {
        program: program.into(),
        source: e,
    })?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(RealmError::io(format!("wait for {program}"), e)),
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    match status {
        Some(st) if st.success() => Ok(ToolOutput { stdout, stderr }),
        Some(st) => Err(RealmError::ToolFailed {
            program: program.into(),
            args: shown_args.into(),
            status: st,
            stderr: format!("{}\n{}", stderr.trim(), stdout.trim())
                .trim()
                .to_owned(),
        }),
        None => Err(RealmError::Invalid(format!(
            "`{program} {shown_args}` did not finish within {timeout:?}"
        ))),
    }
}
