//! `lifeboat promote`: a proven scratch copy in place of its source, confirmed by typing the
//! source's name.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use color_eyre::eyre::{Result, bail};
use lifeboat::Lifeboat;
use lifeboat::promote::PromotePlan;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{esc, print_json};

#[derive(Args)]
pub struct PromoteArgs {
    /// The proven copy: the SQLite file or the PostgreSQL database a restore made.
    copy: String,
    /// The source it replaces (default: the one it was restored from, which it must be).
    #[arg(long)]
    source: Option<String>,
    /// Confirm without being asked, by giving the source's name.
    #[arg(long, value_name = "SOURCE")]
    confirm: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn run(lb: &Lifeboat, args: PromoteArgs, cancel: CancellationToken) -> Result<ExitCode> {
    let confirm = match &args.confirm {
        Some(c) => c.clone(),
        None => {
            if args.json || !std::io::stdin().is_terminal() {
                bail!(
                    "promote replaces a live database: give the source's name with --confirm SOURCE, or run it in a terminal to be asked"
                );
            }
            let plan = lb.plan_promote(&args.copy, args.source.as_deref()).await?;
            print_plan(&plan, "will");
            eprint!(
                "type the source's name ({}) to promote, anything else to stop: ",
                esc(&plan.source)
            );
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if line.trim() != plan.source {
                bail!("not confirmed; nothing was changed");
            }
            line
        }
    };
    let (job, result) = lb
        .promote(&args.copy, args.source.as_deref(), &confirm, cancel)
        .await;
    let promoted = result?;
    if args.json {
        print_json(&json!({ "ok": true, "job_id": job.id, "promoted": promoted }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_plan(&promoted.plan, "done");
    if promoted.sessions_ended > 0 {
        println!("sessions   {} ended", promoted.sessions_ended);
    }
    println!("job        {}", esc(&job.id));
    Ok(ExitCode::SUCCESS)
}

/// What a promotion does (`will`) or did (`done`).
fn print_plan(plan: &PromotePlan, tense: &str) {
    let will = tense == "will";
    println!(
        "{}   {} (backup {}, proved by job {} at {})",
        if will { "promote " } else { "promoted" },
        esc(&plan.copy),
        esc(plan.backup_id.as_deref().unwrap_or("-")),
        esc(&plan.proved_by),
        plan.proved_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!(
        "{}  {} (source {})",
        if will { "replacing " } else { "in place of" },
        esc(&plan.replaces),
        esc(&plan.source)
    );
    match &plan.kept_as {
        Some(old) => println!(
            "old        kept as {}: drop it yourself once it is no longer needed",
            esc(old)
        ),
        None => println!("old        none: the source does not exist"),
    }
    if let Some(owner) = &plan.owner {
        println!("owner      {}", esc(owner));
    }
    if plan.skipped.is_empty() {
        println!("rights     owners and GRANTs as the backup has them");
    } else {
        println!(
            "skipped    {} (left out when the copy was restored)",
            esc(plan.skipped.join(", "))
        );
    }
    if will && plan.engine == lifeboat::manifest::EngineKind::Postgres && plan.source_exists {
        println!("sessions   every session on the source is ended first");
    }
}
