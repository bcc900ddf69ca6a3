//! `lifeboat wal`: the archive_command and restore_command of point-in-time recovery, and
//! the state of the chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use color_eyre::eyre::Result;
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::engine::postgres::physical::scratch::ScratchCluster;
use lifeboat::pipeline::crypt::Seal;
use lifeboat::pitr::PitrStatus;
use lifeboat::wal::{self, archive, prefetch};
use tokio_util::sync::CancellationToken;

use super::output::esc;

#[derive(Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file: `archive_command = 'lifeboat --config FILE wal push %p'`.
    /// Exits 0 only once the file is stored and confirmed, or was already stored with the
    /// same contents; a different file under the same name is refused. The next files
    /// PostgreSQL marked ready are pushed alongside, so their own calls return at once.
    Push {
        /// The file PostgreSQL hands over (%p).
        path: PathBuf,
        #[arg(long)]
        source: Option<String>,
    },
    /// Fetch one archived WAL file: `restore_command = 'lifeboat --config FILE wal get %f %p'`.
    /// Exits 1 when the file is not archived (recovery then knows the WAL ended).
    Get {
        /// The file's name (%f).
        name: String,
        /// Where to write it (%p).
        dest: PathBuf,
        #[arg(long)]
        source: Option<String>,
        /// Serve segments prefetched into this directory, and keep the next ones there
        /// (a directory the restore made; `lifeboat restore --time` passes it).
        #[arg(long)]
        spool: Option<PathBuf>,
    },
    /// Fill a spool with the segments after the one recovery asked for last (started by
    /// `wal get --spool`).
    #[command(hide = true)]
    Prefetch {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        spool: PathBuf,
    },
    /// The archive's state: WAL held per timeline, gaps, and the window of times each base
    /// backup can restore to.
    Status {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop and remove a scratch cluster a point-in-time restore left running.
    DropScratch {
        /// The directory the restore printed.
        dir: PathBuf,
    },
}

pub async fn run(
    config_path: &Path,
    what: WalCommand,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    // Only the config and the store: these run as the database server's OS user, which need
    // not reach lifeboat's state database.
    let config = Config::load(config_path)?;
    match what {
        WalCommand::Push { path, source } => {
            let source = wal::pitr_source(&config, source.as_deref())?;
            let store = wal::open_source_store(&config, source).await?;
            let seal = Seal::from_config(config.encryption.as_ref())?.map(std::sync::Arc::new);
            let clock = Clock::from_env().map_err(lifeboat::Error::Invalid)?;
            let opts = archive::PushOptions {
                compression_level: config.backup.compression_level,
                seal,
                now: clock.now(),
            };
            archive::push_with_ready(store.as_ref(), &source.name, &path, &opts, &cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Status { source, json } => {
            let source = wal::pitr_source(&config, source.as_deref())?;
            let store = wal::open_source_store(&config, source).await?;
            let status =
                lifeboat::pitr::status(store.as_ref(), &source.name, config.encryption.as_ref())
                    .await?;
            if json {
                super::output::print_json(&status)?;
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Prefetch { source, spool } => {
            let source = wal::pitr_source(&config, source.as_deref())?;
            let store = wal::open_source_store(&config, source).await?;
            prefetch::run(
                store.as_ref(),
                &source.name,
                &spool,
                config.encryption.as_ref(),
                &cancel,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::DropScratch { dir } => {
            let bin_dir = config.sources.iter().find_map(|s| s.bin_dir.clone());
            let cluster = ScratchCluster::open(&dir, bin_dir.as_deref())?;
            cluster.drop_cluster()?;
            println!("stopped and removed {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Get {
            name,
            dest,
            source,
            spool,
        } => {
            let source = wal::pitr_source(&config, source.as_deref())?;
            // Before the store is opened: a spooled segment is a rename away.
            if let Some(spool) = &spool
                && prefetch::take(spool, &name, &dest)?
            {
                prefetch_next(config_path, &source.name, spool, &name, &dest);
                return Ok(ExitCode::SUCCESS);
            }
            let store = wal::open_source_store(&config, source).await?;
            let found = archive::get(
                store.as_ref(),
                &source.name,
                &name,
                &dest,
                config.encryption.as_ref(),
                &cancel,
            )
            .await?;
            if found {
                if let Some(spool) = &spool {
                    prefetch_next(config_path, &source.name, spool, &name, &dest);
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{} is not archived for source {}",
                    lifeboat::escape::term(&name),
                    source.name
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Starts `wal prefetch` in the background unless one runs. It outlives this command, which
/// PostgreSQL waits for; a failure here only costs speed, so it is said and not returned.
fn prefetch_next(config_path: &Path, source: &str, spool: &Path, name: &str, dest: &Path) {
    let start = match prefetch::note_served(spool, name, dest) {
        Ok(start) => start,
        Err(e) => {
            eprintln!(
                "lifeboat: no WAL prefetch: {}",
                lifeboat::escape::term(&e.to_string())
            );
            return;
        }
    };
    if !start {
        return;
    }
    let spawned = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .arg("--config")
            .arg(config_path)
            .args(["wal", "prefetch", "--source", source, "--spool"])
            .arg(spool)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    });
    if let Err(e) = spawned {
        eprintln!("lifeboat: no WAL prefetch: {e}");
    }
}

fn print_status(s: &PitrStatus) {
    let show =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!("WAL archive of {}", esc(&s.source));
    if s.chain.ranges.is_empty() {
        println!("  no WAL archived");
    }
    for r in &s.chain.ranges {
        println!(
            "  timeline {}: {} .. {}{}",
            r.timeline,
            r.first,
            r.last,
            r.archived_until
                .map(|t| format!(" (archived until {})", show(t)))
                .unwrap_or_default()
        );
    }
    for g in &s.chain.gaps {
        println!(
            "  GAP on timeline {}: {} .. {} ({} segment(s) missing)",
            g.timeline, g.from, g.to, g.missing
        );
    }
    for b in &s.bases {
        match &b.window {
            Ok(w) => println!(
                "  base backup {}: restorable from {} to {}{}",
                b.base.id,
                show(w.from),
                w.to.map(show).unwrap_or_else(|| "?".into()),
                w.stopped_by
                    .as_ref()
                    .map(|g| format!(" (stopped by the gap at {})", g.from))
                    .unwrap_or_default()
            ),
            Err(u) => println!(
                "  base backup {}: NOT restorable, WAL segment {} is missing",
                b.base.id, u.missing
            ),
        }
    }
    for (key, why) in &s.unreadable {
        println!("  unreadable {}: {}", esc(key), esc(why));
    }
}
