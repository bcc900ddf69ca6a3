//! Copies between stores: `lifeboat copy` brings each store up to date, and every backup is
//! copied to its source's other stores right after it commits.
//!
//! A copy streams from a store holding a good copy to the destination, hashing on the way
//! (a source whose bytes do not match the manifest fails before the destination commits
//! anything), then reads the destination's object back and hashes it again; only then is the
//! manifest written (the commit point, as for a backup) and the destination's check record.
//! Two S3 stores on one endpoint with the same credentials copy server-side instead, and the
//! result is read back all the same. Nothing is kept in memory between runs: the next run
//! lists the stores again, so an interrupted copy resumes where the listings say it stopped
//! (a backup whose copy is complete is not sent again; data that arrived whole before its
//! manifest is read back and kept).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::catalog::{BackupEntry, BackupState, Catalog};
use crate::error::{Error, Result};
use crate::jobs::{Job, JobKind, JobRecord};
use crate::manifest::{DataInfo, MANIFEST_NAME, Manifest, Trigger};
use crate::progress::{Phase, Progress};
use crate::storage::{ByteStream, ObjectKey, ObjectMeta, ObjectStoreExt, StoreError};
use crate::stores::{self, CheckHow, CopyState, NamedStore, RECORD_PREFIXES};

/// Manifests and job records are small; anything larger is not one of lifeboat's.
const RECORD_LIMIT: u64 = 16 * 1024 * 1024;
const RECORD_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Only this destination store.
    pub store: Option<String>,
    /// Only this source's backups (lifeboat's records are then left for a full run).
    pub source: Option<String>,
    pub trigger: Option<Trigger>,
}

/// What a store's copy of a backup needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyAction {
    /// Nothing there yet.
    Copy,
    /// Data without its manifest (a copy that stopped): the data is read back and kept if
    /// whole, else sent again.
    Resume,
    /// A copy that failed its check or is damaged: the manifest goes first, then it is copied
    /// again.
    Replace,
    /// Complete, never hashed: read back and recorded.
    Check,
}

impl CopyAction {
    pub fn label(self) -> &'static str {
        match self {
            CopyAction::Copy => "copy",
            CopyAction::Resume => "resume",
            CopyAction::Replace => "replace",
            CopyAction::Check => "check",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupCopy {
    pub source: String,
    pub id: String,
    pub action: CopyAction,
    /// Stores holding a good copy to read from, in order of preference.
    pub from: Vec<String>,
    /// Stored bytes of the backup's data.
    pub bytes: u64,
    #[serde(skip)]
    entry: BackupEntry,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordCopy {
    pub key: String,
    pub bytes: u64,
}

/// Everything one store lacks.
#[derive(Debug, Clone, Serialize)]
pub struct StorePlan {
    pub store: String,
    pub location: String,
    /// Why nothing can be copied to it now.
    pub error: Option<String>,
    pub backups: Vec<BackupCopy>,
    /// Job records and drill reports of the default store it lacks.
    pub records: Vec<RecordCopy>,
    /// Backups it should hold that no store has a good copy of (`source/id`).
    pub unavailable: Vec<String>,
}

impl StorePlan {
    /// Bytes to send to the store.
    pub fn send_bytes(&self) -> u64 {
        self.backups
            .iter()
            .filter(|b| b.action != CopyAction::Check)
            .map(|b| b.bytes)
            .sum::<u64>()
            + self.records.iter().map(|r| r.bytes).sum::<u64>()
    }

    /// Bytes to read back from the store to check copies that are already there.
    pub fn check_bytes(&self) -> u64 {
        self.backups
            .iter()
            .filter(|b| b.action == CopyAction::Check)
            .map(|b| b.bytes)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.backups.is_empty() && self.records.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyPlan {
    pub stores: Vec<StorePlan>,
}

impl CopyPlan {
    pub fn send_bytes(&self) -> u64 {
        self.stores.iter().map(StorePlan::send_bytes).sum()
    }

    pub fn check_bytes(&self) -> u64 {
        self.stores.iter().map(StorePlan::check_bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.iter().all(StorePlan::is_empty)
    }

    /// The work in bytes the progress bar counts: what is sent is also read back.
    fn work(&self) -> u64 {
        2 * self.send_bytes() + self.check_bytes()
    }
}

/// One thing that could not be copied.
#[derive(Debug, Clone, Serialize)]
pub struct CopyFailure {
    pub store: String,
    /// `source/id`, a record's key, or the store itself.
    pub what: String,
    pub error: String,
}

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub plan: CopyPlan,
    /// `store: source/id` of every backup copied (or resumed, or replaced).
    pub copied: Vec<String>,
    /// `store: source/id` of every copy read back and found good.
    pub checked: Vec<String>,
    pub records: usize,
    /// Bytes sent to stores.
    pub bytes: u64,
    pub failures: Vec<CopyFailure>,
}

impl CopyReport {
    /// One line: how many failed, and the first.
    pub fn failure_summary(&self) -> String {
        match self.failures.first() {
            None => "every copy succeeded".into(),
            Some(f) => format!(
                "{} cop{} failed (first: store {}: {}: {})",
                self.failures.len(),
                if self.failures.len() == 1 { "y" } else { "ies" },
                f.store,
                f.what,
                f.error.lines().next().unwrap_or_default()
            ),
        }
    }
}

impl Lifeboat {
    /// What `copy` would do now.
    pub async fn copy_plan(&self, catalog: &Catalog, opts: &CopyOptions) -> Result<CopyPlan> {
        if let Some(name) = &opts.store {
            self.named_store(name)?;
        }
        if let Some(s) = &opts.source {
            self.source(s)?;
        }
        let mut plan = CopyPlan::default();
        let default_records = match opts.source {
            None => Some(self.records(&self.stores()[0]).await),
            Some(_) => None,
        };
        for (i, listing) in catalog.stores.iter().enumerate() {
            if opts.store.as_ref().is_some_and(|s| s != &listing.store) {
                continue;
            }
            let mut sp = StorePlan {
                store: listing.store.clone(),
                location: listing.location.clone(),
                error: listing.error.clone(),
                backups: Vec::new(),
                records: Vec::new(),
                unavailable: Vec::new(),
            };
            if sp.error.is_some() {
                plan.stores.push(sp);
                continue;
            }
            for b in catalog.complete() {
                if opts.source.as_ref().is_some_and(|s| s != &b.source)
                    || !listing.owed.contains(&b.dir())
                {
                    continue;
                }
                let (Some(copies), Some(m)) = (&b.copies, &b.manifest) else {
                    continue;
                };
                let Some(mine) = copies.stores.iter().find(|c| c.store == listing.store) else {
                    continue;
                };
                let action = match mine.state {
                    CopyState::Missing => CopyAction::Copy,
                    CopyState::Incomplete => CopyAction::Resume,
                    CopyState::Failed | CopyState::Damaged => CopyAction::Replace,
                    CopyState::Unverified => CopyAction::Check,
                    CopyState::Verified | CopyState::Unknown => continue,
                };
                let from: Vec<String> = copies
                    .restore_order()
                    .into_iter()
                    .filter(|s| *s != listing.store)
                    .map(str::to_owned)
                    .collect();
                if from.is_empty() && action != CopyAction::Check {
                    sp.unavailable.push(b.dir());
                    continue;
                }
                sp.backups.push(BackupCopy {
                    source: b.source.clone(),
                    id: b.id.to_string(),
                    action,
                    from,
                    bytes: m.data.stored_bytes,
                    entry: b.clone(),
                });
            }
            if i > 0
                && let Some(Ok(wanted)) = &default_records
            {
                let have = self.records(&self.stores()[i]).await;
                match have {
                    Ok(have) => {
                        let have: std::collections::HashMap<&str, u64> =
                            have.iter().map(|o| (o.key.as_str(), o.size)).collect();
                        sp.records = wanted
                            .iter()
                            .filter(|o| have.get(o.key.as_str()) != Some(&o.size))
                            .map(|o| RecordCopy {
                                key: o.key.clone(),
                                bytes: o.size,
                            })
                            .collect();
                    }
                    Err(e) => sp.error = Some(e.to_string()),
                }
            }
            plan.stores.push(sp);
        }
        Ok(plan)
    }

    /// lifeboat's own records in a store (job records, drill reports).
    async fn records(&self, store: &NamedStore) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        for prefix in RECORD_PREFIXES {
            out.extend(store.store.list_all(prefix).await?);
        }
        Ok(out)
    }

    /// Brings the stores up to date: copies what each lacks, checks copies never hashed, and
    /// mirrors the default store's job records and drill reports. The job record comes back
    /// whatever the outcome; a run with failures is an [`Error::CopyFailed`] carrying the
    /// report.
    pub async fn copy(
        &self,
        opts: &CopyOptions,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<CopyReport>) {
        let job = self.start_job(
            JobKind::Copy,
            opts.source.as_deref(),
            opts.trigger.unwrap_or(Trigger::Manual),
        );
        let result = async {
            let catalog = self.catalog().await?;
            let plan = self.copy_plan(&catalog, opts).await?;
            self.run_plan(plan, &job, progress, &cancel).await
        }
        .await;
        self.finish_job(job, result).await
    }

    async fn run_plan(
        &self,
        plan: CopyPlan,
        job: &Job,
        progress: Arc<dyn Progress>,
        cancel: &CancellationToken,
    ) -> Result<CopyReport> {
        progress.phase(Phase::Copy, Some(plan.work()));
        let counter = Counter::new(progress.clone());
        let mut report = CopyReport::default();
        for sp in &plan.stores {
            let fail = |report: &mut CopyReport, what: String, e: &Error| {
                let line = format!("store {}: {what}: {}", sp.store, first_line(e));
                job.log(line.clone());
                progress.note(&line);
                report.failures.push(CopyFailure {
                    store: sp.store.clone(),
                    what,
                    error: e.to_string(),
                });
            };
            if let Some(e) = &sp.error {
                fail(
                    &mut report,
                    "store".into(),
                    &Error::Invalid(format!("cannot be read: {e}")),
                );
                continue;
            }
            for dir in &sp.unavailable {
                fail(
                    &mut report,
                    dir.clone(),
                    &Error::Invalid("no store holds a good copy to copy from".into()),
                );
            }
            let dest = self.named_store(&sp.store)?;
            for item in &sp.backups {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let what = format!("{}/{}", item.source, item.id);
                let outcome = match item.action {
                    CopyAction::Check => self
                        .check_copy(dest, &item.entry, &counter, cancel)
                        .await
                        .map(|()| 0),
                    action => {
                        let from: Vec<&NamedStore> = item
                            .from
                            .iter()
                            .filter_map(|n| self.named_store(n).ok())
                            .collect();
                        self.copy_backup(&from, dest, &item.entry, action, job, &counter, cancel)
                            .await
                    }
                };
                match outcome {
                    Ok(sent) => {
                        report.bytes += sent;
                        let done = format!("{}: {what}", sp.store);
                        job.log(format!(
                            "store {}: {what} {} ({} bytes sent)",
                            sp.store,
                            match item.action {
                                CopyAction::Check => "checked",
                                CopyAction::Copy => "copied",
                                CopyAction::Resume => "resumed",
                                CopyAction::Replace => "replaced",
                            },
                            sent
                        ));
                        if item.action == CopyAction::Check {
                            report.checked.push(done);
                        } else {
                            report.copied.push(done);
                        }
                    }
                    Err(Error::Cancelled) => return Err(Error::Cancelled),
                    Err(e) => {
                        let store_down = store_down(&e);
                        fail(&mut report, what, &e);
                        if store_down {
                            // The rest would fail the same way; the next run resumes.
                            break;
                        }
                    }
                }
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let source = &self.stores()[0];
            let copies = sp.records.iter().map(|r| {
                let counter = counter.clone();
                async move {
                    let copied = async {
                        let key = ObjectKey::new(r.key.clone())?;
                        let bytes =
                            stores::get_bounded(source.store.as_ref(), &key, RECORD_LIMIT).await?;
                        let n = bytes.len() as u64;
                        dest.store.put_bytes(&key, bytes.into()).await?;
                        counter.add(2 * n);
                        Ok::<_, Error>(n)
                    };
                    (r.key.clone(), copied.await)
                }
            });
            let results: Vec<(String, Result<u64>)> = stream::iter(copies)
                .buffer_unordered(RECORD_CONCURRENCY)
                .collect()
                .await;
            let mut records = 0;
            for (key, result) in results {
                match result {
                    Ok(n) => {
                        records += 1;
                        report.bytes += n;
                    }
                    Err(e) => fail(&mut report, key, &e),
                }
            }
            if records > 0 {
                report.records += records;
                job.log(format!("store {}: {records} record(s) copied", sp.store));
            }
        }
        job.add_bytes(report.bytes);
        report.plan = plan;
        if report.failures.is_empty() {
            Ok(report)
        } else {
            Err(Error::CopyFailed(Box::new(report)))
        }
    }

    /// Copies a backup that was just committed to `first` to the source's other stores, as a
    /// copy job of its own. A failure leaves the store behind, for `lifeboat copy` and
    /// `check` to see; it does not fail the backup.
    pub(crate) async fn copy_new_backup(
        &self,
        first: &NamedStore,
        m: &Manifest,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) {
        let others: Vec<&NamedStore> = self
            .source_stores(&m.source.name)
            .into_iter()
            .filter(|s| s.name != first.name)
            .collect();
        if others.is_empty() {
            return;
        }
        let job = self.start_job(JobKind::Copy, Some(&m.source.name), m.trigger);
        job.set_backup(m.id.as_str());
        let data = format!("{}/{}/{}", m.source.name, m.id, m.data.key);
        let entry = BackupEntry {
            source: m.source.name.clone(),
            id: m.id.clone(),
            state: BackupState::Complete,
            manifest: Some(std::sync::Arc::new(m.clone())),
            objects: vec![ObjectMeta {
                key: data,
                size: m.data.stored_bytes,
                last_modified: None,
            }],
            problem: None,
            copies: None,
        };
        let result = async {
            progress.phase(
                Phase::Copy,
                Some(2 * m.data.stored_bytes * others.len() as u64),
            );
            let counter = Counter::new(progress.clone());
            let mut failed = Vec::new();
            let mut sent = 0;
            for dest in others {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let outcome = self
                    .copy_backup(
                        &[first],
                        dest,
                        &entry,
                        CopyAction::Copy,
                        &job,
                        &counter,
                        &cancel,
                    )
                    .await;
                let line = match &outcome {
                    Ok(n) => {
                        sent += n;
                        format!("copied to store {} and read back", dest.name)
                    }
                    Err(e) => {
                        failed.push(format!("{}: {}", dest.name, first_line(e)));
                        format!(
                            "copy to store {} failed: {}; `lifeboat copy` will try again",
                            dest.name,
                            first_line(e)
                        )
                    }
                };
                job.log(line.clone());
                progress.note(&line);
            }
            job.add_bytes(sent);
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "copy failed: {}",
                    failed.join("; ")
                )))
            }
        }
        .await;
        let _ = self.finish_job(job, result).await;
    }

    /// Copies one backup to `dest` from the first of `from` that has a good copy, reads it
    /// back, then writes its manifest and check record. Returns the bytes sent.
    #[allow(clippy::too_many_arguments)]
    async fn copy_backup(
        &self,
        from: &[&NamedStore],
        dest: &NamedStore,
        entry: &BackupEntry,
        action: CopyAction,
        job: &Job,
        counter: &Counter,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let (Some(m), Some(data_key)) = (&entry.manifest, entry.data_key()) else {
            return Err(Error::NotRestorable {
                id: entry.id.to_string(),
                reason: "no manifest".into(),
            });
        };
        let manifest_key = ObjectKey::new(format!("{}/{MANIFEST_NAME}", entry.dir()))?;
        let want = &m.data;
        if action == CopyAction::Replace {
            // The manifest goes first, so a copy being replaced never looks complete.
            dest.store
                .delete_many(std::slice::from_ref(&manifest_key))
                .await?;
        }
        let mut sent = 0;
        let resumed = action == CopyAction::Resume
            && matches!(
                hash_object(dest, &data_key, want.stored_bytes, counter, cancel).await,
                Ok((sha, size)) if want.mismatch(data_key.as_str(), &sha, size).is_none()
            );
        let mut source = None;
        if resumed {
            job.log(format!(
                "store {}: {}/{}: its data arrived whole before; not sent again",
                dest.name, entry.source, entry.id
            ));
            // Counted as if sent, so the bar still ends at its total.
            counter.add(want.stored_bytes);
            source = from.first().copied();
        } else {
            let mut last = None;
            for src in from {
                match self
                    .transfer(src, dest, &data_key, want, counter, cancel)
                    .await
                {
                    Ok(n) => {
                        sent = n;
                        source = Some(*src);
                        break;
                    }
                    Err(Transfer::Source(e)) => {
                        if matches!(e, Error::Checksum { .. } | Error::Size { .. }) {
                            let record = self.check_record(
                                m,
                                false,
                                CheckHow::Copy,
                                Some(first_line(&e).to_owned()),
                            );
                            stores::record_check(src, &record).await;
                        }
                        job.log(format!(
                            "store {}: cannot copy {}/{} from it: {}",
                            src.name,
                            entry.source,
                            entry.id,
                            first_line(&e)
                        ));
                        last = Some(Error::InStore {
                            store: src.name.clone(),
                            source: Box::new(e),
                        });
                    }
                    Err(Transfer::Dest(e)) => return Err(e),
                }
            }
            if source.is_none() {
                return Err(last.unwrap_or_else(|| {
                    Error::Invalid("no store holds a good copy to copy from".into())
                }));
            }
            // Checksums on both sides: what arrived is read back and hashed.
            let (sha, size) =
                hash_object(dest, &data_key, want.stored_bytes, counter, cancel).await?;
            let read_back = format!("{data_key} (read back from store {})", dest.name);
            if let Some(e) = want.mismatch(&read_back, &sha, size) {
                let _ = dest
                    .store
                    .delete_many(std::slice::from_ref(&data_key))
                    .await;
                return Err(e);
            }
            // The source's bytes were read whole and matched (streamed, or copied by the
            // server and matched on arrival): that proves its copy too.
            if let Some(src) = source {
                stores::record_check(src, &self.check_record(m, true, CheckHow::Copy, None)).await;
            }
        }
        let source = source
            .ok_or_else(|| Error::Invalid("no store holds a good copy to copy from".into()))?;
        // The manifest is copied byte for byte (a signature in it stays valid), after a check
        // that it is the one the data was verified against.
        let bytes = stores::get_bounded(source.store.as_ref(), &manifest_key, RECORD_LIMIT).await?;
        let theirs = Manifest::parse(manifest_key.as_str(), &bytes)?;
        if theirs.id != m.id
            || theirs.data.sha256 != m.data.sha256
            || theirs.data.stored_bytes != m.data.stored_bytes
        {
            return Err(Error::Invalid(format!(
                "store {}: {manifest_key} changed since the catalog was read; not copied",
                source.name
            )));
        }
        sent += bytes.len() as u64;
        let written = dest
            .store
            .put_bytes(&manifest_key, Bytes::from(bytes.clone()))
            .await?;
        if let Err(e) = crate::catalog::index::note_written(
            dest.store.as_ref(),
            &entry.source,
            &manifest_key,
            &bytes,
            written.etag.as_deref(),
        )
        .await
        {
            job.log(format!(
                "store {}: catalog index not updated (the next listing will): {e}",
                dest.name
            ));
        }
        stores::record_check(dest, &self.check_record(m, true, CheckHow::Copy, None)).await;
        Ok(sent)
    }

    /// Sends one data object from `src` to `dest`: server-side when both are S3 buckets on
    /// one endpoint, else streamed with the source's bytes hashed on the way.
    async fn transfer(
        &self,
        src: &NamedStore,
        dest: &NamedStore,
        key: &ObjectKey,
        want: &DataInfo,
        counter: &Counter,
        cancel: &CancellationToken,
    ) -> std::result::Result<u64, Transfer> {
        if let Some((to, from)) = dest.server_side_with(src) {
            match to.copy_object_from(from, key, want.stored_bytes).await {
                Ok(()) => {
                    counter.add(want.stored_bytes);
                    return Ok(0);
                }
                Err(e) => tracing::info!(
                    "server-side copy of {key} from store {} to {} failed ({e}); streaming it",
                    src.name,
                    dest.name
                ),
            }
        }
        let body = src
            .store
            .get(key)
            .await
            .map_err(|e| Transfer::Source(e.into()))?;
        let source_error = Arc::new(Mutex::new(None));
        let checked = Checked {
            inner: body,
            hasher: Sha256::new(),
            size: 0,
            want: want.clone(),
            key: key.to_string(),
            source_error: source_error.clone(),
            counter: counter.clone(),
            cancel: cancel.clone(),
            finished: false,
        };
        let put = dest.store.put(key, Box::pin(checked)).await;
        let source_failed = source_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (put, source_failed) {
            (_, Some(e)) => Err(Transfer::Source(e)),
            (Ok(outcome), None) => Ok(outcome.size),
            (Err(_), None) if cancel.is_cancelled() => Err(Transfer::Dest(Error::Cancelled)),
            (Err(e), None) => Err(Transfer::Dest(e.into())),
        }
    }

    /// Reads a copy back and records whether it matches its manifest.
    async fn check_copy(
        &self,
        store: &NamedStore,
        entry: &BackupEntry,
        counter: &Counter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let (Some(m), Some(key)) = (&entry.manifest, entry.data_key()) else {
            return Ok(());
        };
        let (sha, size) = hash_object(store, &key, m.data.stored_bytes, counter, cancel).await?;
        let bad = m.data.mismatch(key.as_str(), &sha, size);
        let detail = bad.as_ref().map(|e| first_line(e).to_owned());
        stores::record_check(
            store,
            &self.check_record(m, bad.is_none(), CheckHow::Copy, detail),
        )
        .await;
        bad.map_or(Ok(()), Err)
    }
}

/// Which side of a transfer failed: a bad source is worth trying another store for.
enum Transfer {
    Source(Error),
    Dest(Error),
}

/// A store that cannot be reached fails every copy the same way.
fn store_down(e: &Error) -> bool {
    let e = match e {
        Error::InStore { source, .. } => source,
        e => e,
    };
    matches!(
        e,
        Error::Store(
            StoreError::Unreachable { .. }
                | StoreError::Credentials { .. }
                | StoreError::AccessDenied { .. }
                | StoreError::NoSuchBucket(_)
        )
    )
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Hashes an object as it streams, reading no more than `limit` bytes past which it is
/// already known to be wrong.
async fn hash_object(
    store: &NamedStore,
    key: &ObjectKey,
    limit: u64,
    counter: &Counter,
    cancel: &CancellationToken,
) -> Result<(String, u64)> {
    let mut body = store.store.get(key).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            chunk = body.try_next() => chunk.map_err(Error::io(format!("read back {key} from store {}", store.name)))?,
        };
        let Some(chunk) = chunk else { break };
        size += chunk.len() as u64;
        if size > limit {
            return Ok((String::new(), size));
        }
        hasher.update(&chunk);
        counter.add(chunk.len() as u64);
    }
    Ok((crate::pipeline::sha256_hex(hasher), size))
}

/// Bytes done across a whole copy run, for a progress sink that wants absolute values.
#[derive(Clone)]
struct Counter {
    done: Arc<AtomicU64>,
    progress: Arc<dyn Progress>,
}

impl Counter {
    fn new(progress: Arc<dyn Progress>) -> Self {
        Counter {
            done: Arc::new(AtomicU64::new(0)),
            progress,
        }
    }

    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.progress.advance(done);
    }
}

/// The source's bytes on their way to the destination: hashed, counted, and turned into an
/// error at the end if they are not the manifest's, so the destination never commits them.
struct Checked {
    inner: ByteStream,
    hasher: Sha256,
    size: u64,
    want: DataInfo,
    key: String,
    source_error: Arc<Mutex<Option<Error>>>,
    counter: Counter,
    cancel: CancellationToken,
    finished: bool,
}

impl Checked {
    fn fail(&mut self, e: Error) -> Poll<Option<io::Result<Bytes>>> {
        let message = e.to_string();
        *self.source_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        self.finished = true;
        Poll::Ready(Some(Err(io::Error::other(message))))
    }
}

impl Stream for Checked {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.cancel.is_cancelled() {
            self.finished = true;
            return Poll::Ready(Some(Err(io::Error::other("cancelled"))));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.size += chunk.len() as u64;
                if self.size > self.want.stored_bytes {
                    let e = Error::Size {
                        key: self.key.clone(),
                        expected: self.want.stored_bytes,
                        actual: self.size,
                    };
                    return self.fail(e);
                }
                self.hasher.update(&chunk);
                self.counter.add(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = Error::Io {
                    context: format!("download {}", self.key),
                    source: e,
                };
                self.fail(e)
            }
            Poll::Ready(None) => {
                let sha = crate::pipeline::hex(self.hasher.clone().finalize());
                if let Some(e) = self.want.mismatch(&self.key, &sha, self.size) {
                    return self.fail(e);
                }
                self.finished = true;
                Poll::Ready(None)
            }
        }
    }
}
