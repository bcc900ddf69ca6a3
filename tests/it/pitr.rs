//! Point-in-time recovery: `wal push` / `wal get` through the binary as PostgreSQL runs them,
//! base backups over the replication protocol, and restores to a time, a restore point and
//! the end of the WAL into scratch clusters, on a throwaway cluster that archives through
//! the test's lifeboat binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::cli::{json, run, with_config};

const SEG: usize = 16 << 20;

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn chown_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

/// A home readable by the server's OS user: it runs `lifeboat wal push/get` with this config.
pub(crate) fn home() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-pitr.")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("bucket")).unwrap();
    chown_postgres(&dir.path().join("bucket"));
    dir
}

pub(crate) fn segment_bytes(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Compressible like real WAL: runs of zeros between random records.
    (0..SEG)
        .map(|i| if i % 8192 < 2048 { rng.u8(..) } else { 0 })
        .collect()
}

pub(crate) fn write_config(home: &Path, extra: &str) -> PathBuf {
    let path = home.join("lifeboat.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\ntype = \"local\"\npath = \"bucket\"\nmode = \"0666\"\n[state]\npath = \"state.db\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

pub(crate) const PITR_SOURCE: &str = "[[source]]\nname = \"app\"\nengine = \"postgres\"\nhost = \"/nonexistent\"\ndatabase = \"app\"\n[source.pitr]\n";

#[tokio::test]
async fn wal_push_is_idempotent_refuses_a_different_file_and_get_checks_what_it_serves() {
    let home = home();
    let h = home.path();
    let key = age::x25519::Identity::generate();
    std::fs::write(
        h.join("age.key"),
        age::secrecy::ExposeSecret::expose_secret(&key.to_string()),
    )
    .unwrap();
    let config = write_config(
        h,
        &format!(
            "[encryption]\nrecipients = [\"{}\"]\nidentity_file = \"age.key\"\n{PITR_SOURCE}",
            key.to_public()
        ),
    );
    let wal = h.join("pg_wal");
    std::fs::create_dir(&wal).unwrap();
    let name = "000000010000000000000003";
    let seg = wal.join(name);
    let bytes = segment_bytes(1);
    std::fs::write(&seg, &bytes).unwrap();

    let push = |p: &Path| with_config(h, &config, &["wal", "push", p.to_str().unwrap()]);
    let out = run(push(&seg)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // PostgreSQL retries a push whose answer it did not see: the same file again is fine.
    let again = run(push(&seg)).await;
    assert_eq!(again.code, 0, "{}", again.stderr);

    // Stored compressed and encrypted: neither the plaintext nor its size is in the bucket.
    let stored_dir = h.join("bucket/_lifeboat/wal/app");
    let data = std::fs::read(stored_dir.join(format!("{name}.zst.age"))).unwrap();
    assert!(data.len() < SEG / 2, "{} bytes stored", data.len());
    assert!(data.starts_with(b"age-encryption.org/v1"));

    // Another server's segment under the same name is refused, and the stored one kept.
    let other = h.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join(name), segment_bytes(2)).unwrap();
    let refused = run(push(&other.join(name))).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with("error: ") && refused.stderr.contains("different contents"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);

    // What `wal get` serves is the file, byte for byte.
    let restored = h.join("RECOVERYXLOG");
    let get = run(with_config(
        h,
        &config,
        &["wal", "get", name, restored.to_str().unwrap()],
    ))
    .await;
    assert_eq!(get.code, 0, "{}", get.stderr);
    assert!(std::fs::read(&restored).unwrap() == bytes);

    // Absent: exit 1 (recovery takes that as the end of the WAL), nothing written.
    let absent = h.join("absent");
    let out = run(with_config(
        h,
        &config,
        &[
            "wal",
            "get",
            "000000010000000000000004",
            absent.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!absent.exists());
    // Names PostgreSQL never asks for are refused before any key is built.
    let out = run(with_config(
        h,
        &config,
        &["wal", "get", "../../etc/passwd", "x"],
    ))
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not the name of a WAL segment"),
        "{}",
        out.stderr
    );

    // A damaged object is never served: the hash of the stored bytes no longer matches.
    let path = stored_dir.join(format!("{name}.zst.age"));
    let mut damaged = std::fs::read(&path).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    std::fs::write(&path, damaged).unwrap();
    let out_path = h.join("damaged");
    let out = run(with_config(
        h,
        &config,
        &["wal", "get", name, out_path.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert!(!out_path.exists());
    assert!(!h.join("damaged.lifeboat-partial").exists());
}

#[tokio::test]
async fn a_wal_push_killed_between_data_and_record_leaves_nothing_that_looks_archived() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let name = "000000010000000000000007";
    let seg = h.join(name);
    let bytes = segment_bytes(3);
    std::fs::write(&seg, &bytes).unwrap();
    let flag = h.join("paused");
    let mut cmd = with_config(h, &config, &["wal", "push", seg.to_str().unwrap()]);
    cmd.env("LIFEBOAT_DEBUG_WAL_PUSH_PAUSE", &flag);
    let mut child = cmd.spawn().unwrap();
    // The push says when its data object is stored and its record is not yet written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !flag.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the push never paused"
        );
        assert!(child.try_wait().unwrap().is_none(), "the push ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        h.join(format!("bucket/_lifeboat/wal/app/{name}.zst"))
            .exists()
    );
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    // Not archived: `wal get` says so, the chain holds nothing.
    let dest = h.join("dest");
    let out = run(with_config(
        h,
        &config,
        &["wal", "get", name, dest.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!dest.exists());
    let status = json(&run(with_config(h, &config, &["wal", "status", "--json"])).await);
    assert_eq!(status["chain"]["ranges"], serde_json::json!([]), "{status}");

    // PostgreSQL pushes it again: stored, then served whole.
    let out = run(with_config(
        h,
        &config,
        &["wal", "push", seg.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(with_config(
        h,
        &config,
        &["wal", "get", name, dest.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read(&dest).unwrap() == bytes);
}

#[tokio::test]
async fn wal_get_with_a_spool_serves_segments_fetched_ahead_and_checked_when_fetched() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let wal = h.join("pg_wal");
    std::fs::create_dir(&wal).unwrap();
    let names: Vec<String> = (3..=6)
        .map(|n| format!("0000000100000000000000{n:02X}"))
        .collect();
    let mut contents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let bytes = segment_bytes(10 + i as u64);
        std::fs::write(wal.join(name), &bytes).unwrap();
        let out = run(with_config(
            h,
            &config,
            &["wal", "push", wal.join(name).to_str().unwrap()],
        ))
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        contents.push(bytes);
    }
    // The last one is damaged in the store: no prefetch may spool it.
    let stored = h.join("bucket/_lifeboat/wal/app");
    let damaged = stored.join(format!("{}.zst", names[3]));
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();

    let spool = h.join("spool");
    std::fs::create_dir(&spool).unwrap();
    let get = |name: &str, dest: &Path| {
        with_config(
            h,
            &config,
            &[
                "wal",
                "get",
                "--spool",
                spool.to_str().unwrap(),
                name,
                dest.to_str().unwrap(),
            ],
        )
    };
    let dest = h.join("RECOVERYXLOG");
    let out = run(get(&names[0], &dest)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read(&dest).unwrap() == contents[0]);

    // The prefetch it started spools the next two and stops at the damaged one.
    let idle = || {
        use std::os::fd::AsRawFd;
        let lock = std::fs::File::open(spool.join("prefetch.lock")).unwrap();
        // SAFETY: flock on a descriptor this closure owns.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(spool.join(&names[2]).exists() && idle()) {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing prefetched: {:?}",
            std::fs::read_dir(&spool)
                .unwrap()
                .flatten()
                .collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('0'))
        .collect();
    spooled.sort();
    assert_eq!(spooled, [names[1].clone(), names[2].clone()]);

    // Served from the spool, byte for byte, even once the store no longer has it.
    std::fs::remove_file(stored.join(format!("{}.json", names[1]))).unwrap();
    let out = run(get(&names[1], &dest)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(std::fs::read(&dest).unwrap() == contents[1]);
    assert!(!spool.join(&names[1]).exists());
    // The damaged one is refused by `wal get` itself, as without a spool.
    let bad = h.join("bad");
    let out = run(get(&names[3], &bad)).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert!(!bad.exists());
}

/// The newest installed server binaries.
pub(crate) fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin");
    dirs.retain(|d| d.join("initdb").is_file());
    dirs.sort();
    dirs.pop().expect("PostgreSQL server binaries")
}

/// A throwaway cluster that archives every WAL file through the test's lifeboat binary.
pub(crate) struct Archiving {
    pub(crate) dir: PathBuf,
    pub(crate) bin: PathBuf,
}

impl Archiving {
    pub(crate) fn start(config: &Path) -> Archiving {
        Archiving::start_with(config, true)
    }

    /// With `archive_command` through lifeboat, or (`archiving` false) none at all, for a
    /// source whose WAL the daemon streams.
    pub(crate) fn start_with(config: &Path, archiving: bool) -> Archiving {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pitr-src.")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        chown_postgres(&dir);
        let c = Archiving { dir, bin };
        let data = c.dir.join("data");
        c.server(&[
            "initdb",
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nlocal replication all trust\n",
        )
        .unwrap();
        let archive = format!(
            "'{}' --config '{}' wal push %p",
            env!("CARGO_BIN_EXE_lifeboat"),
            config.display()
        );
        let conf = format!(
            "\nport = 5432\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\nwal_level = replica\narchive_mode = {}\narchive_command = '{}'\nmax_wal_senders = 4\n",
            c.dir.display(),
            if archiving { "on" } else { "off" },
            archive.replace('\'', "''")
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        c.server(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-l",
            c.dir.join("server.log").to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        c.psql("postgres", "CREATE DATABASE app");
        c
    }

    pub(crate) fn server(&self, args: &[&str]) {
        let path = self.bin.join(args[0]);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(&args[1..])
                .output()
        } else {
            Command::new(&path).args(&args[1..]).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            args[0],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn psql(&self, db: &str, sql: &str) -> String {
        psql_at(&self.bin, &self.dir, 5432, db, sql)
    }

    pub(crate) fn source_toml(&self) -> String {
        format!(
            "[[source]]\nname = \"app\"\nengine = \"postgres\"\nhost = \"{}\"\nport = 5432\nuser = \"postgres\"\ndatabase = \"app\"\n[source.pitr]\nmax_archive_lag = \"1h\"\n",
            self.dir.display()
        )
    }

    /// Switches to a new WAL segment and waits until the archiver has stored the old one.
    pub(crate) fn switch_and_archive(&self) -> String {
        let done = self.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let state = self.psql(
                "postgres",
                "SELECT coalesce(last_archived_wal, '') || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver",
            );
            let archived = state.split(' ').next().unwrap_or("");
            if !archived.is_empty() && archived >= done.as_str() {
                return done;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{done} not archived: {state}; log: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Archiving {
    /// A real timeline switch: stops the cluster, starts it again as a standby restoring
    /// from its own archive through `lifeboat wal get`, and promotes it. Timeline 2 begins,
    /// its history file is archived beside timeline 1's WAL under the same source.
    fn promote_from_archive(&self, config: &Path) {
        let data = self.dir.join("data");
        self.server(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
        let signal = data.join("standby.signal");
        std::fs::write(&signal, "").unwrap();
        chown_postgres(&signal);
        let restore = format!(
            "'{}' --config '{}' wal get %f %p",
            env!("CARGO_BIN_EXE_lifeboat"),
            config.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        let conf = format!("\nrestore_command = '{}'\n", restore.replace('\'', "''"));
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        self.server(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-l",
            self.dir.join("server.log").to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        assert_eq!(self.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
        // Waits (up to a minute) until the promotion is done.
        assert_eq!(self.psql("postgres", "SELECT pg_promote(true, 60)"), "t");
        assert_eq!(
            self.psql(
                "postgres",
                "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
            ),
            "00000002"
        );
    }
}

impl Drop for Archiving {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let path = self.bin.join("pg_ctl");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn psql_at(bin: &Path, host: &Path, port: u16, db: &str, sql: &str) -> String {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", host.to_str().unwrap(), "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", db, "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn restored_rows(report: &Value, table: &str) -> u64 {
    report["restored_tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table || t["table"] == table)
        .unwrap_or_else(|| panic!("{table} not in {report}"))["rows"]
        .as_u64()
        .unwrap()
}

pub(crate) fn restore(h: &Path, config: &Path, args: &[&str]) -> Command {
    let mut all = vec!["restore", "--source", "app", "--json"];
    all.extend_from_slice(args);
    with_config(h, config, &all)
}

#[tokio::test]
async fn pitr_base_backup_under_writes_then_restores_to_a_time_a_restore_point_and_the_end() {
    let home = home();
    let h = home.path();
    // The cluster's socket directory is only known once it runs: write the config twice.
    let config = write_config(h, PITR_SOURCE);
    let src = Archiving::start(&config);
    let config = write_config(h, &src.source_toml());

    src.psql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT 'before the base backup' FROM generate_series(1, 100)",
    );
    // pgbench writes while the base backup streams.
    let init = Command::new(src.bin.join("pgbench"))
        .args([
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            src.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "app",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut bench = Command::new(src.bin.join("pgbench"))
        .args([
            "-n",
            "-c",
            "2",
            "-T",
            "4",
            "-h",
            src.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "app",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = json(&run(with_config(h, &config, &["basebackup", "app", "--json"])).await);
    assert!(bench.wait().unwrap().success());
    assert_eq!(base["timeline"], 1);
    assert!(base["files"].as_u64().unwrap() > 500, "{base}");
    assert!(base["system_identifier"].as_str().unwrap().len() > 10);
    let (start, end) = (
        base["start_lsn"].as_str().unwrap(),
        base["end_lsn"].as_str().unwrap(),
    );
    assert!(start <= end || start.len() < end.len(), "{start} {end}");
    // A logical backup too: the nearest one is the third column of the proof.
    let out = run(with_config(h, &config, &["backup", "app"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Two known transactions, and a time and a restore point between them, from the server.
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'A' FROM generate_series(1, 50)",
    );
    let between = src.psql(
        "app",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    src.psql("app", "SELECT pg_create_restore_point('before_b')");
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'B' FROM generate_series(1, 25)",
    );
    src.switch_and_archive();
    let history_rows: u64 = src
        .psql("app", "SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(history_rows > 0);

    let status = json(&run(with_config(h, &config, &["wal", "status", "--json"])).await);
    assert_eq!(status["chain"]["gaps"], serde_json::json!([]), "{status}");
    assert!(status["bases"][0]["window"]["Ok"].is_object(), "{status}");

    // To a time between A and B: exactly the rows committed before it.
    let at_time = json(
        &run(restore(
            h,
            &config,
            &["--time", &between, "--compare-live", "--drop", "--amcheck"],
        ))
        .await,
    );
    assert_eq!(restored_rows(&at_time, "orders"), 150, "{at_time}");
    assert_eq!(at_time["paused"], false);
    assert_eq!(at_time["dropped"], true);
    assert_eq!(at_time["amcheck"], serde_json::json!([]), "{at_time}");
    assert!(at_time["logical_backup"].is_string(), "{at_time}");
    let live_orders = at_time["diff"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "public.orders" || r["table"] == "orders")
        .unwrap()["live"]
        .clone();
    assert_eq!(live_orders, 175, "{at_time}");
    let stop = at_time["stop_line"].as_str().unwrap_or_default();
    assert!(
        stop.contains("recovery stopping before commit"),
        "{at_time}"
    );

    // To the restore point, paused and read-only, kept running for the engineer.
    let at_name = json(&run(restore(h, &config, &["--name", "before_b", "--pause"])).await);
    assert_eq!(restored_rows(&at_name, "orders"), 150, "{at_name}");
    assert_eq!(at_name["paused"], true);
    let cluster_dir = PathBuf::from(at_name["cluster"]["dir"].as_str().unwrap());
    let port = at_name["cluster"]["port"].as_u64().unwrap() as u16;
    assert_eq!(
        psql_at(
            &src.bin,
            &cluster_dir,
            port,
            "app",
            "SELECT pg_is_in_recovery()"
        ),
        "t"
    );
    let out = run(with_config(
        h,
        &config,
        &["wal", "drop-scratch", cluster_dir.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!cluster_dir.exists());

    // To the end of the archived WAL: every row, pgbench's included, as on the source.
    let at_end = json(&run(restore(h, &config, &["--end-of-wal", "--drop"])).await);
    assert_eq!(restored_rows(&at_end, "orders"), 175, "{at_end}");
    assert_eq!(
        restored_rows(&at_end, "pgbench_history"),
        history_rows,
        "{at_end}"
    );

    // A gap: a segment after the backup goes missing. `check` finds it; a restore past it
    // is refused, naming the segment.
    src.psql("app", "INSERT INTO orders (note) VALUES ('C')");
    let lost = src.switch_and_archive();
    let after_c = src.psql(
        "app",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    src.psql("app", "INSERT INTO orders (note) VALUES ('D')");
    src.switch_and_archive();
    let check = run(with_config(h, &config, &["check"])).await;
    assert!(!check.stdout.contains("WAL gap"), "{}", check.stdout);
    let record = h.join(format!("bucket/_lifeboat/wal/app/{lost}.json"));
    let kept = std::fs::read(&record).unwrap();
    std::fs::remove_file(&record).unwrap();
    let check = run(with_config(h, &config, &["check"])).await;
    assert_eq!(check.code, 2, "{}", check.stdout);
    assert!(
        check.stdout.contains("WAL gap") && check.stdout.contains(&lost),
        "{}",
        check.stdout
    );
    let past = run(restore(h, &config, &["--time", &after_c])).await;
    assert_eq!(past.code, 1, "{}", past.stdout);
    assert!(
        past.stderr.starts_with("error: ")
            && past.stderr.contains(&lost)
            && past.stderr.contains("missing"),
        "{}",
        past.stderr
    );

    // Damaged instead (record back, bytes altered): `wal get` refuses to serve it, so
    // recovery cannot reach the target, and the restore fails saying why, leaving no cluster.
    std::fs::write(&record, kept).unwrap();
    let data = h.join(format!("bucket/_lifeboat/wal/app/{lost}.zst"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();
    let damaged = run(restore(h, &config, &["--time", &after_c])).await;
    assert_eq!(damaged.code, 1, "{}", damaged.stdout);
    assert!(
        damaged
            .stderr
            .contains("recovery ended before configured recovery target was reached")
            && damaged.stderr.contains("damaged"),
        "{}",
        damaged.stderr
    );
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lifeboat-pitr-app-")
        })
        .collect();
    assert!(left.is_empty(), "scratch clusters left: {left:?}");
}

#[tokio::test]
async fn a_base_backup_window_follows_a_promotion_onto_timeline_2() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let src = Archiving::start(&config);
    let config = write_config(h, &src.source_toml());

    src.psql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
         INSERT INTO orders (note) SELECT 'before the base backup' FROM generate_series(1, 100)",
    );
    let base = json(&run(with_config(h, &config, &["basebackup", "app", "--json"])).await);
    assert_eq!(base["timeline"], 1);
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'A, timeline 1' FROM generate_series(1, 50)",
    );
    src.switch_and_archive();

    src.promote_from_archive(&config);
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'B, timeline 2' FROM generate_series(1, 30)",
    );
    let between = src.psql(
        "app",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    src.psql(
        "app",
        "INSERT INTO orders (note) SELECT 'C, timeline 2' FROM generate_series(1, 20)",
    );
    let last = src.switch_and_archive();
    assert!(last.starts_with("00000002"), "{last}");

    // Both timelines, the switch read from the history file, the window on timeline 2.
    let status = json(&run(with_config(h, &config, &["wal", "status", "--json"])).await);
    let chain = &status["chain"];
    let timelines: Vec<u64> = chain["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timeline"].as_u64().unwrap())
        .collect();
    assert!(timelines.contains(&1) && timelines.contains(&2), "{status}");
    assert_eq!(chain["gaps"], serde_json::json!([]), "{status}");
    assert_eq!(chain["histories"], serde_json::json!([2]), "{status}");
    assert_eq!(chain["switches"][0]["parent"], 1, "{status}");
    assert_eq!(chain["switches"][0]["timeline"], 2, "{status}");
    let window = &status["bases"][0]["window"]["Ok"];
    assert_eq!(window["timeline"], 2, "{status}");
    let tl2_end = chain["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["timeline"] == 2)
        .unwrap()["end_lsn"]
        .clone();
    assert_eq!(window["to_lsn"], tl2_end, "{status}");

    // To a time between B and C on timeline 2: A, B and nothing of C.
    let at_time = json(&run(restore(h, &config, &["--time", &between, "--drop"])).await);
    assert_eq!(restored_rows(&at_time, "orders"), 180, "{at_time}");
    assert!(
        at_time["stop_line"]
            .as_str()
            .unwrap_or_default()
            .contains("recovery stopping before commit"),
        "{at_time}"
    );

    let check = run(with_config(h, &config, &["check"])).await;
    assert!(
        !check.stdout.contains("WAL gap") && !check.stdout.contains("cannot be restored"),
        "{}",
        check.stdout
    );
}

/// `list` shows each base backup with its window and a line per source; `--json` carries
/// them; `show SOURCE/ID` names a base backup. A lost segment shows as the gap it makes.
#[tokio::test]
async fn list_and_show_print_base_backups_and_the_restorable_window() {
    let home = home();
    let h = home.path();
    let config = write_config(h, PITR_SOURCE);
    let src = Archiving::start(&config);
    let config = write_config(h, &src.source_toml());

    src.psql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text); INSERT INTO orders (note) VALUES ('A')",
    );
    let first = json(&run(with_config(h, &config, &["basebackup", "app", "--json"])).await);
    src.psql("app", "INSERT INTO orders (note) VALUES ('B')");
    let lost = src.switch_and_archive();
    src.psql("app", "INSERT INTO orders (note) VALUES ('C')");
    src.switch_and_archive();
    let second = json(&run(with_config(h, &config, &["basebackup", "app", "--json"])).await);
    src.psql("app", "INSERT INTO orders (note) VALUES ('D')");
    src.switch_and_archive();
    let (first_id, second_id) = (
        first["id"].as_str().unwrap().to_owned(),
        second["id"].as_str().unwrap().to_owned(),
    );

    let list = run(with_config(h, &config, &["list"])).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stdout.contains("point-in-time recovery of app")
            && list.stdout.contains(&first_id)
            && list.stdout.contains(&second_id)
            && list.stdout.contains("app: restorable ")
            && list.stdout.contains("(2 base backups, 0 gaps)"),
        "{}",
        list.stdout
    );
    let rows: Vec<&str> = list
        .stdout
        .lines()
        .filter(|l| l.contains(&first_id) || l.contains(&second_id))
        .collect();
    assert_eq!(rows.len(), 2, "{}", list.stdout);
    assert!(
        rows.iter()
            .all(|l| l.contains("restorable ") && l.contains(" → "))
    );

    let listed = json(&run(with_config(h, &config, &["list", "--json"])).await);
    let pitr = &listed["pitr"][0];
    assert_eq!(pitr["source"], "app", "{listed}");
    assert!(pitr["restorable"]["from"].is_string() && pitr["restorable"]["to"].is_string());
    assert_eq!(pitr["bases"][0]["id"], first_id.as_str(), "{listed}");
    assert_eq!(pitr["bases"][1]["id"], second_id.as_str(), "{listed}");
    assert_eq!(
        pitr["bases"][1]["window"]["from_lsn"], second["end_lsn"],
        "{listed}"
    );
    assert!(pitr["bases"][1]["unrestorable"].is_null());

    let show = run(with_config(
        h,
        &config,
        &["show", &format!("app/{first_id}")],
    ))
    .await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    for want in [
        format!("base backup {first_id}"),
        format!("system {}", first["system_identifier"].as_str().unwrap()),
        format!(
            "LSN {} .. {}",
            first["start_lsn"].as_str().unwrap(),
            first["end_lsn"].as_str().unwrap()
        ),
        "timeline 1".to_owned(),
        "window      restorable ".to_owned(),
    ] {
        assert!(show.stdout.contains(&want), "{want}: {}", show.stdout);
    }
    let shown = json(&run(with_config(h, &config, &["show", &second_id, "--json"])).await);
    assert_eq!(shown["kind"], "base_backup", "{shown}");
    assert_eq!(shown["manifest"]["id"], second_id.as_str());
    assert!(shown["window"]["to"].is_string(), "{shown}");

    // A segment after the first base backup goes missing: its window now ends at the gap,
    // the second's is whole, and the summary counts the gap.
    std::fs::remove_file(h.join(format!("bucket/_lifeboat/wal/app/{lost}.json"))).unwrap();
    let list = run(with_config(h, &config, &["list", "--source", "app"])).await;
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&first_id))
        .unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(
        row.contains(&format!("WAL gap at {lost}")),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("1 gap)"), "{}", list.stdout);
    let listed = json(&run(with_config(h, &config, &["list", "--json"])).await);
    assert!(
        listed["pitr"][0]["bases"][0].to_string().contains(&lost),
        "{listed}"
    );
    assert_eq!(listed["pitr"][0]["gaps"][0]["from"], lost.as_str());

    let missing = run(with_config(
        h,
        &config,
        &["show", "app/20260101T000000Z-0000"],
    ))
    .await;
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert!(
        missing.stderr.starts_with("error: ") && missing.stderr.lines().count() == 1,
        "{}",
        missing.stderr
    );
}
