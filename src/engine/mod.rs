//! Database engines: how to take a consistent snapshot, count rows, and load a dump back.

pub mod sqlite;

use std::io::Read;

use crate::manifest::{SourceInfo, TableCount};

/// A consistent dump of a source, ready to be streamed.
pub struct Snapshot {
    /// The raw dump bytes, read on a blocking thread.
    pub reader: Box<dyn Read + Send>,
    /// Size of the raw dump when known up front.
    pub raw_size: Option<u64>,
    pub source: SourceInfo,
    /// Row counts taken in the same snapshot as the dump.
    pub tables: Vec<TableCount>,
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
