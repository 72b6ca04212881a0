//! Small std-only helpers: free loopback ports, readiness polling, temp dirs.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{RealmError, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
///
/// There is an unavoidable window before the caller binds it again; callers that start
/// servers on it should retry with a new port when the bind fails.
pub fn free_tcp_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| RealmError::io("bind 127.0.0.1:0", e))?;
    let port = l
        .local_addr()
        .map_err(|e| RealmError::io("local_addr", e))?
        .port();
    Ok(port)
}

/// A port free for both TCP and UDP on 127.0.0.1 (the KDC listens on both).
pub fn free_tcp_udp_port() -> Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| RealmError::io("bind 127.0.0.1:0", e))?;
        let port = tcp
            .local_addr()
            .map_err(|e| RealmError::io("local_addr", e))?
            .port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(RealmError::Invalid(
        "no port free for both TCP and UDP on 127.0.0.1".into(),
    ))
}

/// True if something accepts TCP connections at `addr` right now.
pub fn tcp_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Poll `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A string unique within this machine for this run: pid, a counter and the clock.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:x}", std::process::id())
}

/// Name of the environment variable that keeps temp dirs after drop (for debugging).
pub const KEEP_DIRS_ENV: &str = "IWA_KEEP_TEST_DIRS";

/// A directory removed on drop (unless `IWA_KEEP_TEST_DIRS=1`). std-only stand-in for
/// the `tempfile` crate.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Create `$TMPDIR/<prefix>-<unique>`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let base = std::env::temp_dir();
        for _ in 0..10 {
            let path = base.join(format!("{prefix}-{}", unique_suffix()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let keep = std::env::var(KEEP_DIRS_ENV).is_ok_and(|v| v == "1");
                    return Ok(TempDir { path, keep });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RealmError::io(format!("create {}", path.display()), e)),
            }
        }
        Err(RealmError::Invalid(
            "could not create a unique temp dir".into(),
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory after drop and return its path.
    pub fn into_path(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
