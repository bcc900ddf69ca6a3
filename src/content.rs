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

use crate::engine::{quote_ident, sqlite};
use crate::error::{Error, Result};

/// Table name → checksum (16 hex digits).
pub type ContentChecksums = BTreeMap<String, String>;

/// Accumulates one table's checksum, row by row, reusing one line buffer.
#[derive(Debug, Default, Clone)]
pub struct TableHasher {
    sum: u64,
    line: String,
    columns: usize,
}

impl TableHasher {
    /// Adds a row given as its columns' text forms (`None` for NULL).
    pub fn add_row<'a>(&mut self, columns: impl IntoIterator<Item = Option<&'a str>>) {
        for col in columns {
            match col {
                None => self.null(),
                Some(text) => self.text(text),
            }
        }
        self.end_row();
    }

    pub fn null(&mut self) {
        self.separate();
        self.line.push_str("\\N");
    }

    pub fn text(&mut self, text: &str) {
        self.separate();
        escape_into(&mut self.line, text);
    }

    /// A value whose text form needs no escaping (numbers, hex).
    pub fn plain(&mut self, value: impl std::fmt::Display) {
        use std::fmt::Write;
        self.separate();
        let _ = write!(self.line, "{value}");
    }

    fn separate(&mut self) {
        if self.columns > 0 {
            self.line.push('\t');
        }
        self.columns += 1;
    }

    pub fn end_row(&mut self) {
        self.sum = self.sum.wrapping_add(line_hash(self.line.as_bytes()));
        self.line.clear();
        self.columns = 0;
    }

    /// Adds a row already in canonical form (a line of PostgreSQL's COPY text output,
    /// without its newline).
    pub fn add_line(&mut self, line: &[u8]) {
        self.sum = self.sum.wrapping_add(line_hash(line));
    }

    pub fn finish(self) -> String {
        format!("{:016x}", self.sum)
    }
}

fn line_hash(line: &[u8]) -> u64 {
    let digest = Sha256::digest(line);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The escapes COPY's text format writes (PostgreSQL's `CopyAttributeOutText`).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
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
        while let Some(row) = rows.next().map_err(Error::sqlite(ctx()))? {
            for i in 0..n {
                match row.get_ref(i).map_err(Error::sqlite(ctx()))? {
                    ValueRef::Null => hasher.null(),
                    ValueRef::Integer(v) => hasher.plain(v),
                    ValueRef::Real(v) => hasher.plain(format_args!("{v:?}")),
                    ValueRef::Text(b) => hasher.text(&String::from_utf8_lossy(b)),
                    ValueRef::Blob(b) => {
                        hasher.plain(format_args!("\\x{}", crate::pipeline::hex(b)))
                    }
                }
            }
            hasher.end_row();
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

    #[test]
    fn rows_built_from_values_hash_like_copy_text_lines() {
        let mut values = TableHasher::default();
        values.add_row([Some("a\tb\\c\u{8}"), None, Some("")]);
        let mut line = TableHasher::default();
        line.add_line(b"a\\tb\\\\c\\b\t\\N\t");
        assert_eq!(values.finish(), line.finish());
    }
}
