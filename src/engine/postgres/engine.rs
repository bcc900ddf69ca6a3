//! PostgreSQL's logical backups behind the engine seam: `pg_dump` snapshots, scratch
//! databases on the source's (or the scratch) server.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{conn, count_database, database_exists, drop_database, scratch_server, source_conn};
use crate::Lifeboat;
use crate::config::{Config, SourceConfig};
use crate::engine::{BoxFuture, Engine, LiveSource, RestoreTarget, Snapshot, SnapshotJob};
use crate::error::{Error, Result};
use crate::jobs::{Job, RestoredCopy};
use crate::manifest::{EngineKind, TableCount};
use crate::pipeline::restore::{RestoreReport, RestoreRun};
use crate::progress::Phase;
use crate::promote::PromotePlan;
use crate::sniff::{Content, Format};

/// PostgreSQL, one database at a time.
pub struct Postgres;

/// A target or live source of another engine, handed here by mistake.
fn not_mine(what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what} is not a PostgreSQL database"))
}

impl Engine for Postgres {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn check_config(&self, source: &SourceConfig) -> std::result::Result<(), String> {
        for url in source.url.iter().chain(&source.scratch_url) {
            conn::check_url(url)?;
        }
        if source.scratch_password_env.is_some() && source.scratch_url.is_none() {
            return Err("scratch_password_env needs scratch_url".into());
        }
        Ok(())
    }

    fn loads(&self, format: Format) -> bool {
        matches!(format.content, Content::PgCustom | Content::Sql)
    }

    fn has_rights(&self) -> bool {
        true
    }

    fn snapshot<'a>(
        &'a self,
        source: &'a SourceConfig,
        job: SnapshotJob<'a>,
    ) -> BoxFuture<'a, Result<Snapshot>> {
        Box::pin(async move {
            job.progress.phase(Phase::Snapshot, None);
            super::snapshot(&source.name, source, job.content_checksums, job.cancel).await
        })
    }

    fn live(&self, source: &SourceConfig) -> Result<LiveSource> {
        Ok(LiveSource::Postgres(source_conn(source)?))
    }

    fn count<'a>(
        &'a self,
        live: &'a LiveSource,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<Vec<TableCount>>> {
        Box::pin(async move {
            match live {
                LiveSource::Postgres(conn) => Ok(count_database(conn, false, cancel).await?.0),
                other => Err(not_mine(format!("{other:?}"))),
            }
        })
    }

    fn scratch_name(&self, _config: &Config, _source: &str, label: &str) -> String {
        super::scratch_name(label)
    }

    fn target(&self, source: Result<&SourceConfig>, name: &str) -> Result<RestoreTarget> {
        let source = source?;
        if source.engine != EngineKind::Postgres {
            return Err(Error::Invalid(format!(
                "source {} is not a PostgreSQL source",
                source.name
            )));
        }
        super::validate_db_name(name)?;
        Ok(RestoreTarget::Postgres {
            server: scratch_server(source)?,
            database: name.to_owned(),
        })
    }

    fn restore<'a>(
        &'a self,
        run: &'a RestoreRun<'a>,
        started_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(RestoreReport, DateTime<Utc>)>> {
        Box::pin(async move {
            match &run.opts.target {
                RestoreTarget::Postgres { server, database } => {
                    run.restore_postgres(server, database, started_at).await
                }
                other => Err(not_mine(other)),
            }
        })
    }

    fn scratch_exists<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let RestoreTarget::Postgres { server, database } = target else {
                return false;
            };
            match server.connect().await {
                Ok(client) => database_exists(&client, database).await.unwrap_or(true),
                Err(_) => true,
            }
        })
    }

    fn drop_scratch<'a>(&'a self, target: &'a RestoreTarget) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match target {
                RestoreTarget::Postgres { server, database } => {
                    drop_database(server, database).await
                }
                other => Err(not_mine(other)),
            }
        })
    }

    fn plan_promote<'a>(
        &'a self,
        lb: &'a Lifeboat,
        source: &'a SourceConfig,
        restored: &'a RestoredCopy,
        plan: &'a mut PromotePlan,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(lb.plan_postgres(source, restored, plan))
    }

    fn promote<'a>(
        &'a self,
        source: &'a SourceConfig,
        plan: &'a PromotePlan,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(super::promote::promote_database(source, plan, job))
    }
}
