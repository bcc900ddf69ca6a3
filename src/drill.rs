//! Restore drills: restore a backup into a scratch database, prove it with the row-count diff,
//! measure RTO and RPO, keep the report in the bucket as evidence, and drop the scratch copy.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::jobs::JobRecord;
use crate::manifest::EngineKind;
use crate::pipeline::restore::{RestoreFrom, RestoreOptions, RestoreReport, RestoreTarget};
use crate::progress::Progress;
use crate::report::DrillReport;
use crate::storage::ObjectKey;
use crate::{Lifeboat, Selector};

#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// The source to drill (needed when several are configured and no backup is named).
    pub source: Option<String>,
    /// A backup id; default: the newest complete backup.
    pub backup: Option<String>,
    /// Keep the scratch database instead of dropping it.
    pub keep: bool,
    /// Store the report under `_lifeboat/drills/` (`verify --deep` does not).
    pub save_report: bool,
}

/// What a drill proved.
#[derive(Debug, Clone)]
pub struct Drill {
    pub restore: RestoreReport,
    pub backup_time: Option<DateTime<Utc>>,
    /// Where the report was stored, when it was.
    pub report_key: Option<ObjectKey>,
    /// The scratch database, when kept.
    pub kept: Option<RestoreTarget>,
}

impl Drill {
    pub fn passed(&self) -> bool {
        self.restore.ok()
    }
}

impl Lifeboat {
    /// Runs a drill. The job record comes back whatever the outcome; `Ok` means the restore
    /// ran to a diff ([`Drill::passed`] says whether it matched), `Err` that it could not.
    pub async fn drill(
        &self,
        opts: &DrillOptions,
        progress: Arc<dyn Progress>,
        cancel: CancellationToken,
    ) -> Result<(JobRecord, Result<Drill>)> {
        if let Some(s) = &opts.source {
            self.source(s)?;
        }
        let catalog = self.catalog().await?;
        let selector = match &opts.backup {
            Some(id) => Selector::Id(id.clone()),
            None => Selector::Latest {
                source: opts.source.clone(),
            },
        };
        let from = self.select(&catalog, &selector)?;
        let (source, id, backup_time) = match &from {
            RestoreFrom::Backup(b) => (b.source.clone(), b.id.to_string(), Some(b.time())),
            RestoreFrom::Foreign(f) => ("foreign".to_owned(), f.meta.key.clone(), None),
        };
        if let (Some(want), RestoreFrom::Backup(b)) = (&opts.source, &from)
            && &b.source != want
        {
            return Err(Error::Invalid(format!(
                "backup {id} belongs to source {}, not {want}",
                b.source
            )));
        }
        // The scratch restore reads the bucket only, but a prune must not delete the backup
        // under it, and the daemon must not drill the same source twice at once.
        let _lock = match &from {
            RestoreFrom::Backup(b) => Some(self.lock_source(&b.source)?),
            RestoreFrom::Foreign(_) => None,
        };
        let target = self.drill_target(&source, &id)?;
        let restore_opts = RestoreOptions {
            target: target.clone(),
            for_source: None,
            force_target: false,
            live: None,
            integrity_check: true,
            drill: true,
            staging: self.staging(),
            privileged: false,
        };
        let (record, result) = self.restore(from, restore_opts, progress, cancel).await;
        let restore = match result {
            Ok(r) => r,
            Err(Error::RowCountMismatch(r)) => *r,
            Err(e) => {
                // A failed drill's restore drops what it created itself.
                if opts.save_report
                    && let Err(save) = crate::report::save_failed_drill(
                        self.store.as_ref(),
                        &record,
                        &id,
                        backup_time.map(|_| source.as_str()),
                        &e.to_string(),
                    )
                    .await
                {
                    tracing::warn!("the failed drill's report could not be stored: {save}");
                }
                return Ok((record, Err(e)));
            }
        };
        let kept = if opts.keep {
            Some(restore.target.clone())
        } else {
            if let Err(e) = self.drop_scratch(&restore.target).await {
                tracing::warn!("the drill's scratch database was not dropped: {e}");
            }
            None
        };
        // Dropped or kept on purpose: either way no longer the drill's leftover. (One the drop
        // failed to remove stays recorded, for a later sweep.)
        if (kept.is_some()
            || !restore
                .target
                .engine()
                .scratch_exists(&restore.target)
                .await)
            && let Err(e) = self.state.delete_debris_of_job(&record.id)
        {
            tracing::warn!("cannot clear the drill's debris records: {e}");
        }
        let report_key = if opts.save_report {
            let report = DrillReport::new(&record, &restore, backup_time);
            match report.save(self.store.as_ref()).await {
                Ok(key) => Some(key),
                Err(e) => {
                    return Ok((
                        record,
                        Err(Error::Invalid(format!(
                            "the drill ran but its report could not be stored: {e}"
                        ))),
                    ));
                }
            }
        } else {
            None
        };
        Ok((
            record,
            Ok(Drill {
                restore,
                backup_time,
                report_key,
                kept,
            }),
        ))
    }

    /// A fresh scratch database: drills never reuse (or replace) an earlier one.
    /// Foreign objects (no source) are drilled into SQLite.
    fn drill_target(&self, source: &str, id: &str) -> Result<RestoreTarget> {
        let unique = format!("{:08x}", fastrand::u32(..));
        let engine = self
            .config
            .source(source)
            .map_or(EngineKind::Sqlite, |s| s.engine);
        self.scratch_target(engine, source, None, &format!("drill_{unique}_{id}"))
    }
}
