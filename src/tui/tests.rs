//! Console tests: whole screens as snapshots of a fixed-size `TestBackend`, and the wizard
//! driven by keys with the core's answers injected as messages (no network, no disk).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use lifeboat::catalog::{CatalogRow, RowKind};
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::diff::RowDiff;
use lifeboat::jobs::{JobKind, JobRecord, JobStatus, LogLine};
use lifeboat::manifest::{TableCount, Trigger};
use lifeboat::pipeline::restore::RestoreReport;
use lifeboat::progress::Phase;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::app::{App, Ctx};
use super::keys::Keymap;
use lifeboat::prune::{PlanInputs, SourceInputs};

use super::msg::{Msg, Outcome, Request};
use super::theme::Theme;

mod pitr;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn config() -> Config {
    let text = "[storage]\ntype = \"local\"\npath = \"/srv/backups\"\n[restore]\nscratch_dir = \"/var/tmp/restores\"\n\
                [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"/srv/shop.db\"\n\
                [[source]]\nname = \"auth\"\nengine = \"sqlite\"\npath = \"/srv/auth.db\"\nrpo = \"12h\"\n";
    Config::parse(text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap()
}

fn row(id: &str, source: &str, hours_ago: i64, kind: RowKind, rows: u64) -> CatalogRow {
    CatalogRow {
        kind,
        id: id.into(),
        source: Some(source.into()),
        time: Some(now() - Duration::hours(hours_ago)),
        raw_bytes: Some(rows * 90),
        stored_bytes: rows * 25,
        duration_ms: Some(180 + hours_ago),
        tables: Some(14),
        rows: Some(rows),
        encrypted: false,
        copies: None,
        note: match kind {
            RowKind::Orphan => {
                Some("no manifest: the backup never reached its commit point".into())
            }
            _ => None,
        },
    }
}

fn rows() -> Vec<CatalogRow> {
    let mut rows = vec![
        row(
            "20261123T080000Z-aaaa",
            "shop",
            4,
            RowKind::Complete,
            111_031,
        ),
        row(
            "20261123T020000Z-bbbb",
            "shop",
            10,
            RowKind::Complete,
            110_888,
        ),
        row(
            "20261122T021500Z-cccc",
            "auth",
            34,
            RowKind::Complete,
            6_533,
        ),
        row("20261122T020000Z-dddd", "shop", 34, RowKind::Orphan, 0),
        row(
            "20261121T020000Z-eeee",
            "shop",
            58,
            RowKind::Complete,
            110_180,
        ),
    ];
    rows.push(CatalogRow {
        kind: RowKind::Foreign,
        id: "legacy/auth-2026-07-06T02-00-00.sql.gz".into(),
        source: None,
        time: Some(now() - Duration::days(140)),
        raw_bytes: None,
        stored_bytes: 70_221,
        duration_ms: None,
        tables: None,
        rows: None,
        encrypted: false,
        note: Some("sql.gz".into()),
        copies: None,
    });
    rows
}

fn job(
    id: &str,
    kind: JobKind,
    source: &str,
    backup: &str,
    hours_ago: i64,
    status: JobStatus,
) -> JobRecord {
    let started = now() - Duration::hours(hours_ago);
    JobRecord {
        id: id.into(),
        kind,
        source: Some(source.into()),
        backup_id: Some(backup.into()),
        trigger: Trigger::Scheduled,
        host: "db1".into(),
        pid: 1,
        started_at: started,
        finished_at: Some(started + Duration::milliseconds(420)),
        status,
        bytes: if status == JobStatus::Succeeded {
            3_100_000
        } else {
            0
        },
        error: (status == JobStatus::Failed)
            .then(|| "cannot open SQLite database /srv/auth.db: no such file".into()),
        log: vec![
            LogLine {
                at: started,
                message: format!("{kind} started"),
            },
            LogLine {
                at: started + Duration::milliseconds(420),
                message: format!("{kind} {status}"),
            },
        ],
        operator: None,
        restored: None,
    }
}

fn jobs() -> Vec<JobRecord> {
    vec![
        job(
            "20261123T080000Z-backup-0001",
            JobKind::Backup,
            "shop",
            "20261123T080000Z-aaaa",
            4,
            JobStatus::Succeeded,
        ),
        job(
            "20261123T030000Z-verify-0002",
            JobKind::Verify,
            "shop",
            "20261123T020000Z-bbbb",
            9,
            JobStatus::Succeeded,
        ),
        job(
            "20261123T021500Z-backup-0003",
            JobKind::Backup,
            "auth",
            "20261123T021500Z-ffff",
            10,
            JobStatus::Failed,
        ),
        job(
            "20261123T020000Z-backup-0004",
            JobKind::Backup,
            "shop",
            "20261123T020000Z-bbbb",
            10,
            JobStatus::Succeeded,
        ),
    ]
}

fn app() -> App {
    let ctx = Ctx {
        config: Arc::new(config()),
        location: "/srv/backups".into(),
        clock: Clock::starting_at(now()),
        keymap: Keymap::load(None).unwrap(),
        theme: Theme::colored(),
        zone: Some(chrono::FixedOffset::east_opt(0).unwrap()),
    };
    let mut app = cold_app(ctx);
    read_sources(&mut app, &["shop", "auth"]);
    app
}

/// The console before the bucket answered: the cached lines only.
fn cold_app(ctx: Ctx) -> App {
    let mut app = App::new(ctx);
    app.set_cached_rows(rows());
    app.on_msg(Msg::Jobs(Ok(Arc::new(jobs()))));
    app
}

/// The listing has read these sources' part of the bucket.
fn read_sources(app: &mut App, sources: &[&str]) {
    app.on_msg(Msg::CatalogPage {
        generation: 0,
        rows: Vec::new(),
        sources_complete: sources.iter().map(|s| s.to_string()).collect(),
    });
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal.backend().to_string()
}

fn report(mismatch: bool) -> RestoreReport {
    let expected = vec![
        TableCount::new("customers", 3_910),
        TableCount::new("orders", 11_730),
        TableCount::new("payments", 10_501),
    ];
    let mut restored = expected.clone();
    if mismatch {
        restored[1].rows -= 3;
    }
    let live: Vec<TableCount> = expected
        .iter()
        .map(|t| TableCount::new(t.name.clone(), t.rows + 12))
        .collect();
    RestoreReport {
        restored: "20261123T080000Z-aaaa".into(),
        source: Some("shop".into()),
        format: "sqlite.zst".into(),
        target: PathBuf::from("/var/tmp/restores/shop-20261123T080000Z-aaaa.db").into(),
        created: true,
        sha256: "ab".repeat(32),
        checksum_verified: true,
        authenticity: None,
        stored_bytes: 3_100_000,
        raw_bytes: 10_000_000,
        started_at: now(),
        finished_at: now() + Duration::milliseconds(1_250),
        diff: RowDiff::new(Some(&expected), &restored, Some(&live)),
        content_compared: None,
        privileged: false,
        skipped: Vec::new(),
        fingerprint: String::new(),
    }
}

fn restore_record() -> Box<JobRecord> {
    Box::new(job(
        "20261123T120000Z-restore-0005",
        JobKind::Restore,
        "shop",
        "20261123T080000Z-aaaa",
        0,
        JobStatus::Succeeded,
    ))
}

/// Answers the wizard's pre-flight check with success.
fn verify_passes(app: &mut App) {
    let requests = app.take_requests();
    let Some(Request::Preflight { id }) = requests
        .iter()
        .find(|r| matches!(r, Request::Preflight { .. }))
    else {
        panic!("no pre-flight check was requested: {requests:?}")
    };
    app.on_msg(Msg::Preflight {
        id: id.clone(),
        result: Ok(
            "shop/x/data.sqlite.zst present in store default (3100000 bytes, as the manifest says)"
                .into(),
        ),
    });
}

/// The restore the wizard asked for.
fn restore_request(app: &mut App) -> super::msg::RestoreRequest {
    let requests = app.take_requests();
    requests
        .into_iter()
        .find_map(|r| match r {
            Request::Restore(r) => Some(r),
            _ => None,
        })
        .expect("a restore was requested")
}

#[test]
fn catalog_tab() {
    let mut app = app();
    insta::assert_snapshot!("catalog", screen(&app));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(s.contains("┌ 20261122T020000Z-dddd"), "{s}");
    insta::assert_snapshot!("catalog_detail_orphan", s);
}

#[test]
fn pinned_backups_say_so_in_the_catalog() {
    use lifeboat::catalog::{BackupEntry, BackupState, Catalog};
    let mut app = app();
    let entry = |id: &str| BackupEntry {
        source: "shop".into(),
        id: id.parse().unwrap(),
        state: BackupState::Complete,
        manifest: None,
        objects: Vec::new(),
        problem: None,
        copies: None,
    };
    let mut catalog = Catalog {
        backups: vec![
            entry("20261123T080000Z-aaaa"),
            entry("20261123T020000Z-bbbb"),
        ],
        ..Catalog::default()
    };
    catalog.pins.insert("shop/20261123T020000Z-bbbb".into());
    app.on_msg(Msg::CatalogDone {
        generation: 0,
        result: Ok(Arc::new(catalog)),
    });
    let s = screen(&app);
    let line = |id: &str| {
        s.lines()
            .find(|l| l.contains(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("bbbb").contains("pinned"), "{s}");
    assert!(line("aaaa").contains("complete"), "{s}");
}

#[test]
fn catalog_filter_and_sort() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "source:auth");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(
        s.contains("20261122T021500Z-cccc") && !s.contains("20261123T080000Z-aaaa"),
        "{s}"
    );
    assert!(s.contains("/source:auth → 1"), "{s}");
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Esc);
    // Sort by source: auth lines first.
    key(&mut app, KeyCode::Char('s'));
    let s = screen(&app);
    let first = s.lines().nth(6).unwrap();
    assert!(first.contains("cccc"), "{s}");
}

#[test]
fn jobs_and_retention_tabs() {
    let mut app = app();
    key(&mut app, KeyCode::Char('2'));
    insta::assert_snapshot!("jobs", screen(&app));
}

fn plan_inputs() -> PlanInputs {
    use lifeboat::catalog::BackupState;
    use lifeboat::retention::{Candidate, Policy};
    let candidate = |hours_ago: i64, state: BackupState, pinned: bool| {
        let time = now() - Duration::hours(hours_ago);
        Candidate {
            id: format!("{}-{hours_ago:04}", time.format("%Y%m%dT%H%M%SZ")),
            time,
            state,
            stored_bytes: 3_000_000,
            pinned,
            verified: false,
            authentic: true,
        }
    };
    // shop: two backups a day for ten days, one orphan, one pinned old backup.
    let mut shop: Vec<Candidate> = (0..20)
        .map(|i| candidate(4 + 12 * i, BackupState::Complete, false))
        .collect();
    shop.push(candidate(30, BackupState::Orphan, false));
    shop.push(candidate(24 * 40, BackupState::Complete, true));
    PlanInputs {
        now: now(),
        timezone: chrono_tz::Europe::Berlin,
        orphan_grace: Duration::hours(24),
        sources: vec![
            SourceInputs {
                source: "shop".into(),
                policy: Policy {
                    keep_last: 2,
                    keep_daily: 3,
                    ..Policy::default()
                },
                newest_failed: false,
                unconfigured: false,
                backups: shop,
            },
            SourceInputs {
                source: "auth".into(),
                policy: Policy {
                    keep_last: 1,
                    ..Policy::default()
                },
                newest_failed: true,
                unconfigured: false,
                backups: vec![
                    candidate(34, BackupState::Complete, false),
                    candidate(58, BackupState::Complete, false),
                ],
            },
        ],
        incomplete: Vec::new(),
        other_stores: Default::default(),
    }
}

#[test]
fn retention_tab_plans_edits_what_if_and_prunes_on_confirmation() {
    let mut app = app();
    key(&mut app, KeyCode::Char('3'));
    assert!(screen(&app).contains("Reading the bucket"));
    app.on_msg(Msg::PlanInputs(Ok(Arc::new(plan_inputs()))));
    let s = screen(&app);
    insta::assert_snapshot!("retention", s);
    assert!(s.contains("4 kept, 18 to prune"), "{s}");

    // What-if: keep_daily 3 -> 5 keeps two more days; nothing is asked of the core.
    key(&mut app, KeyCode::Char('e'));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char('+'));
    key(&mut app, KeyCode::Char('+'));
    let s = screen(&app);
    insta::assert_snapshot!("retention_what_if", s);
    assert!(s.contains("keep_last=2 keep_daily=5"), "{s}");
    assert!(s.contains("6 kept, 16 to prune"), "{s}");
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Prune { .. }))
    );

    // Leaving the editor returns to the configured policy; `p` prunes by it.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('p'));
    let s = screen(&app);
    insta::assert_snapshot!("retention_confirm", s);
    assert!(s.contains("delete 18 backups"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Prune { .. }))
    );
    key(&mut app, KeyCode::Char('p'));
    key(&mut app, KeyCode::Enter);
    let prunes: Vec<Request> = app
        .take_requests()
        .into_iter()
        .filter(|r| matches!(r, Request::Prune { .. }))
        .collect();
    assert!(
        matches!(&prunes[..], [Request::Prune { source, only, .. }]
            if source == "shop" && only.len() == 18),
        "{prunes:?}"
    );

    // auth's newest backup failed: `p` explains instead of asking.
    key(&mut app, KeyCode::Char('n'));
    key(&mut app, KeyCode::Char('p'));
    let s = screen(&app);
    assert!(s.contains("auth is not pruned"), "{s}");
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Prune { .. }))
    );
}

#[test]
fn help_and_errors_are_popups_that_close() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help", screen(&app));
    key(&mut app, KeyCode::Esc);
    app.on_msg(Msg::Notice(Err(
        "cannot reach http://minio:9000: Connection refused (os error 111)".into(),
    )));
    let s = screen(&app);
    assert!(s.contains("Connection refused"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert!(!screen(&app).contains("Connection refused"));
    // A key while the popup was open did not reach the tab behind it.
    assert!(!app.should_quit());
}

#[test]
fn wizard_walks_from_choice_to_result() {
    let mut app = app();
    key(&mut app, KeyCode::Char('4'));
    insta::assert_snapshot!("wizard_1_source", screen(&app));
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "-5h");
    insta::assert_snapshot!("wizard_1_point", screen(&app));
    key(&mut app, KeyCode::Enter);
    // The newest shop backup at or before 5 h ago, and its pre-flight check: no download
    // (the restore's own download is checked before anything is loaded).
    let requests = app.take_requests();
    assert_eq!(
        requests,
        vec![Request::Preflight {
            id: "20261123T020000Z-bbbb".into()
        }]
    );
    insta::assert_snapshot!("wizard_2_preflight_checking", screen(&app));
    // Enter does nothing until the check is known.
    key(&mut app, KeyCode::Enter);
    assert!(screen(&app).contains("wait for the pre-flight check"));
    app.on_msg(Msg::Preflight {
        id: "20261123T020000Z-bbbb".into(),
        result: Ok("shop/20261123T020000Z-bbbb/data.sqlite.zst present in store default (2776000 bytes, as the manifest says); manifest unsigned".into()),
    });
    insta::assert_snapshot!("wizard_2_preflight_checked", screen(&app));
    // The proposed target is a new file, so Enter restores into it; `t` would edit it first.
    key(&mut app, KeyCode::Char('t'));
    insta::assert_snapshot!("wizard_3_target", screen(&app));
    key(&mut app, KeyCode::Esc);
    assert!(screen(&app).contains("into       /var/tmp/restores/shop-20261123T020000Z-bbbb.db"));
    key(&mut app, KeyCode::Enter);
    let requests = app.take_requests();
    let Some(Request::Restore(r)) = requests.iter().find(|r| matches!(r, Request::Restore(_)))
    else {
        panic!("{requests:?}")
    };
    assert_eq!(r.id, "20261123T020000Z-bbbb");
    assert_eq!(
        r.target,
        PathBuf::from("/var/tmp/restores/shop-20261123T020000Z-bbbb.db")
    );
    assert!(!r.force_target && r.compare_live && !r.drill);
    app.on_msg(Msg::Progress {
        task: r.task,
        phase: Phase::Download,
        total: Some(3_100_000),
        done: 1_550_000,
    });
    insta::assert_snapshot!("wizard_4_run", screen(&app));
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(report(true))),
            saved: None,
        },
    });
    insta::assert_snapshot!("wizard_5_result_mismatch", screen(&app));
}

#[test]
fn mismatches_are_red_in_the_result() {
    let mut app = app();
    key(&mut app, KeyCode::Char('r')); // on the newest catalog line
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(report(true))),
            saved: None,
        },
    });
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let buffer = terminal.backend().buffer();
    let (y, _) = (0..24)
        .map(|y| {
            (
                y,
                (0..80)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>(),
            )
        })
        .find(|(_, line)| line.contains("orders"))
        .expect("the orders line is shown");
    assert_eq!(
        buffer[(2, y)].fg,
        Color::Red,
        "the mismatching table is red"
    );
    let ok_line = (0..24)
        .find(|&y| {
            (0..80)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .contains("customers")
        })
        .unwrap();
    assert_ne!(buffer[(2, ok_line)].fg, Color::Red);
}

#[test]
fn replacing_an_existing_file_needs_its_path_typed_again() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("taken.db");
    std::fs::write(&existing, b"precious").unwrap();
    let mut app = app();
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Char('t'));
    for _ in 0..80 {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, existing.to_str().unwrap());
    assert!(screen(&app).contains("This file exists"));
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "wrong");
    key(&mut app, KeyCode::Enter);
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Restore(_)))
    );
    assert!(screen(&app).contains("does not match"));
    for _ in 0..5 {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, existing.to_str().unwrap());
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(r.force_target);
    assert_eq!(r.target, existing);
}

#[test]
fn stale_catalog_answers_are_dropped() {
    let mut app = app();
    app.start();
    app.start(); // a second refresh supersedes the first
    let gens: Vec<u64> = app
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::RefreshCatalog { generation } => Some(generation),
            _ => None,
        })
        .collect();
    assert_eq!(gens.len(), 2);
    let stale = row("20261123T110000Z-9999", "shop", 1, RowKind::Complete, 1);
    app.on_msg(Msg::CatalogPage {
        generation: gens[0],
        rows: vec![stale.clone()],
        sources_complete: Vec::new(),
    });
    assert!(!screen(&app).contains("9999"));
    app.on_msg(Msg::CatalogPage {
        generation: gens[1],
        rows: vec![stale],
        sources_complete: Vec::new(),
    });
    assert!(screen(&app).contains("20261123T110000Z-9999"));
    assert!(screen(&app).contains("reading the bucket… 1 lines"));
}

#[test]
fn quits_on_q_and_ctrl_c_but_q_types_in_a_filter() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.should_quit());
    let mut app = self::app();
    key(&mut app, KeyCode::Char('q'));
    assert!(app.should_quit());
}

#[test]
fn small_and_large_terminals_draw() {
    let app = app();
    for (w, h) in [(80, 24), (60, 16), (200, 60), (20, 8)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| app.draw(f)).unwrap();
    }
}

/// `d`, Enter, Enter: a drill in three keys from the first frame; lifeboat names the scratch
/// copy and drops it once proven, as `lifeboat drill` does.
#[test]
fn d_runs_the_wizard_as_a_drill() {
    let mut app = app();
    let mut keys = 0;
    key(&mut app, KeyCode::Char('d'));
    keys += 1;
    assert!(screen(&app).contains(" DRILL "));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    keys += 1;
    let r = restore_request(&mut app);
    assert!(r.drill);
    assert!(keys <= 3, "{keys} keys");
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Drill,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(report(false))),
            saved: Some(
                "report saved to _lifeboat/drills/2026/x.md; the scratch copy was dropped".into(),
            ),
        },
    });
    let s = screen(&app);
    assert!(
        s.contains("OK: all 3 tables match")
            && s.contains("report saved to _lifeboat/drills/2026/x.md"),
        "{s}"
    );
    assert!(s.contains("the scratch copy was dropped"), "{s}");
    // Nothing is left to drop, and a drill's copy is never promoted.
    key(&mut app, KeyCode::Char('x'));
    key(&mut app, KeyCode::Char('P'));
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::DropScratch { .. } | Request::Promote { .. }))
    );
}

#[test]
fn x_keeps_a_target_the_restore_did_not_create() {
    let mut app = app();
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    let mut replaced = report(false);
    replaced.created = false;
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Drill,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(replaced)),
            saved: None,
        },
    });
    key(&mut app, KeyCode::Char('x'));
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::DropScratch { .. }))
    );
    assert!(screen(&app).contains("not dropped"), "{}", screen(&app));
}

fn postgres_app() -> App {
    let text = "[storage]\ntype = \"local\"\npath = \"/srv/backups\"\n\
                [[source]]\nname = \"billing\"\nengine = \"postgres\"\nhost = \"db1\"\ndatabase = \"billing\"\n";
    let ctx = Ctx {
        config: Arc::new(
            Config::parse(text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap(),
        ),
        location: "/srv/backups".into(),
        clock: Clock::starting_at(now()),
        keymap: Keymap::load(None).unwrap(),
        theme: Theme::colored(),
        zone: Some(chrono::FixedOffset::east_opt(0).unwrap()),
    };
    let mut app = App::new(ctx);
    app.set_cached_rows(vec![row(
        "20261123T080000Z-bbbb",
        "billing",
        2,
        RowKind::Complete,
        1_000,
    )]);
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Char('t'));
    app
}

fn retype(app: &mut App, text: &str) {
    for _ in 0..80 {
        key(app, KeyCode::Backspace);
    }
    typed(app, text);
}

#[test]
fn postgres_targets_are_new_database_names_never_the_source() {
    let mut app = postgres_app();
    assert!(screen(&app).contains("lifeboat_restore_20261123t080000z_bbbb"));
    assert!(screen(&app).contains("new PostgreSQL database"));
    retype(&mut app, "x;drop");
    key(&mut app, KeyCode::Enter);
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Restore(_)))
    );
    assert!(screen(&app).contains("not allowed"));

    // The source is never restored into, typed twice or not: promote replaces it.
    retype(&mut app, "billing");
    assert!(
        screen(&app).contains("live source database"),
        "{}",
        screen(&app)
    );
    key(&mut app, KeyCode::Enter);
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Restore(_)))
    );
    assert!(
        screen(&app).contains("promote the proven copy"),
        "{}",
        screen(&app)
    );
}

#[test]
fn an_existing_postgres_database_is_refused_for_another_name() {
    let mut app = postgres_app();
    retype(&mut app, "taken");
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(!r.force_target);
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Err(lifeboat::Error::DatabaseExists("taken".into()).to_string()),
            saved: None,
        },
    });
    assert!(screen(&app).contains("already exists"));
    key(&mut app, KeyCode::Enter);
    assert!(
        app.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Restore(_)))
    );
    retype(&mut app, "taken_2");
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(!r.force_target);
    assert_eq!(r.target, PathBuf::from("taken_2"));
}

/// The wizard's result, for a proved copy: `P`, the source's name typed, then the promotion.
fn proved_result() -> App {
    let mut app = app();
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(report(false))),
            saved: None,
        },
    });
    app
}

fn promote_request(app: &mut App) -> Option<(u64, String, String, String)> {
    app.take_requests().into_iter().find_map(|r| match r {
        Request::Promote {
            task,
            copy,
            source,
            confirm,
        } => Some((task, copy, source, confirm)),
        _ => None,
    })
}

#[test]
fn a_proved_copy_is_promoted_after_typing_the_source_name() {
    let mut app = proved_result();
    assert!(
        screen(&app).contains("P promotes this proven copy in place of shop"),
        "{}",
        screen(&app)
    );
    key(&mut app, KeyCode::Char('P'));
    assert!(screen(&app).contains("Type the source's name (shop)"));
    // Keys that mean something elsewhere are letters here.
    typed(&mut app, "sho");
    key(&mut app, KeyCode::Enter);
    assert!(promote_request(&mut app).is_none());
    assert!(screen(&app).contains("type the source's name, shop"));
    typed(&mut app, "p");
    key(&mut app, KeyCode::Enter);
    let (task, copy, source, confirm) = promote_request(&mut app).expect("a promotion");
    assert_eq!(copy, "/var/tmp/restores/shop-20261123T080000Z-aaaa.db");
    assert_eq!((source.as_str(), confirm.as_str()), ("shop", "shop"));

    // The core refuses (the copy changed since): said, and the result is still there.
    app.on_msg(Msg::Finished {
        task,
        kind: JobKind::Promote,
        record: restore_record(),
        outcome: Outcome::Promote(Err("the copy has changed since it was proved".into())),
    });
    let s = screen(&app);
    assert!(
        s.contains("NOT PROMOTED") && s.contains("changed since"),
        "{s}"
    );
    key(&mut app, KeyCode::Enter);
    assert!(screen(&app).contains("OK: all 3 tables match"));
}

#[test]
fn a_copy_that_did_not_pass_cannot_be_promoted() {
    let mut app = app();
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    app.on_msg(Msg::Finished {
        task: r.task,
        kind: JobKind::Restore,
        record: restore_record(),
        outcome: Outcome::Restore {
            report: Ok(Box::new(report(true))),
            saved: None,
        },
    });
    assert!(!screen(&app).contains("promotes"));
    key(&mut app, KeyCode::Char('P'));
    typed(&mut app, "shop");
    key(&mut app, KeyCode::Enter);
    assert!(promote_request(&mut app).is_none());
}

/// Three stores: the default, an offsite bucket and an archive.
fn three_stores() -> Config {
    let text = "[[store]]\nname = \"primary\"\ntype = \"local\"\npath = \"/srv/backups\"\n\
                [[store]]\nname = \"offsite\"\ntype = \"s3\"\nbucket = \"acme-offsite\"\nendpoint = \"https://s3.example.net\"\n\
                [[store]]\nname = \"archive\"\ntype = \"local\"\npath = \"/mnt/archive\"\n\
                [restore]\nscratch_dir = \"/var/tmp/restores\"\n\
                [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"/srv/shop.db\"\n\
                [[source]]\nname = \"auth\"\nengine = \"sqlite\"\npath = \"/srv/auth.db\"\nrpo = \"2d\"\n";
    Config::parse(text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap()
}

/// A complete backup whose copies are in the given states, in store order.
fn entry_with_copies(
    id: &str,
    source: &str,
    hours_ago: i64,
    rows: u64,
    states: [(lifeboat::stores::CopyState, bool); 3],
) -> lifeboat::catalog::BackupEntry {
    use lifeboat::manifest::{DataInfo, Manifest, SourceInfo, ToolInfo};
    use lifeboat::stores::{Copies, StoreCopy};
    let time = now() - Duration::hours(hours_ago);
    let stored = rows * 25;
    let manifest = Manifest {
        format: 1,
        id: id.parse().unwrap(),
        source: SourceInfo {
            name: source.into(),
            engine: lifeboat::manifest::EngineKind::Sqlite,
            server_version: "3.50.4".into(),
            database: format!("/srv/{source}.db"),
        },
        started_at: time,
        finished_at: time + Duration::milliseconds(900),
        trigger: Trigger::Scheduled,
        tool: ToolInfo::this(),
        host: "db1".into(),
        data: DataInfo {
            key: "data.sqlite.zst".into(),
            raw_bytes: rows * 90,
            stored_bytes: stored,
            compression: "zstd".into(),
            compression_level: 3,
            sha256: "cd".repeat(32),
        },
        encryption: None,
        tables: vec![TableCount::new("orders", rows)],
        content_checksums: Default::default(),
        postgres: None,
        integrity: None,
    };
    lifeboat::catalog::BackupEntry {
        source: source.into(),
        id: id.parse().unwrap(),
        state: lifeboat::catalog::BackupState::Complete,
        objects: vec![lifeboat::storage::ObjectMeta {
            key: format!("{source}/{id}/data.sqlite.zst"),
            size: stored,
            last_modified: Some(time),
        }],
        manifest: Some(std::sync::Arc::new(manifest)),
        problem: None,
        copies: Some(Copies {
            stores: ["primary", "offsite", "archive"]
                .into_iter()
                .zip(states)
                .map(|(store, (state, owed))| StoreCopy {
                    store: store.into(),
                    state,
                    owed,
                    checked_at: (state == lifeboat::stores::CopyState::Verified
                        || state == lifeboat::stores::CopyState::Failed)
                        .then(|| time + Duration::minutes(5)),
                    detail: None,
                })
                .collect(),
        }),
    }
}

/// The console over three stores: an offsite copy that failed its check more than the grace
/// period ago, and an archive one backup behind.
fn copies_app(offsite_error: Option<&str>) -> App {
    use lifeboat::stores::CopyState::{Failed, Missing, Verified};
    use lifeboat::stores::StoreListing;
    let ctx = Ctx {
        config: Arc::new(three_stores()),
        location: "/srv/backups".into(),
        clock: Clock::starting_at(now()),
        keymap: Keymap::load(None).unwrap(),
        theme: Theme::colored(),
        zone: Some(chrono::FixedOffset::east_opt(0).unwrap()),
    };
    let mut app = App::new(ctx);
    app.on_msg(Msg::Jobs(Ok(Arc::new(jobs()))));
    let backups = vec![
        entry_with_copies(
            "20261123T080000Z-aaaa",
            "shop",
            4,
            111_031,
            [(Verified, false), (Verified, false), (Missing, true)],
        ),
        entry_with_copies(
            "20261123T020000Z-bbbb",
            "shop",
            10,
            110_888,
            [(Verified, false), (Verified, false), (Verified, false)],
        ),
        entry_with_copies(
            "20261122T021500Z-cccc",
            "auth",
            34,
            6_533,
            [(Verified, false), (Failed, true), (Verified, false)],
        ),
        entry_with_copies(
            "20261121T020000Z-eeee",
            "shop",
            58,
            110_180,
            [(Verified, false), (Verified, false), (Verified, false)],
        ),
    ];
    let listing = |store: &str, location: &str, owed: &[&str], error: Option<&str>| {
        let holds = |b: &&lifeboat::catalog::BackupEntry| {
            b.copies.as_ref().unwrap().stores.iter().any(|c| {
                c.store == store
                    && !matches!(c.state, Missing | lifeboat::stores::CopyState::Unknown)
            })
        };
        StoreListing {
            store: store.into(),
            location: location.into(),
            error: error.map(str::to_owned),
            backups: backups.iter().filter(holds).cloned().collect(),
            owed: owed.iter().map(|s| (*s).to_owned()).collect(),
            ..StoreListing::default()
        }
    };
    let catalog = lifeboat::catalog::Catalog {
        stores: vec![
            listing("primary", "/srv/backups", &[], None),
            listing(
                "offsite",
                "s3://acme-offsite (https://s3.example.net)",
                &["auth/20261122T021500Z-cccc"],
                offsite_error,
            ),
            listing(
                "archive",
                "/mnt/archive",
                &["shop/20261123T080000Z-aaaa"],
                None,
            ),
        ],
        backups,
        ..Default::default()
    };
    app.on_msg(Msg::CatalogDone {
        generation: 0,
        result: Ok(Arc::new(catalog)),
    });
    app
}

#[test]
fn catalog_shows_copies_and_a_line_per_store() {
    let mut app = copies_app(None);
    let s = screen(&app);
    assert!(s.contains("COPIES"), "{s}");
    insta::assert_snapshot!("catalog_copies", s);
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(s.contains("copies 2/3"), "{s}");
    insta::assert_snapshot!("catalog_copies_detail", s);
    // A single-store console has neither.
    let s = screen(&self::app());
    assert!(!s.contains("COPIES") && !s.contains(" store "), "{s}");
}

#[test]
fn an_unreachable_store_is_a_red_header_line() {
    let app = copies_app(Some(
        "cannot reach https://s3.example.net: connection refused",
    ));
    let s = screen(&app);
    let line = s
        .lines()
        .find(|l| l.contains("store offsite"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.contains("✖ crit store offsite   unreachable: cannot reach https://s3.example.net"),
        "{line}"
    );
    // Its copies are unknown, never counted as good.
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let y = (0..24)
        .find(|&y| {
            (0..80)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
                .contains("store offsite")
        })
        .unwrap();
    assert_eq!(buffer[(0, y)].fg, Color::Red);
}

fn sized(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal.backend().to_string()
}

fn ctrl(app: &mut App, c: char) {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
}

fn test_ctx(config: Config) -> Ctx {
    Ctx {
        config: Arc::new(config),
        location: "/srv/backups".into(),
        clock: Clock::starting_at(now()),
        keymap: Keymap::load(None).unwrap(),
        theme: Theme::colored(),
        zone: Some(chrono::FixedOffset::east_opt(0).unwrap()),
    }
}

/// Each tab and the help, at 80x24 (the smallest the docs promise) and 120x40.
#[test]
fn every_tab_and_the_help_at_80x24_and_120x40() {
    let mut app = app();
    app.on_msg(Msg::PlanInputs(Ok(Arc::new(plan_inputs()))));
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        for (tab, name) in [
            ('1', "catalog"),
            ('2', "jobs"),
            ('3', "retention"),
            ('4', "restore"),
        ] {
            key(&mut app, KeyCode::Char(tab));
            insta::assert_snapshot!(format!("tab_{name}_{w}x{h}"), sized(&app, w, h));
        }
        key(&mut app, KeyCode::Char('1'));
        key(&mut app, KeyCode::Char('?'));
        insta::assert_snapshot!(format!("help_catalog_{w}x{h}"), sized(&app, w, h));
        key(&mut app, KeyCode::Esc);
    }
}

/// The help is per tab, fits 80x24 and scrolls to its last line.
#[test]
fn help_per_tab_scrolls_to_every_entry() {
    let mut app = app();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Char('?'));
    let s = screen(&app);
    assert!(s.contains("keys: restore"), "{s}");
    assert!(
        s.contains("restore drill") && s.contains("drop scratch db"),
        "{s}"
    );
    assert!(!s.contains("ctrl-w"), "the end is below:\n{s}");
    key(&mut app, KeyCode::End);
    let s = screen(&app);
    assert!(s.contains("ctrl-w") && s.contains("yesterday 09:40"), "{s}");
    // Every everywhere-key is reachable by scrolling: back up line by line.
    let mut seen = String::new();
    for _ in 0..60 {
        seen.push_str(&screen(&app));
        key(&mut app, KeyCode::Up);
    }
    for wanted in ["quit", "command line", "refresh", "next tab", ":drill"] {
        assert!(seen.contains(wanted), "{wanted} never shown");
    }
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Char('?'));
    let s = screen(&app);
    assert!(s.contains("keys: catalog") && s.contains("verify"), "{s}");
}

/// The footer fits 80 columns with the keys that matter, `d` included; a status message
/// sits in the header line, and clears by itself.
#[test]
fn footer_fits_80_columns_and_status_messages_clear() {
    let mut app = app();
    let footer = |app: &App| {
        let s = screen(app);
        s.lines().last().unwrap().trim_matches('"').to_owned()
    };
    let f = footer(&app);
    for hint in [
        "? help",
        "q quit",
        ": cmd",
        "/ filter",
        "r restore",
        "d drill",
    ] {
        assert!(f.contains(hint), "{hint} missing from {f:?}");
    }
    assert!(f.trim_end().chars().count() <= 80);
    app.on_msg(Msg::Notice(Ok("copied 20261123T080000Z-aaaa".into())));
    assert!(
        screen(&app)
            .lines()
            .next()
            .unwrap()
            .contains("copied 20261123T080000Z-aaaa")
    );
    assert_eq!(footer(&app), f, "the message does not push the keys away");
    for _ in 0..30 {
        app.on_tick();
    }
    assert!(!screen(&app).contains("copied"));
}

/// The sorted column carries the arrow, and AGE is wide enough for "105d 23h".
#[test]
fn the_sorted_column_is_marked_and_age_is_whole() {
    let mut app = cold_app(test_ctx(config()));
    let mut old = rows();
    old.push(row(
        "20260810T010000Z-eeee",
        "shop",
        105 * 24 + 23,
        RowKind::Complete,
        5,
    ));
    app.set_cached_rows(old);
    let s = screen(&app);
    assert!(s.contains("AGE↓"), "{s}");
    assert!(s.contains("105d 23h"), "{s}");
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('S'));
    let s = screen(&app);
    assert!(s.contains("STORED↑") && !s.contains("AGE↓"), "{s}");
}

/// A filter that cannot be read says so; the documented forms work; Ctrl-U clears the line;
/// Esc clears an applied filter.
#[test]
fn filter_errors_forms_ctrl_u_and_esc() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "before:garbage");
    let s = screen(&app);
    assert!(s.contains("before: cannot read"), "{s}");
    ctrl(&mut app, 'u');
    assert!(!screen(&app).contains("garbage"));
    assert!(!screen(&app).contains("/u"), "Ctrl-U is not typed");
    // 2026-11-23 03:00 (the test zone is UTC): every line but the 08:00 one.
    typed(&mut app, "before:2026-11-23 03:00");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(s.contains("→ 5 "), "{s}");
    assert!(
        s.contains("bbbb") && s.contains("cccc") && !s.contains("aaaa"),
        "{s}"
    );
    assert!(s.contains("esc clears the filter"), "{s}");
    key(&mut app, KeyCode::Esc);
    let s = screen(&app);
    assert!(s.contains("aaaa") && !s.contains("→"), "{s}");
}

/// The header fits any number of sources: worst first, then one line for the rest.
#[test]
fn the_header_fits_any_number_of_sources() {
    let mut text = "[storage]\ntype = \"local\"\npath = \"/srv/backups\"\n".to_owned();
    let names = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    for n in names {
        text.push_str(&format!(
            "[[source]]\nname = \"{n}\"\nengine = \"sqlite\"\npath = \"/srv/{n}.db\"\nrpo = \"1d\"\n"
        ));
    }
    let config = Config::parse(&text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap();
    let mut app = App::new(test_ctx(config));
    // s9 is critical (5 days), s8 a warning (30 h), the rest fresh.
    let rows: Vec<CatalogRow> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let hours = match *n {
                "s9" => 120,
                "s8" => 30,
                _ => 1,
            };
            row(
                &format!("20261120T00000{i}Z-{n}00"),
                n,
                hours,
                RowKind::Complete,
                10,
            )
        })
        .collect();
    app.set_cached_rows(rows);
    read_sources(&mut app, &names);
    let s = screen(&app);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[1].contains("✖ crit") && lines[1].contains("s9"),
        "{s}"
    );
    assert!(
        lines[2].contains("▲ warn") && lines[2].contains("s8"),
        "{s}"
    );
    assert!(s.contains("+5 more: 5 ok"), "{s}");
    // Taller, more lines; never a source missing without being counted.
    let s = sized(&app, 120, 40);
    assert!(s.contains("+2 more: 2 ok"), "{s}");
}

/// Before the listing reached a source, its health is not a verdict: no "crit", no "no good
/// backup", but "not read yet" with the listing's progress.
#[test]
fn a_source_not_read_yet_is_not_shown_as_a_verdict() {
    let mut app = cold_app(test_ctx(config()));
    app.start();
    let s = screen(&app);
    assert!(s.contains("○ ?") && s.contains("not read yet"), "{s}");
    assert!(!s.contains("crit") && !s.contains("● ok"), "{s}");
    let generation = app
        .take_requests()
        .into_iter()
        .find_map(|r| match r {
            Request::RefreshCatalog { generation } => Some(generation),
            _ => None,
        })
        .unwrap();
    app.on_msg(Msg::CatalogPage {
        generation,
        rows: vec![row(
            "20261122T021500Z-cccc",
            "auth",
            34,
            RowKind::Complete,
            6_533,
        )],
        sources_complete: vec!["auth".into()],
    });
    let s = screen(&app);
    let auth = s.lines().find(|l| l.contains("auth ")).unwrap();
    assert!(auth.contains("crit") || auth.contains("warn"), "{s}");
    let shop = s.lines().find(|l| l.contains("shop ")).unwrap();
    assert!(
        shop.contains("not read yet") && shop.contains("1 lines"),
        "{s}"
    );
}

/// The case: a wizard started while the bucket is still listed never picks the
/// newest *cached* line as "the newest good backup". It waits for the source's part of the
/// listing and then chooses from it; asked twice, it chooses from what is there and says so.
#[test]
fn a_wizard_started_during_a_cold_listing_never_offers_a_stale_newest() {
    let mut app = cold_app(test_ctx(config()));
    app.start();
    let generation = app
        .take_requests()
        .into_iter()
        .find_map(|r| match r {
            Request::RefreshCatalog { generation } => Some(generation),
            _ => None,
        })
        .unwrap();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter); // the newest
    let s = screen(&app);
    assert!(s.contains("still being read"), "{s}");
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::Preflight { .. })),
        "nothing chosen from a partial listing"
    );
    // The listing reaches shop: a backup 39 minutes old the cache did not know.
    let fresh = CatalogRow {
        time: Some(now() - Duration::minutes(39)),
        ..row(
            "20261123T112100Z-ffff",
            "shop",
            0,
            RowKind::Complete,
            111_100,
        )
    };
    app.on_msg(Msg::CatalogPage {
        generation,
        rows: vec![fresh],
        sources_complete: vec!["auth".into(), "shop".into()],
    });
    assert_eq!(
        app.take_requests(),
        vec![Request::Preflight {
            id: "20261123T112100Z-ffff".into()
        }]
    );
    assert!(!screen(&app).contains("PROVISIONAL"));

    // Asked twice before the listing arrives: the cached newest, marked as a guess.
    let mut app = cold_app(test_ctx(config()));
    app.start();
    app.take_requests();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.take_requests(),
        vec![Request::Preflight {
            id: "20261123T080000Z-aaaa".into()
        }]
    );
    assert!(screen(&app).contains("PROVISIONAL"), "{}", screen(&app));
}

/// R pressed three times: one listing runs, the latest; the answers of the two it replaced
/// are dropped.
#[test]
fn a_refresh_replaces_the_one_under_way() {
    let mut app = app();
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('R'));
    }
    let gens: Vec<u64> = app
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::RefreshCatalog { generation } => Some(generation),
            _ => None,
        })
        .collect();
    assert_eq!(gens.len(), 3);
    let late = row("20261123T110000Z-7777", "shop", 1, RowKind::Complete, 1);
    app.on_msg(Msg::CatalogPage {
        generation: gens[0],
        rows: vec![late],
        sources_complete: Vec::new(),
    });
    assert!(!screen(&app).contains("7777"));
}

/// The `:` line: Tab completes, `:restore shop before -5h` opens the wizard on the right
/// backup, `:drill auth` starts a drill of auth's newest, a typo is said and kept to fix.
#[test]
fn the_command_line_restores_drills_and_completes() {
    let mut app = app();
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "res");
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "sh");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    assert!(
        screen(&app).contains(":restore shop before █"),
        "{}",
        screen(&app)
    );
    typed(&mut app, "-5h");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.take_requests(),
        vec![Request::Preflight {
            id: "20261123T020000Z-bbbb".into()
        }]
    );
    assert!(screen(&app).contains("2 pre-flight"));

    let mut app = self::app();
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "drill nope");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(
        s.contains("no source \"nope\"") && s.contains(":drill nope"),
        "{s}"
    );
    ctrl(&mut app, 'w');
    typed(&mut app, "auth");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(
        s.contains(" DRILL ") && s.contains("20261122T021500Z-cccc"),
        "{s}"
    );
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(r.drill && r.id == "20261122T021500Z-cccc");
}

/// The key budget: from the first frame to a proven scratch restore of the newest good
/// backup before T, with T typed as "-5h" and as "09:40" (and a drill from the restore tab).
#[test]
fn the_key_budget_for_a_restore_and_a_drill() {
    for (time, budget) in [("-5h", 7), ("07:00", 10)] {
        let mut app = app();
        let mut keys = 0;
        let mut press = |app: &mut App, code| {
            keys += 1;
            key(app, code)
        };
        press(&mut app, KeyCode::Char('4'));
        if !time.starts_with('-') {
            press(&mut app, KeyCode::Enter);
        }
        for c in time.chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        verify_passes(&mut app);
        press(&mut app, KeyCode::Enter);
        press(&mut app, KeyCode::Enter);
        let r = restore_request(&mut app);
        // 07:00 (UTC here) and 5 h before 12:00 both come before the 08:00 backup.
        assert_eq!(r.id, "20261123T020000Z-bbbb", "{time}");
        assert!(keys <= budget, "{time}: {keys} keys");
    }
    let mut app = app();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Char('d'));
    verify_passes(&mut app);
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(
        r.drill && r.id == "20261123T080000Z-aaaa",
        "3 keys from the restore tab"
    );
}

/// `q` with a job running asks; `n` stays; `y` cancels it and quits only once it has ended.
#[test]
fn q_asks_while_a_job_runs_and_waits_for_its_cleanup() {
    let mut app = app();
    key(&mut app, KeyCode::Char('b'));
    key(&mut app, KeyCode::Enter);
    let task = app
        .take_requests()
        .into_iter()
        .find_map(|r| match r {
            Request::Backup { task, .. } => Some(task),
            _ => None,
        })
        .unwrap();
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.should_quit());
    assert!(screen(&app).contains("still running"));
    key(&mut app, KeyCode::Char('n'));
    assert!(!app.should_quit() && !screen(&app).contains("still running"));
    key(&mut app, KeyCode::Char('q'));
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(app.take_requests(), vec![Request::Cancel { task }]);
    assert!(!app.should_quit(), "not before the backup has cleaned up");
    app.on_msg(Msg::Finished {
        task,
        kind: JobKind::Backup,
        record: Box::new(job(
            "b",
            JobKind::Backup,
            "shop",
            "x",
            0,
            JobStatus::Cancelled,
        )),
        outcome: Outcome::Backup(Err("cancelled".into())),
    });
    assert!(app.should_quit());
}

/// The target step proposes a file that does not exist yet (a repeat restore gets `-2`),
/// and once the "file exists" prompt is up, Esc returns to the path, which can be edited.
#[test]
fn the_target_is_fresh_and_stays_editable() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[storage]\ntype = \"local\"\npath = \"/srv/backups\"\n[restore]\nscratch_dir = \"{}\"\n\
         [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"/srv/shop.db\"\n",
        dir.path().display()
    );
    let config = Config::parse(&text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap();
    let mut app = App::new(test_ctx(config));
    app.set_cached_rows(rows());
    read_sources(&mut app, &["shop"]);
    let earlier = dir.path().join("shop-20261123T080000Z-aaaa.db");
    std::fs::write(&earlier, b"an earlier restore").unwrap();
    key(&mut app, KeyCode::Char('r'));
    verify_passes(&mut app);
    assert!(screen(&app).contains("shop-20261123T080000Z-aaaa-2.db"));
    key(&mut app, KeyCode::Char('t'));
    let s = screen(&app);
    assert!(
        s.contains("shop-20261123T080000Z-aaaa-2.db") && s.contains("A new file"),
        "{s}"
    );
    // Typed onto the earlier file: confirm, or Esc and edit.
    for _ in 0..100 {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, earlier.to_str().unwrap());
    key(&mut app, KeyCode::Enter);
    assert!(screen(&app).contains("Type the path again"));
    key(&mut app, KeyCode::Esc);
    assert!(!screen(&app).contains("Type the path again"));
    typed(&mut app, "x");
    key(&mut app, KeyCode::Enter);
    let r = restore_request(&mut app);
    assert!(!r.force_target);
    assert_eq!(r.target, dir.path().join("shop-20261123T080000Z-aaaa.dbx"));
}
