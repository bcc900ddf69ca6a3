//! Point-in-time recovery as the front ends use it: the restorable window of every base
//! backup, a restore to a time proved by row counts, archive health for `check`, and the
//! retention of WAL. The CLI prints these; the console can draw them (see [`status`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::diff::RowDiff;
use crate::engine::postgres::physical::base::{self, BaseManifest, BaseOptions, list_bases};
use crate::engine::postgres::physical::scratch::{self, RecoverOptions, Recovered, RecoveryTarget};
use crate::engine::postgres::{self as pg, source_conn};
use crate::error::{Error, Result};
use crate::jobs::{JobKind, JobRecord};
use crate::manifest::TableCount;
use crate::manifest::Trigger;
use crate::pipeline::crypt::Seal;
use crate::progress::Progress;
use crate::storage::{ObjectKey, ObjectStore, ObjectStoreExt};
use crate::wal::archive::{RECORD_SUFFIX, source_prefix};
use crate::wal::chain::{Chain, Unrestorable, Window};
use crate::wal::names::{Segment, WalName};
use crate::{Lifeboat, wal};

/// A base backup and the times it can restore to.
#[derive(Debug, Clone, Serialize)]
pub struct BaseWindow {
    pub base: BaseManifest,
    pub window: std::result::Result<Window, Unrestorable>,
}

/// What the archive of one source holds.
#[derive(Debug, Clone, Serialize)]
pub struct PitrStatus {
    pub source: String,
    pub chain: Chain,
    /// Oldest first.
    pub bases: Vec<BaseWindow>,
    /// Base backup manifests that could not be read, with why.
    pub unreadable: Vec<(String, String)>,
}

impl PitrStatus {
    /// The earliest and latest time any base backup can restore to.
    pub fn restorable(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let windows: Vec<&Window> = self
            .bases
            .iter()
            .filter_map(|b| b.window.as_ref().ok())
            .collect();
        let from = windows.iter().map(|w| w.from).min()?;
        let to = windows.iter().filter_map(|w| w.to).max()?;
        Some((from, to))
    }

    /// The base backup a restore to `at` starts from: the newest one consistent by then
    /// whose window reaches it (as the restore itself chooses).
    pub fn covering(&self, at: DateTime<Utc>) -> Option<&BaseWindow> {
        self.bases.iter().rev().find(|b| {
            b.window
                .as_ref()
                .is_ok_and(|w| w.from <= at && w.to.is_some_and(|to| at <= to))
        })
    }

    pub fn base(&self, id: &str) -> Option<&BaseWindow> {
        self.bases.iter().find(|b| b.base.id.as_str() == id)
    }
}

/// The command (before `%f %p`) a scratch cluster's `restore_command` runs to fetch WAL:
/// this binary with this config, as the server's OS user will run it.
pub fn wal_get_command(
    exe: &std::path::Path,
    config: &std::path::Path,
    source: &str,
) -> Result<String> {
    let quote = |p: &std::path::Path| -> Result<String> {
        let s = p.display().to_string();
        if s.contains('\'') {
            return Err(Error::Invalid(format!(
                "{s} holds a quote; restore_command cannot name it safely"
            )));
        }
        Ok(format!("'{s}'"))
    };
    Ok(format!(
        "{} --config {} wal get --source {source}",
        quote(exe)?,
        quote(config)?
    ))
}

/// Reads a source's base backups and WAL chain and works out every base backup's window.
pub async fn status(
    store: &dyn ObjectStore,
    source: &str,
    keys: Option<&crate::pipeline::crypt::EncryptionConfig>,
) -> Result<PitrStatus> {
    let (bases, unreadable) = list_bases(store, source).await?;
    let size = match bases.last() {
        Some(b) => b.wal_segment_size,
        None => segment_size_of_archive(store, source).await?,
    };
    let chain = Chain::load(store, source, size, keys).await?;
    let bases = bases
        .into_iter()
        .map(|b| BaseWindow {
            window: chain.window(&b.needs()),
            base: b,
        })
        .collect();
    Ok(PitrStatus {
        source: source.to_owned(),
        chain,
        bases,
        unreadable,
    })
}

/// The segment size the newest archived segment was stored with (16 MiB when none is).
async fn segment_size_of_archive(store: &dyn ObjectStore, source: &str) -> Result<u64> {
    let prefix = source_prefix(source);
    let newest = store
        .list_all(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let name = o
                .key
                .strip_prefix(&prefix)?
                .strip_suffix(RECORD_SUFFIX)?
                .to_owned();
            matches!(WalName::parse(&name), Some(WalName::Segment { .. })).then_some(name)
        })
        .max();
    Ok(match newest {
        Some(name) => wal::archive::read_record(store, source, &name)
            .await?
            .map_or(16 << 20, |r| r.raw_bytes),
        None => 16 << 20,
    })
}

/// A base backup read back whole and found as it was taken.
#[derive(Debug, Clone, Serialize)]
pub struct BaseVerified {
    pub base: BaseManifest,
    /// Files checked against `backup_manifest`.
    pub files: usize,
}

/// A point-in-time restore and its proof.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    pub source: String,
    #[serde(flatten)]
    pub recovered: Recovered,
    /// Connection string of the source's database on the scratch cluster.
    pub conninfo: String,
    pub database: String,
    /// Restored counts beside the live source's and the nearest logical backup's.
    pub diff: RowDiff,
    pub restored_tables: Vec<TableCount>,
    /// The logical backup whose counts are the expected column, if any.
    pub logical_backup: Option<String>,
    pub amcheck: Option<Vec<String>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Whether the scratch cluster was stopped and removed after the proof.
    pub dropped: bool,
}

pub struct PitrRestoreOptions {
    pub target: RecoveryTarget,
    pub pause: bool,
    pub base: Option<crate::manifest::BackupId>,
    /// `lifeboat --config … wal get --source …` as the server will run it.
    pub wal_get: String,
    pub compare_live: bool,
    pub amcheck: bool,
    pub drop: bool,
    pub timeout: std::time::Duration,
}

impl Lifeboat {
    /// Takes a base backup of a source with `[source.pitr]`, recorded as a job.
    pub async fn base_backup(
        &self,
        source: &str,
        progress: Arc<dyn Progress>,
        log: &(dyn Fn(String) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<BaseManifest> {
        let src = wal::pitr_source(self.config(), Some(source))?;
        let job = self.start_job(JobKind::BaseBackup, Some(source), Trigger::Manual);
        let logged = |line: String| {
            job.log(line.clone());
            log(line);
        };
        let result = async {
            let store = wal::open_source_store(self.config(), src).await?;
            let _lock = self.lock_source(source)?;
            let opts = BaseOptions {
                compression_level: self.config().backup.compression_level,
                threads: self.config().backup.threads,
                seal: Seal::from_config(self.config().encryption.as_ref())?.map(Arc::new),
            };
            base::base_backup(
                store.as_ref(),
                src,
                &opts,
                self.clock(),
                progress,
                &logged,
                cancel,
            )
            .await
        }
        .await;
        if let Ok(m) = &result {
            job.set_backup(m.id.as_str());
            job.add_bytes(m.data.stored_bytes);
        }
        self.finish_job(job, result).await.1
    }

    /// Re-reads a base backup: its stored checksum, then every file in it against the
    /// `backup_manifest` PostgreSQL wrote. `id` is a base backup's id or `latest`.
    /// Recorded as a verify job.
    pub async fn verify_base(
        &self,
        source: &str,
        id: &str,
        cancel: &CancellationToken,
    ) -> (JobRecord, Result<BaseVerified>) {
        let job = self.start_job(JobKind::Verify, Some(source), Trigger::Manual);
        let result = async {
            let src = wal::pitr_source(self.config(), Some(source))?;
            let store = wal::open_source_store(self.config(), src).await?;
            let (bases, _) = list_bases(store.as_ref(), source).await?;
            let found = if id == "latest" {
                bases.last()
            } else {
                bases.iter().find(|b| b.id.as_str() == id)
            };
            let base = found
                .ok_or_else(|| Error::NoBackup(format!("base backup {id} of source {source}")))?
                .clone();
            job.set_backup(base.id.as_str());
            job.log(format!("verifying base backup {} of {source}", base.id));
            let files = base::verify_base(
                store.as_ref(),
                &base,
                self.config().encryption.as_ref(),
                cancel,
            )
            .await?;
            job.add_bytes(base.data.stored_bytes);
            job.log(format!(
                "{} bytes match the stored SHA-256; {files} files match backup_manifest",
                base.data.stored_bytes
            ));
            Ok(BaseVerified { base, files })
        }
        .await;
        self.finish_job(job, result).await
    }

    /// The base backups and WAL chain of a source with `[source.pitr]`.
    pub async fn pitr_status(&self, source: &str) -> Result<PitrStatus> {
        let src = wal::pitr_source(self.config(), Some(source))?;
        let store = wal::open_source_store(self.config(), src).await?;
        status(store.as_ref(), source, self.config().encryption.as_ref()).await
    }

    /// Restores a source to a point in time into a scratch cluster and proves it: row counts
    /// of the restored database beside the live source's and the nearest logical backup's.
    pub async fn pitr_restore(
        &self,
        source: &str,
        opts: &PitrRestoreOptions,
        log: &(dyn Fn(String) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<PitrReport> {
        let src = wal::pitr_source(self.config(), Some(source))?;
        let job = self.start_job(JobKind::Restore, Some(source), Trigger::Manual);
        let logged = |line: String| {
            job.log(line.clone());
            log(line);
        };
        let result = self
            .pitr_restore_job(src, opts, &logged, &job, cancel)
            .await;
        self.finish_job(job, result).await.1
    }

    async fn pitr_restore_job(
        &self,
        src: &crate::config::SourceConfig,
        opts: &PitrRestoreOptions,
        log: &(dyn Fn(String) + Send + Sync),
        job: &crate::jobs::Job,
        cancel: &CancellationToken,
    ) -> Result<PitrReport> {
        let source = src.name.as_str();
        let started_at = self.clock().now();
        let store = wal::open_source_store(self.config(), src).await?;
        let pitr = src.pitr.clone().unwrap_or_default();
        let scratch_dir = pitr
            .scratch_dir
            .clone()
            .or_else(|| {
                pitr.data_dir
                    .as_ref()
                    .and_then(|d| d.parent())
                    .map(|p| p.to_path_buf())
            })
            .or_else(|| self.config().restore.scratch_dir.clone())
            .unwrap_or_else(std::env::temp_dir);
        let recover = RecoverOptions {
            target: opts.target.clone(),
            pause: opts.pause,
            base: opts.base.clone(),
            scratch_dir,
            wal_get: opts.wal_get.clone(),
            keys: self.config().encryption.clone(),
            bin_dir: src.bin_dir.clone(),
            timeout: opts.timeout,
        };
        let recovered = scratch::recover(store.as_ref(), source, &recover, log, cancel).await?;
        job.set_backup(recovered.base.as_str());
        log(format!(
            "recovered: timeline {}, replayed to {}, last commit {}{}",
            recovered.timeline,
            recovered
                .replay_lsn
                .map(|l| l.to_string())
                .unwrap_or_else(|| "?".into()),
            recovered
                .last_commit
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "none replayed".into()),
            if recovered.paused {
                " (paused, read-only)"
            } else {
                " (promoted)"
            }
        ));
        let proved = self.prove(src, &recovered, opts, cancel).await;
        let (database, restored, diff, logical, amcheck) = match proved {
            Ok(p) => p,
            Err(e) => {
                let _ = recovered.cluster.drop_cluster();
                return Err(e);
            }
        };
        let dropped = if opts.drop {
            recovered.cluster.drop_cluster()?;
            true
        } else {
            false
        };
        Ok(PitrReport {
            source: source.to_owned(),
            conninfo: recovered.cluster.conninfo(&database),
            recovered,
            database,
            diff,
            restored_tables: restored,
            logical_backup: logical,
            amcheck,
            started_at,
            finished_at: self.clock().now(),
            dropped,
        })
    }

    #[allow(clippy::type_complexity)]
    async fn prove(
        &self,
        src: &crate::config::SourceConfig,
        recovered: &Recovered,
        opts: &PitrRestoreOptions,
        cancel: &CancellationToken,
    ) -> Result<(
        String,
        Vec<TableCount>,
        RowDiff,
        Option<String>,
        Option<Vec<String>>,
    )> {
        let live_conn = source_conn(src)?;
        let database = live_conn.dbname.clone();
        let scratch = recovered.cluster.conn(&database)?;
        let (restored, _) = pg::count_database(&scratch, false, cancel).await?;
        let live = if opts.compare_live {
            Some(pg::count_database(&live_conn, false, cancel).await?.0)
        } else {
            None
        };
        // The nearest logical backup taken at or before the point restored to.
        let at = match &recovered.target {
            RecoveryTarget::Time(t) => Some(*t),
            _ => recovered.last_commit,
        };
        let logical = match at {
            Some(at) => self.nearest_logical(&src.name, at).await,
            None => None,
        };
        let diff = RowDiff::new(
            logical.as_ref().map(|(_, t)| t.as_slice()),
            &restored,
            live.as_deref(),
        );
        let amcheck = if opts.amcheck {
            Some(amcheck(&scratch, recovered.paused).await?)
        } else {
            None
        };
        Ok((database, restored, diff, logical.map(|(id, _)| id), amcheck))
    }

    async fn nearest_logical(
        &self,
        source: &str,
        at: DateTime<Utc>,
    ) -> Option<(String, Vec<TableCount>)> {
        let catalog = self.catalog().await.ok()?;
        catalog
            .backups
            .iter()
            .filter(|b| b.source == source)
            .filter_map(|b| {
                let m = b.manifest.as_ref()?;
                (m.finished_at <= at).then(|| (m.finished_at, b.id.to_string(), m.tables.clone()))
            })
            .max_by_key(|(t, _, _)| *t)
            .map(|(_, id, tables)| (id, tables))
    }
}

/// `amcheck` over every B-tree index of the database: the problems found, empty when none.
/// A paused (read-only) cluster can only be checked where the extension already exists.
async fn amcheck(conn: &pg::conn::Conn, read_only: bool) -> Result<Vec<String>> {
    let client = conn.connect().await?;
    if !read_only {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            .await
            .map_err(pg::pg_error(
                "create the amcheck extension on the scratch cluster",
            ))?;
    }
    let rows = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relpersistence <> 't' \
             AND i.indisvalid AND i.indisready",
            &[],
        )
        .await
        .map_err(pg::pg_error("list indexes"))?;
    let mut problems = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        if let Err(e) = client
            .query_one("SELECT bt_index_check($1::text::regclass, true)", &[&index])
            .await
        {
            problems.push(format!("{index}: {}", pg::describe_error(&e)));
        }
    }
    Ok(problems)
}

/// One finding of [`archive_findings`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveFinding {
    pub critical: bool,
    pub message: String,
}

/// What `check` says about a source's archive: gaps, a base backup that cannot be restored,
/// archiving that fell behind.
pub fn archive_findings(
    status: &PitrStatus,
    max_lag: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<ArchiveFinding> {
    let mut out = Vec::new();
    for gap in &status.chain.gaps {
        out.push(ArchiveFinding {
            critical: true,
            message: format!(
                "WAL gap on timeline {}: {} segment(s) missing from {} to {}; no restore can cross it",
                gap.timeline, gap.missing, gap.from, gap.to
            ),
        });
    }
    for b in &status.bases {
        if let Err(u) = &b.window {
            out.push(ArchiveFinding {
                critical: true,
                message: format!(
                    "base backup {} cannot be restored: WAL segment {} is not archived",
                    b.base.id, u.missing
                ),
            });
        }
    }
    match &status.chain.newest {
        Some((name, at)) if now - *at > max_lag => out.push(ArchiveFinding {
            critical: false,
            message: format!(
                "archive lag: the newest archived WAL segment {name} is {} old (limit {})",
                crate::when::short_age(now - *at),
                crate::when::short_age(max_lag)
            ),
        }),
        None => out.push(ArchiveFinding {
            critical: true,
            message: "no WAL is archived (is archive_command set to `lifeboat wal push %p`?)"
                .into(),
        }),
        _ => {}
    }
    if status.bases.is_empty() {
        out.push(ArchiveFinding {
            critical: true,
            message: "no base backup: archived WAL cannot be restored without one".into(),
        });
    }
    out
}

/// WAL older than the oldest kept base backup's start: every archived file of a timeline
/// position before it (history files are kept: they are tiny and recovery reads them).
pub fn prunable_wal(status: &PitrStatus, kept: &[&BaseManifest]) -> Vec<String> {
    let Some(oldest) = kept.iter().min_by_key(|b| b.start_lsn) else {
        return Vec::new();
    };
    let size = status.chain.segment_size;
    let first_needed = oldest.start_lsn.segment(oldest.timeline, size).number;
    let mut out = Vec::new();
    for r in &status.chain.ranges {
        let first = Segment::from_name(&r.first, size)
            .map(|s| s.number)
            .unwrap_or(0);
        let last = Segment::from_name(&r.last, size)
            .map(|s| s.number)
            .unwrap_or(0);
        for n in first..=last.min(first_needed.saturating_sub(1)) {
            if n < first_needed {
                out.push(
                    Segment {
                        timeline: r.timeline,
                        number: n,
                    }
                    .name(size),
                );
            }
        }
    }
    out
}

/// What `prune` does to a source's base backups and WAL, and the restorable window before
/// and after.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPrune {
    pub source: String,
    pub keep_base: usize,
    pub delete_bases: Vec<String>,
    pub delete_wal: Vec<String>,
    pub window_before: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub window_after: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The newest `keep_base` base backups stay, and the WAL from the oldest of them on.
pub fn prune_plan(status: &PitrStatus, keep_base: usize) -> PitrPrune {
    let n = status.bases.len();
    let cut = n.saturating_sub(keep_base.max(1));
    let (gone, kept) = status.bases.split_at(cut);
    let kept_manifests: Vec<&BaseManifest> = kept.iter().map(|b| &b.base).collect();
    let after = PitrStatus {
        bases: kept.to_vec(),
        ..status.clone()
    };
    PitrPrune {
        source: status.source.clone(),
        keep_base,
        delete_bases: gone.iter().map(|b| b.base.id.to_string()).collect(),
        delete_wal: prunable_wal(status, &kept_manifests),
        window_before: status.restorable(),
        window_after: after.restorable(),
    }
}

/// Carries out a [`prune_plan`]: base backups first (manifest, then data), then their WAL.
pub async fn apply_prune(
    store: &dyn ObjectStore,
    status: &PitrStatus,
    plan: &PitrPrune,
) -> Result<()> {
    for b in status
        .bases
        .iter()
        .filter(|b| plan.delete_bases.contains(&b.base.id.to_string()))
    {
        let manifest = ObjectKey::new(format!("{}{}", b.base.dir(), base::BASE_MANIFEST))?;
        store.delete_many(&[manifest]).await?;
        store.delete_many(&[b.base.data_key()?]).await?;
    }
    delete_wal(store, &status.source, &plan.delete_wal).await
}

impl Lifeboat {
    /// The point-in-time side of `prune` for every source with `[source.pitr]` (or the one
    /// named); with `apply`, carried out.
    pub async fn pitr_prune(&self, only: Option<&str>, apply: bool) -> Result<Vec<PitrPrune>> {
        let mut out = Vec::new();
        for src in self.config().sources.iter().filter(|s| s.pitr.is_some()) {
            if only.is_some_and(|o| o != src.name) {
                continue;
            }
            let store = wal::open_source_store(self.config(), src).await?;
            let status =
                status(store.as_ref(), &src.name, self.config().encryption.as_ref()).await?;
            let keep = src.pitr.as_ref().map_or(2, |p| p.keep_base());
            let plan = prune_plan(&status, keep);
            if apply {
                apply_prune(store.as_ref(), &status, &plan).await?;
            }
            out.push(plan);
        }
        Ok(out)
    }
}

/// Deletes archived WAL files (their record first: from then on the file is not archived;
/// the data object follows).
pub async fn delete_wal(store: &dyn ObjectStore, source: &str, names: &[String]) -> Result<()> {
    let prefix = source_prefix(source);
    for chunk in names.chunks(500) {
        let records: Vec<ObjectKey> = chunk
            .iter()
            .map(|n| wal::archive::record_key(source, n))
            .collect::<Result<_>>()?;
        store.delete_many(&records).await?;
        let mut data = Vec::new();
        for n in chunk {
            for ext in [".zst", ".zst.age"] {
                data.push(ObjectKey::new(format!("{prefix}{n}{ext}"))?);
            }
        }
        store.delete_many(&data).await?;
    }
    Ok(())
}

/// Removes a scratch cluster a restore left running (the console's `x`, `restore --drop`).
pub fn drop_scratch(cluster: &scratch::ScratchCluster) -> Result<()> {
    cluster.drop_cluster()
}

impl From<Unrestorable> for Error {
    fn from(u: Unrestorable) -> Self {
        Error::Invalid(format!("WAL segment {} is not archived", u.missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BackupId, DataInfo};
    use crate::wal::names::Lsn;

    const MB16: u64 = 16 << 20;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + min * 60, 0).unwrap()
    }

    fn base(n: u64, min: i64) -> BaseManifest {
        BaseManifest {
            format: 1,
            id: BackupId::generate(at(min)),
            source: "app".into(),
            started_at: at(min),
            finished_at: at(min),
            server_version: "15.1".into(),
            system_identifier: "1".into(),
            timeline: 1,
            start_lsn: Lsn(n * MB16 + 40),
            end_lsn: Lsn(n * MB16 + 400),
            wal_segment_size: MB16,
            pg_basebackup_version: "15.1".into(),
            data: DataInfo {
                key: "base.tar.zst".into(),
                raw_bytes: 1,
                stored_bytes: 1,
                compression: "zstd".into(),
                compression_level: 3,
                sha256: String::new(),
            },
            encryption: None,
            files: 1,
            backup_manifest_sha256: String::new(),
            file_checksums: Default::default(),
        }
    }

    #[test]
    fn prune_keeps_the_newest_bases_and_the_wal_from_the_oldest_kept_on() {
        // Segments 1..=10, one per minute; base backups in segments 2, 5 and 8.
        let names = (1..=10u64).map(|n| {
            (
                Segment {
                    timeline: 1,
                    number: n,
                }
                .name(MB16),
                Some(at(n as i64)),
            )
        });
        let chain = Chain::from_names(names, MB16);
        let bases: Vec<BaseWindow> = [(2, 2), (5, 5), (8, 8)]
            .into_iter()
            .map(|(n, m)| {
                let b = base(n, m);
                BaseWindow {
                    window: chain.window(&b.needs()),
                    base: b,
                }
            })
            .collect();
        let status = PitrStatus {
            source: "app".into(),
            chain,
            bases,
            unreadable: Vec::new(),
        };
        let plan = prune_plan(&status, 2);
        assert_eq!(plan.delete_bases, vec![status.bases[0].base.id.to_string()]);
        // Segments 1..=4 go: the oldest kept base starts in segment 5.
        let gone: Vec<String> = (1..=4u64)
            .map(|n| {
                Segment {
                    timeline: 1,
                    number: n,
                }
                .name(MB16)
            })
            .collect();
        assert_eq!(plan.delete_wal, gone);
        assert_eq!(plan.window_before, Some((at(2), at(10))));
        assert_eq!(plan.window_after, Some((at(5), at(10))));
        // Keeping every base keeps the WAL from the first one on.
        let all = prune_plan(&status, 5);
        assert!(all.delete_bases.is_empty());
        assert_eq!(
            all.delete_wal,
            vec![
                Segment {
                    timeline: 1,
                    number: 1
                }
                .name(MB16)
            ]
        );
    }
}
