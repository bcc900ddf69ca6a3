//! `lifeboat daemon` and `lifeboat schedule`.

use std::path::Path;
use std::process::ExitCode;

use color_eyre::eyre::{Result, bail};
use lifeboat::daemon::{Daemon, Event};
use lifeboat::schedule::Schedules;
use lifeboat::wal::stream::StreamEvent;
use lifeboat::when::short_age;
use tokio_util::sync::CancellationToken;

use super::output::print_json;
use super::table::{Align, Table};

pub async fn daemon(config_path: &Path, cancel: CancellationToken) -> Result<ExitCode> {
    let lb = super::open(config_path).await?;
    let daemon = Daemon::new(lb)?.on_event(print_event);
    if daemon.schedules().entries.is_empty() && daemon.streamed_sources().is_empty() {
        bail!(
            "no schedules in {} and no WAL to stream: add e.g. `[source.schedule] backup = \"0 2 * * *\"` under a [[source]]",
            config_path.display()
        );
    }
    // SIGTERM (systemd, Kubernetes), SIGINT and SIGHUP cancel `cancel` (see `signals`): the
    // running job is cancelled and recorded as such, then the daemon exits 0.
    daemon.run(cancel).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: Event) {
    let line = match event {
        Event::Started { schedules } => format!("daemon started with {schedules} schedule(s)"),
        Event::Next { at } => format!("next run at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
        Event::JobStarted {
            source,
            kind,
            attempt,
        } => format!("{kind} of {source} started (attempt {attempt})"),
        Event::JobDone { record, attempt } => {
            let took = record.duration().map(short_age).unwrap_or_default();
            let why = record
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "{} of {} {} in {took} (attempt {attempt}, job {}){why}",
                record.kind,
                record.source.as_deref().unwrap_or("-"),
                record.status,
                record.id
            )
        }
        Event::NotStarted {
            source,
            kind,
            attempt,
            error,
        } => format!("{kind} of {source} did not start (attempt {attempt}): {error}"),
        Event::Retry {
            source,
            kind,
            attempt,
            after,
        } => format!(
            "{kind} of {source}: attempt {attempt} in {}",
            short_age(after)
        ),
        Event::Alerted {
            event,
            source,
            delivered,
        } => format!(
            "alert {} for {} delivered to {delivered} webhook(s)",
            event.label(),
            source.as_deref().unwrap_or("-")
        ),
        Event::Stream(e) => stream_line(e),
        Event::Stopped => "daemon stopped".into(),
    };
    // Sources and errors may quote what the bucket holds.
    println!("{}", super::output::esc(line));
}

fn stream_line(e: StreamEvent) -> String {
    match e {
        StreamEvent::Started { source, slot, tool } => format!(
            "WAL streaming of {source} started ({tool}{})",
            slot.map(|s| format!(", slot {s}")).unwrap_or_default()
        ),
        StreamEvent::Pushed {
            source,
            name,
            already,
        } => format!(
            "streamed WAL {name} of {source} {}",
            if already {
                "was already archived"
            } else {
                "stored"
            }
        ),
        StreamEvent::PushFailed {
            source,
            name,
            error,
        } => format!("streamed WAL {name} of {source} not stored, kept in the spool: {error}"),
        StreamEvent::Exited {
            source,
            error,
            restart_in,
        } => format!(
            "WAL streaming of {source} stopped: {error}; restarting in {}s",
            restart_in.as_secs()
        ),
    }
}

pub fn schedule(config_path: &Path, count: usize, json: bool) -> Result<ExitCode> {
    let config = lifeboat::config::Config::load(config_path)?;
    let schedules = Schedules::from_config(&config).map_err(lifeboat::Error::Invalid)?;
    let runs = schedules.upcoming(
        lifeboat::clock::Clock::from_env()
            .map_err(lifeboat::Error::Invalid)?
            .now(),
        count,
    );
    if json {
        print_json(&runs)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no schedules: add a [source.schedule] table under a [[source]]");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        ("UTC", Align::Left),
        ("LOCAL", Align::Left),
        ("SOURCE", Align::Left),
        ("JOB", Align::Left),
        ("CRON", Align::Left),
    ]);
    for r in &runs {
        table.row(vec![
            r.at.format("%Y-%m-%d %H:%M:%S").to_string().into(),
            r.local.clone().into(),
            r.source.clone().into(),
            r.kind.to_string().into(),
            r.expr.clone().into(),
        ]);
    }
    println!("schedule time zone: {}", schedules.tz);
    print!("{}", table.render(false));
    Ok(ExitCode::SUCCESS)
}
