//! The local state database: job history and a cache of what the bucket holds, so the
//! console opens instantly. The bucket stays the source of truth.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::catalog::{CatalogRow, RowKind};
use crate::error::{Error, Result};
use crate::jobs::{JobRecord, JobStatus, hostname};

#[derive(Debug, Clone)]
pub struct State {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id         TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    kind       TEXT NOT NULL,
    source     TEXT,
    backup_id  TEXT,
    status     TEXT NOT NULL,
    record     TEXT NOT NULL,
    in_bucket  INTEGER NOT NULL DEFAULT 0,
    -- Read from the bucket, where anyone with a key could have written it.
    pulled     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_backup ON jobs(backup_id);
CREATE INDEX IF NOT EXISTS jobs_started ON jobs(started_at);
CREATE TABLE IF NOT EXISTS catalog_rows (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    source      TEXT,
    time        INTEGER,
    raw_bytes   INTEGER,
    stored      INTEGER NOT NULL,
    duration_ms INTEGER,
    tables      INTEGER,
    rows        INTEGER,
    encrypted   INTEGER NOT NULL,
    note        TEXT
);
CREATE INDEX IF NOT EXISTS catalog_rows_time ON catalog_rows(time DESC, id);
-- What catalog_rows holds, as a digest, so an unchanged listing is not written again.
CREATE TABLE IF NOT EXISTS catalog_digest (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    digest TEXT NOT NULL
);
-- SHA-256 of manifests (their exact bytes) whose own checksum this host has checked, so a
-- listing does not check the same bytes again.
CREATE TABLE IF NOT EXISTS checked_manifests (
    digest BLOB PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS debris (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    what       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS object_cache (
    key      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    modified TEXT NOT NULL,
    body     BLOB NOT NULL,
    PRIMARY KEY (key, kind)
);
";

/// What is cached about an object, by key, size and modification time: manifests, detected
/// formats, drill report summaries, and the verdict (with its reason) on an object that
/// cannot be used, so that it is never read again while it stays the same.
#[derive(Debug, Clone, Copy)]
pub enum CacheKind {
    Manifest,
    Format,
    Report,
    Unusable,
    /// A store's check record of one copy (see [`crate::stores`]).
    Check,
}

/// One object to cache (see [`State::cache_put_many`]).
#[derive(Debug, Clone)]
pub struct CachePut {
    pub key: String,
    pub kind: CacheKind,
    pub size: u64,
    pub modified: String,
    pub body: Vec<u8>,
}

impl CacheKind {
    fn as_str(self) -> &'static str {
        match self {
            CacheKind::Manifest => "manifest",
            CacheKind::Format => "format",
            CacheKind::Report => "report",
            CacheKind::Unusable => "unusable",
            CacheKind::Check => "check",
        }
    }
}

impl State {
    pub fn open(path: &Path) -> Result<State> {
        let ctx = format!("state database {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(Error::io(ctx.clone()))?;
        }
        let conn = Connection::open(path).map_err(Error::sqlite(ctx.clone()))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(Error::sqlite(ctx.clone()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(Error::sqlite(ctx.clone()))?;
        conn.execute_batch(SCHEMA)
            .map_err(Error::sqlite(ctx.clone()))?;
        // Before `pulled` was kept, pulled and local records were not told apart: none of
        // them is taken as this host's own word.
        let tells_apart = conn
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'pulled'")
            .and_then(|mut s| s.exists([]))
            .map_err(Error::sqlite(ctx.clone()))?;
        if !tells_apart {
            conn.execute_batch(
                "ALTER TABLE jobs ADD COLUMN pulled INTEGER NOT NULL DEFAULT 0; UPDATE jobs SET pulled = 1;",
            )
            .map_err(Error::sqlite(ctx))?;
        }
        let state = State {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        };
        state.mark_interrupted()?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(Error::sqlite(format!(
            "state database {}",
            self.path.display()
        )))
    }

    /// Where running jobs hold their locks.
    pub fn job_lock_dir(&self) -> PathBuf {
        crate::lock::job_lock_dir(&self.path)
    }

    /// Jobs left `running` on this host whose lock nobody holds died with their process.
    /// (A process id is no proof: the kernel reuses them.)
    fn mark_interrupted(&self) -> Result<()> {
        let host = hostname();
        let locks = self.job_lock_dir();
        let running = self.jobs_where("status = 'running' AND pulled = 0", [])?;
        for mut job in running {
            if job.host == host && !crate::lock::job_alive(&locks, &job.id) {
                job.status = JobStatus::Interrupted;
                job.error = Some("the process running this job stopped before it finished".into());
                self.put_job(&job, false)?;
            }
        }
        Ok(())
    }

    /// Records a job this host runs or ran.
    pub fn put_job(&self, job: &JobRecord, in_bucket: bool) -> Result<()> {
        self.put(job, in_bucket, false)
    }

    /// Records a job read from the bucket: shown in the history, never taken as proof of
    /// what this host did (see [`State::local_jobs`]).
    pub fn put_pulled_job(&self, job: &JobRecord) -> Result<()> {
        self.put(job, true, true)
    }

    fn put(&self, job: &JobRecord, in_bucket: bool, pulled: bool) -> Result<()> {
        let record = serde_json::to_string(job).expect("job records serialize");
        self.with(|c| {
            c.execute(
                "INSERT INTO jobs (id, started_at, kind, source, backup_id, status, record, in_bucket, pulled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET status = ?6, backup_id = ?5, record = ?7,
                   in_bucket = max(in_bucket, ?8), pulled = min(pulled, ?9)",
                params![
                    job.id,
                    job.started_at.to_rfc3339(),
                    job.kind.to_string(),
                    job.source,
                    job.backup_id,
                    job.status.to_string(),
                    record,
                    in_bucket,
                    pulled
                ],
            )
            .map(drop)
        })
    }

    pub fn has_job(&self, id: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row("SELECT 1 FROM jobs WHERE id = ?1", [id], |_| Ok(()))
                .optional()
        })
        .map(|r| r.is_some())
    }

    /// All jobs, newest first.
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("1", [])
    }

    /// Jobs this host ran, newest first: no record another host (or a forger) put in the
    /// bucket is among them, whatever host it names.
    pub fn local_jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("pulled = 0", [])
    }

    pub fn jobs_for_backup(&self, backup_id: &str) -> Result<Vec<JobRecord>> {
        self.jobs_where("backup_id = ?1", [backup_id])
    }

    /// Finished verifies, restores and drills of a backup: the evidence that it restores.
    pub fn verifying_jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where(
            "backup_id IS NOT NULL AND kind IN ('verify', 'restore', 'drill') \
             AND status IN ('succeeded', 'failed')",
            [],
        )
    }

    /// Finished jobs not yet copied to the bucket.
    pub fn jobs_not_in_bucket(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("in_bucket = 0 AND status != 'running'", [])
    }

    fn jobs_where<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<JobRecord>> {
        let sql =
            format!("SELECT record FROM jobs WHERE {filter} ORDER BY started_at DESC, id DESC");
        let texts: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params, |r| r.get(0))?;
            rows.collect()
        })?;
        // A record this version cannot read is skipped, not fatal: history is informational.
        Ok(texts
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }

    /// Replaces the cached catalog with the rows of a fresh listing. A listing like the last
    /// one (the usual case) writes nothing: rewriting 100,000 rows costs more than the
    /// listing that found them unchanged.
    pub fn save_catalog_rows(&self, rows: &[CatalogRow]) -> Result<()> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for r in rows {
            let line = serde_json::to_vec(&(
                &r.id,
                r.kind.label(),
                &r.source,
                r.time.map(|t| t.timestamp_millis()),
                r.raw_bytes,
                r.stored_bytes,
                r.duration_ms,
                r.tables,
                r.rows,
                r.encrypted,
                &r.note,
            ))
            .map_err(|e| Error::Invalid(format!("cannot encode a catalog line: {e}")))?;
            digest.update(&line);
            digest.update(b"\n");
        }
        let digest = crate::pipeline::hex(digest.finalize());
        self.with(|c| {
            let saved: Option<String> = c
                .query_row("SELECT digest FROM catalog_digest WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if saved.as_deref() == Some(digest.as_str()) {
                return Ok(());
            }
            let tx = c.unchecked_transaction()?;
            tx.execute("DELETE FROM catalog_rows", [])?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR REPLACE INTO catalog_rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for r in rows {
                    stmt.execute(params![
                        r.id,
                        r.kind.label(),
                        r.source,
                        r.time.map(|t| t.timestamp_millis()),
                        r.raw_bytes.map(|n| n as i64),
                        r.stored_bytes as i64,
                        r.duration_ms,
                        r.tables.map(|n| n as i64),
                        r.rows.map(|n| n as i64),
                        r.encrypted,
                        r.note
                    ])?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO catalog_digest (id, digest) VALUES (1, ?1)",
                [&digest],
            )?;
            tx.commit()
        })
    }

    /// The catalog as last listed, newest first: what a console shows before the bucket
    /// answers. `limit` takes only the newest lines, enough for a first screen.
    pub fn load_catalog_rows(&self, limit: Option<usize>) -> Result<Vec<CatalogRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, kind, source, time, raw_bytes, stored, duration_ms, tables, rows, encrypted, note
                 FROM catalog_rows ORDER BY time DESC, id LIMIT ?1",
            )?;
            let limit = limit.map_or(-1, |n| n as i64);
            let rows = stmt.query_map([limit], |r| {
                let u = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(|n| n as u64));
                Ok(CatalogRow {
                    id: r.get(0)?,
                    kind: RowKind::parse(&r.get::<_, String>(1)?).unwrap_or(RowKind::Damaged),
                    source: r.get(2)?,
                    time: r.get::<_, Option<i64>>(3)?.and_then(chrono::DateTime::from_timestamp_millis),
                    raw_bytes: u(4)?,
                    stored_bytes: r.get::<_, i64>(5)? as u64,
                    duration_ms: r.get(6)?,
                    tables: u(7)?,
                    rows: u(8)?,
                    encrypted: r.get(9)?,
                    note: r.get(10)?,
                    copies: None,
                })
            })?;
            rows.collect()
        })
    }

    /// Records what a job is about to create (see [`crate::debris`]); returns the record's id.
    pub fn put_debris(
        &self,
        job_id: &str,
        debris: &crate::debris::Debris,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64> {
        let what = serde_json::to_string(debris).expect("debris serializes");
        self.with(|c| {
            c.execute(
                "INSERT INTO debris (job_id, created_at, what) VALUES (?1, ?2, ?3)",
                params![job_id, at.to_rfc3339(), what],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn delete_debris(&self, id: i64) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM debris WHERE id = ?1", [id])
                .map(drop)
        })
    }

    /// Clears every debris record of a job (what it left was removed or handed over).
    pub fn delete_debris_of_job(&self, job_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM debris WHERE job_id = ?1", [job_id])
                .map(drop)
        })
    }

    /// Every debris record, oldest first. One this version cannot read is skipped.
    pub fn debris(&self) -> Result<Vec<crate::debris::Entry>> {
        let rows: Vec<(i64, String, String, String)> = self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, job_id, created_at, what FROM debris ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, job_id, at, what)| {
                Some(crate::debris::Entry {
                    id,
                    job_id,
                    created_at: chrono::DateTime::parse_from_rfc3339(&at).ok()?.to_utc(),
                    debris: serde_json::from_str(&what).ok()?,
                })
            })
            .collect())
    }

    pub fn cache_get(
        &self,
        key: &str,
        kind: CacheKind,
        size: u64,
        modified: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT body FROM object_cache WHERE key = ?1 AND kind = ?2 AND size = ?3 AND modified = ?4",
            )?
            .query_row(params![key, kind.as_str(), size as i64, modified], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// The digests [`State::add_checked_manifests`] kept.
    pub fn checked_manifests(&self) -> Result<std::collections::HashSet<[u8; 32]>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT digest FROM checked_manifests")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = std::collections::HashSet::new();
            for digest in rows {
                if let Ok(d) = <[u8; 32]>::try_from(digest?) {
                    out.insert(d);
                }
            }
            Ok(out)
        })
    }

    /// Keeps the digests of manifests whose own checksum was checked; with `replace`, they
    /// are all that is kept (the others are of manifests no longer listed).
    pub fn add_checked_manifests(&self, digests: &[[u8; 32]], replace: bool) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            if replace {
                tx.execute("DELETE FROM checked_manifests", [])?;
            }
            {
                let mut stmt =
                    tx.prepare_cached("INSERT OR IGNORE INTO checked_manifests VALUES (?1)")?;
                for d in digests {
                    stmt.execute([&d[..]])?;
                }
            }
            tx.commit()
        })
    }

    /// Several [`State::cache_put`]s in one transaction: one sync for a page of manifests.
    pub fn cache_put_many(&self, puts: &[CachePut]) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO object_cache (key, kind, size, modified, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for p in puts {
                    stmt.execute(params![
                        p.key,
                        p.kind.as_str(),
                        p.size as i64,
                        p.modified,
                        p.body
                    ])?;
                }
            }
            tx.commit()
        })
    }

    pub fn cache_put(
        &self,
        key: &str,
        kind: CacheKind,
        size: u64,
        modified: &str,
        body: &[u8],
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO object_cache (key, kind, size, modified, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, kind.as_str(), size as i64, modified, body],
            )
            .map(drop)
        })
    }
}
