//! WAL streaming under the daemon: `pg_receivewal` writes the source's WAL into a spool
//! directory as the server produces it, and each segment it completes is pushed like
//! `wal push` pushes one (same objects, same records, same refusal of a different file),
//! then removed from the spool. The segment in progress (`.partial`) is never pushed.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::archive::{self, PushOptions, Pushed};
use super::names::WalName;
use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::engine::postgres::{ChildGuard, server_version, source_conn, tool_failure, tools};
use crate::error::{Error, Result};
use crate::pipeline::crypt::Seal;
use crate::storage::ObjectStore;

/// A `pg_receivewal` that ran this long without failing is healthy again: the next failure
/// restarts it after the shortest delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Creating a slot is one round trip; a server that does not answer in this is down.
const SLOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a streamer tells its front end.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Started {
        source: String,
        slot: Option<String>,
        tool: String,
    },
    Pushed {
        source: String,
        name: String,
        already: bool,
    },
    /// A completed segment could not be pushed: kept in the spool (and retried, unless the
    /// archive holds a different file under its name).
    PushFailed {
        source: String,
        name: String,
        error: String,
    },
    /// `pg_receivewal` ended (or could not start); restarted after `restart_in`.
    Exited {
        source: String,
        error: String,
        restart_in: Duration,
    },
}

pub struct Streamer {
    pub source: SourceConfig,
    pub store: Arc<dyn ObjectStore>,
    /// Where `pg_receivewal` writes; kept across restarts so nothing it flushed is lost.
    pub spool: PathBuf,
    pub compression_level: i32,
    pub seal: Option<Arc<Seal>>,
    pub clock: Clock,
    /// How often the spool is looked at for completed segments.
    pub poll: Duration,
}

/// The spool of `source` beside the state database.
pub fn spool_dir(state_path: &std::path::Path, source: &str) -> PathBuf {
    state_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .join("wal-stream")
        .join(source)
}

impl Streamer {
    /// Streams until `cancel` fires, restarting `pg_receivewal` with backoff whenever it
    /// ends. Returns once the child is stopped.
    pub async fn run(&self, on: &(dyn Fn(StreamEvent) + Send + Sync), cancel: &CancellationToken) {
        let mut refused = HashSet::new();
        let mut last_error = None;
        let mut failures = 0u32;
        while !cancel.is_cancelled() {
            let started = tokio::time::Instant::now();
            let why = self
                .session(on, &mut refused, &mut last_error, cancel)
                .await;
            if cancel.is_cancelled() {
                break;
            }
            if started.elapsed() > HEALTHY_AFTER {
                failures = 0;
            }
            failures += 1;
            let restart_in = backoff(failures);
            on(StreamEvent::Exited {
                source: self.source.name.clone(),
                error: why.to_string(),
                restart_in,
            });
            tokio::select! {
                _ = tokio::time::sleep(restart_in) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    /// One run of `pg_receivewal`, pushing what it completes; returns why it ended.
    async fn session(
        &self,
        on: &(dyn Fn(StreamEvent) + Send + Sync),
        refused: &mut HashSet<String>,
        last_error: &mut Option<String>,
        cancel: &CancellationToken,
    ) -> Error {
        // What an earlier run completed goes first.
        self.drain(on, refused, last_error, cancel).await;
        let (child, tool) = match self.spawn(cancel).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        on(StreamEvent::Started {
            source: self.source.name.clone(),
            slot: self.slot(),
            tool,
        });
        let wait = child.wait(cancel);
        tokio::pin!(wait);
        let ended = loop {
            tokio::select! {
                r = &mut wait => break r,
                _ = tokio::time::sleep(self.poll) => {
                    self.drain(on, refused, last_error, cancel).await;
                }
            }
        };
        // The segment it finished last before it ended.
        self.drain(on, refused, last_error, cancel).await;
        match ended {
            Ok((status, stderr)) => tool_failure("pg_receivewal", status, &stderr),
            Err(e) => e,
        }
    }

    fn slot(&self) -> Option<String> {
        self.source
            .pitr
            .as_ref()
            .and_then(|p| p.stream_slot(&self.source.name))
    }

    async fn spawn(&self, cancel: &CancellationToken) -> Result<(ChildGuard, String)> {
        let conn = source_conn(&self.source)?;
        let client = conn.connect().await?;
        let (_, major) = server_version(&client).await?;
        drop(client);
        let tool = tools::find("pg_receivewal", self.source.bin_dir.as_deref(), major)?;
        let slot = self.slot();
        let create = self.source.pitr.as_ref().is_some_and(|p| p.create_slot);
        if let (Some(slot), true) = (&slot, create) {
            let mut cmd = conn.command(&tool.path);
            cmd.args([
                "--create-slot",
                "--if-not-exists",
                "--no-password",
                "--slot",
            ])
            .arg(slot)
            .stdout(Stdio::null());
            let child = ChildGuard::spawn(cmd, "pg_receivewal --create-slot")?;
            let (status, stderr) = tokio::time::timeout(SLOT_TIMEOUT, child.wait(cancel))
                .await
                .map_err(|_| {
                    Error::Tool(format!(
                        "pg_receivewal --create-slot did not answer in {}s",
                        SLOT_TIMEOUT.as_secs()
                    ))
                })??;
            if !status.success() {
                return Err(tool_failure("pg_receivewal --create-slot", status, &stderr));
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.spool)
            .map_err(Error::io(format!("cannot create {}", self.spool.display())))?;
        let mut cmd = conn.command(&tool.path);
        // --no-loop: a lost connection ends it, and the restart (with backoff, reported)
        // is ours.
        cmd.arg("--directory")
            .arg(&self.spool)
            .args(["--no-loop", "--no-password"])
            .stdout(Stdio::null());
        if let Some(slot) = &slot {
            cmd.arg("--slot").arg(slot);
        }
        let child = ChildGuard::spawn(cmd, "pg_receivewal")?;
        Ok((child, format!("{} {}", tool.path.display(), tool.version)))
    }

    /// Pushes every completed file in the spool, oldest first, removing each once stored.
    async fn drain(
        &self,
        on: &(dyn Fn(StreamEvent) + Send + Sync),
        refused: &mut HashSet<String>,
        last_error: &mut Option<String>,
        cancel: &CancellationToken,
    ) {
        let mut names: Vec<String> = match std::fs::read_dir(&self.spool) {
            Ok(d) => d
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| {
                    matches!(
                        WalName::parse(n),
                        Some(WalName::Segment { .. } | WalName::History(_))
                    )
                })
                .collect(),
            Err(_) => return,
        };
        names.sort();
        for name in names {
            if cancel.is_cancelled() {
                return;
            }
            if refused.contains(&name) {
                continue;
            }
            let path = self.spool.join(&name);
            let opts = PushOptions {
                compression_level: self.compression_level,
                seal: self.seal.clone(),
                now: self.clock.now(),
            };
            match archive::push(self.store.as_ref(), &self.source.name, &path, &opts, cancel).await
            {
                Ok(pushed) => {
                    *last_error = None;
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!("cannot remove {}: {e}", path.display());
                    }
                    on(StreamEvent::Pushed {
                        source: self.source.name.clone(),
                        name,
                        already: pushed == Pushed::AlreadyStored,
                    });
                }
                Err(Error::Cancelled) => return,
                Err(e) => {
                    let error = e.to_string();
                    // A file refused for what it is (another file archived under its name,
                    // not a segment) will be refused again: said once, kept for a human.
                    let permanent = matches!(e, Error::Invalid(_));
                    if permanent {
                        refused.insert(name.clone());
                    }
                    if last_error.as_deref() != Some(error.as_str()) {
                        on(StreamEvent::PushFailed {
                            source: self.source.name.clone(),
                            name,
                            error: error.clone(),
                        });
                        *last_error = Some(error);
                    }
                    if !permanent {
                        // The store is failing: the next look tries again, oldest first.
                        return;
                    }
                }
            }
        }
    }
}

/// 1 s, 2 s, 4 s, ... up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
