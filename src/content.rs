//! Per-table content checksums: an order-independent hash over every row's text form, so a
//! restore with the right row counts but changed data is still caught.
//!
//! Each row becomes one canonical line (columns in table order, tab-separated, `\N` for NULL,
//! backslash escapes, BLOBs as `\x` + hex: PostgreSQL's COPY text form, so another engine can
//! produce the same lines). The first 8 bytes of the line's SHA-256 are added up with
//! wrapping arithmetic: row order does not matter and duplicate rows still count.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::engine::{Snapshot, quote_ident, sqlite};
use crate::error::{Error, Result};
use crate::manifest::EngineKind;

/// Table name → checksum (16 hex digits).
pub type ContentChecksums = BTreeMap<String, String>;

/// Accumulates one table's checksum, row by row.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableHasher {
    sum: u64,
}

impl TableHasher {
    /// Adds a row given as its columns' text forms (`None` for NULL).
    pub fn add_row<'a>(&mut self, columns: impl IntoIterator<Item = Option<&'a str>>) {
        let mut line = String::new();
        for (i, col) in columns.into_iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            match col {
                None => line.push_str("\\N"),
                Some(text) => escape_into(&mut line, text),
            }
        }
        self.add_line(&line);
    }

    fn add_line(&mut self, line: &str) {
        let digest = Sha256::digest(line.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.sum = self.sum.wrapping_add(u64::from_be_bytes(first));
    }

    pub fn finish(self) -> String {
        format!("{:016x}", self.sum)
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Content checksums of the staged copy a snapshot streams from; `None` for engines that
/// do not compute them (yet).
pub(crate) fn of_snapshot(snapshot: &Snapshot) -> Result<Option<ContentChecksums>> {
    // The SQLite snapshot is a staged copy (see `sqlite::snapshot`), hashed before streaming.
    let staged = snapshot
        ._staging
        .as_ref()
        .map(|d| d.path().join("snapshot.sqlite"))
        .filter(|p| p.exists());
    match (snapshot.source.engine, staged) {
        (EngineKind::Sqlite, Some(path)) => sqlite_file(&path).map(Some),
        _ => Ok(None),
    }
}

/// Content checksums of every table of a SQLite database file.
pub fn sqlite_file(path: &Path) -> Result<ContentChecksums> {
    let conn = sqlite::open_read_only(path)?;
    let tables = sqlite::count_tables(&conn)?;
    let mut out = ContentChecksums::new();
    for t in tables {
        let ctx = || format!("content checksum of {}", t.name);
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", quote_ident(&t.name)))
            .map_err(Error::sqlite(ctx()))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([]).map_err(Error::sqlite(ctx()))?;
        let mut hasher = TableHasher::default();
        let mut texts: Vec<Option<String>> = Vec::with_capacity(n);
        while let Some(row) = rows.next().map_err(Error::sqlite(ctx()))? {
            texts.clear();
            for i in 0..n {
                texts.push(match row.get_ref(i).map_err(Error::sqlite(ctx()))? {
                    ValueRef::Null => None,
                    ValueRef::Integer(v) => Some(v.to_string()),
                    ValueRef::Real(v) => Some(format!("{v:?}")),
                    ValueRef::Text(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    ValueRef::Blob(b) => Some(format!("\\x{}", crate::pipeline::hex(b))),
                });
            }
            hasher.add_row(texts.iter().map(Option::as_deref));
        }
        out.insert(t.name, hasher.finish());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_but_content_and_duplicates_do() {
        let sum = |rows: &[&[Option<&str>]]| {
            let mut h = TableHasher::default();
            for r in rows {
                h.add_row(r.iter().copied());
            }
            h.finish()
        };
        let a: &[Option<&str>] = &[Some("1"), Some("alice")];
        let b: &[Option<&str>] = &[Some("2"), None];
        assert_eq!(sum(&[a, b]), sum(&[b, a]));
        assert_ne!(sum(&[a, b]), sum(&[a, b, b]));
        assert_ne!(sum(&[a]), sum(&[&[Some("1"), Some("alicf")]]));
        // NULL, the text "\N" and an empty string are three different values.
        assert_ne!(sum(&[&[None]]), sum(&[&[Some("\\N")]]));
        assert_ne!(sum(&[&[None]]), sum(&[&[Some("")]]));
        // Column boundaries are kept: ("a\tb") is not ("a", "b").
        assert_ne!(sum(&[&[Some("a\tb")]]), sum(&[&[Some("a"), Some("b")]]));
    }
}
