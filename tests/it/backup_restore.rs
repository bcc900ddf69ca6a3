//! Backups and restores end to end, on both stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use lifeboat::catalog::BackupState;
use lifeboat::jobs::{JobKind, JobStatus};
use lifeboat::manifest::Trigger;
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions};
use lifeboat::progress::{NoProgress, Phase, Progress};
use lifeboat::storage::{LocalStore, ObjectStore, ObjectStoreExt};
use lifeboat::{Error, Selector};
use tokio_util::sync::CancellationToken;

use crate::common::{self, S3Server, World};

fn opts(world: &World, target: &str) -> RestoreOptions {
    RestoreOptions {
        target: world.path(target).into(),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: false,
        drill: false,
        staging: world.lb.staging(),
        privileged: false,
    }
}

async fn backup(world: &World) -> lifeboat::manifest::Manifest {
    let (job, result) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    result.unwrap()
}

async fn latest(world: &World) -> RestoreFrom {
    let catalog = world.lb.catalog().await.unwrap();
    world
        .lb
        .select(&catalog, &Selector::Latest { source: None })
        .unwrap()
}

async fn round_trip(world: World) {
    let source = world.path("app.db");
    let manifest = backup(&world).await;
    assert_eq!(
        manifest.source.engine,
        lifeboat::manifest::EngineKind::Sqlite
    );
    let counts: Vec<(String, u64)> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows))
        .collect();
    assert_eq!(
        counts,
        [
            ("audit", 2000),
            ("blobs", 20),
            ("customers", 500),
            ("orders", 2000),
            ("tags", 30)
        ]
        .map(|(n, r)| (n.to_owned(), r))
        .to_vec()
    );
    assert!(manifest.data.stored_bytes < manifest.data.raw_bytes);

    let catalog = world.lb.catalog().await.unwrap();
    assert_eq!(catalog.backups.len(), 1);
    assert_eq!(catalog.backups[0].state, BackupState::Complete);
    assert_eq!(catalog.backups[0].manifest.as_deref(), Some(&manifest));

    let mut o = opts(&world, "restored/app.db");
    o.live = Some(source.clone().into());
    let (job, report) = world
        .lb
        .restore(
            latest(&world).await,
            o,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let report = report.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(report.ok() && report.checksum_verified);
    assert_eq!(report.sha256, manifest.data.sha256);
    assert!(report.diff.rows.iter().all(|r| r.live == r.restored));
    assert_eq!(
        common::content_digest(&world.path("restored/app.db")),
        common::content_digest(&source)
    );

    // Both jobs are in the local history and in the bucket.
    let jobs = world.lb.jobs().unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.kind).collect::<Vec<_>>(),
        [JobKind::Restore, JobKind::Backup]
    );
    let in_bucket = world.lb.store().list_all("_lifeboat/jobs/").await.unwrap();
    assert_eq!(in_bucket.len(), 2);
    assert_eq!(
        world.lb.verification(manifest.id.as_str()).map(|v| v.ok),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_through_a_directory() {
    round_trip(World::local()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_through_s3() {
    let server = S3Server::start().await;
    round_trip(World::new(server.store("prod").await)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_is_consistent_while_the_app_writes() {
    let world = World::local();
    let source = world.path("app.db");
    common::add_random_blobs(&source, 8);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let writer = {
        let (stop, written, source) = (stop.clone(), written.clone(), source.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&source).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // Each transaction touches two tables; a torn snapshot would show it.
                c.execute_batch("BEGIN; INSERT INTO orders (customer_id, cents, at) VALUES (1, 1, 'now'); INSERT INTO tags VALUES (hex(randomblob(8)), 0); COMMIT;")
                    .unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while written.load(Ordering::Relaxed) < 50 {
        std::thread::yield_now();
    }
    let manifest = backup(&world).await;
    let during = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let rows = |name: &str| {
        manifest
            .tables
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .rows as i64
    };
    // The trigger writes one audit row per order and tags grow with orders: in one snapshot
    // the three move together.
    assert_eq!(rows("orders"), rows("audit"));
    assert_eq!(rows("orders") - 2000, rows("tags") - 30);
    assert!(rows("orders") > 2000 && rows("orders") <= 2000 + during + 1);

    let (_, report) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(report.unwrap().ok());
}

/// A progress sink that cancels the job once an upload has moved `after` bytes.
struct CancelDuringUpload {
    cancel: CancellationToken,
    after: u64,
    uploading: AtomicBool,
}

impl Progress for CancelDuringUpload {
    fn phase(&self, phase: Phase, _: Option<u64>) {
        self.uploading
            .store(phase == Phase::Upload, Ordering::Relaxed);
    }
    fn advance(&self, done: u64) {
        if self.uploading.load(Ordering::Relaxed) && done > self.after {
            self.cancel.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_backup_restores_and_a_cancelled_one_leaves_nothing() {
    let server = S3Server::start().await;
    let world = World::new(server.store("").await);
    common::add_random_blobs(&world.path("app.db"), 18);

    let (job, result) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let manifest = result.unwrap();
    assert!(manifest.data.stored_bytes > 15 * 1024 * 1024);
    let parts_line = job
        .log
        .iter()
        .find(|l| l.message.contains("part(s)"))
        .unwrap();
    assert!(
        parts_line.message.contains("in 4 part(s)"),
        "{}",
        parts_line.message
    );
    let (_, report) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(report.unwrap().ok());

    let cancel = CancellationToken::new();
    let progress = Arc::new(CancelDuringUpload {
        cancel: cancel.clone(),
        after: 8 << 20,
        uploading: AtomicBool::new(false),
    });
    let (job, result) = world
        .lb
        .backup("app", Trigger::Manual, progress, cancel)
        .await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(job.status, JobStatus::Cancelled);
    let catalog = world.lb.catalog().await.unwrap();
    assert_eq!(
        catalog.backups.len(),
        1,
        "only the first backup exists: {:?}",
        catalog.backups
    );
    assert_eq!(catalog.backups[0].id, manifest.id);
    let cancelled_dir = job.backup_id.unwrap();
    let leftovers = common::all_files(server.dir.path());
    assert!(
        !leftovers
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains(&cancelled_dir)),
        "the cancelled backup left objects behind"
    );
}

async fn flipped_byte_is_caught(world: World, data_file: impl Fn(&str) -> std::path::PathBuf) {
    let manifest = backup(&world).await;
    let key = format!("app/{}/{}", manifest.id, manifest.data.key);
    let path = data_file(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let (job, result) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "out/r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(result, Err(Error::Checksum { .. })), "{result:?}");
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("checksum mismatch"));
    // Nothing was written where the restore was headed.
    assert_eq!(std::fs::read_dir(world.path("out")).unwrap().count(), 0);

    let catalog = world.lb.catalog().await.unwrap();
    let (job, result) = world
        .lb
        .verify(
            &catalog.backups[0],
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(result, Err(Error::Checksum { .. })));
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        world.lb.verification(manifest.id.as_str()).map(|v| v.ok),
        Some(false)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_is_caught_before_restore_local() {
    let world = World::local();
    let bucket = world.path("bucket");
    flipped_byte_is_caught(world, |key| bucket.join(key)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_is_caught_before_restore_s3() {
    let server = S3Server::start().await;
    let world = World::new(server.store("").await);
    flipped_byte_is_caught(world, |key| server.object_path(key)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_counts_are_reported_with_their_delta() {
    let world = World::local();
    let manifest = backup(&world).await;
    let path = world.path(&format!("bucket/app/{}/manifest.json", manifest.id));
    common::rewrite_manifest(&path, |v| {
        let orders = v["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["rows"] == 2000)
            .unwrap();
        orders["rows"] = 2003.into();
    });

    let (job, result) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let Err(Error::RowCountMismatch(report)) = result else {
        panic!("expected a mismatch, got {result:?}")
    };
    assert_eq!(job.status, JobStatus::Failed);
    let findings: Vec<_> = report.diff.findings().collect();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].table, "audit");
    assert_eq!(findings[0].delta(), Some(-3));
    assert!(
        world.path("r.db").exists(),
        "the restored database is kept for inspection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_are_never_overwritten_by_accident() {
    let world = World::local();
    backup(&world).await;
    std::fs::write(world.path("precious.db"), b"keep me").unwrap();
    let (_, result) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "precious.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(result, Err(Error::TargetExists(_))), "{result:?}");
    assert_eq!(
        std::fs::read(world.path("precious.db")).unwrap(),
        b"keep me"
    );

    let (_, result) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "app.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::TargetIsSource(_))),
        "{result:?}"
    );

    let mut forced = opts(&world, "precious.db");
    forced.force_target = true;
    let (_, result) = world
        .lb
        .restore(
            latest(&world).await,
            forced,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let report = result.unwrap();
    assert!(report.ok() && !report.created);
    let refused = world.lb.drop_restored(&report.target, report.created).await;
    assert!(refused.is_err());
    assert_eq!(common::count(&world.path("precious.db"), "orders"), 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_by_hand_with_zstd() {
    let world = World::local();
    let manifest = backup(&world).await;
    let data = world.path(&format!("bucket/app/{}/{}", manifest.id, manifest.data.key));
    let out = world.path("by-hand.db");
    let status = std::process::Command::new("zstd")
        .arg("-q")
        .arg("-d")
        .arg(&data)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("zstd is installed (scripts/test installs it)");
    assert!(status.success());
    let bytes = std::fs::read(&data).unwrap();
    use sha2::Digest;
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&bytes)),
        manifest.data.sha256,
        "sha256sum of the object equals the manifest"
    );
    for t in &manifest.tables {
        assert_eq!(common::count(&out, &t.name) as u64, t.rows, "{}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn job_history_is_shared_through_the_bucket() {
    let server = S3Server::start().await;
    let a = World::new(server.store("").await);
    let manifest = backup(&a).await;
    let catalog = a.lb.catalog().await.unwrap();
    let (_, r) =
        a.lb.verify(
            &catalog.backups[0],
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    r.unwrap();

    // Another machine: its own state, the same bucket.
    let b = World::new(server.store("").await);
    assert!(b.lb.jobs().unwrap().is_empty());
    let sync = b.lb.sync_jobs().await.unwrap();
    assert_eq!(sync.pulled, 2);
    let jobs = b.lb.jobs().unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter()
            .any(|j| j.kind == JobKind::Verify
                && j.backup_id.as_deref() == Some(manifest.id.as_str()))
    );
    assert_eq!(
        b.lb.verification(manifest.id.as_str()).map(|v| v.ok),
        Some(true)
    );
    assert_eq!(
        b.lb.sync_jobs().await.unwrap().pulled,
        0,
        "a second sync has nothing new"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_no_manifest_record_or_state() {
    let server = S3Server::start().await;
    let world = World::new(server.store("").await);
    let manifest = backup(&world).await;
    let (_, r) = world
        .lb
        .restore(
            latest(&world).await,
            opts(&world, "r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    r.unwrap();
    let catalog = world.lb.catalog().await.unwrap();
    let (_, r) = world
        .lb
        .verify(
            &catalog.backups[0],
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    r.unwrap();
    assert!(serde_json::to_string(&manifest).unwrap().len() > 100);
    let mut checked = 0;
    for (path, bytes) in common::all_files(server.dir.path())
        .into_iter()
        .chain(common::all_files(world.dir.path()))
    {
        assert!(
            !common::contains(&bytes, common::SECRET_KEY),
            "secret found in {}",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 6,
        "manifest, data, job records and the state database were all read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_and_damaged_backups_never_look_complete() {
    let world = World::local();
    let good = backup(&world).await;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(world.path("bucket")).unwrap());
    // A data object without a manifest, as a killed backup leaves it.
    let orphan =
        lifeboat::storage::ObjectKey::new("app/20261101T000000Z-0001/data.sqlite.zst").unwrap();
    store
        .put_bytes(&orphan, bytes::Bytes::from_static(b"partial"))
        .await
        .unwrap();
    // A manifest whose data object is gone.
    let broken =
        lifeboat::storage::ObjectKey::new(format!("app/{}/manifest.json", "20261102T000000Z-0002"))
            .unwrap();
    let text = String::from_utf8(
        store
            .get_bounded(
                &lifeboat::storage::ObjectKey::new(format!("app/{}/manifest.json", good.id))
                    .unwrap(),
                u64::MAX,
            )
            .await
            .unwrap(),
    )
    .unwrap()
    .replace(good.id.as_str(), "20261102T000000Z-0002");
    store.put_bytes(&broken, text.into()).await.unwrap();
    // Written as such, not edited: its checksum of itself is right.
    common::rewrite_manifest(
        &world.path("bucket/app/20261102T000000Z-0002/manifest.json"),
        |_| {},
    );
    // A manifest that is not JSON at all.
    let garbage =
        lifeboat::storage::ObjectKey::new("app/20261103T000000Z-0003/manifest.json").unwrap();
    store
        .put_bytes(
            &garbage,
            bytes::Bytes::from_static(b"{\"format\": 1, \"id\": tru"),
        )
        .await
        .unwrap();

    let catalog = world.lb.catalog().await.unwrap();
    let state = |id: &str| catalog.find(id).map(|b| (b.state, b.problem.clone()));
    assert_eq!(state(good.id.as_str()).unwrap().0, BackupState::Complete);
    assert_eq!(
        state("20261101T000000Z-0001").unwrap().0,
        BackupState::Orphan
    );
    let (s, problem) = state("20261102T000000Z-0002").unwrap();
    assert_eq!(s, BackupState::Damaged);
    assert!(problem.unwrap().contains("missing"));
    let (s, problem) = state("20261103T000000Z-0003").unwrap();
    assert_eq!(s, BackupState::Damaged);
    assert!(problem.unwrap().contains("not valid JSON"));
    assert_eq!(catalog.complete().count(), 1);

    let from = world
        .lb
        .select(&catalog, &Selector::Id("20261103T000000Z-0003".into()))
        .unwrap();
    let (_, result) = world
        .lb
        .restore(
            from,
            opts(&world, "r.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::NotRestorable { .. })),
        "{result:?}"
    );
    assert!(!world.path("r.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_report_is_saved_as_evidence() {
    let world = World::local();
    let manifest = backup(&world).await;
    let from = latest(&world).await;
    let backup_time = match &from {
        RestoreFrom::Backup(b) => Some(b.time()),
        RestoreFrom::Foreign(_) => None,
    };
    let (job, report) = world
        .lb
        .restore(
            from,
            opts(&world, "drill.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let report = report.unwrap();
    let drill = lifeboat::report::DrillReport::new(&job, &report, backup_time);
    let key = drill.save(world.lb.store().as_ref()).await.unwrap();
    assert!(key.as_str().starts_with("_lifeboat/drills/"), "{key}");
    let md =
        String::from_utf8(world.lb.store().get_bounded(&key, u64::MAX).await.unwrap()).unwrap();
    assert!(
        md.contains("PASSED") && md.contains(manifest.id.as_str()),
        "{md}"
    );
    assert!(md.contains("| orders | 2000 | 2000 | +0 | ok |"), "{md}");
    // The report says whether the rows themselves were compared (here: no checksums).
    assert!(
        md.contains("| content checksums | not in the backup (row counts only) |"),
        "{md}"
    );
    let json_key = lifeboat::storage::ObjectKey::new(key.as_str().replace(".md", ".json")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(
        &world
            .lb
            .store()
            .get_bounded(&json_key, u64::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["result"], "passed");
    assert!(json["restore"]["content_compared"].is_null(), "{json}");
    assert!(json["rpo_seconds"].as_i64().unwrap() >= 0);
    // Drill reports are not backups and not foreign objects.
    let catalog = world.lb.catalog().await.unwrap();
    assert_eq!(catalog.backups.len(), 1);
    assert!(catalog.foreign.is_empty());
}

fn journal_mode(path: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap()
}

/// A WAL-mode source comes back in WAL mode (the application's own setting), a rollback-
/// journal source in rollback mode; either way nothing is left beside the restored file.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_keeps_the_source_journal_mode() {
    let world = World::local();
    assert_eq!(journal_mode(&world.path("app.db")), "wal");
    for (mode, target) in [("wal", "wal.db"), ("delete", "rollback.db")] {
        if mode == "delete" {
            let c = rusqlite::Connection::open(world.path("app.db")).unwrap();
            let set: String = c
                .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
                .unwrap();
            assert_eq!(set, "delete");
        }
        backup(&world).await;
        let mut o = opts(&world, target);
        o.integrity_check = true;
        let (_, result) = world
            .lb
            .restore(
                latest(&world).await,
                o,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await;
        assert!(result.unwrap().ok());
        let beside: Vec<String> = std::fs::read_dir(world.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(target) || n.contains("lifeboat-partial"))
            .collect();
        assert_eq!(beside, [target], "{mode}");
        assert_eq!(journal_mode(&world.path(target)), mode);
    }
}

/// A backup whose data expands past what its manifest records (a few kilobytes of zstd
/// can stand for gigabytes of zeros) stops at that size, and one whose manifest claims more
/// than the disk holds is refused before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_never_expands_past_the_size_its_manifest_records() {
    use sha2::Digest;
    let world = World::local();
    let manifest = backup(&world).await;
    let dir = world.path(&format!("bucket/app/{}", manifest.id));
    let data = dir.join(&manifest.data.key);
    let original_data = std::fs::read(&data).unwrap();
    let original_manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let mut raw = zstd::decode_all(original_data.as_slice()).unwrap();
    raw.resize(raw.len() + (64 << 20), 0);
    let bomb = zstd::encode_all(raw.as_slice(), 19).unwrap();
    assert!(bomb.len() < original_data.len() + (64 << 10));
    std::fs::write(&data, &bomb).unwrap();
    let sha: String = sha2::Sha256::digest(&bomb)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    common::rewrite_manifest(&dir.join("manifest.json"), |v| {
        v["data"]["sha256"] = sha.into();
        v["data"]["stored_bytes"] = bomb.len().into();
    });
    let restore = |target: &'static str| {
        let world = &world;
        async move {
            world
                .lb
                .restore(
                    latest(world).await,
                    opts(world, target),
                    Arc::new(NoProgress),
                    CancellationToken::new(),
                )
                .await
                .1
        }
    };
    let err = restore("bomb.db").await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "decompresses to more than {} bytes (the size its manifest records)",
            manifest.data.raw_bytes
        )),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("bomb"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    std::fs::write(&data, &original_data).unwrap();
    std::fs::write(dir.join("manifest.json"), &original_manifest).unwrap();
    common::rewrite_manifest(&dir.join("manifest.json"), |v| {
        v["data"]["raw_bytes"] = (1u64 << 62).into();
    });
    let err = restore("huge.db").await.unwrap_err().to_string();
    assert!(err.contains("free; nothing was written"), "{err}");
    assert!(!world.path("huge.db").exists());
}
