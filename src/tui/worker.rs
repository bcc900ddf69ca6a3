//! Runs the console's requests on tokio tasks and reports back as messages. Nothing here
//! touches the screen; the event loop only ever receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat::jobs::JobKind;
use lifeboat::manifest::EngineKind;
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions};
use lifeboat::progress::{Phase, Progress};
use lifeboat::report::DrillReport;
use lifeboat::{Error, Lifeboat, Selector};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::msg::{Msg, Outcome, Request, RestoreRequest, TaskId};

pub struct Worker {
    lb: Lifeboat,
    tx: UnboundedSender<Msg>,
    running: HashMap<TaskId, CancellationToken>,
}

impl Worker {
    pub fn new(lb: Lifeboat, tx: UnboundedSender<Msg>) -> Self {
        Worker {
            lb,
            tx,
            running: HashMap::new(),
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
                tokio::spawn(async move {
                    let pages = tx.clone();
                    let result = lb
                        .scan_catalog(|rows| {
                            drop(pages.send(Msg::CatalogPage { generation, rows }))
                        })
                        .await;
                    let plan = match &result {
                        Ok(catalog) => Some(lb.plan_inputs(catalog, None).await),
                        Err(_) => None,
                    };
                    let _ = tx.send(Msg::CatalogDone {
                        generation,
                        result: result.map(Arc::new).map_err(|e| e.to_string()),
                    });
                    if let Some(plan) = plan {
                        let _ = tx.send(Msg::PlanInputs(
                            plan.map(Arc::new).map_err(|e| e.to_string()),
                        ));
                    }
                });
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
            Request::Verify {
                task,
                id,
                every_copy,
            } => {
                let cancel = self.start(task);
                tokio::spawn(async move {
                    let progress = ChannelProgress::new(task, tx.clone());
                    let (record, result) = match lb.catalog().await {
                        Ok(catalog) => match catalog.find(&id) {
                            Some(entry) if every_copy => lb.verify(entry, progress, cancel).await,
                            Some(entry) => lb.verify_for_restore(entry, progress, cancel).await,
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
            Request::Restore(r) => {
                let cancel = self.start(r.task);
                tokio::spawn(async move { restore(lb, tx, r, cancel).await });
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

async fn restore(
    lb: Lifeboat,
    tx: UnboundedSender<Msg>,
    r: RestoreRequest,
    cancel: CancellationToken,
) {
    let progress = ChannelProgress::new(r.task, tx.clone());
    let chosen = lb
        .catalog()
        .await
        .and_then(|catalog| lb.select(&catalog, &Selector::Id(r.id.clone())));
    let (record, result, backup_time) = match chosen {
        Ok(from) => {
            let backup_time = match &from {
                RestoreFrom::Backup(b) => Some(b.time()),
                RestoreFrom::Foreign(f) => f.time,
            };
            let live = match (&from, r.compare_live) {
                (RestoreFrom::Backup(b), true) => lb.live_source(&b.source).ok(),
                _ => None,
            };
            let target = match &from {
                RestoreFrom::Backup(b)
                    if b.manifest.as_ref().map(|m| m.source.engine)
                        == Some(EngineKind::Postgres) =>
                {
                    lb.postgres_target(&b.source, r.target.to_str(), b.id.as_str())
                }
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
                drill: r.drill,
                staging: lb.staging(),
                privileged: false,
            };
            let (record, result) = lb.restore(from, opts, progress, cancel).await;
            (record, result, backup_time)
        }
        Err(e) => (placeholder(&lb, JobKind::Restore), Err(e), None),
    };
    let report = match result {
        Ok(report) => Ok(report),
        Err(Error::RowCountMismatch(report)) => Ok(*report),
        Err(e) => Err(e.to_string()),
    };
    let mut saved = None;
    if let (true, Ok(report)) = (r.drill, &report) {
        let drill = DrillReport::new(&record, report, backup_time);
        saved = Some(match drill.save(lb.store().as_ref()).await {
            Ok(key) => format!("report saved to {key}"),
            Err(e) => format!("report NOT saved: {e}"),
        });
    }
    let outcome = Outcome::Restore {
        report: report.map(Box::new),
        saved,
    };
    let _ = tx.send(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: Box::new(record),
        outcome,
    });
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
}
