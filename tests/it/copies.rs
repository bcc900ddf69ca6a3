//! 3-2-1: two independent S3 servers and a local directory, copies between them, restores
//! that fall back to a good copy, retention per store, and `check` naming the store behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use lifeboat::Lifeboat;
use lifeboat::catalog::Catalog;
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::copy::CopyOptions;
use lifeboat::manifest::Trigger;
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions};
use lifeboat::progress::{NoProgress, Progress};
use lifeboat::state::State;
use lifeboat::storage::{LocalStore, S3Store};
use lifeboat::stores::{CopyState, NamedStore};
use lifeboat::{Error, Selector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::cli::{self, run, with_config};
use crate::common::{self, ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// A TCP proxy in front of an S3 server that can be taken down, at once or after a number of
/// bytes sent towards the server: a store that fails in the middle of a copy.
struct Proxy {
    endpoint: String,
    up: Arc<AtomicBool>,
    /// Bytes still allowed towards the server; `u64::MAX` is no limit.
    budget: Arc<AtomicU64>,
    /// Cancelled when the proxy goes down: every open connection is cut.
    cut: Arc<Mutex<CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.lock().unwrap().cancel();
    }
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let (u, b, c) = (up.clone(), budget.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let token = c.lock().unwrap().clone();
                let (u, b, c) = (u.clone(), b.clone(), c.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let upward = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n as u64,
                            };
                            let left = b.load(Ordering::SeqCst);
                            if n > left {
                                // Out of budget: the store goes down, mid-request.
                                u.store(false, Ordering::SeqCst);
                                c.lock().unwrap().cancel();
                                return;
                            }
                            if left != u64::MAX {
                                b.fetch_sub(n, Ordering::SeqCst);
                            }
                            if sw.write_all(&buf[..n as usize]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downward = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = upward => {}
                        _ = downward => {}
                    }
                });
            }
        });
        Proxy {
            endpoint,
            up,
            budget,
            cut,
            task,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.lock().unwrap().cancel();
    }

    /// Up again, with no limit or with `budget` bytes towards the server before it fails.
    fn up(&self, budget: Option<u64>) {
        self.budget
            .store(budget.unwrap_or(u64::MAX), Ordering::SeqCst);
        *self.cut.lock().unwrap() = CancellationToken::new();
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Two S3 servers, each behind a proxy, and a directory: primary, offsite, archive.
struct World {
    dir: tempfile::TempDir,
    a: S3Server,
    b: S3Server,
    pa: Proxy,
    pb: Proxy,
    lb: Lifeboat,
}

const T0: &str = "2026-11-01T02:00:00Z";

fn t0() -> DateTime<Utc> {
    T0.parse().unwrap()
}

impl World {
    /// `stores` is the source's `stores = [...]` line (or empty), `retention` the per-store
    /// retention tables, keyed by store.
    async fn new(stores: &str, retention: [&str; 3]) -> World {
        let dir = tempfile::tempdir().unwrap();
        common::make_sample_db(&dir.path().join("app.db"), 1);
        // Incompressible rows, so a backup spans many proxy reads and the budget bites.
        common::add_random_blobs(&dir.path().join("app.db"), 2);
        let (a, b) = (S3Server::start().await, S3Server::start().await);
        let (pa, pb) = (
            Proxy::start(&a.endpoint).await,
            Proxy::start(&b.endpoint).await,
        );
        let s3 = |name: &str, endpoint: &str, retention: &str| {
            format!(
                "[[store]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"lb\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\nregion = \"us-east-1\"\npart_size_mib = 5\nmax_attempts = 2\n{retention}\n"
            )
        };
        let text = format!(
            "{}{}[[store]]\nname = \"archive\"\ntype = \"local\"\npath = \"archive\"\n{}\n\
             [state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n\
             [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n{stores}\n",
            s3("primary", &pa.endpoint, retention[0]),
            s3("offsite", &pb.endpoint, retention[1]),
            retention[2],
        );
        let path = dir.path().join("lifeboat.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::parse(&text, &path).unwrap();
        let s3_store = |endpoint: &str| {
            let mut o = a.options("lb");
            o.endpoint = Some(endpoint.to_owned());
            o
        };
        let stores = vec![
            NamedStore::new(
                "primary",
                Arc::new(S3Store::connect(s3_store(&pa.endpoint)).await),
            ),
            NamedStore::new(
                "offsite",
                Arc::new(S3Store::connect(s3_store(&pb.endpoint)).await),
            ),
            NamedStore::new(
                "archive",
                Arc::new(LocalStore::open(dir.path().join("archive")).unwrap()),
            ),
        ];
        let state = State::open(&config.state_path()).unwrap();
        let lb = Lifeboat::with_stores(config, stores, state, Clock::starting_at(t0()));
        World {
            dir,
            a,
            b,
            pa,
            pb,
            lb,
        }
    }

    /// `n` backups one day apart; ids oldest first.
    async fn backups(&self, n: i64) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let (job, m) = self
                .lb
                .backup(
                    "app",
                    Trigger::Manual,
                    Arc::new(NoProgress),
                    CancellationToken::new(),
                )
                .await;
            ids.push(
                m.unwrap_or_else(|e| panic!("{e}: {:?}", job.log))
                    .id
                    .to_string(),
            );
            self.lb
                .clock()
                .set(self.lb.clock().now() + Duration::days(1));
        }
        ids
    }

    async fn catalog(&self) -> Catalog {
        self.lb.catalog().await.unwrap()
    }

    /// Where each store keeps a backup's data file on disk.
    fn data_path(&self, store: &str, id: &str) -> PathBuf {
        let rel = format!("app/{id}/data.sqlite.zst");
        match store {
            "primary" => self.a.object_path(&format!("lb/{rel}")),
            "offsite" => self.b.object_path(&format!("lb/{rel}")),
            _ => self.dir.path().join("archive").join(rel),
        }
    }
}

/// A backup id, its copies label, and each store's state in the catalog's store order.
type Line = (String, String, Vec<(String, CopyState)>);

fn states(catalog: &Catalog) -> Vec<Line> {
    catalog
        .complete()
        .map(|b| {
            let c = b.copies.as_ref().expect("every store was read");
            (
                b.id.to_string(),
                c.label(),
                c.stores
                    .iter()
                    .map(|s| (s.store.clone(), s.state))
                    .collect(),
            )
        })
        .collect()
}

fn label_of(catalog: &Catalog, id: &str) -> String {
    catalog.find(id).unwrap().copies.as_ref().unwrap().label()
}

fn sha(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Records the one-line notes a job gives its watcher.
#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Progress for Notes {
    fn note(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

const NO_RETENTION: [&str; 3] = ["", "", ""];

#[tokio::test(flavor = "multi_thread")]
async fn every_backup_is_copied_to_every_store_and_verified_there() {
    let w = World::new("", NO_RETENTION).await;
    let ids = w.backups(2).await;
    let catalog = w.catalog().await;
    let all_verified = vec![
        ("primary".to_owned(), CopyState::Verified),
        ("offsite".to_owned(), CopyState::Verified),
        ("archive".to_owned(), CopyState::Verified),
    ];
    assert_eq!(
        states(&catalog),
        ids.iter()
            .rev()
            .map(|id| (id.clone(), "3/3".to_owned(), all_verified.clone()))
            .collect::<Vec<_>>()
    );
    // The same bytes in all three, and every store can prove it by itself.
    for id in &ids {
        let want = sha(&w.data_path("primary", id));
        for store in ["offsite", "archive"] {
            assert_eq!(sha(&w.data_path(store, id)), want, "{store} {id}");
        }
        for store in w.lb.stores() {
            let record = lifeboat::stores::CheckRecord::key("app", id).unwrap();
            let bytes = store.store.head(&record).await.unwrap();
            assert!(
                bytes.is_some(),
                "{} has no check record for {id}",
                store.name
            );
        }
    }
    // A copy job per backup, after its backup job.
    let copies: Vec<_> =
        w.lb.jobs()
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == lifeboat::jobs::JobKind::Copy)
            .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|j| j.error.is_none()), "{copies:?}");
    // Nothing left to do.
    let plan =
        w.lb.copy_plan(&catalog, &CopyOptions::default())
            .await
            .unwrap();
    assert!(plan.stores.iter().all(|s| s.backups.is_empty()), "{plan:?}");

    // `verify` reads every copy; a damaged archive copy fails it, by name, and is recorded.
    let path = w.data_path("archive", &ids[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let entry = catalog.find(&ids[1]).unwrap();
    let (job, result) =
        w.lb.verify(entry, Arc::new(NoProgress), CancellationToken::new())
            .await;
    let err = result.unwrap_err().to_string();
    assert!(err.starts_with("store archive: checksum mismatch"), "{err}");
    let logged: Vec<&str> = job.log.iter().map(|l| l.message.as_str()).collect();
    assert!(
        logged
            .iter()
            .any(|l| l.starts_with("store primary:") && l.contains("matches")),
        "{logged:?}"
    );
    let catalog = w.catalog().await;
    assert_eq!(label_of(&catalog, &ids[1]), "2/3");
    // `copy` replaces the bad copy, manifest first, and proves the new one.
    let (_, report) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let report = report.unwrap();
    assert_eq!(report.copied, [format!("archive: app/{}", ids[1])]);
    assert_eq!(label_of(&w.catalog().await, &ids[1]), "3/3");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_goes_down_mid_copy_resumes_without_sending_again() {
    let w = World::new("", NO_RETENTION).await;
    // The offsite store is down while three backups are taken: each copy there fails.
    w.pb.down();
    let notes = Arc::new(Notes::default());
    for _ in 0..3 {
        let (_, m) =
            w.lb.backup(
                "app",
                Trigger::Manual,
                notes.clone(),
                CancellationToken::new(),
            )
            .await;
        m.unwrap();
        w.lb.clock().set(w.lb.clock().now() + Duration::days(1));
    }
    let noted = notes.0.lock().unwrap().clone();
    let (offsite, archive): (Vec<&String>, Vec<&String>) =
        noted.iter().partition(|n| n.contains("offsite"));
    assert_eq!(archive, ["copied to store archive and read back"; 3]);
    assert_eq!(offsite.len(), 3, "{noted:?}");
    assert!(
        offsite.iter().all(
            |n| n.starts_with("copy to store offsite failed: cannot reach ")
                && n.ends_with("`lifeboat copy` will try again")
        ),
        "{noted:?}"
    );
    // Back up, but only for one and a half backups' worth of bytes.
    w.pb.up(None);
    let catalog = w.catalog().await;
    let plan =
        w.lb.copy_plan(&catalog, &CopyOptions::default())
            .await
            .unwrap();
    let offsite = plan.stores.iter().find(|s| s.store == "offsite").unwrap();
    assert_eq!(offsite.backups.len(), 3, "{offsite:?}");
    let size = offsite.backups[0].bytes;
    w.pb.up(Some(size + size / 2));
    let (_, first) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let Err(Error::CopyFailed(first)) = first else {
        panic!("the copy should fail when the store goes down: {first:?}");
    };
    assert_eq!(first.copied.len(), 1, "{:?}", first.copied);
    assert!(
        first.failures.iter().all(|f| f.store == "offsite"),
        "{first:?}"
    );
    let done = first.copied[0]
        .trim_start_matches("offsite: app/")
        .to_owned();
    let done_path = w.data_path("offsite", &done);
    let before = std::fs::metadata(&done_path).unwrap().modified().unwrap();

    // Up for good: the next run copies what is missing and leaves the finished copy alone.
    w.pb.up(None);
    let (_, second) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let second = second.unwrap();
    assert_eq!(second.copied.len(), 2, "{:?}", second.copied);
    assert!(
        !second.copied.iter().any(|c| c.ends_with(&done)),
        "{done} was sent again: {:?}",
        second.copied
    );
    assert_eq!(
        std::fs::metadata(&done_path).unwrap().modified().unwrap(),
        before,
        "the complete copy was rewritten"
    );
    assert!(second.records > 0, "job records follow the backups");
    let catalog = w.catalog().await;
    assert!(
        states(&catalog).iter().all(|(_, label, _)| label == "3/3"),
        "{:?}",
        states(&catalog)
    );

    // A copy that stopped between its data and its manifest: the data is read back and
    // kept, only the manifest travels.
    let manifest = w.b.object_path(&format!("lb/app/{done}/manifest.json"));
    std::fs::remove_file(&manifest).unwrap();
    let catalog = w.catalog().await;
    let plan =
        w.lb.copy_plan(&catalog, &CopyOptions::default())
            .await
            .unwrap();
    let offsite = plan.stores.iter().find(|s| s.store == "offsite").unwrap();
    assert_eq!(offsite.backups.len(), 1);
    assert_eq!(
        offsite.backups[0].action,
        lifeboat::copy::CopyAction::Resume
    );
    let (_, third) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let third = third.unwrap();
    assert_eq!(third.copied, [format!("offsite: app/{done}")]);
    assert!(
        third.bytes < size / 10,
        "the data was sent again: {} bytes",
        third.bytes
    );
    assert_eq!(
        std::fs::metadata(&done_path).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(label_of(&w.catalog().await, &done), "3/3");
}

fn restore_opts(w: &World, target: &str) -> RestoreOptions {
    RestoreOptions {
        target: w.dir.path().join(target).into(),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: true,
        drill: false,
        privileged: false,
        staging: w.lb.staging(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_skips_a_corrupted_or_unreachable_copy_and_says_so() {
    let w = World::new("", NO_RETENTION).await;
    let ids = w.backups(1).await;
    let id = &ids[0];
    // The primary's copy rots: same size, one byte flipped.
    let path = w.data_path("primary", id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let catalog = w.catalog().await;
    // The wizard's check before a restore is satisfied by one good copy, and says which was
    // not; `verify` (every copy) fails on the same backup.
    let entry = catalog.find(id).unwrap();
    let notes = Arc::new(Notes::default());
    let (_, checked) =
        w.lb.verify_for_restore(entry, notes.clone(), CancellationToken::new())
            .await;
    checked.unwrap();
    let noted = notes.0.lock().unwrap().clone();
    assert!(
        noted.len() == 1
            && noted[0].starts_with("store primary: checksum mismatch")
            && noted[0].ends_with("; checking the next store's copy"),
        "{noted:?}"
    );
    let (_, all) =
        w.lb.verify(entry, Arc::new(NoProgress), CancellationToken::new())
            .await;
    assert!(
        all.unwrap_err()
            .to_string()
            .starts_with("store primary: checksum mismatch")
    );

    let from = w.lb.select(&catalog, &Selector::Id(id.clone())).unwrap();
    let notes = Arc::new(Notes::default());
    let (job, report) =
        w.lb.restore(
            from,
            restore_opts(&w, "one.db"),
            notes.clone(),
            CancellationToken::new(),
        )
        .await;
    let report = report.unwrap();
    assert!(report.ok());
    assert_eq!(
        common::count(&w.dir.path().join("one.db"), "orders"),
        common::count(&w.dir.path().join("app.db"), "orders")
    );
    let noted = notes.0.lock().unwrap().clone();
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert!(
        noted[0].starts_with("store primary: checksum mismatch in app/")
            && noted[0].ends_with("; restoring from store offsite instead"),
        "{}",
        noted[0]
    );
    assert!(job.log.iter().any(|l| l.message == noted[0]));
    // The bad copy is on record: the catalog counts it out, `copy` replaces it.
    let catalog = w.catalog().await;
    let line = |c: &Catalog| c.find(id).unwrap().copies.as_ref().unwrap().stores[0].state;
    assert_eq!(line(&catalog), CopyState::Failed);
    assert_eq!(label_of(&catalog, id), "2/3");
    let (_, report) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(report.unwrap().copied, [format!("primary: app/{id}")]);
    assert_eq!(line(&w.catalog().await), CopyState::Verified);

    // The primary store goes down after the catalog was read: the restore moves on.
    let catalog = w.catalog().await;
    w.pa.down();
    let from = w.lb.select(&catalog, &Selector::Id(id.clone())).unwrap();
    let notes = Arc::new(Notes::default());
    let (_, report) =
        w.lb.restore(
            from,
            restore_opts(&w, "two.db"),
            notes.clone(),
            CancellationToken::new(),
        )
        .await;
    assert!(report.unwrap().ok());
    let noted = notes.0.lock().unwrap().clone();
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert!(
        noted[0].starts_with("store primary: ")
            && noted[0].ends_with("; restoring from store offsite instead"),
        "{}",
        noted[0]
    );
    // With the primary down, the catalog still lists the backup from the other stores.
    let catalog = w.catalog().await;
    let b = catalog.find(id).expect("listed from the other stores");
    let c = b.copies.as_ref().unwrap();
    assert_eq!(c.stores[0].state, CopyState::Unknown);
    assert_eq!(c.label(), "2/3");
    assert!(matches!(
        w.lb.select(&catalog, &Selector::Latest { source: None }),
        Ok(RestoreFrom::Backup(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_per_store_never_removes_the_last_verified_copy() {
    // The source uses primary and offsite; primary keeps 2, offsite keeps 3.
    let w = World::new(
        "stores = [\"primary\", \"offsite\"]",
        [
            "[store.retention]\nkeep_last = 2",
            "[store.retention]\nkeep_last = 3",
            "",
        ],
    )
    .await;
    // Offsite is down all week: five backups exist only in the primary.
    w.pb.down();
    let ids = w.backups(5).await;
    w.pb.up(None);
    let prune_plan = |w: &World| {
        let lb = w.lb.clone();
        async move {
            lb.prune_plan(&lifeboat::prune::PruneOptions::default())
                .await
                .unwrap()
        }
    };
    let decisions = |plan: &lifeboat::prune::PrunePlan, store: usize| {
        let sources = if store == 0 {
            &plan.sources
        } else {
            &plan.stores[store - 1].sources
        };
        sources
            .iter()
            .flat_map(|s| &s.decisions)
            .map(|d| {
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                (d.backup.id.clone(), d.keep, reasons.join(", "))
            })
            .collect::<Vec<_>>()
    };
    let plan = prune_plan(&w).await;
    // The primary's policy would drop the three oldest, but the offsite store keeps the
    // newest three of what it should hold and has none of them yet: those stay.
    let primary = decisions(&plan, 0);
    let last = |i: usize| (ids[i].clone(), true, "last copy".to_owned());
    assert_eq!(
        primary,
        [
            // Never read back yet (its copy failed), so not verified.
            (ids[4].clone(), true, "last, newest complete".to_owned()),
            (ids[3].clone(), true, "last".to_owned()),
            last(2),
            // Not among the offsite's newest three: every store is done with them.
            (ids[1].clone(), false, String::new()),
            (ids[0].clone(), false, String::new()),
        ]
    );
    // The archive is not a store of this source and holds nothing.
    assert!(decisions(&plan, 2).is_empty());

    // Offsite catches up with what its retention keeps, and only that.
    let (_, report) =
        w.lb.copy(
            &CopyOptions::default(),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let mut copied = report.unwrap().copied;
    copied.sort();
    assert_eq!(
        copied,
        [2, 3, 4].map(|i| format!("offsite: app/{}", ids[i]))
    );
    // Now the primary may let go of the third too; the offsite keeps its three.
    let (_, report) =
        w.lb.prune(
            &lifeboat::prune::PruneOptions::default(),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(report.unwrap().deleted, 3);
    let catalog = w.catalog().await;
    let left: Vec<(String, String)> = states(&catalog)
        .into_iter()
        .map(|(id, _, stores)| {
            let held: Vec<String> = stores
                .into_iter()
                .filter(|(_, s)| *s == CopyState::Verified)
                .map(|(s, _)| s)
                .collect();
            (id, held.join("+"))
        })
        .collect();
    assert_eq!(
        left,
        [
            (ids[4].clone(), "primary+offsite".to_owned()),
            (ids[3].clone(), "primary+offsite".to_owned()),
            (ids[2].clone(), "offsite".to_owned()),
        ]
    );
    // With the offsite store unreachable, nothing that may be its last copy goes anywhere.
    w.lb.clock().set(w.lb.clock().now() + Duration::days(3));
    let more = w.backups(1).await;
    w.pb.down();
    let plan = prune_plan(&w).await;
    assert!(plan.stores[0].error.is_some());
    let primary = decisions(&plan, 0);
    assert!(
        primary.iter().all(|(_, keep, _)| *keep),
        "pruned while offsite is unreachable: {primary:?}"
    );
    assert_eq!(primary[0].0, more[0]);
}

/// The binary end to end: S3 credentials from named variables, two stores on one endpoint
/// (a server-side copy), `list` and `show` with copies, `copy --dry-run`, `check` CRITICAL
/// naming the store that is behind.
#[tokio::test(flavor = "multi_thread")]
async fn check_goes_critical_naming_the_store_behind() {
    let home = tempfile::tempdir().unwrap();
    let a = S3Server::start().await;
    common::make_sample_db(&home.path().join("app.db"), 1);
    common::add_random_blobs(&home.path().join("app.db"), 1);
    let s3 = |name: &str, prefix: &str| {
        format!(
            "[[store]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nforce_path_style = true\nregion = \"us-east-1\"\nmax_attempts = 2\naccess_key_id_env = \"LB_TEST_KEY\"\nsecret_access_key_env = \"LB_TEST_SECRET\"\n",
            a.endpoint
        )
    };
    let config = home.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}[[store]]\nname = \"archive\"\ntype = \"local\"\npath = \"archive\"\n\
             [state]\npath = \"state.db\"\n[check]\nmin_copies = 3\ncopies_grace = \"1h\"\n\
             [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
            s3("primary", "hot"),
            s3("offsite", "cold"),
        ),
    )
    .unwrap();
    let lb = |now: &str, args: &[&str]| {
        let mut c = with_config(home.path(), &config, args);
        c.env("LB_TEST_KEY", ACCESS_KEY)
            .env("LB_TEST_SECRET", SECRET_KEY)
            .env("LIFEBOAT_NOW", now);
        c
    };
    let out = run(lb("2026-11-23T02:00:00Z", &["backup", "app"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("copied to store offsite and read back")
            && out.stderr.contains("copied to store archive and read back"),
        "{}",
        out.stderr
    );
    let list = cli::json(&run(lb("2026-11-23T04:00:00Z", &["list", "--json"])).await);
    let backup = &list["backups"][0];
    let id = backup["id"].as_str().unwrap().to_owned();
    let states: Vec<&str> = backup["copies"]["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["verified", "verified", "verified"]);
    let out = run(lb("2026-11-23T04:00:00Z", &["list"])).await;
    assert!(out.stdout.contains("COPIES"), "{}", out.stdout);
    let row = out.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(" 3/3 "), "{row}");
    let out = run(lb("2026-11-23T04:00:00Z", &["check"])).await;
    assert_eq!(out.code, 0, "{}", out.stdout);

    // The offsite copy disappears (a lifecycle rule, a person with a console).
    let gone = a.object_path(&format!("cold/app/{id}"));
    std::fs::remove_dir_all(&gone).unwrap();
    let out = run(lb("2026-11-23T04:00:00Z", &["check"])).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.starts_with("LIFEBOAT CRITICAL - app: backup ")
            && out
                .stdout
                .contains("has 2 of 3 verified copies; behind: offsite"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("'store_offsite_behind'=1;"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("'store_archive_behind'=0;"),
        "{}",
        out.stdout
    );
    let out = run(lb("2026-11-23T04:00:00Z", &["show", &id])).await;
    assert!(
        out.stdout.contains("copies    2/3: primary verified")
            && out.stdout.contains("offsite missing (behind)"),
        "{}",
        out.stdout
    );

    // The dry run says what and how much; the copy (server-side: one endpoint) repairs it.
    let out = run(lb("2026-11-23T04:00:00Z", &["copy", "--dry-run"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let data = backup["manifest"]["data"]["stored_bytes"].as_u64().unwrap();
    assert!(
        out.stdout
            .contains("dry run: nothing copied; would copy 1 backup(s)"),
        "{}",
        out.stdout
    );
    let copy_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("copy ") && l.contains(&id))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(copy_line.contains("primary"), "{copy_line}");
    let report = cli::json(&run(lb("2026-11-23T04:00:00Z", &["copy", "--json"])).await);
    assert_eq!(report["report"]["copied"][0], format!("offsite: app/{id}"));
    // Only the manifest and records travelled through lifeboat; the data was copied by the
    // server.
    assert!(
        report["report"]["bytes"].as_u64().unwrap() < data,
        "{report}"
    );
    let out = run(lb("2026-11-23T04:00:00Z", &["check"])).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_credentials_are_missing_is_unreachable_not_fatal() {
    let home = tempfile::tempdir().unwrap();
    let a = S3Server::start().await;
    common::make_sample_db(&home.path().join("app.db"), 1);
    let config = home.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"local\"\npath = \"bucket\"\n\
             [[store]]\nname = \"offsite\"\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nforce_path_style = true\nmax_attempts = 1\naccess_key_id_env = \"LB_NOT_SET_ID\"\nsecret_access_key_env = \"LB_NOT_SET_SECRET\"\n\
             [state]\npath = \"state.db\"\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
            a.endpoint
        ),
    )
    .unwrap();
    let out = run(with_config(home.path(), &config, &["backup", "app"])).await;
    assert_eq!(out.code, 0, "the backup itself succeeds: {}", out.stderr);
    assert!(
        out.stderr
            .contains("app: copy to store offsite failed: no usable credentials for store offsite: the environment variable LB_NOT_SET_ID (access_key_id_env) is not set; `lifeboat copy` will try again"),
        "{}",
        out.stderr
    );
    let out = run(with_config(home.path(), &config, &["list"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "store offsite: s3://{BUCKET} ({})  UNREACHABLE: no usable credentials for store offsite",
            a.endpoint
        )),
        "{}",
        out.stdout
    );
    // Secrets never: the variable's name is shown, never a value.
    assert!(!out.stdout.contains(SECRET_KEY));
}
