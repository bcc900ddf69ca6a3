//! `lifeboat daemon`: runs the configured schedules. A thin loop around the planner in
//! [`crate::schedule`]: wake at the next due time, run what is due (once, however many times
//! were missed), retry failures with backoff, alert on the final failure and when a source's
//! health gets worse, and stop cleanly when told to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use crate::Lifeboat;
use crate::alert::{self, Alert, AlertEvent, Delivery};
use crate::error::{Error, Result};
use crate::health::{self, Level};
use crate::jobs::{JobKind, JobRecord, JobStatus, hostname};
use crate::manifest::Trigger;
use crate::progress::NoProgress;
use crate::schedule::{self, Entry, Schedules};
use crate::wal::stream::{StreamEvent, Streamer, spool_dir};

/// How long shutdown waits for a streamer to stop its `pg_receivewal` and its push.
const STREAM_STOP_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// What the daemon tells its front end as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        schedules: usize,
    },
    JobStarted {
        source: String,
        kind: JobKind,
        attempt: u32,
    },
    Next {
        at: DateTime<Utc>,
    },
    JobDone {
        record: Box<JobRecord>,
        attempt: u32,
    },
    /// An attempt that could not even start (source locked, nothing to verify, ...).
    NotStarted {
        source: String,
        kind: JobKind,
        attempt: u32,
        error: String,
    },
    Retry {
        source: String,
        kind: JobKind,
        attempt: u32,
        after: Duration,
    },
    Alerted {
        event: AlertEvent,
        source: Option<String>,
        delivered: usize,
    },
    /// WAL streaming of a source with `[source.pitr] stream = true`.
    Stream(StreamEvent),
    Stopped,
}

pub struct Daemon {
    lb: Lifeboat,
    schedules: Schedules,
    /// The longest sleep between looks at the clock: a clock that jumps (a laptop waking, a
    /// test moving a simulated clock) is noticed within this.
    pub poll: StdDuration,
    /// How often source health is assessed for threshold alerts between jobs.
    pub health_every: Duration,
    pub delivery: Delivery,
    on_event: Arc<dyn Fn(Event) + Send + Sync>,
}

/// How a scheduled job ended after all its attempts.
#[derive(Debug)]
pub struct Finished {
    pub attempts: u32,
    pub record: Option<JobRecord>,
    pub result: Result<()>,
}

impl Daemon {
    pub fn new(lb: Lifeboat) -> Result<Daemon> {
        let schedules = Schedules::from_config(lb.config()).map_err(Error::Invalid)?;
        Ok(Daemon {
            lb,
            schedules,
            poll: StdDuration::from_secs(60),
            health_every: Duration::minutes(10),
            delivery: Delivery::default(),
            on_event: Arc::new(|_| {}),
        })
    }

    pub fn on_event(mut self, f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        self.on_event = Arc::new(f);
        self
    }

    pub fn schedules(&self) -> &Schedules {
        &self.schedules
    }

    /// The sources whose WAL the daemon streams.
    pub fn streamed_sources(&self) -> Vec<String> {
        self.lb
            .config()
            .sources
            .iter()
            .filter(|s| s.pitr.as_ref().is_some_and(|p| p.stream))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Starts a streamer per source that asks for one, each stopping with `shutdown`.
    async fn start_streams(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<tokio::task::JoinSet<()>> {
        let config = self.lb.config();
        let seal =
            crate::pipeline::crypt::Seal::from_config(config.encryption.as_ref())?.map(Arc::new);
        let mut tasks = tokio::task::JoinSet::new();
        for name in self.streamed_sources() {
            let source = crate::wal::pitr_source(config, Some(&name))?.clone();
            let store = crate::wal::open_source_store(config, &source).await?;
            let streamer = Streamer {
                spool: spool_dir(&config.state_path(), &name),
                source,
                store,
                compression_level: config.backup.compression_level,
                seal: seal.clone(),
                clock: self.lb.clock().clone(),
                poll: StdDuration::from_millis(500),
            };
            let on_event = self.on_event.clone();
            let cancel = shutdown.child_token();
            tasks.spawn(async move {
                streamer
                    .run(&move |e| on_event(Event::Stream(e)), &cancel)
                    .await;
            });
        }
        Ok(tasks)
    }

    /// Runs schedules until `shutdown` is cancelled. A job running then is cancelled through
    /// the same token (the pipelines clean up after themselves) and recorded as cancelled.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let clock = self.lb.clock().clone();
        let mut marks = self
            .schedules
            .marks_from_history(&self.lb.jobs()?, clock.now());
        let mut levels: HashMap<String, Level> = HashMap::new();
        let mut next_health = clock.now();
        (self.on_event)(Event::Started {
            schedules: self.schedules.entries.len(),
        });
        if let Err(e) = self.lb.write_metrics() {
            tracing::warn!("cannot write metrics: {e}");
        }
        let mut streams = self.start_streams(&shutdown).await?;
        let mut announced = None;
        while !shutdown.is_cancelled() {
            let now = clock.now();
            let due: Vec<Entry> = self
                .schedules
                .due(&marks, now)
                .into_iter()
                .cloned()
                .collect();
            let ran = !due.is_empty();
            for entry in due {
                marks.insert(schedule::slot(&entry), now);
                self.run_entry(&entry.source, entry.kind, &shutdown).await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            if ran || clock.now() >= next_health {
                self.alert_thresholds(&mut levels).await;
                next_health = clock.now() + self.health_every;
            }
            let now = clock.now();
            let wake = self.schedules.next_wake(&marks, now);
            if let Some(at) = wake
                && announced != Some(at)
            {
                announced = Some(at);
                (self.on_event)(Event::Next { at });
            }
            let wait = wake
                .map(|at| (at - now).to_std().unwrap_or_default())
                .unwrap_or(self.poll)
                .min(self.poll);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        // The streamers saw the same token; a hung one is not waited for past the timeout
        // (dropping its task stops its pg_receivewal).
        let stopped = tokio::time::timeout(STREAM_STOP_TIMEOUT, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!("a WAL streamer did not stop in time; stopped it");
            streams.abort_all();
            while streams.join_next().await.is_some() {}
        }
        (self.on_event)(Event::Stopped);
        Ok(())
    }

    /// One scheduled job with its retries, alerting if it finally fails.
    pub async fn run_entry(
        &self,
        source: &str,
        kind: JobKind,
        shutdown: &CancellationToken,
    ) -> Finished {
        let policy = &self.lb.config().schedule;
        let attempts = policy.attempts.max(1);
        let mut attempt = 0;
        let mut last = (None, Err(Error::Cancelled));
        while attempt < attempts && !shutdown.is_cancelled() {
            attempt += 1;
            (self.on_event)(Event::JobStarted {
                source: source.to_owned(),
                kind,
                attempt,
            });
            last = self.attempt(source, kind, shutdown).await;
            match &last {
                (Some(record), _) => (self.on_event)(Event::JobDone {
                    record: Box::new(record.clone()),
                    attempt,
                }),
                (None, Err(e)) => (self.on_event)(Event::NotStarted {
                    source: source.to_owned(),
                    kind,
                    attempt,
                    error: e.to_string(),
                }),
                (None, Ok(())) => {}
            }
            if matches!(last.1, Ok(()) | Err(Error::Cancelled)) || attempt == attempts {
                break;
            }
            let after = schedule::backoff(policy.retry_delay, attempt);
            (self.on_event)(Event::Retry {
                source: source.to_owned(),
                kind,
                attempt: attempt + 1,
                after,
            });
            tokio::select! {
                _ = tokio::time::sleep(after.to_std().unwrap_or_default()) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let (record, result) = last;
        if let Err(e) = &result
            && !matches!(e, Error::Cancelled)
        {
            let alert = match &record {
                Some(r) => Alert::job_failed(r, attempt),
                None => Alert {
                    event: AlertEvent::JobFailed,
                    source: Some(source.to_owned()),
                    job: None,
                    kind: Some(kind),
                    status: JobStatus::Failed.to_string(),
                    error: Some(e.to_string()),
                    attempts: Some(attempt),
                    host: hostname(),
                    time: self.lb.clock().now(),
                },
            };
            self.send(&alert).await;
        }
        Finished {
            attempts: attempt,
            record,
            result,
        }
    }

    /// One attempt, holding the source's lock throughout (prunes and drills take it
    /// themselves).
    async fn attempt(
        &self,
        source: &str,
        kind: JobKind,
        cancel: &CancellationToken,
    ) -> (Option<JobRecord>, Result<()>) {
        let _lock = match kind {
            JobKind::Prune | JobKind::Drill => None,
            _ => match self.lb.lock_source(source) {
                Ok(lock) => Some(lock),
                Err(e) => return (None, Err(e)),
            },
        };
        let lb = &self.lb;
        let progress = Arc::new(NoProgress);
        let cancel = cancel.child_token();
        match kind {
            JobKind::Backup => {
                let (record, result) = lb
                    .backup(source, Trigger::Scheduled, progress, cancel)
                    .await;
                (Some(record), result.map(drop))
            }
            JobKind::Verify => {
                let catalog = match lb.catalog().await {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                };
                let Some(entry) = catalog.complete().find(|b| b.source == source) else {
                    return (
                        None,
                        Err(Error::NoBackup(format!("\"latest\" for source {source}"))),
                    );
                };
                let (record, result) = lb.verify(entry, progress, cancel).await;
                (Some(record), result)
            }
            JobKind::Drill => self.drill(source, cancel).await,
            JobKind::Prune => {
                let opts = crate::prune::PruneOptions {
                    source: Some(source.to_owned()),
                    force: false,
                    trigger: Some(Trigger::Scheduled),
                    only: None,
                };
                let (record, result) = lb.prune(&opts, cancel).await;
                (Some(record), result.map(drop))
            }
            JobKind::Restore
            | JobKind::Copy
            | JobKind::Pin
            | JobKind::Unpin
            | JobKind::Promote
            | JobKind::BaseBackup => (
                None,
                Err(Error::Unsupported(format!(
                    "{kind} jobs are not scheduled (restores: use drill; copies follow each backup)"
                ))),
            ),
        }
    }

    /// A drill: the newest backup restored into a scratch database, diffed, its report kept
    /// in the bucket as evidence, the scratch database dropped.
    async fn drill(
        &self,
        source: &str,
        cancel: CancellationToken,
    ) -> (Option<JobRecord>, Result<()>) {
        let opts = crate::drill::DrillOptions {
            source: Some(source.to_owned()),
            save_report: true,
            ..Default::default()
        };
        match self.lb.drill(&opts, Arc::new(NoProgress), cancel).await {
            Ok((record, result)) => (Some(record), drill_outcome(result)),
            Err(e) => (None, Err(e)),
        }
    }

    /// Alerts for each source whose health got worse, or better, since the last look.
    async fn alert_thresholds(&self, levels: &mut HashMap<String, Level>) {
        let lb = &self.lb;
        let rows = match lb.catalog().await {
            Ok(c) => c.rows(),
            Err(e) => {
                tracing::warn!("health not assessed, the catalog could not be read: {e}");
                return;
            }
        };
        let jobs = match lb.jobs() {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!("health not assessed, no job history: {e}");
                return;
            }
        };
        let now = lb.clock().now();
        for h in health::assess(lb.config(), &rows, &jobs, now) {
            let before = levels
                .insert(h.source.clone(), h.level)
                .unwrap_or(Level::Ok);
            if h.level != before {
                self.send(&Alert::threshold(&h, before, now)).await;
            }
        }
    }

    async fn send(&self, alert: &Alert) {
        let hooks = &self.lb.config().webhooks;
        if hooks.is_empty() {
            return;
        }
        let delivered = alert::notify(hooks, alert, self.delivery).await;
        (self.on_event)(Event::Alerted {
            event: alert.event,
            source: alert.source.clone(),
            delivered,
        });
    }
}

/// A drill that ran but did not match is a failed job: it is retried and alerted on.
fn drill_outcome(result: Result<crate::drill::Drill>) -> Result<()> {
    match result {
        Ok(d) if !d.passed() => Err(Error::RowCountMismatch(Box::new(d.restore))),
        other => other.map(drop),
    }
}
