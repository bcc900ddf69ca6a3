//! Content checksums of a PostgreSQL database: every row's COPY text form, hashed with the
//! same [`TableHasher`] as SQLite sources, over the same tables the row counts cover.
//!
//! The source side runs in the dump's exported snapshot, the restore side in the scratch
//! database; both pin the settings that change how values print, so equal data gives equal
//! lines whatever the server's or the database's defaults.

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::{LARGE_OBJECTS, list_tables, pg_error};
use crate::content::{ContentChecksums, TableHasher};
use crate::engine::quote_ident;
use crate::error::Result;

/// Output settings of every type whose text form depends on the session. `SET`, not
/// `SET LOCAL`: it must hold for the rest of the session whether or not a transaction is open.
/// Text comes as UTF-8, except from a `SQL_ASCII` database, whose text is bytes in no known
/// encoding: those are hashed as they are (converting them would fail on the first byte
/// that is not UTF-8). A restore is created with its source's encoding, so both sides agree.
const PIN_TEXT_FORMS: &str = "SELECT set_config('client_encoding',
        CASE current_setting('server_encoding') WHEN 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END, false);
    SET DateStyle = 'ISO, YMD';
    SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3;
    SET bytea_output = 'hex'; SET lc_monetary = 'C'";

/// Checksums of every table [`super::count_tables`] counts, in the caller's transaction.
/// Columns are taken in name order, so a restore that lays out columns differently (an
/// inheritance child, an attached partition) still gives the same lines; generated columns
/// are left out (their values follow from the others). Large objects hash as one line per
/// object: its OID and the SHA-256 of its data.
pub async fn checksums(client: &Client) -> Result<ContentChecksums> {
    client
        .batch_execute(PIN_TEXT_FORMS)
        .await
        .map_err(pg_error("pin the text forms for content checksums"))?;
    let mut out = ContentChecksums::new();
    for (schema, table, columns) in columns_by_table(client).await? {
        let name = crate::manifest::qualified_name(&schema, &table);
        let relation = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        // A table without (non-generated) columns still has rows: COPY prints empty lines.
        let sql = if columns.is_empty() {
            format!("COPY {relation} TO STDOUT")
        } else {
            format!("COPY {relation} ({columns}) TO STDOUT")
        };
        let sum = hash_copy(client, &sql, &name).await?;
        out.insert(name, sum);
    }
    let sum = hash_copy(
        client,
        "COPY (SELECT oid, sha256(lo_get(oid)) FROM pg_catalog.pg_largeobject_metadata) TO STDOUT",
        LARGE_OBJECTS,
    )
    .await?;
    out.insert(LARGE_OBJECTS.into(), sum);
    Ok(out)
}

/// Each counted table with its quoted column list, in name order.
async fn columns_by_table(client: &Client) -> Result<Vec<(String, String, String)>> {
    let tables = list_tables(client).await?;
    // attgenerated exists from PostgreSQL 12 on.
    let (_, major) = super::server_version(client).await?;
    let not_generated = if major >= 12 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname, c.relname,
                        coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY a.attname), '')
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                      AND NOT a.attisdropped {not_generated}
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 GROUP BY 1, 2"
            ),
            &[],
        )
        .await
        .map_err(pg_error("list columns for content checksums"))?;
    let mut columns: std::collections::HashMap<(String, String), String> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    Ok(tables
        .into_iter()
        .map(|(s, t)| {
            let cols = columns.remove(&(s.clone(), t.clone())).unwrap_or_default();
            (s, t, cols)
        })
        .collect())
}

/// Hashes each line a `COPY ... TO STDOUT` (text format) sends. Data lines carry their
/// newlines escaped, so `\n` ends a row whatever the server's message boundaries are.
async fn hash_copy(client: &Client, sql: &str, name: &str) -> Result<String> {
    let ctx = || format!("content checksum of {name}");
    let stream = client.copy_out(sql).await.map_err(pg_error(ctx()))?;
    let mut stream = std::pin::pin!(stream);
    let mut hasher = TableHasher::default();
    let mut partial: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(pg_error(ctx()))?;
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                hasher.add_line(&rest[..end]);
            } else {
                partial.extend_from_slice(&rest[..end]);
                hasher.add_line(&partial);
                partial.clear();
            }
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
    }
    if !partial.is_empty() {
        hasher.add_line(&partial);
    }
    Ok(hasher.finish())
}
