//! Per-source health: how old the newest good backup is against the RPO target, when a
//! restore was last proven, how often jobs fail, how much storage the source uses. `check`
//! is its face for monitoring.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

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

/// The `[check]` table: thresholds that apply to every source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The window the failure rate is measured over.
    #[serde(default = "default_window", deserialize_with = "de_window")]
    pub failure_window: Duration,
    /// Failed share of a source's finished jobs in the window that makes it WARNING ...
    #[serde(default = "default_rate_warning")]
    pub failure_rate_warning: f64,
    /// ... and CRITICAL.
    #[serde(default = "default_rate_critical")]
    pub failure_rate_critical: f64,
    /// Share of a source's quota at which it is WARNING (CRITICAL at the quota).
    #[serde(default = "default_quota_warning")]
    pub quota_warning: f64,
    /// Verified copies (in different stores) every backup should have once it is older than
    /// `copies_grace`; fewer is CRITICAL. Unset: not checked.
    pub min_copies: Option<u32>,
    /// How long a new backup may take to reach its copies.
    #[serde(default = "default_copies_grace", deserialize_with = "de_window")]
    pub copies_grace: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            failure_window: default_window(),
            failure_rate_warning: default_rate_warning(),
            failure_rate_critical: default_rate_critical(),
            quota_warning: default_quota_warning(),
            min_copies: None,
            copies_grace: default_copies_grace(),
        }
    }
}

fn default_copies_grace() -> Duration {
    Duration::hours(6)
}

fn default_window() -> Duration {
    Duration::days(7)
}
fn default_rate_warning() -> f64 {
    0.25
}
fn default_rate_critical() -> f64 {
    0.5
}
fn default_quota_warning() -> f64 {
    0.9
}

fn de_window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    match crate::when::parse_duration(&text) {
        Ok(d) if d > Duration::zero() => Ok(d),
        Ok(_) => Err(serde::de::Error::custom(format!(
            "{text:?} is not a duration like \"7d\""
        ))),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
}

/// A size like `50GiB`, `500MB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n > 0.0).then_some((n * mult) as u64)
}

pub(crate) fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{text:?} is not a size like \"50GiB\" or \"500MB\""
        ))
    })
}

/// One reason a source is not OK, in words a person on call understands.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub source: String,
    pub level: Level,
    pub newest: Option<DateTime<Utc>>,
    #[serde(serialize_with = "secs_opt")]
    pub age: Option<Duration>,
    #[serde(serialize_with = "secs")]
    pub rpo: Duration,
    #[serde(serialize_with = "secs")]
    pub rpo_critical: Duration,
    pub last_restore_test: Option<DateTime<Utc>>,
    /// The newest passed drill.
    pub last_drill: Option<DateTime<Utc>>,
    /// How long the newest passed drill's restore took: the measured RTO.
    #[serde(serialize_with = "secs_opt")]
    pub drill_restore_time: Option<Duration>,
    #[serde(serialize_with = "secs_opt")]
    pub rto: Option<Duration>,
    /// Whether the newest finished drill passed (a failed one does not reset the clock).
    pub last_drill_passed: Option<bool>,
    /// When the next drill is due, if the source has a `drill_interval`; never drilled: now.
    pub next_drill_due: Option<DateTime<Utc>>,
    #[serde(serialize_with = "secs_opt")]
    pub drill_age: Option<Duration>,
    #[serde(serialize_with = "secs_opt")]
    pub drill_interval: Option<Duration>,
    pub last_job_failed: bool,
    /// Failed and finished jobs of this source in the failure window.
    pub failed_in_window: usize,
    pub finished_in_window: usize,
    pub stored_bytes: u64,
    pub quota: Option<u64>,
    pub backups: usize,
    /// Backups with a manifest whose objects are not whole (see `lifeboat list`).
    pub damaged: usize,
    pub findings: Vec<Finding>,
}

impl SourceHealth {
    /// The drill part of a source's status line; empty when no drill interval is set.
    pub fn drill_note(&self, now: DateTime<Utc>) -> String {
        let Some(due) = self.next_drill_due else {
            return String::new();
        };
        let last = match self.last_drill_passed {
            Some(true) => "drill ok",
            Some(false) => "drill FAILED",
            None => "never drilled",
        };
        if due <= now {
            format!("  {last}, due now")
        } else {
            format!("  {last}, next in {}", crate::when::short_age(due - now))
        }
    }

    pub fn failure_rate(&self) -> f64 {
        failure_rate(self.failed_in_window, self.finished_in_window)
    }
}

fn failure_rate(failed: usize, finished: usize) -> f64 {
    if finished == 0 {
        0.0
    } else {
        failed as f64 / finished as f64
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_seconds())
}

fn secs_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.num_seconds()),
        None => s.serialize_none(),
    }
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
        .map(|name| assess_source(config, name, rows, jobs, now))
        .collect()
}

fn assess_source(
    config: &Config,
    name: String,
    rows: &[CatalogRow],
    jobs: &[JobRecord],
    now: DateTime<Utc>,
) -> SourceHealth {
    use crate::when::short_age;
    let source = config.source(&name);
    let rpo = source.map_or(Duration::hours(26), |s| s.rpo());
    let rpo_critical = source.and_then(|s| s.rpo_critical).unwrap_or(rpo * 2);
    let drill_interval = source.and_then(|s| s.drill_interval);
    let quota = source.and_then(|s| s.quota);
    let mine = rows
        .iter()
        .filter(|r| r.source.as_deref() == Some(name.as_str()));
    // A backup dated after now (a skewed clock, a forged manifest) would make the source look
    // fresh for ever: it is left out of "newest" and reported instead.
    let (future, newest) = mine
        .clone()
        .filter(|r| r.kind == RowKind::Complete)
        .filter_map(|r| r.time)
        .fold((Vec::new(), None), |(mut future, newest), t| {
            if crate::clock::is_future(t, now) {
                future.push(t);
                (future, newest)
            } else {
                (future, newest.max(Some(t)))
            }
        });
    let stored_bytes = mine
        .clone()
        .fold(0u64, |n, r| n.saturating_add(r.stored_bytes));
    let backups = mine.clone().filter(|r| r.kind == RowKind::Complete).count();
    let damaged: Vec<&CatalogRow> = mine.filter(|r| r.kind == RowKind::Damaged).collect();
    let source_jobs = jobs
        .iter()
        .filter(|j| j.source.as_deref() == Some(name.as_str()));
    let succeeded = |kinds: &[JobKind]| {
        source_jobs
            .clone()
            .filter(|j| kinds.contains(&j.kind) && j.status == JobStatus::Succeeded)
            .filter_map(|j| j.finished_at)
            .max()
    };
    let last_restore_test = succeeded(&[JobKind::Restore, JobKind::Drill]);
    let newest_drill = source_jobs
        .clone()
        .filter(|j| j.kind == JobKind::Drill && j.status == JobStatus::Succeeded)
        .filter(|j| j.finished_at.is_some())
        .max_by_key(|j| j.finished_at);
    let last_drill = newest_drill.and_then(|j| j.finished_at);
    // A drill's job spans its restore: download, verify, load, count and diff.
    let drill_restore_time = newest_drill.and_then(|j| Some(j.finished_at? - j.started_at));
    let rto = source.and_then(|s| s.rto);
    let last_drill_passed = source_jobs
        .clone()
        .filter(|j| {
            j.kind == JobKind::Drill && matches!(j.status, JobStatus::Succeeded | JobStatus::Failed)
        })
        .max_by_key(|j| j.finished_at)
        .map(|j| j.status == JobStatus::Succeeded);
    let next_drill_due = drill_interval.map(|every| last_drill.map_or(now, |t| t + every));
    let last_backup = source_jobs
        .clone()
        .filter(|j| j.kind == JobKind::Backup && j.status != JobStatus::Running)
        .max_by_key(|j| j.started_at);
    let last_job_failed = last_backup.is_some_and(|j| j.status != JobStatus::Succeeded);
    let window_start = now - config.check.failure_window;
    let finished: Vec<&JobRecord> = source_jobs
        .filter(|j| j.started_at >= window_start)
        // A refused restore read nothing and says nothing about the source.
        .filter(|j| {
            !matches!(
                j.status,
                JobStatus::Running | JobStatus::Cancelled | JobStatus::Refused
            )
        })
        .collect();
    let failed_in_window = finished
        .iter()
        .filter(|j| j.status != JobStatus::Succeeded)
        .count();
    let age = newest.map(|t| now - t);

    let mut findings = Vec::new();
    let mut find = |level: Level, message: String| findings.push(Finding { level, message });
    match age {
        None => find(Level::Critical, "no good backup".into()),
        Some(a) if a > rpo_critical => find(
            Level::Critical,
            format!(
                "newest good backup is {} old (critical over {})",
                short_age(a),
                short_age(rpo_critical)
            ),
        ),
        Some(a) if a > rpo => find(
            Level::Warning,
            format!(
                "newest good backup is {} old (RPO {})",
                short_age(a),
                short_age(rpo)
            ),
        ),
        Some(_) => {}
    }
    if let Some(latest) = future.iter().max() {
        find(
            Level::Warning,
            format!(
                "{} backup(s) dated in the future (up to {} ahead): a skewed clock or a forged manifest",
                future.len(),
                short_age(*latest - now)
            ),
        );
    }
    if let Some(j) = last_backup.filter(|_| last_job_failed) {
        let why = j.error.as_deref().unwrap_or("no error recorded");
        find(
            Level::Warning,
            format!("last backup {}: {}", j.status, first_line(why)),
        );
    }
    let rate = failure_rate(failed_in_window, finished.len());
    let rate_level = if failed_in_window > 0 && rate >= config.check.failure_rate_critical {
        Some(Level::Critical)
    } else if failed_in_window > 0 && rate >= config.check.failure_rate_warning {
        Some(Level::Warning)
    } else {
        None
    };
    if let Some(level) = rate_level {
        find(
            level,
            format!(
                "{failed_in_window} of {} jobs failed in the last {}",
                finished.len(),
                short_age(config.check.failure_window)
            ),
        );
    }
    let drill_age = last_drill.map(|t| now - t);
    if let Some(interval) = drill_interval {
        match drill_age {
            None => find(Level::Warning, "no restore drill yet".into()),
            Some(a) if a > interval * 2 => find(
                Level::Critical,
                format!(
                    "last drill {} ago (interval {})",
                    short_age(a),
                    short_age(interval)
                ),
            ),
            Some(a) if a > interval => find(
                Level::Warning,
                format!(
                    "last drill {} ago (interval {})",
                    short_age(a),
                    short_age(interval)
                ),
            ),
            Some(_) => {}
        }
    }
    if let Some(rto) = rto {
        match drill_restore_time {
            Some(took) if took > rto => find(
                Level::Warning,
                format!(
                    "the last drill's restore took {} (RTO {})",
                    short_age(took),
                    short_age(rto)
                ),
            ),
            Some(_) => {}
            // Said once: "no restore drill yet" already covers a source with an interval.
            None if drill_interval.is_none() => find(
                Level::Warning,
                format!("RTO {} not measured: no restore drill yet", short_age(rto)),
            ),
            None => {}
        }
    }
    if last_drill_passed == Some(false) {
        find(Level::Warning, "the last restore drill failed".into());
    }
    if let Some(min) = config.check.min_copies {
        // The newest backup that has had time to reach its copies.
        let due = rows
            .iter()
            .filter(|r| r.source.as_deref() == Some(name.as_str()) && r.kind == RowKind::Complete)
            .filter(|r| r.time.is_some_and(|t| now - t > config.check.copies_grace))
            .max_by_key(|r| r.time);
        if let Some((r, c)) = due.and_then(|r| r.copies.as_ref().map(|c| (r, c)))
            && u32::from(c.verified) < min
        {
            let behind = if c.behind.is_empty() {
                "no other store keeps it".to_owned()
            } else {
                format!("behind: {}", c.behind.join(", "))
            };
            find(
                Level::Critical,
                format!(
                    "backup {} ({} old) has {} of {min} verified copies; {behind}",
                    r.id,
                    short_age(now - r.time.unwrap_or(now)),
                    c.verified
                ),
            );
        }
    }
    // A backup someone counted on is gone. WARNING, not CRITICAL: whether the source can
    // still be restored in time is what the age of the newest good backup says above.
    if let Some(newest_damaged) = damaged.iter().max_by_key(|r| r.time) {
        find(
            Level::Warning,
            format!(
                "{} damaged backup(s), newest {}",
                damaged.len(),
                newest_damaged.id
            ),
        );
    }
    if let Some(q) = quota {
        let used = stored_bytes as f64 / q as f64;
        let level = if stored_bytes >= q {
            Some(Level::Critical)
        } else if used >= config.check.quota_warning {
            Some(Level::Warning)
        } else {
            None
        };
        if let Some(level) = level {
            find(
                level,
                format!(
                    "uses {:.0}% of its {} quota",
                    used * 100.0,
                    humansize::format_size(q, humansize::BINARY)
                ),
            );
        }
    }
    let level = findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    SourceHealth {
        source: name,
        level,
        newest,
        age,
        rpo,
        rpo_critical,
        last_restore_test,
        last_drill,
        drill_restore_time,
        rto,
        last_drill_passed,
        next_drill_due,
        drill_age,
        drill_interval,
        last_job_failed,
        failed_in_window,
        finished_in_window: finished.len(),
        stored_bytes,
        quota,
        backups,
        damaged: damaged.len(),
        findings,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::manifest::Trigger;

    fn config(source_extra: &str, tables: &str) -> Config {
        let text = format!(
            "[storage]\ntype = \"local\"\npath = \"b\"\n{tables}\n\
             [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"a.db\"\nrpo = \"1d\"\n{source_extra}\n"
        );
        Config::parse(&text, Path::new("/x/lifeboat.toml")).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn backup_row(age_hours: i64, stored: u64) -> CatalogRow {
        CatalogRow {
            id: format!("b{age_hours}"),
            kind: RowKind::Complete,
            source: Some("shop".into()),
            time: Some(now() - Duration::hours(age_hours)),
            raw_bytes: None,
            stored_bytes: stored,
            duration_ms: None,
            tables: None,
            rows: None,
            encrypted: false,
            note: None,
            copies: None,
        }
    }

    fn job(kind: JobKind, age_hours: i64, status: JobStatus) -> JobRecord {
        let start = now() - Duration::hours(age_hours);
        JobRecord {
            id: format!("{kind}{age_hours}"),
            kind,
            source: Some("shop".into()),
            backup_id: None,
            trigger: Trigger::Scheduled,
            host: "h".into(),
            pid: 1,
            started_at: start,
            finished_at: Some(start + Duration::minutes(1)),
            status,
            bytes: 0,
            error: (status == JobStatus::Failed).then(|| "disk full\nmore".into()),
            log: vec![],
            operator: None,
            restored: None,
        }
    }

    fn one(config: &Config, rows: &[CatalogRow], jobs: &[JobRecord]) -> SourceHealth {
        assess(config, rows, jobs, now()).remove(0)
    }

    #[test]
    fn age_against_rpo_and_its_critical_threshold() {
        let c = config("rpo_critical = \"3d\"", "");
        assert_eq!(one(&c, &[backup_row(2, 1)], &[]).level, Level::Ok);
        let h = one(&c, &[backup_row(30, 1)], &[]);
        assert_eq!(h.level, Level::Warning);
        assert!(
            h.findings[0].message.contains("RPO 1d 0h"),
            "{:?}",
            h.findings
        );
        assert_eq!(one(&c, &[backup_row(50, 1)], &[]).level, Level::Warning);
        assert_eq!(one(&c, &[backup_row(80, 1)], &[]).level, Level::Critical);
        assert_eq!(one(&c, &[], &[]).level, Level::Critical);
    }

    #[test]
    fn a_backup_dated_in_the_future_does_not_hide_an_old_newest() {
        let c = config("", "");
        // The source's real newest backup is 30 h old (over its 1d RPO); a host with a clock a
        // year ahead wrote another.
        let rows = [backup_row(30, 1), backup_row(-24 * 365, 1)];
        let h = one(&c, &rows, &[]);
        assert_eq!(h.newest, Some(now() - Duration::hours(30)));
        assert_eq!(h.level, Level::Warning);
        let text: Vec<&str> = h.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(
            text[0].starts_with("newest good backup is 1d 6h old"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("1 backup(s) dated in the future (up to 1y 0d ahead)"),
            "{text:?}"
        );
    }

    #[test]
    fn a_failed_last_backup_warns_and_a_high_failure_rate_is_critical() {
        let c = config(
            "",
            "[check]\nfailure_window = \"2d\"\nfailure_rate_warning = 0.3\nfailure_rate_critical = 0.6",
        );
        let rows = [backup_row(2, 1)];
        let mut jobs = vec![
            job(JobKind::Backup, 1, JobStatus::Failed),
            job(JobKind::Backup, 2, JobStatus::Succeeded),
            job(JobKind::Verify, 3, JobStatus::Succeeded),
            // Outside the window: not counted.
            job(JobKind::Backup, 100, JobStatus::Failed),
        ];
        let h = one(&c, &rows, &jobs);
        assert_eq!((h.failed_in_window, h.finished_in_window), (1, 3));
        assert_eq!(h.level, Level::Warning);
        let text: Vec<&str> = h.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            text,
            [
                "last backup failed: disk full",
                "1 of 3 jobs failed in the last 2d 0h"
            ]
        );
        jobs.push(job(JobKind::Verify, 4, JobStatus::Failed));
        let h = one(&c, &rows, &jobs);
        assert_eq!(h.level, Level::Warning, "2 of 4 is under 0.6");
        jobs.push(job(JobKind::Verify, 5, JobStatus::Interrupted));
        assert_eq!(one(&c, &rows, &jobs).level, Level::Critical, "3 of 5");
    }

    #[test]
    fn the_last_drill_is_held_to_the_rto() {
        let c = config("rto = \"10m\"", "");
        let rows = [backup_row(2, 1)];
        let h = one(&c, &rows, &[]);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(
            h.findings[0].message,
            "RTO 10m not measured: no restore drill yet"
        );
        // A drill whose restore took 1 minute (the job fixture's length) meets it...
        let mut drill = job(JobKind::Drill, 5, JobStatus::Succeeded);
        let h = one(&c, &rows, std::slice::from_ref(&drill));
        assert_eq!(
            (h.level, h.drill_restore_time),
            (Level::Ok, Some(Duration::minutes(1)))
        );
        // ... one that took 25 minutes does not.
        drill.finished_at = Some(drill.started_at + Duration::minutes(25));
        let h = one(&c, &rows, &[drill]);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(
            h.findings[0].message,
            "the last drill's restore took 25m (RTO 10m)"
        );
    }

    #[test]
    fn drills_and_quota() {
        let c = config("drill_interval = \"30d\"\nquota = \"1KiB\"", "");
        let drill = |days: i64| job(JobKind::Drill, days * 24, JobStatus::Succeeded);
        let rows = [backup_row(2, 100)];
        let h = one(&c, &rows, &[]);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(h.findings[0].message, "no restore drill yet");
        assert_eq!(one(&c, &rows, &[drill(10)]).level, Level::Ok);
        assert_eq!(one(&c, &rows, &[drill(40)]).level, Level::Warning);
        assert_eq!(one(&c, &rows, &[drill(70)]).level, Level::Critical);
        let h = one(&c, &[backup_row(2, 950)], &[drill(1)]);
        assert_eq!(h.level, Level::Warning);
        assert!(
            h.findings[0].message.contains("93% of its 1 KiB quota"),
            "{:?}",
            h.findings
        );
        let h = one(&c, &[backup_row(2, 600), backup_row(3, 600)], &[drill(1)]);
        assert_eq!(h.level, Level::Critical);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("50GiB"), Some(50 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("500 MB"), Some(500_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1.5KiB"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0GB"), None);
    }
}
