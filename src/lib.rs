//! lifeboat: consistent database backups into S3-compatible buckets or a directory, a catalog
//! of what is there, and restores that prove themselves with a row-count diff.
//!
//! This library holds all behaviour; the CLI and the console are front ends over [`Lifeboat`].

pub mod alert;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod content;
pub mod copy;
pub mod daemon;
pub mod debris;
pub mod demo;
pub mod diff;
pub mod drill;
pub mod engine;
mod error;
pub mod escape;
pub mod health;
pub mod jobs;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod pitr;
pub mod progress;
pub mod promote;
pub mod prune;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod signing;
pub mod sniff;
pub mod state;
pub mod storage;
pub mod stores;
pub mod wal;
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
use config::{Config, SourceConfig, StorageConfig};
use jobs::{Job, JobKind, JobRecord, JobStatus};
use manifest::{Manifest, Trigger};
use pipeline::backup::{BackupOptions, BackupRun};
use pipeline::restore::{RestoreFrom, RestoreOptions, RestoreReport, RestoreRun};
use progress::{Phase, Progress};
use state::State;
use storage::{ObjectKey, ObjectStore, ObjectStoreExt};
use stores::NamedStore;

/// The core handle: configuration, the stores, the local state and the clock.
#[derive(Debug, Clone)]
pub struct Lifeboat {
    config: Arc<Config>,
    /// The default store: job records, pins and drill reports live here.
    store: Arc<dyn ObjectStore>,
    /// Every store, the default first.
    stores: Arc<Vec<NamedStore>>,
    state: State,
    clock: Clock,
    /// The public keys that authenticate backups here.
    trust: Arc<signing::Trust>,
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
#[derive(Debug, Clone, Default)]
pub struct SyncSummary {
    pub pushed: usize,
    pub pulled: usize,
    /// Records found unusable by this sync (too large, not a record, misnamed), with the
    /// reason. Each is reported once: the verdict is cached and the record not read again.
    pub unusable: Vec<catalog::Unusable>,
    /// Records that could not be fetched this time (tried again next time), with the error.
    pub unreadable: Vec<(String, String)>,
}

/// Opens the store a config describes.
pub async fn open_store(storage: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    let config =
        stores::StoreConfig::resolve(Some(storage.clone()), Vec::new()).map_err(Error::Invalid)?;
    Ok(stores::open(&config[0]).await?.store)
}

impl Lifeboat {
    /// Opens the stores and the state database a config names.
    pub async fn open(config: Config) -> Result<Self> {
        let stores = stores::open_all(&config).await?;
        let state = State::open(&config.state_path())?;
        let clock = Clock::from_env().map_err(Error::Invalid)?;
        Ok(Lifeboat::with_stores(config, stores, state, clock))
    }

    /// A handle on `store` as the default store; any other store the config names is left
    /// unopened (use [`Lifeboat::with_stores`] for those).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn ObjectStore>,
        state: State,
        clock: Clock,
    ) -> Self {
        let stores = config
            .stores
            .iter()
            .enumerate()
            .map(|(i, s)| match i {
                0 => NamedStore::new(s.name.clone(), store.clone()),
                _ => stores::unopened(&s.name),
            })
            .collect();
        Lifeboat::with_stores(config, stores, state, clock)
    }

    /// A handle on opened stores, in the config's order (the first is the default store).
    pub fn with_stores(
        config: Config,
        stores: Vec<NamedStore>,
        state: State,
        clock: Clock,
    ) -> Self {
        assert!(!stores.is_empty(), "a lifeboat needs a store");
        let trust = Arc::new(signing::Trust::from_config(config.signing.as_ref()));
        Lifeboat {
            config: Arc::new(config),
            store: stores[0].store.clone(),
            stores: Arc::new(stores),
            state,
            clock,
            trust,
        }
    }

    /// Whether a backup counts for retention: signed by a key this host trusts, or no key is
    /// trusted here at all.
    pub fn authentic(&self, b: &BackupEntry) -> bool {
        !self.trust.trusts_anyone()
            || b.manifest.as_ref().is_some_and(|m| {
                matches!(
                    self.trust.authenticity(m),
                    signing::Authenticity::Authenticated { .. }
                )
            })
    }

    /// Whether a backup's manifest is signed by a key this host trusts (see [`signing`]).
    pub fn authenticity(&self, manifest: &Manifest) -> signing::Authenticity {
        self.trust.authenticity(manifest)
    }

    /// `from` as its manifest in the store says now. The catalog's copy of a manifest may
    /// come from the local cache or the catalog index; what a restore or verify trusts (the
    /// checksum, the signature, the data object's size) is read from the manifest itself.
    async fn with_real_manifest(
        &self,
        mut b: Box<BackupEntry>,
    ) -> std::result::Result<Box<BackupEntry>, (Box<BackupEntry>, Error)> {
        if b.manifest.is_none() {
            return Ok(b);
        }
        let key = match ObjectKey::new(format!("{}/{}", b.dir(), manifest::MANIFEST_NAME)) {
            Ok(k) => k,
            Err(e) => return Err((b, e.into())),
        };
        let mut first_error = None;
        for store in self.restore_stores(&RestoreFrom::Backup(b.clone())) {
            let bytes = match store
                .store
                .get_bounded(&key, manifest::MAX_MANIFEST_BYTES)
                .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let real = match Manifest::parse(key.as_str(), &bytes) {
                Ok(m) => m,
                Err(e) => return Err((b, e.into())),
            };
            if b.manifest.as_deref() != Some(&real) {
                tracing::warn!(
                    "{key}: the catalog's copy of the manifest is not the store's; using the store's"
                );
                b.state = catalog::BackupState::Damaged;
                b.problem =
                    Some("its manifest changed since the catalog was read; list again".into());
            }
            b.manifest = Some(std::sync::Arc::new(real));
            return Ok(b);
        }
        let reason = format!(
            "its manifest cannot be read: {}",
            first_error.map_or_else(|| "no store holds it".to_owned(), |e| e.to_string())
        );
        let id = b.id.to_string();
        Err((b, Error::NotRestorable { id, reason }))
    }

    /// What a restore of `from` may do: a manifest whose signature fails is refused, and
    /// only an authenticated backup may be restored `privileged`.
    fn check_rights(
        &self,
        from: &RestoreFrom,
        opts: &RestoreOptions,
    ) -> Result<Option<signing::Authenticity>> {
        let authenticity = match from {
            RestoreFrom::Backup(b) => b.manifest.as_ref().map(|m| self.authenticity(m)),
            RestoreFrom::Foreign(_) => None,
        };
        if let Some(signing::Authenticity::Bad { reason }) = &authenticity {
            return Err(Error::NotRestorable {
                id: from.label(),
                reason: format!("its manifest is not to be trusted: {reason}"),
            });
        }
        if opts.privileged && !authenticity.as_ref().is_some_and(|a| a.is_authenticated()) {
            let what = match (from, &authenticity) {
                (RestoreFrom::Foreign(_), _) => "a foreign object, which nobody signed".to_owned(),
                (_, Some(a)) => format!("a backup that is {a}"),
                (_, None) => "a backup without a manifest".to_owned(),
            };
            return Err(Error::Refused(Box::new(Error::Invalid(format!(
                "--privileged is only for authenticated backups (signed by a key in [signing]); {} is {what}: restore it without --privileged",
                from.label()
            )))));
        }
        let engine = opts.target.engine();
        if opts.privileged && !engine.has_rights() {
            return Err(Error::Refused(Box::new(Error::Invalid(format!(
                "--privileged applies to PostgreSQL restores only; a {} restore has no rights to add",
                engine.name()
            )))));
        }
        Ok(authenticity)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Who jobs, pins and unpins are recorded as: `operator` from the config, else the login
    /// name of this process.
    pub fn operator(&self) -> String {
        self.config
            .operator
            .clone()
            .filter(|o| !o.trim().is_empty())
            .unwrap_or_else(jobs::os_user)
    }

    /// The default store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Every store, the default first.
    pub fn stores(&self) -> &[NamedStore] {
        &self.stores
    }

    pub fn named_store(&self, name: &str) -> Result<&NamedStore> {
        self.stores.iter().find(|s| s.name == name).ok_or_else(|| {
            Error::Invalid(format!(
                "no store named {name:?} (stores: {})",
                self.stores
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The stores of a source, in its order: the first is the one backups are written to.
    pub fn source_stores(&self, source: &str) -> Vec<&NamedStore> {
        self.config
            .source_stores(source)
            .iter()
            .filter_map(|sc| self.stores.iter().find(|s| s.name == sc.name))
            .collect()
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

    /// Backs up one source into its first store, then copies it to the source's other stores
    /// (a copy job of its own, which also reads the new backup back). The backup's job record
    /// comes back whatever the outcome.
    pub async fn backup(
        &self,
        source: &str,
        trigger: Trigger,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<Manifest>) {
        let job = self.start_job(JobKind::Backup, Some(source), trigger);
        let first = self.source_stores(source).first().copied().cloned();
        self.sweep_for(&job).await;
        let debris = debris::Recorder::for_job(self.state.clone(), &job);
        let result = async {
            let source = self.source(source)?;
            let first = first
                .as_ref()
                .ok_or_else(|| Error::Invalid(format!("source {} has no store", source.name)))?;
            let encryption = self.encryption_for(&source.name);
            let opts = BackupOptions {
                trigger,
                compression_level: self.config.backup.compression_level,
                threads: self.config.backup.threads,
                staging: self.staging(),
                content_checksums: self.config.backup.content_checksums,
                seal: pipeline::crypt::Seal::from_config(encryption.as_ref())?.map(Arc::new),
                signer: signing::Signer::from_config(self.config.signing.as_ref())?.map(Arc::new),
            };
            BackupRun {
                store: &first.store,
                source,
                opts: &opts,
                clock: &self.clock,
                progress: progress.clone(),
                cancel: cancel.clone(),
                job: &job,
                debris: &debris,
            }
            .run()
            .await
        }
        .await;
        let (record, result) = self.finish_job(job, result).await;
        if let (Ok(manifest), Some(first)) = (&result, &first) {
            self.copy_new_backup(first, manifest, progress, cancel)
                .await;
        }
        (record, result)
    }

    /// `[encryption]` with the recipients of the source's stores added, so each store's key
    /// holder can read its copies.
    fn encryption_for(&self, source: &str) -> Option<pipeline::crypt::EncryptionConfig> {
        let extra: Vec<&String> = self
            .config
            .source_stores(source)
            .iter()
            .flat_map(|s| &s.recipients)
            .collect();
        if extra.is_empty() {
            return self.config.encryption.clone();
        }
        let mut e = self.config.encryption.clone().unwrap_or_default();
        for r in extra {
            if !e.recipients.contains(r) {
                e.recipients.push(r.clone());
            }
        }
        Some(e)
    }

    /// What a store records after hashing its copy of `m`.
    pub(crate) fn check_record(
        &self,
        m: &Manifest,
        ok: bool,
        how: stores::CheckHow,
        detail: Option<String>,
    ) -> stores::CheckRecord {
        stores::CheckRecord {
            source: m.source.name.clone(),
            backup: m.id.to_string(),
            sha256: m.data.sha256.clone(),
            stored_bytes: m.data.stored_bytes,
            at: self.clock.now(),
            ok,
            how,
            host: jobs::hostname(),
            detail,
        }
    }

    /// Reads the whole catalog, using the local cache for manifests already seen, and keeps
    /// its lines for the next [`Lifeboat::cached_rows`].
    pub async fn catalog(&self) -> Result<Catalog> {
        self.scan_catalog(|_| {}).await
    }

    /// Like [`Lifeboat::catalog`], handing each listing page to `on_page` as it arrives, so
    /// a console can show its lines (and which sources are fully read) before the whole
    /// bucket is read.
    pub async fn scan_catalog(
        &self,
        mut on_page: impl FnMut(&catalog::CatalogPage),
    ) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        let primary = async {
            let mut scanner =
                catalog::Scanner::new(self.store.as_ref(), Some(&self.state)).repairing_index();
            while let Some(page) = scanner.next_page().await? {
                on_page(&page);
                catalog.backups.extend(page.backups);
                catalog.foreign.extend(page.foreign);
                catalog.unusable.extend(page.unusable);
            }
            catalog.incomplete = scanner.incomplete().await?;
            catalog.pins = self.pins().await?;
            Ok::<_, Error>(())
        }
        .await;
        // With other stores to read, an unreachable default store is one finding, not the end:
        // their copies are still listed and restorable.
        let primary_error = match primary {
            Ok(()) => None,
            Err(e) if self.stores.len() == 1 => return Err(e),
            Err(e) => {
                catalog = Catalog::default();
                Some(e)
            }
        };
        catalog.sort();
        self.survey_stores(&mut catalog, primary_error).await?;
        if let Err(e) = self.state.save_catalog_rows(&catalog.rows()) {
            tracing::warn!("cannot cache the catalog: {e}");
        }
        Ok(catalog)
    }

    /// Reads the other stores and merges them into `catalog` (see [`stores::merge`]).
    async fn survey_stores(
        &self,
        catalog: &mut Catalog,
        primary_error: Option<Error>,
    ) -> Result<()> {
        let mut listings = Vec::with_capacity(self.stores.len());
        let first = match primary_error {
            None => {
                let primary = (catalog.backups.clone(), catalog.incomplete.clone());
                stores::list_store(&self.stores[0], Some(&self.state), Some(primary)).await
            }
            Some(e) => stores::StoreListing {
                store: self.stores[0].name.clone(),
                location: self.store.location(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        };
        listings.push(first);
        let others = futures_util::future::join_all(
            self.stores[1..]
                .iter()
                .map(|s| stores::list_store(s, Some(&self.state), None)),
        )
        .await;
        listings.extend(others);
        if listings.iter().all(|l| l.error.is_some()) {
            return Err(Error::Invalid(format!(
                "no store could be read: {}",
                listings
                    .iter()
                    .map(|l| format!("{}: {}", l.store, l.error.as_deref().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let legacy = self.legacy_verifications();
        let now = self.clock.now();
        stores::merge(
            &self.config,
            catalog,
            listings,
            &legacy,
            &|b| self.authentic(b),
            now,
        );
        if self.stores.len() > 1
            && let Some(path) = &self.config.metrics.textfile
            && let Err(e) =
                metrics::write_store_metrics(path, &stores::health(&self.config, catalog, now))
        {
            tracing::warn!("cannot write the store metrics: {e}");
        }
        Ok(())
    }

    /// The newest verify/restore/drill outcome per backup id, from the job history.
    fn legacy_verifications(&self) -> stores::Evidence {
        self.verifications()
            .into_iter()
            .map(|(id, v)| (id, (v.ok, v.at)))
            .collect()
    }

    /// The catalog lines as last listed, newest first, without asking the bucket; `limit`
    /// takes only the newest.
    pub fn cached_rows(&self, limit: Option<usize>) -> Result<Vec<catalog::CatalogRow>> {
        self.state.load_catalog_rows(limit)
    }

    /// A new scratch target for restoring `id` of `source` into `engine`: `name` (a SQLite
    /// file's path, a PostgreSQL database's name) when given, else a generated one.
    pub fn scratch_target(
        &self,
        engine: manifest::EngineKind,
        source: &str,
        name: Option<&str>,
        id: &str,
    ) -> Result<pipeline::restore::RestoreTarget> {
        let engine = engine::for_kind(engine);
        let name = name.map_or_else(
            || engine.scratch_name(&self.config, source, id),
            str::to_owned,
        );
        engine.target(self.source(source), &name)
    }

    /// A PostgreSQL restore target on the scratch server of `source`: `database`, or the
    /// generated `lifeboat_restore_<id>`.
    pub fn postgres_target(
        &self,
        source: &str,
        database: Option<&str>,
        id: &str,
    ) -> Result<pipeline::restore::RestoreTarget> {
        self.scratch_target(manifest::EngineKind::Postgres, source, database, id)
    }

    /// The live source to count beside a restore, if the source is configured here.
    pub fn live_source(&self, source: &str) -> Result<pipeline::restore::LiveSource> {
        let s = self.source(source)?;
        engine::for_source(s).live(s)
    }

    /// Drops what a restore restored into, refusing a target it did not create (one it
    /// replaced with --force-target).
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
        target.engine().drop_scratch(target).await
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
                match catalog.lookup(id) {
                    Ok(b) => return Ok(RestoreFrom::Backup(Box::new(b.clone()))),
                    Err(e @ Error::Invalid(_)) => return Err(e),
                    Err(_) => {}
                }
                if let Some(f) = catalog.find_foreign(id) {
                    return Ok(RestoreFrom::Foreign(Box::new(f.clone())));
                }
                if let Some(u) = catalog.unusable.iter().find(|u| &u.key == id) {
                    return Err(Error::NotRestorable {
                        id: u.key.clone(),
                        reason: u.reason.clone(),
                    });
                }
                Err(Error::NoBackup(format!(
                    "{id:?}: no backup id or foreign object key"
                )))
            }
            // A backup dated after now (a skewed clock, a forged manifest) is not "latest".
            Selector::Latest { source } => pick(
                source,
                Some(self.clock.now() + clock::SKEW_ALLOWANCE),
                format!("\"latest\"{}", for_source(source)),
            ),
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
        mut from: RestoreFrom,
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
        let log = |line: String| job.log(line);
        let started = self.clock.now();
        let real = match from {
            RestoreFrom::Backup(b) => match self.with_real_manifest(b).await {
                Ok(b) => Ok(RestoreFrom::Backup(b)),
                Err((b, e)) => Err((RestoreFrom::Backup(b), e)),
            },
            foreign => Ok(foreign),
        };
        let rights = match real {
            Ok(real) => {
                from = real;
                self.check_rights(&from, &opts)
            }
            Err((unread, e)) => {
                from = unread;
                Err(e)
            }
        };
        let result = match rights {
            Err(e) => Err(e),
            Ok(authenticity) => {
                if let Some(a) = &authenticity {
                    job.log(format!("manifest {a}"));
                }
                let stores = self.restore_stores(&from);
                let mut result = Err(Error::Cancelled);
                for (i, store) in stores.iter().enumerate() {
                    result = RestoreRun {
                        store: &store.store,
                        from: &from,
                        opts: &opts,
                        source: source_config,
                        progress: progress.clone(),
                        cancel: cancel.clone(),
                        log: &log,
                        keys: self.config.encryption.as_ref(),
                        debris: &debris,
                        file_mode: self.config.restore.mode,
                    }
                    .run(started)
                    .await
                    .map(|(mut report, at)| {
                        report.authenticity = authenticity.clone();
                        (report, at)
                    });
                    let Err(e) = &result else {
                        if i > 0 {
                            job.log(format!("restored from the copy in store {}", store.name));
                        }
                        break;
                    };
                    if stores.len() > 1 {
                        if let (true, RestoreFrom::Backup(b)) = (bad_copy(e), &from)
                            && let Some(m) = &b.manifest
                        {
                            let record = self.check_record(
                                m,
                                false,
                                stores::CheckHow::Restore,
                                Some(first_line(&e.to_string()).to_owned()),
                            );
                            stores::record_check(store, &record).await;
                        }
                        let next = stores
                            .get(i + 1)
                            .filter(|_| falls_back(e) && !cancel.is_cancelled());
                        let line = match next {
                            Some(next) => format!(
                                "store {}: {}; restoring from store {} instead",
                                store.name,
                                first_line(&e.to_string()),
                                next.name
                            ),
                            None => format!("store {}: {}", store.name, first_line(&e.to_string())),
                        };
                        job.log(line.clone());
                        progress.note(&line);
                        if next.is_none() {
                            result = result.map_err(|e| Error::InStore {
                                store: store.name.clone(),
                                source: Box::new(e),
                            });
                            break;
                        }
                    } else {
                        break;
                    }
                }
                result
            }
        };
        // The copy and what it looked like, for `promote` (which takes only a proved one).
        let copy_of = |report: &RestoreReport| jobs::RestoredCopy {
            copy: report.target.copy_name(),
            target: report.target.to_string(),
            proved: report.proved(),
            fingerprint: report.fingerprint.clone(),
            privileged: report.privileged,
            skipped: report.skipped.clone(),
        };
        if let Ok((report, _)) = &result {
            job.set_restored(copy_of(report));
        }
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

    /// The stores a restore of `from` tries, in order: those with a verified copy, then
    /// those with an unchecked one, then those that could not be read when listed, then those
    /// whose copy failed a check (it may have been replaced since).
    fn restore_stores(&self, from: &RestoreFrom) -> Vec<NamedStore> {
        let RestoreFrom::Backup(b) = from else {
            return vec![self.stores[0].clone()];
        };
        let Some(copies) = &b.copies else {
            return vec![self.stores[0].clone()];
        };
        let mut names: Vec<&str> = copies.restore_order();
        for state in [stores::CopyState::Unknown, stores::CopyState::Failed] {
            names.extend(
                copies
                    .stores
                    .iter()
                    .filter(|c| c.state == state)
                    .map(|c| c.store.as_str()),
            );
        }
        let list: Vec<NamedStore> = names
            .into_iter()
            .filter_map(|n| self.stores.iter().find(|s| s.name == n).cloned())
            .collect();
        if list.is_empty() {
            vec![self.stores[0].clone()]
        } else {
            list
        }
    }

    /// Re-downloads a backup from every store that holds a copy and re-hashes each against
    /// its manifest. Each store records what it found; the job fails if any copy is bad.
    pub async fn verify(
        &self,
        entry: &BackupEntry,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<()>) {
        self.verify_copies(entry, true, progress, cancel).await
    }

    /// The check before a restore: the copies a restore would read, in its order, until one
    /// matches. Bad ones on the way are recorded and said in one line each; it fails only if
    /// none is good.
    pub async fn verify_for_restore(
        &self,
        entry: &BackupEntry,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<()>) {
        self.verify_copies(entry, false, progress, cancel).await
    }

    /// The wizard's pre-flight, without downloading: the manifest is trusted and the data
    /// object a restore would read is there at the manifest's size. The checksum is then
    /// checked by the restore's own download, before anything is loaded, so a backup is
    /// downloaded once. Says where the restore will read from.
    pub async fn preflight(&self, entry: &BackupEntry) -> Result<String> {
        let not_restorable = |reason: String| Error::NotRestorable {
            id: entry.id.to_string(),
            reason,
        };
        let (Some(m), Some(key), None) = (&entry.manifest, entry.data_key(), &entry.problem) else {
            return Err(not_restorable(
                entry
                    .problem
                    .clone()
                    .unwrap_or_else(|| "no manifest".into()),
            ));
        };
        let authenticity = self.authenticity(m);
        if let signing::Authenticity::Bad { reason } = &authenticity {
            return Err(not_restorable(format!(
                "its manifest is not to be trusted: {reason}"
            )));
        }
        let mut first_problem = None;
        for store in self.restore_stores(&RestoreFrom::Backup(Box::new(entry.clone()))) {
            let problem = match store.store.head(&key).await {
                Ok(Some(meta)) if meta.size == m.data.stored_bytes => {
                    return Ok(format!(
                        "{} present in store {} ({} bytes, as the manifest says); manifest {authenticity}",
                        key, store.name, meta.size
                    ));
                }
                Ok(Some(meta)) => format!(
                    "store {}: {key} holds {} bytes, the manifest says {}",
                    store.name, meta.size, m.data.stored_bytes
                ),
                Ok(None) => format!("store {}: {key} is missing", store.name),
                Err(e) => format!("store {}: {}", store.name, first_line(&e.to_string())),
            };
            first_problem.get_or_insert(problem);
        }
        Err(not_restorable(
            first_problem.unwrap_or_else(|| "no store holds it".into()),
        ))
    }

    async fn verify_copies(
        &self,
        entry: &BackupEntry,
        all: bool,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<()>) {
        let job = self.start_job(JobKind::Verify, Some(&entry.source), Trigger::Manual);
        job.set_backup(entry.id.as_str());
        let result = async {
            let real = self
                .with_real_manifest(Box::new(entry.clone()))
                .await
                .map_err(|(_, e)| e)?;
            let entry = &*real;
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
            let authenticity = self.authenticity(m);
            if let signing::Authenticity::Bad { reason } = &authenticity {
                return Err(Error::NotRestorable {
                    id: entry.id.to_string(),
                    reason: format!("its manifest is not to be trusted: {reason}"),
                });
            }
            job.log(format!("manifest {authenticity}"));
            let targets: Vec<(&NamedStore, Option<String>)> = match &entry.copies {
                None => vec![(&self.stores[0], None)],
                Some(_) if !all => self
                    .restore_stores(&RestoreFrom::Backup(Box::new(entry.clone())))
                    .into_iter()
                    .filter_map(|n| self.stores.iter().find(|s| s.name == n.name))
                    .map(|s| (s, None))
                    .collect(),
                Some(copies) => copies
                    .stores
                    .iter()
                    .filter(|c| c.state != stores::CopyState::Missing)
                    .filter_map(|c| {
                        let store = self.stores.iter().find(|s| s.name == c.store)?;
                        let known_bad = matches!(
                            c.state,
                            stores::CopyState::Incomplete | stores::CopyState::Damaged
                        )
                        .then(|| {
                            format!(
                                "{} copy: {}",
                                c.state.label(),
                                c.detail.as_deref().unwrap_or("not a complete copy")
                            )
                        });
                        Some((store, known_bad))
                    })
                    .collect(),
            };
            let several = self.stores.len() > 1;
            let mut first_error = None;
            let last = targets.len().saturating_sub(1);
            for (i, (store, known_bad)) in targets.into_iter().enumerate() {
                let outcome = match known_bad {
                    Some(why) => Err(Error::Invalid(why)),
                    None => {
                        self.verify_copy(store, m, &key, &*progress, &cancel, &job)
                            .await
                    }
                };
                if outcome.is_ok() && !all {
                    return Ok(());
                }
                if let Err(e) = outcome {
                    if matches!(e, Error::Cancelled) {
                        return Err(e);
                    }
                    let line = format!("store {}: {}", store.name, first_line(&e.to_string()));
                    if !all && i < last {
                        progress.note(&format!("{line}; checking the next store's copy"));
                    }
                    job.log(line);
                    let e = if several {
                        Error::InStore {
                            store: store.name.clone(),
                            source: Box::new(e),
                        }
                    } else {
                        e
                    };
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
        .await;
        self.finish_job(job, result).await
    }

    /// Hashes one store's copy and records the outcome in that store.
    async fn verify_copy(
        &self,
        store: &NamedStore,
        m: &Manifest,
        key: &ObjectKey,
        progress: &dyn Progress,
        cancel: &CancellationToken,
        job: &Job,
    ) -> Result<()> {
        progress.phase(Phase::Download, Some(m.data.stored_bytes));
        let (sha, size) =
            pipeline::restore::download(store.store.as_ref(), key, None, progress, cancel).await?;
        job.add_bytes(size);
        let mismatch = m.data.mismatch(key.as_str(), &sha, size);
        let record = self.check_record(
            m,
            mismatch.is_none(),
            stores::CheckHow::Verify,
            mismatch
                .as_ref()
                .map(|e| first_line(&e.to_string()).to_owned()),
        );
        stores::record_check(store, &record).await;
        match mismatch {
            Some(e) => Err(e),
            None => {
                job.log(format!(
                    "{}{key}: {size} bytes, sha256 {sha} matches the manifest",
                    if self.stores.len() > 1 {
                        format!("store {}: ", store.name)
                    } else {
                        String::new()
                    }
                ));
                Ok(())
            }
        }
    }

    /// The newest verify or successful-restore evidence for a backup.
    pub fn verification(&self, backup_id: &str) -> Option<Verification> {
        let jobs = self.state.jobs_for_backup(backup_id).ok()?;
        newest_verifications(&jobs).remove(backup_id)
    }

    /// [`Lifeboat::verification`] of every backup at once (one read of the job history, not
    /// one per backup).
    pub fn verifications(&self) -> std::collections::HashMap<String, Verification> {
        newest_verifications(&self.state.verifying_jobs().unwrap_or_default())
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
        // Pulled records are in the state database and bad ones are cached as unusable, so a
        // sync reads only records it has never seen, and each of those at most once.
        let remote = self.store.list_all(jobs::JOBS_PREFIX).await?;
        let mut wanted = Vec::new();
        for o in remote {
            let Some(id) = o
                .key
                .rsplit('/')
                .next()
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if self.state.has_job(id)? || self.unusable_verdict(&o).is_some() {
                continue;
            }
            match ObjectKey::new(o.key.clone()) {
                Err(e) => self.mark_unusable(&mut summary, &o, format!("key {}", e.reason)),
                Ok(_) if o.size > jobs::MAX_JOB_RECORD_BYTES => {
                    let why = format!(
                        "job record is {} bytes, more than the {} lifeboat reads; it is not loaded",
                        o.size,
                        jobs::MAX_JOB_RECORD_BYTES
                    );
                    self.mark_unusable(&mut summary, &o, why);
                }
                Ok(key) => wanted.push((o, key)),
            }
        }
        // Owned keys and store handles keep these futures `Send` for any caller's task.
        let fetches = wanted.into_iter().map(|(meta, key)| {
            let store = self.store.clone();
            async move {
                let read = store.get_bounded(&key, jobs::MAX_JOB_RECORD_BYTES).await;
                (meta, read)
            }
        });
        let fetched: Vec<_> = stream::iter(fetches).buffer_unordered(16).collect().await;
        // One bad record must not hide the rest of the history.
        for (meta, read) in fetched {
            match read.map(|bytes| JobRecord::parse(&meta.key, &bytes)) {
                Ok(Ok(job)) => {
                    self.state.put_pulled_job(&job)?;
                    summary.pulled += 1;
                }
                Ok(Err(why)) => self.mark_unusable(&mut summary, &meta, why),
                Err(e @ storage::StoreError::TooLarge { .. }) => {
                    self.mark_unusable(&mut summary, &meta, e.to_string())
                }
                Err(e) => summary.unreadable.push((meta.key, e.to_string())),
            }
        }
        Ok(summary)
    }

    /// The cached reason an object (of this size and time) cannot be used, if one is known.
    fn unusable_verdict(&self, o: &storage::ObjectMeta) -> Option<String> {
        let modified = o.last_modified.map(|t| t.to_rfc3339()).unwrap_or_default();
        self.state
            .cache_get(&o.key, state::CacheKind::Unusable, o.size, &modified)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn mark_unusable(&self, summary: &mut SyncSummary, o: &storage::ObjectMeta, reason: String) {
        tracing::warn!("{}: {reason}", escape::term(&o.key));
        let modified = o.last_modified.map(|t| t.to_rfc3339()).unwrap_or_default();
        let cached = self.state.cache_put(
            &o.key,
            state::CacheKind::Unusable,
            o.size,
            &modified,
            reason.as_bytes(),
        );
        if let Err(e) = cached {
            tracing::warn!(
                "cannot remember that {} is unusable: {e}",
                escape::term(&o.key)
            );
        }
        summary.unusable.push(catalog::Unusable {
            key: o.key.clone(),
            size: o.size,
            last_modified: o.last_modified,
            reason,
        });
    }

    /// Rewrites the metrics textfile, if one is configured, from the whole job history.
    pub fn write_metrics(&self) -> Result<()> {
        match &self.config.metrics.textfile {
            Some(path) => metrics::write_atomic(path, &metrics::render(&self.state.jobs()?)),
            None => Ok(()),
        }
    }

    fn start_job(&self, kind: JobKind, source: Option<&str>, trigger: Trigger) -> Job {
        let mut job = Job::start(kind, source, trigger, &self.operator(), &self.clock);
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

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// A copy that was read and found bad (as opposed to a store that could not be read).
fn bad_copy(e: &Error) -> bool {
    matches!(e, Error::Checksum { .. } | Error::Size { .. })
}

/// A failure another store's copy may not have: the store, or the bytes it returned.
fn falls_back(e: &Error) -> bool {
    match e {
        Error::Store(_) | Error::Checksum { .. } | Error::Size { .. } => true,
        Error::Io { context, .. } => context.starts_with("download "),
        _ => false,
    }
}

fn for_source(source: &Option<String>) -> String {
    source
        .as_ref()
        .map(|s| format!(" for source {s}"))
        .unwrap_or_default()
}

/// The newest finished verify, restore or drill of each backup among `jobs`.
pub fn newest_verifications<'a>(
    jobs: impl IntoIterator<Item = &'a JobRecord>,
) -> std::collections::HashMap<String, Verification> {
    let mut newest = std::collections::HashMap::<String, Verification>::new();
    for j in jobs {
        let relevant = matches!(j.kind, JobKind::Verify | JobKind::Restore | JobKind::Drill)
            && matches!(j.status, JobStatus::Succeeded | JobStatus::Failed);
        let Some(id) = j.backup_id.clone().filter(|_| relevant) else {
            continue;
        };
        let v = Verification {
            at: j.finished_at.unwrap_or(j.started_at),
            ok: j.status == JobStatus::Succeeded,
            kind: j.kind,
            job_id: j.id.clone(),
        };
        match newest.get(&id) {
            Some(old) if old.at >= v.at => {}
            _ => {
                newest.insert(id, v);
            }
        }
    }
    newest
}
