//! Point-in-time restore into a scratch cluster lifeboat creates: the base backup unpacked
//! (and checked against its `backup_manifest`), recovery settings written, the server started
//! as the data directory's owner on its own socket, WAL fetched through `wal get` until the
//! target, then promoted or paused, and handed over as a connection string.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::base::{BaseManifest, list_bases};
use super::tar::{Extract, parse_manifest, verify_files};
use crate::engine::postgres::conn::{Conn, ConnSpec};
use crate::engine::postgres::tools;
use crate::error::{Error, Result};
use crate::manifest::BackupId;
use crate::pipeline::crypt::EncryptionConfig;
use crate::pipeline::stream::download_into;
use crate::storage::ObjectStore;
use crate::wal::chain::{Chain, Window};
use crate::wal::names::Lsn;
use crate::wal::prefetch;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryTarget {
    Time(DateTime<Utc>),
    Lsn(Lsn),
    /// A restore point made with `pg_create_restore_point`.
    Name(String),
    /// Everything the archive holds.
    EndOfWal,
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Time(t) => {
                write!(f, "time {}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Name(n) => write!(f, "restore point {n:?}"),
            RecoveryTarget::EndOfWal => f.write_str("the end of the archived WAL"),
        }
    }
}

pub struct RecoverOptions {
    pub target: RecoveryTarget,
    /// Stay paused, read-only, at the target instead of opening the cluster.
    pub pause: bool,
    /// This base backup rather than the newest one that can reach the target.
    pub base: Option<BackupId>,
    /// The parent of the scratch cluster's directory.
    pub scratch_dir: PathBuf,
    /// The shell command (before `%f %p`) that fetches WAL: `lifeboat --config … wal get
    /// --source …`, run by the server as the data directory's owner.
    pub wal_get: String,
    pub keys: Option<EncryptionConfig>,
    pub bin_dir: Option<PathBuf>,
    /// How long recovery may take before lifeboat gives up and stops the cluster.
    pub timeout: Duration,
}

/// A running scratch cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ScratchCluster {
    /// The directory lifeboat made: `data/`, the socket, `server.log`.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    /// The OS user the server runs as (`postgres` when lifeboat runs as root).
    pub os_user: Option<String>,
    pub bin_dir: PathBuf,
}

impl ScratchCluster {
    /// A libpq connection string to `database` on it.
    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.dir.display(),
            self.port
        )
    }

    pub fn conn(&self, database: &str) -> Result<Conn> {
        let host = self.dir.display().to_string();
        Conn::new(&ConnSpec {
            host: Some(&host),
            port: Some(self.port),
            user: Some("postgres"),
            database: Some(database),
            ..ConnSpec::default()
        })
    }

    fn server_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        match &self.os_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// A scratch cluster lifeboat made earlier, found by its directory. Anything else (a
    /// directory lifeboat did not name, a data directory of another kind) is refused, so
    /// `scratch drop` can never remove a cluster that is not a scratch copy.
    pub fn open(dir: &Path, bin_dir: Option<&Path>) -> Result<ScratchCluster> {
        let named = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("lifeboat-pitr-"));
        let data_dir = dir.join("data");
        let version = std::fs::read_to_string(data_dir.join("PG_VERSION")).unwrap_or_default();
        let conf =
            std::fs::read_to_string(data_dir.join("postgresql.auto.conf")).unwrap_or_default();
        if !named || version.is_empty() || !conf.contains("# lifeboat point-in-time restore") {
            return Err(Error::Invalid(format!(
                "{} is not a scratch cluster made by a lifeboat point-in-time restore",
                dir.display()
            )));
        }
        let port = conf
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("port = ")?.trim().parse().ok())
            .unwrap_or(5432);
        let major = tools::major_of(version.trim()).unwrap_or(0);
        let bin_dir = tools::find("pg_ctl", bin_dir, major)?
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(ScratchCluster {
            dir: dir.to_path_buf(),
            data_dir,
            port,
            os_user: is_root().then(|| "postgres".to_owned()),
            bin_dir,
        })
    }

    /// Stops the server (immediately: a scratch copy has nothing to flush) and removes the
    /// directory.
    pub fn drop_cluster(&self) -> Result<()> {
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"])
                .output();
        }
        std::fs::remove_dir_all(&self.dir)
            .map_err(Error::io(format!("cannot remove {}", self.dir.display())))
    }

    /// The last lines of the server's log that say what went wrong.
    pub fn log_errors(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("FATAL:")
                    || l.contains("PANIC:")
                    || l.contains("ERROR:")
                    || l.contains("invalid value for parameter")
                    // What `wal get` said when it refused a file.
                    || l.starts_with("error: ")
            })
            .collect();
        let mut said: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("error: "))
            .take(1)
            .copied()
            .collect();
        let rest: Vec<&str> = lines
            .iter()
            .filter(|l| !l.starts_with("error: "))
            .copied()
            .collect();
        said.extend(&rest[rest.len().saturating_sub(2)..]);
        said.join(" / ")
    }

    /// The log line where recovery said where it stopped, as evidence.
    pub fn stop_line(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("server.log")).ok()?;
        log.lines()
            .rfind(|l| l.contains("recovery stopping") || l.contains("recovery target"))
            .map(|l| l.trim().to_owned())
    }
}

/// Where the recovered cluster stands.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub base: BackupId,
    pub target: RecoveryTarget,
    pub window: Window,
    pub cluster: ScratchCluster,
    /// Still in recovery, paused at the target (read-only), or promoted.
    pub paused: bool,
    pub timeline: u32,
    /// The last WAL position replayed.
    pub replay_lsn: Option<Lsn>,
    /// The commit time of the last transaction replayed.
    pub last_commit: Option<DateTime<Utc>>,
    /// PostgreSQL's own words about where it stopped.
    pub stop_line: Option<String>,
}

/// Picks the base backup for a target: the named one, else the newest consistent before
/// the target whose WAL window reaches it.
pub async fn choose_base(
    store: &dyn ObjectStore,
    source: &str,
    target: &RecoveryTarget,
    wanted: Option<&BackupId>,
    keys: Option<&EncryptionConfig>,
) -> Result<(BaseManifest, Window)> {
    let (bases, _) = list_bases(store, source).await?;
    if bases.is_empty() {
        return Err(Error::NoBackup(format!(
            "a point-in-time restore of {source}: it has no base backup (run `lifeboat basebackup {source}`)"
        )));
    }
    let size = bases[0].wal_segment_size;
    let chain = Chain::load(store, source, size, keys).await?;
    let mut reasons = Vec::new();
    for base in bases.iter().rev() {
        if wanted.is_some_and(|w| w != &base.id) {
            continue;
        }
        let window = match chain.window(&base.needs()) {
            Ok(w) => w,
            Err(u) => {
                reasons.push(format!(
                    "base backup {} lacks WAL segment {} in the archive",
                    base.id, u.missing
                ));
                continue;
            }
        };
        match reachable(&window, target) {
            Ok(()) => return Ok((base.clone(), window)),
            Err(why) => reasons.push(format!("base backup {}: {why}", base.id)),
        }
    }
    if reasons.is_empty() {
        return Err(Error::NoBackup(format!(
            "base backup {} of {source}",
            wanted.map(ToString::to_string).unwrap_or_default()
        )));
    }
    Err(Error::Invalid(format!(
        "cannot restore {source} to {target}: {}",
        reasons.join("; ")
    )))
}

/// Whether `target` lies in `window`, or why not.
fn reachable(window: &Window, target: &RecoveryTarget) -> std::result::Result<(), String> {
    let past_gap = |what: String| match &window.stopped_by {
        Some(gap) => format!(
            "{what} lies past WAL segment {} that is missing from the archive ({} segment(s) missing up to {}); a restore cannot cross it",
            gap.from, gap.missing, gap.to
        ),
        None => format!("{what} is past the newest WAL in the archive"),
    };
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    match target {
        RecoveryTarget::Time(t) if *t < window.from => Err(format!(
            "{} is before the backup was consistent ({})",
            show(*t),
            show(window.from)
        )),
        RecoveryTarget::Time(t) if window.to.is_some_and(|to| *t > to) => Err(past_gap(format!(
            "{} (archived WAL reaches {})",
            show(*t),
            show(window.to.expect("checked"))
        ))),
        RecoveryTarget::Lsn(l) if *l < window.from_lsn => Err(format!(
            "LSN {l} is before the backup was consistent (LSN {})",
            window.from_lsn
        )),
        RecoveryTarget::Lsn(l) if *l > window.to_lsn => Err(past_gap(format!(
            "LSN {l} (archived WAL reaches {})",
            window.to_lsn
        ))),
        _ => Ok(()),
    }
}

/// Creates the scratch cluster and recovers it to the target. On failure the cluster is
/// stopped and removed, and the error says why in PostgreSQL's words.
pub async fn recover(
    store: &dyn ObjectStore,
    source: &str,
    opts: &RecoverOptions,
    log: &(dyn Fn(String) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Recovered> {
    if opts.pause && opts.target == RecoveryTarget::EndOfWal {
        return Err(Error::Invalid(
            "--pause needs a target (--time, --lsn or --name): at the end of the WAL recovery always opens the cluster".into(),
        ));
    }
    let (base, window) = choose_base(
        store,
        source,
        &opts.target,
        opts.base.as_ref(),
        opts.keys.as_ref(),
    )
    .await?;
    log(format!(
        "restoring base backup {} (WAL {}..{} on timeline {}) to {}",
        base.id, base.start_lsn, base.end_lsn, base.timeline, opts.target
    ));
    let major = tools::major_of(&base.server_version).unwrap_or(0);
    let bin_dir = tools::find("pg_ctl", opts.bin_dir.as_deref(), major)?
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let os_user = is_root().then(|| "postgres".to_owned());
    std::fs::create_dir_all(&opts.scratch_dir).map_err(Error::io(format!(
        "cannot create {}",
        opts.scratch_dir.display()
    )))?;
    let dir = opts.scratch_dir.join(format!(
        "lifeboat-pitr-{source}-{}-{:04x}",
        base.id,
        fastrand::u16(..)
    ));
    std::fs::create_dir(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    let cluster = ScratchCluster {
        data_dir: dir.join("data"),
        dir,
        port: free_port()?,
        os_user,
        bin_dir,
    };
    match build_and_start(store, &base, &window, &cluster, opts, log, cancel).await {
        Ok(r) => Ok(r),
        Err(e) => {
            let said = cluster.log_errors();
            let _ = cluster.drop_cluster();
            Err(match (said.is_empty(), e) {
                (_, Error::Cancelled) => Error::Cancelled,
                (true, e) => e,
                (false, e) => Error::Invalid(format!("{e}; PostgreSQL said: {said}")),
            })
        }
    }
}

async fn build_and_start(
    store: &dyn ObjectStore,
    base: &BaseManifest,
    window: &Window,
    cluster: &ScratchCluster,
    opts: &RecoverOptions,
    log: &(dyn Fn(String) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Recovered> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&cluster.data_dir)
        .map_err(Error::io(format!(
            "cannot create {}",
            cluster.data_dir.display()
        )))?;
    let extract = download_into(
        store,
        &base.data_key()?,
        base.expect(opts.keys.as_ref())?,
        Extract::new(&cluster.data_dir, base.file_checksums),
        cancel,
    )
    .await?;
    let tar = &extract.0.summary;
    if !tar.complete {
        return Err(Error::Invalid(format!(
            "base backup {} ends before its tar does",
            base.id
        )));
    }
    let pg = parse_manifest(tar.manifest.as_deref().unwrap_or_default())?;
    let files = verify_files(&pg, tar)?;
    log(format!(
        "base backup unpacked into {}: {files} files match its backup_manifest",
        cluster.data_dir.display()
    ));
    write_recovery_config(cluster, opts)?;
    std::fs::create_dir_all(cluster.data_dir.join("pg_wal/archive_status"))
        .map_err(Error::io("create pg_wal"))?;
    let spool = prefetch::spool_of(&cluster.dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&spool)
        .map_err(Error::io(format!("cannot create {}", spool.display())))?;
    if let Some(user) = &cluster.os_user {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:{user}"))
            .arg(&cluster.dir)
            .status()
            .map_err(Error::io("chown the scratch cluster"))?
            .success();
        if !ok {
            return Err(Error::Invalid(format!(
                "cannot give {} to the {user} user",
                cluster.dir.display()
            )));
        }
    }
    let out = cluster
        .server_command("pg_ctl")
        .arg("-D")
        .arg(&cluster.data_dir)
        .arg("-l")
        .arg(cluster.dir.join("server.log"))
        .args(["-W", "start"])
        .output()
        .map_err(Error::io("start the scratch cluster with pg_ctl"))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    log(format!(
        "scratch cluster starting on {} port {}, replaying WAL",
        cluster.dir.display(),
        cluster.port
    ));
    let client = wait_for(cluster, opts, cancel).await?;
    // Recovery is over: segments fetched ahead of it are not needed, and `wal get` does not
    // prefetch into a spool that is gone.
    let _ = std::fs::remove_dir_all(&spool);
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    (SELECT timeline_id FROM pg_control_checkpoint()), \
                    COALESCE(pg_last_wal_replay_lsn(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END)::text, \
                    pg_last_xact_replay_timestamp()",
            &[],
        )
        .await
        .map_err(crate::engine::postgres::pg_error("read where recovery stopped"))?;
    let paused: bool = row.get(0);
    let mut timeline = row.get::<_, i32>(1) as u32;
    if !paused {
        // After promotion the control file's checkpoint may still name the old timeline.
        if let Ok(r) = client
            .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
            .await
        {
            timeline = r.get::<_, i32>(0) as u32;
        }
    }
    let replay: Option<String> = row.get(2);
    let last_commit: Option<std::time::SystemTime> = row.get(3);
    Ok(Recovered {
        base: base.id.clone(),
        target: opts.target.clone(),
        window: window.clone(),
        cluster: cluster.clone(),
        paused,
        timeline,
        replay_lsn: replay.as_deref().and_then(Lsn::parse),
        last_commit: last_commit.map(DateTime::<Utc>::from),
        stop_line: cluster.stop_line(),
    })
}

/// `wal get` with the cluster's spool, so that segments are fetched ahead of recovery.
fn restore_command(cluster: &ScratchCluster, opts: &RecoverOptions) -> Result<String> {
    let spool = prefetch::spool_of(&cluster.dir).display().to_string();
    if spool.contains('\'') {
        return Err(Error::Invalid(format!(
            "{spool} holds a quote; restore_command cannot name it safely"
        )));
    }
    Ok(format!("{} --spool '{spool}' %f %p", opts.wal_get))
}

fn write_recovery_config(cluster: &ScratchCluster, opts: &RecoverOptions) -> Result<()> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut conf =
        String::from("\n# lifeboat point-in-time restore: a scratch copy, never archiving\n");
    let settings: Vec<(&str, String)> = vec![
        ("port", cluster.port.to_string()),
        ("listen_addresses", quote("")),
        (
            "unix_socket_directories",
            quote(&cluster.dir.display().to_string()),
        ),
        ("archive_mode", quote("off")),
        ("primary_conninfo", quote("")),
        ("hot_standby", quote("on")),
        ("restore_command", quote(&restore_command(cluster, opts)?)),
        ("recovery_target_timeline", quote("latest")),
        (
            "recovery_target_action",
            quote(if opts.pause { "pause" } else { "promote" }),
        ),
    ];
    for (k, v) in settings {
        conf.push_str(&format!("{k} = {v}\n"));
    }
    match &opts.target {
        RecoveryTarget::Time(t) => conf.push_str(&format!(
            "recovery_target_time = {}\n",
            // PostgreSQL reads neither `T` nor `Z` here.
            quote(&t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string())
        )),
        RecoveryTarget::Lsn(l) => conf.push_str(&format!(
            "recovery_target_lsn = {}\n",
            quote(&l.to_string())
        )),
        RecoveryTarget::Name(n) => conf.push_str(&format!("recovery_target_name = {}\n", quote(n))),
        RecoveryTarget::EndOfWal => {}
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(cluster.data_dir.join("postgresql.auto.conf"))
        .map_err(Error::io("write postgresql.auto.conf"))?;
    f.write_all(conf.as_bytes())
        .map_err(Error::io("write postgresql.auto.conf"))?;
    std::fs::write(cluster.data_dir.join("recovery.signal"), b"")
        .map_err(Error::io("write recovery.signal"))?;
    Ok(())
}

/// Waits until recovery is over (promoted) or paused at the target, the server died, or the
/// timeout passed.
async fn wait_for(
    cluster: &ScratchCluster,
    opts: &RecoverOptions,
    cancel: &CancellationToken,
) -> Result<tokio_postgres::Client> {
    let conn = cluster.conn("postgres")?;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "recovery did not reach {} within {} s",
                opts.target,
                opts.timeout.as_secs()
            )));
        }
        if !cluster.data_dir.join("postmaster.pid").exists()
            && std::fs::read_to_string(cluster.dir.join("server.log"))
                .is_ok_and(|l| l.contains("database system is shut down") || l.contains("FATAL:"))
        {
            return Err(Error::Invalid(format!(
                "recovery to {} failed and the scratch server stopped",
                opts.target
            )));
        }
        if let Ok(client) = conn.connect().await {
            let state = client
                .query_one(
                    "SELECT pg_is_in_recovery(), \
                            CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END",
                    &[],
                )
                .await;
            if let Ok(row) = state {
                let in_recovery: bool = row.get(0);
                let pause: String = row.get(1);
                if !in_recovery || (opts.pause && pause == "paused") {
                    return Ok(client);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("find a free port"))?;
    Ok(l.local_addr()
        .map_err(Error::io("find a free port"))?
        .port())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

use std::os::unix::fs::DirBuilderExt;
