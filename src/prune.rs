//! Pins and pruning: the side of retention that reads history and deletes.
//!
//! A pin is a small object under `_lifeboat/pins/{source}/{id}`, so every machine sees it and
//! the catalog scanner skips it with lifeboat's other records.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::catalog::{BackupEntry, BackupState, Catalog};
use crate::error::{Error, Result};
use crate::jobs::{JobKind, JobRecord, JobStatus};
use crate::manifest::{BackupId, MANIFEST_NAME, Trigger};
use crate::retention::{self, Candidate, Policy, Settings, SourcePlan};
use crate::storage::{IncompleteUpload, ObjectKey, ObjectStoreExt};

pub const PINS_PREFIX: &str = "_lifeboat/pins/";

#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Only this source.
    pub source: Option<String>,
    /// Prune a source even though its newest backup failed.
    pub force: bool,
    /// Trigger recorded on the job.
    pub trigger: Option<Trigger>,
    /// Backup ids and upload keys someone confirmed: when set, nothing else is deleted even
    /// if a fresh plan says so (the bucket may have changed since the confirmation).
    pub only: Option<BTreeSet<String>>,
}

/// Everything the planner needs, read once; [`PlanInputs::plan`] is then pure, so a console
/// can re-plan on every key press of its what-if editor.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub now: DateTime<Utc>,
    pub timezone: Tz,
    pub orphan_grace: Duration,
    pub sources: Vec<SourceInputs>,
    pub incomplete: Vec<IncompleteUpload>,
}

#[derive(Debug, Clone)]
pub struct SourceInputs {
    pub source: String,
    pub policy: Policy,
    pub newest_failed: bool,
    /// In the bucket but neither configured here nor named: planned, never pruned.
    pub unconfigured: bool,
    pub backups: Vec<Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadDecision {
    #[serde(flatten)]
    pub upload: IncompleteUpload,
    pub abort: bool,
    pub reason: String,
}

/// A whole prune: one plan per source and what happens to incomplete uploads.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub at: DateTime<Utc>,
    pub timezone: String,
    pub sources: Vec<SourcePlan>,
    pub uploads: Vec<UploadDecision>,
}

impl PrunePlan {
    pub fn pruned_count(&self) -> usize {
        self.sources.iter().map(|s| s.pruned().count()).sum()
    }

    pub fn kept_count(&self) -> usize {
        self.sources
            .iter()
            .map(|s| s.decisions.len() - s.pruned().count())
            .sum()
    }

    pub fn freed_bytes(&self) -> u64 {
        self.sources.iter().map(SourcePlan::freed_bytes).sum()
    }

    pub fn aborts(&self) -> impl Iterator<Item = &UploadDecision> {
        self.uploads.iter().filter(|u| u.abort)
    }
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub plan: PrunePlan,
    pub deleted: usize,
    pub aborted: usize,
    pub freed_bytes: u64,
}

impl PlanInputs {
    /// The plan, with `what_if` replacing one source's policy.
    pub fn plan(&self, force: bool, what_if: Option<(&str, &Policy)>) -> PrunePlan {
        let mut skipped = BTreeSet::new();
        let sources = self
            .sources
            .iter()
            .map(|s| {
                let policy = match what_if {
                    Some((name, p)) if name == s.source => p,
                    _ => &s.policy,
                };
                let plan = retention::plan(
                    &s.source,
                    &s.backups,
                    policy,
                    self.now,
                    Settings {
                        timezone: self.timezone,
                        orphan_grace: self.orphan_grace,
                        newest_failed: s.newest_failed,
                        force,
                        unconfigured: s.unconfigured,
                    },
                );
                if plan.skipped.is_some() {
                    skipped.insert(s.source.clone());
                }
                plan
            })
            .collect::<Vec<SourcePlan>>();
        let planned: BTreeSet<&str> = sources.iter().map(|s| s.source.as_str()).collect();
        let uploads = self
            .incomplete
            .iter()
            .map(|u| {
                let dead = u.writer_alive == Some(false);
                let old = u.started.is_some_and(|t| self.now - t >= self.orphan_grace);
                let (abort, reason) = match (upload_source(&u.key), u.started) {
                    // A local store knows its writer is alive, whatever the time says.
                    _ if u.writer_alive == Some(true) => {
                        (false, "a running process is still writing it".to_owned())
                    }
                    // A job record, pin or report whose write was cut short: nobody will
                    // finish it.
                    (None, _) if u.key.starts_with("_lifeboat/") && dead => {
                        (true, "left by a process that died".to_owned())
                    }
                    (None, _) if u.key.starts_with("_lifeboat/") && old => {
                        (true, "started before the grace period".to_owned())
                    }
                    // Other tools share buckets: only lifeboat's own backup uploads are ours.
                    (None, _) => (false, "not an upload of a lifeboat backup".to_owned()),
                    (Some(s), _) if !planned.contains(s) => {
                        (false, "source not configured on this host".to_owned())
                    }
                    (Some(s), _) if skipped.contains(s) => (false, "source skipped".to_owned()),
                    (_, _) if dead => (true, "left by a process that died".to_owned()),
                    (_, Some(t)) if self.now - t >= self.orphan_grace => {
                        (true, "started before the grace period".to_owned())
                    }
                    (_, Some(_)) => (false, "may still be running".to_owned()),
                    (_, None) => (false, "start time unknown".to_owned()),
                };
                UploadDecision {
                    upload: u.clone(),
                    abort,
                    reason,
                }
            })
            .collect();
        PrunePlan {
            at: self.now,
            timezone: self.timezone.name().to_owned(),
            sources,
            uploads,
        }
    }
}

/// The source of an upload whose key is `<source>/<backup id>/<object>`, the only shape a
/// lifeboat backup writes.
fn upload_source(key: &str) -> Option<&str> {
    let mut parts = key.splitn(3, '/');
    let (source, id, object) = (parts.next()?, parts.next()?, parts.next()?);
    let ours = crate::config::validate_source_name(source).is_ok()
        && id.parse::<BackupId>().is_ok()
        && !object.is_empty();
    ours.then_some(source)
}

fn pin_key(source: &str, id: &str) -> Result<ObjectKey> {
    Ok(ObjectKey::new(format!("{PINS_PREFIX}{source}/{id}"))?)
}

impl Lifeboat {
    /// Pinned backups as `source/id`.
    pub async fn pins(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .store
            .list_all(PINS_PREFIX)
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(PINS_PREFIX).map(str::to_owned))
            .collect())
    }

    /// Pins a backup so no prune deletes it.
    pub async fn pin(&self, catalog: &Catalog, id: &str) -> Result<BackupEntry> {
        let entry = catalog
            .find(id)
            .ok_or_else(|| Error::NoBackup(format!("{id:?}")))?;
        let body = serde_json::json!({
            "pinned_at": self.clock.now(),
            "host": crate::jobs::hostname(),
        });
        self.store
            .put_bytes(
                &pin_key(&entry.source, entry.id.as_str())?,
                body.to_string().into_bytes().into(),
            )
            .await?;
        Ok(entry.clone())
    }

    /// Removes a pin; `Ok(false)` if there was none.
    pub async fn unpin(&self, catalog: &Catalog, id: &str) -> Result<bool> {
        let entry = catalog
            .find(id)
            .ok_or_else(|| Error::NoBackup(format!("{id:?}")))?;
        let key = pin_key(&entry.source, entry.id.as_str())?;
        if self.store.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.store.delete_many(&[key]).await?;
        Ok(true)
    }

    /// Reads what planning needs: verification and the backup job history (pins come with
    /// the catalog). A source found in the bucket but not configured here is listed and kept
    /// unless `source` names it.
    pub async fn plan_inputs(&self, catalog: &Catalog, source: Option<&str>) -> Result<PlanInputs> {
        if let Some(s) = source
            && self.config.source(s).is_none()
            && !catalog.backups.iter().any(|b| b.source == s)
        {
            self.source(s)?;
        }
        let lb = self.clone();
        let complete: Vec<String> = catalog.complete().map(|b| b.id.to_string()).collect();
        // SQLite reads block: keep them off the async workers.
        let (jobs, verified) = tokio::task::spawn_blocking(move || -> Result<_> {
            let jobs = lb.state.jobs()?;
            let verified: BTreeSet<String> = complete
                .into_iter()
                .filter(|id| lb.verification(id).is_some_and(|v| v.ok))
                .collect();
            Ok((jobs, verified))
        })
        .await
        .map_err(|e| Error::Invalid(format!("reading the job history failed: {e}")))??;
        let mut names: BTreeSet<&str> = self
            .config
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.extend(catalog.backups.iter().map(|b| b.source.as_str()));
        let sources = names
            .into_iter()
            .filter(|n| source.is_none_or(|s| s == *n))
            .map(|name| {
                let backups: Vec<Candidate> = catalog
                    .backups
                    .iter()
                    .filter(|b| b.source == name)
                    .map(|b| {
                        let verified =
                            b.state == BackupState::Complete && verified.contains(b.id.as_str());
                        candidate(catalog, b, verified)
                    })
                    .collect();
                let newest_complete = backups
                    .iter()
                    .filter(|b| b.state == BackupState::Complete)
                    .map(|b| b.time)
                    .max();
                // The newest finished backup job decides: a failure after the newest complete
                // backup means the source is in trouble, and its history is evidence.
                let newest_failed = jobs
                    .iter()
                    .filter(|j| j.kind == JobKind::Backup && j.source.as_deref() == Some(name))
                    .find(|j| j.status != JobStatus::Running)
                    .is_some_and(|j| {
                        matches!(j.status, JobStatus::Failed | JobStatus::Interrupted)
                            && newest_complete.is_none_or(|t| j.started_at > t)
                    });
                SourceInputs {
                    source: name.to_owned(),
                    policy: self.config.policy(name).clone(),
                    newest_failed,
                    unconfigured: source.is_none() && self.config.source(name).is_none(),
                    backups,
                }
            })
            .collect();
        let incomplete = catalog
            .incomplete
            .iter()
            .filter(|u| source.is_none_or(|s| u.key.split('/').next() == Some(s)))
            .cloned()
            .collect();
        Ok(PlanInputs {
            now: self.clock.now(),
            timezone: self.config.retention.timezone,
            orphan_grace: self.config.retention.orphan_grace,
            sources,
            incomplete,
        })
    }

    /// The plan a prune would carry out now.
    pub async fn prune_plan(&self, opts: &PruneOptions) -> Result<PrunePlan> {
        if let Err(e) = self.sync_jobs().await {
            tracing::warn!("planning with local job history only: {e}");
        }
        let catalog = self.catalog().await?;
        Ok(self
            .plan_inputs(&catalog, opts.source.as_deref())
            .await?
            .plan(opts.force, None))
    }

    /// Reads the bucket, plans, and deletes what the plan prunes: for each backup the
    /// manifest first (so nothing half-deleted looks complete), then its data, then its pin.
    /// The job record comes back whatever the outcome.
    pub async fn prune(
        &self,
        opts: &PruneOptions,
        cancel: CancellationToken,
    ) -> (JobRecord, Result<PruneReport>) {
        let job = self.start_job(
            JobKind::Prune,
            opts.source.as_deref(),
            opts.trigger.unwrap_or(Trigger::Manual),
        );
        let result = async {
            // Failures and verifications recorded by other machines count too.
            if let Err(e) = self.sync_jobs().await {
                job.log(format!("planning with local job history only: {e}"));
            }
            let catalog = self.catalog().await?;
            let plan = self
                .plan_inputs(&catalog, opts.source.as_deref())
                .await?
                .plan(opts.force, None);
            let mut report = PruneReport {
                plan,
                deleted: 0,
                aborted: 0,
                freed_bytes: 0,
            };
            let confirmed = |what: &str| opts.only.as_ref().is_none_or(|o| o.contains(what));
            for sp in &report.plan.sources {
                job.log(format!(
                    "{}: {} ({} kept, {} to prune)",
                    sp.source,
                    sp.skipped.as_deref().unwrap_or(&sp.policy),
                    sp.decisions.len() - sp.pruned().count(),
                    sp.pruned().count()
                ));
                let aborts: Vec<&UploadDecision> = report
                    .plan
                    .aborts()
                    .filter(|u| upload_source(&u.upload.key) == Some(sp.source.as_str()))
                    .collect();
                if sp.pruned().next().is_none() && aborts.is_empty() {
                    continue;
                }
                // Held while this source's objects go, so no backup of it runs meanwhile.
                let _lock = self.lock_source(&sp.source)?;
                for d in sp.pruned() {
                    if cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    if !confirmed(&d.backup.id) {
                        job.log(format!(
                            "spared {}/{}: not among the confirmed backups",
                            sp.source, d.backup.id
                        ));
                        continue;
                    }
                    let Some(entry) = catalog
                        .backups
                        .iter()
                        .find(|b| b.source == sp.source && b.id.as_str() == d.backup.id)
                    else {
                        continue;
                    };
                    // A pin set since the catalog was read still protects the backup.
                    if self
                        .store
                        .head(&pin_key(&entry.source, entry.id.as_str())?)
                        .await?
                        .is_some()
                    {
                        job.log(format!("spared {}: pinned during the prune", entry.dir()));
                        continue;
                    }
                    self.delete_backup(entry).await?;
                    report.deleted += 1;
                    report.freed_bytes += d.backup.stored_bytes;
                    job.add_bytes(d.backup.stored_bytes);
                    job.log(format!(
                        "deleted {} ({}, {} bytes)",
                        entry.dir(),
                        entry.state,
                        d.backup.stored_bytes
                    ));
                }
                for u in aborts {
                    if cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    if !confirmed(&u.upload.key) {
                        job.log(format!(
                            "spared incomplete upload of {}: not confirmed",
                            u.upload.key
                        ));
                        continue;
                    }
                    self.store.abort_incomplete(&u.upload).await?;
                    report.aborted += 1;
                    job.log(format!("aborted incomplete upload of {}", u.upload.key));
                }
            }
            // Lifeboat's own records cut short (no source to lock).
            let records: Vec<IncompleteUpload> = report
                .plan
                .aborts()
                .filter(|u| upload_source(&u.upload.key).is_none() && confirmed(&u.upload.key))
                .map(|u| u.upload.clone())
                .collect();
            for upload in records {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                self.store.abort_incomplete(&upload).await?;
                report.aborted += 1;
                job.log(format!("removed the unfinished write of {}", upload.key));
            }
            job.log(format!(
                "deleted {} backup(s), aborted {} upload(s), freed {} bytes",
                report.deleted, report.aborted, report.freed_bytes
            ));
            Ok(report)
        }
        .await;
        self.finish_job(job, result).await
    }

    async fn delete_backup(&self, entry: &BackupEntry) -> Result<()> {
        let keys = entry
            .objects
            .iter()
            .map(|o| ObjectKey::new(o.key.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (manifest, data): (Vec<ObjectKey>, Vec<ObjectKey>) = keys
            .into_iter()
            .partition(|k| k.as_str().ends_with(&format!("/{MANIFEST_NAME}")));
        if !manifest.is_empty() {
            self.store.delete_many(&manifest).await?;
        }
        if !data.is_empty() {
            self.store.delete_many(&data).await?;
        }
        self.store
            .delete_many(&[pin_key(&entry.source, entry.id.as_str())?])
            .await?;
        Ok(())
    }
}

fn candidate(catalog: &Catalog, b: &BackupEntry, verified: bool) -> Candidate {
    // An orphan's age is that of its newest object: a slow upload is still being written.
    let time = match b.state {
        BackupState::Orphan => b
            .objects
            .iter()
            .filter_map(|o| o.last_modified)
            .chain([b.time()])
            .max()
            .unwrap_or_else(|| b.time()),
        _ => b.time(),
    };
    Candidate {
        id: b.id.to_string(),
        time,
        state: b.state,
        stored_bytes: b.stored_bytes(),
        pinned: catalog.pinned(b),
        verified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(key: &str, started: DateTime<Utc>) -> IncompleteUpload {
        IncompleteUpload {
            key: key.into(),
            started: Some(started),
            handle: format!("h-{key}"),
            writer_alive: None,
        }
    }

    #[test]
    fn only_stale_uploads_of_planned_lifeboat_backups_are_aborted() {
        let now = "2026-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let old = now - Duration::days(3);
        let inputs = PlanInputs {
            now,
            timezone: chrono_tz::UTC,
            orphan_grace: Duration::hours(24),
            sources: ["app", "theirs"]
                .into_iter()
                .map(|s| SourceInputs {
                    source: s.into(),
                    policy: Policy::default(),
                    newest_failed: false,
                    unconfigured: s == "theirs",
                    backups: Vec::new(),
                })
                .collect(),
            incomplete: vec![
                upload("app/20260101T000000Z-abcd/data.sqlite.zst", old),
                upload("app/20260101T000000Z-abcd/data.sqlite.zst", now),
                upload("other-tool/dump.tar", old),
                upload("app/not-a-backup/data.bin", old),
                upload("app/20260101T000000Z-abcd", old),
                upload("_lifeboat/jobs/20260101T000000Z-abcd/x.json", old),
                upload("theirs/20260101T000000Z-abcd/data.sqlite.zst", old),
                upload("absent/20260101T000000Z-abcd/data.sqlite.zst", old),
                // Temp files whose writer is known to be dead, or alive (a local store).
                IncompleteUpload {
                    writer_alive: Some(false),
                    ..upload("_lifeboat/jobs/2026/06/y.json", now)
                },
                IncompleteUpload {
                    writer_alive: Some(true),
                    ..upload("_lifeboat/jobs/2026/06/z.json", now)
                },
                IncompleteUpload {
                    writer_alive: Some(false),
                    ..upload("app/20260601T000000Z-abcd/data.sqlite.zst", now)
                },
            ],
        };
        let plan = inputs.plan(false, None);
        let decided: Vec<(bool, &str)> = plan
            .uploads
            .iter()
            .map(|u| (u.abort, u.reason.as_str()))
            .collect();
        assert_eq!(
            decided,
            [
                (true, "started before the grace period"),
                (false, "may still be running"),
                (false, "not an upload of a lifeboat backup"),
                (false, "not an upload of a lifeboat backup"),
                (false, "not an upload of a lifeboat backup"),
                (true, "started before the grace period"),
                (false, "source skipped"),
                (false, "source not configured on this host"),
                (true, "left by a process that died"),
                (false, "a running process is still writing it"),
                (true, "left by a process that died"),
            ]
        );
    }
}
