//! SQLite: snapshots through the online backup API, loads from a database file or SQL text.
//! A scratch copy is a new file; a restore builds it beside its name ([`super::sqlite_restore`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::sqlite_dump::harden;
pub use super::sqlite_dump::load_sql;
use super::{BoxFuture, Engine, LiveSource, RestoreTarget, Snapshot, SnapshotJob, quote_ident};
use crate::Lifeboat;
use crate::config::{Config, SourceConfig};
use crate::error::{Error, Result};
use crate::jobs::{Job, RestoredCopy};
use crate::manifest::{EngineKind, SourceInfo, TableCount};
use crate::pipeline::restore::{RestoreReport, RestoreRun};
use crate::progress::{Phase, Progress};
use crate::promote::PromotePlan;
use crate::sniff::Format;

const PAGES_PER_STEP: i32 = 4096;

/// SQLite: one database file.
pub struct Sqlite;

/// A target or live source of another engine, handed here by mistake.
fn not_mine(what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what} is not a SQLite file"))
}

impl Engine for Sqlite {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn check_config(&self, source: &SourceConfig) -> std::result::Result<(), String> {
        if source.path.is_none() {
            return Err("a sqlite source needs `path`".into());
        }
        if source.pitr.is_some() {
            return Err("[source.pitr] is for PostgreSQL sources".into());
        }
        Ok(())
    }

    fn loads(&self, format: Format) -> bool {
        format.restorable_to_sqlite()
    }

    fn has_rights(&self) -> bool {
        false
    }

    fn snapshot<'a>(
        &'a self,
        source: &'a SourceConfig,
        job: SnapshotJob<'a>,
    ) -> BoxFuture<'a, Result<Snapshot>> {
        Box::pin(async move {
            let name = source.name.clone();
            let path = source
                .path
                .clone()
                .ok_or_else(|| Error::Invalid(format!("source {name} has no path")))?;
            // A copy of the whole database goes here.
            let staging = (job.staging)()?;
            let with_content = job.content_checksums;
            let progress = job.progress.clone();
            tokio::task::spawn_blocking(move || {
                snapshot(&name, &path, &staging, with_content, &*progress)
            })
            .await
            .expect("snapshot thread panicked")
        })
    }

    fn live(&self, source: &SourceConfig) -> Result<LiveSource> {
        match &source.path {
            Some(path) => Ok(LiveSource::Sqlite(path.clone())),
            None => Err(Error::Invalid(format!(
                "source {} has no database to count",
                source.name
            ))),
        }
    }

    fn count<'a>(
        &'a self,
        live: &'a LiveSource,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Vec<TableCount>>> {
        Box::pin(async move {
            let LiveSource::Sqlite(path) = live else {
                return Err(not_mine(format!("{live:?}")));
            };
            let path = path.clone();
            tokio::task::spawn_blocking(move || count_file(&path))
                .await
                .map_err(|e| Error::Invalid(format!("counting stopped: {e}")))?
        })
    }

    fn scratch_name(&self, config: &Config, source: &str, label: &str) -> String {
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        config
            .scratch_dir()
            .join(format!("{source}-{safe}.db"))
            .display()
            .to_string()
    }

    fn target(&self, _source: Result<&SourceConfig>, name: &str) -> Result<RestoreTarget> {
        Ok(RestoreTarget::Sqlite(PathBuf::from(name)))
    }

    fn restore<'a>(
        &'a self,
        run: &'a RestoreRun<'a>,
        started_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(RestoreReport, DateTime<Utc>)>> {
        Box::pin(async move {
            match &run.opts.target {
                RestoreTarget::Sqlite(path) => {
                    super::sqlite_restore::restore(run, path, started_at).await
                }
                other => Err(not_mine(other)),
            }
        })
    }

    fn scratch_exists<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, bool> {
        Box::pin(async move { matches!(target, RestoreTarget::Sqlite(path) if path.exists()) })
    }

    fn drop_scratch<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let RestoreTarget::Sqlite(path) = target else {
                return Err(not_mine(target));
            };
            tokio::fs::remove_file(path)
                .await
                .map_err(Error::io(format!("drop {}", path.display())))?;
            // A journal or WAL left beside it would be replayed into a later file there.
            for ext in ["-journal", "-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(ext);
                let _ = tokio::fs::remove_file(PathBuf::from(side)).await;
            }
            Ok(())
        })
    }

    fn plan_promote<'a>(
        &'a self,
        lb: &'a Lifeboat,
        source: &'a SourceConfig,
        restored: &'a RestoredCopy,
        plan: &'a mut PromotePlan,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(lb.plan_sqlite(source, restored, plan))
    }

    fn promote<'a>(
        &'a self,
        source: &'a SourceConfig,
        plan: &'a PromotePlan,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let path = source.path.clone().unwrap_or_default();
            let log = |line: String| job.log(line);
            super::sqlite_promote::promote_file(plan, &path, &log)?;
            Ok(0)
        })
    }
}

/// Opens a database read-only, waiting for writers instead of failing on a lock.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::Io {
            context: format!("cannot open SQLite database {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(Error::sqlite(format!(
        "cannot open SQLite database {}",
        path.display()
    )))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(Error::sqlite("busy timeout"))?;
    harden(&conn)?;
    Ok(conn)
}

/// Takes a consistent copy of the live database at `source` into a staging directory, counts
/// every table in the copy (and, `with_content`, hashes its rows), and hands the copy over as
/// the dump.
///
/// The source connection holds one read transaction for the whole copy, so the copy is one
/// point in time; in WAL mode the application keeps writing meanwhile. Copying in steps
/// reports progress.
pub fn snapshot(
    name: &str,
    source: &Path,
    staging: &Path,
    with_content: bool,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let ctx = |what: &str| format!("snapshot of {}: {what}", source.display());
    let src = open_read_only(source)?;
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-snapshot-")
        .tempdir_in(staging)
        .map_err(Error::io(ctx("cannot create a staging directory")))?;
    let copy_path = dir.path().join("snapshot.sqlite");
    {
        let mut dst = Connection::open(&copy_path).map_err(Error::sqlite(ctx("staging copy")))?;
        // Pin one read snapshot on the source: the backup then never restarts on concurrent
        // commits, and every step copies from the same point in time.
        src.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
            .map_err(Error::sqlite(ctx("cannot start a read transaction")))?;
        let backup = Backup::new(&src, &mut dst).map_err(Error::sqlite(ctx("backup API")))?;
        let page_size = src
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .map_err(Error::sqlite(ctx("page size")))? as u64;
        let mut started = false;
        loop {
            match backup
                .step(PAGES_PER_STEP)
                .map_err(Error::sqlite(ctx("copy")))?
            {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
            let p = backup.progress();
            let total = p.pagecount.max(0) as u64 * page_size;
            if !started {
                progress.phase(Phase::Snapshot, Some(total));
                started = true;
            }
            progress.advance(total.saturating_sub(p.remaining.max(0) as u64 * page_size));
        }
        drop(backup);
        src.execute_batch("COMMIT")
            .map_err(Error::sqlite(ctx("end read transaction")))?;
        // The copy keeps the source's journal mode (WAL is recorded in the file; the others
        // are per connection and leave it in rollback mode), so a restore, or the file
        // taken by hand, comes back as the application left it. Closing the copy folds its
        // WAL back in: the staged file is whole on its own.
        let mode: String = src
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(Error::sqlite(ctx("journal mode")))?;
        let mode = if mode.eq_ignore_ascii_case("wal") {
            "WAL"
        } else {
            "DELETE"
        };
        dst.pragma_update(None, "journal_mode", mode)
            .map_err(Error::sqlite(ctx("journal mode")))?;
        dst.close()
            .map_err(|(_, e)| Error::sqlite(ctx("close the staging copy"))(e))?;
    }
    let copy = Connection::open_with_flags(&copy_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(Error::sqlite(ctx("reopen copy")))?;
    let tables = count_tables(&copy)?;
    let version = sqlite_version(&copy)?;
    drop(copy);
    let content = if with_content {
        Some(crate::content::sqlite_file(&copy_path)?)
    } else {
        None
    };
    let file = std::fs::File::open(&copy_path).map_err(Error::io(ctx("reopen copy")))?;
    let size = file.metadata().map_err(Error::io(ctx("stat copy")))?.len();
    Ok(Snapshot {
        reader: Box::new(file),
        raw_size: Some(size),
        source: SourceInfo {
            name: name.to_owned(),
            engine: EngineKind::Sqlite,
            server_version: version,
            database: source.display().to_string(),
        },
        tables,
        content,
        postgres: None,
        finish: None,
        _staging: Some(dir),
    })
}

pub fn sqlite_version(conn: &Connection) -> Result<String> {
    conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .map_err(Error::sqlite("sqlite_version()"))
}

/// Row counts of every ordinary table, by name. Virtual tables are skipped: their data lives
/// in shadow tables, which are counted.
pub fn count_tables(conn: &Connection) -> Result<Vec<TableCount>> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
        )
        .map_err(Error::sqlite("list tables"))?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(Error::sqlite("list tables"))?;
    names
        .into_iter()
        .map(|name| {
            let rows: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM {}", quote_ident(&name)),
                    [],
                    |r| r.get(0),
                )
                .map_err(Error::sqlite(format!("count rows of {name}")))?;
            Ok(TableCount::new(name, rows as u64))
        })
        .collect()
}

/// Counts the tables of the database file at `path`.
pub fn count_file(path: &Path) -> Result<Vec<TableCount>> {
    count_tables(&open_read_only(path)?)
}

/// Counts the tables of a freshly restored database at `path`, after checking its structure
/// with `PRAGMA quick_check` when asked. The connection may write, so that closing it folds
/// any WAL back into the file and leaves no `-wal`/`-shm` beside it.
pub fn check_and_count(path: &Path, integrity_check: bool) -> Result<Vec<TableCount>> {
    let ctx = format!("integrity check of {}", path.display());
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sqlite(ctx.clone()))?;
    // The file may come from anywhere (a foreign object, a dump's schema).
    harden(&conn)?;
    let result: String = if integrity_check {
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(Error::sqlite(ctx))?
    } else {
        // Opening and reading the schema still proves the file is a database.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| {
            Ok("ok".to_owned())
        })
        .map_err(Error::sqlite(ctx))?
    };
    if result != "ok" {
        return Err(Error::Invalid(format!(
            "the restored database {} fails its integrity check: {result}",
            path.display()
        )));
    }
    let tables = count_tables(&conn)?;
    conn.close()
        .map_err(|(_, e)| Error::sqlite(format!("close {}", path.display()))(e))?;
    Ok(tables)
}

/// Writes a database image from `reader` to `dest`, an empty file the caller created (with
/// the permissions the result should have).
pub fn write_image(mut reader: impl Read, dest: &Path) -> Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dest)
        .map_err(Error::io(format!("open {}", dest.display())))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(Error::io("read the decompressed dump"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(Error::io(format!("write {}", dest.display())))?;
        done += n as u64;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io(format!("write {}", dest.display()))(e.into_error()))?;
    file.sync_all()
        .map_err(Error::io(format!("fsync {}", dest.display())))?;
    Ok(done)
}
