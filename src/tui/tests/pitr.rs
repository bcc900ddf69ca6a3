//! The wizard's "when" step for a source with WAL: the window on a time line, a time inside
//! it restored from the WAL into a scratch cluster, a drill at a random time in it.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::KeyCode;
use lifeboat::catalog::RowKind;
use lifeboat::config::Config;
use lifeboat::diff::RowDiff;
use lifeboat::engine::postgres::physical::base::BaseManifest;
use lifeboat::engine::postgres::physical::scratch::{Recovered, RecoveryTarget, ScratchCluster};
use lifeboat::manifest::{BackupId, DataInfo, TableCount};
use lifeboat::pitr::{BaseWindow, PitrReport, PitrStatus};
use lifeboat::wal::chain::Chain;
use lifeboat::wal::names::{Lsn, Segment};

use super::super::app::App;
use super::super::msg::{Msg, Outcome, Request};
use super::{key, now, row, screen, sized, test_ctx, typed};

const MB16: u64 = 16 << 20;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    now().date_naive().and_hms_opt(h, m, s).unwrap().and_utc()
}

fn base(id: &str, segment: u64, finished: DateTime<Utc>) -> BaseManifest {
    BaseManifest {
        format: 1,
        id: id.parse().unwrap(),
        source: "billing".into(),
        started_at: finished - Duration::seconds(13),
        finished_at: finished,
        server_version: "16.4".into(),
        system_identifier: "7301234567890123456".into(),
        timeline: 1,
        start_lsn: Lsn(segment * MB16 + 40),
        end_lsn: Lsn(segment * MB16 + 400),
        wal_segment_size: MB16,
        pg_basebackup_version: "16.4".into(),
        data: DataInfo {
            key: "base.tar.zst".into(),
            raw_bytes: 900 << 20,
            stored_bytes: 210 << 20,
            compression: "zstd".into(),
            compression_level: 3,
            sha256: "ab".repeat(32),
        },
        encryption: None,
        files: 1200,
        backup_manifest_sha256: "cd".repeat(32),
        file_checksums: Default::default(),
    }
}

/// Segments 2..=6 archived every half hour from 02:30, segment 7 missing, 8..=21 from 05:30
/// to 11:44:51. Base backups at 02:00:13 (segment 2) and 06:00:05 (segment 9): windows
/// 02:00:13 → 04:30 and 06:00:05 → 11:44:51, a gap between.
fn status() -> PitrStatus {
    let segment = |n: u64| {
        Segment {
            timeline: 1,
            number: n,
        }
        .name(MB16)
    };
    let mut names: Vec<(String, Option<DateTime<Utc>>)> = (2..=6u64)
        .map(|n| {
            (
                segment(n),
                Some(at(2, 30, 0) + Duration::minutes(30 * (n as i64 - 2))),
            )
        })
        .collect();
    names.extend((8..=20u64).map(|n| {
        (
            segment(n),
            Some(at(5, 30, 0) + Duration::minutes(30 * (n as i64 - 8))),
        )
    }));
    names.push((segment(21), Some(at(11, 44, 51))));
    let chain = Chain::from_names(names, MB16);
    let bases = [
        base("20261123T020000Z-aaaa", 2, at(2, 0, 13)),
        base("20261123T060000Z-bbbb", 9, at(6, 0, 5)),
    ]
    .into_iter()
    .map(|b| BaseWindow {
        window: chain.window(&b.needs()),
        base: b,
    })
    .collect();
    PitrStatus {
        source: "billing".into(),
        chain,
        bases,
        unreadable: Vec::new(),
    }
}

fn pitr_app() -> App {
    let text = "[storage]\ntype = \"local\"\npath = \"/srv/backups\"\n\
                [[source]]\nname = \"billing\"\nengine = \"postgres\"\nhost = \"db1\"\ndatabase = \"billing\"\n\
                [source.pitr]\n";
    let config = Config::parse(text, std::path::Path::new("/etc/lifeboat/lifeboat.toml")).unwrap();
    let mut app = App::new(test_ctx(config));
    app.set_cached_rows(vec![row(
        "20261123T080000Z-cccc",
        "billing",
        4,
        RowKind::Complete,
        1_000,
    )]);
    super::read_sources(&mut app, &["billing"]);
    app.start();
    // Only the point-in-time source's WAL is asked for.
    let asked: Vec<String> = app
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::LoadPitr { source } => Some(source),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec!["billing".to_owned()]);
    app
}

fn loaded(app: &mut App) {
    app.on_msg(Msg::Pitr {
        source: "billing".into(),
        result: Ok(Arc::new(status())),
    });
}

fn pitr_request(app: &mut App) -> (u64, String, DateTime<Utc>, String, bool) {
    app.take_requests()
        .into_iter()
        .find_map(|r| match r {
            Request::PitrRestore {
                task,
                source,
                at,
                base,
                drill,
            } => Some((task, source, at, base, drill)),
            _ => None,
        })
        .expect("a point-in-time restore was requested")
}

fn pitr_report(dropped: bool) -> PitrReport {
    let status = status();
    let window = status.bases[1].window.clone().unwrap();
    let dir = PathBuf::from("/var/tmp/lifeboat-pitr-billing-20261123T060000Z-bbbb-9f2e");
    let logical = vec![
        TableCount::new("public.invoices", 80_112),
        TableCount::new("public.customers", 3_910),
    ];
    let restored = vec![
        TableCount::new("public.invoices", 81_433),
        TableCount::new("public.customers", 3_912),
    ];
    PitrReport {
        source: "billing".into(),
        recovered: Recovered {
            base: "20261123T060000Z-bbbb".parse::<BackupId>().unwrap(),
            target: RecoveryTarget::Time(at(10, 41, 7)),
            window,
            cluster: ScratchCluster {
                data_dir: dir.join("data"),
                dir: dir.clone(),
                port: 41377,
                os_user: Some("postgres".into()),
                bin_dir: "/usr/lib/postgresql/16/bin".into(),
            },
            paused: false,
            timeline: 2,
            replay_lsn: Some(Lsn(20 * MB16 + 272)),
            last_commit: Some(at(10, 41, 6)),
            stop_line: Some(
                "LOG:  recovery stopping before commit of transaction 48213, time 2026-11-23 10:41:07.412+00"
                    .into(),
            ),
        },
        conninfo: format!(
            "host={} port=41377 user=postgres dbname=billing",
            dir.display()
        ),
        database: "billing".into(),
        diff: RowDiff::new(Some(&logical), &restored, None),
        restored_tables: restored,
        logical_backup: Some("20261123T080000Z-cccc".into()),
        amcheck: None,
        started_at: now(),
        finished_at: now() + Duration::seconds(41),
        dropped,
    }
}

/// The "when" step with the window drawn: base backups as ticks, the gap, the typed time.
#[test]
fn the_when_step_draws_the_window_at_80x24_and_120x40() {
    let mut app = pitr_app();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    assert!(
        screen(&app).contains("WAL window: reading the archive"),
        "{}",
        screen(&app)
    );
    loaded(&mut app);
    typed(&mut app, "10:41:07");
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        insta::assert_snapshot!(format!("wizard_when_window_{w}x{h}"), sized(&app, w, h));
    }
    let s = screen(&app);
    assert!(s.contains("is in the window"), "{s}");
    assert!(s.contains('●') && s.contains('╳') && s.contains('┃'), "{s}");
}

/// A time in the window goes to the WAL path: the plan, the request, the proof with the
/// connection string, and `x` removes the scratch cluster.
#[test]
fn a_time_in_the_window_is_restored_from_wal_and_x_drops_the_cluster() {
    let mut app = pitr_app();
    loaded(&mut app);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "10:41:07");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app);
    assert!(
        s.contains("Point-in-time restore of billing")
            && s.contains("base backup 20261123T060000Z-bbbb"),
        "{s}"
    );
    insta::assert_snapshot!("wizard_pitr_plan_80x24", screen(&app));
    key(&mut app, KeyCode::Enter);
    let (task, source, at_, base, drill) = pitr_request(&mut app);
    assert_eq!(
        (source.as_str(), at_, base.as_str(), drill),
        ("billing", at(10, 41, 7), "20261123T060000Z-bbbb", false)
    );
    assert!(screen(&app).contains("into a new scratch cluster"));
    app.on_msg(Msg::Finished {
        task,
        kind: lifeboat::jobs::JobKind::Restore,
        record: super::restore_record(),
        outcome: Outcome::Pitr(Ok(Box::new(pitr_report(false)))),
    });
    insta::assert_snapshot!("wizard_pitr_result_80x24", screen(&app));
    let s = sized(&app, 120, 40);
    assert!(
        s.contains("RESTORED billing to 2026-11-23 10:41:07 +00:00")
            && s.contains("connect: psql \"host=/var/tmp/lifeboat-pitr-billing-")
            && s.contains("public.invoices")
            && s.contains("81,433")
            && s.contains("80,112"),
        "{s}"
    );
    key(&mut app, KeyCode::Char('x'));
    let dropped = app.take_requests().into_iter().find_map(|r| match r {
        Request::DropPitrScratch { source, dir } => Some((source, dir)),
        _ => None,
    });
    assert_eq!(
        dropped,
        Some((
            "billing".to_owned(),
            PathBuf::from("/var/tmp/lifeboat-pitr-billing-20261123T060000Z-bbbb-9f2e")
        ))
    );
}

/// A time in the gap, or before the window, is not restored from WAL: the newest logical
/// backup at or before it is chosen, as for any source.
#[test]
fn a_time_outside_the_window_falls_back_to_the_newest_logical_backup() {
    let mut app = pitr_app();
    loaded(&mut app);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "05:00");
    let s = screen(&app);
    assert!(s.contains("outside the window"), "{s}");
    key(&mut app, KeyCode::Enter);
    // No logical backup at or before 05:00 (the only one is from 08:00).
    let s = screen(&app);
    assert!(
        s.contains("no complete backup of billing at or before"),
        "{s}"
    );
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::PitrRestore { .. }))
    );
}

/// `d` on a source with WAL drills a time picked in the window from the simulated clock, and
/// the drill drops its cluster.
#[test]
fn a_drill_picks_a_time_in_the_window() {
    let mut app = pitr_app();
    loaded(&mut app);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Char('d'));
    let s = screen(&app);
    assert!(s.contains("picked at random in the window"), "{s}");
    key(&mut app, KeyCode::Enter);
    let (task, _, picked, base, drill) = pitr_request(&mut app);
    assert!(drill);
    let status = status();
    let line = super::super::timeline::TimeLine::of(&status).unwrap();
    assert!(line.contains(picked), "{picked}");
    assert_eq!(status.covering(picked).unwrap().base.id.as_str(), base);
    // The same clock picks the same time.
    let mut again = pitr_app();
    loaded(&mut again);
    key(&mut again, KeyCode::Char('4'));
    key(&mut again, KeyCode::Char('d'));
    key(&mut again, KeyCode::Enter);
    assert_eq!(pitr_request(&mut again).2, picked);

    app.on_msg(Msg::Finished {
        task,
        kind: lifeboat::jobs::JobKind::Drill,
        record: super::restore_record(),
        outcome: Outcome::Pitr(Ok(Box::new(pitr_report(true)))),
    });
    let s = sized(&app, 120, 40);
    assert!(s.contains("dropped once proved"), "{s}");
    key(&mut app, KeyCode::Char('x'));
    assert!(
        !app.take_requests()
            .iter()
            .any(|r| matches!(r, Request::DropPitrScratch { .. }))
    );
}

/// A failed point-in-time restore says why and leaves no cluster to drop.
#[test]
fn a_failed_pitr_restore_is_shown_not_as_done() {
    let mut app = pitr_app();
    loaded(&mut app);
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "10:41:07");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    let (task, ..) = pitr_request(&mut app);
    app.on_msg(Msg::Finished {
        task,
        kind: lifeboat::jobs::JobKind::Restore,
        record: super::restore_record(),
        outcome: Outcome::Pitr(Err(
            "recovery ended before configured recovery target was reached\x1b[31m".into(),
        )),
    });
    let s = screen(&app);
    assert!(
        s.contains("POINT-IN-TIME RESTORE FAILED") && !s.contains("RESTORED billing"),
        "{s}"
    );
    assert!(!s.contains('\x1b'), "{s:?}");
}
