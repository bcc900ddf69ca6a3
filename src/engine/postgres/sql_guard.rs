//! Refuses a plain SQL dump lifeboat did not write before psql runs it.
//!
//! psql runs the file on a real server (by default the source's): a `pg_dump --clean
//! --create` script drops and recreates the source database and `\connect`s to it, and a
//! `\!` line runs shell commands. What a data-only restore into a scratch database needs
//! is neither, so meta-commands and database/role statements are refused outright.
//!
//! The scan is a small lexer over the file, line by line: quoted strings, quoted
//! identifiers, dollar-quoted bodies and comments are skipped (a backslash there is data),
//! and so are `COPY ... FROM stdin` data blocks up to their `\.` line. Whether a backslash
//! escapes a quote in a plain string depends on standard_conforming_strings, which the
//! script or the server may set either way, so the file must pass being read both ways.

use std::io::BufRead;
use std::path::Path;

use crate::error::{Error, Result};

/// Statements that reach outside the target database.
const REFUSED: [&str; 9] = [
    "CREATE DATABASE",
    "ALTER DATABASE",
    "DROP DATABASE",
    "CREATE ROLE",
    "ALTER ROLE",
    "DROP ROLE",
    "CREATE USER",
    "ALTER USER",
    "DROP USER",
];

/// How much of a statement's start is kept to compare with [`REFUSED`].
const HEAD_KEEP: usize = 32;

#[derive(Clone, PartialEq)]
enum State {
    Code,
    Single { escapes: bool },
    Double,
    Dollar(Vec<u8>),
    Block(usize),
    CopyData,
}

struct Scanner {
    state: State,
    /// Read every '...' string as if standard_conforming_strings were off.
    backslash_escapes: bool,
    /// The statement's first words, upper-cased, whitespace collapsed.
    head: String,
    line_no: usize,
}

/// Scans the plain SQL file at `path`; an error names the first refused line.
pub fn check_plain_sql(path: &Path) -> Result<()> {
    [false, true]
        .into_iter()
        .try_for_each(|escapes| {
            let file = std::fs::File::open(path).map_err(ScanError::Io)?;
            check_reader(std::io::BufReader::new(file), escapes)
        })
        .map_err(|e| match e {
            ScanError::Io(source) => Error::Io {
                context: format!("reading {}", path.display()),
                source,
            },
            ScanError::Refused(why) => Error::Unsupported(format!(
                "refusing to run this plain SQL dump with psql: {why}; only data and schema \
                 for one database are restored (dump it without --create, or as pg_dump -Fc)"
            )),
        })
}

enum ScanError {
    Io(std::io::Error),
    Refused(String),
}

fn check_reader(
    mut reader: impl BufRead,
    backslash_escapes: bool,
) -> std::result::Result<(), ScanError> {
    let mut s = Scanner {
        state: State::Code,
        backslash_escapes,
        head: String::new(),
        line_no: 0,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(ScanError::Io)? == 0 {
            break;
        }
        s.line_no += 1;
        s.line(&line)?;
    }
    s.statement_end()
}

impl Scanner {
    fn refuse(&self, what: impl std::fmt::Display) -> std::result::Result<(), ScanError> {
        Err(ScanError::Refused(format!("line {}: {what}", self.line_no)))
    }

    fn line(&mut self, line: &[u8]) -> std::result::Result<(), ScanError> {
        let text = line.trim_ascii();
        if self.state == State::CopyData {
            if text == b"\\." {
                self.state = State::Code;
            }
            return Ok(());
        }
        if self.state == State::Code && self.head.is_empty() {
            if let Some(meta) = text.strip_prefix(b"\\") {
                // pg_dump 17.6+/16.10+ fences its output with \restrict and \unrestrict.
                let word = meta
                    .split(|b| b.is_ascii_whitespace())
                    .next()
                    .unwrap_or(b"");
                if word == b"restrict" || word == b"unrestrict" {
                    return Ok(());
                }
            }
            if is_copy_from_stdin(text) {
                self.state = State::CopyData;
                return Ok(());
            }
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            let next = line.get(i + 1).copied();
            match &mut self.state {
                State::Code => match b {
                    b'\\' => {
                        let cmd: String = String::from_utf8_lossy(&line[i..])
                            .split_whitespace()
                            .next()
                            .unwrap_or("\\")
                            .chars()
                            .take(20)
                            .collect();
                        return self.refuse(format_args!("psql meta-command {cmd}"));
                    }
                    b'-' if next == Some(b'-') => break,
                    b'/' if next == Some(b'*') => {
                        self.state = State::Block(1);
                        i += 1;
                    }
                    b'\'' => {
                        let escapes = self.backslash_escapes
                            || i > 0
                                && matches!(line[i - 1], b'E' | b'e')
                                && (i < 2 || !is_ident_byte(line[i - 2]));
                        self.state = State::Single { escapes };
                    }
                    b'"' => self.state = State::Double,
                    b'$' if i == 0 || !is_ident_byte(line[i - 1]) => {
                        if let Some(len) = dollar_tag(&line[i..]) {
                            self.state = State::Dollar(line[i..i + len].to_vec());
                            i += len - 1;
                        }
                    }
                    b';' => self.statement_end()?,
                    _ => self.push_head(b),
                },
                State::Single { escapes } => match b {
                    b'\\' if *escapes => i += 1,
                    b'\'' if next == Some(b'\'') => i += 1,
                    b'\'' => self.state = State::Code,
                    _ => {}
                },
                State::Double => {
                    if b == b'"' {
                        self.state = State::Code;
                    }
                }
                State::Dollar(tag) => {
                    if line[i..].starts_with(tag) {
                        i += tag.len() - 1;
                        self.state = State::Code;
                    }
                }
                State::Block(depth) => {
                    if b == b'*' && next == Some(b'/') {
                        *depth -= 1;
                        i += 1;
                        if *depth == 0 {
                            self.state = State::Code;
                        }
                    } else if b == b'/' && next == Some(b'*') {
                        *depth += 1;
                        i += 1;
                    }
                }
                State::CopyData => {}
            }
            i += 1;
        }
        if self.state == State::Code {
            self.push_head(b' ');
        }
        Ok(())
    }

    fn push_head(&mut self, b: u8) {
        if self.head.len() >= HEAD_KEEP {
            return;
        }
        if b.is_ascii_whitespace() {
            if !self.head.is_empty() && !self.head.ends_with(' ') {
                self.head.push(' ');
            }
        } else {
            self.head.push(char::from(b.to_ascii_uppercase()));
        }
    }

    fn statement_end(&mut self) -> std::result::Result<(), ScanError> {
        let head = std::mem::take(&mut self.head);
        match REFUSED.iter().find(|r| {
            head.strip_prefix(*r)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        }) {
            Some(r) => self.refuse(format_args!("{r} statement")),
            None => Ok(()),
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The length of a `$tag$` opening at the start of `s`, if it is one (`$1` is not).
fn dollar_tag(s: &[u8]) -> Option<usize> {
    let end = s[1..].iter().position(|&b| b == b'$')? + 1;
    let tag = &s[1..end];
    let valid =
        tag.first().is_none_or(|b| !b.is_ascii_digit()) && tag.iter().all(|&b| is_ident_byte(b));
    valid.then_some(end + 1)
}

/// pg_dump writes each `COPY ... FROM stdin;` on one line, its data on the next ones.
fn is_copy_from_stdin(text: &[u8]) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.starts_with(b"COPY ") && upper.ends_with(b" FROM STDIN;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> std::result::Result<(), String> {
        [false, true]
            .into_iter()
            .try_for_each(|escapes| check_reader(sql.as_bytes(), escapes))
            .map_err(|e| match e {
                ScanError::Io(e) => e.to_string(),
                ScanError::Refused(why) => why,
            })
    }

    #[test]
    fn a_pg_dump_script_passes() {
        let sql = "\\restrict abc123\n\
            SET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            CREATE FUNCTION s.f() RETURNS trigger LANGUAGE plpgsql AS $_$\n\
            BEGIN\n  RAISE NOTICE 'a\\b';\n  DROP ROLE x;\nEND $_$;\n\
            COMMENT ON TABLE s.t IS 'drop database; \\! rm';\n\
            COPY s.t (id, note) FROM stdin;\n\
            1\t\\N\n2\tback\\\\slash\n\\.\n\
            SELECT pg_catalog.lowrite(0, '\\x0102');\n\
            SELECT E'it\\'s \\\\';\n\
            /* DROP DATABASE x; /* nested */ \\! */ SELECT 1; -- \\connect x\n\
            CREATE TABLE \"DROP DATABASE\" (a int);\n\
            SELECT $1, $$ \\q $$;\n\
            \\unrestrict abc123\n";
        check(sql).unwrap();
    }

    #[test]
    fn meta_commands_and_database_statements_are_refused() {
        for (sql, why) in [
            (
                "SET a = 1;\n\\connect billing\n",
                "line 2: psql meta-command \\connect",
            ),
            ("SELECT 1; \\! rm -rf /\n", "line 1: psql meta-command \\!"),
            (
                "drop database if exists billing;\n",
                "line 1: DROP DATABASE statement",
            ),
            (
                "SELECT 1;\n  Create\n  Database billing;",
                "line 3: CREATE DATABASE statement",
            ),
            (
                "SELECT 1; ALTER ROLE postgres PASSWORD 'x';",
                "line 1: ALTER ROLE statement",
            ),
            ("CREATE USER eve", "line 1: CREATE USER statement"),
            (
                "COPY t FROM stdin;\n1\n\\.\n\\c billing\n",
                "line 4: psql meta-command \\c",
            ),
            (
                "SET standard_conforming_strings = off;\nSELECT '\\'' ; \\! id\n",
                "line 2: psql meta-command \\!",
            ),
        ] {
            assert_eq!(check(sql).unwrap_err(), why, "{sql:?}");
        }
    }
}
