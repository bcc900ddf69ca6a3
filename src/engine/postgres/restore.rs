//! Restoring into PostgreSQL: download (hashing, decompressing) into a staging file, verify,
//! create the restore role and the scratch database it owns, `pg_restore -j N` (or lifeboat's
//! own load of a plain SQL dump) logged in as that role, count, diff. A failed or cancelled
//! restore drops the database it created and its role.

use chrono::{DateTime, Utc};

use super::{Conn, Postgres, database, role, tools};
use crate::debris::Debris;
use crate::engine::postgres;
use crate::error::{Error, Result};
use crate::pipeline::restore::{Object, RestoreFrom, RestoreReport, RestoreRun, RestoreTarget};
use crate::progress::Phase;
use crate::sniff::Content;

/// Where a PostgreSQL restore goes.
struct Scratch<'a> {
    admin: tokio_postgres::Client,
    server: &'a Conn,
    database: &'a str,
    server_major: u32,
    /// The oldest pg_restore that can load it.
    min_major: u32,
    /// What the backup recorded of the source database (encoding, locale, settings, grants).
    source_db: Option<crate::manifest::DatabaseInfo>,
}

impl RestoreRun<'_> {
    pub(super) async fn restore_postgres(
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
        } = self.object(&Postgres)?;
        let admin = server.connect().await?;
        let (_, server_major) = postgres::server_version(&admin).await?;
        let is_source = self
            .pg_source()
            .and_then(|s| postgres::source_conn(s).ok())
            .is_some_and(|s| s.same_server(server) && s.dbname == database);
        // A restore only ever creates its database. Loading over an existing one (pg_restore
        // --clean) cannot be made to work for every schema: it stops at the first object it
        // cannot drop (an inherited constraint of a partition) and leaves the database half
        // loaded. A proven copy replaces a database with `promote` instead.
        if is_source {
            return Err(Error::DatabaseIsSource(database.to_owned()));
        }
        if self.opts.force_target {
            return Err(Error::Refused(Box::new(Error::Invalid(format!(
                "a PostgreSQL restore never loads an existing database (--force-target {database}): restore into a new database, then `lifeboat promote NEW` puts the proven copy in place of the source and keeps the old one"
            )))));
        }
        if postgres::database_exists(&admin, database).await? {
            return Err(Error::DatabaseExists(database.to_owned()));
        }
        let source_db = match self.from {
            RestoreFrom::Backup(b) => b
                .manifest
                .as_ref()
                .and_then(|m| m.postgres.as_ref())
                .and_then(|p| p.database.clone()),
            RestoreFrom::Foreign(_) => None,
        };
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
            server_major,
            min_major,
            source_db,
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

    /// The configured source restored for, when it is a PostgreSQL source: the guard for
    /// its own database and its `bin_dir` apply.
    fn pg_source(&self) -> Option<&crate::config::SourceConfig> {
        self.source
            .filter(|s| s.engine == crate::manifest::EngineKind::Postgres)
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
            server_major,
            min_major,
            source_db,
        } = target;
        let privileged = self.opts.privileged;
        let Object {
            key,
            expected,
            unseal,
        } = object;
        let bin_dir = self.pg_source().and_then(|s| s.bin_dir.as_deref());
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
                staging,
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
            Content::Sql => None,
            _ => Some(tools::find("pg_restore", bin_dir, min_major)?),
        };
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
        // Recorded before it exists: a killed restore's database (and its role) is dropped by
        // a later run, and a retry under the same name then works.
        let scratch = match &self.scratch_source() {
            Some(source) => Some(self.debris.record(&Debris::ScratchDatabase {
                source: source.clone(),
                database: database.to_owned(),
            })?),
            _ => None,
        };
        let mut skipped = Vec::new();
        let restore_role = if privileged {
            (self.log)(format!(
                "privileged restore of an authenticated backup: as {}, keeping owners and grants",
                server.user
            ));
            None
        } else {
            Some(role::create(&admin, database).await?)
        };
        let created = database::create(
            &admin,
            database,
            restore_role.as_ref().map(|r| r.name.as_str()),
            source_db.as_ref(),
            server_major,
        )
        .await;
        let locale_note = match created {
            Ok(note) => note,
            Err(e) => {
                if let Some(role) = &restore_role {
                    let _ = role::drop_role(&admin, &role.name).await;
                }
                return Err(e);
            }
        };
        (self.log)(format!(
            "created database {database}{}",
            source_db
                .as_ref()
                .map(|d| format!(
                    " with the source's encoding {} and locale {}",
                    d.encoding, d.lc_collate
                ))
                .unwrap_or_default()
        ));
        if let Some(note) = locale_note {
            (self.log)(note);
            skipped.push("locale".to_owned());
        }
        if let Some(role) = &restore_role {
            (self.log)(format!(
                "restoring as role {}, owner of {database} only",
                role.name
            ));
            // What a least-privilege copy leaves out: the copy proves the data, promote
            // checks that the application's rights do not depend on what is missing.
            skipped.extend(["owners", "GRANTs", "subscriptions"].map(str::to_owned));
            if source_db.as_ref().is_some_and(|d| {
                !d.settings.is_empty() || d.comment.is_some() || d.grants.is_some()
            }) {
                skipped.push("database settings".to_owned());
            }
        }
        let target = match &restore_role {
            Some(role) => role.login(&server.with_dbname(database)),
            None => server.with_dbname(database),
        };
        let loaded = async {
            match (format.content, &tool) {
                (Content::Sql, _) | (_, None) => {
                    let n = postgres::plain::load(&target, staged.path(), &self.cancel).await?;
                    (self.log)(format!(
                        "loaded {} statements of plain SQL into {database}, leaving out {} that set owners or grants",
                        n.statements, n.skipped
                    ));
                }
                (_, Some(tool)) => {
                    // The restore role must be able to log in before pg_restore is started
                    // as it, or pg_restore's own message would be all there is to go on.
                    if restore_role.is_some() {
                        target.connect().await.map_err(login_hint)?;
                    }
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
                        privileged,
                        &self.cancel,
                    )
                    .await?;
                }
            }
            self.progress.phase(Phase::Count, None);
            // Counted as the role too: whatever the dump left in the database (a search_path
            // set on it, functions in its schemas) never runs with more rights than it had.
            let counted = postgres::fingerprint_database(
                &target,
                !want_content.is_empty(),
                &self.cancel,
            )
            .await?;
            match (&restore_role, &source_db) {
                (Some(role), _) => role::settle(&admin, database, role).await?,
                // A copy meant for promotion gets what the dump leaves out about the
                // database itself (after the load: a setting such as
                // default_transaction_read_only must not apply to it).
                (None, Some(info)) => {
                    for note in database::apply(&admin, database, info).await? {
                        (self.log)(note);
                    }
                    (self.log)(format!(
                        "gave {database} the source database's settings, comment and grants"
                    ));
                }
                (None, None) => {}
            }
            Ok(counted)
        }
        .await;
        drop(staged);
        let counted = match loaded {
            Ok(counted) => counted,
            Err(e) => {
                drop(admin);
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
                return Err(e);
            }
        };
        drop(admin);
        // The database now belongs to whoever asked for it; a drill drops it itself.
        if let Some(r) = scratch {
            if self.opts.drill { r.keep() } else { r.clear() }
        }
        (self.log)(format!("restored into {target} ({raw_bytes} bytes)"));

        let (diff, content_compared) = self.diff(&counted.tables, counted.content.as_ref()).await?;
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
            created: true,
            sha256,
            checksum_verified: expected.is_some(),
            authenticity: None,
            stored_bytes,
            raw_bytes,
            started_at,
            finished_at,
            diff,
            content_compared,
            privileged,
            skipped,
            fingerprint: counted.fingerprint,
        };
        Ok((report, finished_at))
    }
}

/// A restore role that cannot log in is almost always pg_hba.conf.
fn login_hint(e: Error) -> Error {
    match e {
        Error::Postgres { context, detail } => Error::Postgres {
            context,
            detail: format!(
                "{detail} (the restore logs in as its own role with a password over the same connection as the scratch server's user: pg_hba.conf must accept password logins, scram-sha-256 or md5, for roles named lifeboat_owner_*; see docs/postgres.md)"
            ),
        },
        other => other,
    }
}
