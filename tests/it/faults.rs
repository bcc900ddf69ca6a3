//! A backup killed at any point never looks complete.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lifeboat::catalog::BackupState;
use lifeboat::jobs::JobStatus;
use lifeboat::manifest::Trigger;
use lifeboat::progress::NoProgress;
use lifeboat::storage::{LocalStore, ObjectKey, ObjectStoreExt};

use crate::cli::{Out, json, lifeboat, run, with_config};
use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_backup_never_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 2);
    common::add_random_blobs(&home.join("app.db"), 24);
    common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let config = home.join("lifeboat.toml");

    // One backup run to the end tells how long a whole one takes; kills land anywhere in it.
    let started = std::time::Instant::now();
    let mut cmd = lifeboat(home);
    cmd.arg("--config").arg(&config).arg("backup").arg("app");
    assert_eq!(run(cmd).await.code, 0);
    let whole = started.elapsed().as_millis().max(50) as u64;
    let mut rng = fastrand::Rng::with_seed(42);
    let trials = 24;
    let mut phases = std::collections::BTreeMap::<&str, usize>::new();
    let mut seen: Vec<std::path::PathBuf> = std::fs::read_dir(home.join("bucket/app"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for _ in 0..trials {
        let mut cmd = lifeboat(home);
        cmd.arg("--config").arg(&config).arg("backup").arg("app");
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(10..whole))).await;
        // SIGKILL: no cleanup runs.
        let _ = child.kill();
        let _ = child.wait();
        // Where the kill landed, from what it left in the bucket.
        let dirs: Vec<_> = std::fs::read_dir(home.join("bucket/app"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let new: Vec<_> = dirs.iter().filter(|d| !seen.contains(*d)).collect();
        let phase = match new.first() {
            None => "snapshot (nothing uploaded)",
            Some(d) if d.join("manifest.json").exists() => "after the manifest",
            Some(_) => "upload or manifest write (orphan data)",
        };
        *phases.entry(phase).or_default() += 1;
        seen = dirs;
    }

    // Open the state afresh, as the next run of lifeboat would.
    let mut c = lifeboat(home);
    c.arg("--config").arg(&config).args(["list", "--json"]);
    let list = run(c).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let cfg = lifeboat::config::Config::load(&config).unwrap();
    let lb = lifeboat::Lifeboat::open(cfg).await.unwrap();
    let catalog = lb.catalog().await.unwrap();
    for b in &catalog.backups {
        if b.state == BackupState::Complete {
            // Whatever claims to be complete must restore and match.
            let from = lb
                .select(&catalog, &lifeboat::Selector::Id(b.id.to_string()))
                .unwrap();
            let opts = lifeboat::pipeline::restore::RestoreOptions {
                target: home.join(format!("check-{}.db", b.id)).into(),
                for_source: None,
                force_target: false,
                live: None,
                integrity_check: false,
                drill: false,
                staging: lb.staging(),
                privileged: false,
            };
            let (_, r) = lb
                .restore(
                    from,
                    opts,
                    std::sync::Arc::new(lifeboat::progress::NoProgress),
                    Default::default(),
                )
                .await;
            assert!(r.unwrap().ok());
        } else {
            assert!(b.problem.is_some());
        }
    }
    // Backups that died mid-way are shown as interrupted, not running.
    // (A kill in the first milliseconds may come before the job was even recorded.)
    let mut jobs = lb.jobs().unwrap();
    jobs.retain(|j| j.kind == lifeboat::jobs::JobKind::Backup);
    assert!(jobs.len() <= trials + 1);
    assert!(
        jobs.iter().all(|j| j.status != JobStatus::Running),
        "{jobs:?}"
    );
    let interrupted = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Interrupted)
        .count();
    let succeeded = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Succeeded)
        .count();
    assert_eq!(interrupted + succeeded, jobs.len(), "{jobs:?}");
    assert!(
        succeeded <= catalog.complete().count(),
        "a succeeded job always left a complete backup"
    );
    eprintln!("SIGKILL: kills by phase {phases:?}");
    eprintln!(
        "SIGKILL: {trials} trials, {interrupted} interrupted jobs, {succeeded} succeeded, {} complete backups (all restored), {} incomplete/orphaned detected",
        catalog.complete().count(),
        catalog
            .backups
            .iter()
            .filter(|b| b.problem.is_some())
            .count()
            + catalog.incomplete.len()
    );
    assert!(interrupted > 0, "some trials were killed mid-way");

    // Each run swept what the kill before it left; `clean` sweeps what the last one left.
    // Afterwards nothing half-made remains: no orphan, no temp file, no staging copy.
    let out = run({
        let mut c = lifeboat(home);
        c.arg("--config").arg(&config).args(["clean", "--json"]);
        c
    })
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cleaned: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let after = lb.catalog().await.unwrap();
    assert_eq!(after.complete().count(), catalog.complete().count());
    assert!(
        after
            .backups
            .iter()
            .all(|b| b.state == BackupState::Complete),
        "{:#?}",
        after
            .backups
            .iter()
            .filter(|b| b.problem.is_some())
            .collect::<Vec<_>>()
    );
    assert!(after.incomplete.is_empty(), "{:?}", after.incomplete);
    let staging: Vec<_> = std::fs::read_dir(home.join("staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "{staging:?}");
    eprintln!(
        "SIGKILL: the last kill's leftovers removed by clean: {}",
        cleaned["items"]
    );
}

/// What a dead job recorded is swept by the next run; what a live job recorded is not, even
/// though the live job's process id is this one and the dead one's could be anybody's.
#[tokio::test(flavor = "multi_thread")]
async fn staging_left_by_a_dead_job_is_swept_and_a_live_jobs_is_not() {
    use lifeboat::debris::{Debris, Recorder};
    use lifeboat::jobs::{Job, JobKind};
    let world = crate::common::World::local();
    let state = world.lb.state().clone();
    let clock = lifeboat::clock::Clock::system();
    let staging = world.lb.staging();
    // A dead job: recorded its staging directory, then its process was killed.
    let dead_job = Job::start(
        JobKind::Backup,
        Some("app"),
        Trigger::Manual,
        "test",
        &clock,
    );
    let dead_dir = staging.join("lifeboat-dead");
    state
        .put_debris(
            &dead_job.id(),
            &Debris::Staging {
                path: dead_dir.clone(),
            },
            clock.now(),
        )
        .unwrap();
    std::fs::create_dir_all(&dead_dir).unwrap();
    std::fs::write(dead_dir.join("snapshot.sqlite"), vec![0u8; 4096]).unwrap();
    // A live job (its lock held here) with its own staging directory.
    let mut live_job = Job::start(
        JobKind::Restore,
        Some("app"),
        Trigger::Manual,
        "test",
        &clock,
    );
    live_job.hold(lifeboat::lock::JobLock::acquire(&state.job_lock_dir(), &live_job.id()).unwrap());
    let (live_dir, live_record) = Recorder::for_job(state.clone(), &live_job)
        .staging_dir(&staging)
        .unwrap();
    let other = staging.join("unrelated-file");
    std::fs::write(&other, b"not ours").unwrap();

    let (job, r) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    r.unwrap();
    assert!(!dead_dir.exists());
    assert!(live_dir.exists() && other.exists());
    assert!(
        job.log.iter().any(|l| l.message.starts_with("removed staging")
            && l.message.contains(&dead_job.id())),
        "{:#?}",
        job.log
    );
    // The backup's own staging is gone with it; only the live job's record is left.
    let left = state.debris().unwrap();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].job_id, live_job.id());
    live_record.remove_dir(&live_dir);
    assert!(state.debris().unwrap().is_empty());
}

/// Random bit flips, cut files, invalid JSON and missing objects: always caught or harmless,
/// never a restore that reports success with different data, never a panic.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_objects_and_manifests_are_always_caught() {
    use lifeboat::pipeline::restore::RestoreOptions;
    use lifeboat::progress::NoProgress;
    use std::sync::Arc;

    let world = crate::common::World::local();
    let (_, m) = world
        .lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let m = m.unwrap();
    let source = common::content_digest(&world.path("app.db"));
    let dir = world.path(&format!("bucket/app/{}", m.id));
    let data = dir.join(&m.data.key);
    let manifest = dir.join("manifest.json");
    let (data0, manifest0) = (
        std::fs::read(&data).unwrap(),
        std::fs::read(&manifest).unwrap(),
    );

    let mut rng = fastrand::Rng::with_seed(2026);
    let trials = 60;
    let (mut caught, mut harmless) = (0, 0);
    for trial in 0..trials {
        let kind = trial % 6;
        match kind {
            0 => {
                let mut d = data0.clone();
                let i = rng.usize(..d.len());
                d[i] ^= 1 << rng.u8(0..8);
                std::fs::write(&data, d).unwrap();
            }
            1 => std::fs::write(&data, &data0[..rng.usize(..data0.len())]).unwrap(),
            2 => {
                let mut d = manifest0.clone();
                let i = rng.usize(..d.len());
                d[i] ^= 1 << rng.u8(0..8);
                std::fs::write(&manifest, d).unwrap();
            }
            3 => std::fs::write(&manifest, &manifest0[..rng.usize(..manifest0.len())]).unwrap(),
            4 => {
                let junk: Vec<u8> = (0..rng.usize(0..512)).map(|_| rng.u8(..)).collect();
                std::fs::write(&manifest, junk).unwrap();
            }
            _ => std::fs::remove_file(&data).unwrap(),
        }
        let catalog = world
            .lb
            .catalog()
            .await
            .expect("a damaged backup never breaks the listing");
        let entry = catalog.find(m.id.as_str());
        let complete = entry.is_some_and(|b| b.state == BackupState::Complete);
        if complete {
            let from = world
                .lb
                .select(&catalog, &lifeboat::Selector::Id(m.id.to_string()))
                .unwrap();
            let target = world.path(&format!("t{trial}.db"));
            let opts = RestoreOptions {
                target: target.clone().into(),
                for_source: None,
                force_target: false,
                live: None,
                integrity_check: true,
                drill: false,
                staging: world.lb.staging(),
                privileged: false,
            };
            let (_, r) = world
                .lb
                .restore(from, opts, Arc::new(NoProgress), Default::default())
                .await;
            match r {
                Ok(report) => {
                    // Only a change nothing depends on (say, the host name) may pass.
                    assert!(report.ok());
                    assert_eq!(common::content_digest(&target), source, "trial {trial}");
                    assert!(kind >= 2, "damaged data passed in trial {trial}");
                    harmless += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().contains('\n'), "{e}");
                    assert!(!target.exists());
                    caught += 1;
                }
            }
        } else {
            assert!(
                entry.is_none_or(|b| b.problem.is_some()),
                "a damaged backup says why it is not complete"
            );
            caught += 1;
        }
        std::fs::write(&data, &data0).unwrap();
        std::fs::write(&manifest, &manifest0).unwrap();
    }
    eprintln!("damage: {trials} trials, {caught} caught, {harmless} harmless (restored identical)");
    assert_eq!(caught + harmless, trials);
    assert!(caught >= trials * 2 / 3);
}

/// A target disk that fills up during a restore or a drill: one clear line, nothing left.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_during_restore_fails_cleanly() {
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 1);
    common::add_random_blobs(&home.join("app.db"), 3);
    common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let config = home.join("lifeboat.toml");
    let mut c = lifeboat(home);
    c.arg("--config").arg(&config).arg("backup");
    assert_eq!(run(c).await.code, 0);

    let limited = |args: &[&str]| {
        let mut c = lifeboat(home);
        c.arg("--config").arg(&config).args(args);
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                // Writes past 1 MiB fail with EFBIG instead of killing the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    };
    let target = home.join("restored.db");
    let out = run(limited(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
    ]))
    .await;
    last_line_error(&out, "too large");
    assert!(!target.exists());
    let scratch = home.join(".local/share/lifeboat/restores");
    let out = run(limited(&["--quiet", "drill"])).await;
    last_line_error(&out, "too large");
    let left: Vec<_> = common::all_files(home)
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p.contains("partial") || p.starts_with(&scratch.display().to_string()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Exit code 1 and the reason on the last line of stderr (progress lines come before it).
fn last_line_error(out: &crate::cli::Out, needle: &str) {
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{}",
        out.stderr
    );
}

// ---- Full disks, private files, symlinks, signals, debris, damage -------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A small tmpfs for a test (root only); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, kib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }

    /// Fills the filesystem with a file until not one more byte fits.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

/// Paths below `dir` (which may not exist yet, and may change while read) containing `needle`.
pub fn files_named(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            let p = p.display().to_string();
            if p.contains(needle) {
                out.push(p);
            }
        }
    }
    out
}

/// A full local store never gives a false ok: the backup fails with the disk's own words on
/// stderr and in its job record, and nothing in the bucket looks like a backup.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_never_gives_a_false_ok() {
    if !is_root() {
        return full_disk_without_root().await;
    }
    let mut cases = Vec::new();
    // The failing write must be the last one: its error is the one an fsync without a flush
    // loses. Hence a 3 MiB+ object with room ending inside its last chunk, and an object of
    // one chunk with no room at all.
    for (case, blobs_mib) in [("space inside the last chunk", 3), ("0 bytes free", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        common::make_sample_db(&home.join("app.db"), 1);
        common::add_random_blobs(&home.join("app.db"), blobs_mib);
        // The size of the stored object, learned from a backup to a roomy directory.
        common::config_for(home, "[storage]\ntype = \"local\"\npath = \"roomy\"");
        let config = home.join("lifeboat.toml");
        let out = run(with_config(home, &config, &["backup", "--json"])).await;
        let stored = json(&out)[0]["manifest"]["data"]["stored_bytes"]
            .as_u64()
            .unwrap();
        let chunk = 1 << 20;
        let last = stored - (stored - 1) / chunk * chunk;
        let kib = match blobs_mib {
            0 => 1024,
            _ => (stored - last / 2) / 4096 * 4,
        };
        common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
        let bucket = home.join("bucket");
        let fs = Tmpfs::mount(&bucket, kib);
        if blobs_mib == 0 {
            fs.fill();
        }
        let out = run(with_config(home, &config, &["backup", "app"])).await;
        assert_eq!(out.code, 1, "{case}: {}\n{}", out.stdout, out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error: backup of app failed: "))
            .unwrap_or_else(|| panic!("{case}: {}", out.stderr))
            .to_owned();
        assert!(line.contains("No space left on device"), "{case}: {line}");
        let list = json(&run(with_config(home, &config, &["list", "--json"])).await);
        assert!(
            list["backups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["state"] != "complete"),
            "{case}: {list}"
        );
        assert!(files_named(&bucket, ".lifeboat-tmp-").is_empty(), "{case}");
        let jobs = json(&run(with_config(home, &config, &["jobs", "--json"])).await);
        let newest = &jobs[0];
        assert_eq!(newest["status"], "failed", "{case}");
        assert!(
            newest["error"]
                .as_str()
                .unwrap()
                .contains("No space left on device"),
            "{case}: {newest}"
        );
        // Room again: the next backup is whole.
        drop(fs);
        let out = run(with_config(home, &config, &["backup", "app"])).await;
        assert_eq!(out.code, 0, "{case}: {}", out.stderr);
        let target = home.join("after.db");
        let out = run(with_config(
            home,
            &config,
            &["restore", "latest", "--to", target.to_str().unwrap()],
        ))
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        cases.push(format!("{case} ({stored} bytes, room {kib} KiB): {line}"));
    }
    eprintln!("full disk: {cases:#?}");
}

/// Without root there is no tmpfs to fill: a store that runs out of room the way a disk
/// does stands in for it.
async fn full_disk_without_root() {
    use async_trait::async_trait;
    use lifeboat::storage::*;

    #[derive(Debug)]
    struct Full(LocalStore);
    #[async_trait]
    impl ObjectStore for Full {
        fn location(&self) -> String {
            self.0.location()
        }
        async fn list_page(&self, p: &str, t: Option<String>) -> StoreResult<ListPage> {
            self.0.list_page(p, t).await
        }
        async fn head(&self, k: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
            self.0.head(k).await
        }
        async fn get(&self, k: &ObjectKey) -> StoreResult<ByteStream> {
            self.0.get(k).await
        }
        async fn get_prefix(&self, k: &ObjectKey, n: u64) -> StoreResult<bytes::Bytes> {
            self.0.get_prefix(k, n).await
        }
        async fn put(&self, k: &ObjectKey, _: ByteStream) -> StoreResult<PutOutcome> {
            Err(StoreError::Io {
                op: "write",
                path: k.to_string(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            })
        }
        async fn delete_many(&self, k: &[ObjectKey]) -> StoreResult<()> {
            self.0.delete_many(k).await
        }
        async fn list_incomplete(&self, p: &str) -> StoreResult<Vec<IncompleteUpload>> {
            self.0.list_incomplete(p).await
        }
        async fn abort_incomplete(&self, u: &IncompleteUpload) -> StoreResult<()> {
            self.0.abort_incomplete(u).await
        }
    }
    let dir = tempfile::tempdir().unwrap();
    common::make_sample_db(&dir.path().join("app.db"), 1);
    common::add_random_blobs(&dir.path().join("app.db"), 8);
    let store = Arc::new(Full(LocalStore::open(dir.path().join("bucket")).unwrap()));
    let lb = common::lifeboat_for(dir.path(), store);
    let (job, r) = lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(job.error.as_deref(), Some(e.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_objects_and_restored_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 1);
    common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let config = home.join("lifeboat.toml");
    // Encrypted with a passphrase: the restored file is the plaintext.
    let text = std::fs::read_to_string(&config).unwrap()
        + "[encryption]\npassphrase_env = \"LB_PASSPHRASE\"\n";
    std::fs::write(&config, text).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = with_config(home, &config, args);
        c.env("LB_PASSPHRASE", "correct horse battery staple");
        c
    };
    assert_eq!(run(cmd(&["backup"])).await.code, 0);
    let target = home.join("out/restored.db");
    let out = run(cmd(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut seen = 0;
    for (p, _) in common::all_files(&home.join("bucket")) {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let mut d = p.parent().unwrap();
        while d != home.join("bucket") {
            assert_eq!(mode(d), 0o700, "{}", d.display());
            d = d.parent().unwrap();
        }
        seen += 1;
    }
    assert!(seen >= 3, "data, manifest, job record");
    assert_eq!(mode(&target), 0o600);
    assert_eq!(
        mode(target.parent().unwrap()),
        0o700,
        "made for the restore"
    );

    // A configured mode wins (and the umask does not take from it).
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("path = \"bucket\"", "path = \"bucket\"\nmode = \"0640\"")
        .replace("[backup]", "[restore]\nmode = \"0640\"\n[backup]");
    std::fs::write(&config, text).unwrap();
    assert_eq!(run(cmd(&["backup"])).await.code, 0);
    let list = json(&run(cmd(&["list", "--json"])).await);
    let newest = list["backups"][0]["id"].as_str().unwrap().to_owned();
    let newest_dir = home.join("bucket/app").join(&newest);
    assert_eq!(mode(&newest_dir), 0o750);
    assert_eq!(mode(&newest_dir.join("manifest.json")), 0o640);
    let target = home.join("out/group.db");
    let out = run(cmd(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mode(&target), 0o640);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_store_never_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 1);
    common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let config = home.join("lifeboat.toml");
    // Someone with write access to the store plants links to places outside it.
    let outside = home.join("outside");
    std::fs::create_dir_all(outside.join("jobs")).unwrap();
    std::fs::create_dir_all(outside.join("app")).unwrap();
    std::fs::create_dir_all(home.join("bucket/_lifeboat")).unwrap();
    std::os::unix::fs::symlink(outside.join("jobs"), home.join("bucket/_lifeboat/jobs")).unwrap();

    // The backup itself is whole; its job record is refused by the store (kept locally).
    let out = run(with_config(home, &config, &["backup"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        common::all_files(&outside).is_empty(),
        "{:?}",
        common::all_files(&outside)
    );

    // A linked source directory: the backup fails in one line and writes nothing there.
    std::fs::rename(home.join("bucket/app"), home.join("bucket-app-moved")).unwrap();
    std::os::unix::fs::symlink(outside.join("app"), home.join("bucket/app")).unwrap();
    let out = run(with_config(home, &config, &["backup"])).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
    assert!(
        common::all_files(&outside).is_empty(),
        "{:?}",
        common::all_files(&outside)
    );

    // The same through the library: every write below the root checks each directory.
    let store = LocalStore::open(home.join("bucket")).unwrap();
    for key in [
        "_lifeboat/jobs/2026/11/x.json",
        "app/20261122T020000Z-7f3a/manifest.json",
    ] {
        let e = store
            .put_bytes(
                &ObjectKey::new(key).unwrap(),
                bytes::Bytes::from_static(b"{}"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, lifeboat::storage::StoreError::Symlink(_)),
            "{key}: {e}"
        );
    }
    assert!(common::all_files(&outside).is_empty());
}

/// Starts a command and waits until `ready` says it is mid-way.
pub async fn start_until<F, Fut>(mut cmd: std::process::Command, ready: F) -> Child
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready().await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("finished before it was caught mid-way: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "never got mid-way");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: signals a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, sig) };
}

pub async fn wait(child: Child) -> (Option<i32>, Out) {
    use std::os::unix::process::ExitStatusExt;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (
        out.status.signal(),
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
    )
}

/// A world with a database big enough that a backup or restore can be caught mid-way.
fn slow_world(home: &Path, storage: &str) -> PathBuf {
    common::make_sample_db(&home.join("app.db"), 2);
    common::add_random_blobs(&home.join("app.db"), 24);
    common::config_for(home, storage);
    home.join("lifeboat.toml")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sighup_and_sigint_cancel_a_backup_cleanly() {
    let server = common::S3Server::start().await;
    let direct = server.store("").await;
    // The test server keeps a multipart upload's parts as `.upload_id-…` files.
    let uploads = server.dir.path().to_path_buf();
    for (sig, storage) in [
        (libc::SIGTERM, server.config_toml("")),
        (
            libc::SIGHUP,
            "[storage]\ntype = \"local\"\npath = \"bucket\"".to_owned(),
        ),
        (
            libc::SIGINT,
            "[storage]\ntype = \"local\"\npath = \"bucket\"".to_owned(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let config = slow_world(home, &storage);
        let mut cmd = with_config(home, &config, &["backup", "app"]);
        cmd.env("AWS_ACCESS_KEY_ID", common::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", common::SECRET_KEY);
        let s3 = sig == libc::SIGTERM;
        let bucket = home.join("bucket");
        let child = start_until(cmd, || {
            let found = if s3 {
                !files_named(&uploads, ".upload_id-").is_empty()
            } else {
                !files_named(&bucket, ".lifeboat-tmp-").is_empty()
            };
            async move { found }
        })
        .await;
        signal(&child, sig);
        let (killed_by, out) = wait(child).await;
        assert_eq!(killed_by, None, "{sig}: handled, not killed");
        assert_eq!(out.code, 128 + sig, "{sig}: {}", out.stderr);
        assert!(
            out.stderr.contains("stopping, cleaning up"),
            "{}",
            out.stderr
        );
        // No upload left, nothing in the bucket, the job cancelled (not interrupted).
        if s3 {
            assert!(
                files_named(&uploads, ".upload").is_empty(),
                "the upload was aborted"
            );
            let listed = direct.list_all("app/").await.unwrap();
            assert!(listed.is_empty(), "{listed:?}");
        } else {
            assert!(files_named(&bucket, "app/").is_empty());
            assert!(files_named(&bucket, ".lifeboat-tmp-").is_empty());
        }
        let mut c = with_config(home, &config, &["jobs", "--json"]);
        c.env("AWS_ACCESS_KEY_ID", common::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", common::SECRET_KEY);
        let jobs = json(&run(c).await);
        assert_eq!(jobs[0]["status"], "cancelled", "{sig}: {jobs}");
        let staging: Vec<_> = std::fs::read_dir(home.join("staging"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(staging.is_empty(), "{staging:?}");
        eprintln!(
            "signal {sig}: exit {}, job cancelled, nothing left",
            out.code
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigpipe_never_kills_lifeboat_and_a_closed_stdout_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = slow_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let bucket = home.join("bucket");
    let child = start_until(with_config(home, &config, &["backup", "app"]), || {
        let found = !files_named(&bucket, ".lifeboat-tmp-").is_empty();
        async move { found }
    })
    .await;
    signal(&child, libc::SIGPIPE);
    let (killed_by, out) = wait(child).await;
    assert_eq!(killed_by, None, "SIGPIPE killed lifeboat");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("ok "), "{}", out.stdout);

    // `lifeboat list | head -0`: the reader is gone before the first line.
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let mut cmd = with_config(home, &config, &["list"]);
    cmd.stdout(Stdio::from(write)).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let (killed_by, out) = wait(child).await;
    assert_eq!(killed_by, None);
    assert_eq!(out.code, 0);
    assert_eq!(out.stderr, "", "quiet");
}

/// Jobs are alive while their lock is held, whatever their process id says.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_job_is_found_by_its_lock_not_its_pid() {
    use lifeboat::jobs::{Job, JobKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let state = lifeboat::state::State::open(&path).unwrap();
    let clock = lifeboat::clock::Clock::system();
    // Recorded as running by this very process (a live pid), but nobody holds its lock: the
    // process that ran it died and the kernel gave its pid to someone else.
    let dead = Job::start(
        JobKind::Backup,
        Some("app"),
        Trigger::Manual,
        "test",
        &clock,
    )
    .snapshot();
    assert_eq!(dead.pid, std::process::id());
    state.put_job(&dead, false).unwrap();
    let mut live = Job::start(
        JobKind::Backup,
        Some("app"),
        Trigger::Manual,
        "test",
        &clock,
    );
    live.hold(lifeboat::lock::JobLock::acquire(&state.job_lock_dir(), &live.id()).unwrap());
    state.put_job(&live.snapshot(), false).unwrap();
    let reopened = lifeboat::state::State::open(&path).unwrap();
    let status = |id: &str| {
        reopened
            .jobs()
            .unwrap()
            .into_iter()
            .find(|j| j.id == id)
            .unwrap()
            .status
    };
    assert_eq!(status(&dead.id), JobStatus::Interrupted);
    assert_eq!(status(&live.id()), JobStatus::Running);
}

/// What a killed restore leaves (its hidden partial file) is removed by `lifeboat clean`,
/// which says so, and only when its job is dead.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_restore_leaves_nothing_a_later_run_does_not_remove() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = slow_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    assert_eq!(run(with_config(home, &config, &["backup"])).await.code, 0);
    let out_dir = home.join("restores");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("r.db");
    let mut swept = Vec::new();
    for round in 0..2 {
        let child = start_until(
            with_config(
                home,
                &config,
                &["restore", "latest", "--to", target.to_str().unwrap()],
            ),
            || {
                let found = !files_named(&out_dir, ".lifeboat-partial-").is_empty();
                async move { found }
            },
        )
        .await;
        signal(&child, libc::SIGKILL);
        let _ = wait(child).await;
        assert!(!files_named(&out_dir, ".lifeboat-partial-").is_empty());
        assert!(!target.exists());
        if round == 0 {
            let out = run(with_config(home, &config, &["clean", "--dry-run"])).await;
            assert_eq!(out.code, 0);
            assert!(
                out.stdout.contains("would remove partial file"),
                "{}",
                out.stdout
            );
            assert!(!files_named(&out_dir, ".lifeboat-partial-").is_empty());
            let out = run(with_config(home, &config, &["clean", "--json"])).await;
            let report = json(&out);
            let items = report["items"].as_array().unwrap();
            assert!(
                items
                    .iter()
                    .any(|i| i["what"].as_str().unwrap().starts_with("partial file")
                        && i["error"].is_null()),
                "{report}"
            );
            swept.extend(items.iter().map(|i| i["what"].to_string()));
        } else {
            // The next restore sweeps it before it starts, and succeeds.
            let out = run(with_config(
                home,
                &config,
                &["restore", "latest", "--to", target.to_str().unwrap()],
            ))
            .await;
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        assert!(files_named(&out_dir, ".lifeboat-partial-").is_empty());
        assert!(files_named(&home.join("staging"), "lifeboat-").is_empty());
    }
    let out = run(with_config(home, &config, &["clean"])).await;
    assert_eq!(
        out.stdout.trim(),
        "nothing to clean: no run left anything behind"
    );
    eprintln!("killed restores: swept {swept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_check_and_list_count_damaged_backups() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 1);
    common::config_for(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let config = home.join("lifeboat.toml");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = run(with_config(home, &config, &["backup", "--json"])).await;
        ids.push(json(&out)[0]["manifest"]["id"].as_str().unwrap().to_owned());
    }
    // Verified while whole.
    let out = run(with_config(home, &config, &["verify", "--all"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Then the two older ones are damaged (cut short).
    for id in &ids[..2] {
        let data = home.join(format!("bucket/app/{id}/data.sqlite.zst"));
        let bytes = std::fs::read(&data).unwrap();
        std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    }
    let list = run(with_config(home, &config, &["list"])).await;
    for id in &ids[..2] {
        let line = list
            .stdout
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap();
        assert!(
            !line.contains(" ok "),
            "a damaged backup shown as verified: {line}"
        );
        assert!(line.contains("damaged"), "{line}");
    }
    let listed = json(&run(with_config(home, &config, &["list", "--json"])).await);
    for b in listed["backups"].as_array().unwrap() {
        if b["state"] == "damaged" {
            assert!(b["verified"].is_null(), "{b}");
        }
    }
    // check: WARNING, naming the damage (the newest backup is still whole and fresh).
    let out = run(with_config(home, &config, &["check"])).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("2 damaged backup(s)"), "{}", out.stdout);
    // verify --all: the damaged ones are failures.
    let out = run(with_config(home, &config, &["verify", "--all"])).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("FAILED"))
            .count(),
        2
    );
    assert!(
        out.stderr
            .contains("error: 2 of 3 backup(s) failed verification"),
        "{}",
        out.stderr
    );
    // Every backup damaged: still failures, never "nothing to verify".
    let data = home.join(format!("bucket/app/{}/data.sqlite.zst", ids[2]));
    std::fs::write(&data, b"junk").unwrap();
    let out = run(with_config(home, &config, &["verify", "--all"])).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        !out.stdout.contains("no complete backups"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("FAILED"))
            .count(),
        3
    );
}
