//! Operations: the daemon on a controllable clock, `check`'s exit codes, webhook alerts to a
//! receiver on 127.0.0.1, the metrics textfile, the per-source lock.

use std::convert::Infallible;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use lifeboat::Lifeboat;
use lifeboat::alert::Delivery;
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::daemon::{Daemon, Event};
use lifeboat::jobs::{JobKind, JobStatus};
use lifeboat::manifest::Trigger;
use lifeboat::state::State;
use lifeboat::storage::ObjectStoreExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::{Out, lifeboat, run};
use crate::common::{self, ACCESS_KEY, S3Server, SECRET_KEY};

/// A sample SQLite source `app`, a local bucket and `extra` config appended (it may start
/// with `[source.schedule]`, which then belongs to `app`).
fn world(dir: &Path, extra: &str) -> PathBuf {
    world_in(
        dir,
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n",
        extra,
    )
}

fn world_in(dir: &Path, storage: &str, extra: &str) -> PathBuf {
    common::make_sample_db(&dir.join("app.db"), 1);
    let text = format!(
        "{storage}[state]\npath = \"state.db\"\n\
         [backup]\ntemp_dir = \"staging\"\n[restore]\nscratch_dir = \"scratch\"\n\
         [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n{extra}\n"
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cmd(dir: &Path, config: &Path, args: &[&str]) -> std::process::Command {
    let mut c = lifeboat(dir);
    c.arg("--config").arg(config).args(args);
    c
}

async fn open(config: &Path, clock: Clock) -> Lifeboat {
    let config = Config::load(config).unwrap();
    let store = lifeboat::open_store(&config.storage).await.unwrap();
    let state = State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, clock)
}

/// An HTTP receiver on 127.0.0.1 that keeps every JSON body POSTed to it and answers 500 to
/// the first `fail_first` requests.
pub(crate) struct Receiver {
    pub(crate) url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/T0KEN-abc123",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(0usize));
        let kept = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (kept, seen) = (kept.clone(), seen.clone());
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (kept, seen) = (kept.clone(), seen.clone());
                        async move {
                            let n = {
                                let mut s = seen.lock().unwrap();
                                *s += 1;
                                *s
                            };
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = if n <= fail_first {
                                500
                            } else {
                                kept.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                                200
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Receiver { url, bodies, task }
    }

    pub(crate) fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn quick_delivery() -> Delivery {
    Delivery {
        attempts: 3,
        first_delay: StdDuration::from_millis(10),
        timeout: StdDuration::from_secs(10),
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// Waits for the daemon's next event matching `pick`; every event on the way is kept.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    seen: &mut Vec<Event>,
    pick: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no such event; saw {seen:#?}"))
            .expect("the daemon stopped");
        seen.push(event.clone());
        if pick(&event) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_the_daily_full_at_two_and_a_missed_run_once() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = world(
        dir.path(),
        &format!(
            "[source.schedule]\nbackup = \"0 2 * * *\"\n[[webhook]]\nurl = \"{}\"\n",
            receiver.url
        ),
    );
    // A simulated clock just before 02:00: the daemon sleeps until 02:00 by it.
    let clock = Clock::starting_at(utc(2026, 11, 24, 1, 59, 59));
    let lb = open(&config, clock.clone()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut daemon = Daemon::new(lb.clone()).unwrap().on_event(move |e| {
        let _ = tx.send(e);
    });
    daemon.poll = StdDuration::from_millis(50);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { daemon.run(shutdown).await }
    });
    let mut seen = Vec::new();

    // No backup yet: the source is CRITICAL, and the webhook hears so at once.
    wait_for(&mut rx, &mut seen, |e| matches!(e, Event::Alerted { .. })).await;
    let alerts = receiver.bodies();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["event"], "threshold");
    assert_eq!(alerts[0]["status"], "critical");
    assert_eq!(alerts[0]["error"], "no good backup");

    let Event::JobDone { record, attempt } =
        wait_for(&mut rx, &mut seen, |e| matches!(e, Event::JobDone { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert_eq!(record.kind, JobKind::Backup);
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    assert_eq!(record.trigger, Trigger::Scheduled);
    assert!(
        record.started_at >= utc(2026, 11, 24, 2, 0, 0),
        "{}",
        record.started_at
    );
    // With a backup, the source is OK again, and the webhook hears that too.
    wait_for(&mut rx, &mut seen, |e| {
        matches!(e, Event::Alerted { event, .. } if *event == lifeboat::alert::AlertEvent::Recovered)
    })
    .await;
    let alerts = receiver.bodies();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[1]["event"], "recovered");
    assert_eq!(alerts[1]["status"], "ok");
    wait_for(
        &mut rx,
        &mut seen,
        |e| matches!(e, Event::Next { at } if *at == utc(2026, 11, 25, 2, 0, 0)),
    )
    .await;

    // Three days pass unseen (a suspended VM): three 02:00 runs were missed; one runs.
    clock.set(utc(2026, 11, 27, 9, 30, 0));
    wait_for(
        &mut rx,
        &mut seen,
        |e| matches!(e, Event::Next { at } if *at == utc(2026, 11, 28, 2, 0, 0)),
    )
    .await;
    let backups: Vec<_> = lb
        .jobs()
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::Backup)
        .collect();
    assert_eq!(backups.len(), 2, "{backups:#?}");
    assert!(backups[0].started_at >= utc(2026, 11, 27, 9, 30, 0));

    shutdown.cancel();
    task.await.unwrap().unwrap();
    wait_for(&mut rx, &mut seen, |e| matches!(e, Event::Stopped)).await;
    assert_eq!(lb.catalog().await.unwrap().complete().count(), 2);
    // Healthy since the first backup: no alert after the recovery.
    assert_eq!(receiver.bodies().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_failing_every_attempt_is_retried_then_alerted_once() {
    let receiver = Receiver::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = world(
        dir.path(),
        &format!(
            "[schedule]\nattempts = 3\nretry_delay = \"0\"\n[[webhook]]\nurl = \"{}\"\n",
            receiver.url
        ),
    );
    std::fs::remove_file(dir.path().join("app.db")).unwrap();
    let lb = open(&config, Clock::system()).await;
    let mut daemon = Daemon::new(lb.clone()).unwrap();
    daemon.delivery = quick_delivery();
    let done = daemon
        .run_entry("app", JobKind::Backup, &CancellationToken::new())
        .await;
    assert_eq!(done.attempts, 3);
    assert!(done.result.is_err());
    let jobs = lb.jobs().unwrap();
    assert_eq!(jobs.len(), 3, "each attempt is a job record");
    assert!(jobs.iter().all(|j| j.status == JobStatus::Failed));

    // The receiver refused the first delivery; the retry got through, once.
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let alert = &bodies[0];
    assert_eq!(alert["event"], "job_failed");
    assert_eq!(alert["source"], "app");
    assert_eq!(alert["kind"], "backup");
    assert_eq!(alert["status"], "failed");
    assert_eq!(alert["attempts"], 3);
    assert_eq!(alert["job"], jobs[0].id.as_str());
    assert!(
        alert["error"].as_str().unwrap().contains("app.db"),
        "{alert}"
    );
    assert!(
        !alert.to_string().contains("T0KEN"),
        "no secret in the alert"
    );

    // A scheduled prune runs the planner, which skips a source whose newest backup failed.
    let done = daemon
        .run_entry("app", JobKind::Prune, &CancellationToken::new())
        .await;
    assert!(done.result.is_ok(), "{:?}", done.result);
    let prune = lb
        .jobs()
        .unwrap()
        .into_iter()
        .find(|j| j.kind == JobKind::Prune)
        .expect("a prune job is recorded");
    assert_eq!(prune.trigger, Trigger::Scheduled);
    assert_eq!(prune.status, JobStatus::Succeeded);
    assert!(
        prune
            .log
            .iter()
            .any(|l| l.message.contains("newest backup failed")),
        "{:?}",
        prune.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_drill_restores_the_newest_backup_and_drops_the_scratch_copy() {
    let dir = tempfile::tempdir().unwrap();
    let config = world(dir.path(), "drill_interval = \"90d\"");
    let lb = open(&config, Clock::system()).await;
    let (_, r) = lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(lifeboat::progress::NoProgress),
            CancellationToken::new(),
        )
        .await;
    r.unwrap();
    let daemon = Daemon::new(lb.clone()).unwrap();
    let done = daemon
        .run_entry("app", JobKind::Drill, &CancellationToken::new())
        .await;
    done.result.unwrap();
    let record = done.record.unwrap();
    assert_eq!(record.kind, JobKind::Drill);
    assert_eq!(record.status, JobStatus::Succeeded);
    let scratch: Vec<_> = std::fs::read_dir(dir.path().join("scratch"))
        .unwrap()
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
    let reports = lb.store().list_all("_lifeboat/drills/").await.unwrap();
    assert!(
        !reports.is_empty(),
        "the drill report is kept in the bucket"
    );
    // The drill shows in health: the interval is met.
    let out = run(cmd(dir.path(), &config, &["check"])).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("'app_drill_age'="), "{}", out.stdout);
}

fn status_line(out: &Out) -> &str {
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one status line: {}{}",
        out.stdout,
        out.stderr
    );
    lines[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn check_follows_nagios_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();

    // UNKNOWN: no config at all.
    let out = run(cmd(home, &home.join("missing.toml"), &["check"])).await;
    assert_eq!(out.code, 3);
    assert!(
        status_line(&out).starts_with("LIFEBOAT UNKNOWN - no config at"),
        "{}",
        out.stdout
    );

    let config = world(
        home,
        "rpo = \"1d\"\n[check]\nfailure_rate_warning = 0.9\nfailure_rate_critical = 1.0",
    );
    // CRITICAL: no backup yet.
    let out = run(cmd(home, &config, &["check"])).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        status_line(&out).starts_with("LIFEBOAT CRITICAL - app: no good backup |"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("'app_backup_age'=U;86400;172800;0;"),
        "{}",
        out.stdout
    );

    // OK after a backup, with perfdata.
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(cmd(home, &config, &["check"])).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let line = status_line(&out);
    assert!(
        line.starts_with("LIFEBOAT OK - 1 source(s) ok: app newest "),
        "{line}"
    );
    let perf = line.split(" | ").nth(1).unwrap();
    for label in [
        "'app_backup_age'=",
        "'app_failure_rate'=0%;;;0;100",
        "'app_backups'=1;;;0;",
    ] {
        assert!(perf.contains(label), "{label} in {perf}");
    }

    // WARNING: the newest backup attempt failed (the database vanished).
    let moved = home.join("app.db.moved");
    std::fs::rename(home.join("app.db"), &moved).unwrap();
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 1);
    let out = run(cmd(home, &config, &["check"])).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        status_line(&out).starts_with("LIFEBOAT WARNING - app: last backup failed: "),
        "{}",
        out.stdout
    );

    // --json carries the same verdict.
    let out = run(cmd(home, &config, &["check", "--json"])).await;
    assert_eq!(out.code, 1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "WARNING");
    assert_eq!(v["code"], 1);
    assert_eq!(v["sources"][0]["source"], "app");
    assert_eq!(v["sources"][0]["last_job_failed"], true);
    assert_eq!(v["sources"][0]["rpo"], 86400);

    // UNKNOWN: a mistyped command line.
    let out = run(cmd(home, &config, &["check", "--sauce", "app"])).await;
    assert_eq!(out.code, 3, "{}", out.stderr);

    // UNKNOWN: a source that does not exist.
    let out = run(cmd(home, &config, &["check", "--source", "nope"])).await;
    assert_eq!(out.code, 3);
    assert!(
        status_line(&out).contains("unknown source \"nope\""),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_is_unknown_when_the_bucket_is_unreachable_and_critical_over_quota() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Nothing listens on port 9 of 127.0.0.1.
    std::fs::write(
        home.join("s3.toml"),
        "[storage]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\n\
         force_path_style = true\nregion = \"us-east-1\"\nmax_attempts = 1\n[state]\npath = \"s.db\"\n",
    )
    .unwrap();
    let mut c = cmd(home, &home.join("s3.toml"), &["check"]);
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    let out = run(c).await;
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let line = status_line(&out);
    assert!(line.starts_with("LIFEBOAT UNKNOWN - "), "{line}");
    assert!(!out.stdout.contains(SECRET_KEY));

    // Through a real S3 server: OK after a backup, CRITICAL over the quota.
    let server = S3Server::start().await;
    let config = world_in(home, &server.config_toml("ops"), "quota = \"1KiB\"");
    let s3 = |args: &[&str]| {
        let mut c = cmd(home, &config, args);
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        c
    };
    let out = run(s3(&["backup"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(s3(&["check"])).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        status_line(&out).contains("of its 1 KiB quota"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(";0;1024 "), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cli_backup_alerts_slack_and_every_job_rewrites_the_metrics() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = world(
        home,
        "[metrics]\ntextfile = \"textfile/lifeboat.prom\"\n[[webhook]]\nurl_env = \"HOOK_URL\"\nformat = \"slack\"\n",
    );
    // The webhook URL, a secret in Slack's case, comes from the environment.
    let cmd = |home: &Path, config: &Path, args: &[&str]| {
        let mut c = cmd(home, config, args);
        c.env("HOOK_URL", &receiver.url);
        c
    };
    std::fs::create_dir(home.join("textfile")).unwrap();
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let prom = std::fs::read_to_string(home.join("textfile/lifeboat.prom")).unwrap();
    assert!(
        prom.contains("lifeboat_last_success_timestamp_seconds{source=\"app\",kind=\"backup\"} "),
        "{prom}"
    );
    assert!(prom.contains("lifeboat_failures_total{source=\"app\",kind=\"backup\"} 0"));
    assert!(receiver.bodies().is_empty(), "no alert for a good backup");

    std::fs::remove_file(home.join("app.db")).unwrap();
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 1);
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("lifeboat: backup of app failed: "),
        "{text}"
    );
    let prom = std::fs::read_to_string(home.join("textfile/lifeboat.prom")).unwrap();
    assert!(
        prom.contains("lifeboat_failures_total{source=\"app\",kind=\"backup\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("lifeboat_last_success{source=\"app\",kind=\"backup\"} 0"),
        "{prom}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_backup_refuses_a_source_another_job_holds() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = world(home, "");
    let held = lifeboat::lock::SourceLock::acquire(&home.join("locks"), "app").unwrap();
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: another lifeboat job holds the lock for source app (pid {})",
            std::process::id()
        )
    );
    drop(held);
    let out = run(cmd(home, &config, &["backup"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_binary_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Every second, so the test need not wait for 02:00.
    let config = world(home, "[source.schedule]\nbackup = \"* * * * * *\"");
    let out = run(cmd(home, &config, &["schedule", "-n", "3", "--json"])).await;
    let runs: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 3);
    assert_eq!(runs[0]["kind"], "backup");

    let mut child = cmd(home, &config, &["daemon"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(60);
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("backup of app ok"))
    {
        let line = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no backup: {lines:?}"))
            .unwrap();
        lines.push(line);
    }
    // SAFETY: signals a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    while let Some(line) = rx.recv().await {
        lines.push(line);
    }
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("daemon stopped"),
        "{lines:#?}"
    );
    let lb = open(&config, Clock::system()).await;
    let jobs = lb.jobs().unwrap();
    assert!(!jobs.is_empty());
    assert!(
        jobs.iter()
            .all(|j| matches!(j.status, JobStatus::Succeeded | JobStatus::Cancelled)),
        "no job left running or half-done: {jobs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_waits_its_turn_when_a_cli_job_holds_the_source() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = world(
        dir.path(),
        &format!(
            "[schedule]\nattempts = 2\nretry_delay = \"0\"\n[[webhook]]\nurl = \"{}\"\n",
            receiver.url
        ),
    );
    let lb = open(&config, Clock::system()).await;
    let held = lb.lock_source("app").unwrap();
    let mut daemon = Daemon::new(lb.clone()).unwrap();
    daemon.delivery = quick_delivery();
    let done = daemon
        .run_entry("app", JobKind::Backup, &CancellationToken::new())
        .await;
    assert_eq!(done.attempts, 2);
    assert!(
        matches!(done.result, Err(lifeboat::Error::Locked { .. })),
        "{:?}",
        done.result
    );
    assert!(lb.jobs().unwrap().is_empty(), "nothing ran");
    let alerts = receiver.bodies();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("another lifeboat job holds the lock for source app"),
        "{alerts:?}"
    );
    drop(held);
    let done = daemon
        .run_entry("app", JobKind::Backup, &CancellationToken::new())
        .await;
    done.result.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_daemon_mid_job_cancels_it_and_leaves_no_backup() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = world(
        dir.path(),
        &format!(
            "[source.schedule]\nbackup = \"0 2 * * *\"\n[[webhook]]\nurl = \"{}\"\n",
            receiver.url
        ),
    );
    common::add_random_blobs(&dir.path().join("app.db"), 8);
    let lb = open(&config, Clock::starting_at(utc(2026, 11, 24, 1, 59, 59))).await;
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = shutdown.clone();
    // SIGTERM arrives the moment the backup starts.
    let daemon = Daemon::new(lb.clone()).unwrap().on_event(move |e| {
        if matches!(e, Event::JobStarted { .. }) {
            stop.cancel();
        }
        let _ = tx.send(e);
    });
    daemon.run(shutdown).await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(matches!(events.last(), Some(Event::Stopped)), "{events:#?}");
    let jobs = lb.jobs().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].status, JobStatus::Cancelled);
    let catalog = lb.catalog().await.unwrap();
    assert_eq!(
        catalog.complete().count(),
        0,
        "a cancelled backup never looks complete"
    );
    // Only the start-up health alert; a cancelled job is not a failure.
    let alerts = receiver.bodies();
    assert!(
        alerts.iter().all(|a| a["event"] == "threshold"),
        "{alerts:#?}"
    );
    let staging: Vec<_> = std::fs::read_dir(dir.path().join("staging"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "staging files left: {staging:?}");
}

/// A drill that restores but disagrees with its manifest is a failed job: retried, alerted.
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_with_wrong_counts_fails_is_retried_and_alerted() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = world(
        dir.path(),
        &format!(
            "drill_interval = \"90d\"\n[schedule]\nattempts = 2\nretry_delay = \"0\"\n[[webhook]]\nurl = \"{}\"\n",
            receiver.url
        ),
    );
    let lb = open(&config, Clock::system()).await;
    let (_, m) = lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(lifeboat::progress::NoProgress),
            CancellationToken::new(),
        )
        .await;
    let m = m.unwrap();
    // The manifest claims rows the data does not hold; the data's checksum still matches.
    let manifest = dir
        .path()
        .join(format!("bucket/app/{}/manifest.json", m.id));
    crate::common::rewrite_manifest(&manifest, |v| {
        let rows = v["tables"][0]["rows"].as_u64().unwrap();
        v["tables"][0]["rows"] = (rows + 1000).into();
    });

    let mut daemon = Daemon::new(lb.clone()).unwrap();
    daemon.delivery = quick_delivery();
    let done = daemon
        .run_entry("app", JobKind::Drill, &CancellationToken::new())
        .await;
    assert_eq!(done.attempts, 2);
    assert!(
        matches!(done.result, Err(lifeboat::Error::RowCountMismatch(_))),
        "{:?}",
        done.result
    );
    assert_eq!(done.record.unwrap().status, JobStatus::Failed);
    let drills: Vec<_> = lb
        .jobs()
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::Drill)
        .collect();
    assert_eq!(drills.len(), 2);
    assert!(drills.iter().all(|j| j.status == JobStatus::Failed));
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["event"], "job_failed");
    assert_eq!(bodies[0]["kind"], "drill");
}
