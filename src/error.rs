//! The library's error type. Every variant says what went wrong, where, and how to
//! fix it; the CLI prints it with `{:#}` and maps it to an exit code.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the fuse library. Messages are one sentence plus the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: {message}", path.display())]
    Config {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("environment variable {var}={value:?} is not valid: {message}")]
    ConfigEnv {
        var: String,
        value: String,
        message: String,
    },

    #[error("invalid setting: {0}")]
    Setting(String),

    /// A run, workflow or version that is not there (the message says what
    /// to look at instead).
    #[error("{0}")]
    NotFound(String),

    #[error(
        "{} is not a SQLite database (it may be corrupt or another file); move it aside and run `fuse init` to create a new one",
        path.display()
    )]
    NotADatabase { path: PathBuf },

    #[error(
        "the database {} has schema version {found}, newer than this fuse knows (up to {known}); upgrade fuse (`cargo install fuse` or ./install.sh) to open it",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// The SQLite error is in the message (with what to do about it), not
    /// in the source chain, so that `{:#}` does not print it twice.
    #[error("database error while {action} ({}): {}", path.display(), crate::store::explain(cause))]
    Database {
        action: &'static str,
        path: PathBuf,
        cause: rusqlite::Error,
    },

    #[error("migrating the database {} failed: {source}", path.display())]
    Migration {
        path: PathBuf,
        #[source]
        source: refinery::Error,
    },

    #[error("no fuse home at {}: run `fuse init` (or pass --home / set FUSE_HOME to an existing home)", path.display())]
    NoHome { path: PathBuf },

    #[error("{0}")]
    KeyStore(String),

    /// The daemon refused a request as invalid (4xx); its words.
    #[error("{0}")]
    Refused(String),

    #[error("{0}")]
    Credential(String),

    /// The PostgreSQL run queue failed (its message says which step).
    #[error("{0}")]
    Queue(String),
}

impl Error {
    /// An I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Attach an action and path to an `io::Result`.
pub trait IoContext<T> {
    fn io_context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
    }
}
