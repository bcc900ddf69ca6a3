//! Base backups and restorable windows in `list` and `show`. Only sources with
//! `[source.pitr]` are read: the WAL listing costs nothing for the others.

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;
use lifeboat::Lifeboat;
use lifeboat::pitr::{BaseWindow, PitrStatus};
use serde_json::json;

use super::output::{esc, size};
use super::table::{Align, GREEN, RED, Table, colored};

/// Each point-in-time source's status, or why it could not be read.
pub(super) type Views = Vec<(String, Result<PitrStatus, String>)>;

pub(super) async fn load(lb: &Lifeboat, only: Option<&str>) -> Views {
    let mut out = Vec::new();
    for src in lb.config().sources.iter().filter(|s| s.pitr.is_some()) {
        if only.is_some_and(|o| o != src.name) {
            continue;
        }
        let status = lb.pitr_status(&src.name).await.map_err(|e| e.to_string());
        out.push((src.name.clone(), status));
    }
    out
}

fn full(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time of a base backup's window: the clock time, with the day when it is not the day
/// the backup was taken.
fn clock(t: DateTime<Utc>, day: DateTime<Utc>) -> String {
    if t.date_naive() == day.date_naive() {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%m-%d %H:%M:%S").to_string()
    }
}

/// `restorable 02:00:13 → 10:44:51`, or why there is no window.
pub(super) fn window_text(b: &BaseWindow) -> String {
    let day = b.base.finished_at;
    match &b.window {
        Ok(w) => format!(
            "restorable {} → {}{}",
            clock(w.from, day),
            w.to.map_or("?".into(), |t| clock(t, day)),
            w.stopped_by
                .as_ref()
                .map(|g| format!(" (WAL gap at {} after it)", g.from))
                .unwrap_or_default()
        ),
        Err(u) => format!("no window: WAL gap at {}", u.missing),
    }
}

/// One line per source: the span any of its base backups can restore to.
fn summary(source: &str, status: &PitrStatus) -> String {
    let bases = status.bases.len();
    match status.restorable() {
        Some((from, to)) => format!(
            "{}: restorable {} → {} UTC ({bases} base backup{}, {} gap{})",
            esc(source),
            full(from),
            full(to),
            if bases == 1 { "" } else { "s" },
            status.chain.gaps.len(),
            if status.chain.gaps.len() == 1 {
                ""
            } else {
                "s"
            }
        ),
        None if bases == 0 => format!(
            "{}: no restorable window: no base backup (run `lifeboat basebackup {}`)",
            esc(source),
            esc(source)
        ),
        None => format!(
            "{}: no restorable window: no base backup reaches archived WAL",
            esc(source)
        ),
    }
}

pub(super) fn print_list(views: &Views, color: bool) {
    for (source, status) in views {
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                println!("\npoint-in-time {}: cannot read: {}", esc(source), esc(e));
                continue;
            }
        };
        println!("\npoint-in-time recovery of {}", esc(source));
        if !status.bases.is_empty() {
            let mut t = Table::new(&[
                ("BASE BACKUP", Align::Left),
                ("TAKEN", Align::Left),
                ("STORED", Align::Right),
                ("TIMELINE", Align::Right),
                ("WINDOW", Align::Left),
            ]);
            for b in &status.bases {
                let text = window_text(b);
                t.row(vec![
                    b.base.id.to_string().into(),
                    b.base
                        .started_at
                        .format("%Y-%m-%d %H:%M")
                        .to_string()
                        .into(),
                    size(b.base.data.stored_bytes).into(),
                    b.base.timeline.to_string().into(),
                    colored(text, if b.window.is_ok() { GREEN } else { RED }),
                ]);
            }
            print!("{}", t.render(color));
        }
        for (key, why) in &status.unreadable {
            println!("  unreadable {}: {}", esc(key), esc(why));
        }
        println!("{}", summary(source, status));
    }
}

pub(super) fn base_json(b: &BaseWindow) -> serde_json::Value {
    json!({
        "id": b.base.id,
        "started_at": b.base.started_at,
        "finished_at": b.base.finished_at,
        "stored_bytes": b.base.data.stored_bytes,
        "raw_bytes": b.base.data.raw_bytes,
        "timeline": b.base.timeline,
        "window": b.window.as_ref().ok(),
        "unrestorable": b.window.as_ref().err(),
    })
}

pub(super) fn list_json(views: &Views) -> serde_json::Value {
    json!(
        views
            .iter()
            .map(|(source, status)| match status {
                Ok(s) => json!({
                    "source": source,
                    "restorable": s.restorable().map(|(from, to)| json!({"from": from, "to": to})),
                    "bases": s.bases.iter().map(base_json).collect::<Vec<_>>(),
                    "gaps": s.chain.gaps,
                    "unreadable": s.unreadable,
                }),
                Err(e) => json!({ "source": source, "error": e }),
            })
            .collect::<Vec<_>>()
    )
}

/// The base backup named `id` or `source/id` among the point-in-time sources, with its
/// source's status; `None` when no such base backup exists.
pub(super) async fn find(lb: &Lifeboat, id: &str) -> Result<Option<(PitrStatus, usize)>> {
    let (only, bare) = match id.rsplit_once('/') {
        Some((s, i)) => (Some(s), i),
        None => (None, id),
    };
    for (_, status) in load(lb, only).await {
        let status = status.map_err(|e| color_eyre::eyre::eyre!("{e}"))?;
        if let Some(i) = status.bases.iter().position(|b| b.base.id.as_str() == bare) {
            return Ok(Some((status, i)));
        }
    }
    Ok(None)
}

pub(super) fn print_show(status: &PitrStatus, b: &BaseWindow, now: DateTime<Utc>) {
    let m = &b.base;
    println!("base backup {}", m.id);
    println!("source      {}", esc(&status.source));
    println!("kind        PostgreSQL base backup (point-in-time recovery)");
    println!(
        "taken       {} -> {}, {} ago",
        m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.finished_at.format("%H:%M:%S"),
        lifeboat::when::short_age(now - m.started_at)
    );
    println!(
        "server      PostgreSQL {}, system {}, pg_basebackup {}",
        esc(&m.server_version),
        esc(&m.system_identifier),
        esc(&m.pg_basebackup_version)
    );
    println!(
        "wal         timeline {}, LSN {} .. {}, segments of {}",
        m.timeline,
        m.start_lsn,
        m.end_lsn,
        size(m.wal_segment_size)
    );
    println!(
        "size        {} raw, {} stored ({} level {}), {} files",
        size(m.data.raw_bytes),
        size(m.data.stored_bytes),
        esc(&m.data.compression),
        m.data.compression_level,
        m.files
    );
    println!("data        {}{}", m.dir(), esc(&m.data.key));
    println!("sha256      {}", esc(&m.data.sha256));
    println!(
        "encrypted   {}",
        m.encryption.as_ref().map_or("no".into(), |e| esc(format!(
            "{} to {}",
            e.scheme,
            e.recipients.join(", ")
        )))
    );
    match &b.window {
        Ok(w) => {
            println!(
                "window      restorable {} → {} UTC, on timeline {}",
                full(w.from),
                w.to.map_or("?".into(), full),
                w.timeline
            );
            println!("            LSN {} .. {}", w.from_lsn, w.to_lsn);
            if let Some(g) = &w.stopped_by {
                println!(
                    "            ends at a WAL gap: {} .. {} missing ({} segment(s))",
                    g.from, g.to, g.missing
                );
            }
            println!(
                "restore     lifeboat restore --source {} --base {} --time \"<a time in the window>\"",
                esc(&status.source),
                m.id
            );
        }
        Err(u) => println!(
            "window      none: WAL segment {} is not archived, so it cannot be restored",
            u.missing
        ),
    }
}

pub(super) fn show_json(status: &PitrStatus, b: &BaseWindow) -> serde_json::Value {
    json!({
        "kind": "base_backup",
        "source": status.source,
        "manifest": b.base,
        "window": b.window.as_ref().ok(),
        "unrestorable": b.window.as_ref().err(),
    })
}
