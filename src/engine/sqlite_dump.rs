//! Loading a SQL text dump into a new SQLite file, on a connection that can reach nothing but
//! that file.
//!
//! A dump from a bucket is untrusted: `ATTACH` would let it write any database the process can
//! open, `VACUUM INTO` would write a file anywhere, `load_extension()` would run code. So the
//! connection that runs it is confined by SQLite itself, not by reading the text for bad words:
//! an authorizer refuses attaching, PRAGMAs outside a short list, functions that reach files or
//! load code, virtual tables other than the full-text and R-tree ones, and writes to
//! `sqlite_schema`; no database may be attached at all; defensive mode stops deliberate
//! corruption; extensions cannot load; the schema is not trusted to call functions.
//!
//! `sqlite3 .dump` writes a virtual table as a row inserted into `sqlite_schema` between
//! `PRAGMA writable_schema=ON/OFF`. That one form is recognised exactly (a `CREATE VIRTUAL
//! TABLE` of an allowed module under the row's own name) and registered by lifeboat itself,
//! with the values bound as parameters; the dump never gets `writable_schema`.

use std::ffi::CString;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// PRAGMAs a dump may set: what `sqlite3 .dump` and similar tools write, and settings that
/// only shape the target file itself.
const PRAGMAS: [&str; 8] = [
    "foreign_keys",
    "defer_foreign_keys",
    "recursive_triggers",
    "user_version",
    "application_id",
    "encoding",
    "page_size",
    "auto_vacuum",
];

/// Functions that read or write files, load code, or hand out raw pointers.
const FUNCTIONS: [&str; 6] = [
    "load_extension",
    "fts3_tokenizer",
    "readfile",
    "writefile",
    "edit",
    "fts5",
];

/// Virtual table modules of the bundled SQLite that keep their data in the database itself.
const MODULES: [&str; 7] = [
    "fts3",
    "fts4",
    "fts5",
    "fts5vocab",
    "rtree",
    "rtree_i32",
    "geopoly",
];

/// What the authorizer decided against, for the error message; whether lifeboat's own
/// statement (registering a virtual table) is running; whether the statement is a data change
/// (DDL changes `sqlite_schema` too, through SQLite itself, and that is fine).
#[derive(Default)]
struct Verdicts {
    refused: Mutex<Option<String>>,
    internal: AtomicBool,
    dml: AtomicBool,
}

/// Applies the limits every connection to a restored or restoring file gets: no attached
/// databases, defensive mode, no extension loading, an untrusted schema.
pub(crate) fn harden(conn: &Connection) -> Result<()> {
    let failed = Error::sqlite("confine the SQLite connection");
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(failed)?;
    for (setting, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
    ] {
        conn.set_db_config(setting, on)
            .map_err(Error::sqlite("confine the SQLite connection"))?;
    }
    // SAFETY: the handle is valid while `conn` lives; the option takes an int and a nullable
    // int pointer, as documented for SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
            0,
            std::ptr::null_mut::<i32>(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(Error::Invalid(format!(
            "cannot turn off SQLite extension loading (code {rc})"
        )));
    }
    Ok(())
}

/// Why the authorizer refuses an action, or `None` to allow it.
fn judge(
    action: &AuthAction<'_>,
    database: Option<&str>,
    internal: bool,
    dml: bool,
) -> Option<String> {
    if let Some(db) = database
        && db != "main"
        && db != "temp"
    {
        return Some(format!("database {db:?} other than the target"));
    }
    match *action {
        AuthAction::Attach { .. } => Some("ATTACH DATABASE".into()),
        AuthAction::Detach { .. } => Some("DETACH DATABASE".into()),
        AuthAction::Pragma { pragma_name, .. } => {
            let name = pragma_name.to_ascii_lowercase();
            let allowed =
                PRAGMAS.contains(&name.as_str()) || (internal && name == "writable_schema");
            (!allowed).then(|| format!("PRAGMA {name}"))
        }
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            FUNCTIONS
                .contains(&name.as_str())
                .then(|| format!("function {name}()"))
        }
        AuthAction::CreateVtable { module_name, .. } => {
            let module = module_name.to_ascii_lowercase();
            (!MODULES.contains(&module.as_str())).then(|| format!("virtual table module {module}"))
        }
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if is_schema_table(table_name) && dml && !internal =>
        {
            Some("write to sqlite_schema".into())
        }
        AuthAction::Unknown { code, .. } => Some(format!("SQLite operation {code}")),
        _ => None,
    }
}

fn is_schema_table(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema"
    )
}

/// Executes a SQL text dump (as `sqlite3 .dump` writes) into a new database at `dest`,
/// statement by statement, never holding the whole dump in memory. A statement the confined
/// connection refuses fails the load with one line naming it; the caller removes `dest`.
pub fn load_sql(reader: impl BufRead, dest: &Path) -> Result<u64> {
    let mut conn = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::sqlite(format!("create {}", dest.display())))?;
    // A scratch database being filled: durability only matters at the end. (Defensive mode
    // refuses journal_mode=OFF; an in-memory journal still lets a dump's ROLLBACK work.)
    conn.execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;")
        .map_err(Error::sqlite("prepare scratch database"))?;
    harden(&conn)?;
    let verdicts = Arc::new(Verdicts::default());
    {
        let verdicts = verdicts.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let internal = verdicts.internal.load(Ordering::SeqCst);
            let dml = verdicts.dml.load(Ordering::SeqCst);
            match judge(&ctx.action, ctx.database_name, internal, dml) {
                None => Authorization::Allow,
                Some(why) => {
                    let mut refused = verdicts.refused.lock().unwrap_or_else(|e| e.into_inner());
                    refused.get_or_insert(why);
                    Authorization::Deny
                }
            }
        }))
        .map_err(Error::sqlite("install the SQLite authorizer"))?;
    }

    let mut chunk = String::new();
    let mut done = 0u64;
    let mut line_no = 0u64;
    let mut first_line = 0u64;
    let mut quotes = Quotes::default();
    // Bytes handed to sqlite3_complete for the statement being gathered: a trigger body is
    // checked again at each of its semicolons, and a hostile dump must not make that endless.
    let mut checked = 0u64;
    let mut reader = reader;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let room = (MAX_STATEMENT - chunk.len()) as u64 + 1;
        let n = (&mut reader)
            .take(room)
            .read_until(b'\n', &mut raw)
            .map_err(Error::io("read the SQL dump"))?;
        if n == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
        } else if n as u64 == room {
            return Err(too_long(first_line.max(line_no + 1)));
        }
        let line = std::str::from_utf8(&raw).map_err(|_| {
            Error::Invalid(format!("SQL dump, line {}: not UTF-8 text", line_no + 1))
        })?;
        line_no += 1;
        if line.contains('\0') {
            return Err(Error::Invalid(format!(
                "SQL dump, line {line_no}: a NUL byte, which SQL text never holds"
            )));
        }
        done += line.len() as u64 + 1;
        if chunk.is_empty() {
            if line.trim().is_empty() {
                continue;
            }
            first_line = line_no;
        }
        chunk.push_str(line);
        chunk.push('\n');
        // Only a semicolon outside quotes and comments can end a statement, so a long
        // string of many lines is not re-read line after line.
        if quotes.feed(line) && {
            checked += chunk.len() as u64;
            if checked > MAX_CHECKED {
                return Err(too_long(first_line));
            }
            is_complete(&chunk)
        } {
            for stmt in statements(&chunk) {
                // The line of its first token: comments before it do not count.
                let at = stmt.as_ptr() as usize - chunk.as_ptr() as usize;
                let mut start = stmt.len();
                lex(stmt, |i, _| start = start.min(i));
                let line = first_line + chunk[..at + start].matches('\n').count() as u64;
                run(&conn, &verdicts, stmt, line)?;
            }
            chunk.clear();
            checked = 0;
            quotes = Quotes::default();
        }
    }
    if !chunk.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "SQL dump ends inside a statement that starts at line {first_line}"
        )));
    }
    // Dumps often wrap everything in a transaction; one left open would be rolled back.
    if !conn.is_autocommit() {
        return Err(Error::Invalid(
            "SQL dump ends with a transaction still open (no COMMIT)".into(),
        ));
    }
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
        .map_err(Error::sqlite("finish scratch database"))?;
    conn.execute_batch("PRAGMA journal_mode = DELETE;")
        .map_err(Error::sqlite("finish scratch database"))?;
    drop(conn);
    let file =
        std::fs::File::open(dest).map_err(Error::io(format!("reopen {}", dest.display())))?;
    file.sync_all()
        .map_err(Error::io(format!("fsync {}", dest.display())))?;
    Ok(done)
}

/// Runs one statement of the dump, which starts on `line`.
fn run(conn: &Connection, verdicts: &Verdicts, stmt: &str, line: u64) -> Result<()> {
    let refuse = |what: &str| {
        Error::Forbidden(format!(
            "refused the SQL dump at line {line}: {what}; a restore may write only its target file (nothing was restored)"
        ))
    };
    let words = leading_words(stmt, 2);
    let first = words.first().map(String::as_str).unwrap_or_default();
    match first {
        // VACUUM INTO writes a copy anywhere; a plain VACUUM has no place in a dump.
        "VACUUM" => return Err(refuse("VACUUM")),
        "PRAGMA" if words.get(1).is_some_and(|w| w == "WRITABLE_SCHEMA") => {
            // The frame `sqlite3 .dump` puts around virtual tables; the row between is
            // registered by `register_virtual_table` instead.
            return match writable_schema_frame(stmt) {
                true => Ok(()),
                false => Err(refuse("PRAGMA writable_schema")),
            };
        }
        "INSERT" => {
            if let Some(vtab) = virtual_table_row(stmt) {
                return register_virtual_table(conn, verdicts, &vtab)
                    .map_err(|e| e.unwrap_or_else(|| refuse("write to sqlite_schema")));
            }
        }
        _ => {}
    }
    let dml = matches!(first, "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH");
    // SQLite refuses these itself (the dump never gets writable_schema); named here so the
    // message says what was tried.
    if dml
        && tokens(stmt)
            .iter()
            .any(|t| matches!(t, Tok::Word(w) | Tok::Quoted(w) if is_schema_table(w)))
    {
        return Err(refuse("write to sqlite_schema"));
    }
    verdicts.dml.store(dml, Ordering::SeqCst);
    conn.execute_batch(stmt).map_err(|e| {
        let refused = verdicts
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match refused {
            Some(what) => refuse(&what),
            // SQLite's own guards (an untrusted schema, defensive mode) said no.
            None if message(&e).starts_with("unsafe use of") => refuse(&message(&e)),
            None => Error::Invalid(format!(
                "SQL dump, statement at line {line}: {}",
                message(&e)
            )),
        }
    })
}

/// SQLite's words on one line, without the statement (which can be long, and spans lines).
fn message(e: &rusqlite::Error) -> String {
    let text = match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A virtual table the dump registers through `sqlite_schema`.
struct VirtualTable {
    name: String,
    sql: String,
}

/// Inserts the row into `sqlite_schema` with lifeboat's own statement, defensive mode and
/// writable_schema switched only around it. `Err(None)` means the row is refused.
fn register_virtual_table(
    conn: &Connection,
    verdicts: &Verdicts,
    vtab: &VirtualTable,
) -> std::result::Result<(), Option<Error>> {
    let taken: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE lower(name) = lower(?1)",
            [&vtab.name],
            |r| r.get(0),
        )
        .map_err(|e| Some(Error::sqlite("look up the schema")(e)))?;
    if taken {
        return Err(None);
    }
    struct Restore<'a>(&'a Connection, &'a Verdicts);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = self.0.execute_batch("PRAGMA writable_schema = OFF");
            let _ = self
                .0
                .set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true);
            self.1.internal.store(false, Ordering::SeqCst);
        }
    }
    verdicts.internal.store(true, Ordering::SeqCst);
    let _restore = Restore(conn, verdicts);
    let failed = |e| Some(Error::sqlite("register a virtual table")(e));
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, false)
        .map_err(failed)?;
    conn.execute_batch("PRAGMA writable_schema = ON")
        .map_err(failed)?;
    conn.execute(
        "INSERT INTO sqlite_schema (type, name, tbl_name, rootpage, sql) VALUES ('table', ?1, ?1, 0, ?2)",
        [&vtab.name, &vtab.sql],
    )
    .map_err(failed)?;
    Ok(())
}

/// `PRAGMA writable_schema=ON;` or `=OFF;`, exactly as `sqlite3 .dump` writes them.
fn writable_schema_frame(stmt: &str) -> bool {
    let toks = tokens(stmt);
    matches!(
        toks.as_slice(),
        [Tok::Word(p), Tok::Word(w), Tok::Punct('='), Tok::Word(v), Tok::Punct(';')]
            if p.eq_ignore_ascii_case("pragma")
                && w.eq_ignore_ascii_case("writable_schema")
                && (v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("off"))
    )
}

/// The `INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table',...)` row
/// `sqlite3 .dump` writes for a virtual table, if `stmt` is exactly that and the table is one
/// of the allowed modules under the row's own name.
fn virtual_table_row(stmt: &str) -> Option<VirtualTable> {
    use Tok::{Num, Punct, Str, Word};
    let toks = tokens(stmt);
    let [
        Word(insert),
        Word(into),
        Word(table),
        Punct('('),
        Word(c1),
        Punct(','),
        Word(c2),
        Punct(','),
        Word(c3),
        Punct(','),
        Word(c4),
        Punct(','),
        Word(c5),
        Punct(')'),
        Word(values),
        Punct('('),
        Str(kind),
        Punct(','),
        Str(name),
        Punct(','),
        Str(tbl_name),
        Punct(','),
        Num(rootpage),
        Punct(','),
        Str(sql),
        Punct(')'),
        Punct(';'),
    ] = toks.as_slice()
    else {
        return None;
    };
    let is = |w: &str, want: &str| w.eq_ignore_ascii_case(want);
    let shape = is(insert, "insert")
        && is(into, "into")
        && (is(table, "sqlite_schema") || is(table, "sqlite_master"))
        && [c1, c2, c3, c4, c5]
            .iter()
            .zip(["type", "name", "tbl_name", "rootpage", "sql"])
            .all(|(c, want)| is(c, want))
        && is(values, "values")
        && kind == "table"
        && name == tbl_name
        && rootpage == "0";
    if !shape || name.to_ascii_lowercase().starts_with("sqlite_") {
        return None;
    }
    // The schema text itself: one CREATE VIRTUAL TABLE of an allowed module, named as the row.
    let def = tokens(sql);
    let mut rest = match def.as_slice() {
        [Word(c), Word(v), Word(t), rest @ ..]
            if is(c, "create") && is(v, "virtual") && is(t, "table") =>
        {
            rest
        }
        _ => return None,
    };
    if let [Word(i), Word(n), Word(e), more @ ..] = rest
        && is(i, "if")
        && is(n, "not")
        && is(e, "exists")
    {
        rest = more;
    }
    let [defined, Word(using), Word(module), Punct('('), ..] = rest else {
        return None;
    };
    let defined = match defined {
        Word(w) | Str(w) | Tok::Quoted(w) => w,
        _ => return None,
    };
    let single = !def[..def.len() - 1].contains(&Punct(';')) && is_complete(&format!("{sql};"));
    let ok = defined.eq_ignore_ascii_case(name)
        && is(using, "using")
        && MODULES.contains(&module.to_ascii_lowercase().as_str())
        && single
        && def.last() == Some(&Punct(')'));
    ok.then(|| VirtualTable {
        name: name.clone(),
        sql: sql.clone(),
    })
}

/// SQLite's own tokenizer decides whether `sql` ends with a complete statement, so
/// semicolons inside strings, comments and trigger bodies are handled as SQLite does.
/// The longest statement a dump may hold: SQLite's own default limit on SQL text.
const MAX_STATEMENT: usize = 1_000_000_000;
/// How much text may be re-checked for completeness while one statement is gathered.
const MAX_CHECKED: u64 = 8 * MAX_STATEMENT as u64;

fn too_long(line: u64) -> Error {
    Error::Invalid(format!(
        "SQL dump, line {line}: a statement that does not end within {MAX_STATEMENT} bytes"
    ))
}

/// Whether a dump's text, fed line by line, is inside a quoted string, a quoted name or a
/// block comment: a cheap guard in front of [`is_complete`], which reads the whole chunk.
#[derive(Default)]
struct Quotes {
    /// The byte that closes what is open (`*` for a block comment).
    open: Option<u8>,
}

impl Quotes {
    /// Takes the next line; true when it has a semicolon outside quotes and comments.
    fn feed(&mut self, line: &str) -> bool {
        let b = line.as_bytes();
        let mut semicolon = false;
        let mut i = 0;
        while i < b.len() {
            match self.open {
                Some(b'*') if b[i] == b'*' && b.get(i + 1) == Some(&b'/') => {
                    self.open = None;
                    i += 1;
                }
                Some(close) if b[i] == close && close != b'*' => self.open = None,
                Some(_) => {}
                None => match b[i] {
                    q @ (b'\'' | b'"' | b'`') => self.open = Some(q),
                    b'[' => self.open = Some(b']'),
                    b'-' if b.get(i + 1) == Some(&b'-') => break,
                    b'/' if b.get(i + 1) == Some(&b'*') => {
                        self.open = Some(b'*');
                        i += 1;
                    }
                    b';' => semicolon = true,
                    _ => {}
                },
            }
            i += 1;
        }
        semicolon
    }
}

fn is_complete(sql: &str) -> bool {
    let Ok(c) = CString::new(sql) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}

/// The statements of a complete chunk: it is cut at each `;` outside strings, quoted names
/// and comments after which SQLite calls the text so far complete (so trigger bodies stay
/// whole).
fn statements(chunk: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in semicolons(chunk) {
        if is_complete(&chunk[start..end]) {
            out.push(&chunk[start..end]);
            start = end;
        }
    }
    let rest = &chunk[start..];
    if tokens(rest).is_empty() {
        out
    } else {
        // Whatever is left is handed over whole; SQLite reports it.
        out.push(rest);
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A keyword or bare name.
    Word(String),
    /// A '...' literal, unescaped.
    Str(String),
    /// A "...", `...` or [...] name, unescaped.
    Quoted(String),
    Num(String),
    Punct(char),
}

/// SQLite's lexical rules, as far as splitting and recognising statements needs them.
fn lex(sql: &str, mut each: impl FnMut(usize, Tok)) {
    let b = sql.as_bytes();
    let mut i = 0;
    let quoted = |i: usize, close: u8, doubled: bool| -> (String, usize) {
        let mut text = Vec::new();
        let mut j = i + 1;
        while j < b.len() {
            if b[j] == close {
                if doubled && b.get(j + 1) == Some(&close) {
                    text.push(close);
                    j += 2;
                    continue;
                }
                return (String::from_utf8_lossy(&text).into_owned(), j + 1);
            }
            text.push(b[j]);
            j += 1;
        }
        (String::from_utf8_lossy(&text).into_owned(), b.len())
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            }
            b'\'' => {
                let (text, end) = quoted(i, b'\'', true);
                each(i, Tok::Str(text));
                i = end;
            }
            b'"' | b'`' => {
                let (text, end) = quoted(i, c, true);
                each(i, Tok::Quoted(text));
                i = end;
            }
            b'[' => {
                let (text, end) = quoted(i, b']', false);
                each(i, Tok::Quoted(text));
                i = end;
            }
            b'0'..=b'9' => {
                let end = b[i..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == b'.'))
                    .map_or(b.len(), |p| i + p);
                each(i, Tok::Num(sql[i..end].to_owned()));
                i = end;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let end = b[i..]
                    .iter()
                    .position(|&x| {
                        !(x.is_ascii_alphanumeric() || x == b'_' || x == b'$' || x >= 0x80)
                    })
                    .map_or(b.len(), |p| i + p);
                // x'..' is a BLOB literal.
                if end == i + 1 && matches!(c, b'x' | b'X') && b.get(end) == Some(&b'\'') {
                    let (text, end) = quoted(end, b'\'', true);
                    each(i, Tok::Str(text));
                    i = end;
                } else {
                    each(i, Tok::Word(sql[i..end].to_owned()));
                    i = end;
                }
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or('?');
                each(i, Tok::Punct(ch));
                i += ch.len_utf8();
            }
        }
    }
}

fn tokens(sql: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    lex(sql, |_, t| out.push(t));
    out
}

/// Byte offsets just past each `;` outside strings, quoted names and comments.
fn semicolons(sql: &str) -> Vec<usize> {
    let mut out = Vec::new();
    lex(sql, |at, t| {
        if t == Tok::Punct(';') {
            out.push(at + 1);
        }
    });
    out
}

/// The first `n` keywords of a statement, upper-cased; comments never hide a keyword.
fn leading_words(stmt: &str, n: usize) -> Vec<String> {
    tokens(stmt)
        .into_iter()
        .take(n)
        .filter_map(|t| match t {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_completeness_follows_sqlite() {
        assert!(is_complete("CREATE TABLE t(a);\n"));
        assert!(!is_complete("INSERT INTO t VALUES('a;\n"));
        assert!(!is_complete(
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1;\n"
        ));
        assert!(is_complete(
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;\n"
        ));
    }

    #[test]
    fn only_semicolons_outside_quotes_and_comments_can_end_a_statement() {
        let mut q = Quotes::default();
        assert!(!q.feed("INSERT INTO t VALUES('a;"));
        assert!(!q.feed("b;c;"));
        assert!(q.feed("d'); -- ;"));
        assert!(!q.feed("/* ;"));
        assert!(!q.feed("; */ SELECT [a;b], \"c;\", `d;` -- ;"));
        assert!(q.feed("SELECT 'it''s'; /* x */"));
        assert_eq!(q.open, None);
    }

    #[test]
    fn a_long_string_of_many_lines_loads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("t.db");
        let text: String = (0..20_000).map(|i| format!("line {i};\n")).collect();
        let dump = format!(
            "CREATE TABLE t(a);\nINSERT INTO t VALUES('{text}');\nCREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n"
        );
        load_sql(dump.as_bytes(), &dest).unwrap();
        let conn = Connection::open(&dest).unwrap();
        let got: String = conn.query_row("SELECT a FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(got, text);
    }

    #[test]
    fn chunks_split_into_statements_as_sqlite_reads_them() {
        let chunk = "SELECT 'a;b'; /* ; */ CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; -- ;\nATTACH 'x' AS y;\n";
        let parts: Vec<&str> = statements(chunk).into_iter().map(str::trim).collect();
        assert_eq!(
            parts,
            [
                "SELECT 'a;b';",
                "/* ; */ CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;",
                "-- ;\nATTACH 'x' AS y;"
            ]
        );
        assert_eq!(leading_words(parts[2], 2), ["ATTACH"]);
        assert_eq!(leading_words("/**/VACUUM/**/INTO 'x';", 1), ["VACUUM"]);
    }

    #[test]
    fn only_the_dump_form_of_a_virtual_table_row_is_taken() {
        let row = |sql: &str| {
            format!(
                "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','docs','docs',0,'{}');",
                sql.replace('\'', "''")
            )
        };
        let vt = virtual_table_row(&row("CREATE VIRTUAL TABLE docs USING fts5(body)")).unwrap();
        assert_eq!(vt.name, "docs");
        assert!(
            virtual_table_row(
                &row("CREATE VIRTUAL TABLE docs USING fts5(body)")
                    .replace("sqlite_schema", "sqlite_master")
            )
            .is_some()
        );
        for bad in [
            "CREATE TABLE docs(a)",
            "CREATE VIRTUAL TABLE other USING fts5(body)",
            "CREATE VIRTUAL TABLE docs USING dbstat",
            "CREATE VIRTUAL TABLE docs USING csv(filename='/etc/passwd')",
            "CREATE VIRTUAL TABLE docs USING fts5(body); ATTACH 'x' AS y",
            "CREATE VIEW docs AS SELECT 1",
        ] {
            assert!(virtual_table_row(&row(bad)).is_none(), "{bad}");
        }
        let other_root = row("CREATE VIRTUAL TABLE docs USING fts5(body)").replace(",0,", ",2,");
        assert!(virtual_table_row(&other_root).is_none());
    }

    #[test]
    fn the_authorizer_allows_a_dump_and_nothing_outside_it() {
        let allow = [
            AuthAction::Insert { table_name: "t" },
            AuthAction::Insert {
                table_name: "sqlite_sequence",
            },
            AuthAction::Pragma {
                pragma_name: "foreign_keys",
                pragma_value: Some("OFF"),
            },
            AuthAction::CreateVtable {
                table_name: "docs",
                module_name: "fts5",
            },
            AuthAction::Function {
                function_name: "lower",
            },
        ];
        for a in &allow {
            assert_eq!(judge(a, Some("main"), false, true), None, "{a:?}");
        }
        // CREATE TABLE writes sqlite_schema through SQLite itself.
        let ddl = AuthAction::Insert {
            table_name: "sqlite_master",
        };
        assert_eq!(judge(&ddl, Some("main"), false, false), None);
        let refuse = [
            (AuthAction::Attach { filename: "/x.db" }, "ATTACH DATABASE"),
            (
                AuthAction::Pragma {
                    pragma_name: "journal_mode",
                    pragma_value: Some("WAL"),
                },
                "PRAGMA journal_mode",
            ),
            (
                AuthAction::Pragma {
                    pragma_name: "writable_schema",
                    pragma_value: Some("ON"),
                },
                "PRAGMA writable_schema",
            ),
            (
                AuthAction::Function {
                    function_name: "LOAD_EXTENSION",
                },
                "function load_extension()",
            ),
            (
                AuthAction::Update {
                    table_name: "sqlite_master",
                    column_name: "sql",
                },
                "write to sqlite_schema",
            ),
            (
                AuthAction::CreateVtable {
                    table_name: "x",
                    module_name: "dbstat",
                },
                "virtual table module dbstat",
            ),
        ];
        for (a, why) in &refuse {
            assert_eq!(judge(a, Some("main"), false, true).as_deref(), Some(*why));
        }
        assert!(judge(&AuthAction::Select, Some("other"), false, false).is_some());
        assert_eq!(
            judge(
                &AuthAction::Pragma {
                    pragma_name: "writable_schema",
                    pragma_value: Some("ON")
                },
                None,
                true,
                false
            ),
            None
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The lexer and the statement cutter take any text without panicking.
        #[test]
        fn any_text_is_cut_without_panicking(text in "(?s).{0,400}") {
            let parts = statements(&text);
            proptest::prop_assert_eq!(parts.concat().len() <= text.len(), true);
            let _ = virtual_table_row(&text);
            let _ = writable_schema_frame(&text);
            let _ = leading_words(&text, 2);
        }
    }
}
