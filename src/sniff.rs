//! Recognising dumps lifeboat did not write, from their first bytes.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// How many leading bytes [`sniff`] wants.
pub const SNIFF_LEN: u64 = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// A SQLite database file.
    Sqlite,
    /// SQL text (`sqlite3 .dump`, `pg_dump -Fp`, ...).
    Sql,
    /// A `pg_dump` custom-format archive.
    PgCustom,
    /// age-encrypted data.
    Age,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub compression: Option<Compression>,
    pub content: Content,
}

impl Format {
    /// Whether lifeboat can load it into a SQLite scratch database.
    pub fn restorable_to_sqlite(self) -> bool {
        matches!(self.content, Content::Sqlite | Content::Sql)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let content = match self.content {
            Content::Sqlite => "sqlite",
            Content::Sql => "sql",
            Content::PgCustom => "pg_dump",
            Content::Age => "age",
            Content::Unknown => "unknown",
        };
        match self.compression {
            None => f.write_str(content),
            Some(Compression::Gzip) => write!(f, "{content}.gz"),
            Some(Compression::Zstd) => write!(f, "{content}.zst"),
        }
    }
}

/// Detects the format from the first bytes of an object. For compressed data the start of the
/// decompressed stream is examined too.
pub fn sniff(head: &[u8]) -> Format {
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else {
        None
    };
    let inner = match compression {
        None => head.to_vec(),
        Some(c) => decompress_prefix(c, head),
    };
    Format {
        compression,
        content: sniff_content(&inner),
    }
}

/// As much of the decompressed stream as a truncated prefix yields.
fn decompress_prefix(c: Compression, head: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader: Box<dyn Read> = match c {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(head)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(head) {
            Ok(d) => Box::new(d),
            Err(_) => return out,
        },
    };
    while out.len() < 4096 {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn sniff_content(b: &[u8]) -> Content {
    if b.starts_with(b"SQLite format 3\0") {
        return Content::Sqlite;
    }
    if b.starts_with(b"PGDMP") {
        return Content::PgCustom;
    }
    if b.starts_with(b"age-encryption.org/") {
        return Content::Age;
    }
    if looks_like_sql(b) {
        return Content::Sql;
    }
    Content::Unknown
}

fn looks_like_sql(b: &[u8]) -> bool {
    // Judge by the first statement-ish line: text, and a SQL keyword or comment.
    let text = match std::str::from_utf8(b) {
        Ok(t) => t,
        // A prefix may cut a UTF-8 sequence in half.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    let text = text.trim_start_matches('\u{feff}');
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return false;
    };
    let upper = first.to_ascii_uppercase();
    const STARTS: [&str; 12] = [
        "--",
        "/*",
        "PRAGMA",
        "BEGIN",
        "CREATE",
        "INSERT",
        "SET ",
        "SELECT",
        "DROP",
        "ALTER",
        "COPY",
        "\\CONNECT",
    ];
    STARTS.iter().any(|s| upper.starts_with(s))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn recognises_plain_formats() {
        assert_eq!(sniff(b"SQLite format 3\0\x10\0").to_string(), "sqlite");
        assert_eq!(sniff(b"PGDMP\x01\x0e\0").to_string(), "pg_dump");
        assert_eq!(
            sniff(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n").to_string(),
            "sql"
        );
        assert_eq!(
            sniff(b"--\n-- PostgreSQL database dump\n").to_string(),
            "sql"
        );
        assert_eq!(sniff(b"\x00\x01binary").to_string(), "unknown");
        assert_eq!(sniff(b"").to_string(), "unknown");
    }

    #[test]
    fn looks_inside_compression() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"BEGIN TRANSACTION;\nCREATE TABLE t(a);\n")
            .unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(sniff(&gz).to_string(), "sql.gz");
        // Only a prefix of the compressed stream is available.
        assert_eq!(sniff(&gz[..gz.len() - 4]).to_string(), "sql.gz");
        let zst = zstd::encode_all(&b"SQLite format 3\0rest of page"[..], 3).unwrap();
        assert_eq!(sniff(&zst).to_string(), "sqlite.zst");
    }
}
