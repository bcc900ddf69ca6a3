//! A backup killed at any point never looks complete.

use std::time::Duration;

use lifeboat::catalog::BackupState;
use lifeboat::jobs::JobStatus;

use crate::cli::{lifeboat, run};
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
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_left_by_a_dead_process_is_swept() {
    let world = crate::common::World::local();
    let staging = world.lb.staging();
    std::fs::create_dir_all(&staging).unwrap();
    // pid 0 never names a live process: a leftover; our own pid is live: kept.
    let dead = staging.join("lifeboat-snapshot-0-abc123");
    let live = staging.join(format!("lifeboat-download-{}-xyz", std::process::id()));
    let other = staging.join("unrelated-file");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("snapshot.sqlite"), vec![0u8; 4096]).unwrap();
    std::fs::write(&live, b"in use").unwrap();
    std::fs::write(&other, b"not ours").unwrap();
    let (_, r) = world
        .lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            std::sync::Arc::new(lifeboat::progress::NoProgress),
            Default::default(),
        )
        .await;
    r.unwrap();
    assert!(!dead.exists());
    assert!(live.exists() && other.exists());
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
