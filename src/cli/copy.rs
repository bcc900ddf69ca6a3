//! `copy`: bring every store up to date, or say what that would take.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};
use lifeboat::copy::{CopyOptions, CopyPlan, CopyReport};
use lifeboat::manifest::Trigger;
use lifeboat::{Error, Lifeboat};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{esc, print_json, size};
use super::progress::CliProgress;
use super::table::{Align, GREEN, Table, YELLOW, colored};

#[derive(Args)]
pub struct CopyArgs {
    /// Only this store.
    #[arg(long)]
    store: Option<String>,
    /// Only this source's backups (job records and drill reports wait for a full run).
    #[arg(long)]
    source: Option<String>,
    /// Say what would be copied and how many bytes; copy nothing.
    #[arg(long)]
    dry_run: bool,
    /// Record the job as scheduled (for cron and timers).
    #[arg(long)]
    scheduled: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(
    lb: &Lifeboat,
    args: CopyArgs,
    quiet: bool,
    cancel: CancellationToken,
) -> Result<ExitCode> {
    let opts = CopyOptions {
        store: args.store.clone(),
        source: args.source.clone(),
        trigger: Some(if args.scheduled {
            Trigger::Scheduled
        } else {
            Trigger::Manual
        }),
    };
    if args.dry_run {
        let catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
        let plan = lb.copy_plan(&catalog, &opts).await?;
        if args.json {
            print_json(&json!({ "dry_run": true, "plan": plan }))?;
        } else {
            print_plan(&plan, super::color());
            println!("dry run: nothing copied; {}", totals(&plan, "would "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Arc::new(CliProgress::new("copy", quiet || args.json));
    let (job, result) = lb.copy(&opts, progress.clone(), cancel).await;
    progress.finish();
    let (report, failed): (CopyReport, bool) = match result {
        Ok(report) => (report, false),
        Err(Error::CopyFailed(report)) => (*report, true),
        Err(e) => {
            if args.json {
                print_json(&json!({ "dry_run": false, "job": job, "error": e.to_string() }))?;
            }
            return Err(e).wrap_err_with(|| format!("copy failed (job {})", job.id));
        }
    };
    if args.json {
        print_json(&json!({ "dry_run": false, "job": job, "report": report }))?;
    } else {
        print_plan(&report.plan, super::color());
        println!(
            "copied {} backup(s) and {} record(s) ({} sent), checked {} cop{} (job {})",
            report.copied.len(),
            report.records,
            size(report.bytes),
            report.checked.len(),
            if report.checked.len() == 1 {
                "y"
            } else {
                "ies"
            },
            job.id
        );
        for f in &report.failures {
            println!(
                "FAILED  store {}: {}: {}",
                f.store,
                esc(&f.what),
                esc(&f.error)
            );
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A store's error text can quote what a server said: no control characters reach the
/// terminal.
fn totals(plan: &CopyPlan, would: &str) -> String {
    let backups: usize = plan
        .stores
        .iter()
        .flat_map(|s| &s.backups)
        .filter(|b| b.action != lifeboat::copy::CopyAction::Check)
        .count();
    let checks: usize = plan
        .stores
        .iter()
        .flat_map(|s| &s.backups)
        .filter(|b| b.action == lifeboat::copy::CopyAction::Check)
        .count();
    let records: usize = plan.stores.iter().map(|s| s.records.len()).sum();
    if plan.is_empty() {
        return "every store is up to date".into();
    }
    format!(
        "{would}copy {backups} backup(s) and {records} record(s), {} in all, and {would}read back {checks} cop{} ({}) to check {}",
        size(plan.send_bytes()),
        if checks == 1 { "y" } else { "ies" },
        size(plan.check_bytes()),
        if checks == 1 { "it" } else { "them" }
    )
}

fn print_plan(plan: &CopyPlan, color: bool) {
    for sp in &plan.stores {
        println!("store {}  {}", sp.store, sp.location);
        if let Some(e) = &sp.error {
            println!("  cannot be read: {}\n", esc(e));
            continue;
        }
        let mut t = Table::new(&[
            ("ACTION", Align::Left),
            ("SOURCE", Align::Left),
            ("ID", Align::Left),
            ("STORED", Align::Right),
            ("FROM", Align::Left),
        ]);
        for b in &sp.backups {
            t.row(vec![
                match b.action {
                    lifeboat::copy::CopyAction::Check => colored(b.action.label(), GREEN),
                    _ => colored(b.action.label(), YELLOW),
                },
                b.source.as_str().into(),
                b.id.as_str().into(),
                size(b.bytes).into(),
                if b.action == lifeboat::copy::CopyAction::Check {
                    "-".into()
                } else {
                    b.from.join(", ").into()
                },
            ]);
        }
        if !t.is_empty() {
            print!("{}", t.render(color));
        }
        if !sp.records.is_empty() {
            println!(
                "  {} record(s) (job history, drill reports), {}",
                sp.records.len(),
                size(sp.records.iter().map(|r| r.bytes).sum())
            );
        }
        for dir in &sp.unavailable {
            println!("  {}: no store holds a good copy to copy from", esc(dir));
        }
        if sp.is_empty() && sp.unavailable.is_empty() {
            println!("  up to date");
        }
        println!();
    }
}
