//! Prometheus metrics as a node_exporter textfile, rewritten from the job history after every
//! job so the numbers survive restarts and agree with `lifeboat jobs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::jobs::{JobRecord, JobStatus};

/// The `[metrics]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to write, e.g. `/var/lib/node_exporter/textfile/lifeboat.prom`.
    pub textfile: Option<PathBuf>,
}

#[derive(Default)]
struct Series {
    last_success: Option<i64>,
    last_duration: Option<f64>,
    last_bytes: Option<u64>,
    last_status_ok: Option<bool>,
    failures: u64,
    runs: u64,
}

/// The textfile for a job history (any order).
pub fn render(jobs: &[JobRecord]) -> String {
    let mut series: BTreeMap<(String, String), Series> = BTreeMap::new();
    let mut finished: Vec<&JobRecord> = jobs
        .iter()
        .filter(|j| !matches!(j.status, JobStatus::Running | JobStatus::Refused))
        .filter(|j| j.finished_at.is_some())
        .collect();
    finished.sort_by_key(|j| j.started_at);
    for j in finished {
        let source = j.source.clone().unwrap_or_default();
        let s = series.entry((source, j.kind.to_string())).or_default();
        s.runs += 1;
        s.last_duration = j.duration().map(|d| d.num_milliseconds() as f64 / 1000.0);
        s.last_status_ok = Some(j.status == JobStatus::Succeeded);
        match j.status {
            JobStatus::Succeeded => {
                s.last_success = j.finished_at.map(|t| t.timestamp());
                s.last_bytes = Some(j.bytes);
            }
            JobStatus::Failed | JobStatus::Interrupted => s.failures += 1,
            _ => {}
        }
    }
    let mut out = String::new();
    let mut family =
        |name: &str, help: &str, kind: &str, value: &dyn Fn(&Series) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for ((source, job_kind), s) in &series {
                if let Some(v) = value(s) {
                    let _ = writeln!(
                        out,
                        "{name}{{source=\"{}\",kind=\"{job_kind}\"}} {v}",
                        escape(source)
                    );
                }
            }
        };
    family(
        "lifeboat_last_success_timestamp_seconds",
        "When the last successful job of this source and kind finished (Unix time).",
        "gauge",
        &|s| s.last_success.map(|v| v.to_string()),
    );
    family(
        "lifeboat_last_duration_seconds",
        "How long the last finished job of this source and kind took.",
        "gauge",
        &|s| s.last_duration.map(|v| format!("{v:.3}")),
    );
    family(
        "lifeboat_last_size_bytes",
        "Bytes stored or read by the last successful job of this source and kind.",
        "gauge",
        &|s| s.last_bytes.map(|v| v.to_string()),
    );
    family(
        "lifeboat_last_success",
        "1 if the last finished job of this source and kind succeeded, else 0.",
        "gauge",
        &|s| s.last_status_ok.map(|ok| u8::from(ok).to_string()),
    );
    family(
        "lifeboat_failures_total",
        "Failed or interrupted jobs of this source and kind in the history.",
        "counter",
        &|s| Some(s.failures.to_string()),
    );
    family(
        "lifeboat_jobs_total",
        "Finished jobs of this source and kind in the history.",
        "counter",
        &|s| Some(s.runs.to_string()),
    );
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Where the per-store gauges go: beside the textfile, `lifeboat.prom` ->
/// `lifeboat-stores.prom` (node_exporter reads every `*.prom` in the directory). They come
/// from a catalog read, not from the job history, so they have a file of their own.
pub fn stores_path(textfile: &Path) -> PathBuf {
    let stem = textfile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lifeboat".into());
    textfile.with_file_name(format!("{stem}-stores.prom"))
}

/// The per-store gauges.
pub fn render_stores(stores: &[crate::stores::StoreHealth]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, help: &str, value: &dyn Fn(&crate::stores::StoreHealth) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for h in stores {
                let _ = writeln!(out, "{name}{{store=\"{}\"}} {}", escape(&h.store), value(h));
            }
        };
    family(
        "lifeboat_store_up",
        "1 if the store could be listed at the last catalog read, else 0.",
        &|h| u64::from(h.error.is_none()),
    );
    family(
        "lifeboat_store_copies",
        "Complete copies of backups the store holds.",
        &|h| h.copies as u64,
    );
    family(
        "lifeboat_store_verified_copies",
        "Copies in the store whose bytes were hashed against their manifest.",
        &|h| h.verified as u64,
    );
    family(
        "lifeboat_store_behind",
        "Backups the store's retention keeps that it holds no verified copy of.",
        &|h| h.behind as u64,
    );
    family(
        "lifeboat_store_overdue",
        "Of those, the ones older than [check] copies_grace.",
        &|h| h.overdue as u64,
    );
    family(
        "lifeboat_store_stored_bytes",
        "Bytes of backups in the store.",
        &|h| h.stored_bytes,
    );
    out
}

/// Rewrites the per-store textfile beside `textfile`.
pub fn write_store_metrics(textfile: &Path, stores: &[crate::stores::StoreHealth]) -> Result<()> {
    write_atomic(&stores_path(textfile), &render_stores(stores))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so
/// the collector never reads half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let ctx = || format!("metrics textfile {}", path.display());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-metrics")
        .tempfile_in(dir)
        .map_err(Error::io(ctx()))?;
    tmp.write_all(text.as_bytes()).map_err(Error::io(ctx()))?;
    // node_exporter runs as another user and must be able to read the file.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(Error::io(ctx()))?;
    tmp.persist(path).map_err(|e| Error::io(ctx())(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::jobs::JobKind;

    #[test]
    fn store_gauges_go_beside_the_textfile() {
        assert_eq!(
            stores_path(Path::new("/var/lib/node_exporter/lifeboat.prom")),
            Path::new("/var/lib/node_exporter/lifeboat-stores.prom")
        );
        let h = crate::stores::StoreHealth {
            store: "offsite".into(),
            location: "s3://b".into(),
            level: crate::health::Level::Critical,
            error: None,
            copies: 5,
            verified: 4,
            stored_bytes: 1024,
            behind: 2,
            overdue: 1,
            newest_behind: None,
        };
        let text = render_stores(&[h]);
        for line in [
            "lifeboat_store_up{store=\"offsite\"} 1",
            "lifeboat_store_verified_copies{store=\"offsite\"} 4",
            "lifeboat_store_behind{store=\"offsite\"} 2",
            "lifeboat_store_overdue{store=\"offsite\"} 1",
            "# TYPE lifeboat_store_copies gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
    use crate::manifest::Trigger;

    fn job(kind: JobKind, source: &str, min: u32, status: JobStatus, bytes: u64) -> JobRecord {
        let start = Utc.with_ymd_and_hms(2026, 11, 24, 2, min, 0).unwrap();
        JobRecord {
            id: format!("j{min}"),
            kind,
            source: Some(source.into()),
            backup_id: None,
            trigger: Trigger::Scheduled,
            host: "h".into(),
            pid: 1,
            started_at: start,
            finished_at: Some(start + chrono::Duration::milliseconds(2500)),
            status,
            bytes,
            error: None,
            log: vec![],
            operator: None,
            restored: None,
        }
    }

    #[test]
    fn renders_the_newest_values_and_counts_failures() {
        let jobs = vec![
            job(JobKind::Backup, "shop", 3, JobStatus::Failed, 0),
            job(JobKind::Backup, "shop", 1, JobStatus::Succeeded, 1000),
            job(JobKind::Backup, "shop", 2, JobStatus::Succeeded, 2000),
            job(JobKind::Verify, "shop", 4, JobStatus::Interrupted, 0),
        ];
        let text = render(&jobs);
        let last_ok = Utc
            .with_ymd_and_hms(2026, 11, 24, 2, 2, 2)
            .unwrap()
            .timestamp();
        for line in [
            format!(
                "lifeboat_last_success_timestamp_seconds{{source=\"shop\",kind=\"backup\"}} {last_ok}"
            ),
            "lifeboat_last_size_bytes{source=\"shop\",kind=\"backup\"} 2000".into(),
            "lifeboat_last_duration_seconds{source=\"shop\",kind=\"backup\"} 2.500".into(),
            "lifeboat_last_success{source=\"shop\",kind=\"backup\"} 0".into(),
            "lifeboat_failures_total{source=\"shop\",kind=\"backup\"} 1".into(),
            "lifeboat_failures_total{source=\"shop\",kind=\"verify\"} 1".into(),
            "lifeboat_jobs_total{source=\"shop\",kind=\"backup\"} 3".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains(
                "lifeboat_last_success_timestamp_seconds{source=\"shop\",kind=\"verify\"}"
            )
        );
    }

    #[test]
    fn writes_atomically_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lifeboat.prom");
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
