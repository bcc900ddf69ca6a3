//! Promotion: a proven scratch copy takes the place of its source, and the old one is kept.
//!
//! A copy qualifies only if lifeboat restored it on this host, its diff against the backup's
//! manifest passed, and it has not changed since: the restore recorded a fingerprint of it
//! (SQLite: the file's SHA-256; PostgreSQL: its row counts, content checksums when the backup
//! has them, and a hash of its catalog), and promotion takes it again.
//!
//! PostgreSQL: the copy is given to the source database's owner (a least-privilege copy's
//! restore role owns everything in it; that role is then dropped) and the source's
//! database-level settings, comment and grants; new connections to the source are refused and
//! its sessions ended; then both databases are renamed in one transaction, the source to
//! `<name>_before_<yyyymmddThhmmss>`, which stays until someone drops it. A least-privilege
//! copy lacks the source's owners and GRANTs: it is refused when the source has rights held by
//! roles the copy does not know of.
//!
//! SQLite: the copy is staged in the source's directory (copied and fsynced when it lives
//! elsewhere), given the old file's owner and mode; the source's WAL is checkpointed and the
//! file is refused while another process has it open; then the old file is linked to
//! `<stem>_before_<yyyymmddThhmmss><.ext>` and the copy renamed over the source, and the
//! directory fsynced. The old file's WAL and shared-memory files go with it.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::config::SourceConfig;
use crate::engine::postgres::{self, database, role};
use crate::engine::quote_ident;
use crate::error::{Error, Result};
use crate::jobs::{JobKind, JobRecord, JobStatus, RestoredCopy};
use crate::manifest::{DatabaseInfo, EngineKind, Trigger};

/// What a promotion will do, worked out (and checked) before anything changes.
#[derive(Debug, Clone, Serialize)]
pub struct PromotePlan {
    /// The configured source whose database is replaced; typing this name confirms.
    pub source: String,
    pub engine: EngineKind,
    /// The proven copy: a SQLite file, or a PostgreSQL database on the source's server.
    pub copy: String,
    /// What it replaces: the source's file, or its database.
    pub replaces: String,
    /// Whether there is a source to replace (it may have been lost).
    pub source_exists: bool,
    /// The name the old database or file keeps (absent when there is none).
    pub kept_as: Option<String>,
    /// The backup the copy was restored from, the job that proved it and when.
    pub backup_id: Option<String>,
    pub proved_by: String,
    pub proved_at: DateTime<Utc>,
    /// Restored with owners and grants kept (an authenticated backup, `--privileged`).
    pub privileged: bool,
    /// What the copy's restore left out.
    pub skipped: Vec<String>,
    /// PostgreSQL: who owns the database (and a least-privilege copy's objects) afterwards.
    pub owner: Option<String>,
    /// What the copy looked like when proved (see the module's documentation).
    #[serde(skip)]
    pub fingerprint: String,
}

/// What a promotion did.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    #[serde(flatten)]
    pub plan: PromotePlan,
    /// PostgreSQL sessions ended on the source and the copy.
    pub sessions_ended: u64,
}

/// `sha256:` and the SHA-256 of a file: a SQLite copy's fingerprint.
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(Error::io(format!("read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!(
        "sha256:{}",
        crate::pipeline::hex(hasher.finalize())
    ))
}

/// `<name>_before_<yyyymmddThhmmss>`, within PostgreSQL's 63 bytes.
fn before_name(name: &str, at: DateTime<Utc>) -> String {
    let suffix = format!("_before_{}", at.format("%Y%m%dT%H%M%S"));
    let mut head = name.to_owned();
    while head.len() + suffix.len() > 63 {
        head.pop();
    }
    format!("{head}{suffix}")
}

/// `<stem>_before_<yyyymmddThhmmss><.ext>` beside `path`.
fn before_path(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_before_{}{ext}", at.format("%Y%m%dT%H%M%S")))
}

fn refused(message: String) -> Error {
    Error::Refused(Box::new(Error::Invalid(message)))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Lifeboat {
    /// Works out what promoting `copy` (a SQLite file or a PostgreSQL database name) would do,
    /// and refuses when it must: no passing restore of it on this host, changed since, not on
    /// the source's server, another encoding or locale, rights the copy lacks. Changes
    /// nothing.
    pub async fn plan_promote(&self, copy: &str, source: Option<&str>) -> Result<PromotePlan> {
        let (job, restored) = self.proof_of(copy, source)?;
        let source_name = job.source.clone().ok_or_else(|| {
            refused(format!(
                "{copy} was restored from a foreign object, which has no source to replace"
            ))
        })?;
        let config = self.source(&source_name)?;
        let mut plan = PromotePlan {
            source: source_name.clone(),
            engine: config.engine,
            copy: restored.copy.clone(),
            replaces: String::new(),
            source_exists: false,
            kept_as: None,
            backup_id: job.backup_id.clone(),
            proved_by: job.id.clone(),
            proved_at: job.finished_at.unwrap_or(job.started_at),
            privileged: restored.privileged,
            skipped: restored.skipped.clone(),
            owner: None,
            fingerprint: restored.fingerprint.clone(),
        };
        match config.engine {
            EngineKind::Sqlite => self.plan_sqlite(config, &restored, &mut plan).await?,
            EngineKind::Postgres => self.plan_postgres(config, &restored, &mut plan).await?,
        }
        Ok(plan)
    }

    /// The newest restore of `copy` on this host, which must have proved it.
    fn proof_of(&self, copy: &str, source: Option<&str>) -> Result<(JobRecord, RestoredCopy)> {
        let canonical = std::fs::canonicalize(copy)
            .ok()
            .map(|p| p.display().to_string());
        let host = crate::jobs::hostname();
        let job = self
            .state
            .local_jobs()?
            .into_iter()
            .filter(|j| matches!(j.kind, JobKind::Restore | JobKind::Drill) && j.host == host)
            .find(|j| {
                j.restored.as_ref().is_some_and(|r| {
                    r.copy == copy || canonical.as_deref() == Some(r.copy.as_str())
                })
            })
            .ok_or_else(|| {
                refused(format!(
                    "no restore into {copy} on this host: promote takes a copy lifeboat restored and proved here (lifeboat restore latest --source SOURCE --to NEW, then lifeboat promote NEW)"
                ))
            })?;
        let restored = job.restored.clone().expect("filtered on it");
        if let (Some(want), Some(got)) = (source, &job.source)
            && want != got
        {
            return Err(refused(format!(
                "{copy} was restored from source {got}, not {want}"
            )));
        }
        if job.status != JobStatus::Succeeded || !restored.proved {
            let why = match (&job.error, job.status) {
                (Some(e), _) => e.clone(),
                (None, JobStatus::Succeeded) => {
                    "it was only measured (a foreign object has no manifest to prove it)".into()
                }
                (None, s) => format!("it ended {s}"),
            };
            return Err(refused(format!(
                "the newest restore into {copy} (job {}) did not pass its diff: {why}; only a proven copy can be promoted",
                job.id
            )));
        }
        Ok((job, restored))
    }

    async fn plan_sqlite(
        &self,
        config: &SourceConfig,
        restored: &RestoredCopy,
        plan: &mut PromotePlan,
    ) -> Result<()> {
        let copy = PathBuf::from(&restored.copy);
        let source = config
            .path
            .clone()
            .ok_or_else(|| Error::Invalid(format!("source {} has no path", config.name)))?;
        if !copy.is_file() {
            return Err(refused(format!(
                "{} no longer exists (promoted or dropped since it was proved)",
                copy.display()
            )));
        }
        if std::fs::canonicalize(&source).is_ok_and(|s| s == copy) {
            return Err(refused(format!("{} is the source itself", copy.display())));
        }
        if std::fs::metadata(with_suffix(&copy, "-wal")).is_ok_and(|m| m.len() > 0) {
            return Err(refused(format!(
                "{} has changed since it was proved (its WAL holds writes): restore it again",
                copy.display()
            )));
        }
        let path = copy.clone();
        let now = tokio::task::spawn_blocking(move || file_fingerprint(&path))
            .await
            .map_err(|e| Error::Invalid(format!("hashing stopped: {e}")))??;
        if now != restored.fingerprint {
            return Err(refused(format!(
                "{} has changed since it was proved at {}: restore it again",
                copy.display(),
                plan.proved_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        plan.replaces = source.display().to_string();
        plan.source_exists = source.exists();
        if plan.source_exists {
            let kept = before_path(&source, self.clock.now());
            if kept.exists() {
                return Err(refused(format!("{} already exists", kept.display())));
            }
            plan.kept_as = Some(kept.display().to_string());
        }
        Ok(())
    }

    async fn plan_postgres(
        &self,
        config: &SourceConfig,
        restored: &RestoredCopy,
        plan: &mut PromotePlan,
    ) -> Result<()> {
        let source = postgres::source_conn(config)?;
        let server = postgres::scratch_server(config)?;
        if !server.same_server(&source) {
            return Err(refused(format!(
                "the copy {} is on the scratch server {}:{}, not on the source's server: promote renames databases within one server (restore onto the source's server, without scratch_url, for a copy to promote)",
                restored.copy,
                server.hosts.join(","),
                server.port
            )));
        }
        let target = self.postgres_target(&config.name, Some(&restored.copy), "")?;
        if target.to_string() != restored.target {
            return Err(refused(format!(
                "{} was restored to {}, not to {target}",
                restored.copy, restored.target
            )));
        }
        if source.dbname == restored.copy {
            return Err(refused(format!("{} is the source itself", restored.copy)));
        }
        if source.dbname == server.dbname {
            return Err(refused(format!(
                "the source database {} is the one lifeboat connects to for administration; point scratch_url at another database of the server (postgres)",
                source.dbname
            )));
        }
        let admin = server.connect().await?;
        if !postgres::database_exists(&admin, &restored.copy).await? {
            return Err(refused(format!(
                "database {} no longer exists (promoted or dropped since it was proved)",
                restored.copy
            )));
        }
        let with_content = restored.fingerprint.starts_with("pg+sums:");
        let now = postgres::fingerprint_database(
            &server.with_dbname(&restored.copy),
            with_content,
            &CancellationToken::new(),
        )
        .await?;
        if now.fingerprint != restored.fingerprint {
            return Err(refused(format!(
                "database {} has changed since it was proved at {} (its rows or its structure): restore it again",
                restored.copy,
                plan.proved_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let live = database::describe(&admin, &source.dbname).await?;
        let copy = database::describe(&admin, &restored.copy)
            .await?
            .ok_or_else(|| Error::Invalid(format!("database {} is gone", restored.copy)))?;
        plan.replaces = format!(
            "database {} on {}:{}",
            source.dbname,
            source.hosts.join(","),
            source.port
        );
        plan.source_exists = live.is_some();
        if let Some(live) = &live {
            let (a, b) = (locale_of(live), locale_of(&copy));
            if a != b {
                return Err(refused(format!(
                    "the copy has encoding and locale {b}, the source {a}: it would store or sort text differently; restore a backup that records its database (or onto a server with the source's locale)"
                )));
            }
            // The database's own settings, comment and grants come from the source.
            plan.skipped.retain(|s| s != "database settings");
            if !restored.privileged {
                let lost = rights_lost(&server, &source.dbname, &restored.copy).await?;
                if !lost.is_empty() {
                    return Err(refused(format!(
                        "the source {} has owners or GRANTs this copy lacks ({}; it was restored with least privilege, owners and GRANTs skipped): the application would get \"permission denied\"; restore the authenticated backup with --privileged for a copy to promote",
                        source.dbname,
                        lost.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let kept = before_name(&source.dbname, self.clock.now());
            if postgres::database_exists(&admin, &kept).await? {
                return Err(refused(format!("database {kept} already exists")));
            }
            plan.kept_as = Some(kept);
        }
        plan.owner = Some(live.map_or_else(|| server.user.clone(), |l| l.owner));
        Ok(())
    }

    /// Promotes `copy` in place of its source, after `confirm` repeated the source's name.
    /// Every check of [`Lifeboat::plan_promote`] is made again first. Recorded as a
    /// `promote` job (refused, failed or succeeded).
    pub async fn promote(
        &self,
        copy: &str,
        source: Option<&str>,
        confirm: &str,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<Promoted>) {
        let job = self.start_job(JobKind::Promote, source, Trigger::Manual);
        let result = async {
            let plan = self.plan_promote(copy, source).await?;
            job.set_source(&plan.source);
            if let Some(id) = &plan.backup_id {
                job.set_backup(id);
            }
            if confirm.trim() != plan.source {
                return Err(refused(format!(
                    "the confirmation {:?} is not the source's name {}; nothing was changed",
                    confirm.trim(),
                    plan.source
                )));
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            job.log(format!(
                "promoting {} in place of {} (proved by job {}), by {}",
                plan.copy,
                plan.replaces,
                plan.proved_by,
                self.operator()
            ));
            let config = self.source(&plan.source)?;
            let sessions = match plan.engine {
                EngineKind::Sqlite => {
                    let plan = plan.clone();
                    let source = config.path.clone().unwrap_or_default();
                    let log = |line: String| job.log(line);
                    promote_file(&plan, &source, &log)?;
                    0
                }
                EngineKind::Postgres => self.promote_database(config, &plan, &job).await?,
            };
            match &plan.kept_as {
                Some(old) => job.log(format!(
                    "{} is in place of {}; the old one is kept as {old}",
                    plan.copy, plan.replaces
                )),
                None => job.log(format!("{} is in place of {}", plan.copy, plan.replaces)),
            }
            Ok(Promoted {
                plan,
                sessions_ended: sessions,
            })
        }
        .await;
        self.finish_job(job, result).await
    }

    async fn promote_database(
        &self,
        config: &SourceConfig,
        plan: &PromotePlan,
        job: &crate::jobs::Job,
    ) -> Result<u64> {
        let source = postgres::source_conn(config)?;
        let server = postgres::scratch_server(config)?;
        let admin = server.connect().await?;
        let copy = plan.copy.as_str();
        let owner = plan.owner.clone().unwrap_or_else(|| server.user.clone());
        let live = database::describe(&admin, &source.dbname).await?;
        // The copy first: it is not in service yet, so nothing here can hurt the source.
        let restore_role = role::scratch_role_for(copy);
        if !plan.privileged {
            let inside = server.with_dbname(copy).connect().await?;
            let exists = inside
                .query_opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[&restore_role],
                )
                .await
                .map_err(postgres::pg_error("look up the restore role"))?
                .is_some();
            if exists {
                inside
                    .batch_execute(&format!(
                        "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role}",
                        role = quote_ident(&restore_role),
                        owner = quote_ident(&owner)
                    ))
                    .await
                    .map_err(postgres::pg_error(format!(
                        "give what {restore_role} owns in {copy} to {owner}"
                    )))?;
                job.log(format!(
                    "{owner} owns every object of {copy} (its restore role owned them)"
                ));
            }
        }
        database::set_owner(&admin, copy, &owner).await?;
        if let Some(live) = &live {
            for note in database::apply(&admin, copy, live).await? {
                job.log(note);
            }
            job.log(format!(
                "{copy} has the settings, comment and database grants of {}",
                source.dbname
            ));
        }
        let ended = swap(&admin, &source.dbname, copy, plan.kept_as.as_deref()).await?;
        job.log(format!(
            "ended {ended} session(s) and renamed the databases"
        ));
        if !plan.privileged
            && let Err(e) = role::drop_role(&admin, &restore_role).await
        {
            job.log(format!("the restore role {restore_role} was kept: {e}"));
        }
        Ok(ended)
    }
}

/// `encoding collate/ctype [provider locale]`, to compare two databases.
fn locale_of(d: &DatabaseInfo) -> String {
    let mut s = format!("{} {}/{}", d.encoding, d.lc_collate, d.lc_ctype);
    if let (Some(p), Some(l)) = (&d.locale_provider, &d.icu_locale) {
        s.push_str(&format!(" {p} {l}"));
    }
    s
}

/// Roles that hold rights in `source` but in `copy` none (both databases on `server`).
async fn rights_lost(
    server: &postgres::Conn,
    source: &str,
    copy: &str,
) -> Result<BTreeSet<String>> {
    let of = |db: &str| {
        let conn = server.with_dbname(db);
        async move {
            let client = conn.connect().await?;
            database::rights_holders(&client).await
        }
    };
    let had = of(source).await?;
    let has = of(copy).await?;
    Ok(had.difference(&has).cloned().collect())
}

/// Ends the sessions on `source` and `copy` and renames `source` to `kept_as` and `copy` to
/// `source` in one transaction, so that at no moment is there no database of that name (or
/// two). New connections to the source are refused meanwhile. Returns how many sessions were
/// ended.
async fn swap(
    admin: &tokio_postgres::Client,
    source: &str,
    copy: &str,
    kept_as: Option<&str>,
) -> Result<u64> {
    let err = |what: &str| postgres::pg_error(what.to_owned());
    let allowed: Option<bool> = admin
        .query_opt(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&source],
        )
        .await
        .map_err(err("look up the source database"))?
        .map(|r| r.get(0));
    let set_allow = |db: &str, allow: bool| {
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
            quote_ident(db)
        )
    };
    let mut close = vec![copy.to_owned()];
    if allowed.is_some() {
        close.push(source.to_owned());
    }
    for (i, db) in close.iter().enumerate() {
        if let Err(e) = admin.batch_execute(&set_allow(db, false)).await {
            // The copy was closed first; open it again before saying why.
            if i > 0 {
                let _ = admin.batch_execute(&set_allow(copy, true)).await;
            }
            return Err(err(&format!("refuse new connections to {db}"))(e));
        }
    }
    let renames = match kept_as {
        Some(old) if allowed.is_some() => format!(
            "BEGIN; ALTER DATABASE {s} RENAME TO {o}; ALTER DATABASE {c} RENAME TO {s}; COMMIT",
            s = quote_ident(source),
            o = quote_ident(old),
            c = quote_ident(copy)
        ),
        _ => format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(copy),
            quote_ident(source)
        ),
    };
    let mut ended = 0u64;
    let mut outcome = Err(Error::Invalid("not tried".into()));
    // A session that was just ended takes a moment to leave; one that raced in before
    // connections were refused is ended on the next round.
    for attempt in 0..50 {
        let n: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                &[&close],
            )
            .await
            .map_err(err("end the sessions"))?
            .get(0);
        ended += n as u64;
        match admin.batch_execute(&renames).await {
            Ok(()) => {
                outcome = Ok(());
                break;
            }
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK").await;
                let busy = postgres::describe_error(&e).contains("being accessed by other users");
                outcome = Err(err("rename the databases")(e));
                if !busy || attempt == 49 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (new_name, old_name) = match &outcome {
        Ok(()) => (source, kept_as),
        Err(_) => (copy, allowed.map(|_| source)),
    };
    // Open again: the promoted database (or, if nothing was renamed, the copy), and the old
    // one as it was.
    admin
        .batch_execute(&set_allow(new_name, true))
        .await
        .map_err(err(&format!("allow connections to {new_name}")))?;
    if let (Some(old), Some(was)) = (old_name, allowed) {
        admin
            .batch_execute(&set_allow(old, was))
            .await
            .map_err(err(&format!("allow connections to {old}")))?;
    }
    outcome.map(|()| ended)
}

/// The SQLite half of a promotion: stage, quiesce, link the old file aside, rename.
fn promote_file(plan: &PromotePlan, source: &Path, log: &dyn Fn(String)) -> Result<()> {
    let copy = PathBuf::from(&plan.copy);
    let dir = source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = source
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} names no file", source.display())))?;
    let same_dir = copy
        .parent()
        .map(std::fs::canonicalize)
        .transpose()
        .ok()
        .flatten()
        == std::fs::canonicalize(dir).ok();
    let staged = if same_dir {
        Staged::Itself(copy.clone())
    } else {
        let tmp = dir.join(format!(
            ".{}.lifeboat-promote-{:08x}",
            name.to_string_lossy(),
            fastrand::u32(..)
        ));
        let staged = Staged::Copied(tmp.clone());
        std::fs::copy(&copy, &tmp).map_err(Error::io(format!(
            "copy {} to {}",
            copy.display(),
            tmp.display()
        )))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(Error::io(format!("fsync {}", tmp.display())))?;
        if file_fingerprint(&tmp)? != plan.fingerprint {
            return Err(Error::Invalid(format!(
                "the copy staged at {} does not hash as the proved one; nothing was changed",
                tmp.display()
            )));
        }
        log(format!(
            "staged the copy beside the source as {}",
            tmp.display()
        ));
        staged
    };
    let staged_path = staged.path().to_path_buf();
    if let Ok(meta) = std::fs::metadata(source) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mine = std::fs::metadata(&staged_path)
            .map_err(Error::io(format!("stat {}", staged_path.display())))?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::chown(&staged_path, Some(meta.uid()), Some(meta.gid())).map_err(
                Error::io(format!(
                    "give {} the owner of {} (uid {}, gid {}): run promote as root or as that user",
                    staged_path.display(),
                    source.display(),
                    meta.uid(),
                    meta.gid()
                )),
            )?;
        }
        std::fs::set_permissions(
            &staged_path,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(Error::io(format!("chmod {}", staged_path.display())))?;
        quiesce(source)?;
        let kept = PathBuf::from(
            plan.kept_as
                .as_deref()
                .ok_or_else(|| Error::Invalid("no name for the old file".into()))?,
        );
        std::fs::hard_link(source, &kept).map_err(Error::io(format!(
            "keep {} as {}",
            source.display(),
            kept.display()
        )))?;
        // Sidecars of the old file (empty after the checkpoint) follow it: a WAL left under
        // the source's name would be read as the new file's.
        for ext in ["-wal", "-shm"] {
            let side = with_suffix(source, ext);
            if side.exists() {
                std::fs::rename(&side, with_suffix(&kept, ext)).map_err(Error::io(format!(
                    "move {} beside {}",
                    side.display(),
                    kept.display()
                )))?;
            }
        }
        log(format!("kept {} as {}", source.display(), kept.display()));
    }
    std::fs::rename(&staged_path, source).map_err(Error::io(format!(
        "rename {} over {}",
        staged_path.display(),
        source.display()
    )))?;
    staged.done();
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("fsync {}", dir.display())))?;
    if !same_dir {
        // The copy now lives as the source; the scratch file goes, as a renamed one would.
        let _ = std::fs::remove_file(&copy);
    }
    log(format!("renamed the copy over {}", source.display()));
    Ok(())
}

/// The source file must be idle: its WAL checkpointed into it and no other process holding
/// it (or its WAL) open.
fn quiesce(source: &Path) -> Result<()> {
    let ctx = format!("checkpoint {}", source.display());
    {
        let conn = rusqlite::Connection::open_with_flags(
            source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(Error::sqlite(ctx.clone()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(Error::sqlite(ctx.clone()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(Error::sqlite(ctx.clone()))?;
        if mode.eq_ignore_ascii_case("wal") {
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(Error::sqlite(ctx.clone()))?;
            if busy != 0 {
                return Err(refused(format!(
                    "{} is in use (its WAL cannot be checkpointed): stop the application first; nothing was changed",
                    source.display()
                )));
            }
        }
        conn.close()
            .map_err(|(_, e)| Error::sqlite(ctx.clone())(e))?;
    }
    let holders = open_elsewhere(&[
        source.to_path_buf(),
        with_suffix(source, "-wal"),
        with_suffix(source, "-journal"),
    ]);
    if !holders.is_empty() {
        return Err(refused(format!(
            "{} is open in {}: stop the application first (it would go on writing to the old file); nothing was changed",
            source.display(),
            holders.join(", ")
        )));
    }
    for ext in ["-wal", "-journal"] {
        if std::fs::metadata(with_suffix(source, ext)).is_ok_and(|m| m.len() > 0) {
            return Err(refused(format!(
                "{} has unfinished writes in its {ext} file: stop the application first; nothing was changed",
                source.display()
            )));
        }
    }
    Ok(())
}

/// Processes (`pid (name)`) with one of `paths` open, as far as /proc lets this user see.
fn open_elsewhere(paths: &[PathBuf]) -> Vec<String> {
    let wanted: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| wanted.contains(&target));
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", comm.trim()));
        }
    }
    found
}

/// The file renamed over the source: the copy itself (same directory) or a staged copy of it,
/// removed unless the promotion went through.
enum Staged {
    Itself(PathBuf),
    Copied(PathBuf),
}

impl Staged {
    fn path(&self) -> &Path {
        match self {
            Staged::Itself(p) | Staged::Copied(p) => p,
        }
    }

    fn done(mut self) {
        if let Staged::Copied(p) = &mut self {
            *p = PathBuf::new();
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Staged::Copied(p) = self
            && !p.as_os_str().is_empty()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_names_carry_the_time_and_fit() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T08:15:52Z")
            .unwrap()
            .to_utc();
        assert_eq!(before_name("billing", at), "billing_before_20261123T081552");
        let long = "x".repeat(63);
        let n = before_name(&long, at);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_before_20261123T081552"));
        assert_eq!(
            before_path(Path::new("/srv/shop.db"), at),
            PathBuf::from("/srv/shop_before_20261123T081552.db")
        );
        assert_eq!(
            before_path(Path::new("/srv/shop"), at),
            PathBuf::from("/srv/shop_before_20261123T081552")
        );
    }
}
