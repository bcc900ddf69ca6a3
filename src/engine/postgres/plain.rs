//! Loading a plain SQL dump (`pg_dump -Fp`) through lifeboat's own connection.
//!
//! psql would run the file's meta-commands (`\!` runs a shell on this host, `\connect` opens
//! another database); lifeboat has no such thing to run. The file is cut into statements by a
//! lexer that follows PostgreSQL's rules (quoted strings with and without backslash escapes,
//! dollar quotes, quoted identifiers, nested comments, `$` inside identifiers, `BEGIN ATOMIC`
//! bodies); each statement goes to the server as it is, and the data after `COPY ... FROM
//! stdin;` goes through COPY. A backslash outside quotes is a psql command: an error naming
//! its line, never executed. What a statement may do is the server's decision, for the role
//! the connection logs in as (see `role.rs`): a statement the lexer cut wrongly can only fail
//! there.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::AsyncBufReadExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::{Conn, describe_error, until_cancelled};
use crate::error::{Error, Result};

/// COPY data is sent in pieces of about this size.
const COPY_CHUNK: usize = 256 * 1024;
/// Statements sent before their answers are awaited, at most (and their size).
const PIPELINE: usize = 256;
const PIPELINE_BYTES: usize = 4 << 20;

/// One statement of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub text: String,
    /// The line it starts on.
    pub line: u64,
    /// Its first two keywords, upper-cased ("CREATE TABLE", "COPY").
    pub kind: String,
    /// `COPY ... FROM STDIN`: data lines follow, up to `\.`.
    pub copy_in: bool,
    /// `COPY ... TO STDOUT`: a restore loads, it prints nothing.
    pub copy_out: bool,
    /// It may change `standard_conforming_strings` (SET, RESET, set_config, a block of code,
    /// the end of a transaction).
    pub may_change_strings: bool,
    /// It gives an object an owner (`ALTER ... OWNER TO`) or grants rights (`GRANT`, `REVOKE`,
    /// `ALTER DEFAULT PRIVILEGES`): left out, as `pg_restore --no-owner --no-acl` leaves them
    /// out, since they name roles the restore role does not act for.
    pub owners_or_grants: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Code,
    /// '...'; `escapes` when backslashes escape (E'', or standard_conforming_strings off).
    Single {
        escapes: bool,
    },
    /// B'...' and X'...': no escapes at all.
    Bits,
    Double,
    Dollar(Vec<u8>),
    Block(usize),
}

/// Cuts SQL text into statements, line by line.
pub(crate) struct Splitter {
    state: State,
    /// standard_conforming_strings as the server has it.
    pub standard_strings: bool,
    text: String,
    line_no: u64,
    start_line: u64,
    /// The statement's leading keywords (up to 4), upper-cased.
    head: Vec<String>,
    /// The word being read, and whether the previous byte continues an identifier.
    word: String,
    in_number: bool,
    last_word: String,
    copy_in: bool,
    copy_out: bool,
    set_config: bool,
    owner_to: bool,
    paren: i32,
    begin_depth: i32,
}

impl Splitter {
    pub fn new(standard_strings: bool) -> Splitter {
        Splitter {
            state: State::Code,
            standard_strings,
            text: String::new(),
            line_no: 0,
            start_line: 0,
            head: Vec::new(),
            word: String::new(),
            in_number: false,
            last_word: String::new(),
            copy_in: false,
            copy_out: false,
            set_config: false,
            owner_to: false,
            paren: 0,
            begin_depth: 0,
        }
    }

    /// Whether a statement has begun and not ended (comments alone begin none).
    pub fn pending(&self) -> bool {
        self.start_line != 0
    }

    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Reads one line (with its newline) and returns the statements it completed. Text after
    /// a `COPY ... FROM stdin;` on the same line is an error: its data starts on the next one.
    pub fn line(&mut self, line: &str) -> std::result::Result<Vec<Statement>, String> {
        self.line_no += 1;
        let b = line.as_bytes();
        if self.state == State::Code && !self.pending() {
            let t = line.trim();
            if let Some(meta) = t.strip_prefix('\\') {
                // pg_dump fences its scripts with \restrict KEY ... \unrestrict KEY, which
                // only limit what psql itself may do; lifeboat does nothing of the kind.
                let word = meta.split_whitespace().next().unwrap_or("");
                if matches!(word, "restrict" | "unrestrict") {
                    return Ok(Vec::new());
                }
            }
        }
        let mut done = Vec::new();
        let mut i = 0;
        let mut seg_start = 0;
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            match &mut self.state {
                State::Code => {
                    let ident = is_ident_start(c) || (!self.word.is_empty() && is_ident_cont(c));
                    if ident && !self.in_number {
                        self.word.push(char::from(c.to_ascii_uppercase()));
                        i += 1;
                        continue;
                    }
                    if c.is_ascii_digit() && self.word.is_empty() {
                        self.in_number = true;
                        i += 1;
                        continue;
                    }
                    if self.in_number && (c.is_ascii_alphanumeric() || c == b'.' || c == b'_') {
                        i += 1;
                        continue;
                    }
                    let prev_word = std::mem::take(&mut self.word);
                    self.in_number = false;
                    // E'', B'', X'', N'': the letter belongs to the literal, not a keyword.
                    let prefix = c == b'\'' && matches!(prev_word.as_str(), "E" | "B" | "X" | "N");
                    if !prev_word.is_empty() && !prefix {
                        self.on_word(prev_word.clone());
                    }
                    match c {
                        b'\\' => {
                            let cmd: String = line[i..]
                                .split_whitespace()
                                .next()
                                .unwrap_or("\\")
                                .chars()
                                .take(20)
                                .collect();
                            return Err(format!(
                                "line {}: psql meta-command {cmd}: lifeboat loads SQL, it never runs psql commands",
                                self.line_no
                            ));
                        }
                        b'-' if next == Some(b'-') => {
                            // A comment to the end of the line.
                            i = b.len();
                            continue;
                        }
                        b'/' if next == Some(b'*') => {
                            self.state = State::Block(1);
                            i += 2;
                            continue;
                        }
                        b'\'' => {
                            let prefix = prev_word.as_str();
                            self.state = match prefix {
                                "E" => State::Single { escapes: true },
                                "B" | "X" => State::Bits,
                                _ => State::Single {
                                    escapes: !self.standard_strings,
                                },
                            };
                            self.mark_start();
                        }
                        b'"' => {
                            self.state = State::Double;
                            self.mark_start();
                        }
                        b'$' => {
                            if let Some(len) = dollar_tag(&b[i..]) {
                                self.state = State::Dollar(b[i..i + len].to_vec());
                                self.mark_start();
                                i += len;
                                continue;
                            }
                            self.mark_start();
                        }
                        b'(' => {
                            self.paren += 1;
                            self.mark_start();
                        }
                        b')' => {
                            self.paren -= 1;
                            self.mark_start();
                        }
                        b';' if self.paren <= 0 && self.begin_depth <= 0 => {
                            self.text.push_str(&line[seg_start..=i]);
                            seg_start = i + 1;
                            if let Some(s) = self.finish() {
                                let copy = s.copy_in;
                                done.push(s);
                                if copy {
                                    let rest = &line[seg_start..];
                                    if !rest.trim().is_empty() && !rest.trim().starts_with("--") {
                                        return Err(format!(
                                            "line {}: text after COPY ... FROM stdin; on the same line (its data must start on the next line)",
                                            self.line_no
                                        ));
                                    }
                                    return Ok(done);
                                }
                            }
                        }
                        c if c.is_ascii_whitespace() => {}
                        _ => self.mark_start(),
                    }
                }
                State::Single { escapes } => match c {
                    b'\\' if *escapes => i += 1,
                    b'\'' if next == Some(b'\'') => i += 1,
                    b'\'' => self.state = State::Code,
                    _ => {}
                },
                State::Bits => {
                    if c == b'\'' {
                        self.state = State::Code;
                    }
                }
                State::Double => {
                    if c == b'"' {
                        if next == Some(b'"') {
                            i += 1;
                        } else {
                            self.state = State::Code;
                        }
                    }
                }
                State::Dollar(tag) => {
                    if b[i..].starts_with(tag) {
                        i += tag.len();
                        self.state = State::Code;
                        continue;
                    }
                }
                State::Block(depth) => {
                    if c == b'*' && next == Some(b'/') {
                        *depth -= 1;
                        i += 1;
                        if *depth == 0 {
                            self.state = State::Code;
                        }
                    } else if c == b'/' && next == Some(b'*') {
                        *depth += 1;
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        // A word at the end of a line ends there.
        if self.state == State::Code {
            if let Some(w) = Some(std::mem::take(&mut self.word)).filter(|w| !w.is_empty()) {
                self.on_word(w);
            }
            self.in_number = false;
        }
        let rest = &line[seg_start..];
        if self.pending() || !rest.trim().is_empty() {
            self.text.push_str(rest);
        }
        Ok(done)
    }

    /// The first line of a statement is where its first token is.
    fn mark_start(&mut self) {
        if self.start_line == 0 {
            self.start_line = self.line_no;
        }
    }

    fn on_word(&mut self, word: String) {
        self.mark_start();
        if self.head.len() < 4 {
            self.head.push(word.clone());
        }
        let head = |i: usize| self.head.get(i).map(String::as_str);
        if head(0) == Some("COPY") {
            if self.last_word == "FROM" && word == "STDIN" {
                self.copy_in = true;
            }
            if self.last_word == "TO" && word == "STDOUT" {
                self.copy_out = true;
            }
        }
        if word == "SET_CONFIG" {
            self.set_config = true;
        }
        if head(0) == Some("ALTER") && self.last_word == "OWNER" && word == "TO" {
            self.owner_to = true;
        }
        // As psql does: inside CREATE [OR REPLACE] FUNCTION/PROCEDURE, a BEGIN ... END body
        // (BEGIN ATOMIC) holds semicolons that do not end the statement.
        let routine = head(0) == Some("CREATE")
            && (matches!(head(1), Some("FUNCTION" | "PROCEDURE"))
                || (head(1) == Some("OR")
                    && head(2) == Some("REPLACE")
                    && matches!(head(3), Some("FUNCTION" | "PROCEDURE"))));
        if routine && self.paren == 0 {
            match word.as_str() {
                "BEGIN" => self.begin_depth += 1,
                "CASE" if self.begin_depth >= 1 => self.begin_depth += 1,
                "END" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        self.last_word = word;
    }

    /// Ends the statement in `text`, if there is one (a lone `;` is none).
    fn finish(&mut self) -> Option<Statement> {
        let text = std::mem::take(&mut self.text);
        let head = std::mem::take(&mut self.head);
        let line = std::mem::replace(&mut self.start_line, 0);
        let copy_in = std::mem::take(&mut self.copy_in);
        let copy_out = std::mem::take(&mut self.copy_out);
        let set_config = std::mem::take(&mut self.set_config);
        let owner_to = std::mem::take(&mut self.owner_to);
        self.last_word.clear();
        self.paren = 0;
        self.begin_depth = 0;
        if head.is_empty() {
            return None;
        }
        let first = head[0].as_str();
        let may_change_strings = set_config
            || matches!(
                first,
                "SET"
                    | "RESET"
                    | "DO"
                    | "CALL"
                    | "ROLLBACK"
                    | "ABORT"
                    | "COMMIT"
                    | "END"
                    | "RELEASE"
            );
        let owners_or_grants = owner_to
            || matches!(first, "GRANT" | "REVOKE")
            || (first == "ALTER" && head.get(1).map(String::as_str) == Some("DEFAULT"));
        Some(Statement {
            text: text.trim().to_owned(),
            line,
            kind: head.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
            copy_in,
            copy_out,
            may_change_strings,
            owners_or_grants,
        })
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// The length of a `$tag$` opening at the start of `s`, if it is one (`$1` is a parameter).
fn dollar_tag(s: &[u8]) -> Option<usize> {
    let end = s[1..].iter().position(|&b| b == b'$')? + 1;
    let tag = &s[1..end];
    let valid = tag.first().is_none_or(|&b| is_ident_start(b))
        && tag.iter().all(|&b| is_ident_start(b) || b.is_ascii_digit());
    valid.then_some(end + 1)
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    pub statements: u64,
    /// Ownership and grant statements left out.
    pub skipped: u64,
}

/// Loads the plain SQL file at `file` into `target`, in one transaction, stopping at the
/// first error.
pub async fn load(target: &Conn, file: &Path, cancel: &CancellationToken) -> Result<Loaded> {
    let client = target.connect_for_dump().await?;
    let token = client.cancel_token();
    let work = load_into(&client, file);
    until_cancelled(target, &token, cancel, work).await
}

/// The longest statement (or COPY row) a dump may hold: the server's own limit on one.
const MAX_STATEMENT: usize = 1 << 30;

fn too_long(line: u64) -> Error {
    Error::Invalid(format!(
        "SQL dump, line {line}: a statement or row longer than {MAX_STATEMENT} bytes, more than PostgreSQL takes"
    ))
}

/// Reads up to a newline, or `room` bytes, whichever comes first.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    out: &mut Vec<u8>,
    room: u64,
) -> Result<usize> {
    use tokio::io::AsyncReadExt;
    reader
        .take(room)
        .read_until(b'\n', out)
        .await
        .map_err(Error::io("read the SQL dump"))
}

async fn load_into(client: &Client, file: &Path) -> Result<Loaded> {
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(Error::io(format!("open {}", file.display())))?;
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, opened);
    let mut splitter = Splitter::new(standard_strings(client).await?);
    client
        .batch_execute("BEGIN")
        .await
        .map_err(super::pg_error("begin the load"))?;
    let mut raw = Vec::new();
    let mut loaded = Loaded::default();
    let mut queued: Vec<Statement> = Vec::new();
    let mut queued_bytes = 0;
    loop {
        raw.clear();
        let room = (MAX_STATEMENT.saturating_sub(splitter.text.len()) + 1) as u64;
        let n = read_line(&mut reader, &mut raw, room).await?;
        if n == 0 {
            break;
        }
        if n as u64 == room && raw.last() != Some(&b'\n') {
            return Err(too_long(splitter.line_no() + 1));
        }
        let line = std::str::from_utf8(&raw).map_err(|_| {
            Error::Invalid(format!(
                "line {} of the SQL dump is not UTF-8: convert the dump to UTF-8 first",
                splitter.line_no() + 1
            ))
        })?;
        let found = match splitter.line(line) {
            Ok(found) => found,
            Err(why) => {
                // A statement queued from earlier lines that fails is the first cause.
                flush(client, &mut queued).await?;
                return Err(Error::Forbidden(format!("refused the SQL dump at {why}")));
            }
        };
        for stmt in found {
            if stmt.owners_or_grants {
                loaded.skipped += 1;
                continue;
            }
            loaded.statements += 1;
            let refused = if stmt.copy_out {
                Some(Error::Forbidden(format!(
                    "refused the SQL dump at line {}: COPY ... TO STDOUT prints data; a restore only loads it",
                    stmt.line
                )))
            } else if stmt.kind == "SET CLIENT_ENCODING" && !names_utf8(&stmt.text) {
                Some(Error::Invalid(format!(
                    "line {}: the dump is in another encoding than UTF-8 ({}): convert it to UTF-8 first",
                    stmt.line, stmt.text
                )))
            } else {
                None
            };
            if let Some(e) = refused {
                flush(client, &mut queued).await?;
                return Err(e);
            }
            if stmt.copy_in {
                flush(client, &mut queued).await?;
                queued_bytes = 0;
                copy_in(client, &stmt, &mut reader, &mut splitter).await?;
                continue;
            }
            let changes_strings = stmt.may_change_strings;
            queued_bytes += stmt.text.len();
            queued.push(stmt);
            // The lexer must know how the server reads strings before it reads on.
            if changes_strings || queued.len() >= PIPELINE || queued_bytes >= PIPELINE_BYTES {
                flush(client, &mut queued).await?;
                queued_bytes = 0;
                if changes_strings {
                    splitter.standard_strings = standard_strings(client).await?;
                }
            }
        }
    }
    flush(client, &mut queued).await?;
    if splitter.pending() {
        return Err(Error::Invalid(format!(
            "the SQL dump ends inside a statement (line {})",
            splitter.line_no()
        )));
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(super::pg_error("commit the load"))?;
    Ok(loaded)
}

/// Sends the queued statements one after the other without waiting for each answer (the
/// client pipelines them), and reports the first that failed.
async fn flush(client: &Client, queued: &mut Vec<Statement>) -> Result<()> {
    let sent = queued.iter().map(|s| client.batch_execute(&s.text));
    let answers = futures_util::future::join_all(sent).await;
    let first_error = queued
        .iter()
        .zip(answers)
        .find_map(|(stmt, answer)| answer.err().map(|e| failed(stmt, &e)));
    queued.clear();
    first_error.map_or(Ok(()), Err)
}

/// Feeds the lines after a `COPY ... FROM stdin;` to the server, up to the `\.` line.
async fn copy_in(
    client: &Client,
    stmt: &Statement,
    reader: &mut (impl AsyncBufReadExt + Unpin),
    splitter: &mut Splitter,
) -> Result<()> {
    let sink = client
        .copy_in::<_, Bytes>(stmt.text.as_str())
        .await
        .map_err(|e| failed(stmt, &e))?;
    futures_util::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(COPY_CHUNK + (64 << 10));
    let mut line = Vec::new();
    let mut ended = false;
    loop {
        line.clear();
        let room = MAX_STATEMENT as u64 + 1;
        let n = read_line(reader, &mut line, room).await?;
        if n == 0 {
            break;
        }
        if n as u64 == room && line.last() != Some(&b'\n') {
            return Err(too_long(splitter.line_no + 1));
        }
        splitter.line_no += 1;
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed == b"\\." {
            ended = true;
            break;
        }
        buf.extend_from_slice(&line);
        if buf.len() >= COPY_CHUNK {
            sink.send(buf.split().freeze())
                .await
                .map_err(|e| failed(stmt, &e))?;
        }
    }
    if !ended {
        return Err(Error::Invalid(format!(
            "the SQL dump ends inside the data of the COPY at line {} (no \\. line)",
            stmt.line
        )));
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze())
            .await
            .map_err(|e| failed(stmt, &e))?;
    }
    sink.finish().await.map_err(|e| failed(stmt, &e))?;
    Ok(())
}

async fn standard_strings(client: &Client) -> Result<bool> {
    let row = client
        .query_one("SELECT current_setting('standard_conforming_strings')", &[])
        .await
        .map_err(super::pg_error("read standard_conforming_strings"))?;
    Ok(row.get::<_, String>(0) == "on")
}

fn names_utf8(set: &str) -> bool {
    let upper = set.to_ascii_uppercase().replace(['\'', '"', '-', '_'], "");
    upper.contains("UTF8") || upper.contains("UNICODE")
}

/// A failed statement, as one line: the server's words, where, and what would allow it when
/// it lacked rights.
fn failed(stmt: &Statement, e: &tokio_postgres::Error) -> Error {
    let mut detail = describe_error(e);
    if detail.contains("cannot run inside a transaction block") {
        detail.push_str(
            " (a restore loads one database's schema and data, in one transaction, into the database it created: dump without --create)",
        );
    }
    super::refusal(&detail, &format!("{} at line {}", stmt.kind, stmt.line)).unwrap_or_else(|| {
        Error::Postgres {
            context: format!("SQL dump, {} at line {}", stmt.kind, stmt.line),
            detail,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> std::result::Result<Vec<Statement>, String> {
        let mut s = Splitter::new(true);
        let mut out = Vec::new();
        for line in sql.split_inclusive('\n') {
            out.extend(s.line(line)?);
        }
        assert!(!s.pending(), "unfinished: {:?}", s.text);
        Ok(out)
    }

    fn texts(sql: &str) -> Vec<String> {
        split(sql).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn a_pg_dump_script_splits_where_the_server_would() {
        let sql = "\\restrict abc123\n\
            SET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            CREATE FUNCTION s.f() RETURNS trigger LANGUAGE plpgsql AS $_$\n\
            BEGIN\n  RAISE NOTICE 'a\\b';\n  DROP ROLE x;\nEND $_$;\n\
            COMMENT ON TABLE s.t IS 'drop database; \\! rm';\n\
            CREATE FUNCTION s.g() RETURNS int LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\n SELECT CASE WHEN true THEN 2 END;\nEND;\n\
            SELECT E'it\\'s; \\\\', $$ ; $$, $q$ $$ ; $q$;\n\
            /* DROP DATABASE x; /* nested; */ \\! */ SELECT 1; -- \\connect x\n\
            CREATE TABLE \"a;\"\"b\" (\"c$d\" int, e$f int);\n\
            SELECT $1;\n\
            \\unrestrict abc123\n";
        let got = split(sql).unwrap();
        let kinds: Vec<&str> = got.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "SET STANDARD_CONFORMING_STRINGS",
                "SELECT PG_CATALOG",
                "CREATE FUNCTION",
                "COMMENT ON",
                "CREATE FUNCTION",
                "SELECT",
                "SELECT",
                "CREATE TABLE",
                "SELECT"
            ]
        );
        assert!(got[0].may_change_strings && got[1].may_change_strings);
        assert!(!got[3].may_change_strings);
        assert!(got.iter().all(|s| !s.owners_or_grants));
        let owners = split(
            "ALTER TABLE s.t OWNER TO app;\nALTER SCHEMA s OWNER TO \"Odd\";\nGRANT ALL ON s.t TO x;\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\nALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x;\nALTER TABLE s.t ADD COLUMN owner text;\n",
        )
        .unwrap();
        let skipped: Vec<bool> = owners.iter().map(|s| s.owners_or_grants).collect();
        assert_eq!(skipped, [true, true, true, true, true, false]);
        assert_eq!(got[2].line, 4);
        assert!(got[4].text.ends_with("END;"), "{}", got[4].text);
        assert_eq!(
            got[6].text,
            "/* DROP DATABASE x; /* nested; */ \\! */ SELECT 1;"
        );
    }

    #[test]
    fn dollars_inside_identifiers_do_not_open_quotes() {
        // `a$b$` is one identifier: the `;` after it ends the statement.
        assert_eq!(
            texts("SELECT a$b$ FROM t; DROP TABLE x$;\n"),
            ["SELECT a$b$ FROM t;", "DROP TABLE x$;"]
        );
        // `$x$` after a blank opens a dollar quote: the `;` inside does not end anything.
        assert_eq!(texts("SELECT $x$ ; $x$;\n"), ["SELECT $x$ ; $x$;"]);
    }

    #[test]
    fn backslashes_follow_standard_conforming_strings_and_e_strings() {
        let sql = "SELECT 'a\\';\nSELECT 1;\n";
        assert_eq!(texts(sql), ["SELECT 'a\\';", "SELECT 1;"]);
        let mut off = Splitter::new(false);
        assert!(off.line("SELECT 'a\\';\n").unwrap().is_empty());
        assert_eq!(off.line("';\n").unwrap().len(), 1);
        // An `e` that ends a word does not make an E-string.
        assert_eq!(
            texts("SELECT somee'\\';\nSELECT 2;\n"),
            ["SELECT somee'\\';", "SELECT 2;"]
        );
    }

    #[test]
    fn comments_never_hide_a_keyword() {
        let got = split("DROP/**/DATABASE/* x */app;\nALTER -- y\n SYSTEM SET a = 1;\n").unwrap();
        assert_eq!(got[0].kind, "DROP DATABASE");
        assert_eq!(got[1].kind, "ALTER SYSTEM");
        assert_eq!(got[1].line, 2);
    }

    #[test]
    fn copy_from_stdin_hands_over_its_data_and_meta_commands_are_refused() {
        let mut s = Splitter::new(true);
        let got = s.line("COPY public.t (a, b) FROM stdin;\n").unwrap();
        assert!(got[0].copy_in && got[0].kind == "COPY PUBLIC");
        let out = s.line("COPY (SELECT 1) TO STDOUT;\n").unwrap();
        assert!(out[0].copy_out && !out[0].copy_in);
        let err = Splitter::new(true)
            .line("COPY t FROM stdin; SELECT 1;\n")
            .unwrap_err();
        assert!(err.contains("text after COPY"), "{err}");
        for (sql, want) in [
            ("\\! touch /tmp/x\n", "line 1: psql meta-command \\!"),
            (
                "SELECT 1;\n  \\connect other\n",
                "line 2: psql meta-command \\connect",
            ),
            ("SELECT 1 \\gexec\n", "line 1: psql meta-command \\gexec"),
        ] {
            let err = split(sql).unwrap_err();
            assert!(err.starts_with(want), "{sql:?}: {err}");
        }
        // Inside quotes a backslash is data.
        assert_eq!(texts("SELECT '\\! x', $$\\q$$;\n").len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any text, cut into lines anywhere: statements or an error, never a panic, and the
        /// statements hold only text that was there.
        #[test]
        fn the_splitter_takes_any_text(text in "(?s).{0,400}") {
            for standard in [true, false] {
                let mut s = Splitter::new(standard);
                let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
                if lines.is_empty() { lines.push(""); }
                // The load stops at the first error.
                for line in lines {
                    let Ok(found) = s.line(line) else { break };
                    for st in found {
                        proptest::prop_assert!(text.contains(st.text.trim_end_matches(';').trim()));
                    }
                }
            }
        }
    }
}
