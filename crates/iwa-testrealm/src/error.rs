//! The one error type of this crate.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while creating, attaching to or driving a test realm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealmError {
    /// A filesystem or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An MIT tool (`kdb5_util`, `kadmin.local`, `kinit`, ...) could not be started.
    /// Usually the package is missing: run `scripts/deps.sh`.
    #[error("cannot run `{program}` (is it installed? run scripts/deps.sh): {source}")]
    ToolMissing {
        /// The program name.
        program: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// An MIT tool ran but reported failure.
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The program name.
        program: String,
        /// Its arguments, space separated (never contains passwords: those go on stdin).
        args: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// `kadmin.local` exits 0 even when a command fails; this is a failed command.
    #[error("kadmin.local command failed: {message}")]
    Kadmin {
        /// The error lines kadmin.local printed.
        message: String,
    },
    /// The KDC did not come up.
    #[error("krb5kdc did not start after {attempts} attempt(s): {reason}\n--- kdc log tail ---\n{log_tail}")]
    KdcStart {
        /// How many ports we tried.
        attempts: u32,
        /// Why the last attempt failed.
        reason: String,
        /// The end of the KDC's log file.
        log_tail: String,
    },
    /// `IWA_TEST_REALM` (or an explicit attach) points at a directory without a usable realm.
    #[error("no ready realm in {dir}: {reason}")]
    NotReady {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The state file `realm.json` is unreadable.
    #[error("bad realm state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A caller-supplied value is unusable (e.g. a principal name with a newline).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl RealmError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RealmError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = RealmError> = std::result::Result<T, E>;
