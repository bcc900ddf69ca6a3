//! lifeboat: consistent database backups into S3-compatible buckets or a directory, a catalog
//! of what is there, and restores that prove themselves with a row-count diff.
//!
//! This library holds all behaviour; the CLI and the console are front ends over [`Lifeboat`].

pub mod alert;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod content;
pub mod daemon;
pub mod debris;
pub mod demo;
pub mod diff;
pub mod drill;
pub mod engine;
mod error;
pub mod health;
pub mod jobs;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod prune;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod sniff;
pub mod state;
pub mod storage;
pub mod when;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

use catalog::{BackupEntry, Catalog};
use clock::Clock;
use config::{ChecksumMode, Config, SourceConfig, StorageConfig};
use jobs::{Job, JobKind, JobRecord, JobStatus};
use manifest::{Manifest, Trigger};
use pipeline::backup::{BackupOptions, BackupRun};
use pipeline::restore::{RestoreFrom, RestoreOptions, RestoreReport, RestoreRun};
use progress::{Phase, Progress};
use state::State;
use storage::{LocalStore, ObjectKey, ObjectStore, ObjectStoreExt, S3Options, S3Store};

/// The core handle: configuration, the store, the local state and the clock.
#[derive(Debug, Clone)]
pub struct Lifeboat {
    config: Arc<Config>,
    store: Arc<dyn ObjectStore>,
    state: State,
    clock: Clock,
}

/// Which backup to restore.
#[derive(Debug, Clone)]
pub enum Selector {
    /// A backup id, or the key of a foreign object.
    Id(String),
    /// The newest complete backup (of one source).
    Latest { source: Option<String> },
    /// The newest complete backup taken at or before a time.
    Before {
        time: DateTime<Utc>,
        source: Option<String>,
    },
}

/// The most recent proof that a backup's bytes are intact.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub kind: JobKind,
    pub job_id: String,
}

/// What a job-history sync moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncSummary {
    pub pushed: usize,
    pub pulled: usize,
}

/// Opens the store a config describes.
pub async fn open_store(storage: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    Ok(match storage {
        StorageConfig::Local { path, mode } => Arc::new(LocalStore::open_with_mode(path, *mode)?),
        StorageConfig::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            force_path_style,
            profile,
            checksums,
            part_size_mib,
            upload_concurrency,
            max_attempts,
            timeouts,
        } => {
            let mut opts = S3Options::new(bucket);
            opts.prefix = prefix.clone();
            opts.region = region.clone();
            opts.endpoint = endpoint.clone();
            opts.force_path_style = *force_path_style;
            opts.profile = profile.clone();
            opts.checksums_always = *checksums == ChecksumMode::Always;
            opts.part_size = part_size_mib * 1024 * 1024;
            opts.upload_concurrency = *upload_concurrency;
            opts.max_attempts = *max_attempts;
            opts.timeouts = *timeouts;
            Arc::new(S3Store::connect(opts).await)
        }
    })
}

impl Lifeboat {
    /// Opens the store and the state database a config names.
    pub async fn open(config: Config) -> Result<Self> {
        let store = open_store(&config.storage).await?;
        let state = State::open(&config.state_path())?;
        let clock = Clock::from_env().map_err(Error::Invalid)?;
        Ok(Lifeboat::with_parts(config, store, state, clock))
    }

    pub fn with_parts(
        config: Config,
        store: Arc<dyn ObjectStore>,
        state: State,
        clock: Clock,
    ) -> Self {
        Lifeboat {
            config: Arc::new(config),
            store,
            state,
            clock,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Where snapshots and downloads are staged.
    pub fn staging(&self) -> PathBuf {
        self.config
            .backup
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig> {
        self.config
            .source(name)
            .ok_or_else(|| Error::UnknownSource {
                name: name.to_owned(),
                known: if self.config.sources.is_empty() {
                    "none".into()
                } else {
                    self.config
                        .sources
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Takes the per-source job lock (see [`lock`]); hold it for the whole job.
    pub fn lock_source(&self, source: &str) -> Result<lock::SourceLock> {
        let state = self.config.state_path();
        let dir = state.parent().unwrap_or(std::path::Path::new("."));
        lock::SourceLock::acquire(&dir.join("locks"), source)
    }

    /// Backs up one source. The job record comes back whatever the outcome.
    pub async fn backup(
        &self,
        source: &str,
        trigger: Trigger,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<Manifest>) {
        let job = self.start_job(JobKind::Backup, Some(source), trigger);
        self.sweep_for(&job).await;
        let debris = debris::Recorder::for_job(self.state.clone(), &job);
        let result = async {
            let source = self.source(source)?;
            let opts = BackupOptions {
                trigger,
                compression_level: self.config.backup.compression_level,
                threads: self.config.backup.threads,
                staging: self.staging(),
                content_checksums: self.config.backup.content_checksums,
                seal: pipeline::crypt::Seal::from_config(self.config.encryption.as_ref())?
                    .map(Arc::new),
            };
            BackupRun {
                store: &self.store,
                source,
                opts: &opts,
                clock: &self.clock,
                progress,
                cancel,
                job: &job,
                debris: &debris,
            }
            .run()
            .await
        }
        .await;
        self.finish_job(job, result).await
    }

    /// Reads the whole catalog, using the local cache for manifests already seen, and keeps
    /// its lines for the next [`Lifeboat::cached_rows`].
    pub async fn catalog(&self) -> Result<Catalog> {
        self.scan_catalog(|_| {}).await
    }

    /// Like [`Lifeboat::catalog`], handing each listing page's lines to `on_page` as it
    /// arrives, so a console can show them before the whole bucket is read.
    pub async fn scan_catalog(
        &self,
        mut on_page: impl FnMut(Vec<catalog::CatalogRow>),
    ) -> Result<Catalog> {
        let mut scanner = catalog::Scanner::new(self.store.as_ref(), Some(&self.state));
        let mut catalog = Catalog::default();
        while let Some(page) = scanner.next_page().await? {
            on_page(
                page.backups
                    .iter()
                    .map(Into::into)
                    .chain(page.foreign.iter().map(Into::into))
                    .collect(),
            );
            catalog.backups.extend(page.backups);
            catalog.foreign.extend(page.foreign);
        }
        catalog.incomplete = self.store.list_incomplete("").await?;
        catalog.pins = self.pins().await?;
        catalog.sort();
        if let Err(e) = self.state.save_catalog_rows(&catalog.rows()) {
            tracing::warn!("cannot cache the catalog: {e}");
        }
        Ok(catalog)
    }

    /// The catalog lines as last listed, newest first, without asking the bucket; `limit`
    /// takes only the newest.
    pub fn cached_rows(&self, limit: Option<usize>) -> Result<Vec<catalog::CatalogRow>> {
        self.state.load_catalog_rows(limit)
    }

    /// A scratch database path for restoring `id` of `source`.
    pub fn scratch_path(&self, source: &str, id: &str) -> PathBuf {
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.config
            .scratch_dir()
            .join(format!("{source}-{safe}.db"))
    }

    /// A PostgreSQL restore target on the scratch server of `source`: `database`, or the
    /// generated `lifeboat_restore_<id>`.
    pub fn postgres_target(
        &self,
        source: &str,
        database: Option<&str>,
        id: &str,
    ) -> Result<pipeline::restore::RestoreTarget> {
        let s = self.source(source)?;
        if s.engine != manifest::EngineKind::Postgres {
            return Err(Error::Invalid(format!(
                "source {source} is not a PostgreSQL source"
            )));
        }
        let database = database.map_or_else(|| engine::postgres::scratch_name(id), str::to_owned);
        engine::postgres::validate_db_name(&database)?;
        Ok(pipeline::restore::RestoreTarget::Postgres {
            server: engine::postgres::scratch_server(s)?,
            database,
        })
    }

    /// The live source to count beside a restore, if the source is configured here.
    pub fn live_source(&self, source: &str) -> Result<pipeline::restore::LiveSource> {
        let s = self.source(source)?;
        match (s.engine, &s.path) {
            (manifest::EngineKind::Sqlite, Some(path)) => Ok(path.clone().into()),
            (manifest::EngineKind::Postgres, _) => Ok(pipeline::restore::LiveSource::Postgres(
                engine::postgres::source_conn(s)?,
            )),
            _ => Err(Error::Invalid(format!(
                "source {source} has no database to count"
            ))),
        }
    }

    /// Drops what a restore restored into, refusing a target it did not create (one it
    /// replaced with --force-target, which may be the source itself).
    /// `created` is [`pipeline::restore::RestoreReport::created`].
    pub async fn drop_restored(
        &self,
        target: &pipeline::restore::RestoreTarget,
        created: bool,
    ) -> Result<()> {
        if !created {
            return Err(Error::Invalid(format!(
                "{target} existed before the restore (--force-target), so lifeboat does not drop it"
            )));
        }
        self.drop_scratch(target).await
    }

    /// Removes a scratch database a restore created (a file, or a PostgreSQL database).
    pub async fn drop_scratch(&self, target: &pipeline::restore::RestoreTarget) -> Result<()> {
        match target {
            pipeline::restore::RestoreTarget::Sqlite(path) => {
                tokio::fs::remove_file(path)
                    .await
                    .map_err(Error::io(format!("drop {}", path.display())))?;
                // A journal or WAL left beside it would be replayed into a later file there.
                for ext in ["-journal", "-wal", "-shm"] {
                    let mut side = path.as_os_str().to_owned();
                    side.push(ext);
                    let _ = tokio::fs::remove_file(std::path::PathBuf::from(side)).await;
                }
                Ok(())
            }
            pipeline::restore::RestoreTarget::Postgres { server, database } => {
                engine::postgres::drop_database(server, database).await
            }
        }
    }

    /// Finds what a selector names in a catalog.
    pub fn select(&self, catalog: &Catalog, selector: &Selector) -> Result<RestoreFrom> {
        let pick = |source: &Option<String>, before: Option<DateTime<Utc>>, what: String| {
            let candidates: Vec<&BackupEntry> = catalog
                .complete()
                .filter(|b| source.as_ref().is_none_or(|s| &b.source == s))
                .filter(|b| before.is_none_or(|t| b.time() <= t))
                .collect();
            if source.is_none() {
                let mut sources: Vec<&str> = candidates.iter().map(|b| b.source.as_str()).collect();
                sources.sort_unstable();
                sources.dedup();
                if sources.len() > 1 {
                    return Err(Error::AmbiguousSource {
                        what,
                        sources: sources.join(", "),
                    });
                }
            }
            // The catalog is sorted newest first.
            candidates
                .first()
                .map(|b| RestoreFrom::Backup(Box::new((*b).clone())))
                .ok_or_else(|| Error::NoBackup(what))
        };
        match selector {
            Selector::Id(id) => {
                if let Some(b) = catalog.find(id) {
                    return Ok(RestoreFrom::Backup(Box::new(b.clone())));
                }
                if let Some(f) = catalog.find_foreign(id) {
                    return Ok(RestoreFrom::Foreign(Box::new(f.clone())));
                }
                Err(Error::NoBackup(format!(
                    "{id:?}: no backup id or foreign object key"
                )))
            }
            Selector::Latest { source } => {
                pick(source, None, format!("\"latest\"{}", for_source(source)))
            }
            Selector::Before { time, source } => pick(
                source,
                Some(*time),
                format!(
                    "\"before {}\"{}",
                    time.format("%Y-%m-%d %H:%M:%S UTC"),
                    for_source(source)
                ),
            ),
        }
    }

    /// Restores into a new SQLite file, verifying the checksum first and diffing row counts
    /// after. `Ok` means the restore ran; [`RestoreReport::ok`] says whether the counts match.
    pub async fn restore(
        &self,
        from: RestoreFrom,
        opts: RestoreOptions,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<RestoreReport>) {
        let (source, backup_id) = match &from {
            RestoreFrom::Backup(b) => (Some(b.source.clone()), Some(b.id.to_string())),
            RestoreFrom::Foreign(f) => (None, Some(f.meta.key.clone())),
        };
        let (kind, trigger) = if opts.drill {
            (JobKind::Drill, Trigger::Drill)
        } else {
            (JobKind::Restore, Trigger::Manual)
        };
        let job = self.start_job(kind, source.as_deref(), trigger);
        if let Some(id) = &backup_id {
            job.set_backup(id);
        }
        // A killed restore's scratch database goes first, so a retry with its name works.
        self.sweep_for(&job).await;
        let debris = debris::Recorder::for_job(self.state.clone(), &job);
        let source_config = source
            .as_deref()
            .or(opts.for_source.as_deref())
            .and_then(|s| self.config.source(s));
        let source_path = source_config.and_then(|s| s.path.clone());
        let (source_conn, bin_dir) = match source_config {
            Some(s) if s.engine == manifest::EngineKind::Postgres => {
                (engine::postgres::source_conn(s).ok(), s.bin_dir.clone())
            }
            _ => (None, None),
        };
        let log = |line: String| job.log(line);
        let started = self.clock.now();
        let result = RestoreRun {
            store: &self.store,
            from: &from,
            opts: &opts,
            source_path,
            source_conn,
            bin_dir,
            progress,
            cancel,
            log: &log,
            keys: self.config.encryption.as_ref(),
            debris: &debris,
            file_mode: self.config.restore.mode,
        }
        .run(started)
        .await;
        let result = result.and_then(|(mut report, _)| {
            job.add_bytes(report.stored_bytes);
            report.started_at = started;
            report.finished_at = self.clock.now().max(started);
            for row in report.diff.findings() {
                job.log(format!(
                    "row count {} for {}: expected {:?}, restored {:?}",
                    row.status.label(),
                    row.table,
                    row.expected,
                    row.restored
                ));
            }
            if report.ok() {
                Ok(report)
            } else {
                // A restore whose counts disagree is a failed restore, with the report kept.
                job.log(format!(
                    "{} table(s) differ from the manifest",
                    report.diff.findings().count()
                ));
                Err(Error::RowCountMismatch(Box::new(report)))
            }
        });
        self.finish_job(job, result).await
    }

    /// Re-downloads a backup and re-hashes it against its manifest.
    pub async fn verify(
        &self,
        entry: &BackupEntry,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<()>) {
        let job = self.start_job(JobKind::Verify, Some(&entry.source), Trigger::Manual);
        job.set_backup(entry.id.as_str());
        let result = async {
            let (Some(m), Some(key), None) = (&entry.manifest, entry.data_key(), &entry.problem)
            else {
                return Err(Error::NotRestorable {
                    id: entry.id.to_string(),
                    reason: entry
                        .problem
                        .clone()
                        .unwrap_or_else(|| "no manifest".into()),
                });
            };
            progress.phase(Phase::Download, Some(m.data.stored_bytes));
            let (sha, size) =
                pipeline::restore::download(self.store.as_ref(), &key, None, &*progress, &cancel)
                    .await?;
            job.add_bytes(size);
            if size != m.data.stored_bytes {
                return Err(Error::Size {
                    key: key.to_string(),
                    expected: m.data.stored_bytes,
                    actual: size,
                });
            }
            if sha != m.data.sha256 {
                return Err(Error::Checksum {
                    key: key.to_string(),
                    expected: m.data.sha256.clone(),
                    actual: sha,
                });
            }
            job.log(format!(
                "{key}: {size} bytes, sha256 {sha} matches the manifest"
            ));
            Ok(())
        }
        .await;
        self.finish_job(job, result).await
    }

    /// The newest verify or successful-restore evidence for a backup.
    pub fn verification(&self, backup_id: &str) -> Option<Verification> {
        let jobs = self.state.jobs_for_backup(backup_id).ok()?;
        jobs.into_iter()
            .filter(|j| matches!(j.kind, JobKind::Verify | JobKind::Restore | JobKind::Drill))
            .filter(|j| matches!(j.status, JobStatus::Succeeded | JobStatus::Failed))
            .map(|j| Verification {
                at: j.finished_at.unwrap_or(j.started_at),
                ok: j.status == JobStatus::Succeeded,
                kind: j.kind,
                job_id: j.id,
            })
            .max_by_key(|v| v.at)
    }

    /// Job history, newest first, from the local state.
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.state.jobs()
    }

    /// Copies finished local job records to the bucket and the bucket's records from other
    /// machines into the local state.
    pub async fn sync_jobs(&self) -> Result<SyncSummary> {
        let mut summary = SyncSummary::default();
        for job in self.state.jobs_not_in_bucket()? {
            self.store
                .put_bytes(&job.object_key()?, job_json(&job).into())
                .await?;
            self.state.put_job(&job, true)?;
            summary.pushed += 1;
        }
        let remote = self.store.list_all("_lifeboat/jobs/").await?;
        let missing: Vec<ObjectKey> = remote
            .into_iter()
            .filter_map(|o| {
                let id = o.key.rsplit('/').next()?.strip_suffix(".json")?.to_owned();
                (!self.state.has_job(&id).unwrap_or(true)).then(|| ObjectKey::new(o.key).ok())?
            })
            .collect();
        // Owned keys and store handles keep these futures `Send` for any caller's task.
        let fetches = missing.into_iter().map(|key| {
            let store = self.store.clone();
            async move { store.get_bytes(&key).await }
        });
        let fetched: Vec<_> = stream::iter(fetches).buffer_unordered(16).collect().await;
        for bytes in fetched {
            // One unreadable record must not hide the rest of the history.
            if let Ok(job) = serde_json::from_slice::<JobRecord>(&bytes?) {
                self.state.put_job(&job, true)?;
                summary.pulled += 1;
            }
        }
        Ok(summary)
    }

    /// Rewrites the metrics textfile, if one is configured, from the whole job history.
    pub fn write_metrics(&self) -> Result<()> {
        match &self.config.metrics.textfile {
            Some(path) => metrics::write_atomic(path, &metrics::render(&self.state.jobs()?)),
            None => Ok(()),
        }
    }

    fn start_job(&self, kind: JobKind, source: Option<&str>, trigger: Trigger) -> Job {
        let mut job = Job::start(kind, source, trigger, &self.clock);
        // Taken before the record says `running`: a running record without a held lock is
        // a dead job's.
        match lock::JobLock::acquire(&self.state.job_lock_dir(), &job.id()) {
            Ok(lock) => job.hold(lock),
            Err(e) => tracing::warn!("cannot take the lock of job {}: {e}", job.id()),
        }
        if let Err(e) = self.state.put_job(&job.snapshot(), false) {
            tracing::warn!("cannot record job start: {e}");
        }
        job
    }

    /// Sweeps what dead jobs left behind (see [`debris`]) before `job` starts its own work,
    /// noting each in its log. A failure to sweep never fails the job.
    async fn sweep_for(&self, job: &Job) {
        match self.sweep_debris(false).await {
            Ok(swept) => {
                for s in swept {
                    let by = s.job_id.as_deref().unwrap_or("an earlier run");
                    match s.error {
                        None => job.log(format!("removed {}, left by job {by}", s.what)),
                        Some(e) => job.log(format!(
                            "could not remove {}, left by job {by}: {e}",
                            s.what
                        )),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot sweep what earlier runs left: {e}"),
        }
    }

    async fn finish_job<T>(&self, job: Job, result: Result<T>) -> (JobRecord, Result<T>) {
        let record = job.finish(result.as_ref().map(|_| ()));
        let in_bucket = match record.object_key() {
            Ok(key) => match self.store.put_bytes(&key, job_json(&record).into()).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(
                        "job {} kept locally only, the bucket refused it: {e}",
                        record.id
                    );
                    false
                }
            },
            Err(_) => false,
        };
        if let Err(e) = self.state.put_job(&record, in_bucket) {
            tracing::warn!("cannot record job {}: {e}", record.id);
        }
        if let Err(e) = self.write_metrics() {
            tracing::warn!("cannot write metrics: {e}");
        }
        (record, result)
    }
}

fn job_json(job: &JobRecord) -> Vec<u8> {
    serde_json::to_vec_pretty(job).expect("job records serialize")
}

fn for_source(source: &Option<String>) -> String {
    source
        .as_ref()
        .map(|s| format!(" for source {s}"))
        .unwrap_or_default()
}
