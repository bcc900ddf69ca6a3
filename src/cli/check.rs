//! `lifeboat check`: health as a Nagios/Icinga plugin. Exit 0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN (no config, bucket unreachable), one status line with perfdata.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use lifeboat::Lifeboat;
use lifeboat::config::Config;
use lifeboat::escape;
use lifeboat::health::{self, Level, SourceHealth};
use lifeboat::stores::StoreHealth;
use lifeboat::when::short_age;
use serde_json::json;

const UNKNOWN: u8 = 3;

pub async fn run(config_path: &Path, source: Option<String>, json: bool) -> ExitCode {
    match assess(config_path, source).await {
        Ok((sources, stores)) => {
            let level = sources
                .iter()
                .map(|h| h.level)
                .chain(stores.iter().map(|s| s.level))
                .max()
                .unwrap_or(Level::Ok);
            let code = match level {
                Level::Ok => 0,
                Level::Warning => 1,
                Level::Critical => 2,
            };
            // Findings quote job errors, which may come from another host's record.
            let summary = summary(&sources, &stores);
            if json {
                let body = json!({
                    "status": status_word(Some(level)),
                    "code": code,
                    "summary": summary,
                    "sources": sources,
                    "stores": stores,
                });
                let text = serde_json::to_string_pretty(&body).unwrap_or_default();
                println!("{}", escape::json(&text));
            } else {
                println!(
                    "LIFEBOAT {} - {} | {}",
                    status_word(Some(level)),
                    escape::term(&summary),
                    escape::term(&perfdata(&sources, &stores))
                );
            }
            ExitCode::from(code)
        }
        Err(e) => {
            let line = escape::term(&e.to_string()).into_owned();
            if json {
                let body =
                    json!({ "status": "UNKNOWN", "code": UNKNOWN, "summary": e.to_string() });
                let text = serde_json::to_string_pretty(&body).unwrap_or_default();
                println!("{}", escape::json(&text));
            } else {
                println!("LIFEBOAT UNKNOWN - {line}");
            }
            ExitCode::from(UNKNOWN)
        }
    }
}

/// Per-source health and, with more than one store, per-store health.
async fn assess(
    config_path: &Path,
    source: Option<String>,
) -> Result<(Vec<SourceHealth>, Vec<StoreHealth>), lifeboat::Error> {
    let config = Config::load(config_path)?;
    let lb = Lifeboat::open(config).await?;
    if let Some(s) = &source {
        lb.source(s)?;
    }
    let catalog = lb.catalog().await?;
    // Backups may run on another machine: their job records reach us through the bucket.
    lb.sync_jobs().await?;
    let jobs = lb.jobs()?;
    let mut sources = health::assess(lb.config(), &catalog.rows(), &jobs, lb.clock().now());
    // Point-in-time sources: WAL gaps, unrestorable base backups, archiving behind.
    for h in &mut sources {
        let Some(pitr) = lb.config().source(&h.source).and_then(|s| s.pitr.clone()) else {
            continue;
        };
        let status = lb.pitr_status(&h.source).await?;
        let now = lb.clock().now();
        for f in lifeboat::pitr::archive_findings(&status, pitr.max_archive_lag(), now) {
            let level = if f.critical {
                Level::Critical
            } else {
                Level::Warning
            };
            h.level = h.level.max(level);
            h.findings.push(health::Finding {
                level,
                message: f.message,
            });
        }
    }
    let stores = if lb.stores().len() > 1 {
        lifeboat::stores::health(lb.config(), &catalog, lb.clock().now())
    } else {
        Vec::new()
    };
    if let Some(s) = &source {
        sources.retain(|h| &h.source == s);
    }
    if sources.is_empty() {
        return Err(lifeboat::Error::Invalid(
            "no sources configured and none found in the bucket".into(),
        ));
    }
    Ok((sources, stores))
}

fn status_word(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Ok) => "OK",
        Some(Level::Warning) => "WARNING",
        Some(Level::Critical) => "CRITICAL",
        None => "UNKNOWN",
    }
}

/// The worst sources' findings first, then the stores that are behind; all-OK says how
/// fresh each source is.
fn summary(sources: &[SourceHealth], stores: &[StoreHealth]) -> String {
    let mut bad: Vec<&SourceHealth> = sources.iter().filter(|h| h.level > Level::Ok).collect();
    bad.sort_by_key(|h| std::cmp::Reverse(h.level));
    let mut bad_stores: Vec<&StoreHealth> = stores.iter().filter(|s| s.level > Level::Ok).collect();
    bad_stores.sort_by_key(|s| std::cmp::Reverse(s.level));
    let store_text = bad_stores
        .iter()
        .map(|s| match &s.error {
            Some(_) => format!("store {}: {}", s.store, s.summary()),
            None => format!(
                "store {}: {} backup(s) behind, {} older than the copies grace{}",
                s.store,
                s.behind,
                s.overdue,
                s.newest_behind
                    .as_ref()
                    .map(|id| format!(" (newest {id})"))
                    .unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>();
    if bad.is_empty() && !store_text.is_empty() {
        return store_text.join("; ");
    }
    if bad.is_empty() {
        let fresh: Vec<String> = sources
            .iter()
            .map(|h| match h.age {
                Some(age) => format!("{} newest {}", h.source, short_age(age)),
                None => h.source.clone(),
            })
            .collect();
        return format!("{} source(s) ok: {}", sources.len(), fresh.join(", "));
    }
    bad.iter()
        .map(|h| {
            let reasons: Vec<&str> = h.findings.iter().map(|f| f.message.as_str()).collect();
            format!("{}: {}", h.source, reasons.join(", "))
        })
        .chain(store_text)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `'label'=value[UOM];warn;crit;min;max` per measure and source.
fn perfdata(sources: &[SourceHealth], stores: &[StoreHealth]) -> String {
    let mut out = String::new();
    for h in sources {
        let s = &h.source;
        let secs = |d: Option<chrono::Duration>| {
            d.map_or("U".to_owned(), |d| format!("{}s", d.num_seconds().max(0)))
        };
        let _ = write!(
            out,
            "'{s}_backup_age'={};{};{};0; ",
            secs(h.age),
            h.rpo.num_seconds(),
            h.rpo_critical.num_seconds()
        );
        let _ = write!(
            out,
            "'{s}_failure_rate'={:.0}%;;;0;100 ",
            h.failure_rate() * 100.0
        );
        let quota = h.quota.map_or(String::new(), |q| q.to_string());
        let _ = write!(out, "'{s}_stored'={}B;;;0;{quota} ", h.stored_bytes);
        let _ = write!(out, "'{s}_backups'={};;;0; ", h.backups);
        if let Some(interval) = h.drill_interval {
            let _ = write!(
                out,
                "'{s}_drill_age'={};{};{};0; ",
                secs(h.drill_age),
                interval.num_seconds(),
                interval.num_seconds() * 2
            );
        }
    }
    for st in stores {
        let s = &st.store;
        let _ = write!(
            out,
            "'store_{s}_up'={};;;0;1 'store_{s}_verified'={};;;0; 'store_{s}_behind'={};;;0; 'store_{s}_overdue'={};;1;0; ",
            u8::from(st.error.is_none()),
            st.verified,
            st.behind,
            st.overdue
        );
    }
    out.trim_end().to_owned()
}
