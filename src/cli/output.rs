//! What the subcommands print: tables for people, JSON for machines. Every string that came
//! from the bucket goes through [`esc`] (or a table cell, which escapes itself) on its way to
//! the terminal; JSON by serde, then [`lifeboat::escape::json`] for what serde leaves raw.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use color_eyre::eyre::Result;
use humansize::{BINARY, format_size};
use lifeboat::catalog::{BackupEntry, BackupState, Catalog, TimeSource};
use lifeboat::diff::RowStatus;
use lifeboat::jobs::{JobRecord, JobStatus};
use lifeboat::manifest::Manifest;
use lifeboat::pipeline::restore::RestoreReport;
use lifeboat::when::short_age;
use lifeboat::{Lifeboat, Verification};
use serde::Serialize;
use serde_json::json;

use super::table::{Align, GREEN, RED, Table, YELLOW, colored};

/// Any value's text, escaped for the terminal.
pub fn esc(value: impl std::fmt::Display) -> String {
    lifeboat::escape::term(&value.to_string()).into_owned()
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{}", lifeboat::escape::json(&text));
    Ok(())
}

pub(super) fn size(bytes: u64) -> String {
    format_size(bytes, BINARY)
}

fn time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // By hand: a strftime pattern is parsed again for every one of 100,000 lines.
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn secs(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds();
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        short_age(d)
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn backup_line(source: &str, job: &JobRecord, result: Result<&Manifest, &lifeboat::Error>) {
    match result {
        Ok(m) => println!(
            "ok      {source}  {}  {} tables, {} rows, {} -> {} in {}",
            m.id,
            m.tables.len(),
            count(m.total_rows()),
            size(m.data.raw_bytes),
            size(m.data.stored_bytes),
            secs(m.duration()),
        ),
        Err(e) => println!("FAILED  {source}  job {}: {}", job.id, esc(e)),
    }
}

pub fn backups_json(results: &[(JobRecord, Option<Manifest>)]) -> serde_json::Value {
    json!(
        results
            .iter()
            .map(|(job, m)| json!({ "job": job, "manifest": m }))
            .collect::<Vec<_>>()
    )
}

/// A backup's VERIFIED cell: a verification that passed before the backup was damaged proves
/// nothing about it now.
fn backup_verified(
    b: &BackupEntry,
    verified: Option<&Verification>,
    now: DateTime<Utc>,
) -> (String, Option<&'static str>) {
    match b.state {
        BackupState::Complete => verified_text(verified, now),
        BackupState::Damaged => ("damaged".into(), Some(RED)),
        BackupState::Orphan => ("-".into(), None),
    }
}

fn verified_text(v: Option<&Verification>, now: DateTime<Utc>) -> (String, Option<&'static str>) {
    match v {
        None => ("-".into(), None),
        Some(v) if v.ok => (format!("ok {} ago", short_age(now - v.at)), Some(GREEN)),
        Some(v) => (format!("FAILED {} ago", short_age(now - v.at)), Some(RED)),
    }
}

pub fn catalog(lb: &Lifeboat, catalog: &Catalog, color: bool) {
    let now = lb.clock().now();
    println!("bucket: {}", lb.store().location());
    let several = lb.stores().len() > 1;
    if several {
        stores_lines(catalog);
    }
    let mut headers = vec![
        ("ID", Align::Left),
        ("SOURCE", Align::Left),
        ("CREATED", Align::Left),
        ("AGE", Align::Right),
        ("RAW", Align::Right),
        ("STORED", Align::Right),
        ("TIME", Align::Right),
        ("TABLES", Align::Right),
        ("ROWS", Align::Right),
        ("ENC", Align::Left),
        ("VERIFIED", Align::Left),
    ];
    if several {
        headers.push(("COPIES", Align::Right));
    }
    headers.push(("STATE", Align::Left));
    let mut t = Table::new(&headers);
    let verified = lb.verifications();
    for b in &catalog.backups {
        let m = b.manifest.as_ref();
        let (vtext, vcolor) = backup_verified(b, verified.get(b.id.as_str()), now);
        let state = match b.state {
            BackupState::Complete if catalog.pinned(b) => colored("complete, pinned", GREEN),
            BackupState::Complete => colored("complete", GREEN),
            BackupState::Orphan => colored("orphan", YELLOW),
            BackupState::Damaged => colored("damaged", RED),
        };
        let mut cells = vec![
            b.id.to_string().into(),
            b.source.as_str().into(),
            time(b.time()).into(),
            short_age(now - b.time()).into(),
            m.map_or("-".into(), |m| size(m.data.raw_bytes)).into(),
            size(b.stored_bytes()).into(),
            m.map_or("-".into(), |m| secs(m.duration())).into(),
            m.map_or("-".into(), |m| m.tables.len().to_string()).into(),
            m.map_or("-".into(), |m| count(m.total_rows())).into(),
            m.map_or("-", |m| if m.encryption.is_some() { "age" } else { "-" })
                .into(),
            match vcolor {
                Some(c) => colored(vtext, c),
                None => vtext.into(),
            },
        ];
        if several {
            cells.push(copies_cell(b.copies.as_ref()));
        }
        cells.push(state);
        t.row(cells);
    }
    if t.is_empty() {
        println!("\nno backups yet: run `lifeboat backup`");
    } else {
        let complete = catalog.complete().count();
        println!("\n{} backups ({complete} complete)", catalog.backups.len());
        print!("{}", t.render(color));
    }
    for b in catalog.backups.iter().filter(|b| b.problem.is_some()) {
        println!(
            "  {} {}: {}",
            b.state,
            b.id,
            esc(b.problem.as_deref().unwrap_or_default())
        );
    }
    if !catalog.foreign.is_empty() {
        let mut t = Table::new(&[
            ("KEY", Align::Left),
            ("FORMAT", Align::Left),
            ("SIZE", Align::Right),
            ("TIME", Align::Left),
            ("FROM", Align::Left),
        ]);
        for f in &catalog.foreign {
            t.row(vec![
                f.meta.key.as_str().into(),
                f.format.to_string().into(),
                size(f.meta.size).into(),
                f.time.map_or("-".into(), time).into(),
                match f.time_source {
                    TimeSource::Name => "name",
                    TimeSource::Modified => "modified",
                }
                .into(),
            ]);
        }
        println!(
            "\n{} objects lifeboat did not write (restorable with `lifeboat restore KEY`)",
            catalog.foreign.len()
        );
        print!("{}", t.render(color));
    }
    if !catalog.unusable.is_empty() {
        let mut t = Table::new(&[
            ("KEY", Align::Left),
            ("SIZE", Align::Right),
            ("WHY", Align::Left),
        ]);
        for u in &catalog.unusable {
            t.row(vec![
                u.key.as_str().into(),
                size(u.size).into(),
                u.reason.as_str().into(),
            ]);
        }
        println!(
            "\n{} objects lifeboat skips (it neither reads nor restores them)",
            catalog.unusable.len()
        );
        print!("{}", t.render(color));
    }
    if !catalog.incomplete.is_empty() {
        println!(
            "\n{} incomplete uploads (never committed; not backups)",
            catalog.incomplete.len()
        );
        for u in &catalog.incomplete {
            println!(
                "  {}  started {}",
                esc(&u.key),
                u.started.map_or("-".into(), time)
            );
        }
    }
}

/// `2/3`, green when every store that should hold a verified copy does.
fn copies_cell(copies: Option<&lifeboat::stores::Copies>) -> super::table::Cell {
    match copies {
        None => "-".into(),
        Some(c) if c.verified() == 0 => colored(c.label(), RED),
        Some(c) if c.behind().next().is_some() => colored(c.label(), YELLOW),
        Some(c) => colored(c.label(), GREEN),
    }
}

/// One line per store: where it is and how it is doing.
fn stores_lines(catalog: &Catalog) {
    for l in &catalog.stores {
        let what = match &l.error {
            Some(e) => format!("UNREACHABLE: {}", esc(e.lines().next().unwrap_or_default())),
            None if l.owed.is_empty() => "up to date".to_owned(),
            None => format!("{} behind (`lifeboat copy`)", l.owed.len()),
        };
        println!("store {}: {}  {what}", l.store, l.location);
    }
}

/// Per store, the state of a backup's copy.
fn copies_text(c: &lifeboat::stores::Copies, now: DateTime<Utc>) -> String {
    let lines: Vec<String> = c
        .stores
        .iter()
        .map(|s| {
            let when = s
                .checked_at
                .map(|t| format!(" {} ago", short_age(now - t)))
                .unwrap_or_default();
            let behind = if s.owed && s.state != lifeboat::stores::CopyState::Verified {
                " (behind)"
            } else {
                ""
            };
            format!("{} {}{when}{behind}", s.store, s.state.label())
        })
        .collect();
    format!("{}: {}", c.label(), lines.join(", "))
}

/// A backup for `show --json`.
pub fn entry_json(lb: &Lifeboat, b: &BackupEntry, pinned: bool) -> serde_json::Value {
    let jobs = lb
        .state()
        .jobs_for_backup(b.id.as_str())
        .unwrap_or_default();
    let verified = lifeboat::newest_verifications(&jobs).remove(b.id.as_str());
    backup_json(
        lb,
        b,
        pinned,
        verified.as_ref(),
        &jobs.iter().collect::<Vec<_>>(),
    )
}

fn backup_json(
    lb: &Lifeboat,
    b: &BackupEntry,
    pinned: bool,
    verified: Option<&Verification>,
    jobs: &[&JobRecord],
) -> serde_json::Value {
    json!({
        "copies": b.copies,
        "id": b.id,
        "source": b.source,
        "state": b.state,
        "pinned": pinned,
        "problem": b.problem,
        "time": b.time(),
        "stored_bytes": b.stored_bytes(),
        "objects": b.objects,
        "manifest": b.manifest.as_deref(),
        "authenticity": b.manifest.as_ref().map(|m| lb.authenticity(m)),
        // The newest verification of a backup, only while it is complete.
        "verified": verified.filter(|_| b.state == BackupState::Complete),
        "jobs": jobs.iter()
            .map(|j| json!({"id": j.id, "kind": j.kind, "status": j.status, "started_at": j.started_at}))
            .collect::<Vec<_>>(),
    })
}

pub fn catalog_json(lb: &Lifeboat, catalog: &Catalog) -> serde_json::Value {
    // One read of the job history for every backup, not one per backup.
    let history = lb.jobs().unwrap_or_default();
    let mut jobs: HashMap<&str, Vec<&JobRecord>> = HashMap::new();
    for j in &history {
        if let Some(id) = &j.backup_id {
            jobs.entry(id.as_str()).or_default().push(j);
        }
    }
    let verified = lifeboat::newest_verifications(&history);
    let backups: Vec<_> = catalog
        .backups
        .iter()
        .map(|b| {
            let id = b.id.as_str();
            let mine = jobs.get(id).map_or(&[][..], Vec::as_slice);
            backup_json(lb, b, catalog.pinned(b), verified.get(id), mine)
        })
        .collect();
    json!({
        "location": lb.store().location(),
        "stores": catalog.stores,
        "backups": backups,
        "foreign": catalog.foreign,
        "unusable": catalog.unusable,
        "incomplete": catalog.incomplete.iter().map(|u| json!({"key": u.key, "started": u.started})).collect::<Vec<_>>(),
    })
}

pub fn show(lb: &Lifeboat, b: &BackupEntry, pinned: bool) {
    let now = lb.clock().now();
    println!("backup    {}", b.id);
    println!("source    {}", esc(&b.source));
    println!(
        "state     {}{}",
        b.state,
        b.problem
            .as_ref()
            .map(|p| format!(" ({})", esc(p)))
            .unwrap_or_default()
    );
    if let Some(m) = &b.manifest {
        println!(
            "engine    {} {}",
            m.source.engine,
            esc(&m.source.server_version)
        );
        println!("database  {}", esc(&m.source.database));
        if let Some(pg) = &m.postgres {
            println!(
                "pg_dump   {} ({} format)",
                esc(&pg.pg_dump_version),
                esc(&pg.dump_format)
            );
            println!("schemas   {}", esc(pg.schemas.join(", ")));
            let ext: Vec<String> = pg
                .extensions
                .iter()
                .map(|e| format!("{} {}", e.name, e.version))
                .collect();
            println!("extensions {}", esc(ext.join(", ")));
        }
        println!(
            "taken     {} -> {} ({}), {} ago",
            m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            m.finished_at.format("%H:%M:%S"),
            secs(m.duration()),
            short_age(now - m.started_at)
        );
        println!(
            "trigger   {} on {} by {} {}",
            m.trigger,
            esc(&m.host),
            esc(&m.tool.name),
            esc(&m.tool.version)
        );
        println!("data      {}/{}", b.dir(), esc(&m.data.key));
        println!(
            "size      {} raw, {} stored ({:.1}x, {} level {})",
            size(m.data.raw_bytes),
            size(m.data.stored_bytes),
            m.data.raw_bytes as f64 / m.data.stored_bytes.max(1) as f64,
            esc(&m.data.compression),
            m.data.compression_level
        );
        println!("sha256    {}", m.data.sha256);
        println!("manifest  {}", lb.authenticity(m));
        println!(
            "encrypted {}",
            m.encryption.as_ref().map_or("no".into(), |e| esc(format!(
                "{} to {}",
                e.scheme,
                e.recipients.join(", ")
            )))
        );
    }
    let (v, _) = backup_verified(b, lb.verification(b.id.as_str()).as_ref(), now);
    println!("verified  {v}");
    if let Some(c) = b.copies.as_ref().filter(|_| lb.stores().len() > 1) {
        println!("copies    {}", copies_text(c, now));
    }
    if pinned {
        println!("pinned    yes: `lifeboat prune` never deletes it (`lifeboat unpin` to release)");
    }
    if let Some(m) = &b.manifest {
        let mut t = Table::new(&[("TABLE", Align::Left), ("ROWS", Align::Right)]);
        for table in &m.tables {
            t.row(vec![table.name.as_str().into(), count(table.rows).into()]);
        }
        println!(
            "\n{} tables, {} rows",
            m.tables.len(),
            count(m.total_rows())
        );
        print!("{}", t.render(false));
    }
    let jobs = lb
        .state()
        .jobs_for_backup(b.id.as_str())
        .unwrap_or_default();
    if !jobs.is_empty() {
        println!("\njobs");
        for j in jobs {
            println!(
                "  {}  {:<8} {:<11} {}",
                time(j.started_at),
                j.kind.to_string(),
                j.status.to_string(),
                esc(&j.id)
            );
        }
    }
}

pub fn verify_line(lb: &Lifeboat, b: &BackupEntry, err: Option<&lifeboat::Error>) {
    match err {
        None => println!(
            "ok      {}  {}  manifest {}",
            esc(&b.source),
            b.id,
            b.manifest
                .as_ref()
                .map_or("-".into(), |m| lb.authenticity(m).to_string())
        ),
        Some(e) => println!("FAILED  {}  {}: {}", esc(&b.source), b.id, esc(e)),
    }
}

pub fn jobs(jobs: &[JobRecord], now: DateTime<Utc>, color: bool) {
    if jobs.is_empty() {
        println!("no jobs yet");
        return;
    }
    let mut t = Table::new(&[
        ("JOB", Align::Left),
        ("KIND", Align::Left),
        ("SOURCE", Align::Left),
        ("STARTED", Align::Left),
        ("AGO", Align::Right),
        ("TIME", Align::Right),
        ("STATUS", Align::Left),
        ("BYTES", Align::Right),
        ("RATE", Align::Right),
        ("BY", Align::Left),
        ("ERROR", Align::Left),
    ]);
    for j in jobs {
        let status = match j.status {
            JobStatus::Succeeded => colored("ok", GREEN),
            JobStatus::Running => colored("running", YELLOW),
            JobStatus::Refused => colored("refused", YELLOW),
            s => colored(s.to_string(), RED),
        };
        t.row(vec![
            j.id.as_str().into(),
            j.kind.to_string().into(),
            j.source.as_deref().unwrap_or("-").into(),
            time(j.started_at).into(),
            short_age(now - j.started_at).into(),
            j.duration().map_or("-".into(), secs).into(),
            status,
            if j.bytes > 0 {
                size(j.bytes)
            } else {
                "-".into()
            }
            .into(),
            j.throughput()
                .map_or("-".into(), |r| format!("{}/s", size(r as u64)))
                .into(),
            j.operator.as_deref().unwrap_or("-").into(),
            j.error.as_deref().unwrap_or("").into(),
        ]);
    }
    print!("{}", t.render(color));
}

pub fn restore_report(r: &RestoreReport, job: &JobRecord, color: bool) {
    println!(
        "restored   {}{}",
        esc(&r.restored),
        r.source
            .as_ref()
            .map(|s| format!(" (source {})", esc(s)))
            .unwrap_or_default()
    );
    println!("format     {}", esc(&r.format));
    println!(
        "checksum   sha256 {} {}",
        esc(&r.sha256),
        if r.checksum_verified {
            "matches the manifest"
        } else {
            "(no manifest to check against)"
        }
    );
    if let Some(a) = &r.authenticity {
        println!("manifest   {a}");
    }
    println!("target     {}", esc(&r.target));
    println!(
        "size       {} downloaded, {} restored, in {}",
        size(r.stored_bytes),
        size(r.raw_bytes),
        secs(r.finished_at - r.started_at)
    );
    println!("job        {}", esc(&job.id));
    if let Some(line) = content_line(r) {
        println!("content    {line}");
    }
    if !r.skipped.is_empty() {
        println!("skipped    {}", esc(skipped_line(r)));
    }
    let live = r.diff.rows.iter().any(|row| row.live.is_some());
    let mut headers = vec![
        ("TABLE", Align::Left),
        ("EXPECTED", Align::Right),
        ("RESTORED", Align::Right),
    ];
    if live {
        headers.push(("LIVE", Align::Right));
    }
    headers.extend([("DELTA", Align::Right), ("STATUS", Align::Left)]);
    let mut t = Table::new(&headers);
    let opt = |n: Option<u64>| n.map_or("-".into(), count);
    for row in &r.diff.rows {
        let mut cells = vec![
            row.table.as_str().into(),
            opt(row.expected).into(),
            opt(row.restored).into(),
        ];
        if live {
            let text = match row.live_delta() {
                Some(d) if d != 0 => format!("{} ({d:+})", opt(row.live)),
                _ => opt(row.live),
            };
            cells.push(text.into());
        }
        let delta = row.delta().map_or("-".into(), |d| {
            if d == 0 { "0".into() } else { format!("{d:+}") }
        });
        let bad = !matches!(row.status, RowStatus::Match | RowStatus::Measured);
        cells.push(if bad {
            colored(delta, RED)
        } else {
            delta.into()
        });
        cells.push(if bad {
            colored(row.status.label(), RED)
        } else {
            colored(row.status.label(), GREEN)
        });
        t.row(cells);
    }
    println!();
    print!("{}", t.render(color));
    println!();
    let findings = r.diff.findings().count();
    if !r.diff.has_expected {
        println!(
            "RESTORED: {} rows in {} tables, measured (a foreign dump has no expected counts)",
            count(r.diff.total_restored()),
            r.diff.rows.len()
        );
    } else if findings == 0 {
        println!(
            "OK: all {} tables match the manifest ({} rows)",
            r.diff.rows.len(),
            count(r.diff.total_restored())
        );
    } else {
        println!(
            "FAILED: {findings} of {} tables differ from the manifest",
            r.diff.rows.len()
        );
    }
}

/// Whether content checksums were compared, and for how many tables; `None` for a foreign
/// dump (nothing to compare against).
pub fn content_line(r: &RestoreReport) -> Option<String> {
    if !r.diff.has_expected {
        return None;
    }
    Some(match r.content_compared {
        Some(n) => format!("checksums of {n} tables compared with the manifest"),
        None => "not compared: the backup has no content checksums (row counts only)".into(),
    })
}

/// What the restore left out, and what that means.
pub fn skipped_line(r: &RestoreReport) -> String {
    let what = r.skipped.join(", ");
    if r.privileged {
        what
    } else {
        format!(
            "{what}: a least-privilege copy, for proof (an authenticated backup restored with --privileged keeps them)"
        )
    }
}

pub fn restore_json(job: &JobRecord, r: &RestoreReport) -> serde_json::Value {
    json!({ "ok": r.ok(), "job_id": job.id, "report": r })
}
