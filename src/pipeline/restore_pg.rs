//! Restoring into PostgreSQL: download (hashing, decompressing) into a staging file, verify,
//! create the scratch database, `pg_restore -j N` (or `psql` for a plain SQL dump), count,
//! diff. A failed or cancelled restore drops the database it created.

use chrono::{DateTime, Utc};

use super::restore::{Object, RestoreFrom, RestoreReport, RestoreRun, RestoreTarget};
use crate::debris::Debris;
use crate::engine::postgres::{self, Conn, tools};
use crate::error::{Error, Result};
use crate::manifest::EngineKind;
use crate::progress::Phase;
use crate::sniff::Content;

/// Where a PostgreSQL restore goes.
struct Scratch<'a> {
    admin: tokio_postgres::Client,
    server: &'a Conn,
    database: &'a str,
    /// The database existed before (restoring over it was forced): never dropped.
    exists: bool,
    /// The oldest pg_restore that can load it.
    min_major: u32,
}

impl RestoreRun<'_> {
    pub(super) async fn run_postgres(
        &self,
        server: &Conn,
        database: &str,
        started_at: DateTime<Utc>,
    ) -> Result<(RestoreReport, DateTime<Utc>)> {
        postgres::validate_db_name(database)?;
        let Object {
            key,
            expected,
            unseal,
        } = self.object(EngineKind::Postgres)?;
        let admin = server.connect().await?;
        let (_, server_major) = postgres::server_version(&admin).await?;
        let is_source = self
            .source_conn
            .as_ref()
            .is_some_and(|s| s.same_server(server) && s.dbname == database);
        let exists = postgres::database_exists(&admin, database).await?;
        if is_source && !self.opts.force_target {
            return Err(Error::DatabaseIsSource(database.to_owned()));
        }
        if exists && !self.opts.force_target {
            return Err(Error::DatabaseExists(database.to_owned()));
        }
        // pg_restore must be at least as new as the server it loads and the pg_dump that wrote
        // the archive.
        let dump_major = match self.from {
            RestoreFrom::Backup(b) => b
                .manifest
                .as_ref()
                .and_then(|m| m.postgres.as_ref())
                .and_then(|p| tools::major_of(&p.pg_dump_version)),
            RestoreFrom::Foreign(_) => None,
        };
        let min_major = server_major.max(dump_major.unwrap_or(0));

        // The whole dump is staged here; recorded, so that a killed restore's copy is swept.
        let (staging, staging_record) = self.debris.staging_dir(&self.opts.staging)?;
        let target = Scratch {
            admin,
            server,
            database,
            exists,
            min_major,
        };
        let object = Object {
            key,
            expected,
            unseal,
        };
        let result = self
            .stage_and_load(target, object, &staging, started_at)
            .await;
        staging_record.remove_dir(&staging);
        result
    }

    /// The configured source whose scratch server this restore uses, for a later sweep.
    fn scratch_source(&self) -> Option<String> {
        match self.from {
            RestoreFrom::Backup(b) => Some(b.source.clone()),
            RestoreFrom::Foreign(_) => self.opts.for_source.clone(),
        }
    }

    async fn stage_and_load(
        &self,
        target: Scratch<'_>,
        object: Object,
        staging: &std::path::Path,
        started_at: DateTime<Utc>,
    ) -> Result<(RestoreReport, DateTime<Utc>)> {
        let Scratch {
            admin,
            server,
            database,
            exists,
            min_major,
        } = target;
        let Object {
            key,
            expected,
            unseal,
        } = object;
        let bin_dir = self.bin_dir.as_deref();
        let staged = tempfile::Builder::new()
            .prefix("lifeboat-restore-")
            .tempfile_in(staging)
            .map_err(Error::io("create a staging file"))?;
        let file = staged
            .reopen()
            .map_err(Error::io("open the staging file"))?;
        let (sha256, stored_bytes, format, raw_bytes) = self
            .fetch(
                &key,
                &expected,
                Content::PgCustom,
                unseal,
                move |_, mut reader| {
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                    let n = std::io::copy(&mut reader, &mut out)
                        .map_err(Error::io("decompress the dump into the staging file"))?;
                    std::io::Write::flush(&mut out).map_err(Error::io("write the staging file"))?;
                    Ok(n)
                },
            )
            .await?;
        if !matches!(format.content, Content::PgCustom | Content::Sql) {
            return Err(Error::Invalid(format!(
                "{key} holds {format}, which cannot be restored into PostgreSQL"
            )));
        }
        let tool = match format.content {
            Content::Sql => "psql",
            _ => "pg_restore",
        };
        let tool = tools::find(tool, bin_dir, min_major)?;
        if format.content == Content::PgCustom {
            let path = staged.path().to_path_buf();
            match tokio::task::spawn_blocking(move || postgres::toc::add_offsets(&path)).await {
                Ok(Ok(n)) if n > 0 => {
                    (self.log)(format!("recorded data offsets of {n} archive entries"))
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => (self.log)(format!("archive offsets not recorded: {e}")),
                Err(e) => (self.log)(format!("archive offsets not recorded: {e}")),
            }
        }

        let want_content = self.want_content();
        self.progress.phase(Phase::Load, None);
        let scratch = if exists {
            None
        } else {
            // Recorded before it exists: a killed restore's database is dropped by a later
            // run, and a retry under the same name then works.
            let recorded = match &self.scratch_source() {
                Some(source) => Some(self.debris.record(&Debris::ScratchDatabase {
                    source: source.clone(),
                    database: database.to_owned(),
                })?),
                None => None,
            };
            postgres::create_database(&admin, database).await?;
            (self.log)(format!("created database {database}"));
            recorded
        };
        drop(admin);
        let target = server.with_dbname(database);
        let loaded = async {
            match format.content {
                Content::Sql => {
                    postgres::run_psql(&target, &tool.path, staged.path(), &self.cancel).await
                }
                _ => {
                    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
                    (self.log)(format!(
                        "pg_restore {} -j {jobs} into {database}",
                        tool.version
                    ));
                    postgres::run_pg_restore(
                        &target,
                        &tool.path,
                        staged.path(),
                        jobs,
                        exists,
                        &self.cancel,
                    )
                    .await
                }
            }?;
            self.progress.phase(Phase::Count, None);
            postgres::count_database(&target, !want_content.is_empty(), &self.cancel).await
        }
        .await;
        drop(staged);
        let (tables, content) = match loaded {
            Ok(counted) => counted,
            Err(e) => {
                if !exists {
                    match postgres::drop_database(server, database).await {
                        Ok(()) => {
                            (self.log)(format!("dropped the partial database {database}"));
                            if let Some(r) = scratch {
                                r.clear();
                            }
                        }
                        Err(d) => (self.log)(format!(
                            "could not drop the partial database {database} (a later run will): {d}"
                        )),
                    }
                }
                return Err(e);
            }
        };
        // The database now belongs to whoever asked for it; a drill drops it itself.
        if let Some(r) = scratch {
            if self.opts.drill { r.keep() } else { r.clear() }
        }
        (self.log)(format!("restored into {target} ({raw_bytes} bytes)"));

        let diff = self.diff(&tables, content.as_ref()).await?;
        let finished_at = Utc::now();
        let report = RestoreReport {
            restored: self.from.label(),
            source: match self.from {
                RestoreFrom::Backup(b) => Some(b.source.clone()),
                RestoreFrom::Foreign(_) => None,
            },
            format: format.to_string(),
            target: RestoreTarget::Postgres {
                server: server.clone(),
                database: database.to_owned(),
            },
            created: !exists,
            sha256,
            checksum_verified: expected.is_some(),
            stored_bytes,
            raw_bytes,
            started_at,
            finished_at,
            diff,
        };
        Ok((report, finished_at))
    }
}
