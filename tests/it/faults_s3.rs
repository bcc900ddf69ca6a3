//! An S3 endpoint that fails a share of requests: 503s, reset connections, connections cut
//! mid-transfer and slow responses, from a small proxy in front of the in-process server.
//! Backups either succeed through retries or fail with one clear line, and never leave a
//! complete-looking backup that does not restore.

use std::net::SocketAddr;
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

use crate::common::{self, S3Server, World};

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
