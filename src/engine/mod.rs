//! Database engines: how to take a consistent snapshot, count rows, and load a dump back.
//!
//! Everything the rest of lifeboat needs of an engine goes through [`Engine`]; the engine
//! of a source, a backup, a restore target or a live source is looked up with
//! [`for_kind`] / [`for_source`] or their `engine()`. Adding an engine is then a new module
//! here, a variant of [`EngineKind`], [`RestoreTarget`] and [`LiveSource`], and the lookup.

pub mod postgres;
pub mod sqlite;
mod sqlite_dump;
mod sqlite_promote;
mod sqlite_restore;

use std::fmt;
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::config::{Config, SourceConfig};
use crate::content::ContentChecksums;
use crate::error::Result;
use crate::jobs::{Job, RestoredCopy};
use crate::manifest::{EngineKind, PostgresInfo, SourceInfo, TableCount};
use crate::pipeline::restore::{RestoreReport, RestoreRun};
use crate::progress::Progress;
use crate::promote::PromotePlan;
use crate::sniff::Format;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One database engine: the seam between lifeboat's jobs and what is particular to SQLite,
/// PostgreSQL's logical dumps, or the next engine.
///
/// The life of a backup and its proof: [`Engine::snapshot`] takes a consistent dump,
/// [`Engine::count`] counts a live database, [`Engine::target`] names a scratch copy to
/// restore into, [`Engine::restore`] loads a verified stream into it and counts it, and
/// [`Engine::drop_scratch`] removes it again; [`Engine::promote`] puts a proven copy in place
/// of its source.
///
/// Physical PostgreSQL backups (base backups and WAL, [`postgres::physical`] and
/// [`crate::pitr`]) are a separate restore path: they recover a whole cluster to a point in
/// time instead of loading a dump into a database. Behind this seam they would be one more
/// engine whose snapshot is a base backup, whose target is a scratch cluster (a data
/// directory and a port), whose restore replays WAL up to the recovery target before
/// counting, and whose scratch drop stops the cluster and removes its directory.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// How people call the engine: "SQLite", "PostgreSQL".
    fn name(&self) -> &'static str;

    /// Checks what a source of this engine must configure; the message follows
    /// `source "NAME": `.
    fn check_config(&self, source: &SourceConfig) -> std::result::Result<(), String>;

    /// Whether a dump in `format` (a foreign object's, judged from its bytes) loads here.
    fn loads(&self, format: Format) -> bool;

    /// Whether a restore can run with more rights than a copy needs, keeping owners and
    /// grants (`--privileged`).
    fn has_rights(&self) -> bool;

    /// A consistent dump of the live source.
    fn snapshot<'a>(
        &'a self,
        source: &'a SourceConfig,
        job: SnapshotJob<'a>,
    ) -> BoxFuture<'a, Result<Snapshot>>;

    /// The live database of `source`, to count beside a restore.
    fn live(&self, source: &SourceConfig) -> Result<LiveSource>;

    /// The row counts of a live database now.
    fn count<'a>(
        &'a self,
        live: &'a LiveSource,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Vec<TableCount>>>;

    /// The name a scratch copy of `label` (a backup id, or a drill's) of `source` gets when
    /// nobody typed one.
    fn scratch_name(&self, config: &Config, source: &str, label: &str) -> String;

    /// The scratch target `name` for a restore of `source` (`Err` when it is not configured
    /// here: an engine that restores onto a server needs its configuration).
    fn target(&self, source: Result<&SourceConfig>, name: &str) -> Result<RestoreTarget>;

    /// Loads the object `run` reads into its (new) target, checks it, counts it and diffs
    /// the counts. A failed restore leaves no partial target behind.
    fn restore<'a>(
        &'a self,
        run: &'a RestoreRun<'a>,
        started_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(RestoreReport, DateTime<Utc>)>>;

    /// Whether a scratch target is still there (when in doubt, it is).
    fn scratch_exists<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, bool>;

    /// Removes a scratch target a restore created.
    fn drop_scratch<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, Result<()>>;

    /// Checks that the proven copy `restored` can take the place of `source`'s database and
    /// fills in what `plan` replaces, keeps and who owns it; changes nothing.
    fn plan_promote<'a>(
        &'a self,
        lb: &'a Lifeboat,
        source: &'a SourceConfig,
        restored: &'a RestoredCopy,
        plan: &'a mut PromotePlan,
    ) -> BoxFuture<'a, Result<()>>;

    /// Puts the planned copy in place of `source`'s database, the old one kept; returns how
    /// many sessions it ended.
    fn promote<'a>(
        &'a self,
        source: &'a SourceConfig,
        plan: &'a PromotePlan,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<u64>>;
}

/// The engine of a kind.
pub fn for_kind(kind: EngineKind) -> &'static dyn Engine {
    match kind {
        EngineKind::Sqlite => &Sqlite,
        EngineKind::Postgres => &Postgres,
    }
}

/// The engine of a configured source.
pub fn for_source(source: &SourceConfig) -> &'static dyn Engine {
    for_kind(source.engine)
}

/// What a snapshot may use of the backup job that takes it.
pub struct SnapshotJob<'a> {
    pub progress: Arc<dyn Progress>,
    pub cancel: &'a CancellationToken,
    /// Also hash every row into content checksums.
    pub content_checksums: bool,
    /// Makes a staging directory, for an engine that copies the source first; the job
    /// removes it after the run (and a later run, after a kill).
    pub staging: &'a (dyn Fn() -> Result<PathBuf> + Send + Sync),
}

/// What a dump reports once its stream has ended: the definitive row counts.
pub struct Finished {
    pub tables: Vec<TableCount>,
    /// Content checksums taken in the same snapshot, when asked for.
    pub content: Option<ContentChecksums>,
}

/// Awaited after the data is stored and before the manifest is written; an error here means
/// the dump failed and must not be committed.
pub type Finish = Pin<Box<dyn Future<Output = crate::Result<Finished>> + Send>>;

/// A consistent dump of a source, ready to be streamed.
pub struct Snapshot {
    /// The raw dump bytes, read on a blocking thread.
    pub reader: Box<dyn Read + Send>,
    /// Size of the raw dump when known up front.
    pub raw_size: Option<u64>,
    pub source: SourceInfo,
    /// Row counts taken in the same snapshot as the dump.
    pub tables: Vec<TableCount>,
    /// Content checksums taken in the same snapshot, when asked for and known up front.
    pub content: Option<ContentChecksums>,
    /// PostgreSQL details for the manifest.
    pub postgres: Option<PostgresInfo>,
    /// Completion check of a dump produced while it streams (PostgreSQL); replaces `tables`.
    pub finish: Option<Finish>,
    /// Keeps staging files alive until the snapshot has been streamed.
    pub(crate) _staging: Option<tempfile::TempDir>,
}

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// A new SQLite file.
    Sqlite(PathBuf),
    /// A new database on a PostgreSQL server (a restore never loads an existing one).
    Postgres {
        server: postgres::Conn,
        database: String,
    },
}

impl RestoreTarget {
    pub fn engine(&self) -> &'static dyn Engine {
        match self {
            RestoreTarget::Sqlite(_) => &Sqlite,
            RestoreTarget::Postgres { .. } => &Postgres,
        }
    }

    /// The copy's short name: the SQLite file's path, or the PostgreSQL database's name.
    pub fn copy_name(&self) -> String {
        match self {
            RestoreTarget::Sqlite(path) => path.display().to_string(),
            RestoreTarget::Postgres { database, .. } => database.clone(),
        }
    }
}

impl From<PathBuf> for RestoreTarget {
    fn from(path: PathBuf) -> Self {
        RestoreTarget::Sqlite(path)
    }
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Sqlite(path) => write!(f, "{}", path.display()),
            RestoreTarget::Postgres { server, database } => {
                write!(f, "{}", server.with_dbname(database))
            }
        }
    }
}

impl Serialize for RestoreTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The live source counted as a third column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveSource {
    Sqlite(PathBuf),
    Postgres(postgres::Conn),
}

impl LiveSource {
    pub fn engine(&self) -> &'static dyn Engine {
        match self {
            LiveSource::Sqlite(_) => &Sqlite,
            LiveSource::Postgres(_) => &Postgres,
        }
    }
}

impl From<PathBuf> for LiveSource {
    fn from(path: PathBuf) -> Self {
        LiveSource::Sqlite(path)
    }
}

/// Quotes an identifier for SQL (SQLite and PostgreSQL share the rule).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(super::quote_ident(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn every_kind_finds_its_engine() {
        for kind in [EngineKind::Sqlite, EngineKind::Postgres] {
            assert_eq!(for_kind(kind).kind(), kind);
        }
        let file = RestoreTarget::Sqlite("a.db".into());
        assert_eq!(file.engine().kind(), EngineKind::Sqlite);
        let live = LiveSource::Sqlite("a.db".into());
        assert_eq!(live.engine().kind(), EngineKind::Sqlite);
    }
}
