//! An S3 endpoint that fails a share of requests: 503s, reset connections, connections cut
//! mid-transfer and slow responses, from a small proxy in front of the in-process server.
//! Backups either succeed through retries or fail with one clear line, and never leave a
//! complete-looking backup that does not restore.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lifeboat::catalog::BackupState;
use lifeboat::manifest::Trigger;
use lifeboat::pipeline::restore::RestoreOptions;
use lifeboat::progress::NoProgress;
use lifeboat::storage::{ObjectStore, S3Store};
use lifeboat::{Error, Selector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{Out, lifeboat, run};
use crate::common::{self, ACCESS_KEY, S3Server, SECRET_KEY, World};
use crate::proxy::{Fault, FaultProxy};

#[derive(Default, Debug)]
pub struct FaultCounts {
    pub connections: AtomicUsize,
    pub unavailable: AtomicUsize,
    pub resets: AtomicUsize,
    pub cuts: AtomicUsize,
    pub slow: AtomicUsize,
}

impl FaultCounts {
    pub fn injected(&self) -> usize {
        self.unavailable.load(Ordering::Relaxed)
            + self.resets.load(Ordering::Relaxed)
            + self.cuts.load(Ordering::Relaxed)
            + self.slow.load(Ordering::Relaxed)
    }
}

/// Each request draws its fate from a seeded RNG: with probability `share` it gets a fault
/// (503, reset, cut mid-body, or a slow answer), the rest pass through untouched. Requests are
/// framed by Content-Length (the store sends no chunked bodies), so faults hit requests, not
/// just the first request of each pooled connection.
pub struct FlakyProxy {
    pub endpoint: String,
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyProxy {
    pub async fn start(upstream: &str, seed: u64, share: f64) -> FlakyProxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(FaultCounts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            while let Ok((client, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                let rng = fastrand::Rng::with_seed(rng.u64(..));
                tokio::spawn(async move {
                    let _ = serve(client, upstream, rng, share, &c).await;
                });
            }
        });
        FlakyProxy {
            endpoint,
            counts,
            task,
        }
    }
}

enum Fate {
    Unavailable,
    Reset,
    Cut,
    Slow,
    Pass,
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut rng: fastrand::Rng,
    share: f64,
    counts: &FaultCounts,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Answers flow back untouched; the request side decides each request's fate.
    let (cw_tx, mut cw_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                n = sr.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if cw.write_all(&buf[..n]).await.is_err() { return },
                },
                injected = cw_rx.recv() => {
                    if let Some(bytes) = injected {
                        let _ = cw.write_all(&bytes).await;
                    }
                    return;
                }
            }
        }
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let result = async {
        loop {
            // The request head.
            let head_end = loop {
                if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = cr.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                pending.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let roll = rng.f64() / share;
            let fate = match roll {
                r if r < 0.25 => Fate::Unavailable,
                r if r < 0.5 => Fate::Reset,
                r if r < 0.75 => Fate::Cut,
                r if r < 1.0 => Fate::Slow,
                _ => Fate::Pass,
            };
            let total = head_end + body_len;
            match fate {
                Fate::Reset => {
                    counts.resets.fetch_add(1, Ordering::Relaxed);
                    return Err(std::io::Error::other("reset"));
                }
                Fate::Cut => {
                    counts.cuts.fetch_add(1, Ordering::Relaxed);
                    let keep = rng.usize(0..total.max(1));
                    let mut sent = 0;
                    while sent < keep {
                        if pending.is_empty() {
                            let n = cr.read(&mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            pending.extend_from_slice(&buf[..n]);
                        }
                        let n = pending.len().min(keep - sent);
                        sw.write_all(&pending[..n]).await?;
                        pending.drain(..n);
                        sent += n;
                    }
                    return Err(std::io::Error::other("cut"));
                }
                Fate::Unavailable => {
                    counts.unavailable.fetch_add(1, Ordering::Relaxed);
                    // Swallow the request, then answer for the server and close.
                    let mut left = total;
                    loop {
                        let n = pending.len().min(left);
                        pending.drain(..n);
                        left -= n;
                        if left == 0 {
                            break;
                        }
                        let n = cr.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                    }
                    let _ = cw_tx
                        .send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec())
                        .await;
                    return Ok(());
                }
                Fate::Slow | Fate::Pass => {
                    if matches!(fate, Fate::Slow) {
                        counts.slow.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let mut left = total;
                    loop {
                        let n = pending.len().min(left);
                        sw.write_all(&pending[..n]).await?;
                        pending.drain(..n);
                        left -= n;
                        if left == 0 {
                            break;
                        }
                        let n = cr.read(&mut buf).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        pending.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    }
    .await;
    if result.is_err() {
        down.abort();
    } else {
        let _ = down.await;
    }
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_through_a_flaky_endpoint_succeed_through_retries() {
    let ok = flaky_trials(7, 0.35, 6, 8).await;
    assert!(
        ok > 0,
        "retries carry backups through a partly failing endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_through_a_failing_endpoint_fail_cleanly() {
    let ok = flaky_trials(11, 0.9, 2, 4).await;
    assert!(ok < 4, "most requests fail: so do some backups");
}

/// Runs `trials` backups (and restores of the good ones) through a proxy failing `share` of
/// requests; returns how many backups succeeded.
async fn flaky_trials(seed: u64, share: f64, attempts: u32, trials: usize) -> usize {
    let server = S3Server::start().await;
    let proxy = FlakyProxy::start(&server.endpoint, seed, share).await;
    let mut opts = server.options("");
    opts.endpoint = Some(proxy.endpoint.clone());
    opts.max_attempts = attempts;
    let flaky: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(opts).await);
    let world = World::new(flaky);
    common::add_random_blobs(&world.path("app.db"), 6);
    let source = common::content_digest(&world.path("app.db"));
    // The truth, read without faults.
    let direct = World::new(server.store("").await);

    let (mut ok, mut failed, mut restores_ok, mut restores_failed) = (0, 0, 0, 0);
    for i in 0..trials {
        let (job, result) = world
            .lb
            .backup(
                "app",
                Trigger::Manual,
                Arc::new(NoProgress),
                Default::default(),
            )
            .await;
        let catalog = direct.lb.catalog().await.unwrap();
        let id = job.backup_id.clone().unwrap_or_default();
        match result {
            Ok(m) => {
                ok += 1;
                let entry = catalog
                    .find(m.id.as_str())
                    .expect("a succeeded backup is listed");
                assert_eq!(entry.state, BackupState::Complete);
                // Restore through the flaky endpoint: a clean result or a clean failure.
                let target = world.path(&format!("flaky-{i}.db"));
                let from = world
                    .lb
                    .select(&catalog, &Selector::Id(m.id.to_string()))
                    .unwrap();
                let (_, r) = world
                    .lb
                    .restore(
                        from,
                        restore_opts(&world, &target),
                        Arc::new(NoProgress),
                        Default::default(),
                    )
                    .await;
                match r {
                    Ok(report) => {
                        assert!(report.ok());
                        assert_eq!(common::content_digest(&target), source);
                        restores_ok += 1;
                    }
                    Err(e) => {
                        assert!(!e.to_string().contains('\n'), "{e}");
                        assert!(!target.exists(), "a failed restore leaves no target");
                        restores_failed += 1;
                    }
                }
            }
            Err(e) => {
                failed += 1;
                let msg = e.to_string();
                eprintln!("  backup failed cleanly: {msg}");
                assert!(!msg.contains('\n') && !msg.is_empty(), "{msg}");
                assert!(
                    !matches!(e, Error::Cancelled),
                    "a fault is not a cancellation: {msg}"
                );
                if let Some(entry) = catalog.find(&id) {
                    assert_ne!(entry.state, BackupState::Complete, "{msg}");
                }
            }
        }
    }
    // Every complete backup in the bucket restores and matches, read without faults.
    let catalog = direct.lb.catalog().await.unwrap();
    for b in catalog.complete() {
        let target = direct.path(&format!("check-{}.db", b.id));
        let from = direct
            .lb
            .select(&catalog, &Selector::Id(b.id.to_string()))
            .unwrap();
        let (_, r) = direct
            .lb
            .restore(
                from,
                restore_opts(&direct, &target),
                Arc::new(NoProgress),
                Default::default(),
            )
            .await;
        assert!(r.unwrap().ok());
        assert_eq!(common::content_digest(&target), source);
    }
    let c = &proxy.counts;
    eprintln!(
        "flaky S3 (share {share}, {attempts} attempts): {trials} backups, {ok} succeeded, {failed} failed cleanly; restores {restores_ok} ok, {restores_failed} failed cleanly; {} connections, faults: {} x 503, {} resets, {} cuts, {} slow",
        c.connections.load(Ordering::Relaxed),
        c.unavailable.load(Ordering::Relaxed),
        c.resets.load(Ordering::Relaxed),
        c.cuts.load(Ordering::Relaxed),
        c.slow.load(Ordering::Relaxed),
    );
    assert!(c.injected() >= trials, "faults were injected");
    assert_eq!(catalog.complete().count(), ok);
    ok
}

fn restore_opts(world: &World, target: &std::path::Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf().into(),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: true,
        drill: false,
        staging: world.lb.staging(),
        privileged: false,
    }
}

// ---- The first real cause, timeouts, resumed downloads, damaged uploads -------------------

/// A SQLite source big enough for a multipart upload (5 MiB parts in tests), so a failing
/// store stops the upload while the compressor is still sending.
fn big_world(home: &Path, storage: &str) -> PathBuf {
    common::make_sample_db(&home.join("app.db"), 1);
    common::add_random_blobs(&home.join("app.db"), 8);
    common::config_for(home, storage);
    home.join("lifeboat.toml")
}

/// `[storage]` for the test server at `endpoint` (the server itself or a proxy), with short
/// timeouts so a dead endpoint is found out in seconds.
fn s3_storage(endpoint: &str, bucket: &str, attempt_timeout: &str) -> String {
    format!(
        "[storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\nregion = \"us-east-1\"\npart_size_mib = 5\nmax_attempts = 2\nconnect_timeout = \"2s\"\nread_timeout = \"3s\"\nstall_timeout = \"2s\"\nattempt_timeout = \"{attempt_timeout}\"\n"
    )
}

fn s3_cmd(home: &Path, config: &Path, secret: &str, args: &[&str]) -> std::process::Command {
    let mut c = lifeboat(home);
    c.arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret);
    c
}

/// The failed backup's `error:` line on stderr; it never hides the cause behind the upload.
fn backup_error_line(out: &Out) -> String {
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    // Wherever the reason is printed, it is not the upload's own stop.
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("upload stopped"), "{all}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: backup of app failed: "))
        .unwrap_or_else(|| panic!("no error line on stderr: {}", out.stderr))
        .to_owned();
    assert!(!line.contains("upload stopped"), "{line}");
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_real_cause_of_a_failed_upload_is_reported() {
    let server = S3Server::start().await;
    let denying = S3Server::start_denying_writes("app/").await;
    let hook = crate::ops::Receiver::start(0).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: [(&str, String, &str, &str); 4] = [
        (
            "wrong credentials",
            server.endpoint.clone(),
            common::BUCKET,
            "access denied",
        ),
        (
            "wrong bucket",
            server.endpoint.clone(),
            "no-such-bucket",
            "bucket no-such-bucket does not exist",
        ),
        (
            "unreachable endpoint",
            dead.clone(),
            common::BUCKET,
            "cannot reach",
        ),
        (
            "policy denies the data prefix",
            denying.endpoint.clone(),
            common::BUCKET,
            "access denied",
        ),
    ];
    for (what, endpoint, bucket, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let hook_toml = format!("[[webhook]]\nurl = \"{}\"\n", hook.url);
        // Only settings every version knows: this test must fail on main for its own reason.
        let config = big_world(
            home,
            &format!(
                "[storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\nregion = \"us-east-1\"\npart_size_mib = 5\nmax_attempts = 2\n"
            ),
        );
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).unwrap() + &hook_toml,
        )
        .unwrap();
        let secret = if what == "wrong credentials" {
            "not-the-secret"
        } else {
            SECRET_KEY
        };
        let out = run(s3_cmd(home, &config, secret, &["backup", "app"])).await;
        let line = backup_error_line(&out);
        assert!(line.contains(needle), "{what}: {line}");
        // The job record says the same, and so does the alert.
        let jobs = run(s3_cmd(home, &config, secret, &["jobs", "--json"])).await;
        let jobs: serde_json::Value = serde_json::from_str(&jobs.stdout).unwrap();
        let error = jobs[0]["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(needle), "{what}: job record says {error:?}");
        let alert = hook
            .bodies()
            .into_iter()
            .rev()
            .find(|b| b["event"] == "job_failed")
            .unwrap_or_else(|| panic!("{what}: no alert"));
        assert!(
            alert["error"].as_str().unwrap_or_default().contains(needle),
            "{what}: alert says {alert}"
        );
        eprintln!("first cause: {what}: {line}");
    }
}

/// Starts `lifeboat backup` through `proxy` and waits until its upload has begun.
async fn backup_in_flight(home: &Path, config: &Path, server: &S3Server) -> std::process::Child {
    let mut cmd = s3_cmd(home, config, SECRET_KEY, &["backup", "app"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The test server keeps a multipart upload's parts as `.upload_id-…` files.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while crate::faults::files_named(server.dir.path(), ".upload_id-").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

async fn finish(child: std::process::Child, within: Duration) -> Out {
    let waited = tokio::time::timeout(
        within,
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("still waiting after {within:?}: no timeout fired"))
    .unwrap();
    Out {
        code: waited.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&waited.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&waited.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_or_dead_endpoint_fails_the_backup_in_one_clear_line() {
    for fault in [Fault::Freeze, Fault::Down] {
        let server = S3Server::start().await;
        let proxy = FaultProxy::start(&server.endpoint).await;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let config = big_world(home, &s3_storage(&proxy.endpoint, common::BUCKET, "8s"));
        let child = backup_in_flight(home, &config, &server).await;
        let before = proxy.connections.load(Ordering::SeqCst);
        proxy.set(fault, 0);
        // Two attempts of at most 8 s each, plus backoff: well within a minute.
        let out = finish(child, Duration::from_secs(90)).await;
        let line = backup_error_line(&out);
        assert!(line.contains("cannot reach"), "{fault:?}: {line}");
        if fault == Fault::Freeze {
            assert!(
                line.contains("stalled") || line.contains("no answer within"),
                "{line}"
            );
            assert!(
                proxy.connections.load(Ordering::SeqCst) > before,
                "the stalled request was retried on a new connection"
            );
        }
        // Nothing that looks like a backup, and the job says why.
        proxy.set(Fault::Pass, 0);
        let direct = World::new(server.store("").await);
        let catalog = direct.lb.catalog().await.unwrap();
        assert_eq!(catalog.complete().count(), 0);
        eprintln!("{fault:?} endpoint mid-upload: exit {}, {line}", out.code);
    }
}

/// A slow link is not a dead one: a part that takes longer to send than the read timeout
/// still goes up (only a stall or the attempt timeout stops an upload).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_is_not_timed_out() {
    let server = S3Server::start().await;
    let proxy = FaultProxy::start(&server.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = big_world(home, &s3_storage(&proxy.endpoint, common::BUCKET, "60s"));
    // 5 MiB parts at 0.5 MiB/s: the answer to each comes 10 s after it started, more than
    // three times the read timeout (socket buffers take what is sent for a few seconds).
    proxy.set(
        Fault::Throttle {
            per_second: 1 << 19,
        },
        0,
    );
    let out = run(s3_cmd(home, &config, SECRET_KEY, &["backup", "app"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_download_resumes_where_a_reset_or_a_stall_left_it() {
    let server = S3Server::start().await;
    let world = World::new(server.store("").await);
    common::add_random_blobs(&world.path("app.db"), 8);
    let source = common::content_digest(&world.path("app.db"));
    let (_, m) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let m = m.unwrap();
    assert!(m.data.stored_bytes > 6 << 20);

    let proxy = FaultProxy::start(&server.endpoint).await;
    let mut opts = server.options("");
    opts.endpoint = Some(proxy.endpoint.clone());
    opts.timeouts.stall = Duration::from_secs(2);
    let through: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(opts).await);
    let flaky = lifeboat::Lifeboat::with_parts(
        world.lb.config().clone(),
        through,
        world.lb.state().clone(),
        lifeboat::clock::Clock::system(),
    );
    for (i, fault) in [
        Fault::CutAnswers { after: 1 << 20 },
        Fault::StallAnswers { after: 3 << 20 },
    ]
    .into_iter()
    .enumerate()
    {
        let ranged = proxy.ranged_gets.load(Ordering::SeqCst);
        let injected = proxy.injected();
        // Each break costs one attempt: fewer breaks than attempts in a row resume.
        proxy.set(fault, 1);
        let catalog = flaky.catalog().await.unwrap();
        let from = flaky
            .select(&catalog, &Selector::Id(m.id.to_string()))
            .unwrap();
        let target = world.path(&format!("resumed-{i}.db"));
        let (job, r) = flaky
            .restore(
                from,
                restore_opts(&world, &target),
                Arc::new(NoProgress),
                Default::default(),
            )
            .await;
        let report = r.unwrap_or_else(|e| panic!("{fault:?}: {e}\n{:#?}", job.log));
        assert!(report.ok() && report.checksum_verified);
        assert_eq!(common::content_digest(&target), source, "{fault:?}");
        assert_eq!(proxy.injected(), injected + 1, "{fault:?} was injected");
        assert!(
            proxy.ranged_gets.load(Ordering::SeqCst) > ranged,
            "{fault:?}: the download resumed with a range request: {:#?}",
            job.log
        );
        eprintln!("{fault:?} during a restore download: resumed, content identical");
    }
    // An endpoint that breaks every answer: no progress, a clean failure, no target.
    let catalog = flaky.catalog().await.unwrap();
    let from = flaky
        .select(&catalog, &Selector::Id(m.id.to_string()))
        .unwrap();
    proxy.set(Fault::CutAnswers { after: 100 }, 1000);
    let target = world.path("never.db");
    let (_, r) = flaky
        .restore(
            from,
            restore_opts(&world, &target),
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let e = r.unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("cannot reach"), "{e}");
    assert!(!target.exists());
}

/// A store that answers `200 OK` for an object it then does not hold (or holds damaged)
/// never makes a backup look complete: every upload is read back before the next step.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_the_store_did_not_keep_whole_is_never_ok() {
    let server = S3Server::start().await;
    let proxy = FaultProxy::start(&server.endpoint).await;
    let mut opts = server.options("");
    opts.endpoint = Some(proxy.endpoint.clone());
    let world = World::new(Arc::new(S3Store::connect(opts).await));
    common::add_random_blobs(&world.path("app.db"), 8);
    let direct = World::new(server.store("").await);

    // The manifest (the one single-request upload of this backup) is acknowledged and lost.
    proxy.set(Fault::AckWithoutStoring, 1);
    let (job, r) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let e = r
        .expect_err("an upload the store lost was taken for done")
        .to_string();
    assert!(
        e.contains("manifest.json") && e.contains("not stored whole"),
        "{e}"
    );
    assert_eq!(proxy.injected(), 1);
    assert_eq!(job.error.as_deref(), Some(e.as_str()));
    assert_eq!(direct.lb.catalog().await.unwrap().complete().count(), 0);

    // Every upload damaged on the way: refused by the store, one line, nothing complete.
    proxy.set(Fault::CorruptUploads, 1000);
    let (_, r) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    let e = r.unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("data.sqlite.zst"), "{e}");
    assert_eq!(direct.lb.catalog().await.unwrap().complete().count(), 0);
    // Back to a faithful store: the next backup is whole and verifies.
    proxy.set(Fault::Pass, 0);
    let (_, r) = world
        .lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            Default::default(),
        )
        .await;
    r.unwrap();
    let catalog = direct.lb.catalog().await.unwrap();
    assert_eq!(catalog.complete().count(), 1);
    let b = catalog.complete().next().unwrap();
    let (_, v) = direct
        .lb
        .verify(b, Arc::new(NoProgress), Default::default())
        .await;
    v.unwrap();
    eprintln!(
        "stores that lie: a lost upload and {} damaged ones, each refused or caught, none ok",
        proxy.injected() - 1
    );
}
