//! Per-source health: how old the newest good backup is against the RPO target, when a
//! restore was last proven, how much storage the source uses.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::catalog::{CatalogRow, RowKind};
use crate::config::Config;
use crate::jobs::{JobKind, JobRecord, JobStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub source: String,
    pub level: Level,
    pub newest: Option<DateTime<Utc>>,
    pub age: Option<Duration>,
    pub rpo: Duration,
    pub last_restore_test: Option<DateTime<Utc>>,
    /// The newest finished drill: when, and whether it passed.
    pub last_drill: Option<(DateTime<Utc>, bool)>,
    /// When the next drill is due, if the source has a `drill_interval`.
    pub next_drill_due: Option<DateTime<Utc>>,
    pub last_job_failed: bool,
    pub stored_bytes: u64,
    pub backups: usize,
}

/// One line per configured source (and per source found in the bucket but not configured).
pub fn assess(
    config: &Config,
    rows: &[CatalogRow],
    jobs: &[JobRecord],
    now: DateTime<Utc>,
) -> Vec<SourceHealth> {
    let mut names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    for r in rows {
        if let Some(s) = &r.source
            && !names.contains(s)
        {
            names.push(s.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let rpo = config
                .source(&name)
                .map_or(Duration::hours(26), |s| s.rpo());
            let mine = rows
                .iter()
                .filter(|r| r.source.as_deref() == Some(name.as_str()));
            let newest = mine
                .clone()
                .filter(|r| r.kind == RowKind::Complete)
                .filter_map(|r| r.time)
                .max();
            let stored_bytes = mine.clone().map(|r| r.stored_bytes).sum();
            let backups = mine.filter(|r| r.kind == RowKind::Complete).count();
            let source_jobs = jobs
                .iter()
                .filter(|j| j.source.as_deref() == Some(name.as_str()));
            let last_restore_test = source_jobs
                .clone()
                .filter(|j| {
                    matches!(j.kind, JobKind::Restore | JobKind::Drill)
                        && j.status == JobStatus::Succeeded
                })
                .filter_map(|j| j.finished_at)
                .max();
            let last_drill = source_jobs
                .clone()
                .filter(|j| {
                    j.kind == JobKind::Drill
                        && matches!(j.status, JobStatus::Succeeded | JobStatus::Failed)
                })
                .filter_map(|j| Some((j.finished_at?, j.status == JobStatus::Succeeded)))
                .max_by_key(|d| d.0);
            // A source never drilled is due now; a failed drill does not reset the clock.
            let next_drill_due = config
                .source(&name)
                .and_then(|s| s.drill_interval)
                .map(|every| {
                    source_jobs
                        .clone()
                        .filter(|j| j.kind == JobKind::Drill && j.status == JobStatus::Succeeded)
                        .filter_map(|j| j.finished_at)
                        .max()
                        .map_or(now, |t| t + every)
                });
            let last_job_failed = source_jobs
                .filter(|j| j.kind == JobKind::Backup && j.status != JobStatus::Running)
                .max_by_key(|j| j.started_at)
                .is_some_and(|j| j.status != JobStatus::Succeeded);
            let age = newest.map(|t| now - t);
            let level = match age {
                None => Level::Critical,
                Some(a) if a > rpo * 2 => Level::Critical,
                Some(a) if a > rpo || last_job_failed => Level::Warning,
                Some(_) => Level::Ok,
            };
            SourceHealth {
                source: name,
                level,
                newest,
                age,
                rpo,
                last_restore_test,
                last_drill,
                next_drill_due,
                last_job_failed,
                stored_bytes,
                backups,
            }
        })
        .collect()
}

impl SourceHealth {
    /// The drill part of a source's status line; empty when no drill interval is set.
    pub fn drill_note(&self, now: DateTime<Utc>) -> String {
        let Some(due) = self.next_drill_due else {
            return String::new();
        };
        let last = match self.last_drill {
            Some((_, true)) => "last drill passed, ",
            Some((_, false)) => "last drill FAILED, ",
            None => "never drilled, ",
        };
        if due <= now {
            format!("  {last}drill due now")
        } else {
            format!(
                "  {last}next drill in {}",
                crate::when::short_age(due - now)
            )
        }
    }
}

/// Expected restore time for `stored_bytes`, from the throughput of past restores.
pub fn expected_restore(jobs: &[JobRecord], stored_bytes: u64) -> Option<Duration> {
    let rates: Vec<f64> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Restore && j.status == JobStatus::Succeeded)
        .filter_map(JobRecord::throughput)
        .take(10)
        .collect();
    if rates.is_empty() {
        return None;
    }
    let rate = rates.iter().sum::<f64>() / rates.len() as f64;
    Some(Duration::milliseconds(
        (stored_bytes as f64 / rate * 1000.0) as i64,
    ))
}
