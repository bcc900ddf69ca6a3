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
        let base = format!(
            "_lifeboat/drills/{}/{}",
            self.job.started_at.format("%Y"),
            self.job.id
        );
        let md = ObjectKey::new(format!("{base}.md"))?;
        let json = ObjectKey::new(format!("{base}.json"))?;
        store
            .put_bytes(
                &json,
                serde_json::to_vec_pretty(self)
                    .expect("reports serialize")
                    .into(),
            )
            .await?;
        store
            .put_bytes(&md, self.markdown().into_bytes().into())
            .await?;
        Ok(md)
    }
}
