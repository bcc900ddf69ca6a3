//! Restore reports as evidence: Markdown for an auditor, JSON for machines, stored in the
//! bucket under `_lifeboat/drills/` when a restore is run as a drill.
//!
//! Every value put into Markdown is escaped ([`md_text`], [`md_code`]): table names come from
//! restored dumps and keys and reports from the bucket, and none of them may break a table
//! row, forge a line or carry a terminal escape to whoever `cat`s the report.

use std::fmt::Write;

use serde::Serialize;

use crate::diff::RowStatus;
use crate::error::Result;
use crate::escape::{md_code, md_text};
use crate::jobs::{JobRecord, hostname};
use crate::pipeline::restore::RestoreReport;
use crate::state::{CacheKind, State};
use crate::storage::{ObjectKey, ObjectStore, ObjectStoreExt, StoreError};
use crate::when::short_age;

/// The most lifeboat reads of a stored drill report (JSON). Its own hold a line per table;
/// a larger one is not read at all.
pub const MAX_REPORT_BYTES: u64 = 4 * 1024 * 1024;
/// Where drill reports live in the bucket.
pub const DRILLS_PREFIX: &str = "_lifeboat/drills/";

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport<'a> {
    pub job: &'a JobRecord,
    /// Who ran it: the login name of the process.
    pub operator: String,
    pub host: String,
    pub restore: &'a RestoreReport,
    /// Seconds from the start of the restore to a verified, counted result.
    pub rto_seconds: f64,
    /// Age of the restored backup when the drill ran, in seconds.
    pub rpo_seconds: Option<i64>,
    pub result: &'static str,
}

impl<'a> DrillReport<'a> {
    pub fn new(
        job: &'a JobRecord,
        restore: &'a RestoreReport,
        backup_time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        DrillReport {
            job,
            operator: job.operator.clone().unwrap_or_else(crate::jobs::os_user),
            host: hostname(),
            restore,
            rto_seconds: (restore.finished_at - restore.started_at).num_milliseconds() as f64
                / 1000.0,
            rpo_seconds: backup_time.map(|t| (restore.started_at - t).num_seconds()),
            result: if restore.ok() { "passed" } else { "failed" },
        }
    }

    pub fn markdown(&self) -> String {
        let r = self.restore;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Restore drill {}: {}\n",
            md_text(&self.job.id),
            self.result.to_uppercase()
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| backup | {} |", md_code(&r.restored));
        let _ = writeln!(
            md,
            "| source | {} |",
            md_text(r.source.as_deref().unwrap_or("(foreign object)"))
        );
        let _ = writeln!(md, "| operator | {} |", md_text(&self.operator));
        let _ = writeln!(md, "| host | {} |", md_text(&self.host));
        let _ = writeln!(
            md,
            "| started | {} |",
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(md, "| target | {} |", md_code(&r.target.to_string()));
        let verified = if r.checksum_verified {
            "matches the manifest"
        } else {
            "no manifest to compare"
        };
        let _ = writeln!(md, "| sha256 | {} ({verified}) |", md_code(&r.sha256));
        let _ = writeln!(md, "| RTO (measured) | {:.1} s |", self.rto_seconds);
        if let Some(rpo) = self.rpo_seconds {
            let _ = writeln!(md, "| RPO (backup age) | {} |", rpo_text(rpo));
        }
        if r.diff.has_expected {
            let content = match r.content_compared {
                Some(n) => format!("compared for {n} tables"),
                None => "not in the backup (row counts only)".into(),
            };
            let _ = writeln!(md, "| content checksums | {content} |");
        }
        if !r.skipped.is_empty() {
            let _ = writeln!(md, "| skipped | {} |", md_text(&r.skipped.join(", ")));
        }
        let _ = writeln!(
            md,
            "\n## Row counts\n\n| table | expected | restored | delta | status |\n|---|---:|---:|---:|---|"
        );
        let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        for row in &r.diff.rows {
            let delta = row.delta().map_or("-".to_owned(), |d| format!("{d:+}"));
            let status = match row.status {
                RowStatus::Match | RowStatus::Measured => row.status.label().to_owned(),
                other => format!("**{}**", other.label()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {delta} | {status} |",
                md_text(&row.table),
                n(row.expected),
                n(row.restored)
            );
        }
        let findings = r.diff.findings().count();
        let _ = writeln!(
            md,
            "\n{}",
            if findings == 0 {
                format!("All {} tables match.", r.diff.rows.len())
            } else {
                format!("{findings} of {} tables differ.", r.diff.rows.len())
            }
        );
        md
    }

    /// Stores the report as `_lifeboat/drills/{yyyy}/{job_id}.md` and `.json`.
    pub async fn save(&self, store: &dyn ObjectStore) -> Result<ObjectKey> {
        let json = serde_json::to_vec_pretty(self).expect("reports serialize");
        store_evidence(store, self.job, json, self.markdown()).await
    }
}

async fn store_evidence(
    store: &dyn ObjectStore,
    job: &JobRecord,
    json: Vec<u8>,
    markdown: String,
) -> Result<ObjectKey> {
    let base = format!("{DRILLS_PREFIX}{}/{}", job.started_at.format("%Y"), job.id);
    let md = ObjectKey::new(format!("{base}.md"))?;
    let json_key = ObjectKey::new(format!("{base}.json"))?;
    store.put_bytes(&json_key, json.into()).await?;
    store.put_bytes(&md, markdown.into_bytes().into()).await?;
    Ok(md)
}

/// A drill that could not restore (a damaged object, a missing key, a full disk) is evidence
/// too: it is stored beside the passed ones with its one-line reason.
pub async fn save_failed_drill(
    store: &dyn ObjectStore,
    job: &JobRecord,
    backup: &str,
    source: Option<&str>,
    error: &str,
) -> Result<ObjectKey> {
    let operator = job.operator.clone().unwrap_or_else(crate::jobs::os_user);
    let host = hostname();
    let json = serde_json::json!({
        "job": job,
        "operator": operator,
        "host": host,
        "backup": backup,
        "source": source,
        "error": error,
        "result": "failed",
    });
    let mut md = String::new();
    let _ = writeln!(md, "# Restore drill {}: FAILED\n", md_text(&job.id));
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| backup | {} |", md_code(backup));
    let _ = writeln!(
        md,
        "| source | {} |",
        md_text(source.unwrap_or("(foreign object)"))
    );
    let _ = writeln!(md, "| operator | {} |", md_text(&operator));
    let _ = writeln!(md, "| host | {} |", md_text(&host));
    let _ = writeln!(
        md,
        "| started | {} |",
        job.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(md, "| result | FAILED |");
    let _ = writeln!(md, "\nThe restore did not complete: {}", md_text(error));
    store_evidence(
        store,
        job,
        serde_json::to_vec_pretty(&json).expect("reports serialize"),
        md,
    )
    .await
}

/// One stored drill report, as `report drills` lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DrillSummary {
    pub id: String,
    pub source: Option<String>,
    pub backup: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub operator: Option<String>,
    pub host: String,
    /// None when the drill failed before a verified restore.
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<i64>,
    pub tables: usize,
    pub findings: usize,
    pub result: String,
    /// The Markdown report beside the JSON.
    pub report: String,
}

impl DrillSummary {
    /// Reads a stored report's JSON (`key` is where it was found); `None` if it is not one.
    pub fn from_json(key: &str, bytes: &[u8]) -> Option<DrillSummary> {
        let d = Self::read(key, bytes)?;
        // Any other time is damage or a forgery, and would overflow arithmetic with it.
        crate::when::plausible(d.started_at).then_some(d)
    }

    fn read(key: &str, bytes: &[u8]) -> Option<DrillSummary> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let report = key.strip_suffix(".json").map(|k| format!("{k}.md"))?;
        let restore = &v["restore"];
        if restore.is_null() {
            // A drill that failed before a restore completed.
            return Some(DrillSummary {
                id: v["job"]["id"].as_str()?.to_owned(),
                source: v["source"].as_str().map(str::to_owned),
                backup: v["backup"].as_str()?.to_owned(),
                started_at: serde_json::from_value(v["job"]["started_at"].clone()).ok()?,
                operator: v["operator"].as_str().map(str::to_owned),
                host: v["host"].as_str().unwrap_or("?").to_owned(),
                rto_seconds: None,
                rpo_seconds: None,
                tables: 0,
                findings: 0,
                result: v["result"].as_str()?.to_owned(),
                report,
            });
        }
        let rows = restore["diff"]["rows"].as_array()?;
        Some(DrillSummary {
            id: v["job"]["id"].as_str()?.to_owned(),
            source: restore["source"].as_str().map(str::to_owned),
            backup: restore["restored"].as_str()?.to_owned(),
            started_at: serde_json::from_value(restore["started_at"].clone()).ok()?,
            operator: v["operator"].as_str().map(str::to_owned),
            host: v["host"].as_str().unwrap_or("?").to_owned(),
            rto_seconds: Some(v["rto_seconds"].as_f64()?),
            rpo_seconds: v["rpo_seconds"].as_i64(),
            tables: rows.len(),
            findings: rows
                .iter()
                .filter(|r| !matches!(r["status"].as_str(), Some("match" | "measured")))
                .count(),
            result: v["result"].as_str()?.to_owned(),
            report,
        })
    }
}

/// Every drill report in the bucket, oldest first, from `since` on. A report that cannot be
/// used (too large, not a report, an unusable key) is named in the returned warnings rather
/// than hiding the rest, once: with a `cache`, summaries and verdicts are kept by key, size and
/// time, so a report is read at most once.
pub async fn drill_history(
    store: &dyn ObjectStore,
    cache: Option<&State>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Vec<DrillSummary>, Vec<String>)> {
    let mut drills = Vec::new();
    let mut warnings = Vec::new();
    for obj in store.list_all(DRILLS_PREFIX).await? {
        if !obj.key.ends_with(".json") {
            continue;
        }
        let modified = obj
            .last_modified
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let cached = |kind| {
            cache
                .and_then(|c| c.cache_get(&obj.key, kind, obj.size, &modified).ok())
                .flatten()
        };
        let summary = if cached(CacheKind::Unusable).is_some() {
            None
        } else if let Some(d) =
            cached(CacheKind::Report).and_then(|b| serde_json::from_slice::<DrillSummary>(&b).ok())
        {
            Some(d)
        } else {
            match read_report(store, &obj.key, obj.size).await {
                Ok(d) => {
                    if let Some(c) = cache {
                        let body = serde_json::to_vec(&d).expect("summaries serialize");
                        let _ =
                            c.cache_put(&obj.key, CacheKind::Report, obj.size, &modified, &body);
                    }
                    Some(d)
                }
                Err(Unreadable::Now(why)) => {
                    warnings.push(format!("{} could not be read this time: {why}", obj.key));
                    None
                }
                Err(Unreadable::Never(why)) => {
                    if let Some(c) = cache {
                        let _ = c.cache_put(
                            &obj.key,
                            CacheKind::Unusable,
                            obj.size,
                            &modified,
                            why.as_bytes(),
                        );
                    }
                    warnings.push(format!("{} is skipped: {why}", obj.key));
                    None
                }
            }
        };
        if let Some(d) = summary.filter(|d| since.is_none_or(|t| d.started_at >= t)) {
            drills.push(d);
        }
    }
    drills.sort_by_key(|d| d.started_at);
    Ok((drills, warnings))
}

enum Unreadable {
    /// Perhaps passing (the store did not answer): try again next time.
    Now(String),
    /// The object itself is unusable: remember that.
    Never(String),
}

async fn read_report(
    store: &dyn ObjectStore,
    key: &str,
    size: u64,
) -> std::result::Result<DrillSummary, Unreadable> {
    let key = ObjectKey::new(key).map_err(|e| Unreadable::Never(format!("key {}", e.reason)))?;
    if size > MAX_REPORT_BYTES {
        return Err(Unreadable::Never(format!(
            "it is {size} bytes, more than the {MAX_REPORT_BYTES} lifeboat reads of a report"
        )));
    }
    let bytes = match store.get_bounded(&key, MAX_REPORT_BYTES).await {
        Ok(b) => b,
        Err(e @ StoreError::TooLarge { .. }) => return Err(Unreadable::Never(e.to_string())),
        Err(e) => return Err(Unreadable::Now(e.to_string())),
    };
    DrillSummary::from_json(key.as_str(), &bytes)
        .ok_or_else(|| Unreadable::Never("it is not a readable drill report".into()))
}

fn rpo_text(seconds: i64) -> String {
    crate::when::seconds(seconds).map_or_else(|| "?".into(), short_age)
}

/// The drill history as a Markdown table for an audit.
pub fn drills_markdown(drills: &[DrillSummary]) -> String {
    let mut md = String::from(
        "# Restore drills\n\n| started (UTC) | source | backup | result | tables | findings | RTO | RPO | operator@host | report |\n|---|---|---|---|---:|---:|---:|---:|---|---|\n",
    );
    for d in drills {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}@{} | {} |",
            d.started_at.format("%Y-%m-%d %H:%M:%S"),
            md_text(d.source.as_deref().unwrap_or("-")),
            md_code(&d.backup),
            md_text(&d.result.to_uppercase()),
            d.tables,
            d.findings,
            d.rto_seconds
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e12)
                .map_or("-".into(), |s| format!("{s:.1} s")),
            d.rpo_seconds.map_or("-".into(), rpo_text),
            md_text(d.operator.as_deref().unwrap_or("?")),
            md_text(&d.host),
            md_code(&d.report)
        );
    }
    let passed = drills.iter().filter(|d| d.result == "passed").count();
    let _ = writeln!(md, "\n{} drill(s), {passed} passed.", drills.len());
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> DrillSummary {
        DrillSummary {
            id: "20261123T020000Z-drill-0001".into(),
            source: Some("shop".into()),
            backup: "20261122T020000Z-7f3a".into(),
            started_at: "2026-11-23T02:00:00Z".parse().unwrap(),
            operator: Some("ops".into()),
            host: "db1".into(),
            rto_seconds: Some(1.5),
            rpo_seconds: Some(3600),
            tables: 3,
            findings: 0,
            result: "passed".into(),
            report: "_lifeboat/drills/2026/x.md".into(),
        }
    }

    #[test]
    fn hostile_fields_stay_in_their_cells_and_huge_numbers_do_not_panic() {
        let mut d = summary();
        d.host = "db1 | forged | row |\n| PASSED | x".into();
        d.operator = Some("\x1b]52;c;cGF3bmVk\x07<script>".into());
        d.backup = "a`b|c\u{202e}".into();
        d.rpo_seconds = Some(i64::MAX);
        d.rto_seconds = Some(f64::MAX);
        let md = drills_markdown(&[d, summary()]);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 2026")).collect();
        assert_eq!(rows.len(), 2, "{md}");
        for row in &rows {
            // Ten cells: eleven unescaped pipes.
            let bars = row
                .match_indices('|')
                .filter(|(i, _)| !row[..*i].ends_with('\\'));
            assert_eq!(bars.count(), 11, "{row}");
        }
        assert!(
            !md.chars().any(|c| c != '\n' && crate::escape::is_unsafe(c)),
            "{md:?}"
        );
        assert!(!md.contains("<script>"), "{md}");
        assert!(
            rows[0].contains("| ? |"),
            "an impossible RPO shows as ?: {}",
            rows[0]
        );
    }

    #[test]
    fn implausible_reports_are_not_read() {
        let json = serde_json::json!({
            "job": {"id": "x", "started_at": "+200000-01-01T00:00:00Z"},
            "backup": "b", "result": "failed", "host": "h",
        });
        let bytes = serde_json::to_vec(&json).unwrap();
        assert!(DrillSummary::from_json("_lifeboat/drills/2026/x.json", &bytes).is_none());
    }
}
