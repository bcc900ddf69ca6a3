//! Database engines: how to take a consistent snapshot, count rows, and load a dump back.

pub mod postgres;
pub mod sqlite;
mod sqlite_dump;

use std::future::Future;
use std::io::Read;
use std::pin::Pin;

use crate::manifest::{PostgresInfo, SourceInfo, TableCount};

/// What a dump reports once its stream has ended: the definitive row counts.
pub struct Finished {
    pub tables: Vec<TableCount>,
    /// Content checksums taken in the same snapshot, when asked for.
    pub content: Option<crate::content::ContentChecksums>,
}

/// Awaited after the data is stored and before the manifest is written; an error here means
/// the dump failed and must not be committed.
pub type Finish = Pin<Box<dyn Future<Output = crate::Result<Finished>> + Send>>;

/// A consistent dump of a source, ready to be streamed.
pub struct Snapshot {
    /// The raw dump bytes, read on a blocking thread.
    pub reader: Box<dyn Read + Send>,
    /// Size of the raw dump when known up front.
    pub raw_size: Option<u64>,
    pub source: SourceInfo,
    /// Row counts taken in the same snapshot as the dump.
    pub tables: Vec<TableCount>,
    /// PostgreSQL details for the manifest.
    pub postgres: Option<PostgresInfo>,
    /// Completion check of a dump produced while it streams (PostgreSQL); replaces `tables`.
    pub finish: Option<Finish>,
    /// Keeps staging files alive until the snapshot has been streamed.
    pub(crate) _staging: Option<tempfile::TempDir>,
}

/// Quotes an identifier for SQL (SQLite and PostgreSQL share the rule).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(super::quote_ident(r#"we"ird"#), r#""we""ird""#);
    }
}
