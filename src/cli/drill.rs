//! `lifeboat drill`, `lifeboat verify --deep` and `lifeboat report drills`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use color_eyre::eyre::{Result, WrapErr};
use lifeboat::catalog::BackupEntry;
use lifeboat::drill::{Drill, DrillOptions};
use lifeboat::jobs::JobRecord;
use lifeboat::report::{self, DrillReport};
use lifeboat::{Lifeboat, when};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{self, esc};
use super::progress::CliProgress;

#[derive(Args)]
pub struct DrillArgs {
    /// The source to drill (default: the only source with backups).
    #[arg(long)]
    source: Option<String>,
    /// The backup to drill (default: the newest complete backup).
    #[arg(long)]
    backup: Option<String>,
    /// Keep the scratch database instead of dropping it.
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ReportWhat {
    /// The history of restore drills stored in the bucket, for an audit.
    Drills {
        /// Only drills started at or after this time ("2026-01-01", "-90d", ...).
        #[arg(long, allow_hyphen_values = true)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn drill(
    lb: &Lifeboat,
    args: DrillArgs,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let opts = DrillOptions {
        source: args.source,
        backup: args.backup,
        keep: args.keep,
        save_report: true,
    };
    let label = opts
        .backup
        .clone()
        .or(opts.source.clone())
        .unwrap_or_else(|| "drill".into());
    let progress = Arc::new(CliProgress::new(label, quiet || args.json));
    let (record, result) = lb.drill(&opts, progress.clone(), cancel).await?;
    progress.finish();
    let drill = result.wrap_err_with(|| format!("drill {} failed", record.id))?;
    if args.json {
        let report = DrillReport::new(&record, &drill.restore, drill.backup_time);
        output::print_json(&json!({
            "report": report,
            "stored_at": drill.report_key.as_ref().map(|k| k.to_string()),
            "kept": drill.kept,
        }))?;
    } else {
        print_drill(&record, &drill);
    }
    Ok(exit(drill.passed()))
}

fn print_drill(record: &JobRecord, drill: &Drill) {
    let r = &drill.restore;
    let report = DrillReport::new(record, r, drill.backup_time);
    println!(
        "drill {} of backup {} ({}): {}",
        record.id,
        esc(&r.restored),
        esc(r.source.as_deref().unwrap_or("foreign object")),
        report.result.to_uppercase()
    );
    for row in r.diff.findings() {
        println!(
            "  {} {}: expected {:?}, restored {:?}",
            row.status.label(),
            esc(&row.table),
            row.expected,
            row.restored
        );
    }
    println!(
        "  {} tables, {} differ; RTO {:.1} s; RPO {}",
        r.diff.rows.len(),
        r.diff.findings().count(),
        report.rto_seconds,
        report
            .rpo_seconds
            .and_then(chrono::Duration::try_seconds)
            .map_or("-".into(), when::short_age)
    );
    match &drill.kept {
        Some(t) => println!("  scratch database kept: {}", esc(t)),
        None => println!("  scratch database dropped"),
    }
    if let Some(k) = &drill.report_key {
        println!("  report stored: {k} (and .json)");
    }
}

/// `verify --deep`: download, hash, trial restore and diff, with no report kept.
pub async fn verify_deep(
    lb: &Lifeboat,
    entries: &[BackupEntry],
    quiet: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let mut failed = 0;
    let mut results = Vec::new();
    for entry in entries {
        let opts = DrillOptions {
            source: Some(entry.source.clone()),
            backup: Some(entry.id.to_string()),
            keep: false,
            save_report: false,
        };
        let progress = Arc::new(CliProgress::new(entry.id.to_string(), quiet || json));
        let (record, result) = lb.drill(&opts, progress.clone(), cancel.clone()).await?;
        progress.finish();
        let line = match &result {
            Ok(d) if d.passed() => format!(
                "{} ok: checksum verified, restored, {} tables match",
                entry.id,
                d.restore.diff.rows.len()
            ),
            Ok(d) => format!(
                "{} FAILED: restored, but {} table(s) differ from the manifest",
                entry.id,
                d.restore.diff.findings().count()
            ),
            Err(e) => format!("{} FAILED: {}", entry.id, esc(e)),
        };
        if !result.as_ref().is_ok_and(Drill::passed) {
            failed += 1;
        }
        if !json {
            println!("{line}");
        }
        results.push(record);
        if cancel.is_cancelled() {
            break;
        }
    }
    if json {
        output::print_json(&results)?;
    } else if entries.is_empty() {
        println!("no complete backups to verify");
    }
    Ok(exit(failed == 0))
}

pub async fn report(lb: &Lifeboat, what: ReportWhat) -> Result<ExitCode> {
    match what {
        ReportWhat::Drills { since, json } => {
            let since = since
                .map(|t| when::parse_point(&t, lb.clock().now()))
                .transpose()?;
            let (drills, warnings) =
                report::drill_history(lb.store().as_ref(), Some(lb.state()), since)
                    .await
                    .wrap_err("cannot read the drill reports")?;
            for w in &warnings {
                eprintln!("warning: {}", esc(w));
            }
            if json {
                output::print_json(&drills)?;
            } else {
                print!("{}", report::drills_markdown(&drills));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
