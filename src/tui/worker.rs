//! Runs the console's requests on tokio tasks and reports back as messages. Nothing here
//! touches the screen; the event loop only ever receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat::catalog::Catalog;
use lifeboat::drill::DrillOptions;
use lifeboat::engine::postgres::physical::scratch::{RecoveryTarget, ScratchCluster};
use lifeboat::jobs::{JobKind, JobStatus};
use lifeboat::manifest::EngineKind;
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions};
use lifeboat::pitr::{PitrReport, PitrRestoreOptions};
use lifeboat::progress::{Phase, Progress};
use lifeboat::{Error, Lifeboat, Selector};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::msg::{Msg, Outcome, Request, RestoreRequest, TaskId};

pub struct Worker {
    lb: Lifeboat,
    tx: UnboundedSender<Msg>,
    running: HashMap<TaskId, CancellationToken>,
    /// The listing under way: a newer refresh replaces it rather than running beside it.
    scan: Option<tokio::task::AbortHandle>,
    /// The newest whole catalog, so a restore or check does not list the bucket again.
    catalog: SharedCatalog,
}

type SharedCatalog = Arc<Mutex<Option<Arc<Catalog>>>>;

impl Worker {
    pub fn new(lb: Lifeboat, tx: UnboundedSender<Msg>) -> Self {
        Worker {
            lb,
            tx,
            running: HashMap::new(),
            scan: None,
            catalog: SharedCatalog::default(),
        }
    }

    pub fn sender(&self) -> UnboundedSender<Msg> {
        self.tx.clone()
    }

    pub fn handle(&mut self, req: Request) {
        let lb = self.lb.clone();
        let tx = self.tx.clone();
        self.running.retain(|_, c| !c.is_cancelled());
        match req {
            Request::RefreshCatalog { generation } => {
                if let Some(previous) = self.scan.take() {
                    previous.abort();
                }
                let shared = self.catalog.clone();
                let handle = tokio::spawn(async move {
                    let pages = tx.clone();
                    let result = lb
                        .scan_catalog(|page| {
                            drop(pages.send(Msg::CatalogPage {
                                generation,
                                rows: page.rows(),
                                sources_complete: page.sources_complete.clone(),
                            }))
                        })
                        .await
                        .map(Arc::new);
                    if let Ok(catalog) = &result {
                        *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(catalog.clone());
                    }
                    let plan = match &result {
                        Ok(catalog) => Some(lb.plan_inputs(catalog, None).await),
                        Err(_) => None,
                    };
                    let _ = tx.send(Msg::CatalogDone {
                        generation,
                        result: result.map_err(|e| e.to_string()),
                    });
                    if let Some(plan) = plan {
                        let _ = tx.send(Msg::PlanInputs(
                            plan.map(Arc::new).map_err(|e| e.to_string()),
                        ));
                    }
                });
                self.scan = Some(handle.abort_handle());
            }
            Request::LoadJobs => {
                tokio::spawn(async move {
                    // The bucket's history first; the local one is still shown if it is unreachable.
                    let synced = lb.sync_jobs().await;
                    let jobs = lb.jobs().map(Arc::new).map_err(|e| e.to_string());
                    let _ = tx.send(Msg::Jobs(jobs));
                    match synced {
                        Err(e) => {
                            let _ = tx.send(Msg::Notice(Err(format!(
                                "job history from the bucket: {e}"
                            ))));
                        }
                        // Said once: the verdict is cached and the records not read again.
                        Ok(s) if !s.unusable.is_empty() => {
                            let _ = tx.send(Msg::Notice(Ok(format!(
                                "skipped {} unusable job record(s) in the bucket, e.g. {}: {}",
                                s.unusable.len(),
                                s.unusable[0].key,
                                s.unusable[0].reason
                            ))));
                        }
                        Ok(_) => {}
                    }
                });
            }
            Request::Backup { task, source } => {
                let cancel = self.start(task);
                tokio::spawn(async move {
                    let progress = ChannelProgress::new(task, tx.clone());
                    let (record, result) = match lb.lock_source(&source) {
                        Ok(_lock) => {
                            lb.backup(
                                &source,
                                lifeboat::manifest::Trigger::Manual,
                                progress,
                                cancel,
                            )
                            .await
                        }
                        Err(e) => (placeholder(&lb, JobKind::Backup), Err(e)),
                    };
                    let outcome = Outcome::Backup(result.map(Box::new).map_err(|e| e.to_string()));
                    let _ = tx.send(Msg::Finished {
                        task,
                        kind: JobKind::Backup,
                        record: Box::new(record),
                        outcome,
                    });
                });
            }
            Request::Verify { task, id } => {
                let cancel = self.start(task);
                let shared = self.catalog.clone();
                tokio::spawn(async move {
                    let progress = ChannelProgress::new(task, tx.clone());
                    let (record, result) = match catalog_with(&lb, &shared, &id).await {
                        Ok(catalog) => match catalog.find(&id) {
                            Some(entry) => lb.verify(entry, progress, cancel).await,
                            None => (
                                placeholder(&lb, JobKind::Verify),
                                Err(Error::NoBackup(id.clone())),
                            ),
                        },
                        Err(e) => (placeholder(&lb, JobKind::Verify), Err(e)),
                    };
                    let outcome = Outcome::Verify(result.map_err(|e| e.to_string()));
                    let _ = tx.send(Msg::Finished {
                        task,
                        kind: JobKind::Verify,
                        record: Box::new(record),
                        outcome,
                    });
                });
            }
            Request::Preflight { id } => {
                let shared = self.catalog.clone();
                tokio::spawn(async move {
                    let result = match catalog_with(&lb, &shared, &id).await {
                        Ok(catalog) => match catalog.find(&id) {
                            Some(entry) => lb.preflight(entry).await,
                            None => Err(Error::NoBackup(id.clone())),
                        },
                        Err(e) => Err(e),
                    };
                    let _ = tx.send(Msg::Preflight {
                        id,
                        result: result.map_err(|e| e.to_string()),
                    });
                });
            }
            Request::Restore(r) if r.drill => {
                let cancel = self.start(r.task);
                tokio::spawn(async move { drill(lb, tx, r, cancel).await });
            }
            Request::Restore(r) => {
                let cancel = self.start(r.task);
                let shared = self.catalog.clone();
                tokio::spawn(async move { restore(lb, tx, r, shared, cancel).await });
            }
            Request::Prune { task, source, only } => {
                let cancel = self.start(task);
                tokio::spawn(async move {
                    let opts = lifeboat::prune::PruneOptions {
                        source: Some(source),
                        only: Some(only),
                        ..Default::default()
                    };
                    let (record, result) = lb.prune(&opts, cancel).await;
                    let outcome = Outcome::Prune(
                        result
                            .map(|r| (r.deleted, r.freed_bytes))
                            .map_err(|e| e.to_string()),
                    );
                    let _ = tx.send(Msg::Finished {
                        task,
                        kind: JobKind::Prune,
                        record: Box::new(record),
                        outcome,
                    });
                });
            }
            Request::Cancel { task } => {
                if let Some(c) = self.running.get(&task) {
                    c.cancel();
                }
            }
            Request::DropScratch { target, created } => {
                tokio::spawn(async move {
                    let result = lb.drop_restored(&target, created).await;
                    let _ = tx.send(Msg::Notice(
                        result
                            .map(|()| format!("dropped {target}"))
                            .map_err(|e| e.to_string()),
                    ));
                });
            }
            Request::Promote {
                task,
                copy,
                source,
                confirm,
            } => {
                let cancel = self.start(task);
                tokio::spawn(async move {
                    let (record, result) = lb.promote(&copy, Some(&source), &confirm, cancel).await;
                    let _ = tx.send(Msg::Finished {
                        task,
                        kind: JobKind::Promote,
                        record: Box::new(record),
                        outcome: Outcome::Promote(result.map(Box::new).map_err(|e| e.to_string())),
                    });
                });
            }
            Request::LoadPitr { source } => {
                tokio::spawn(async move {
                    let result = lb.pitr_status(&source).await;
                    let _ = tx.send(Msg::Pitr {
                        source,
                        result: result.map(Arc::new).map_err(|e| e.to_string()),
                    });
                });
            }
            Request::PitrRestore {
                task,
                source,
                at,
                base,
                drill,
            } => {
                let cancel = self.start(task);
                tokio::spawn(async move {
                    let result = pitr_restore(&lb, &tx, &source, at, &base, drill, &cancel).await;
                    let kind = if drill {
                        JobKind::Drill
                    } else {
                        JobKind::Restore
                    };
                    // The job itself is recorded by `pitr_restore`; this says how it ended.
                    let mut record = placeholder(&lb, kind);
                    record.status = match &result {
                        Ok(_) => JobStatus::Succeeded,
                        Err(Error::Cancelled) => JobStatus::Cancelled,
                        Err(_) => JobStatus::Failed,
                    };
                    let _ = tx.send(Msg::Finished {
                        task,
                        kind,
                        record: Box::new(record),
                        outcome: Outcome::Pitr(result.map(Box::new).map_err(|e| e.to_string())),
                    });
                });
            }
            Request::DropPitrScratch { source, dir } => {
                let bin_dir = lb.config().source(&source).and_then(|s| s.bin_dir.clone());
                tokio::task::spawn_blocking(move || {
                    // Opened by its directory: only a cluster lifeboat named is ever removed.
                    let result = ScratchCluster::open(&dir, bin_dir.as_deref())
                        .and_then(|c| lifeboat::pitr::drop_scratch(&c));
                    let _ = tx.send(Msg::Notice(
                        result
                            .map(|()| format!("stopped and removed {}", dir.display()))
                            .map_err(|e| e.to_string()),
                    ));
                });
            }
            Request::Copy(text) => {
                // OSC 52: the terminal puts it on the clipboard, locally or over ssh.
                use std::io::Write;
                let encoded = base64(text.as_bytes());
                let mut out = std::io::stdout();
                let result = write!(out, "\x1b]52;c;{encoded}\x07").and_then(|()| out.flush());
                let _ = tx.send(Msg::Notice(
                    result
                        .map(|()| format!("copied {text}"))
                        .map_err(|e| e.to_string()),
                ));
            }
        }
    }

    fn start(&mut self, task: TaskId) -> CancellationToken {
        let token = CancellationToken::new();
        self.running.insert(task, token.clone());
        token
    }
}

/// The newest whole catalog if it knows `id` (a backup, a foreign object), else a fresh one:
/// one listing of the bucket serves every restore and check after it.
async fn catalog_with(
    lb: &Lifeboat,
    shared: &SharedCatalog,
    id: &str,
) -> lifeboat::Result<Arc<Catalog>> {
    let known = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match known {
        Some(c) if c.find(id).is_some() || c.find_foreign(id).is_some() => Ok(c),
        _ => {
            let fresh = Arc::new(lb.catalog().await?);
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
            Ok(fresh)
        }
    }
}

/// A drill as the CLI runs it: a scratch database lifeboat names, the report stored in the
/// bucket, and the scratch copy dropped.
async fn drill(
    lb: Lifeboat,
    tx: UnboundedSender<Msg>,
    r: RestoreRequest,
    cancel: CancellationToken,
) {
    let progress = ChannelProgress::new(r.task, tx.clone());
    let opts = DrillOptions {
        source: None,
        backup: Some(r.id.clone()),
        keep: false,
        save_report: true,
    };
    let (record, outcome) = match lb.drill(&opts, progress, cancel).await {
        Ok((record, Ok(d))) => {
            let mut saved = match &d.report_key {
                Some(key) => format!("report saved to {key}"),
                None => "report NOT saved".to_owned(),
            };
            saved.push_str(match &d.kept {
                Some(_) => "; the scratch copy is kept",
                None => "; the scratch copy was dropped",
            });
            (
                record,
                Outcome::Restore {
                    report: Ok(Box::new(d.restore)),
                    saved: Some(saved),
                },
            )
        }
        Ok((record, Err(e))) => (
            record,
            Outcome::Restore {
                report: Err(e.to_string()),
                saved: None,
            },
        ),
        Err(e) => (
            placeholder(&lb, JobKind::Drill),
            Outcome::Restore {
                report: Err(e.to_string()),
                saved: None,
            },
        ),
    };
    let _ = tx.send(Msg::Finished {
        task: r.task,
        kind: JobKind::Drill,
        record: Box::new(record),
        outcome,
    });
}

async fn restore(
    lb: Lifeboat,
    tx: UnboundedSender<Msg>,
    r: RestoreRequest,
    shared: SharedCatalog,
    cancel: CancellationToken,
) {
    let progress = ChannelProgress::new(r.task, tx.clone());
    let chosen = catalog_with(&lb, &shared, &r.id)
        .await
        .and_then(|catalog| lb.select(&catalog, &Selector::Id(r.id.clone())));
    let (record, result) = match chosen {
        Ok(from) => {
            let live = match (&from, r.compare_live) {
                (RestoreFrom::Backup(b), true) => lb.live_source(&b.source).ok(),
                _ => None,
            };
            let target = match (&from, r.target.to_str()) {
                (RestoreFrom::Backup(b), Some(name)) => {
                    let engine = b
                        .manifest
                        .as_ref()
                        .map_or(EngineKind::Sqlite, |m| m.source.engine);
                    lb.scratch_target(engine, &b.source, Some(name), b.id.as_str())
                }
                // A foreign object is restored into a SQLite file.
                _ => Ok(r.target.clone().into()),
            };
            let target = match target {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.send(Msg::Finished {
                        task: r.task,
                        kind: JobKind::Restore,
                        record: Box::new(placeholder(&lb, JobKind::Restore)),
                        outcome: Outcome::Restore {
                            report: Err(e.to_string()),
                            saved: None,
                        },
                    });
                    return;
                }
            };
            let opts = RestoreOptions {
                target,
                for_source: None,
                force_target: r.force_target,
                live,
                integrity_check: true,
                drill: false,
                staging: lb.staging(),
                privileged: false,
            };
            lb.restore(from, opts, progress, cancel).await
        }
        Err(e) => (placeholder(&lb, JobKind::Restore), Err(e)),
    };
    let report = match result {
        Ok(report) => Ok(report),
        Err(Error::RowCountMismatch(report)) => Ok(*report),
        Err(e) => Err(e.to_string()),
    };
    let outcome = Outcome::Restore {
        report: report.map(Box::new),
        saved: None,
    };
    let _ = tx.send(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: Box::new(record),
        outcome,
    });
}

/// A point-in-time restore as `lifeboat restore --time` runs it, its log on the status line.
async fn pitr_restore(
    lb: &Lifeboat,
    tx: &UnboundedSender<Msg>,
    source: &str,
    at: chrono::DateTime<chrono::Utc>,
    base: &str,
    drill: bool,
    cancel: &CancellationToken,
) -> lifeboat::Result<PitrReport> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        context: "cannot find the lifeboat executable for restore_command".into(),
        source,
    })?;
    let config = std::fs::canonicalize(&lb.config().path).map_err(|source| Error::Io {
        context: "cannot find the config file for restore_command".into(),
        source,
    })?;
    let opts = PitrRestoreOptions {
        target: RecoveryTarget::Time(at),
        pause: false,
        base: Some(base.parse().map_err(|e| Error::Invalid(format!("{e}")))?),
        wal_get: lifeboat::pitr::wal_get_command(&exe, &config, source)?,
        compare_live: false,
        amcheck: false,
        drop: drill,
        timeout: Duration::from_secs(6 * 3600),
    };
    let lines = tx.clone();
    let log = move |line: String| {
        let _ = lines.send(Msg::Notice(Ok(lifeboat::escape::term(&line).into_owned())));
    };
    lb.pitr_restore(source, &opts, &log, cancel).await
}

/// A record for a job that could not start (its error says why).
fn placeholder(lb: &Lifeboat, kind: JobKind) -> lifeboat::jobs::JobRecord {
    let job = lifeboat::jobs::Job::start(
        kind,
        None,
        lifeboat::manifest::Trigger::Manual,
        &lb.operator(),
        lb.clock(),
    );
    job.snapshot()
}

/// Sends progress to the console at most every 50 ms; the newest value wins, phase changes
/// always go through.
struct ChannelProgress {
    task: TaskId,
    tx: UnboundedSender<Msg>,
    state: Mutex<(Phase, Option<u64>, Instant)>,
}

impl ChannelProgress {
    fn new(task: TaskId, tx: UnboundedSender<Msg>) -> Arc<Self> {
        Arc::new(ChannelProgress {
            task,
            tx,
            state: Mutex::new((Phase::Snapshot, None, Instant::now())),
        })
    }
}

impl Progress for ChannelProgress {
    fn phase(&self, phase: Phase, total: Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = (phase, total, Instant::now());
        let _ = self.tx.send(Msg::Progress {
            task: self.task,
            phase,
            total,
            done: 0,
        });
    }

    fn advance(&self, done: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.2.elapsed() >= Duration::from_millis(50) {
            s.2 = Instant::now();
            let _ = self.tx.send(Msg::Progress {
                task: self.task,
                phase: s.0,
                total: s.1,
                done,
            });
        }
    }
    /// A restore falling back to another store, a copy that failed: the status line.
    fn note(&self, line: &str) {
        let _ = self.tx.send(Msg::Notice(Ok(line.to_owned())));
    }
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(
            super::base64(b"20261122T020000Z-7f3a"),
            "MjAyNjExMjJUMDIwMDAwWi03ZjNh"
        );
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_console_backup_refuses_a_source_another_job_holds() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n";
        let config =
            lifeboat::config::Config::parse(text, &dir.path().join("lifeboat.toml")).unwrap();
        let lb = Lifeboat::open(config).await.unwrap();
        let held = lb.lock_source("app").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut worker = Worker::new(lb.clone(), tx);
        worker.handle(Request::Backup {
            task: 1,
            source: "app".into(),
        });
        let outcome = loop {
            match rx.recv().await.unwrap() {
                Msg::Finished { outcome, .. } => break outcome,
                _ => continue,
            }
        };
        drop(held);
        let Outcome::Backup(Err(e)) = outcome else {
            panic!("the backup ran under another job's lock: {outcome:?}");
        };
        assert!(
            e.contains("another lifeboat job holds the lock for source app"),
            "{e}"
        );
        assert!(lb.jobs().unwrap().is_empty(), "no backup job was started");
    }

    /// A point-in-time source's window arrives as a message (an archive with nothing in it
    /// yet: no base backup, no WAL); `x` on a directory lifeboat did not make is refused.
    #[tokio::test]
    async fn the_wal_window_is_a_message_and_only_scratch_clusters_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[[source]]\nname = \"billing\"\nengine = \"postgres\"\nhost = \"/nonexistent\"\ndatabase = \"billing\"\n[source.pitr]\n";
        let config =
            lifeboat::config::Config::parse(text, &dir.path().join("lifeboat.toml")).unwrap();
        let lb = Lifeboat::open(config).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut worker = Worker::new(lb, tx);
        worker.handle(Request::LoadPitr {
            source: "billing".into(),
        });
        let Msg::Pitr { source, result } = rx.recv().await.unwrap() else {
            panic!("not the window")
        };
        assert_eq!(source, "billing");
        let status = result.unwrap();
        assert!(status.bases.is_empty() && status.chain.ranges.is_empty());
        assert_eq!(status.restorable(), None);

        let precious = dir.path().join("data");
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(precious.join("PG_VERSION"), "16\n").unwrap();
        worker.handle(Request::DropPitrScratch {
            source: "billing".into(),
            dir: precious.clone(),
        });
        let Msg::Notice(answer) = rx.recv().await.unwrap() else {
            panic!("no answer")
        };
        assert!(answer.is_err(), "{answer:?}");
        assert!(precious.join("PG_VERSION").exists());
    }

    /// `R` three times: the two earlier listings are stopped before they read anything, one
    /// listing answers. Then a pre-flight check and a verify use that listing, and a drill
    /// drops its scratch copy as the CLI does.
    #[tokio::test]
    async fn refreshes_replace_each_other_and_a_drill_drops_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        drop(c);
        let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[restore]\nscratch_dir = \"restores\"\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n";
        let config =
            lifeboat::config::Config::parse(text, &dir.path().join("lifeboat.toml")).unwrap();
        let lb = Lifeboat::open(config).await.unwrap();
        let (_, m) = lb
            .backup(
                "app",
                lifeboat::manifest::Trigger::Manual,
                Arc::new(lifeboat::progress::NoProgress),
                CancellationToken::new(),
            )
            .await;
        let id = m.unwrap().id.to_string();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut worker = Worker::new(lb.clone(), tx);
        for generation in 1..=3 {
            worker.handle(Request::RefreshCatalog { generation });
        }
        let mut done = Vec::new();
        let mut pages = Vec::new();
        loop {
            match rx.recv().await.unwrap() {
                Msg::CatalogPage {
                    generation,
                    sources_complete,
                    ..
                } => pages.push((generation, sources_complete)),
                Msg::CatalogDone { generation, result } => {
                    assert!(result.is_ok());
                    done.push(generation);
                    break;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(msg) = rx.try_recv() {
            if let Msg::CatalogDone { generation, .. } | Msg::CatalogPage { generation, .. } = msg {
                done.push(generation);
            }
        }
        assert_eq!(done, vec![3], "one listing ran, the latest");
        assert!(pages.iter().all(|(g, _)| *g == 3));
        assert_eq!(pages.last().unwrap().1, vec!["app".to_owned()]);

        worker.handle(Request::Preflight { id: id.clone() });
        let found = loop {
            if let Msg::Preflight { result, .. } = rx.recv().await.unwrap() {
                break result;
            }
        };
        assert!(found.unwrap().contains("as the manifest says"));

        worker.handle(Request::Restore(RestoreRequest {
            task: 7,
            id: id.clone(),
            target: std::path::PathBuf::new(),
            force_target: false,
            compare_live: false,
            drill: true,
        }));
        let (kind, outcome) = loop {
            if let Msg::Finished { kind, outcome, .. } = rx.recv().await.unwrap() {
                break (kind, outcome);
            }
        };
        assert_eq!(kind, JobKind::Drill);
        let Outcome::Restore {
            report: Ok(report),
            saved: Some(saved),
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert!(report.ok(), "{report:?}");
        assert!(
            saved.contains("report saved to _lifeboat/drills/"),
            "{saved}"
        );
        assert!(saved.contains("the scratch copy was dropped"), "{saved}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("restores"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "the drill left {left:?}");
    }
}
