//! The point-in-time side of `restore`, and `basebackup`.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use color_eyre::eyre::{Result, bail};
use lifeboat::Lifeboat;
use lifeboat::engine::postgres::physical::scratch::RecoveryTarget;
use lifeboat::pitr::{PitrReport, PitrRestoreOptions};
use lifeboat::wal::names::Lsn;
use tokio_util::sync::CancellationToken;

use super::RestoreArgs;
use super::output::{esc, print_json};
use super::progress::CliProgress;

/// The recovery target the flags ask for; `None` for an ordinary restore.
pub(super) fn target_of(args: &RestoreArgs, now: DateTime<Utc>) -> Result<Option<RecoveryTarget>> {
    Ok(
        match (&args.time, &args.lsn, &args.restore_point, args.end_of_wal) {
            (Some(t), ..) => Some(RecoveryTarget::Time(lifeboat::when::parse_point(t, now)?)),
            (_, Some(l), ..) => {
                Some(RecoveryTarget::Lsn(Lsn::parse(l).ok_or_else(|| {
                    color_eyre::eyre::eyre!("{l:?} is not an LSN like 0/3000028")
                })?))
            }
            (_, _, Some(n), _) => Some(RecoveryTarget::Name(n.clone())),
            (_, _, _, true) => Some(RecoveryTarget::EndOfWal),
            _ => {
                if args.pause || args.base.is_some() || args.amcheck {
                    bail!(
                        "--pause, --base and --amcheck are for a point-in-time restore: add --time, --lsn, --name or --end-of-wal"
                    );
                }
                None
            }
        },
    )
}

pub(super) async fn restore(
    lb: &Lifeboat,
    config_path: &std::path::Path,
    args: &RestoreArgs,
    target: RecoveryTarget,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let source = lifeboat::wal::pitr_source(lb.config(), args.source.as_deref())?;
    if args.to.is_some() || args.force_target.is_some() || args.privileged {
        bail!(
            "a point-in-time restore always creates a new scratch cluster: --to, --force-target and --privileged do not apply"
        );
    }
    let base = match &args.base {
        Some(b) => Some(b.parse().map_err(|e| color_eyre::eyre::eyre!("{e}"))?),
        None => None,
    };
    let exe = std::env::current_exe()?;
    let config = std::fs::canonicalize(config_path)?;
    let opts = PitrRestoreOptions {
        target,
        pause: args.pause,
        base,
        wal_get: lifeboat::pitr::wal_get_command(&exe, &config, &source.name)?,
        compare_live: args.compare_live,
        amcheck: args.amcheck,
        drop: args.drop,
        timeout: std::time::Duration::from_secs(6 * 3600),
    };
    let quiet = args.json;
    let log = move |line: String| {
        if !quiet {
            eprintln!("{}", esc(line));
        }
    };
    let report = lb.pitr_restore(&source.name, &opts, &log, &cancel).await?;
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    let amcheck_failed = report.amcheck.as_ref().is_some_and(|p| !p.is_empty());
    Ok(if amcheck_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &PitrReport) {
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let rec = &r.recovered;
    println!(
        "restored {} to {} from base backup {}",
        r.source,
        esc(&rec.target),
        rec.base
    );
    if let Some(line) = &rec.stop_line {
        println!("  PostgreSQL: {}", esc(line));
    }
    println!(
        "  {} on timeline {}, WAL replayed to {}, last commit {}",
        if rec.paused {
            "paused at the target (read-only)"
        } else {
            "promoted"
        },
        rec.timeline,
        rec.replay_lsn
            .map(|l| l.to_string())
            .unwrap_or_else(|| "?".into()),
        rec.last_commit
            .map(show)
            .unwrap_or_else(|| "none replayed".into()),
    );
    println!(
        "  window of base backup {}: {} .. {}",
        rec.base,
        show(rec.window.from),
        rec.window.to.map(show).unwrap_or_else(|| "?".into())
    );
    let logical = r.logical_backup.as_deref().unwrap_or("none");
    println!(
        "  {:<40} {:>12} {:>12} {:>12}",
        "table", "restored", "logical", "live"
    );
    for row in &r.diff.rows {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "  {:<40} {:>12} {:>12} {:>12}",
            esc(&row.table),
            n(row.restored),
            n(row.expected),
            n(row.live)
        );
    }
    println!("  (logical: counts of backup {logical}, the newest taken before the target)");
    if let Some(problems) = &r.amcheck {
        if problems.is_empty() {
            println!("  amcheck: every B-tree index checked, no problem");
        } else {
            for p in problems {
                println!("  amcheck: {}", esc(p));
            }
        }
    }
    if r.dropped {
        println!("dropped the scratch cluster {}", rec.cluster.dir.display());
    } else {
        println!("connect: psql \"{}\"", r.conninfo);
        println!(
            "remove:  lifeboat wal drop-scratch {}",
            rec.cluster.dir.display()
        );
    }
}

pub(super) async fn basebackup(
    lb: &Lifeboat,
    source: Option<String>,
    json: bool,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let source = lifeboat::wal::pitr_source(lb.config(), source.as_deref())?
        .name
        .clone();
    let progress = Arc::new(CliProgress::new(
        format!("base backup of {source}"),
        quiet || json,
    ));
    let log = move |line: String| {
        if !json && !quiet {
            eprintln!("{}", esc(line));
        }
    };
    let result = lb
        .base_backup(&source, progress.clone(), &log, &cancel)
        .await;
    progress.finish();
    let m = result?;
    if json {
        print_json(&m)?;
    } else {
        println!(
            "base backup {} of {}: {} bytes stored ({} raw), {} files, WAL {}..{} on timeline {}",
            m.id,
            m.source,
            m.data.stored_bytes,
            m.data.raw_bytes,
            m.files,
            m.start_lsn,
            m.end_lsn,
            m.timeline
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn verify_base(
    lb: &Lifeboat,
    source: Option<String>,
    id: &str,
    json: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let source = lifeboat::wal::pitr_source(lb.config(), source.as_deref())?
        .name
        .clone();
    let (job, result) = lb.verify_base(&source, id, &cancel).await;
    let verified = result?;
    if json {
        print_json(&job)?;
    } else {
        println!(
            "base backup {} of {}: OK, {} bytes match the stored SHA-256, {} files match backup_manifest (job {})",
            verified.base.id, source, verified.base.data.stored_bytes, verified.files, job.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
