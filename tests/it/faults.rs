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

    let mut rng = fastrand::Rng::with_seed(42);
    let trials = 6;
    for _ in 0..trials {
        let mut cmd = lifeboat(home);
        cmd.arg("--config").arg(&config).arg("backup").arg("app");
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(20..900))).await;
        // SIGKILL: no cleanup runs.
        let _ = child.kill();
        let _ = child.wait();
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
                force_target: false,
                live: None,
                integrity_check: false,
                drill: false,
                staging: lb.staging(),
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
    assert!(jobs.len() <= trials);
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
