//! Restore reports as evidence: Markdown for an auditor, JSON for machines, stored in the
//! bucket under `_lifeboat/drills/` when a restore is run as a drill.

use std::fmt::Write;

use serde::Serialize;

use crate::diff::RowStatus;
use crate::error::Result;
use crate::jobs::{JobRecord, hostname};
use crate::pipeline::restore::RestoreReport;
use crate::storage::{ObjectKey, ObjectStore, ObjectStoreExt};

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
            operator: operator(),
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
            self.job.id,
            self.result.to_uppercase()
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| backup | `{}` |", r.restored);
        let _ = writeln!(
            md,
            "| source | {} |",
            r.source.as_deref().unwrap_or("(foreign object)")
        );
        let _ = writeln!(md, "| operator | {} |", self.operator);
        let _ = writeln!(md, "| host | {} |", self.host);
        let _ = writeln!(
            md,
            "| started | {} |",
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(md, "| target | `{}` |", r.target);
        let verified = if r.checksum_verified {
            "matches the manifest"
        } else {
            "no manifest to compare"
        };
        let _ = writeln!(md, "| sha256 | `{}` ({verified}) |", r.sha256);
        let _ = writeln!(md, "| RTO (measured) | {:.1} s |", self.rto_seconds);
        if let Some(rpo) = self.rpo_seconds {
            let _ = writeln!(
                md,
                "| RPO (backup age) | {} |",
                crate::when::short_age(chrono::Duration::seconds(rpo))
            );
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
                row.table,
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
    let base = format!(
        "_lifeboat/drills/{}/{}",
        job.started_at.format("%Y"),
        job.id
    );
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
    let operator = operator();
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
    let _ = writeln!(md, "# Restore drill {}: FAILED\n", job.id);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| backup | `{backup}` |");
    let _ = writeln!(md, "| source | {} |", source.unwrap_or("(foreign object)"));
    let _ = writeln!(md, "| operator | {operator} |");
    let _ = writeln!(md, "| host | {host} |");
    let _ = writeln!(
        md,
        "| started | {} |",
        job.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(md, "| result | FAILED |");
    let _ = writeln!(md, "\nThe restore did not complete: {error}");
    store_evidence(
        store,
        job,
        serde_json::to_vec_pretty(&json).expect("reports serialize"),
        md,
    )
    .await
}

fn operator() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        // cron and systemd often run without USER: the uid still says who it was.
        // SAFETY: getuid cannot fail and touches no memory.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
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
    fn from_json(key: &str, bytes: &[u8]) -> Option<DrillSummary> {
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
/// read is named in the returned warnings rather than hiding the rest.
pub async fn drill_history(
    store: &dyn ObjectStore,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Vec<DrillSummary>, Vec<String>)> {
    let mut drills = Vec::new();
    let mut warnings = Vec::new();
    for obj in store.list_all("_lifeboat/drills/").await? {
        if !obj.key.ends_with(".json") {
            continue;
        }
        let key = ObjectKey::new(obj.key.clone())?;
        let bytes = store.get_bytes(&key).await?;
        match DrillSummary::from_json(&obj.key, &bytes) {
            Some(d) if since.is_none_or(|t| d.started_at >= t) => drills.push(d),
            Some(_) => {}
            None => warnings.push(format!("{} is not a readable drill report", obj.key)),
        }
    }
    drills.sort_by_key(|d| d.started_at);
    Ok((drills, warnings))
}

/// The drill history as a Markdown table for an audit.
pub fn drills_markdown(drills: &[DrillSummary]) -> String {
    let mut md = String::from(
        "# Restore drills\n\n| started (UTC) | source | backup | result | tables | findings | RTO | RPO | operator@host | report |\n|---|---|---|---|---:|---:|---:|---:|---|---|\n",
    );
    for d in drills {
        let _ = writeln!(
            md,
            "| {} | {} | `{}` | {} | {} | {} | {} | {} | {}@{} | `{}` |",
            d.started_at.format("%Y-%m-%d %H:%M:%S"),
            d.source.as_deref().unwrap_or("-"),
            d.backup,
            d.result.to_uppercase(),
            d.tables,
            d.findings,
            d.rto_seconds.map_or("-".into(), |s| format!("{s:.1} s")),
            d.rpo_seconds.map_or("-".into(), |s| crate::when::short_age(
                chrono::Duration::seconds(s)
            )),
            d.operator.as_deref().unwrap_or("?"),
            d.host,
            d.report
        );
    }
    let passed = drills.iter().filter(|d| d.result == "passed").count();
    let _ = writeln!(md, "\n{} drill(s), {passed} passed.", drills.len());
    md
}
