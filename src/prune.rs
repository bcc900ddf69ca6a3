//! Pins and pruning: the side of retention that reads history and deletes.
//!
//! A pin is a small object under `_lifeboat/pins/{source}/{id}`, so every machine sees it and
//! the catalog scanner skips it with lifeboat's other records. Its name is the pin: the body
//! (who pinned it, when) is for people and is never read, so a pin cannot make lifeboat read
//! anything large.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::catalog::index;
use crate::catalog::{BackupEntry, BackupState, Catalog};
use crate::error::{Error, Result};
use crate::jobs::{JobKind, JobRecord, JobStatus};
use crate::manifest::{BackupId, MANIFEST_NAME, Trigger};
use crate::retention::{self, Candidate, Policy, Reason, Settings, SourcePlan};
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
    /// The default store's sources and incomplete uploads.
    pub sources: Vec<SourceInputs>,
    pub incomplete: Vec<IncompleteUpload>,
    /// The other stores, each planned under its own retention (empty with one store).
    pub other_stores: OtherStores,
}

/// What the cross-store rule needs besides the default store: the other stores' inputs and
/// which stores each source uses.
#[derive(Debug, Clone, Default)]
pub struct OtherStores {
    pub default_store: String,
    pub stores: Vec<StoreInputs>,
    /// Each configured source's stores, by name.
    pub source_stores: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct StoreInputs {
    pub store: String,
    /// Why the store could not be read: nothing is pruned there, and a backup whose last
    /// verified copy might be there is kept everywhere else.
    pub error: Option<String>,
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

/// A whole prune: one plan per source and what happens to incomplete uploads, in the
/// default store and then in each other store.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub at: DateTime<Utc>,
    pub timezone: String,
    pub sources: Vec<SourcePlan>,
    pub uploads: Vec<UploadDecision>,
    /// The other stores' plans (none with one store).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<StorePrunePlan>,
}

/// One other store's plan.
#[derive(Debug, Clone, Serialize)]
pub struct StorePrunePlan {
    pub store: String,
    pub error: Option<String>,
    pub sources: Vec<SourcePlan>,
    pub uploads: Vec<UploadDecision>,
}

impl PrunePlan {
    fn all_sources(&self) -> impl Iterator<Item = &SourcePlan> {
        self.sources
            .iter()
            .chain(self.stores.iter().flat_map(|s| &s.sources))
    }

    /// Backups deleted, in every store.
    pub fn pruned_count(&self) -> usize {
        self.all_sources().map(|s| s.pruned().count()).sum()
    }

    pub fn kept_count(&self) -> usize {
        self.all_sources()
            .map(|s| s.decisions.len() - s.pruned().count())
            .sum()
    }

    pub fn freed_bytes(&self) -> u64 {
        self.all_sources()
            .fold(0, |n: u64, s| n.saturating_add(s.freed_bytes()))
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
    /// The plan, with `what_if` replacing one source's policy (in the default store).
    pub fn plan(&self, force: bool, what_if: Option<(&str, &Policy)>) -> PrunePlan {
        let (sources, uploads) = self.plan_store(&self.sources, &self.incomplete, force, what_if);
        let stores = self
            .other_stores
            .stores
            .iter()
            .map(|st| {
                let (sources, uploads) = match &st.error {
                    Some(_) => (Vec::new(), Vec::new()),
                    None => self.plan_store(&st.sources, &st.incomplete, force, None),
                };
                StorePrunePlan {
                    store: st.store.clone(),
                    error: st.error.clone(),
                    sources,
                    uploads,
                }
            })
            .collect();
        let mut plan = PrunePlan {
            at: self.now,
            timezone: self.timezone.name().to_owned(),
            sources,
            uploads,
            stores,
        };
        if !plan.stores.is_empty() {
            self.keep_last_copies(&mut plan, what_if);
        }
        plan
    }

    fn plan_store(
        &self,
        inputs: &[SourceInputs],
        incomplete: &[IncompleteUpload],
        force: bool,
        what_if: Option<(&str, &Policy)>,
    ) -> (Vec<SourcePlan>, Vec<UploadDecision>) {
        let mut skipped = BTreeSet::new();
        let sources = inputs
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
        let uploads = incomplete
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
        (sources, uploads)
    }

    /// The rule across stores: a store deletes the last verified copy of a backup (or, of a
    /// backup never verified anywhere, its last complete copy) only once every store of its
    /// source is done with it: each either prunes its own copy or, lacking one, would not
    /// keep it under its retention. Otherwise the copy in the last such store is kept.
    fn keep_last_copies(&self, plan: &mut PrunePlan, what_if: Option<(&str, &Policy)>) {
        let other = &self.other_stores;
        // Per store (default first): its name, its inputs, and its plan's sources.
        let mut names = vec![other.default_store.clone()];
        names.extend(plan.stores.iter().map(|s| s.store.clone()));
        let unreadable: BTreeSet<&str> = other
            .stores
            .iter()
            .filter(|s| s.error.is_some())
            .map(|s| s.store.as_str())
            .collect();
        let inputs: Vec<&[SourceInputs]> = std::iter::once(self.sources.as_slice())
            .chain(other.stores.iter().map(|s| s.sources.as_slice()))
            .collect();
        struct Held {
            store: usize,
            verified: bool,
            keep: bool,
        }
        // Every complete copy of each backup, by (source, id).
        let mut copies: BTreeMap<(String, String), Vec<Held>> = BTreeMap::new();
        let plans: Vec<&Vec<SourcePlan>> = std::iter::once(&plan.sources)
            .chain(plan.stores.iter().map(|s| &s.sources))
            .collect();
        for (i, sources) in plans.iter().enumerate() {
            for sp in sources.iter() {
                for d in &sp.decisions {
                    if d.backup.state != BackupState::Complete {
                        continue;
                    }
                    copies
                        .entry((sp.source.clone(), d.backup.id.clone()))
                        .or_default()
                        .push(Held {
                            store: i,
                            verified: d.backup.verified,
                            keep: d.keep,
                        });
                }
            }
        }
        // What each store's retention keeps of a source's backups once it holds them all.
        let union = |source: &str| -> Vec<Candidate> {
            let mut all: BTreeMap<&str, Candidate> = BTreeMap::new();
            for s in inputs
                .iter()
                .flat_map(|s| s.iter())
                .filter(|s| s.source == source)
            {
                for c in s
                    .backups
                    .iter()
                    .filter(|c| c.state == BackupState::Complete)
                {
                    all.entry(c.id.as_str())
                        .and_modify(|e| e.verified |= c.verified)
                        .or_insert_with(|| c.clone());
                }
            }
            all.into_values().collect()
        };
        let plan_kept = |store: usize, source: &str| -> BTreeSet<String> {
            let Some(si) = inputs[store].iter().find(|s| s.source == source) else {
                return BTreeSet::new();
            };
            let policy = match what_if {
                Some((n, p)) if store == 0 && n == source => p,
                _ => &si.policy,
            };
            let settings = Settings {
                timezone: self.timezone,
                orphan_grace: self.orphan_grace,
                newest_failed: false,
                force: false,
                unconfigured: false,
            };
            retention::plan(source, &union(source), policy, self.now, settings)
                .decisions
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| d.backup.id)
                .collect()
        };
        // Planned once per store and source, on first need.
        let memo: std::cell::RefCell<BTreeMap<(usize, String), BTreeSet<String>>> =
            Default::default();
        let kept_if_up_to_date = |store: usize, source: &str, id: &str| -> bool {
            memo.borrow_mut()
                .entry((store, source.to_owned()))
                .or_insert_with(|| plan_kept(store, source))
                .contains(id)
        };
        let mut keep: Vec<(usize, String, String)> = Vec::new();
        for ((source, id), held) in &copies {
            // Verified copies count; of a backup verified nowhere, every complete copy does.
            let any_verified = held.iter().any(|h| h.verified);
            let good = |h: &Held| h.verified || !any_verified;
            if held.iter().any(|h| good(h) && h.keep) || !held.iter().any(|h| good(h) && !h.keep) {
                continue;
            }
            let Some(wanted) = other.source_stores.get(source) else {
                continue;
            };
            let done_everywhere = wanted.iter().all(|name| {
                if unreadable.contains(name.as_str()) {
                    return false;
                }
                let Some(i) = names.iter().position(|n| n == name) else {
                    return true;
                };
                // It holds a copy, which its plan prunes (else we would not be here) ...
                held.iter().any(|h| h.store == i)
                    // ... or, lacking one, its retention would not keep it if it were up to
                    // date (the planner over every complete backup of the source).
                    || !kept_if_up_to_date(i, source, id)
            });
            if done_everywhere {
                continue;
            }
            if let Some(last) = held
                .iter()
                .filter(|h| good(h) && !h.keep)
                .map(|h| h.store)
                .max()
            {
                keep.push((last, source.clone(), id.clone()));
            }
        }
        for (i, source, id) in keep {
            let sources = if i == 0 {
                &mut plan.sources
            } else {
                &mut plan.stores[i - 1].sources
            };
            if let Some(d) = sources
                .iter_mut()
                .filter(|sp| sp.source == source)
                .flat_map(|sp| sp.decisions.iter_mut())
                .find(|d| d.backup.id == id)
            {
                d.keep = true;
                d.reasons.push(Reason::LastCopy);
            }
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

/// The `source/id` a pin's key names, if it is one: a valid source name and backup id, and
/// nothing else.
pub fn pin_of(key: &str) -> Option<&str> {
    let pin = key.strip_prefix(PINS_PREFIX)?;
    let (source, id) = pin.split_once('/')?;
    let ok = crate::config::validate_source_name(source).is_ok() && id.parse::<BackupId>().is_ok();
    ok.then_some(pin)
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
            .filter_map(|o| pin_of(&o.key).map(str::to_owned))
            .collect())
    }

    /// Pins a backup so no prune deletes it. Recorded as a `pin` job (who, when).
    pub async fn pin(&self, catalog: &Catalog, id: &str) -> Result<BackupEntry> {
        let entry = catalog.lookup(id)?;
        let job = self.start_job(JobKind::Pin, Some(&entry.source), Trigger::Manual);
        job.set_backup(entry.id.as_str());
        let operator = self.operator();
        let result = async {
            let body = serde_json::json!({
                "pinned_at": self.clock.now(),
                "host": crate::jobs::hostname(),
                "by": operator,
            });
            self.store
                .put_bytes(
                    &pin_key(&entry.source, entry.id.as_str())?,
                    body.to_string().into_bytes().into(),
                )
                .await?;
            job.log(format!("pinned {} by {operator}", entry.dir()));
            Ok(entry.clone())
        }
        .await;
        self.finish_job(job, result).await.1
    }

    /// Removes a pin; `Ok(false)` if there was none. Recorded as an `unpin` job either way,
    /// so the history says who let the policy decide again.
    pub async fn unpin(&self, catalog: &Catalog, id: &str) -> Result<bool> {
        let entry = catalog.lookup(id)?;
        let job = self.start_job(JobKind::Unpin, Some(&entry.source), Trigger::Manual);
        job.set_backup(entry.id.as_str());
        let operator = self.operator();
        let result = async {
            let key = pin_key(&entry.source, entry.id.as_str())?;
            if self.store.head(&key).await?.is_none() {
                job.log(format!("{} was not pinned", entry.dir()));
                return Ok(false);
            }
            self.store.delete_many(&[key]).await?;
            job.log(format!("unpinned {} by {operator}", entry.dir()));
            Ok(true)
        }
        .await;
        self.finish_job(job, result).await.1
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
            let verifications = crate::newest_verifications(&jobs);
            let verified: BTreeSet<String> = complete
                .into_iter()
                .filter(|id| verifications.get(id).is_some_and(|v| v.ok))
                .collect();
            Ok((jobs, verified))
        })
        .await
        .map_err(|e| Error::Invalid(format!("reading the job history failed: {e}")))??;
        // With the stores read, each plans from its own listing; a catalog built without
        // them (a single store read by hand) is the default store's listing.
        let default_backups: &[BackupEntry] = match catalog.stores.first() {
            Some(l) if l.error.is_none() => &l.backups,
            Some(l) => {
                return Err(Error::Invalid(format!(
                    "the default store {} could not be read ({}): pins live there, so nothing is pruned",
                    l.store,
                    l.error.as_deref().unwrap_or_default()
                )));
            }
            None => &catalog.backups,
        };
        // A backup's copies say, per store, whether it is verified there; without them the
        // job history speaks for the default store.
        let by_dir: std::collections::HashMap<String, &BackupEntry> =
            catalog.backups.iter().map(|b| (b.dir(), b)).collect();
        let copy_verified = |store: usize, b: &BackupEntry| -> bool {
            if b.state != BackupState::Complete {
                return false;
            }
            let name = &self.stores[store].name;
            match by_dir.get(&b.dir()).and_then(|r| r.copies.as_ref()) {
                Some(c) => c
                    .stores
                    .iter()
                    .any(|l| &l.store == name && l.state == crate::stores::CopyState::Verified),
                None => store == 0 && verified.contains(b.id.as_str()),
            }
        };
        let inputs_for = |store: usize, backups: &[BackupEntry]| -> Vec<SourceInputs> {
            let store_config = self.config.stores.get(store);
            let mut names: BTreeSet<&str> = self
                .config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            names.extend(backups.iter().map(|b| b.source.as_str()));
            names
                .into_iter()
                .filter(|n| source.is_none_or(|s| s == *n))
                .map(|name| {
                    let backups: Vec<Candidate> = backups
                        .iter()
                        .filter(|b| b.source == name)
                        .map(|b| candidate(catalog, b, copy_verified(store, b), self.authentic(b)))
                        .collect();
                    let newest_complete = backups
                        .iter()
                        .filter(|b| b.state == BackupState::Complete)
                        .map(|b| b.time)
                        .max();
                    // The newest finished backup job decides: a failure after the newest
                    // complete backup means the source is in trouble, and its history is
                    // evidence.
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
                        policy: match store_config {
                            Some(sc) => sc.policy(&self.config, name).clone(),
                            None => self.config.policy(name).clone(),
                        },
                        newest_failed,
                        unconfigured: source.is_none() && self.config.source(name).is_none(),
                        backups,
                    }
                })
                .collect()
        };
        let in_scope =
            |u: &&IncompleteUpload| source.is_none_or(|s| u.key.split('/').next() == Some(s));
        let sources = inputs_for(0, default_backups);
        let incomplete = catalog
            .incomplete
            .iter()
            .filter(in_scope)
            .cloned()
            .collect();
        let other_stores = OtherStores {
            default_store: self.stores[0].name.clone(),
            stores: catalog
                .stores
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, l)| StoreInputs {
                    store: l.store.clone(),
                    error: l.error.clone(),
                    sources: inputs_for(i, &l.backups),
                    incomplete: l.incomplete.iter().filter(in_scope).cloned().collect(),
                })
                .collect(),
            source_stores: self
                .config
                .sources
                .iter()
                .map(|s| {
                    let names = self
                        .config
                        .source_stores(&s.name)
                        .iter()
                        .map(|st| st.name.clone())
                        .collect();
                    (s.name.clone(), names)
                })
                .collect(),
        };
        Ok(PlanInputs {
            now: self.clock.now(),
            timezone: self.config.retention.timezone,
            orphan_grace: self.config.retention.orphan_grace,
            sources,
            incomplete,
            other_stores,
        })
    }

    /// The plan a prune would carry out now.
    pub async fn prune_plan(&self, opts: &PruneOptions) -> Result<PrunePlan> {
        if let Err(e) = self.sync_jobs().await {
            tracing::warn!("planning with local job history only: {e}");
        }
        let catalog = self.catalog().await?;
        let mut inputs = self.plan_inputs(&catalog, opts.source.as_deref()).await?;
        self.internal_uploads(&mut inputs, opts.source.as_deref())
            .await?;
        Ok(inputs.plan(opts.force, None))
    }

    /// A whole-store prune also aborts unfinished writes of lifeboat's own records
    /// (`_lifeboat/`), which the catalog listing skips.
    async fn internal_uploads(&self, inputs: &mut PlanInputs, source: Option<&str>) -> Result<()> {
        if source.is_some() {
            return Ok(());
        }
        let prefix = crate::catalog::INTERNAL_PREFIX;
        inputs
            .incomplete
            .extend(self.store().list_incomplete(prefix).await?);
        for st in inputs.other_stores.stores.iter_mut() {
            let store = self.stores().iter().find(|s| s.name == st.store);
            if let (None, Some(store)) = (&st.error, store) {
                st.incomplete
                    .extend(store.store.list_incomplete(prefix).await?);
            }
        }
        Ok(())
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
            let mut inputs = self.plan_inputs(&catalog, opts.source.as_deref()).await?;
            self.internal_uploads(&mut inputs, opts.source.as_deref())
                .await?;
            let plan = inputs.plan(opts.force, None);
            let mut report = PruneReport {
                plan,
                deleted: 0,
                aborted: 0,
                freed_bytes: 0,
            };
            let confirmed = |what: &str| opts.only.as_ref().is_none_or(|o| o.contains(what));
            // The default store's plan, then each other store's. A confirmed list (the
            // console's) was shown for the default store only.
            let mut work: Vec<(usize, &[SourcePlan], Vec<&UploadDecision>)> =
                vec![(0, &report.plan.sources, report.plan.aborts().collect())];
            if opts.only.is_none() {
                for (i, st) in report.plan.stores.iter().enumerate() {
                    if let Some(e) = &st.error {
                        job.log(format!(
                            "store {}: not pruned, it could not be read: {e}",
                            st.store
                        ));
                        continue;
                    }
                    work.push((
                        i + 1,
                        &st.sources,
                        st.uploads.iter().filter(|u| u.abort).collect(),
                    ));
                }
            }
            let several = work.len() > 1;
            let mut deleted = 0;
            let mut aborted = 0;
            let mut freed = 0;
            for (store_index, sources, store_aborts) in work {
                let store = &self.stores[store_index];
                let in_store = if several {
                    format!(" in store {}", store.name)
                } else {
                    String::new()
                };
                let listed: &[BackupEntry] = match catalog.stores.get(store_index) {
                    Some(l) => &l.backups,
                    None => &catalog.backups,
                };
                // By (source, id): a prune of most of 100,000 backups looks each one up.
                let listed: HashMap<(&str, &str), &BackupEntry> = listed
                    .iter()
                    .map(|b| ((b.source.as_str(), b.id.as_str()), b))
                    .collect();
                for sp in sources {
                    job.log(format!(
                        "{}{in_store}: {} ({} kept, {} to prune)",
                        sp.source,
                        sp.skipped.as_deref().unwrap_or(&sp.policy),
                        sp.decisions.len() - sp.pruned().count(),
                        sp.pruned().count()
                    ));
                    let aborts: Vec<&&UploadDecision> = store_aborts
                        .iter()
                        .filter(|u| upload_source(&u.upload.key) == Some(sp.source.as_str()))
                        .collect();
                    if sp.pruned().next().is_none() && aborts.is_empty() {
                        continue;
                    }
                    // Held while this source's objects go, so no backup of it runs meanwhile.
                    let _lock = self.lock_source(&sp.source)?;
                    let mut gone = Vec::new();
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
                        let Some(&entry) = listed.get(&(sp.source.as_str(), d.backup.id.as_str()))
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
                        self.delete_backup(store_index, entry).await?;
                        gone.push(format!("{}/{MANIFEST_NAME}", entry.dir()));
                        deleted += 1;
                        freed += d.backup.stored_bytes;
                        job.add_bytes(d.backup.stored_bytes);
                        job.log(format!(
                            "deleted {}{in_store} ({}, {} bytes)",
                            entry.dir(),
                            entry.state,
                            d.backup.stored_bytes
                        ));
                    }
                    if !gone.is_empty()
                        && let Err(e) =
                            index::note_deleted(store.store.as_ref(), &sp.source, &gone).await
                    {
                        job.log(format!(
                            "catalog index{in_store} not updated (the next listing will): {e}"
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
                        store.store.abort_incomplete(&u.upload).await?;
                        aborted += 1;
                        job.log(format!(
                            "aborted incomplete upload of {}{in_store}",
                            u.upload.key
                        ));
                    }
                }
            }
            report.deleted = deleted;
            report.aborted = aborted;
            report.freed_bytes = freed;
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

    /// Deletes a backup from one store: manifest first, then data, then its pin (default
    /// store) or its check record (another store).
    async fn delete_backup(&self, store_index: usize, entry: &BackupEntry) -> Result<()> {
        let store = &self.stores[store_index].store;
        let keys = entry
            .objects
            .iter()
            .map(|o| ObjectKey::new(o.key.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (manifest, data): (Vec<ObjectKey>, Vec<ObjectKey>) = keys
            .into_iter()
            .partition(|k| k.as_str().ends_with(&format!("/{MANIFEST_NAME}")));
        if !manifest.is_empty() {
            store.delete_many(&manifest).await?;
        }
        if !data.is_empty() {
            store.delete_many(&data).await?;
        }
        let check = crate::stores::CheckRecord::key(&entry.source, entry.id.as_str())?;
        if store_index == 0 {
            store
                .delete_many(&[pin_key(&entry.source, entry.id.as_str())?, check])
                .await?;
        } else {
            store.delete_many(&[check]).await?;
        }
        Ok(())
    }
}

fn candidate(catalog: &Catalog, b: &BackupEntry, verified: bool, authentic: bool) -> Candidate {
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
        authentic,
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
            other_stores: OtherStores::default(),
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
