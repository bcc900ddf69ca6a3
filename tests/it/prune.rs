//! Retention against real stores: plans, pins, the safety rules and the order of deletes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use lifeboat::Lifeboat;
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::jobs::{JobKind, JobRecord, JobStatus};
use lifeboat::manifest::Trigger;
use lifeboat::progress::NoProgress;
use lifeboat::prune::PruneOptions;
use lifeboat::state::State;
use lifeboat::storage::{
    ByteStream, IncompleteUpload, ListPage, LocalStore, ObjectKey, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutOutcome, StoreResult,
};
use tokio_util::sync::CancellationToken;

use crate::cli::{lifeboat, run};
use crate::common::{self, ACCESS_KEY, S3Server, SECRET_KEY};

/// A real store that remembers every batch it was asked to delete, in order, and can pin a
/// backup when the first delete arrives, as another machine might.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ObjectStore>,
    deletes: Mutex<Vec<Vec<String>>>,
    pin_at_first_delete: Option<String>,
}

#[async_trait]
impl ObjectStore for Recording {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        self.inner.list_page(prefix, token).await
    }
    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        self.inner.get(key).await
    }
    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<bytes::Bytes> {
        self.inner.get_prefix(key, len).await
    }
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> StoreResult<PutOutcome> {
        self.inner.put(key, body).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        let first = {
            let mut deletes = self.deletes.lock().unwrap();
            deletes.push(keys.iter().map(|k| k.to_string()).collect());
            deletes.len() == 1
        };
        if let (true, Some(pin)) = (first, &self.pin_at_first_delete) {
            let pin = ObjectKey::new(pin.clone()).unwrap();
            self.inner.put_bytes(&pin, b"{}".to_vec().into()).await?;
        }
        self.inner.delete_many(keys).await
    }
    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        self.inner.list_incomplete(prefix).await
    }
    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        self.inner.abort_incomplete(upload).await
    }
}

fn world(dir: &Path, store: Arc<dyn ObjectStore>, retention: &str, clock: Clock) -> Lifeboat {
    common::make_sample_db(&dir.join("app.db"), 1);
    let text = format!(
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n{retention}\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n"
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::parse(&text, &path).unwrap();
    let state = State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, clock)
}

/// `n` backups of `app` one day apart from `first`; ids oldest first.
async fn history(lb: &Lifeboat, n: i64, first: DateTime<Utc>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        lb.clock().set(first + Duration::days(i));
        let (_, m) = lb
            .backup(
                "app",
                Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await;
        ids.push(m.unwrap().id.to_string());
    }
    ids
}

async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    store
        .list_all("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.starts_with("_lifeboat/jobs/"))
        .collect()
}

fn kept(plan: &lifeboat::prune::PrunePlan) -> Vec<(String, bool, String)> {
    plan.sources
        .iter()
        .flat_map(|s| &s.decisions)
        .map(|d| {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            (d.backup.id.clone(), d.keep, reasons.join(", "))
        })
        .collect()
}

/// The whole story on one store: dry run, pins, newest verified, orphans and their grace,
/// manifest-first deletes, the job record.
async fn prune_story(store: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording {
        inner: store,
        deletes: Mutex::new(Vec::new()),
        pin_at_first_delete: None,
    });
    let real_now = Utc::now();
    let first = real_now - Duration::days(6);
    let clock = Clock::starting_at(first);
    let lb = world(
        dir.path(),
        recording.clone(),
        "[retention]\nkeep_last = 2\ntimezone = \"Europe/Berlin\"",
        clock.clone(),
    );
    let ids = history(&lb, 5, first).await;
    let catalog = lb.catalog().await.unwrap();
    // The oldest is the only verified one, the second oldest is pinned.
    let oldest = catalog.find(&ids[0]).unwrap().clone();
    let (_, verified) = lb
        .verify(&oldest, Arc::new(NoProgress), CancellationToken::new())
        .await;
    verified.unwrap();
    lb.pin(&catalog, &ids[1]).await.unwrap();
    // An orphan, as a killed backup leaves one: data without a manifest, written now.
    let orphan_id = format!(
        "{}-dead",
        (first - Duration::days(3)).format("%Y%m%dT%H%M%SZ")
    );
    let orphan = ObjectKey::new(format!("app/{orphan_id}/data.sqlite.zst")).unwrap();
    recording
        .put_bytes(&orphan, vec![7u8; 100].into())
        .await
        .unwrap();

    clock.set(real_now);
    let before = keys(recording.as_ref()).await;
    let plan = lb.prune_plan(&PruneOptions::default()).await.unwrap();
    assert_eq!(
        kept(&plan),
        [
            // Its objects were written just now (its age, not its id's): it may be an upload
            // still running.
            (orphan_id.clone(), true, "orphan in grace period".into()),
            (ids[4].clone(), true, "last, newest complete".into()),
            (ids[3].clone(), true, "last".into()),
            (ids[2].clone(), false, String::new()),
            (ids[1].clone(), true, "pinned".into()),
            (ids[0].clone(), true, "newest verified".into()),
        ]
    );
    assert_eq!(plan.pruned_count(), 1);
    assert_eq!(
        plan.freed_bytes(),
        catalog.find(&ids[2]).unwrap().stored_bytes()
    );
    assert_eq!(
        keys(recording.as_ref()).await,
        before,
        "planning deletes nothing"
    );
    assert!(recording.deletes.lock().unwrap().is_empty());

    // Two days on, the orphan is past the 24 h grace period.
    clock.set(real_now + Duration::days(2));
    let (job, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    let report = report.unwrap();
    assert_eq!(report.deleted, 2);
    assert_eq!(job.kind, JobKind::Prune);
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.bytes, report.freed_bytes);
    for gone in [&ids[2], &orphan_id] {
        assert!(
            job.log
                .iter()
                .any(|l| l.message.contains(&format!("deleted app/{gone}"))),
            "{:#?}",
            job.log
        );
    }
    assert!(lb.jobs().unwrap().iter().any(|j| j.id == job.id));

    // The manifest went in a batch of its own, before the data.
    let deletes = recording.deletes.lock().unwrap().clone();
    let batch_of = |suffix: &str| {
        deletes
            .iter()
            .position(|b| b.iter().any(|k| k == &format!("app/{}/{suffix}", ids[2])))
            .unwrap_or_else(|| panic!("{suffix} never deleted: {deletes:?}"))
    };
    let (m, d) = (batch_of("manifest.json"), batch_of("data.sqlite.zst"));
    assert!(m < d, "manifest deleted in batch {m}, data in {d}");
    assert_eq!(deletes[m].len(), 1);

    let after = lb.catalog().await.unwrap();
    let left: Vec<&str> = after.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        left,
        [
            ids[4].as_str(),
            ids[3].as_str(),
            ids[1].as_str(),
            ids[0].as_str()
        ]
    );
    assert!(after.pins.contains(&format!("app/{}", ids[1])));

    // Prune again: nothing more to do.
    let (_, again) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    assert_eq!(again.unwrap().deleted, 0);

    // Unpinned, the pinned one goes on the next prune.
    assert!(lb.unpin(&after, &ids[1]).await.unwrap());
    let (_, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    assert_eq!(report.unwrap().deleted, 1);
    assert!(lb.catalog().await.unwrap().find(&ids[1]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    prune_story(Arc::new(
        LocalStore::open(dir.path().join("bucket")).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_on_s3() {
    let server = S3Server::start().await;
    prune_story(server.store("lb").await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_newest_backup_stops_the_prune_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let first = Utc::now() - Duration::days(5);
    let clock = Clock::starting_at(first);
    let lb = world(
        dir.path(),
        store.clone(),
        "[retention]\nkeep_last = 1",
        clock.clone(),
    );
    let ids = history(&lb, 3, first).await;
    // A backup job that failed after the newest complete backup.
    let failed = JobRecord {
        id: "20990101T000000Z-backup-dead".into(),
        kind: JobKind::Backup,
        source: Some("app".into()),
        backup_id: None,
        trigger: Trigger::Scheduled,
        host: "elsewhere".into(),
        pid: 1,
        started_at: first + Duration::days(3),
        finished_at: Some(first + Duration::days(3)),
        status: JobStatus::Failed,
        bytes: 0,
        error: Some("disk full".into()),
        log: Vec::new(),
        operator: None,
        restored: None,
    };
    lb.state().put_job(&failed, false).unwrap();
    clock.set(first + Duration::days(4));

    let (job, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    let report = report.unwrap();
    assert_eq!(report.deleted, 0);
    assert!(report.plan.sources[0].skipped.is_some());
    assert!(
        job.log
            .iter()
            .any(|l| l.message.contains("newest backup failed"))
    );
    assert_eq!(lb.catalog().await.unwrap().backups.len(), 3);

    let forced = PruneOptions {
        force: true,
        ..PruneOptions::default()
    };
    let (_, report) = lb.prune(&forced, CancellationToken::new()).await;
    assert_eq!(report.unwrap().deleted, 2);
    let left: Vec<String> = lb
        .catalog()
        .await
        .unwrap()
        .backups
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(left, [ids[2].clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_incomplete_uploads_are_aborted_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let clock = Clock::starting_at(Utc::now());
    let lb = world(dir.path(), store.clone(), "", clock.clone());
    history(&lb, 1, Utc::now()).await;
    // What a killed upload leaves in a directory store: a hidden temp file.
    let tmp = dir
        .path()
        .join("bucket/app/20200101T000000Z-abcd/.data.sqlite.zst.lifeboat-tmp-0000beef");
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    std::fs::write(&tmp, b"partial").unwrap();
    // Its writer holds a lock on it while it writes.
    let writer = std::fs::File::open(&tmp).unwrap();
    writer.lock().unwrap();
    // And a job record cut short, in lifeboat's own space, which the catalog listing skips.
    let record = dir
        .path()
        .join("bucket/_lifeboat/jobs/2020/01/.x.json.lifeboat-tmp-0000cafe");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, b"{").unwrap();
    let record_writer = std::fs::File::open(&record).unwrap();
    record_writer.lock().unwrap();
    assert_eq!(store.list_incomplete("").await.unwrap().len(), 2);

    let plan = lb.prune_plan(&PruneOptions::default()).await.unwrap();
    assert_eq!(plan.aborts().count(), 0, "a running upload is left alone");
    // The writers died.
    drop((writer, record_writer));
    assert!(
        plan.sources[0].decisions.iter().all(|d| d.keep),
        "empty policy"
    );

    clock.set(Utc::now() + Duration::hours(25));
    let (_, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    let report = report.unwrap();
    assert_eq!((report.deleted, report.aborted), (0, 2));
    assert!(!tmp.exists() && !record.exists());
    assert!(store.list_incomplete("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_plans_pins_and_prunes_through_s3() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::make_sample_db(&home.join("app.db"), 1);
    let text = format!(
        "{}[state]\npath = \"state.db\"\n[retention]\nkeep_last = 1\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
        server.config_toml("cli")
    );
    let config = home.join("lifeboat.toml");
    std::fs::write(&config, text).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = lifeboat(home);
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        c
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = run(cmd(&["backup", "--json"])).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        ids.push(v[0]["manifest"]["id"].as_str().unwrap().to_owned());
    }
    let out = run(cmd(&["pin", &ids[0]])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(cmd(&["list", "--json"])).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pinned: Vec<bool> = v["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pinned"].as_bool().unwrap())
        .collect();
    assert_eq!(pinned, [false, false, true]);

    let out = run(cmd(&["prune", "--dry-run"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("app: keep_last=1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("dry run: nothing deleted; 1 backup(s)"),
        "{}",
        out.stdout
    );
    let out = run(cmd(&["prune", "--dry-run", "--json"])).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    let actions: Vec<(String, bool)> = v["plan"]["sources"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["keep"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (ids[2].clone(), true),
            (ids[1].clone(), false),
            (ids[0].clone(), true)
        ]
    );

    let out = run(cmd(&["prune", "--json"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["report"]["deleted"], 1);
    assert_eq!(v["job"]["kind"], "prune");
    let out = run(cmd(&["show", &ids[0]])).await;
    assert!(out.stdout.contains("pinned    yes"), "{}", out.stdout);
    let out = run(cmd(&["unpin", &ids[0]])).await;
    assert!(out.stdout.contains("unpinned"), "{}", out.stdout);

    // Bad input: one line, non-zero.
    for (args, needle) in [
        (vec!["pin", "nosuch"], "no backup matches"),
        (vec!["prune", "--source", "nosuch"], "unknown source"),
    ] {
        let out = run(cmd(&args)).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(lines[0].contains(needle), "{}", lines[0]);
    }
    std::fs::write(
        &config,
        "[storage]\ntype = \"local\"\npath = \"b\"\n[retention]\nkeep_daily = -5\n",
    )
    .unwrap();
    let out = run(cmd(&["prune"])).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("keep_daily = -5"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_incomplete_uploads_can_be_aborted() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let server = S3Server::start().await;
    let store = server.store("lb").await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&server.endpoint)
            .force_path_style(true)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "t"))
            .build(),
    );
    let key = "app/20200101T000000Z-abcd/data.sqlite.zst";
    let created = client
        .create_multipart_upload()
        .bucket(common::BUCKET)
        .key(format!("lb/{key}"))
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap().to_owned();
    let part = |n: i32| {
        client
            .upload_part()
            .bucket(common::BUCKET)
            .key(format!("lb/{key}"))
            .upload_id(&id)
            .part_number(n)
            .body(vec![1u8; 1024].into())
            .send()
    };
    part(1).await.unwrap();
    store
        .abort_incomplete(&IncompleteUpload {
            key: key.into(),
            started: None,
            handle: id.clone(),
            writer_alive: None,
        })
        .await
        .unwrap();
    assert!(part(2).await.is_err(), "the upload is gone");
    // An upload that does not exist is an error, not a panic.
    let bogus = IncompleteUpload {
        key: key.into(),
        started: None,
        handle: "not-an-upload".into(),
        writer_alive: None,
    };
    assert!(store.abort_incomplete(&bogus).await.is_err());
}

/// Host B shares host A's bucket but not its source: B's default policy is not A's.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_of_another_host_is_only_pruned_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let first = Utc::now() - Duration::days(5);
    let clock = Clock::starting_at(first);
    let a = world(dir.path(), store.clone(), "", clock.clone());
    let ids = history(&a, 4, first).await;

    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[retention]\nkeep_last = 1\n[[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"shop.db\"\n";
    let config = Config::parse(text, &b_dir.join("lifeboat.toml")).unwrap();
    let state = State::open(&config.state_path()).unwrap();
    let b = Lifeboat::with_parts(config, store.clone(), state, clock.clone());

    let (job, report) = b
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    let report = report.unwrap();
    assert_eq!(report.deleted, 0);
    let app = report
        .plan
        .sources
        .iter()
        .find(|s| s.source == "app")
        .expect("the bucket's other sources are shown");
    assert_eq!(
        app.skipped.as_deref(),
        Some("not configured on this host; name it with --source to prune it")
    );
    assert!(app.decisions.iter().all(|d| d.keep));
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(a.catalog().await.unwrap().backups.len(), 4);

    // Named explicitly, it is pruned by B's default policy.
    let named = PruneOptions {
        source: Some("app".into()),
        ..PruneOptions::default()
    };
    let (_, report) = b.prune(&named, CancellationToken::new()).await;
    assert_eq!(report.unwrap().deleted, 3);
    let left: Vec<String> = a
        .catalog()
        .await
        .unwrap()
        .backups
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(left, [ids[3].clone()]);

    // A source neither configured nor in the bucket is still an error.
    let unknown = PruneOptions {
        source: Some("nope".into()),
        ..PruneOptions::default()
    };
    let err = b.prune_plan(&unknown).await.unwrap_err().to_string();
    assert!(err.contains("unknown source \"nope\""), "{err}");
}

/// The console confirms a list; a prune carrying it deletes no more, whatever a new plan says.
#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_prune_deletes_only_what_was_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let first = Utc::now() - Duration::days(5);
    let clock = Clock::starting_at(first);
    let lb = world(
        dir.path(),
        store.clone(),
        "[retention]\nkeep_last = 1",
        clock.clone(),
    );
    let ids = history(&lb, 4, first).await;
    let plan = lb.prune_plan(&PruneOptions::default()).await.unwrap();
    assert_eq!(plan.pruned_count(), 3);

    let opts = PruneOptions {
        source: Some("app".into()),
        only: Some([ids[0].clone()].into()),
        ..PruneOptions::default()
    };
    let (job, report) = lb.prune(&opts, CancellationToken::new()).await;
    assert_eq!(report.unwrap().deleted, 1);
    let left: Vec<String> = lb
        .catalog()
        .await
        .unwrap()
        .backups
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(left, [ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    assert!(
        job.log
            .iter()
            .any(|l| l.message == format!("spared app/{}: not among the confirmed backups", ids[1])),
        "{:?}",
        job.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_set_during_a_prune_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let first = Utc::now() - Duration::days(5);
    let clock = Clock::starting_at(first);
    let lb = world(
        dir.path(),
        local.clone(),
        "[retention]\nkeep_last = 1",
        clock.clone(),
    );
    let ids = history(&lb, 3, first).await;
    // Newest first: ids[1] goes first, and then ids[0] gets pinned.
    let store = Arc::new(Recording {
        inner: local.clone(),
        deletes: Mutex::new(Vec::new()),
        pin_at_first_delete: Some(format!("_lifeboat/pins/app/{}", ids[0])),
    });
    let config = lb.config().clone();
    let state = State::open(&config.state_path()).unwrap();
    let racing = Lifeboat::with_parts(config, store, state, clock.clone());
    let (job, report) = racing
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    assert_eq!(report.unwrap().deleted, 1);
    let catalog = lb.catalog().await.unwrap();
    let left: Vec<String> = catalog.backups.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(left, [ids[2].clone(), ids[0].clone()]);
    assert!(catalog.pinned(&catalog.backups[1]));
    assert!(
        job.log
            .iter()
            .any(|l| l.message == format!("spared app/{}: pinned during the prune", ids[0])),
        "{:?}",
        job.log
    );
}

/// Prunes and drills hold the source's lock like backups do, and say so when it is taken.
#[tokio::test(flavor = "multi_thread")]
async fn prunes_and_drills_refuse_a_source_another_job_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let first = Utc::now() - Duration::days(5);
    let clock = Clock::starting_at(first);
    let lb = world(
        dir.path(),
        store.clone(),
        "[retention]\nkeep_last = 1",
        clock.clone(),
    );
    history(&lb, 3, first).await;
    let held = lb.lock_source("app").unwrap();

    let (job, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    let err = report.unwrap_err();
    assert!(
        matches!(err, lifeboat::Error::Locked { ref name, .. } if name == "app"),
        "{err}"
    );
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(lb.catalog().await.unwrap().backups.len(), 3);

    let drill = lb
        .drill(
            &lifeboat::drill::DrillOptions {
                source: Some("app".into()),
                ..Default::default()
            },
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(drill, Err(lifeboat::Error::Locked { .. })),
        "{:?}",
        drill.map(|(r, _)| r.status)
    );

    drop(held);
    let (_, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    assert_eq!(report.unwrap().deleted, 2);
}
