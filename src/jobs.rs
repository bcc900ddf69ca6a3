//! Job records: every backup, verify, restore, prune and drill leaves one, locally and in the
//! bucket, so every console sees the same history.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::manifest::Trigger;
use crate::storage::{KeyError, ObjectKey};

/// The most lifeboat reads of a job record in the bucket. A record holds its job's log, a
/// few KiB; a larger one is not read at all.
pub const MAX_JOB_RECORD_BYTES: u64 = 1024 * 1024;
/// Where job records live in the bucket.
pub const JOBS_PREFIX: &str = "_lifeboat/jobs/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Verify,
    Restore,
    Prune,
    Drill,
    /// Copies between stores (`lifeboat copy`, and after each backup).
    Copy,
    /// A backup pinned (kept whatever the policy says) or unpinned: who, and when.
    Pin,
    Unpin,
    /// A proven scratch copy put in place of its source (`lifeboat promote`).
    Promote,
    /// A base backup for point-in-time recovery (`lifeboat basebackup`).
    BaseBackup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The process running it died (found `running` with nobody holding its job lock).
    Interrupted,
    /// Refused before it read anything: the target exists, it is the source, a key is
    /// missing. Says nothing about the backup, so it counts as neither a verification nor a
    /// failure in health.
    Refused,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Backup => "backup",
            JobKind::Verify => "verify",
            JobKind::Restore => "restore",
            JobKind::Prune => "prune",
            JobKind::Drill => "drill",
            JobKind::Copy => "copy",
            JobKind::Pin => "pin",
            JobKind::Unpin => "unpin",
            JobKind::Promote => "promote",
            JobKind::BaseBackup => "basebackup",
        })
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "ok",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Refused => "refused",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: JobKind,
    pub source: Option<String>,
    pub backup_id: Option<String>,
    pub trigger: Trigger,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: JobStatus,
    /// Bytes moved: stored bytes uploaded or downloaded.
    pub bytes: u64,
    pub error: Option<String>,
    #[serde(default)]
    pub log: Vec<LogLine>,
    /// Who ran it: `operator` from the config, else the login name of the process. Absent
    /// from records written before lifeboat recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// A restore or drill: the copy it made and how it looked once proved, so that
    /// `promote` can find a proven copy and tell whether it changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredCopy>,
}

/// The scratch copy a restore made, as `promote` looks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredCopy {
    /// The SQLite file (canonical path) or the PostgreSQL database name.
    pub copy: String,
    /// The whole target: the file, or the database with its server.
    pub target: String,
    /// Whether its diff against a manifest passed (a foreign dump is only measured).
    pub proved: bool,
    /// A fingerprint of the copy when the diff passed (see [`crate::promote`]).
    pub fingerprint: String,
    /// Restored with the scratch server user's rights, owners and grants kept.
    #[serde(default)]
    pub privileged: bool,
    /// What the restore left out (owners, grants, database settings, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl JobRecord {
    pub fn duration(&self) -> Option<chrono::Duration> {
        self.finished_at.map(|f| f - self.started_at)
    }

    /// Bytes per second over the whole job.
    pub fn throughput(&self) -> Option<f64> {
        let secs = self.duration()?.num_milliseconds() as f64 / 1000.0;
        (secs > 0.0 && self.bytes > 0).then(|| self.bytes as f64 / secs)
    }

    /// Where the record lives in the bucket: `_lifeboat/jobs/{yyyy}/{mm}/{id}.json`.
    pub fn object_key(&self) -> Result<ObjectKey, KeyError> {
        ObjectKey::new(format!(
            "{JOBS_PREFIX}{}/{}.json",
            self.started_at.format("%Y/%m"),
            self.id
        ))
    }

    /// Reads a record another machine stored at `key`, checking that it is what its name
    /// says: the id matches the file name and its times are plausible. The error is one line
    /// saying why the record cannot be used.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<JobRecord, String> {
        let job: JobRecord = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a job record lifeboat can read: {e}"))?;
        let name = key.rsplit('/').next().unwrap_or(key);
        if name.strip_suffix(".json") != Some(job.id.as_str()) {
            return Err("the record's id is not its file name".into());
        }
        let times_ok = crate::when::plausible(job.started_at)
            && job
                .finished_at
                .is_none_or(|t| crate::when::plausible(t) && t >= job.started_at);
        if !times_ok {
            return Err("its times are not plausible (between 1970 and 9999, in order)".into());
        }
        Ok(job)
    }
}

/// The record of a job while it runs: its log collects here. It holds the job's lock (see
/// [`crate::lock::JobLock`]) until it is dropped, after its finished record is saved.
#[derive(Debug)]
pub struct Job {
    record: Mutex<JobRecord>,
    clock: Clock,
    lock: Option<crate::lock::JobLock>,
}

impl Job {
    pub fn start(
        kind: JobKind,
        source: Option<&str>,
        trigger: Trigger,
        operator: &str,
        clock: &Clock,
    ) -> Self {
        let now = clock.now();
        let id = format!(
            "{}-{kind}-{:04x}",
            now.format("%Y%m%dT%H%M%SZ"),
            fastrand::u16(..)
        );
        Job {
            record: Mutex::new(JobRecord {
                id,
                kind,
                source: source.map(str::to_owned),
                backup_id: None,
                trigger,
                host: hostname(),
                pid: std::process::id(),
                started_at: now,
                finished_at: None,
                status: JobStatus::Running,
                bytes: 0,
                error: None,
                log: Vec::new(),
                operator: Some(operator.to_owned()),
                restored: None,
            }),
            clock: clock.clone(),
            lock: None,
        }
    }

    /// Keeps the job's lock for as long as the job lives.
    pub fn hold(&mut self, lock: crate::lock::JobLock) {
        self.lock = Some(lock);
    }

    pub fn holds_lock(&self) -> bool {
        self.lock.is_some()
    }

    fn with<R>(&self, f: impl FnOnce(&mut JobRecord) -> R) -> R {
        f(&mut self.record.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn id(&self) -> String {
        self.with(|r| r.id.clone())
    }

    pub fn log(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(job = %self.id(), "{message}");
        let at = self.clock.now();
        self.with(|r| r.log.push(LogLine { at, message }));
    }

    pub fn set_backup(&self, id: &str) {
        self.with(|r| r.backup_id = Some(id.to_owned()));
    }

    pub fn set_source(&self, source: &str) {
        self.with(|r| r.source = Some(source.to_owned()));
    }

    pub fn set_restored(&self, copy: RestoredCopy) {
        self.with(|r| r.restored = Some(copy));
    }

    pub fn add_bytes(&self, n: u64) {
        self.with(|r| r.bytes += n);
    }

    pub fn snapshot(&self) -> JobRecord {
        self.with(|r| r.clone())
    }

    /// Closes the record with the outcome.
    pub fn finish(&self, outcome: Result<(), &crate::Error>) -> JobRecord {
        let now = self.clock.now();
        self.with(|r| {
            r.finished_at = Some(now.max(r.started_at));
            match outcome {
                Ok(()) => r.status = JobStatus::Succeeded,
                Err(crate::Error::Cancelled) => r.status = JobStatus::Cancelled,
                Err(e)
                    if e.is_refusal() && matches!(r.kind, JobKind::Restore | JobKind::Promote) =>
                {
                    r.status = JobStatus::Refused;
                    r.error = Some(e.to_string());
                }
                Err(e) => {
                    r.status = JobStatus::Failed;
                    r.error = Some(e.to_string());
                }
            }
            let line = match &r.error {
                Some(e) if r.status == JobStatus::Refused => format!("{} refused: {e}", r.kind),
                Some(e) => format!("{} failed: {e}", r.kind),
                None => format!("{} {}", r.kind, r.status),
            };
            r.log.push(LogLine {
                at: now,
                message: line,
            });
            r.clone()
        })
    }
}

/// The login name of this process, for records of who did what.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        // cron and systemd often run without USER: the uid still says who it was.
        // SAFETY: getuid cannot fail and touches no memory.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
