//! Promoting a PostgreSQL copy: given to the source database's owner and the source's
//! database-level settings, comment and grants; new connections to the source refused and its
//! sessions ended; then both databases renamed in one transaction (see [`crate::promote`]).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{database, role};
use crate::Lifeboat;
use crate::config::SourceConfig;
use crate::engine::{postgres, quote_ident};
use crate::error::{Error, Result};
use crate::jobs::RestoredCopy;
use crate::manifest::DatabaseInfo;
use crate::promote::{PromotePlan, refused};

impl Lifeboat {
    pub(super) async fn plan_postgres(
        &self,
        config: &SourceConfig,
        restored: &RestoredCopy,
        plan: &mut PromotePlan,
    ) -> Result<()> {
        let source = postgres::source_conn(config)?;
        let server = postgres::scratch_server(config)?;
        if !server.same_server(&source) {
            return Err(refused(format!(
                "the copy {} is on the scratch server {}:{}, not on the source's server: promote renames databases within one server (restore onto the source's server, without scratch_url, for a copy to promote)",
                restored.copy,
                server.hosts.join(","),
                server.port
            )));
        }
        let target = self.postgres_target(&config.name, Some(&restored.copy), "")?;
        if target.to_string() != restored.target {
            return Err(refused(format!(
                "{} was restored to {}, not to {target}",
                restored.copy, restored.target
            )));
        }
        if source.dbname == restored.copy {
            return Err(refused(format!("{} is the source itself", restored.copy)));
        }
        if source.dbname == server.dbname {
            return Err(refused(format!(
                "the source database {} is the one lifeboat connects to for administration; point scratch_url at another database of the server (postgres)",
                source.dbname
            )));
        }
        let admin = server.connect().await?;
        if !postgres::database_exists(&admin, &restored.copy).await? {
            return Err(refused(format!(
                "database {} no longer exists (promoted or dropped since it was proved)",
                restored.copy
            )));
        }
        let with_content = restored.fingerprint.starts_with("pg+sums:");
        let now = postgres::fingerprint_database(
            &server.with_dbname(&restored.copy),
            with_content,
            &CancellationToken::new(),
        )
        .await?;
        if now.fingerprint != restored.fingerprint {
            return Err(refused(format!(
                "database {} has changed since it was proved at {} (its rows or its structure): restore it again",
                restored.copy,
                plan.proved_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let live = database::describe(&admin, &source.dbname).await?;
        let copy = database::describe(&admin, &restored.copy)
            .await?
            .ok_or_else(|| Error::Invalid(format!("database {} is gone", restored.copy)))?;
        plan.replaces = format!(
            "database {} on {}:{}",
            source.dbname,
            source.hosts.join(","),
            source.port
        );
        plan.source_exists = live.is_some();
        if let Some(live) = &live {
            let (a, b) = (locale_of(live), locale_of(&copy));
            if a != b {
                return Err(refused(format!(
                    "the copy has encoding and locale {b}, the source {a}: it would store or sort text differently; restore a backup that records its database (or onto a server with the source's locale)"
                )));
            }
            // The database's own settings, comment and grants come from the source.
            plan.skipped.retain(|s| s != "database settings");
            if !restored.privileged {
                let lost = rights_lost(&server, &source.dbname, &restored.copy).await?;
                if !lost.is_empty() {
                    return Err(refused(format!(
                        "the source {} has owners or GRANTs this copy lacks ({}; it was restored with least privilege, owners and GRANTs skipped): the application would get \"permission denied\"; restore the authenticated backup with --privileged for a copy to promote",
                        source.dbname,
                        lost.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let kept = before_name(&source.dbname, self.clock.now());
            if postgres::database_exists(&admin, &kept).await? {
                return Err(refused(format!("database {kept} already exists")));
            }
            plan.kept_as = Some(kept);
        }
        plan.owner = Some(live.map_or_else(|| server.user.clone(), |l| l.owner));
        Ok(())
    }
}

pub(super) async fn promote_database(
    config: &SourceConfig,
    plan: &PromotePlan,
    job: &crate::jobs::Job,
) -> Result<u64> {
    let source = postgres::source_conn(config)?;
    let server = postgres::scratch_server(config)?;
    let admin = server.connect().await?;
    let copy = plan.copy.as_str();
    let owner = plan.owner.clone().unwrap_or_else(|| server.user.clone());
    let live = database::describe(&admin, &source.dbname).await?;
    // The copy first: it is not in service yet, so nothing here can hurt the source.
    let restore_role = role::scratch_role_for(copy);
    if !plan.privileged {
        let inside = server.with_dbname(copy).connect().await?;
        let exists = inside
            .query_opt(
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                &[&restore_role],
            )
            .await
            .map_err(postgres::pg_error("look up the restore role"))?
            .is_some();
        if exists {
            inside
                .batch_execute(&format!(
                    "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role}",
                    role = quote_ident(&restore_role),
                    owner = quote_ident(&owner)
                ))
                .await
                .map_err(postgres::pg_error(format!(
                    "give what {restore_role} owns in {copy} to {owner}"
                )))?;
            job.log(format!(
                "{owner} owns every object of {copy} (its restore role owned them)"
            ));
        }
    }
    database::set_owner(&admin, copy, &owner).await?;
    if let Some(live) = &live {
        for note in database::apply(&admin, copy, live).await? {
            job.log(note);
        }
        job.log(format!(
            "{copy} has the settings, comment and database grants of {}",
            source.dbname
        ));
    }
    let ended = swap(&admin, &source.dbname, copy, plan.kept_as.as_deref()).await?;
    job.log(format!(
        "ended {ended} session(s) and renamed the databases"
    ));
    if !plan.privileged
        && let Err(e) = role::drop_role(&admin, &restore_role).await
    {
        job.log(format!("the restore role {restore_role} was kept: {e}"));
    }
    Ok(ended)
}

/// `<name>_before_<yyyymmddThhmmss>`, within PostgreSQL's 63 bytes.
fn before_name(name: &str, at: DateTime<Utc>) -> String {
    let suffix = format!("_before_{}", at.format("%Y%m%dT%H%M%S"));
    let mut head = name.to_owned();
    while head.len() + suffix.len() > 63 {
        head.pop();
    }
    format!("{head}{suffix}")
}

/// `encoding collate/ctype [provider locale]`, to compare two databases.
fn locale_of(d: &DatabaseInfo) -> String {
    let mut s = format!("{} {}/{}", d.encoding, d.lc_collate, d.lc_ctype);
    if let (Some(p), Some(l)) = (&d.locale_provider, &d.icu_locale) {
        s.push_str(&format!(" {p} {l}"));
    }
    s
}

/// Roles that hold rights in `source` but in `copy` none (both databases on `server`).
async fn rights_lost(
    server: &postgres::Conn,
    source: &str,
    copy: &str,
) -> Result<BTreeSet<String>> {
    let of = |db: &str| {
        let conn = server.with_dbname(db);
        async move {
            let client = conn.connect().await?;
            database::rights_holders(&client).await
        }
    };
    let had = of(source).await?;
    let has = of(copy).await?;
    Ok(had.difference(&has).cloned().collect())
}

/// Ends the sessions on `source` and `copy` and renames `source` to `kept_as` and `copy` to
/// `source` in one transaction, so that at no moment is there no database of that name (or
/// two). New connections to the source are refused meanwhile. Returns how many sessions were
/// ended.
async fn swap(
    admin: &tokio_postgres::Client,
    source: &str,
    copy: &str,
    kept_as: Option<&str>,
) -> Result<u64> {
    let err = |what: &str| postgres::pg_error(what.to_owned());
    let allowed: Option<bool> = admin
        .query_opt(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&source],
        )
        .await
        .map_err(err("look up the source database"))?
        .map(|r| r.get(0));
    let set_allow = |db: &str, allow: bool| {
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
            quote_ident(db)
        )
    };
    let mut close = vec![copy.to_owned()];
    if allowed.is_some() {
        close.push(source.to_owned());
    }
    for (i, db) in close.iter().enumerate() {
        if let Err(e) = admin.batch_execute(&set_allow(db, false)).await {
            // The copy was closed first; open it again before saying why.
            if i > 0 {
                let _ = admin.batch_execute(&set_allow(copy, true)).await;
            }
            return Err(err(&format!("refuse new connections to {db}"))(e));
        }
    }
    let renames = match kept_as {
        Some(old) if allowed.is_some() => format!(
            "BEGIN; ALTER DATABASE {s} RENAME TO {o}; ALTER DATABASE {c} RENAME TO {s}; COMMIT",
            s = quote_ident(source),
            o = quote_ident(old),
            c = quote_ident(copy)
        ),
        _ => format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(copy),
            quote_ident(source)
        ),
    };
    let mut ended = 0u64;
    let mut outcome = Err(Error::Invalid("not tried".into()));
    // A session that was just ended takes a moment to leave; one that raced in before
    // connections were refused is ended on the next round.
    for attempt in 0..50 {
        let n: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                &[&close],
            )
            .await
            .map_err(err("end the sessions"))?
            .get(0);
        ended += n as u64;
        match admin.batch_execute(&renames).await {
            Ok(()) => {
                outcome = Ok(());
                break;
            }
            Err(e) => {
                let _ = admin.batch_execute("ROLLBACK").await;
                let busy = postgres::describe_error(&e).contains("being accessed by other users");
                outcome = Err(err("rename the databases")(e));
                if !busy || attempt == 49 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (new_name, old_name) = match &outcome {
        Ok(()) => (source, kept_as),
        Err(_) => (copy, allowed.map(|_| source)),
    };
    // Open again: the promoted database (or, if nothing was renamed, the copy), and the old
    // one as it was.
    admin
        .batch_execute(&set_allow(new_name, true))
        .await
        .map_err(err(&format!("allow connections to {new_name}")))?;
    if let (Some(old), Some(was)) = (old_name, allowed) {
        admin
            .batch_execute(&set_allow(old, was))
            .await
            .map_err(err(&format!("allow connections to {old}")))?;
    }
    outcome.map(|()| ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_names_carry_the_time_and_fit() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T08:15:52Z")
            .unwrap()
            .to_utc();
        assert_eq!(before_name("billing", at), "billing_before_20261123T081552");
        let long = "x".repeat(63);
        let n = before_name(&long, at);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_before_20261123T081552"));
    }
}
