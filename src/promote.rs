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

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::error::{Error, Result};
use crate::jobs::{JobKind, JobRecord, JobStatus, RestoredCopy};
use crate::manifest::{EngineKind, Trigger};

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

pub(crate) fn refused(message: String) -> Error {
    Error::Refused(Box::new(Error::Invalid(message)))
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
        crate::engine::for_source(config)
            .plan_promote(self, config, &restored, &mut plan)
            .await?;
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
            let sessions = crate::engine::for_kind(plan.engine)
                .promote(config, &plan, &job)
                .await?;
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
}
