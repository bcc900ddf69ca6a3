//! Point-in-time recovery from WAL the daemon streams with `pg_receivewal` (no
//! archive_command at all), base backups verified after the fact, the jobs they leave, and
//! `wal push` pushing ready files ahead of PostgreSQL asking.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::cli::{json, run, with_config};
use crate::pitr::{
    Archiving, PITR_SOURCE, home, restore, restored_rows, segment_bytes, write_config,
};

/// `lifeboat daemon` with its stdout read line by line.
struct DaemonProc {
    child: std::process::Child,
    rx: mpsc::UnboundedReceiver<String>,
    lines: Vec<String>,
}

impl DaemonProc {
    fn spawn(h: &Path, config: &Path) -> DaemonProc {
        let mut child = with_config(h, config, &["daemon"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        DaemonProc {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Waits (up to two minutes) for a line `wanted` accepts, returning it.
    async fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let line = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no line {what}: {:#?}", self.lines))
                .unwrap_or_else(|| panic!("the daemon exited before {what}: {:#?}", self.lines));
            self.lines.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// SIGTERM, then its exit code and every line it printed.
    async fn stop(mut self) -> (Option<i32>, Vec<String>) {
        // SAFETY: signals a child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut child = self.child;
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || child.wait().unwrap()),
        )
        .await
        .expect("the daemon stops within a minute")
        .unwrap();
        while let Some(line) = self.rx.recv().await {
            self.lines.push(line);
        }
        (status.code(), self.lines)
    }
}

/// The pids of the `pg_receivewal` processes writing into `spool`.
fn receivers(spool: &Path) -> Vec<i32> {
    let spool = spool.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is = args.first()?.ends_with("pg_receivewal") && args.contains(&spool);
            is.then_some(pid)
        })
        .collect()
}

async fn jobs(h: &Path, config: &Path) -> Vec<Value> {
    json(&run(with_config(h, config, &["jobs", "--json"])).await)
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_streams_wal_into_the_archive_and_a_restore_reads_it() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    // No archive_command: the daemon's stream is the only way WAL reaches the archive.
    let src = Archiving::start_with(&config, false);
    let config = write_config(
        h,
        &format!("{}stream = true\ncreate_slot = true\n", src.source_toml()),
    );
    let spool = h.join("wal-stream/app");
    src.psql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT 'before' FROM generate_series(1, 100)",
    );

    let mut daemon = DaemonProc::spawn(h, &config);
    daemon
        .wait_line("streaming started", |l| {
            l.starts_with("WAL streaming of app started") && l.contains("slot lifeboat_app")
        })
        .await;
    assert_eq!(
        src.psql("postgres", "SELECT slot_name FROM pg_replication_slots"),
        "lifeboat_app"
    );

    // The base backup returns without waiting for an archiver; its WAL arrives by stream.
    let base = json(&run(with_config(h, &config, &["basebackup", "app", "--json"])).await);
    let base_id = base["id"].as_str().unwrap().to_owned();
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'after' FROM generate_series(1, 50)",
    );
    let closed = src.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    daemon
        .wait_line("the switched segment stored", |l| {
            l == format!("streamed WAL {closed} of app stored")
        })
        .await;

    // pg_receivewal dies: the daemon says why and starts it again, and nothing is lost.
    let pids = receivers(&spool);
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: a process the daemon this test started runs.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let stopped = daemon
        .wait_line("the stream stopped", |l| {
            l.starts_with("WAL streaming of app stopped: ")
        })
        .await;
    assert!(
        stopped.contains("pg_receivewal failed") && stopped.contains("restarting in 1s"),
        "{stopped}"
    );
    daemon
        .wait_line("streaming restarted", |l| {
            l.starts_with("WAL streaming of app started")
        })
        .await;
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'late' FROM generate_series(1, 25)",
    );
    let closed = src.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    daemon
        .wait_line("the last segment stored", |l| {
            l == format!("streamed WAL {closed} of app stored")
        })
        .await;

    // A pg_receivewal that hangs does not hang the daemon's shutdown.
    let pids = receivers(&spool);
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: as above.
    unsafe { libc::kill(pids[0], libc::SIGSTOP) };
    let (code, lines) = daemon.stop().await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("daemon stopped"),
        "{lines:#?}"
    );
    assert!(receivers(&spool).is_empty(), "pg_receivewal left running");
    // What stays in the spool is the segment in progress, never pushed.
    let left: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| n.ends_with(".partial")), "{left:?}");

    let status = json(&run(with_config(h, &config, &["wal", "status", "--json"])).await);
    assert_eq!(status["chain"]["gaps"], serde_json::json!([]), "{status}");
    assert!(status["bases"][0]["window"]["Ok"].is_object(), "{status}");

    // The base backup read back whole.
    let verified = run(with_config(h, &config, &["verify", "--base", "latest"])).await;
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    assert!(
        verified
            .stdout
            .starts_with(&format!("base backup {base_id} of app: OK")),
        "{}",
        verified.stdout
    );

    // Every row streamed: the restore to the end of the WAL holds them all.
    let at_end = json(&run(restore(h, &config, &["--end-of-wal", "--drop"])).await);
    assert_eq!(restored_rows(&at_end, "orders"), 175, "{at_end}");
    assert_eq!(at_end["base"], base_id, "{at_end}");

    // Damaged in the store: verify says so in one line, and the job records the cause.
    let data = h.join(format!("bucket/_lifeboat/base/app/{base_id}/base.tar.zst"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();
    let damaged = run(with_config(h, &config, &["verify", "--base", &base_id])).await;
    assert_eq!(damaged.code, 1, "{}", damaged.stdout);
    assert!(
        damaged.stderr.starts_with("error: ") && damaged.stderr.lines().count() == 1,
        "{}",
        damaged.stderr
    );

    // The base backup, both verifies and the restore are jobs like any other.
    let jobs = jobs(h, &config).await;
    let of = |kind: &str| -> Vec<&Value> { jobs.iter().filter(|j| j["kind"] == kind).collect() };
    let bases = of("basebackup");
    assert_eq!(bases.len(), 1, "{jobs:#?}");
    assert_eq!(bases[0]["status"], "succeeded");
    assert_eq!(bases[0]["backup_id"], base_id.as_str());
    assert!(bases[0]["bytes"].as_u64().unwrap() > 0);
    let restores = of("restore");
    assert_eq!(restores.len(), 1, "{jobs:#?}");
    assert_eq!(restores[0]["status"], "succeeded");
    assert_eq!(restores[0]["backup_id"], base_id.as_str());
    let mut verifies = of("verify");
    verifies.sort_by_key(|j| j["started_at"].as_str().unwrap().to_owned());
    assert_eq!(verifies.len(), 2, "{jobs:#?}");
    assert_eq!(verifies[0]["status"], "succeeded");
    assert_eq!(verifies[1]["status"], "failed");
    assert_eq!(verifies[1]["backup_id"], base_id.as_str());
    let cause = verifies[1]["error"].as_str().unwrap();
    assert!(
        damaged.stderr.contains(cause.lines().next().unwrap()),
        "{cause} / {}",
        damaged.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_from_a_missing_slot_reports_the_servers_words_and_keeps_trying() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let src = Archiving::start_with(&config, false);
    let config = write_config(
        h,
        &format!(
            "{}stream = true\nslot = \"nobody_made_me\"\n",
            src.source_toml()
        ),
    );
    let mut daemon = DaemonProc::spawn(h, &config);
    let first = daemon
        .wait_line("the first failure", |l| {
            l.starts_with("WAL streaming of app stopped: ")
        })
        .await;
    assert!(
        first.contains("nobody_made_me") && first.contains("does not exist"),
        "{first}"
    );
    assert!(first.ends_with("restarting in 1s"), "{first}");
    let second = daemon
        .wait_line("the second failure", |l| {
            l.starts_with("WAL streaming of app stopped: ")
        })
        .await;
    assert!(second.ends_with("restarting in 2s"), "{second}");
    let (code, lines) = daemon.stop().await;
    assert_eq!(code, Some(0), "{lines:#?}");
}

/// A pg_wal directory as PostgreSQL leaves it for the archiver: segments with their
/// `archive_status/<name>.ready` markers.
fn ready_segments(dir: &Path, count: u64) -> Vec<PathBuf> {
    let status = dir.join("archive_status");
    std::fs::create_dir_all(&status).unwrap();
    (1..=count)
        .map(|n| {
            let name = format!("0000000100000000000000{n:02X}");
            std::fs::write(dir.join(&name), segment_bytes(n)).unwrap();
            std::fs::write(status.join(format!("{name}.ready")), b"").unwrap();
            dir.join(name)
        })
        .collect()
}

#[tokio::test]
async fn wal_push_pushes_the_next_ready_files_ahead_and_leaves_the_markers_to_postgresql() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let wal = h.join("pg_wal");
    let segs = ready_segments(&wal, 6);
    let records = h.join("bucket/_lifeboat/wal/app");
    let record =
        |p: &Path| records.join(format!("{}.json", p.file_name().unwrap().to_str().unwrap()));

    let out = run(with_config(
        h,
        &config,
        &["wal", "push", segs[0].to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Its own file and the next three PostgreSQL marked ready are archived; not further.
    for s in &segs[..4] {
        assert!(record(s).is_file(), "{} not pushed", s.display());
    }
    assert!(!record(&segs[4]).exists());
    // The markers are PostgreSQL's to turn into .done.
    let markers: Vec<String> = std::fs::read_dir(wal.join("archive_status"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(markers.len(), 6);
    assert!(markers.iter().all(|m| m.ends_with(".ready")), "{markers:?}");

    // PostgreSQL asks for the second: already stored, its record untouched.
    let before = std::fs::read(record(&segs[1])).unwrap();
    std::fs::remove_file(wal.join(format!(
        "archive_status/{}.ready",
        segs[0].file_name().unwrap().to_str().unwrap()
    )))
    .unwrap();
    let out = run(with_config(
        h,
        &config,
        &["wal", "push", segs[1].to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(record(&segs[1])).unwrap(), before);
    // Those already pushed ahead are skipped: this call got the two left.
    assert!(record(&segs[4]).is_file() && record(&segs[5]).is_file());

    // A ready file that cannot be archived (cut short) fails only the call PostgreSQL
    // makes for it, not the one that tried it ahead.
    let w2 = h.join("w2");
    std::fs::create_dir_all(w2.join("archive_status")).unwrap();
    let seventh = w2.join("000000010000000000000007");
    let short = w2.join("000000010000000000000008");
    std::fs::write(&seventh, segment_bytes(7)).unwrap();
    std::fs::write(&short, &segment_bytes(8)[..4096]).unwrap();
    for p in [&seventh, &short] {
        let name = p.file_name().unwrap().to_str().unwrap();
        std::fs::write(w2.join(format!("archive_status/{name}.ready")), b"").unwrap();
    }
    let out = run(with_config(
        h,
        &config,
        &["wal", "push", seventh.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(record(&seventh).is_file() && !record(&short).exists());
    let out = run(with_config(
        h,
        &config,
        &["wal", "push", short.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not a whole WAL segment"),
        "{}",
        out.stderr
    );
}
