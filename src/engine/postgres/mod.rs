//! PostgreSQL: `pg_dump` in a snapshot lifeboat exports and counts in, `pg_restore` into
//! scratch databases lifeboat creates.
//!
//! The dump is `pg_dump -Fc -Z0`: custom format (what `pg_restore -j` needs), uncompressed,
//! because lifeboat's multi-threaded zstd is several times faster than pg_dump's own
//! single-threaded compression and compresses better (docs/performance.md).

pub mod conn;
pub mod content;
pub mod database;
mod engine;
pub mod physical;
pub mod plain;
mod promote;
mod restore;
pub mod role;
pub mod tls;
pub mod toc;
pub mod tools;

use std::io::Read;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use sha2::Digest;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub use conn::{Conn, ConnSpec};
pub use engine::Postgres;

use super::{Finished, Snapshot, quote_ident};
use crate::config::SourceConfig;
use crate::content::ContentChecksums;
use crate::error::{Error, Result};
use crate::manifest::{EngineKind, Extension, PostgresInfo, SourceInfo, TableCount};

/// How long a backup waits for a table lock (a migration holding one, say) before it fails
/// and says so, instead of hanging silently while the RPO runs out.
const LOCK_WAIT: &str = "5min";

/// Opens the read-only snapshot counts and checksums are taken in.
fn begin_snapshot() -> String {
    format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL lock_timeout = '{LOCK_WAIT}'"
    )
}

/// The pseudo-table under which large objects are counted (one row per large object).
pub const LARGE_OBJECTS: &str = "pg_catalog.pg_largeobject_metadata";

/// How much of a tool's stderr is kept for the error message.
const STDERR_KEEP: usize = 16 * 1024;

pub(crate) fn pg_error(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |e| Error::Postgres {
        context,
        detail: describe_error(&e),
    }
}

/// The server's own message when there is one ("password authentication failed for user
/// ..."), else the client library's.
pub(crate) fn describe_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The connection a source's config describes.
pub fn source_conn(source: &SourceConfig) -> Result<Conn> {
    Conn::new(&ConnSpec {
        url: source.url.as_deref(),
        host: source.host.as_deref(),
        port: source.port,
        user: source.user.as_deref(),
        database: source.database.as_deref(),
        sslmode: source.sslmode.as_deref(),
        password_env: source.password_env.as_deref(),
    })
}

/// The server scratch databases for a source are created on: `scratch_url` when set (its
/// database is the one connected to for CREATE/DROP DATABASE), else the source's own server
/// (connecting to `postgres`). Another server never gets the source's password: its own comes
/// from `scratch_password_env`, PGPASSWORD or ~/.pgpass.
pub fn scratch_server(source: &SourceConfig) -> Result<Conn> {
    match &source.scratch_url {
        Some(url) => {
            let conn = Conn::new(&ConnSpec {
                url: Some(url),
                sslmode: source.sslmode.as_deref(),
                password_env: source.scratch_password_env.as_deref(),
                ..ConnSpec::default()
            })?;
            Ok(if conn::names_database(url) {
                conn
            } else {
                conn.with_dbname("postgres")
            })
        }
        None => Ok(source_conn(source)?.with_dbname("postgres")),
    }
}

/// Scratch database names are generated, and typed ones must look the same: lowercase
/// letters, digits and `_`, at most 63 bytes. They are quoted in SQL anyway.
pub fn validate_db_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "database name {name:?} is not allowed: use 1-63 lowercase letters, digits and '_', not starting with a digit"
        )))
    }
}

/// `lifeboat_restore_<id>` for a backup id or any other label.
pub fn scratch_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("lifeboat_restore_{safe}");
    name.truncate(63);
    name
}

pub async fn server_version(client: &Client) -> Result<(String, u32)> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(pg_error("server version"))?;
    let version: String = row.get(0);
    let num: i32 = row.get(1);
    Ok((version, (num / 10_000) as u32))
}

/// Row counts of every table whose data a dump carries: ordinary tables and leaf partitions
/// (`count(*) FROM ONLY`, so inheritance and partition parents never count twice), outside the
/// system schemas and extensions, plus large objects as [`LARGE_OBJECTS`]. Materialized views
/// are left out: a dump carries their definition, not their rows.
pub async fn count_tables(client: &Client) -> Result<Vec<TableCount>> {
    let names = list_tables(client).await?;
    let mut out = Vec::with_capacity(names.len() + 1);
    // One statement per batch of tables: fewer round trips than one per table.
    for batch in names.chunks(50) {
        let sql = batch
            .iter()
            .enumerate()
            .map(|(i, (s, t))| {
                format!(
                    "SELECT {i}, count(*) FROM ONLY {}.{}",
                    quote_ident(s),
                    quote_ident(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut counts = vec![0u64; batch.len()];
        for row in client
            .query(&sql, &[])
            .await
            .map_err(pg_error("count rows"))?
        {
            let i: i32 = row.get(0);
            let n: i64 = row.get(1);
            if let Some(c) = counts.get_mut(i as usize) {
                *c = n as u64;
            }
        }
        out.extend(
            batch
                .iter()
                .zip(counts)
                .map(|((s, t), rows)| TableCount::in_schema(s, t, rows)),
        );
    }
    let lo: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata",
            &[],
        )
        .await
        .map_err(pg_error("count large objects"))?
        .get(0);
    out.push(TableCount::in_schema(
        "pg_catalog",
        "pg_largeobject_metadata",
        lo as u64,
    ));
    Ok(out)
}

/// The ordinary tables and leaf partitions a dump carries data of, as (schema, table).
pub(crate) async fn list_tables(client: &Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(pg_error("list tables"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Row counts of a database now, in one consistent snapshot, and its content checksums in
/// the same snapshot when asked.
pub async fn count_database(
    conn: &Conn,
    with_content: bool,
    cancel: &CancellationToken,
) -> Result<(Vec<TableCount>, Option<ContentChecksums>)> {
    let counted = counted_in_snapshot(conn, with_content, false, cancel).await?;
    Ok((counted.tables, counted.content))
}

/// A database's row counts (and content checksums when asked) with a fingerprint of what it
/// holds: those and its catalog ([`database::catalog_sum`]), taken in one snapshot. Two
/// fingerprints of one database differ when its rows or its structure changed in between.
pub async fn fingerprint_database(
    conn: &Conn,
    with_content: bool,
    cancel: &CancellationToken,
) -> Result<Counted> {
    counted_in_snapshot(conn, with_content, true, cancel).await
}

/// What [`fingerprint_database`] found.
#[derive(Debug, Clone)]
pub struct Counted {
    pub tables: Vec<TableCount>,
    pub content: Option<ContentChecksums>,
    /// Empty unless asked for.
    pub fingerprint: String,
}

async fn counted_in_snapshot(
    conn: &Conn,
    with_content: bool,
    with_fingerprint: bool,
    cancel: &CancellationToken,
) -> Result<Counted> {
    let client = conn.connect().await?;
    let counted = async {
        client
            .batch_execute(&begin_snapshot())
            .await
            .map_err(pg_error("begin"))?;
        let tables = count_tables(&client).await?;
        let content = if with_content {
            Some(content::checksums(&client).await?)
        } else {
            None
        };
        let fingerprint = if with_fingerprint {
            let catalog = database::catalog_sum(&client).await?;
            let mut h = sha2::Sha256::new();
            for t in &tables {
                h.update(format!("{}\t{}\n", t.name, t.rows).as_bytes());
            }
            for (t, sum) in content.iter().flatten() {
                h.update(format!("{t}\t{sum}\n").as_bytes());
            }
            h.update(catalog.as_bytes());
            let kind = if content.is_some() { "pg+sums" } else { "pg" };
            format!("{kind}:{}", crate::pipeline::hex(h.finalize()))
        } else {
            String::new()
        };
        Ok(Counted {
            tables,
            content,
            fingerprint,
        })
    };
    let token = client.cancel_token();
    let counted = until_cancelled(conn, &token, cancel, counted).await?;
    let _ = client.batch_execute("COMMIT").await;
    Ok(counted)
}

/// Runs `work` unless `cancel` fires first; then the server is told to stop the query too,
/// since dropping its future leaves a count or a hash running there.
pub(crate) async fn until_cancelled<T>(
    conn: &Conn,
    token: &tokio_postgres::CancelToken,
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        done = work => done,
        () = cancel.cancelled() => {
            if let Err(e) = conn.cancel_query(token).await {
                tracing::warn!("the server may go on counting: {e}");
            }
            Err(Error::Cancelled)
        }
    }
}

async fn schemas_and_extensions(client: &Client) -> Result<(Vec<String>, Vec<Extension>)> {
    let schemas = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(pg_error("list schemas"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let extensions = client
        .query(
            "SELECT extname, extversion FROM pg_extension ORDER BY 1",
            &[],
        )
        .await
        .map_err(pg_error("list extensions"))?
        .iter()
        .map(|r| Extension {
            name: r.get(0),
            version: r.get(1),
        })
        .collect();
    Ok((schemas, extensions))
}

/// A child process that is killed and reaped if nobody waits for it.
pub(crate) struct ChildGuard {
    child: Option<Child>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ChildGuard {
    /// Spawns `cmd` with stderr collected on a thread.
    /// The child leads its own process group, so stopping it also stops the workers
    /// `pg_restore -j` forks.
    /// The child also dies with lifeboat: a killed lifeboat must not leave pg_dump or
    /// pg_restore running (see [`spawn_tied`]).
    pub fn spawn(mut cmd: std::process::Command, what: &str) -> Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_tied(cmd).map_err(Error::io(format!("cannot start {what}")))?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if kept.len() < STDERR_KEEP {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        Ok(ChildGuard {
            child: Some(child),
            stderr,
        })
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// Waits for the exit, killing the child if `cancel` fires first. Returns the status and
    /// what it wrote to stderr.
    /// The child stays in the guard until it has exited, so a task dropped mid-wait (the
    /// console quitting) still stops it.
    pub async fn wait(mut self, cancel: &CancellationToken) -> Result<(ExitStatus, String)> {
        let status = loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Error::Invalid("child already reaped".into()));
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    break status;
                }
                Ok(None) => {}
                Err(e) => return Err(Error::io("wait for a child process")(e)),
            }
            if cancel.is_cancelled() {
                if let Some(child) = self.child.take() {
                    // Stopping may take a moment of blocking waits.
                    let _ = tokio::task::spawn_blocking(move || stop_group(child)).await;
                }
                return Err(Error::Cancelled);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stderr = match self.stderr.take() {
            Some(h) => tokio::task::spawn_blocking(move || h.join().unwrap_or_default())
                .await
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok((status, stderr))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child);
        }
    }
}

/// Spawns `cmd` so that it gets SIGTERM when lifeboat dies, however it dies (SIGKILL
/// included). SIGTERM rather than SIGKILL: pg_restore and pg_dump then stop their parallel
/// workers and cancel their queries on the server.
///
/// The kernel sends that signal when the *thread* that forked the child ends, so every child
/// is forked by one thread that lives as long as the process.
pub(crate) fn spawn_tied(mut cmd: std::process::Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc::{Sender, SyncSender, channel, sync_channel};
    use std::sync::{Mutex, OnceLock};
    type Request = (std::process::Command, SyncSender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();

    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // lifeboat may have died before the line above took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("lifeboat exited"));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        let started = std::thread::Builder::new()
            .name("lifeboat-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            tracing::warn!("cannot start the spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply, answer) = sync_channel(1);
    let sent = spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply));
    match sent {
        Ok(()) => answer
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread stopped"))),
        // No spawner thread: fork from here (the tie then holds while this thread lives).
        Err(std::sync::mpsc::SendError((mut cmd, _))) => cmd.spawn(),
    }
}

/// Stops a child and its process group: SIGTERM first, so pg_restore and pg_dump cancel
/// their server-side queries, then SIGKILL for whatever is left; then reaps the child.
fn stop_group(mut child: Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: signals the group this guard's child leads; the unreaped child keeps the id
    // from being reused until `wait` below.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    for _ in 0..40 {
        if exited_unreaped(pgid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; the leader is at most a zombie, so the group id is still ours.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Whether the child has exited, leaving it to be reaped (so its pid stays reserved).
fn exited_unreaped(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo it is given, and WNOWAIT leaves the
    // child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            libc::id_t::try_from(pid).unwrap_or_default(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc != 0 || info.si_pid() != 0
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The tool's own words, on one line: its `error:` lines, else its last line.
pub(crate) fn tool_failure(tool: &str, status: ExitStatus, stderr: &str) -> Error {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("error:") || l.contains("FATAL:"))
        .take(3)
        .collect();
    let said = if errors.is_empty() {
        stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message")
            .to_owned()
    } else {
        errors.join(" / ")
    };
    Error::Tool(format!("{tool} failed ({status}): {said}"))
}

/// Starts a dump of `source`: a REPEATABLE READ transaction exports its snapshot, `pg_dump`
/// streams the database as of that snapshot, and the same transaction counts every table
/// while the dump runs (and, with `with_content`, hashes every row: [`content::checksums`]). The
/// transaction stays open until `pg_dump` has exited; the snapshot's `finish` reports
/// pg_dump's failure, so a failed dump never gets a manifest.
pub async fn snapshot(
    name: &str,
    source: &SourceConfig,
    with_content: bool,
    cancel: &CancellationToken,
) -> Result<Snapshot> {
    let conn = source_conn(source)?;
    let client = conn.connect().await?;
    let (server_version, major) = server_version(&client).await?;
    let pg_dump = tools::find("pg_dump", source.bin_dir.as_deref(), major)?;
    client
        .batch_execute(&begin_snapshot())
        .await
        .map_err(pg_error("begin the snapshot transaction"))?;
    let snapshot_id: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(pg_error("export the snapshot"))?
        .get(0);
    let (schemas, extensions) = schemas_and_extensions(&client).await?;
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(pg_error("current database"))?
        .get(0);
    let database_info = database::describe(&client, &database).await?;

    let mut cmd = conn.command(&pg_dump.path);
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!("--lock-wait-timeout={LOCK_WAIT}"))
        .arg(format!("--snapshot={snapshot_id}"))
        .stdout(Stdio::piped());
    let mut child = ChildGuard::spawn(cmd, "pg_dump")?;
    let stdout = child
        .stdout()
        .ok_or_else(|| Error::Invalid("pg_dump has no stdout".into()))?;

    // Aborted with the snapshot, so a cancelled backup does not go on counting.
    let token = client.cancel_token();
    let mut counting = AbortOnDrop(tokio::spawn(async move {
        let counted = async {
            let tables = count_tables(&client).await?;
            let sums = if with_content {
                Some(content::checksums(&client).await?)
            } else {
                None
            };
            Ok::<_, Error>((tables, sums))
        }
        .await;
        (client, counted)
    }));
    let cancel = cancel.clone();
    let finish = Box::pin(async move {
        let joined = async {
            (&mut counting.0)
                .await
                .map_err(|e| Error::Invalid(format!("row counting stopped: {e}")))
        };
        let (client, counted) = until_cancelled(&conn, &token, &cancel, joined).await?;
        let (status, stderr) = child.wait(&cancel).await?;
        // Only now may the exporting transaction end.
        let _ = client.batch_execute("COMMIT").await;
        // A failed count or checksum is the first cause: it ends the exporting transaction,
        // and a pg_dump that had not taken the snapshot yet then fails on it too.
        let (tables, content) = counted?;
        if !status.success() {
            return Err(tool_failure("pg_dump", status, &stderr));
        }
        Ok(Finished { tables, content })
    });
    Ok(Snapshot {
        reader: Box::new(stdout),
        raw_size: None,
        source: SourceInfo {
            name: name.to_owned(),
            engine: EngineKind::Postgres,
            server_version,
            database,
        },
        tables: Vec::new(),
        content: None,
        postgres: Some(PostgresInfo {
            pg_dump_version: pg_dump.version,
            dump_format: "custom".into(),
            schemas,
            extensions,
            database: database_info,
        }),
        finish: Some(finish),
        _staging: None,
    })
}

/// Whether `database` exists on the server `maintenance` connects to.
pub async fn database_exists(client: &Client, database: &str) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(pg_error("look up databases"))?
        .is_some())
}

/// Drops a scratch database, disconnecting whoever is still in it, and the restore role that
/// owned it ([`role::scratch_role_for`]), if there is one.
pub async fn drop_database(server: &Conn, database: &str) -> Result<()> {
    validate_db_name(database)?;
    let client = server.connect().await?;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_error("server version"))?
        .get(0);
    drop_with(&client, database, version >= 130_000).await?;
    role::drop_role(&client, &role::scratch_role_for(database)).await
}

/// `DROP DATABASE ... WITH (FORCE)` where the server has it (13+); before that the sessions
/// are ended by hand, and one that races in makes the DROP fail rather than hang.
#[doc(hidden)]
pub async fn drop_with(client: &Client, database: &str, with_force: bool) -> Result<()> {
    validate_db_name(database)?;
    if !with_force {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .map_err(pg_error(format!("disconnect database {database}")))?;
    }
    // A restore role owns its database and may have marked it a template, which cannot be
    // dropped, or closed it to connections.
    let _ = client
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true",
            quote_ident(database)
        ))
        .await;
    let force = if with_force { " WITH (FORCE)" } else { "" };
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {}{force}",
            quote_ident(database)
        ))
        .await
        .map_err(pg_error(format!("drop database {database}")))
}

/// Runs `pg_restore` from a dump file into `target`, in `jobs` parallel jobs. Unless
/// `privileged`, ownership and grants are left out (they name roles the restore role may not
/// act for) and so are subscriptions (a scratch copy never connects to another server).
/// pg_restore sends the archive's SQL to the server; it has no client-side commands to run.
pub async fn run_pg_restore(
    target: &Conn,
    pg_restore: &Path,
    file: &Path,
    jobs: usize,
    privileged: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut cmd = target.command(pg_restore);
    cmd.args(["--no-password", "--exit-on-error"])
        .arg(format!("--jobs={}", jobs.max(1)))
        .arg(format!("--dbname={}", target.dbname))
        .stdout(Stdio::null());
    if !privileged {
        cmd.args(["--no-owner", "--no-acl", "--no-subscriptions"]);
    }
    cmd.arg(file);
    let (status, stderr) = ChildGuard::spawn(cmd, "pg_restore")?.wait(cancel).await?;
    if !status.success() {
        let what = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Command was:"))
            .map(|c| c.trim().chars().take(80).collect::<String>());
        // A privileged restore has all the rights lifeboat can give: its failure is pg_restore's.
        if !privileged
            && let Some(refused) = refusal(&stderr, what.as_deref().unwrap_or("an archive entry"))
        {
            return Err(refused);
        }
        return Err(tool_failure("pg_restore", status, &stderr));
    }
    Ok(())
}

/// The server refused something for lack of rights: one line that says what, and what would
/// allow it. `None` when `detail` is another kind of failure.
pub(crate) fn refusal(detail: &str, what: &str) -> Option<Error> {
    let said = detail
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("pg_restore: error: could not execute query: ")
        })
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("permission denied")
                || l.contains("must be superuser")
                || l.contains("must be owner")
                || l.contains("must be member")
                || l.contains("must have privileges of")
                || l.contains("must be able to set role")
        })?
        .trim_start_matches("ERROR:")
        .trim()
        .to_owned();
    let extension = said
        .strip_prefix("permission denied to create extension \"")
        .and_then(|r| r.split('"').next());
    Some(Error::Forbidden(match extension {
        Some(ext) => format!(
            "the dump needs extension {ext}, which is not trusted: only a superuser may create it, and a restore runs as a role that owns the scratch database and nothing else; restore an authenticated backup with --privileged to allow it"
        ),
        None => format!(
            "the dump needs more rights than a restore has ({what}: {said}); a restore runs as a role that owns the scratch database and nothing else, and only an authenticated backup may be restored with --privileged"
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a process in the group still runs (killed orphans linger as zombies until
    /// init reaps them). Waits a little for signals to land.
    fn group_alive(pgid: libc::pid_t) -> bool {
        let running = || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            })
        };
        (0..100).all(|_| {
            let alive = running();
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            alive
        })
    }

    /// A shell with two background workers, like `pg_restore -j 2`.
    fn workers() -> (ChildGuard, libc::pid_t) {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 300 & sleep 300 & wait"]);
        let guard = ChildGuard::spawn(cmd, "sh").unwrap();
        let pgid = libc::pid_t::try_from(guard.child.as_ref().unwrap().id()).unwrap();
        assert!(group_alive(pgid));
        (guard, pgid)
    }

    #[tokio::test]
    async fn a_dropped_wait_stops_the_whole_process_group() {
        let (guard, pgid) = workers();
        let cancel = CancellationToken::new();
        let waiting = guard.wait(&cancel);
        // The task waiting on the child goes away, as when the console quits.
        let timed_out = tokio::time::timeout(Duration::from_millis(200), waiting).await;
        assert!(timed_out.is_err());
        assert!(!group_alive(pgid));

        let (guard, pgid) = workers();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(matches!(guard.wait(&cancel).await, Err(Error::Cancelled)));
        assert!(!group_alive(pgid));
    }

    #[test]
    fn a_scratch_server_never_gets_the_source_password() {
        let password = |source: &SourceConfig| {
            scratch_server(source)
                .unwrap()
                .command(Path::new("psql"))
                .get_envs()
                .find(|(k, _)| *k == "PGPASSWORD")
                .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        };
        // Variables every test run has stand in for password variables.
        let config = |extra: &str| {
            let text = format!(
                "[storage]\ntype = \"local\"\npath = \"b\"\n[[source]]\nname = \"db\"\n\
                 engine = \"postgres\"\nurl = \"postgres://u@src/db\"\npassword_env = \"PATH\"\n{extra}"
            );
            crate::config::Config::parse(&text, Path::new("c.toml"))
        };
        let path = std::env::var("PATH").unwrap();
        let same = config("").unwrap();
        assert_eq!(password(&same.sources[0]), Some(path.clone()));
        let other = config("scratch_url = \"postgres://r@scratch/postgres\"\n").unwrap();
        assert_eq!(password(&other.sources[0]), None);
        let own = config(
            "scratch_url = \"postgres://r@scratch/postgres\"\nscratch_password_env = \"HOME\"\n",
        )
        .unwrap();
        assert_eq!(password(&own.sources[0]), std::env::var("HOME").ok());
        assert_ne!(password(&own.sources[0]), Some(path));
        let err = config("scratch_password_env = \"HOME\"\n").unwrap_err();
        assert!(err.to_string().contains("needs scratch_url"), "{err}");
    }

    #[test]
    fn scratch_names_are_generated_valid_and_injection_is_refused() {
        let n = scratch_name("20261122T020000Z-7f3a");
        assert_eq!(n, "lifeboat_restore_20261122t020000z_7f3a");
        validate_db_name(&n).unwrap();
        for bad in [
            "",
            "x\"; DROP DATABASE prod; --",
            "Upper",
            "1abc",
            "a-b",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(validate_db_name(bad).is_err(), "{bad:?}");
        }
    }
}
