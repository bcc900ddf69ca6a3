use std::path::PathBuf;

use crate::config::ConfigError;
use crate::manifest::ManifestError;
use crate::storage::{KeyError, StoreError};

/// Everything the core can fail with. Each message is one line a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("unknown source {name:?} (configured: {known})")]
    UnknownSource { name: String, known: String },
    #[error("no backup matches {0}")]
    NoBackup(String),
    #[error("{what} matches backups of several sources ({sources}); name one with --source")]
    AmbiguousSource { what: String, sources: String },
    #[error("backup {id} cannot be restored: {reason}")]
    NotRestorable { id: String, reason: String },
    #[error(
        "checksum mismatch in {key}: the manifest says sha256 {expected}, the stored bytes hash to {actual}; nothing was restored"
    )]
    Checksum {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch in {key}: the manifest says {expected} bytes, the store holds {actual}")]
    Size {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "target {0} already exists; choose another path or pass --force-target with the same path to replace it"
    )]
    TargetExists(PathBuf),
    #[error(
        "target {0} is the source database itself: a restore never replaces a live database; restore into a new file, then `lifeboat promote FILE` puts the proven copy in its place and keeps the old one"
    )]
    TargetIsSource(PathBuf),
    #[error(
        "database {0} already exists on the scratch server: a restore only creates a new database; choose another name"
    )]
    DatabaseExists(String),
    #[error(
        "database {0} is the source database itself: a restore never loads a live database; restore into a new database, then `lifeboat promote NAME` puts the proven copy in its place and keeps the old one"
    )]
    DatabaseIsSource(String),
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {context}: {detail}")]
    Postgres { context: String, detail: String },
    /// A PostgreSQL client tool is missing, too old, or failed.
    #[error("{0}")]
    Tool(String),
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A dump asked for what a restore never does (reach another file or database, run code,
    /// take rights it was not given); the message names it and what would allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Input that cannot be used as it is; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
    #[error("restore finished but {} table(s) differ from the manifest", .0.diff.findings().count())]
    RowCountMismatch(Box<crate::pipeline::restore::RestoreReport>),
    #[error("another lifeboat job holds the lock for source {name} (pid {pid})")]
    Locked { name: String, pid: String },
    #[error("cancelled")]
    Cancelled,
    /// A restore refused before it read anything, for a reason of this host and not of the
    /// backup (no key to decrypt it here).
    #[error(transparent)]
    Refused(Box<Error>),
    /// Some copies between stores failed; the report says which.
    #[error("{}", .0.failure_summary())]
    CopyFailed(Box<crate::copy::CopyReport>),
    /// A failure of one store's copy, when there are several stores.
    #[error("store {store}: {source}")]
    InStore { store: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether a restore stopped before reading anything, for a reason that says nothing
    /// about the backup: the target exists or is the source, or the key is missing here.
    /// Such a job is recorded as refused and counts neither as a verification nor as a
    /// failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::TargetExists(_)
                | Error::TargetIsSource(_)
                | Error::DatabaseExists(_)
                | Error::DatabaseIsSource(_)
                | Error::Refused(_)
        )
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |source| Error::Sqlite { context, source }
    }
}
