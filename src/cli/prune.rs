//! `prune`, `pin` and `unpin`.

use std::process::ExitCode;

use clap::Args;
use color_eyre::eyre::{Result, WrapErr};
use lifeboat::Lifeboat;
use lifeboat::manifest::Trigger;
use lifeboat::prune::{PruneOptions, PrunePlan};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{esc, print_json, size};
use super::table::{Align, GREEN, Table, YELLOW, colored};

#[derive(Args)]
pub struct PruneArgs {
    /// Only this source (also one in the bucket that this host does not configure).
    #[arg(long)]
    source: Option<String>,
    /// Show the plan; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Prune a source even though its newest backup failed.
    #[arg(long)]
    force: bool,
    /// Record the job as scheduled (for cron and timers).
    #[arg(long)]
    scheduled: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(lb: &Lifeboat, args: PruneArgs, cancel: CancellationToken) -> Result<ExitCode> {
    let opts = PruneOptions {
        source: args.source.clone(),
        force: args.force,
        trigger: Some(if args.scheduled {
            Trigger::Scheduled
        } else {
            Trigger::Manual
        }),
        only: None,
    };
    if args.dry_run {
        let plan = lb
            .prune_plan(&opts)
            .await
            .wrap_err("cannot plan the prune")?;
        if args.json {
            print_json(&json!({ "dry_run": true, "plan": plan }))?;
        } else {
            print_plan(&plan, &lb.stores()[0].name, super::color());
            println!(
                "dry run: nothing deleted; {} backup(s) and {} upload(s) would go, freeing {}",
                plan.pruned_count(),
                plan.aborts().count(),
                size(plan.freed_bytes())
            );
        }
        print_pitr(
            &lb.pitr_prune(args.source.as_deref(), false).await?,
            true,
            args.json,
        );
        return Ok(ExitCode::SUCCESS);
    }
    let pitr = lb.pitr_prune(args.source.as_deref(), true).await?;
    print_pitr(&pitr, false, args.json);
    let (job, result) = lb.prune(&opts, cancel).await;
    match result {
        Ok(report) => {
            if args.json {
                print_json(&json!({ "dry_run": false, "job": job, "report": report }))?;
            } else {
                print_plan(&report.plan, &lb.stores()[0].name, super::color());
                println!(
                    "deleted {} backup(s), aborted {} upload(s), freed {} (job {})",
                    report.deleted,
                    report.aborted,
                    size(report.freed_bytes),
                    job.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                print_json(&json!({ "dry_run": false, "job": job, "error": e.to_string() }))?;
            }
            Err(e).wrap_err_with(|| format!("prune failed (job {})", job.id))
        }
    }
}

fn print_plan(plan: &PrunePlan, default_store: &str, color: bool) {
    let tz = plan
        .timezone
        .parse::<chrono_tz::Tz>()
        .unwrap_or(chrono_tz::UTC);
    if !plan.stores.is_empty() {
        println!("store {}\n", esc(default_store));
    }
    print_sources(&plan.sources, tz, color);
    for u in &plan.uploads {
        println!(
            "incomplete upload {}  started {}  {} ({})",
            esc(&u.upload.key),
            u.upload
                .started
                .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
            if u.abort { "abort" } else { "keep" },
            esc(&u.reason)
        );
    }
    for st in &plan.stores {
        println!("store {}\n", esc(&st.store));
        match &st.error {
            Some(e) => println!("  not pruned: it could not be read: {}\n", esc(e)),
            None => print_sources(&st.sources, tz, color),
        }
        for u in st.uploads.iter().filter(|u| u.abort) {
            println!(
                "incomplete upload {}  abort ({})",
                esc(&u.upload.key),
                esc(&u.reason)
            );
        }
    }
}

fn print_sources(sources: &[lifeboat::retention::SourcePlan], tz: chrono_tz::Tz, color: bool) {
    for sp in sources {
        println!("{}: {}", esc(&sp.source), esc(&sp.policy));
        if let Some(why) = &sp.skipped {
            println!("  SKIPPED: {}", esc(why));
        }
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("TIME", Align::Left),
            ("STATE", Align::Left),
            ("STORED", Align::Right),
            ("ACTION", Align::Left),
            ("REASONS", Align::Left),
        ]);
        for d in &sp.decisions {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            t.row(vec![
                d.backup.id.as_str().into(),
                d.backup
                    .time
                    .with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
                    .into(),
                d.backup.state.to_string().into(),
                size(d.backup.stored_bytes).into(),
                if d.keep {
                    colored("keep", GREEN)
                } else {
                    colored("prune", YELLOW)
                },
                reasons.join(", ").into(),
            ]);
        }
        if t.is_empty() {
            println!("  no backups");
        } else {
            print!("{}", t.render(color));
        }
        println!(
            "  {} kept, {} to prune, {} to free\n",
            sp.decisions.len() - sp.pruned().count(),
            sp.pruned().count(),
            size(sp.freed_bytes())
        );
    }
}

pub async fn pin(lb: &Lifeboat, id: &str, on: bool, json: bool) -> Result<ExitCode> {
    let catalog = lb.catalog().await.wrap_err("cannot read the catalog")?;
    let (key, changed) = if on {
        (lb.pin(&catalog, id).await?.dir(), true)
    } else {
        (id.to_owned(), lb.unpin(&catalog, id).await?)
    };
    if json {
        print_json(&json!({ "id": id, "pinned": on, "changed": changed }))?;
    } else if on {
        println!("pinned {key}: no prune will delete it");
    } else if changed {
        println!("unpinned {id}: the retention policy decides about it again");
    } else {
        println!("{id} was not pinned");
    }
    Ok(ExitCode::SUCCESS)
}

/// Base backups and WAL of point-in-time sources: what goes, and the restorable window
/// before and after.
fn print_pitr(plans: &[lifeboat::pitr::PitrPrune], dry_run: bool, json: bool) {
    let show = |w: &Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>| match w
    {
        Some((from, to)) => format!(
            "{} .. {}",
            from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "none".into(),
    };
    for p in plans {
        if json {
            let _ = print_json(&json!({ "dry_run": dry_run, "pitr": p }));
            continue;
        }
        println!(
            "{} (point-in-time): {} {} base backup(s) and {} WAL file(s), keeping the newest {}; restorable {} before, {} after",
            esc(&p.source),
            if dry_run { "would delete" } else { "deleted" },
            p.delete_bases.len(),
            p.delete_wal.len(),
            p.keep_base,
            show(&p.window_before),
            show(&p.window_after)
        );
    }
}
