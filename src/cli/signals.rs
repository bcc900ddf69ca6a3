//! Stop signals for commands: SIGINT (Ctrl-C), SIGTERM (how systemd and Kubernetes stop a
//! job) and SIGHUP (a closed terminal) all cancel the running job the same way: the
//! pipeline aborts its upload and removes its files, the job is recorded as cancelled. A
//! second signal stops at once; what that leaves is swept by the next run.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The first stop signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Cancels `cancel` on the first stop signal and exits on the second.
pub fn watch(cancel: CancellationToken) -> std::io::Result<()> {
    let mut signals = [
        (libc::SIGINT, signal(SignalKind::interrupt())?),
        (libc::SIGTERM, signal(SignalKind::terminate())?),
        (libc::SIGHUP, signal(SignalKind::hangup())?),
    ];
    tokio::spawn(async move {
        let first = next(&mut signals).await;
        RECEIVED.store(first, Ordering::Relaxed);
        eprintln!(
            "{}: stopping, cleaning up (send it again to stop at once)",
            name(first)
        );
        cancel.cancel();
        let second = next(&mut signals).await;
        eprintln!(
            "{}: stopped at once; the next run removes what was left",
            name(second)
        );
        std::process::exit(128 + second);
    });
    Ok(())
}

async fn next(signals: &mut [(i32, Signal); 3]) -> i32 {
    let [(a, sa), (b, sb), (c, sc)] = signals;
    tokio::select! {
        _ = sa.recv() => *a,
        _ = sb.recv() => *b,
        _ = sc.recv() => *c,
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "interrupted",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
