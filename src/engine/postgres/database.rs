//! The database around the tables: its encoding and locale, owner, settings, comment and
//! database-level grants, which `pg_dump` without `--create` leaves out; and what tells a
//! database apart beyond its rows (its catalog, the roles that hold rights in it).
//!
//! A scratch copy is created with the source's encoding and locale, so it holds the same bytes
//! (a `SQL_ASCII` source's non-UTF-8 text cannot hide in a UTF8 copy) and sorts the same way.
//! A copy meant for promotion also gets the settings, comment and grants.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::{pg_error, validate_db_name};
use crate::engine::quote_ident;
use crate::error::{Error, Result};
use crate::manifest::{DatabaseGrant, DatabaseInfo};

/// The schemas whose objects a dump carries (as `list_tables` filters them), for a namespace
/// alias `n`.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// Settings whose value is a list PostgreSQL quotes element by element (its
/// `GUC_LIST_QUOTE`): each element is given as a literal of its own, as pg_dump does.
const LIST_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// A string literal (the server runs with `standard_conforming_strings`, the default since
/// PostgreSQL 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `database` as it is now, or `None` if the server has no such database.
pub async fn describe(client: &Client, database: &str) -> Result<Option<DatabaseInfo>> {
    let Some(row) = client
        .query_opt(
            "SELECT to_jsonb(d)::text, pg_encoding_to_char(d.encoding), pg_get_userbyid(d.datdba),
                    shobj_description(d.oid, 'pg_database'),
                    coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                              WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}'::text[]),
                    d.datacl IS NULL
             FROM pg_database d WHERE d.datname = $1",
            &[&database],
        )
        .await
        .map_err(pg_error(format!("describe database {database}")))?
    else {
        return Ok(None);
    };
    // Whole-row JSON: the locale columns differ between server versions (datlocprovider
    // from 15, daticulocale in 15-16, datlocale from 17).
    let d: serde_json::Value = serde_json::from_str(&row.get::<_, String>(0))
        .map_err(|e| Error::Invalid(format!("pg_database row of {database}: {e}")))?;
    let text = |k: &str| d[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let locale_provider = text("datlocprovider").map(|p| {
        match p.as_str() {
            "c" => "libc",
            "i" => "icu",
            "b" => "builtin",
            other => other,
        }
        .to_owned()
    });
    let grants = if row.get::<_, bool>(5) {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                        a.privilege_type, a.is_grantable
                 FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1
                 ORDER BY 1 NULLS FIRST, 2",
                &[&database],
            )
            .await
            .map_err(pg_error(format!("read the grants on database {database}")))?;
        Some(
            rows.iter()
                .map(|r| DatabaseGrant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                })
                .collect(),
        )
    };
    Ok(Some(DatabaseInfo {
        encoding: row.get(1),
        lc_collate: text("datcollate").unwrap_or_else(|| "C".into()),
        lc_ctype: text("datctype").unwrap_or_else(|| "C".into()),
        icu_locale: text("datlocale")
            .or_else(|| text("daticulocale"))
            .filter(|_| locale_provider.as_deref() != Some("libc")),
        locale_provider,
        owner: row.get(2),
        comment: row.get(3),
        settings: row.get(4),
        grants,
    }))
}

/// Creates `database` from `template0`, owned by `owner` when given (a restore role), with
/// `like`'s encoding and locale when given. When the server lacks that locale, the database is
/// created with the same encoding and locale `C`, and the returned note says so.
pub async fn create(
    admin: &Client,
    database: &str,
    owner: Option<&str>,
    like: Option<&DatabaseInfo>,
    server_major: u32,
) -> Result<Option<String>> {
    validate_db_name(database)?;
    let base = format!(
        "CREATE DATABASE {}{} TEMPLATE template0",
        quote_ident(database),
        owner
            .map(|o| format!(" OWNER {}", quote_ident(o)))
            .unwrap_or_default()
    );
    let ctx = || format!("create database {database}");
    let Some(info) = like else {
        return admin
            .batch_execute(&base)
            .await
            .map(|()| None)
            .map_err(pg_error(ctx()));
    };
    if !is_name(&info.encoding) {
        return Err(Error::Invalid(format!(
            "encoding {:?} is not an encoding name",
            info.encoding
        )));
    }
    let encoding = format!(" ENCODING {}", literal(&info.encoding));
    let provider = match (info.locale_provider.as_deref(), &info.icu_locale) {
        (Some("icu"), Some(l)) if server_major >= 15 => {
            format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(l))
        }
        (Some("builtin"), Some(l)) if server_major >= 17 => {
            format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", literal(l))
        }
        _ if server_major >= 15 => " LOCALE_PROVIDER libc".to_owned(),
        _ => String::new(),
    };
    let exact = format!(
        "{base}{encoding} LC_COLLATE {} LC_CTYPE {}{provider}",
        literal(&info.lc_collate),
        literal(&info.lc_ctype)
    );
    let Err(e) = admin.batch_execute(&exact).await else {
        return Ok(None);
    };
    let said = super::describe_error(&e).to_ascii_lowercase();
    let about_locale = ["locale", "collat", "icu"].iter().any(|w| said.contains(w));
    if !about_locale {
        return Err(pg_error(ctx())(e));
    }
    let libc = if server_major >= 15 {
        " LOCALE_PROVIDER libc"
    } else {
        ""
    };
    admin
        .batch_execute(&format!(
            "{base}{encoding} LC_COLLATE 'C' LC_CTYPE 'C'{libc}"
        ))
        .await
        .map_err(pg_error(ctx()))?;
    Ok(Some(format!(
        "locale {} of the source is not available here ({}): created with encoding {} and locale C, so text sorts by its bytes",
        info.lc_collate,
        super::describe_error(&e),
        info.encoding
    )))
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Gives `database` the settings, comment and database-level grants of `info` (replacing its
/// own). Returns a note for each setting that could not be read back into a statement.
pub async fn apply(admin: &Client, database: &str, info: &DatabaseInfo) -> Result<Vec<String>> {
    let db = quote_ident(database);
    let mut notes = Vec::new();
    let mut sql = format!("ALTER DATABASE {db} RESET ALL;");
    for entry in &info.settings {
        match set_clause(entry) {
            Some(clause) => sql.push_str(&format!("ALTER DATABASE {db} SET {clause};")),
            None => notes.push(format!("setting {entry:?} left out: not name=value")),
        }
    }
    sql.push_str(&format!(
        "COMMENT ON DATABASE {db} IS {};",
        info.comment.as_deref().map_or("NULL".into(), literal)
    ));
    // Grants: whatever the database has now goes (PUBLIC's too, explicit or by default),
    // then the wanted ones, or the defaults.
    sql.push_str(&format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC CASCADE;"));
    let current = admin
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                    a.privilege_type
             FROM pg_database d, aclexplode(d.datacl) a
             WHERE d.datname = $1 AND a.grantee NOT IN (0, d.datdba)",
            &[&database],
        )
        .await
        .map_err(pg_error(format!("read the grants on database {database}")))?;
    for r in &current {
        let grantee: Option<String> = r.get(0);
        let privilege: String = r.get(1);
        if is_database_privilege(&privilege) {
            sql.push_str(&format!(
                "REVOKE {privilege} ON DATABASE {db} FROM {} CASCADE;",
                grantee_sql(grantee.as_deref())
            ));
        }
    }
    match &info.grants {
        None => sql.push_str(&format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC;"
        )),
        Some(grants) => {
            for g in grants {
                if g.grantee.as_deref() == Some(info.owner.as_str()) {
                    continue;
                }
                if !is_database_privilege(&g.privilege) {
                    notes.push(format!("grant of {:?} left out", g.privilege));
                    continue;
                }
                sql.push_str(&format!(
                    "GRANT {} ON DATABASE {db} TO {}{};",
                    g.privilege,
                    grantee_sql(g.grantee.as_deref()),
                    if g.grantable {
                        " WITH GRANT OPTION"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    admin.batch_execute(&sql).await.map_err(pg_error(format!(
        "give database {database} its settings, comment and grants"
    )))?;
    Ok(notes)
}

fn is_database_privilege(p: &str) -> bool {
    matches!(p, "CONNECT" | "CREATE" | "TEMPORARY")
}

fn grantee_sql(grantee: Option<&str>) -> String {
    grantee.map_or_else(|| "PUBLIC".to_owned(), quote_ident)
}

/// `name TO value` for an `ALTER DATABASE ... SET` from a stored `name=value`.
fn set_clause(entry: &str) -> Option<String> {
    let (name, value) = entry.split_once('=')?;
    let name_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !name_ok {
        return None;
    }
    let value = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        let items = split_list(value);
        if items.is_empty() {
            "''".to_owned()
        } else {
            items
                .iter()
                .map(|i| literal(i))
                .collect::<Vec<_>>()
                .join(", ")
        }
    } else {
        literal(value)
    };
    // Checked above to be letters, digits, `_` and `.`: written as it is, so a custom
    // `app.setting` stays two parts.
    Some(format!("{} TO {value}", name.to_ascii_lowercase()))
}

/// The elements of a stored list setting: comma-separated, each maybe double-quoted (with
/// `""` for a quote), as PostgreSQL's `SplitGUCList` reads them.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut item = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_owned();
        }
        out.push(item);
        if chars.next().is_none() {
            break;
        }
    }
    out
}

/// Makes `owner` the owner of `database`.
pub async fn set_owner(admin: &Client, database: &str, owner: &str) -> Result<()> {
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            quote_ident(database),
            quote_ident(owner)
        ))
        .await
        .map_err(pg_error(format!("make {owner} the owner of {database}")))
}

/// A SHA-256 over the structure of the connected database: relations and their columns,
/// constraints, indexes, triggers, row-security policies and functions. Owners and grants are
/// left out (they change when a copy is promoted). In the caller's transaction; it must be the
/// last thing there (it pins `search_path` for the rest of the transaction, so that names
/// print the same whoever asks).
pub async fn catalog_sum(client: &Client) -> Result<String> {
    client
        .batch_execute("SET LOCAL search_path = pg_catalog")
        .await
        .map_err(pg_error("pin search_path"))?;
    let sql = format!(
        "SELECT line FROM (
           SELECT format('rel %s %s %s %s %s', c.oid::regclass, c.relkind, c.relrowsecurity,
                         c.relforcerowsecurity, coalesce(pg_get_expr(c.relpartbound, c.oid), '')) AS line
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
           UNION ALL
           SELECT format('col %s %s %s %s %s', c.oid::regclass, a.attname,
                         format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''))
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE {USER_SCHEMAS} AND a.attnum > 0 AND NOT a.attisdropped
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
           UNION ALL
           SELECT format('con %s %s %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
             FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT format('idx %s', pg_get_indexdef(i.indexrelid))
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT format('trg %s %s', pg_get_triggerdef(t.oid), t.tgenabled)
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE NOT t.tgisinternal AND {USER_SCHEMAS}
           UNION ALL
           SELECT format('pol %s %s %s %s %s %s %s', p.polrelid::regclass, p.polname, p.polcmd,
                         p.polpermissive, p.polroles::text, coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
                         coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
             FROM pg_policy p
           UNION ALL
           SELECT format('fn %s %s', p.oid::regprocedure, md5(p.prosrc))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMAS}
         ) lines ORDER BY 1"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(pg_error("read the catalog"))?;
    let mut hasher = Sha256::new();
    for r in rows {
        hasher.update(r.get::<_, String>(0).as_bytes());
        hasher.update(b"\n");
    }
    Ok(crate::pipeline::hex(hasher.finalize()))
}

/// Roles other than the database's owner that own objects, or hold privileges on them, in
/// the connected database, by kind of object: `app (owns tables)`, `app_reader (table
/// grants)`, `PUBLIC (schema grants)`. Objects of extensions are left out: whoever installs an
/// extension owns its members.
pub async fn rights_holders(client: &Client) -> Result<BTreeSet<String>> {
    let sql = format!(
        "WITH objs AS (
           SELECT c.oid, 'pg_class'::regclass AS cls, c.relowner AS owner, c.relacl AS acl
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT n.oid, 'pg_namespace'::regclass, n.nspowner, n.nspacl FROM pg_namespace n WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT p.oid, 'pg_proc'::regclass, p.proowner, p.proacl
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT t.oid, 'pg_type'::regclass, t.typowner, t.typacl
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMAS}
           UNION ALL
           SELECT l.oid, 'pg_largeobject'::regclass, l.lomowner, l.lomacl FROM pg_largeobject_metadata l
         ), ours AS (
           SELECT * FROM objs o WHERE NOT EXISTS (
             SELECT 1 FROM pg_depend d WHERE d.classid = o.cls AND d.objid = o.oid AND d.deptype = 'e')
         ), roles AS (
           SELECT owner AS r, cls, true AS owns FROM ours
           UNION SELECT (aclexplode(acl)).grantee, cls, false FROM ours WHERE acl IS NOT NULL
         )
         SELECT DISTINCT format('%s (%s)', CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END,
           CASE WHEN owns THEN 'owns ' ELSE '' END
           || CASE cls WHEN 'pg_class'::regclass THEN 'table' WHEN 'pg_namespace'::regclass THEN 'schema'
                       WHEN 'pg_proc'::regclass THEN 'function' WHEN 'pg_type'::regclass THEN 'type'
                       ELSE 'large object' END
           || CASE WHEN owns THEN 's' ELSE ' grants' END)
         FROM roles
         WHERE r <> (SELECT datdba FROM pg_database WHERE datname = current_database())
           AND r NOT IN (SELECT oid FROM pg_roles WHERE rolname = 'pg_database_owner')"
    );
    Ok(client
        .query(&sql, &[])
        .await
        .map_err(pg_error("list the roles that hold rights"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_settings_become_statements() {
        assert_eq!(
            set_clause("search_path=app, \"My Schema\", public").unwrap(),
            "search_path TO 'app', 'My Schema', 'public'"
        );
        assert_eq!(
            set_clause("search_path=\"app, public\"").unwrap(),
            "search_path TO 'app, public'"
        );
        assert_eq!(
            set_clause("statement_timeout=5min").unwrap(),
            "statement_timeout TO '5min'"
        );
        assert_eq!(set_clause("app.note=it's").unwrap(), "app.note TO 'it''s'");
        assert_eq!(set_clause("x; DROP DATABASE y=1"), None);
        assert_eq!(set_clause("no value"), None);
    }
}
