//! The role a PostgreSQL restore runs as: it owns the scratch database and nothing else.
//!
//! A dump is text that a server executes. Run as the configured user (often a superuser), a
//! foreign dump could `COPY ... TO PROGRAM` (a shell on the database host), `ALTER SYSTEM`,
//! create superusers or drop the source database. So each restore creates a role that cannot
//! log in anywhere but as itself, is not a superuser, cannot create roles or databases, cannot
//! replicate or bypass row security, and belongs to no other role; the scratch database is
//! created owned by it, and pg_restore or the plain SQL load log in as it (not `SET ROLE`,
//! which a dump can undo with `RESET ROLE`). What the dump may do is then what the server lets
//! that role do. The role is named after the database ([`scratch_role_for`]) and dropped with
//! it, so whatever drops a scratch database drops its role too.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::{Conn, pg_error};
use crate::engine::quote_ident;
use crate::error::{Error, Result};

/// Every restore role's name starts with this.
pub const ROLE_PREFIX: &str = "lifeboat_owner_";

/// The role that owns scratch database `database`: the prefix, the database name (shortened
/// to fit) and 8 hex digits of its hash, so two long names that share a beginning still get
/// two roles. At most 63 bytes, like every PostgreSQL name.
pub fn scratch_role_for(database: &str) -> String {
    let hash = crate::pipeline::hex(Sha256::digest(database.as_bytes()));
    let room = 63 - ROLE_PREFIX.len() - 1 - 8;
    let mut short: String = database.chars().take(room).collect();
    while short.len() > room {
        short.pop();
    }
    format!("{ROLE_PREFIX}{short}_{}", &hash[..8])
}

/// A restore role and its password, which lives only in this process's memory (and in the
/// environment of the pg_restore it starts).
pub struct RestoreRole {
    pub name: String,
    password: String,
}

impl std::fmt::Debug for RestoreRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreRole")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RestoreRole {
    /// `server`'s settings, logging in as this role.
    pub fn login(&self, server: &Conn) -> Conn {
        server.with_login(&self.name, &self.password)
    }
}

/// Creates the role for `database` with a fresh random password. A role of that name left by
/// a restore that was killed before it dropped it is dropped first.
pub async fn create(admin: &Client, database: &str) -> Result<RestoreRole> {
    let name = scratch_role_for(database);
    drop_role(admin, &name).await?;
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret)
        .map_err(|e| Error::Invalid(format!("no randomness for a password: {e}")))?;
    let password = crate::pipeline::hex(secret);
    // The server gets the SCRAM verifier, never the password: a statement log shows nothing
    // that logs in.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD '{}'",
            quote_ident(&name),
            verifier.replace('\'', "''")
        ))
        .await
        .map_err(pg_error(format!(
            "create the restore role {name} (the scratch server's user needs CREATEROLE, or to be a superuser)"
        )))?;
    // A user that is not a superuser may create a database for another role only as one of
    // its members; the restore role itself is member of nothing.
    let superuser: bool = admin
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(pg_error("look up the scratch server's user"))?
        .get(0);
    if !superuser
        && let Err(e) = admin
            .batch_execute(&format!("GRANT {} TO CURRENT_USER", quote_ident(&name)))
            .await
    {
        let _ = drop_role(admin, &name).await;
        return Err(pg_error(format!(
            "let the scratch server's user create databases for {name}"
        ))(e));
    }
    Ok(RestoreRole { name, password })
}

/// After the load: the role can no longer log in (its password is gone with this process
/// anyway), and whatever the dump set on the database for later sessions, which would apply
/// to the next person connecting, is reset.
pub async fn settle(admin: &Client, database: &str, role: &RestoreRole) -> Result<()> {
    admin
        .batch_execute(&format!(
            "ALTER ROLE {role} NOLOGIN PASSWORD NULL; ALTER DATABASE {db} RESET ALL; \
             ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true IS_TEMPLATE false CONNECTION LIMIT -1",
            role = quote_ident(&role.name),
            db = quote_ident(database)
        ))
        .await
        .map_err(pg_error(format!("settle the scratch database {database}")))
}

/// Drops a restore role if it exists. It owns nothing once its database is gone.
pub async fn drop_role(admin: &Client, name: &str) -> Result<()> {
    if !name.starts_with(ROLE_PREFIX) {
        return Err(Error::Invalid(format!(
            "{name:?} is not a lifeboat restore role"
        )));
    }
    // Looked up first: a user without CREATEROLE (enough for privileged restores) may not
    // even DROP ROLE IF EXISTS.
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .map_err(pg_error("look up roles"))?
        .is_some();
    if !exists {
        return Ok(());
    }
    admin
        .batch_execute(&format!("DROP ROLE {}", quote_ident(name)))
        .await
        .map_err(pg_error(format!("drop the restore role {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_database_names_and_fit() {
        let a = scratch_role_for("lifeboat_restore_20261122t020000z_7f3a");
        assert!(a.starts_with("lifeboat_owner_lifeboat_restore_2026"), "{a}");
        assert!(a.len() <= 63);
        assert_eq!(
            a,
            scratch_role_for("lifeboat_restore_20261122t020000z_7f3a")
        );
        let long = "x".repeat(63);
        let b = scratch_role_for(&long);
        let c = scratch_role_for(&format!("{}y", "x".repeat(62)));
        assert!(b.len() <= 63 && c.len() <= 63);
        assert_ne!(b, c, "names sharing their start get their own roles");
        assert_eq!(
            scratch_role_for("shop_check"),
            format!(
                "lifeboat_owner_shop_check_{}",
                &crate::pipeline::hex(Sha256::digest(b"shop_check"))[..8]
            )
        );
    }
}
