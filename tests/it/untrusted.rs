//! The bucket is untrusted: odd keys, hostile strings, huge objects and impossible numbers in
//! it must never break a listing, reach a terminal raw, fill memory or panic; a refused
//! restore is not a failed one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lifeboat::catalog::{Catalog, Scanner};
use lifeboat::drill::DrillOptions;
use lifeboat::escape;
use lifeboat::jobs::{JobKind, JobRecord, JobStatus};
use lifeboat::manifest::Trigger;
use lifeboat::pipeline::restore::{RestoreOptions, RestoreTarget};
use lifeboat::progress::NoProgress;
use lifeboat::report::DrillSummary;
use lifeboat::storage::{
    ByteStream, IncompleteUpload, ListPage, LocalStore, ObjectKey, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutOutcome, StoreError, StoreResult,
};
use lifeboat::{Error, Lifeboat, Selector};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::cli::{Out, lifeboat as bin, run};
use crate::common::{self, S3Server, World};

/// Terminal controls a hostile string carries: none of them may reach a terminal raw.
fn assert_no_raw_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && escape::is_unsafe(c))
        .collect();
    assert!(bad.is_empty(), "{what} printed raw {bad:?}:\n{text}");
}

fn assert_clean(what: &str, out: &Out) {
    assert_no_raw_controls(&format!("{what} (stdout)"), &out.stdout);
    assert_no_raw_controls(&format!("{what} (stderr)"), &out.stderr);
}

/// A world whose bucket is a local directory, driven through the binary and the library.
struct Local {
    world: World,
    config: PathBuf,
}

/// The library's clock in these worlds; the binary runs an hour later (`LIFEBOAT_NOW`).
const T0: &str = "2029-12-31T12:00:00Z";
const NOW: &str = "2029-12-31T13:00:00Z";

impl Local {
    fn new() -> Local {
        let mut world = World::local();
        let config = world.path("lifeboat.toml");
        let parsed = lifeboat::config::Config::load(&config).unwrap();
        let state = lifeboat::state::State::open(&parsed.state_path()).unwrap();
        world.lb = Lifeboat::with_parts(
            parsed,
            world.lb.store().clone(),
            state,
            lifeboat::clock::Clock::starting_at(T0.parse().unwrap()),
        );
        Local { world, config }
    }

    fn bucket(&self, key: &str) -> PathBuf {
        self.world.path("bucket").join(key)
    }

    fn put(&self, key: &str, body: &[u8]) {
        let path = self.bucket(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    async fn cli(&self, args: &[&str]) -> Out {
        let mut c = bin(self.world.dir.path());
        c.env("LIFEBOAT_NOW", NOW)
            .arg("--config")
            .arg(&self.config)
            .args(args);
        run(c).await
    }
}

fn restore_opts(world: &World, to: &Path) -> RestoreOptions {
    restore_opts_at(to, &world.path("staging"))
}

async fn backup(lb: &Lifeboat) -> String {
    let (_, m) = lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    m.unwrap().id.to_string()
}

/// Objects no backup tool should write, but anyone with a key to the bucket can: each must
/// be listed as unusable (or foreign) and everything else must keep working.
const MULTIBYTE_AT_16: &str = "app/20261122T020000é-7f3/manifest.json";

fn long_key() -> String {
    // Over 1,024 bytes, in segments a file system takes.
    format!("legacy/{}/x.sql", vec!["d".repeat(200); 6].join("/"))
}

fn odd_keys() -> Vec<(String, &'static str)> {
    vec![
        ("legacy/win\\dump.sql".into(), "backslash"),
        (
            "legacy/evil\x1b]0;pwned\x07.sql".into(),
            "control character",
        ),
        ("legacy/csi\u{9b}2J.sql".into(), "control character"),
        ("legacy/txt.\u{202e}lqs.exe".into(), "bidirectional"),
        (long_key(), "longer than 1024 bytes"),
    ]
}

async fn assert_everything_else_works(
    lb: &Lifeboat,
    dir: &Path,
    id: &str,
    odd: &[(String, &str)],
) -> Catalog {
    let catalog = lb
        .catalog()
        .await
        .expect("an odd key never breaks the listing");
    assert_eq!(catalog.complete().count(), 1, "{:?}", catalog.backups);
    for (key, why) in odd {
        let u = catalog
            .unusable
            .iter()
            .find(|u| u.key == *key)
            .unwrap_or_else(|| panic!("{key:?} not listed as unusable: {:?}", catalog.unusable));
        assert!(u.reason.contains(why), "{key:?}: {}", u.reason);
    }
    assert!(catalog.find_foreign(MULTIBYTE_AT_16).is_some());
    let from = lb.select(&catalog, &Selector::Id(id.into())).unwrap();
    let to = dir.join(format!("restored-{}.db", fastrand::u32(..)));
    let opts = restore_opts_at(&to, &dir.join("staging"));
    let (_, report) = lb
        .restore(from, opts, Arc::new(NoProgress), CancellationToken::new())
        .await;
    assert!(report.unwrap().ok());
    let (_, verified) = lb
        .verify(
            catalog.find(id).unwrap(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    verified.unwrap();
    let opts = DrillOptions {
        backup: Some(id.into()),
        save_report: true,
        ..Default::default()
    };
    let (_, drill) = lb
        .drill(&opts, Arc::new(NoProgress), CancellationToken::new())
        .await
        .unwrap();
    assert!(drill.unwrap().passed());
    catalog
}

fn restore_opts_at(to: &Path, staging: &Path) -> RestoreOptions {
    RestoreOptions {
        target: RestoreTarget::Sqlite(to.to_path_buf()),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: false,
        drill: false,
        privileged: false,
        staging: staging.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_keys_are_listed_as_unusable_and_skipped_in_a_local_store() {
    let l = Local::new();
    let id = backup(&l.world.lb).await;
    for (key, _) in odd_keys() {
        l.put(&key, b"SELECT 1;\n");
    }
    l.put(MULTIBYTE_AT_16, b"{}");
    l.put("legacy/店舗-バックアップ.sql", b"SELECT 1;\n");
    assert_everything_else_works(&l.world.lb, l.world.dir.path(), &id, &odd_keys()).await;

    // The binary: listing, health and the prune plan go on, the odd keys shown escaped.
    let out = l.cli(&["list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_clean("list", &out);
    assert!(
        out.stdout.contains("legacy/evil\\x1b]0;pwned\\x07.sql"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("legacy/txt.\\u{202e}lqs.exe"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("key contains a backslash"),
        "{}",
        out.stdout
    );
    // Wide characters keep the foreign table aligned: its second column starts at the same
    // terminal column on every line.
    let foreign: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !(l.starts_with("KEY") && l.contains("FORMAT")))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(foreign.len() >= 3, "{}", out.stdout);
    let second_column = |line: &str| {
        let gap = line.find("  ").unwrap();
        let start = gap + line[gap..].find(|c| c != ' ').unwrap();
        unicode_width::UnicodeWidthStr::width(&line[..start])
    };
    let at = second_column(foreign[0]);
    for line in &foreign {
        assert_eq!(
            second_column(line),
            at,
            "misaligned:\n{}",
            foreign.join("\n")
        );
    }
    for args in [&["check"][..], &["prune", "--dry-run"], &["list", "--json"]] {
        let out = l.cli(args).await;
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        assert_clean(args[0], &out);
    }
    let out = l.cli(&["list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["unusable"].as_array().unwrap().len(), odd_keys().len());
    // Asked for by name, an unusable object says why in one line.
    let out = l
        .cli(&["restore", "legacy/evil\x1b]0;pwned\x07.sql", "--to", "e.db"])
        .await;
    assert_one_line(&out, "stderr", "error: ", "contains a control character");
    assert_clean("restore of an odd key", &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_keys_are_listed_as_unusable_and_skipped_in_s3() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let world = World::new(store.clone());
    let id = backup(&world.lb).await;
    // Written straight into the server's directory, as another tool's bug might leave them.
    // Not C0 controls: XML 1.0 cannot carry them, so no S3 listing can (real S3 needs
    // `encoding-type=url` for those; s3s-fs does not implement it).
    let odd: Vec<_> = odd_keys()
        .into_iter()
        .filter(|(k, _)| !k.bytes().any(|b| b < 0x20))
        .collect();
    assert_eq!(odd.len(), 4);
    for (key, _) in &odd {
        let path = server.object_path(&format!("p/{key}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"SELECT 1;\n").unwrap();
    }
    let path = server.object_path(&format!("p/{MULTIBYTE_AT_16}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"{}").unwrap();
    assert_everything_else_works(&world.lb, world.dir.path(), &id, &odd).await;
}

/// A backup whose manifest, job records and drill reports carry escape sequences, table-row
/// breakers and impossible numbers, as anyone with write access could leave them.
async fn hostile_world() -> (Local, String) {
    let l = Local::new();
    let id = backup(&l.world.lb).await;
    let key = format!("app/{id}/manifest.json");
    // Whoever can write the bucket can also recompute a manifest's own (unkeyed) checksum.
    common::rewrite_manifest(&l.bucket(&key), |m| {
        m["host"] = "db1\x1b]52;c;cHduZWQ=\x07".into();
        m["source"]["database"] = "/srv/\x1b[2J\u{202e}bd.ppa".into();
        m["tables"][0]["name"] = "customers\x1b[31m|\n| forged | 0 |".into();
        // Counts no database holds: sums and deltas must not overflow.
        m["tables"][1]["rows"] = u64::MAX.into();
        m["tables"][2]["rows"] = u64::MAX.into();
    });
    let job = serde_json::json!({
        "id": "20291231T100000Z-backup-beef",
        "kind": "backup",
        "source": "app",
        "backup_id": null,
        "trigger": "scheduled",
        "host": "other\x1b]0;title\x07",
        "pid": 1,
        "started_at": "2029-12-31T10:00:00Z",
        "finished_at": "2029-12-31T10:00:01Z",
        "status": "failed",
        "bytes": 0,
        "error": "disk \u{9b}2J full\x1b]52;c;cHduZWQ=\x07\u{202e}",
        "log": [{"at": "2029-12-31T10:00:01Z", "message": "\x1b[2Jgone"}],
    });
    l.put(
        "_lifeboat/jobs/2029/12/20291231T100000Z-backup-beef.json",
        &serde_json::to_vec(&job).unwrap(),
    );
    let failed = serde_json::json!({
        "job": {"id": "20291231T110000Z-drill-0bad", "started_at": "2029-12-31T11:00:00Z"},
        "backup": "x|y\n| 2029-01-01 | app | `z` | PASSED |",
        "source": "app",
        "operator": "\x1b[2Jroot",
        "host": "h`<img src=x>",
        "error": "no",
        "result": "failed",
    });
    l.put(
        "_lifeboat/drills/2029/20291231T110000Z-drill-0bad.json",
        &serde_json::to_vec(&failed).unwrap(),
    );
    let huge = serde_json::json!({
        "job": {"id": "20291231T090000Z-drill-0big"},
        "operator": "o", "host": "h",
        "restore": {"restored": id, "source": "app", "started_at": "2029-12-31T09:00:00Z",
                    "diff": {"rows": [{"status": "match"}]}},
        "rto_seconds": 1.0e300,
        "rpo_seconds": i64::MAX,
        "result": "passed",
    });
    l.put(
        "_lifeboat/drills/2029/20291231T090000Z-drill-0big.json",
        &serde_json::to_vec(&huge).unwrap(),
    );
    (l, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_strings_reach_no_terminal_raw() {
    let (l, id) = hostile_world().await;
    let show = l.cli(&["show", &id]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_clean("show", &show);
    assert!(
        show.stdout.contains("db1\\x1b]52;c;cHduZWQ=\\x07"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("/srv/\\x1b[2J\\u{202e}bd.ppa"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("customers\\x1b[31m|\\n| forged | 0 |"),
        "{}",
        show.stdout
    );

    let jobs = l.cli(&["jobs"]).await;
    assert_eq!(jobs.code, 0, "{}", jobs.stderr);
    assert_clean("jobs", &jobs);
    assert!(
        jobs.stdout.contains("disk \\u{9b}2J full\\x1b]52"),
        "{}",
        jobs.stdout
    );

    let report = l.cli(&["report", "drills"]).await;
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert_clean("report drills", &report);
    let rows: Vec<&str> = report
        .stdout
        .lines()
        .filter(|l| l.starts_with("| 2029"))
        .collect();
    assert_eq!(rows.len(), 2, "a value forged a row:\n{}", report.stdout);
    for row in &rows {
        let cells = row
            .char_indices()
            .filter(|&(i, c)| c == '|' && !row[..i].ends_with('\\'))
            .count();
        assert_eq!(cells, 11, "{row}");
    }
    let md = &report.stdout;
    assert!(
        md.match_indices('<').all(|(i, _)| md[..i].ends_with('\\')),
        "{md}"
    );
    assert!(
        rows.iter().any(|r| r.contains("| ? |")),
        "{}",
        report.stdout
    );

    for args in [
        &["list"][..],
        &["check"],
        &["jobs", "--json"],
        &["show", &id, "--json"],
    ] {
        let out = l.cli(args).await;
        assert!(out.code < 3, "{args:?}: {}{}", out.stdout, out.stderr);
        assert_clean(&format!("{args:?}"), &out);
    }
    // JSON stays JSON with the same values: the escapes are JSON's own.
    let out = l.cli(&["jobs", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let error = v
        .as_array()
        .unwrap()
        .iter()
        .find_map(|j| j["error"].as_str().filter(|e| e.starts_with("disk")))
        .unwrap();
    assert_eq!(error, "disk \u{9b}2J full\x1b]52;c;cHduZWQ=\x07\u{202e}");

    // The stored Markdown report of a drill of this backup escapes its table names too.
    let out = l.cli(&["drill", "--backup", &id]).await;
    assert_clean("drill", &out);
    let mut reports = Vec::new();
    for (path, body) in common::all_files(&l.world.path("bucket/_lifeboat/drills")) {
        if path.extension().is_some_and(|e| e == "md") {
            reports.push(String::from_utf8(body).unwrap());
        }
    }
    assert_eq!(reports.len(), 1);
    assert_no_raw_controls("the drill report", &reports[0]);
}

/// A store that counts what is read of each key, and can lie about sizes in its listing.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: Mutex<BTreeMap<String, u32>>,
    /// Bytes handed out by every `get` stream so far.
    bytes: Arc<AtomicU64>,
    /// Keys whose listed size is replaced by 10 bytes.
    lie_about: Vec<String>,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>, lie_about: Vec<String>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            gets: Mutex::default(),
            bytes: Arc::default(),
            lie_about,
        })
    }

    fn gets(&self, key: &str) -> u32 {
        self.gets.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let mut page = self.inner.list_page(prefix, token).await?;
        for o in &mut page.objects {
            if self.lie_about.contains(&o.key) {
                o.size = 10;
            }
        }
        Ok(page)
    }
    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        use futures_util::StreamExt;
        *self
            .gets
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default() += 1;
        let bytes = self.bytes.clone();
        // Every listing reads the catalog index, a few bytes per manifest (see
        // catalog_index.rs); what is counted here is what the objects themselves cost.
        let counted = !key
            .as_str()
            .starts_with(lifeboat::catalog::index::INDEX_PREFIX);
        let stream = self.inner.get(key).await?.inspect(move |chunk| {
            if let (true, Ok(c)) = (counted, chunk) {
                bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        });
        Ok(Box::pin(stream))
    }
    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        self.inner.get_prefix(key, len).await
    }
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> StoreResult<PutOutcome> {
        self.inner.put(key, body).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        self.inner.delete_many(keys).await
    }
    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        self.inner.list_incomplete(prefix).await
    }
    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        self.inner.abort_incomplete(upload).await
    }
}

/// A sparse file: as large as it says, without taking the disk.
fn sparse(path: &Path, len: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

const BIG_JOB: &str = "_lifeboat/jobs/2029/12/20291231T000000Z-backup-0b16.json";
const LYING_JOB: &str = "_lifeboat/jobs/2029/12/20291231T000001Z-backup-1137.json";
const JUNK_JOB: &str = "_lifeboat/jobs/2029/12/20291231T000002Z-backup-0bad.json";
const MISNAMED_JOB: &str = "_lifeboat/jobs/2029/12/20291231T000003Z-backup-0abc.json";
const BIG_MANIFEST: &str = "app/20291231T000000Z-0b16/manifest.json";
const LYING_MANIFEST: &str = "app/20291231T000001Z-1137/manifest.json";
const JUNK_MANIFEST: &str = "app/20291231T000002Z-0bad/manifest.json";
const BIG_REPORT: &str = "_lifeboat/drills/2029/20291231T000000Z-drill-0b16.json";
const JUNK_REPORT: &str = "_lifeboat/drills/2029/20291231T000002Z-drill-0bad.json";

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_unparsable_objects_are_reported_once_and_never_read_again() {
    let l = Local::new();
    backup(&l.world.lb).await;
    // Listed as huge: never read. Listed as small but huge (a lying listing): read only up to
    // the limit. Junk: read once, then remembered.
    sparse(&l.bucket(BIG_JOB), 2 << 30);
    sparse(&l.bucket(LYING_JOB), 64 << 20);
    l.put(JUNK_JOB, br#"{"not": "a job"}"#);
    let misnamed = serde_json::json!({
        "id": "20291231T000003Z-backup-ffff", "kind": "backup", "source": "app",
        "backup_id": null, "trigger": "manual", "host": "h", "pid": 1,
        "started_at": "2029-12-31T00:00:03Z", "finished_at": null, "status": "succeeded",
        "bytes": 0, "error": null, "log": [],
    });
    l.put(MISNAMED_JOB, &serde_json::to_vec(&misnamed).unwrap());
    sparse(&l.bucket(BIG_MANIFEST), 1 << 30);
    l.put("app/20291231T000000Z-0b16/data.sqlite.zst", b"x");
    sparse(&l.bucket(LYING_MANIFEST), 64 << 20);
    l.put(JUNK_MANIFEST, b"not json at all");
    sparse(&l.bucket(BIG_REPORT), 64 << 20);
    l.put(JUNK_REPORT, b"[]");

    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(l.world.path("bucket")).unwrap());
    let store = Counting::new(local, vec![LYING_JOB.into(), LYING_MANIFEST.into()]);
    let config = common::config_for(
        l.world.dir.path(),
        "[storage]\ntype = \"local\"\npath = \"bucket\"",
    );
    let state = lifeboat::state::State::open(&config.state_path()).unwrap();
    let lb = Lifeboat::with_parts(
        config,
        store.clone(),
        state,
        lifeboat::clock::Clock::system(),
    );

    let sync = lb.sync_jobs().await.unwrap();
    let mut found: Vec<&str> = sync.unusable.iter().map(|u| u.key.as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, [BIG_JOB, LYING_JOB, JUNK_JOB, MISNAMED_JOB]);
    let why = |key: &str| {
        sync.unusable
            .iter()
            .find(|u| u.key == key)
            .unwrap()
            .reason
            .clone()
    };
    assert!(
        why(BIG_JOB).contains("2147483648 bytes"),
        "{}",
        why(BIG_JOB)
    );
    assert!(
        why(LYING_JOB).contains("more than 1048576 bytes"),
        "{}",
        why(LYING_JOB)
    );
    assert!(
        why(MISNAMED_JOB).contains("id is not its file name"),
        "{}",
        why(MISNAMED_JOB)
    );
    let catalog = lb.catalog().await.unwrap();
    let problem = |id: &str| {
        catalog
            .find(id)
            .and_then(|b| b.problem.clone())
            .unwrap_or_else(|| panic!("{id} has no problem: {:?}", catalog.find(id)))
    };
    assert!(problem("20291231T000000Z-0b16").contains("1073741824 bytes"));
    assert!(problem("20291231T000001Z-1137").contains("more than 1048576 bytes"));
    assert!(problem("20291231T000002Z-0bad").contains("not valid JSON"));
    let (drills, warnings) =
        lifeboat::report::drill_history(lb.store().as_ref(), Some(lb.state()), None)
            .await
            .unwrap();
    assert!(drills.is_empty());
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    // Read: only what was listed as small, each once and never much past the limit.
    assert_eq!(
        store.gets(BIG_JOB) + store.gets(BIG_MANIFEST) + store.gets(BIG_REPORT),
        0
    );
    let small = [
        LYING_JOB,
        JUNK_JOB,
        MISNAMED_JOB,
        LYING_MANIFEST,
        JUNK_MANIFEST,
        JUNK_REPORT,
    ];
    for key in small {
        assert_eq!(store.gets(key), 1, "{key}");
    }
    let read = store.bytes.load(Ordering::Relaxed);
    assert!(read < 4 << 20, "read {read} bytes");

    // The next runs read none of them, and report nothing new about the job records.
    let sync = lb.sync_jobs().await.unwrap();
    assert!(sync.unusable.is_empty(), "{:?}", sync.unusable);
    let again = lb.catalog().await.unwrap();
    let problem = again.find("20291231T000002Z-0bad").unwrap().problem.clone();
    assert!(problem.unwrap().contains("not valid JSON"));
    let (_, warnings) =
        lifeboat::report::drill_history(lb.store().as_ref(), Some(lb.state()), None)
            .await
            .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    for key in small {
        assert_eq!(store.gets(key), 1, "{key} was read again");
    }
    assert_eq!(store.bytes.load(Ordering::Relaxed), read);

    // The binary: `jobs` warns once, then not again; `list` and `report drills` still work.
    let first = l.cli(&["jobs"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = l.cli(&["jobs"]).await;
    assert!(
        !second.stderr.contains("skipped job record"),
        "{}",
        second.stderr
    );
    for args in [&["list"][..], &["report", "drills"]] {
        let out = l.cli(args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bounded_reads_stop_at_the_limit_on_both_stores() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(LocalStore::open(dir.path()).unwrap()),
        server.store("p").await,
    ];
    let body = Bytes::from(vec![7u8; 3 << 20]);
    let key = ObjectKey::new("_lifeboat/jobs/2029/12/x.json").unwrap();
    for store in stores {
        store.put_bytes(&key, body.clone()).await.unwrap();
        let err = store.get_bounded(&key, 1 << 20).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { limit: 1048576, .. }),
            "{err}"
        );
        let whole = store.get_bounded(&key, 3 << 20).await.unwrap();
        assert_eq!(whole.len(), 3 << 20);
    }
}

/// Adds lines to the config: `extra_source` inside the `[[source]]`, `extra` at the end.
fn config_with(l: &Local, extra_source: &str, extra: &str) {
    let text = std::fs::read_to_string(&l.config).unwrap();
    let text = text.replace(
        "path = \"app.db\"\n",
        &format!("path = \"app.db\"\n{extra_source}\n"),
    );
    std::fs::write(&l.config, format!("{text}\n{extra}\n")).unwrap();
}

fn assert_one_line(out: &Out, stream: &str, start: &str, needle: &str) {
    let text = if stream == "stdout" {
        &out.stdout
    } else {
        &out.stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected on {stream}: {text}");
    assert!(
        lines[0].starts_with(start) && lines[0].contains(needle),
        "{}",
        lines[0]
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_durations_and_times_are_one_line_errors() {
    let l = Local::new();
    backup(&l.world.lb).await;
    let out = l
        .cli(&["restore", "--before=-99999999999h", "--to", "x.db"])
        .await;
    assert_eq!(out.code, 1);
    assert_one_line(&out, "stderr", "error: ", "more than 1,000 years");
    let out = l
        .cli(&[
            "restore",
            "--before",
            "99999999999999999999999h ago",
            "--to",
            "x.db",
        ])
        .await;
    assert_eq!(out.code, 1);
    assert_one_line(&out, "stderr", "error: ", "1,000 years");

    let original = std::fs::read_to_string(&l.config).unwrap();
    for (source, extra) in [
        ("rpo = \"99999999999999h\"", ""),
        ("", "[check]\nfailure_window = \"9999999999d\""),
        ("drill_interval = \"99999999999w\"", ""),
    ] {
        std::fs::write(&l.config, &original).unwrap();
        config_with(&l, source, extra);
        let needle = "longer than lifeboat accepts";
        let out = l.cli(&["check"]).await;
        assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
        assert_one_line(&out, "stdout", "LIFEBOAT UNKNOWN - ", needle);
        let out = l.cli(&["list"]).await;
        assert_eq!(out.code, 1);
        assert_one_line(&out, "stderr", "error: ", needle);
    }
    // A stored report with an impossible RPO is shown, not a crash.
    let (l, _) = hostile_world().await;
    let out = l.cli(&["report", "drills"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_one_line_and_check_says_unknown() {
    let l = Local::new();
    backup(&l.world.lb).await;
    let cli = |args: &[&str]| {
        let mut c = bin(l.world.dir.path());
        c.env("LIFEBOAT_DEBUG_PANIC", "1")
            .arg("--config")
            .arg(&l.config)
            .args(args);
        run(c)
    };
    let out = cli(&["check"]).await;
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert_one_line(
        &out,
        "stdout",
        "LIFEBOAT UNKNOWN - internal error",
        "LIFEBOAT_DEBUG_PANIC",
    );
    for args in [
        &["list"][..],
        &["jobs"],
        &["restore", "latest", "--to", "y.db"],
    ] {
        let out = cli(args).await;
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        assert_one_line(
            &out,
            "stderr",
            "error: internal error",
            "LIFEBOAT_DEBUG_PANIC",
        );
    }
}

#[test]
fn a_panic_in_the_console_restores_the_terminal_first() {
    let l = Local::new();
    let script = format!(
        "cd {dir} && env -u RUST_BACKTRACE HOME={dir} LIFEBOAT_DEBUG_PANIC=1 {bin} --config {config}; echo EXIT=$?; echo STTY: $(stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo); sleep 60",
        dir = l.world.dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = l.config.display()
    );
    // The panic comes from a task spawned after the terminal went raw and full-screen.
    let tmux = crate::console::Tmux::start("panic", &script);
    let screen = tmux.wait_for("STTY:", Duration::from_secs(30));
    assert!(screen.contains("EXIT=1"), "{screen}");
    let error = screen
        .lines()
        .find(|l| l.starts_with("error: internal error"))
        .unwrap_or_else(|| panic!("no error line:\n{screen}"));
    assert!(error.contains("LIFEBOAT_DEBUG_PANIC"), "{error}");
    // The console's frame is gone and the terminal is back in cooked mode with echo.
    assert!(!screen.contains("1 Catalog"), "{screen}");
    assert!(screen.contains("STTY: icanon echo"), "{screen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_restore_is_no_failed_verification_and_no_failure() {
    let l = Local::new();
    let id = backup(&l.world.lb).await;
    let lb = &l.world.lb;
    let taken = l.world.path("taken.db");
    std::fs::write(&taken, b"precious").unwrap();
    let catalog = lb.catalog().await.unwrap();
    let from = lb.select(&catalog, &Selector::Id(id.clone())).unwrap();
    let (job, result) = lb
        .restore(
            from,
            restore_opts(&l.world, &taken),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(result, Err(Error::TargetExists(_))), "{result:?}");
    assert_eq!(job.status, JobStatus::Refused);
    assert_eq!(job.kind, JobKind::Restore);
    assert_eq!(std::fs::read(&taken).unwrap(), b"precious");
    assert!(lb.verification(&id).is_none(), "{:?}", lb.verification(&id));
    let jobs = lb.jobs().unwrap();
    let health = lifeboat::health::assess(lb.config(), &catalog.rows(), &jobs, lb.clock().now());
    assert_eq!(
        (health[0].failed_in_window, health[0].finished_in_window),
        (0, 1)
    );

    // The source itself, through the binary: refused, and `check` stays OK.
    let out = l.cli(&["restore", &id, "--to", "app.db"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is the source database itself"),
        "{}",
        out.stderr
    );
    let out = l.cli(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let out = l.cli(&["jobs"]).await;
    assert_eq!(out.stdout.matches(" refused ").count(), 2, "{}", out.stdout);
    let out = l.cli(&["show", &id]).await;
    assert!(out.stdout.contains("verified  -"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_without_the_key_is_refused() {
    let l = Local::new();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let original = std::fs::read_to_string(&l.config).unwrap();
    config_with(
        &l,
        "",
        &format!("[encryption]\nrecipients = [\"{recipient}\"]"),
    );
    let out = l.cli(&["backup", "app"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(&l.config, &original).unwrap();
    let out = l.cli(&["restore", "latest", "--to", "r.db"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("encryption.identity_file"),
        "{}",
        out.stderr
    );
    let out = l.cli(&["jobs", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let restore = v
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "restore")
        .unwrap();
    assert_eq!(restore["status"], "refused", "{restore}");
    assert_eq!(l.cli(&["check"]).await.code, 0);
}

// --- Generated input: no parser panics, and what passes obeys its rules. ---

/// Parts of keys as lifeboat reads them, bent: valid parts, unicode, controls, backslashes,
/// overlong runs, and plain noise.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("app".to_owned()),
        Just("shop".to_owned()),
        Just("_lifeboat".to_owned()),
        Just("jobs".to_owned()),
        Just("20261122T020000Z-7f3a".to_owned()),
        Just("20261122T020000é-7f3".to_owned()),
        Just("20261122T02000\u{1b}Z-7f3a".to_owned()),
        Just("manifest.json".to_owned()),
        Just("data.sqlite.zst".to_owned()),
        Just("win\\dump.sql".to_owned()),
        Just("店舗".to_owned()),
        Just("\u{202e}".to_owned()),
        Just(String::new()),
        Just("..".to_owned()),
        "[a-z0-9._-]{1,12}",
        any::<String>(),
        "[a-z]{300,400}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 1..5).prop_map(|parts| parts.join("/"))
}

/// A bucket in memory: enough of a store for the catalog scanner, with pages of four keys so
/// that directories straddle page boundaries.
#[derive(Debug, Default)]
struct Memory {
    objects: BTreeMap<String, Bytes>,
}

#[async_trait]
impl ObjectStore for Memory {
    fn location(&self) -> String {
        "memory".into()
    }
    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let mut rest = self
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| token.as_deref().is_none_or(|t| k.as_str() > t));
        let objects: Vec<ObjectMeta> = rest
            .by_ref()
            .take(4)
            .map(|(k, v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
                last_modified: None,
            })
            .collect();
        let next = match rest.next() {
            Some(_) => objects.last().map(|o| o.key.clone()),
            None => None,
        };
        Ok(ListPage {
            objects,
            next,
            ..ListPage::default()
        })
    }
    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.objects.get(key.as_str()).map(|v| ObjectMeta {
            key: key.to_string(),
            size: v.len() as u64,
            last_modified: None,
        }))
    }
    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        let body = self
            .objects
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        Ok(Box::pin(futures_util::stream::iter([Ok(body)])))
    }
    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        let body = self
            .objects
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        Ok(body.slice(..body.len().min(len as usize)))
    }
    async fn put(&self, _: &ObjectKey, _: ByteStream) -> StoreResult<PutOutcome> {
        unreachable!("the scanner only reads")
    }
    async fn delete_many(&self, _: &[ObjectKey]) -> StoreResult<()> {
        unreachable!("the scanner only reads")
    }
    async fn list_incomplete(&self, _: &str) -> StoreResult<Vec<IncompleteUpload>> {
        Ok(Vec::new())
    }
    async fn abort_incomplete(&self, _: &IncompleteUpload) -> StoreResult<()> {
        Ok(())
    }
}

const JOB_KEY: &str = "_lifeboat/jobs/2026/11/20261122T020000Z-backup-7f3a.json";
const REPORT_KEY: &str = "_lifeboat/drills/2026/20261122T030000Z-drill-7f3a.json";

fn job_json() -> String {
    serde_json::json!({
        "id": "20261122T020000Z-backup-7f3a", "kind": "backup", "source": "app",
        "backup_id": "20261122T020000Z-7f3a", "trigger": "scheduled", "host": "h", "pid": 7,
        "started_at": "2026-11-22T02:00:00Z", "finished_at": "2026-11-22T02:00:09Z",
        "status": "failed", "bytes": 1234, "error": "disk full",
        "log": [{"at": "2026-11-22T02:00:09Z", "message": "backup failed: disk full"}],
    })
    .to_string()
}

fn report_json() -> String {
    serde_json::json!({
        "job": {"id": "20261122T030000Z-drill-7f3a", "started_at": "2026-11-22T03:00:00Z"},
        "operator": "ops", "host": "db1",
        "restore": {"restored": "20261122T020000Z-7f3a", "source": "app",
                    "started_at": "2026-11-22T03:00:00Z",
                    "diff": {"rows": [{"status": "match"}, {"status": "missing"}]}},
        "rto_seconds": 1.5, "rpo_seconds": 3600, "result": "failed",
    })
    .to_string()
}

fn mutate(
    text: &str,
    flips: &[(prop::sample::Index, u8)],
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for (i, b) in flips {
        let i = i.index(bytes.len());
        bytes[i] = *b;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len()));
    }
    bytes
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn job_records_parse_or_fail_cleanly(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        noise in prop::collection::vec(any::<u8>(), 0..512),
        key in key(),
    ) {
        let _ = JobRecord::parse(&key, &noise);
        match JobRecord::parse(JOB_KEY, &mutate(&job_json(), &flips, cut)) {
            Ok(job) => {
                prop_assert_eq!(job.id.as_str(), "20261122T020000Z-backup-7f3a");
                prop_assert!(lifeboat::when::plausible(job.started_at));
                prop_assert!(job.finished_at.is_none_or(|t| t >= job.started_at));
                let shown = escape::term(job.error.as_deref().unwrap_or_default()).into_owned();
                prop_assert!(!shown.chars().any(escape::is_unsafe));
                let _ = (job.duration(), job.throughput());
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn drill_reports_parse_or_fail_cleanly(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        noise in prop::collection::vec(any::<u8>(), 0..512),
        rpo in any::<i64>(),
        rto in any::<f64>(),
        host in any::<String>(),
    ) {
        let _ = DrillSummary::from_json(REPORT_KEY, &noise);
        let mut drills = Vec::new();
        if let Some(d) = DrillSummary::from_json(REPORT_KEY, &mutate(&report_json(), &flips, cut)) {
            prop_assert!(lifeboat::when::plausible(d.started_at));
            drills.push(d);
        }
        let mut v: serde_json::Value = serde_json::from_str(&report_json()).unwrap();
        v["rpo_seconds"] = rpo.into();
        v["rto_seconds"] = serde_json::Value::from(rto);
        v["host"] = host.into();
        drills.extend(DrillSummary::from_json(REPORT_KEY, v.to_string().as_bytes()));
        let md = lifeboat::report::drills_markdown(&drills);
        prop_assert!(!md.chars().any(|c| c != '\n' && escape::is_unsafe(c)));
        // A row per drill, each starting with its date (a flipped digit may change the year).
        let rows = md
            .lines()
            .filter(|l| l.strip_prefix("| ").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit())))
            .count();
        prop_assert_eq!(rows, drills.len());
    }

    #[test]
    fn keys_pins_and_text_never_panic_and_usable_keys_print_as_they_are(
        k in key(),
        s in any::<String>(),
    ) {
        for text in [k.as_str(), s.as_str()] {
            if let Ok(key) = ObjectKey::new(text) {
                prop_assert!(key.as_str().len() <= 1024);
                prop_assert!(!key.as_str().contains('\\'));
                let shown = escape::term(key.as_str());
                prop_assert_eq!(shown.as_ref(), key.as_str());
            }
            let pin = format!("{}{text}", lifeboat::prune::PINS_PREFIX);
            if let Some(p) = lifeboat::prune::pin_of(&pin) {
                let (source, id) = p.split_once('/').unwrap();
                prop_assert!(lifeboat::config::validate_source_name(source).is_ok());
                prop_assert!(id.parse::<lifeboat::manifest::BackupId>().is_ok());
            }
            let _ = text.parse::<lifeboat::manifest::BackupId>().map(|id| id.time());
            prop_assert!(!escape::term(text).chars().any(escape::is_unsafe));
            let md = escape::md_text(text);
            prop_assert!(!md.contains('\n'));
            prop_assert!(md.match_indices('|').all(|(i, _)| md[..i].ends_with('\\')));
            prop_assert!(!escape::md_code(text).contains('\n'));
            let _ = lifeboat::catalog::time_in_name(text);
        }
    }

    #[test]
    fn times_and_durations_parse_or_fail_without_panicking(
        s in any::<String>(),
        digits in "[0-9]{1,30}",
        unit in "[smhdw]",
        sign in "(-|)",
        ago in "( ago|)",
    ) {
        let typed = format!("{sign}{digits}{unit}{ago}");
        for text in [s.as_str(), typed.as_str(), digits.as_str()] {
            if let Ok(d) = lifeboat::when::parse_duration(text) {
                prop_assert!(d >= chrono::Duration::zero());
                prop_assert!(d <= lifeboat::when::MAX_DURATION);
            }
            if let Ok(t) = lifeboat::when::parse_point(text, now()) {
                let _ = lifeboat::when::short_age(now() - t);
            }
        }
        let _ = lifeboat::when::seconds(digits.parse().unwrap_or(i64::MAX));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_catalog_groups_any_keys_without_losing_one_or_panicking(
        keys in prop::collection::btree_set(key(), 0..24),
        manifests in any::<bool>(),
    ) {
        let objects: BTreeMap<String, Bytes> = keys
            .iter()
            .map(|k| {
                let body = if manifests && k.ends_with("manifest.json") {
                    Bytes::from_static(include_bytes!("manifest_escape.json"))
                } else {
                    Bytes::from_static(b"SELECT 1;\n")
                };
                (k.clone(), body)
            })
            .collect();
        let store = Memory { objects };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (mut seen, mut dirs) = (Vec::new(), Vec::new());
        rt.block_on(async {
            let mut scanner = Scanner::new(&store, None);
            while let Some(page) = scanner.next_page().await.unwrap() {
                for b in &page.backups {
                    dirs.push(b.dir());
                    for o in &b.objects {
                        assert!(o.key.starts_with(&format!("{}/", b.dir())), "{} in {}", o.key, b.dir());
                        seen.push(o.key.clone());
                    }
                }
                seen.extend(page.foreign.iter().map(|f| f.meta.key.clone()));
                for u in &page.unusable {
                    assert!(ObjectKey::new(u.key.as_str()).is_err(), "{:?} is usable", u.key);
                    seen.push(u.key.clone());
                }
                let _ = page.rows();
            }
        });
        // Every key is somewhere, exactly once, but lifeboat's own (`_lifeboat/`, which
        // the listing skips); each backup directory is resolved once.
        let mut expected: Vec<String> = keys
            .iter()
            .filter(|k| !k.starts_with("_lifeboat/"))
            .cloned()
            .collect();
        expected.sort();
        seen.sort();
        prop_assert_eq!(seen, expected);
        let n = dirs.len();
        dirs.sort();
        dirs.dedup();
        prop_assert_eq!(dirs.len(), n);
    }
}

/// A store that serves its listing three keys a page, with continuation tokens that sort
/// after every key, as servers that hand out opaque tokens (base64, or random) may.
#[derive(Debug)]
struct OpaquePages {
    inner: Arc<dyn ObjectStore>,
}

#[async_trait]
impl ObjectStore for OpaquePages {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let all = self.inner.list_all(prefix).await?;
        let start: usize = token.map_or(0, |t| t.trim_start_matches('~').parse().unwrap());
        let end = (start + 3).min(all.len());
        Ok(ListPage {
            objects: all[start..end].to_vec(),
            next: (end < all.len()).then(|| format!("~{end}")),
            ..ListPage::default()
        })
    }
    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        self.inner.get(key).await
    }
    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        self.inner.get_prefix(key, len).await
    }
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> StoreResult<PutOutcome> {
        self.inner.put(key, body).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        self.inner.delete_many(keys).await
    }
    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        self.inner.list_incomplete(prefix).await
    }
    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        self.inner.abort_incomplete(upload).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_split_across_listing_pages_is_whole_whatever_the_tokens_look_like() {
    let world = World::local();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, m) = world
            .lb
            .backup(
                "app",
                lifeboat::manifest::Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await;
        ids.push(m.unwrap().id.to_string());
    }
    let config = common::config_for(
        world.dir.path(),
        "[storage]\ntype = \"local\"\npath = \"bucket\"",
    );
    let state = lifeboat::state::State::open(&world.dir.path().join("fresh.sqlite")).unwrap();
    let store = Arc::new(OpaquePages {
        inner: Arc::new(LocalStore::open(world.dir.path().join("bucket")).unwrap()),
    });
    let lb = Lifeboat::with_parts(config, store, state, lifeboat::clock::Clock::system());
    let catalog = lb.catalog().await.unwrap();
    // Two objects a backup, three keys a page: every other backup straddles a page.
    let mut complete: Vec<String> = catalog.complete().map(|b| b.id.to_string()).collect();
    complete.sort();
    ids.sort();
    assert_eq!(complete, ids, "{:#?}", catalog.rows());
    assert_eq!(catalog.backups.len(), 3, "{:#?}", catalog.rows());
}

/// A backup id copied under another source names neither: the engineer names the source.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_two_sources_hold_is_refused_until_the_source_is_named() {
    let world = World::local();
    let (_, m) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let id = m.unwrap().id.to_string();
    let real = world.path(&format!("bucket/app/{id}"));
    let planted = world.path(&format!("bucket/aaa/{id}"));
    std::fs::create_dir_all(&planted).unwrap();
    for f in std::fs::read_dir(&real).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), planted.join(f.file_name())).unwrap();
    }
    let catalog = world.lb.catalog().await.unwrap();
    let err = catalog.lookup(&id).unwrap_err().to_string();
    assert!(err.contains("held by sources aaa, app"), "{err}");
    assert!(
        world
            .lb
            .select(&catalog, &Selector::Id(id.clone()))
            .is_err()
    );
    assert!(world.lb.pin(&catalog, &id).await.is_err());
    assert_eq!(catalog.lookup(&format!("app/{id}")).unwrap().source, "app");
    let pinned = world.lb.pin(&catalog, &format!("app/{id}")).await.unwrap();
    assert_eq!(pinned.source, "app");
}
